"""Losses of SWEM: bootstrapped cross-entropy (top-p hardest pixels, scheduled) and a soft IoU loss."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor, nn


def top_p_schedule(iteration: int, start_iter: int, end_iter: int, p_start: float = 1.0,
                   p_end: float = 0.3) -> float:
    """Fraction of pixels kept by the bootstrapped CE: ``p_start`` until ``start_iter``, then linear
    to ``p_end`` at ``end_iter``, constant afterwards."""
    if iteration <= start_iter:
        return p_start
    if iteration >= end_iter:
        return p_end
    frac = (iteration - start_iter) / max(end_iter - start_iter, 1)
    return p_start + (p_end - p_start) * frac


def bootstrapped_cross_entropy(logits: Tensor, target: Tensor, top_p: float = 1.0) -> Tensor:
    """Mean of the ``k = max(1, int(top_p * P))`` largest per-pixel CE values.

    ``CE_i = -log softmax(logits)_{i, y_i}`` over all ``P`` pixels of the batch.

    Args:
        logits: (B, C, H, W) class logits. target: (B, H, W) long class indices.
        top_p: fraction in (0, 1] of the hardest pixels kept.

    Returns:
        scalar loss.
    """
    if logits.dim() != 4 or target.shape != (logits.shape[0],) + tuple(logits.shape[2:]):
        raise ValueError(f'bootstrapped_cross_entropy: logits must be (B, C, H, W) and target (B, H, '
                         f'W), got {tuple(logits.shape)} and {tuple(target.shape)}')
    if not 0 < top_p <= 1:
        raise ValueError(f'bootstrapped_cross_entropy: top_p must be in (0, 1], got {top_p}')
    raw = F.cross_entropy(logits, target.long(), reduction='none').flatten()
    if top_p >= 1:
        return raw.mean()
    k = max(1, int(top_p * raw.numel()))
    return torch.topk(raw, k, sorted=False).values.mean()


def soft_iou_loss(prob: Tensor, target: Tensor, valid: Optional[Tensor] = None,
                  eps: float = 1e-6) -> Tensor:
    """``1 - mean_o (sum p g + eps) / (sum (p + g - p g) + eps)`` over valid objects.

    Args:
        prob: (B, O, H, W) predicted foreground probabilities. target: (B, O, H, W) binary masks.
        valid: optional (B, O) mask of real (not padding) objects.
        eps: smoothing (an empty prediction of an empty object has IoU 1).
    """
    if prob.shape != target.shape:
        raise ValueError(f'soft_iou_loss: prob {tuple(prob.shape)} and target {tuple(target.shape)} '
                         'must have the same shape')
    target = target.to(prob.dtype)
    inter = (prob * target).flatten(2).sum(-1)
    union = (prob + target - prob * target).flatten(2).sum(-1)
    iou = (inter + eps) / (union + eps)
    if valid is None:
        return 1 - iou.mean()
    valid = valid.to(prob.dtype)
    return 1 - (iou * valid).sum() / valid.sum().clamp_min(1)


@MODELS.register_module()
class VOSBootstrappedCELoss(nn.Module):
    """Bootstrapped CE with the top-p schedule (``1.0 -> p_end`` between ``start_iter`` and
    ``end_iter``; 20k and 70k with ``p_end = 0.3`` in the paper)."""

    def __init__(self, start_iter: int = 20000, end_iter: int = 70000, p_start: float = 1.0,
                 p_end: float = 0.3, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.start_iter, self.end_iter = start_iter, end_iter
        self.p_start, self.p_end = p_start, p_end
        self.loss_weight = loss_weight

    def top_p(self, iteration: int) -> float:
        return top_p_schedule(iteration, self.start_iter, self.end_iter, self.p_start, self.p_end)

    def forward(self, logits: Tensor, target: Tensor, iteration: int = 0) -> Tensor:
        return self.loss_weight * bootstrapped_cross_entropy(logits, target, self.top_p(iteration))


@MODELS.register_module()
class VOSIoULoss(nn.Module):
    """Soft IoU loss of the per-object probabilities (see :func:`soft_iou_loss`)."""

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.loss_weight, self.eps = loss_weight, eps

    def forward(self, prob: Tensor, target: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        return self.loss_weight * soft_iou_loss(prob, target, valid, self.eps)
