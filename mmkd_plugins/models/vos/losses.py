"""Losses of SWEM: bootstrapped cross-entropy (top-p hardest pixels, scheduled) and a soft IoU loss.

Official reference (lmm077/SWEM ``losses/bce_losses.py``): ``BootstrappedCE`` keeps the top-p pixels of
each clip and each frame; ``mask_iou_loss`` averages the soft IoU over the softmax channels of the
valid classes, background included. Both are the defaults here; the earlier variants (top-p over the
whole batch, objects-only IoU) stay available as named options.
"""
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


def bootstrapped_cross_entropy(logits: Tensor, target: Tensor, top_p: float = 1.0,
                               per_clip: bool = True) -> Tensor:
    """Mean of the hardest per-pixel CE values.

    ``CE_i = -log softmax(logits)_{i, y_i}``. With ``per_clip`` (official ``BootstrappedCE``: top-k
    along the pixels of each clip and frame) the ``k = max(1, int(top_p * H W))`` largest values of
    every row ``b`` are kept and the loss is the mean over ``B x k``; otherwise the
    ``k = max(1, int(top_p * B H W))`` largest over the whole batch (the earlier behaviour here).

    Args:
        logits: (B, C, H, W) class logits of one frame of B clips. target: (B, H, W) long indices.
        top_p: fraction in (0, 1] of the hardest pixels kept.
        per_clip: top-p per clip (official) or over the batch.

    Returns:
        scalar loss.
    """
    if logits.dim() != 4 or target.shape != (logits.shape[0],) + tuple(logits.shape[2:]):
        raise ValueError(f'bootstrapped_cross_entropy: logits must be (B, C, H, W) and target (B, H, '
                         f'W), got {tuple(logits.shape)} and {tuple(target.shape)}')
    if not 0 < top_p <= 1:
        raise ValueError(f'bootstrapped_cross_entropy: top_p must be in (0, 1], got {top_p}')
    raw = F.cross_entropy(logits, target.long(), reduction='none').flatten(1)  # B, H*W
    if top_p >= 1:
        return raw.mean()
    if not per_clip:
        raw = raw.flatten()
    k = max(1, int(top_p * raw.shape[-1]))
    return torch.topk(raw, k, dim=-1, sorted=False).values.mean()


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


def softmax_iou_loss(prob: Tensor, labels: Tensor, valid: Optional[Tensor] = None,
                     eps: float = 1e-6) -> Tensor:
    """Official SWEM IoU loss (``mask_iou_loss``): soft IoU of every valid softmax channel,
    background included, averaged per clip, then over the clips.

    ``IoU_{b,c} = sum_n min(p, g) / (sum_n max(p, g) + eps)`` with ``g = [labels == c]``;
    ``loss = 1 - mean_b mean_{c in valid_b} IoU_{b,c}`` where ``valid_b`` is the background and the
    real objects of clip ``b`` (an empty channel has IoU 0, as in the official code).

    Args:
        prob: (B, O+1, H, W) softmax probabilities, channel 0 = background.
        labels: (B, H, W) class indices 0..O.
        valid: optional (B, O) mask of real (not padding) objects; the background is always valid.
        eps: added to the union only (official).
    """
    if prob.dim() != 4 or labels.shape != (prob.shape[0],) + tuple(prob.shape[2:]):
        raise ValueError(f'softmax_iou_loss: prob must be (B, O+1, H, W) and labels (B, H, W), got '
                         f'{tuple(prob.shape)} and {tuple(labels.shape)}')
    b, c = prob.shape[:2]
    classes = torch.arange(c, device=labels.device).view(1, c, 1, 1)
    target = (labels.long().unsqueeze(1) == classes).to(prob.dtype)
    inter = torch.minimum(prob, target).flatten(2).sum(-1)
    union = torch.maximum(prob, target).flatten(2).sum(-1) + eps
    iou = inter / union  # B, O+1
    if valid is None:
        keep = prob.new_ones(b, c)
    else:
        if valid.shape != (b, c - 1):
            raise ValueError(f'softmax_iou_loss: valid must be (B, O) = {(b, c - 1)}, got '
                             f'{tuple(valid.shape)}')
        keep = torch.cat([prob.new_ones(b, 1), valid.to(prob.dtype)], dim=1)
    per_clip = (iou * keep).sum(1) / keep.sum(1)
    return 1 - per_clip.mean()


@MODELS.register_module()
class VOSBootstrappedCELoss(nn.Module):
    """Bootstrapped CE with the top-p schedule (``1.0 -> p_end`` between ``start_iter`` and
    ``end_iter``; 20k and 70k with ``p_end = 0.3`` in the paper).

    Args:
        top_p_over: ``'clip_frame'`` (official: the hardest pixels of each clip and frame) or
            ``'batch'`` (the hardest pixels of the whole batch of a frame).
    """

    MODES = ('clip_frame', 'batch')

    def __init__(self, start_iter: int = 20000, end_iter: int = 70000, p_start: float = 1.0,
                 p_end: float = 0.3, loss_weight: float = 1.0, top_p_over: str = 'clip_frame') -> None:
        super().__init__()
        if top_p_over not in self.MODES:
            raise ValueError(f'VOSBootstrappedCELoss: top_p_over must be one of {self.MODES}, got '
                             f'{top_p_over!r}')
        self.start_iter, self.end_iter = start_iter, end_iter
        self.p_start, self.p_end = p_start, p_end
        self.loss_weight, self.top_p_over = loss_weight, top_p_over

    def top_p(self, iteration: int) -> float:
        return top_p_schedule(iteration, self.start_iter, self.end_iter, self.p_start, self.p_end)

    def forward(self, logits: Tensor, target: Tensor, iteration: int = 0) -> Tensor:
        return self.loss_weight * bootstrapped_cross_entropy(
            logits, target, self.top_p(iteration), per_clip=self.top_p_over == 'clip_frame')


@MODELS.register_module()
class VOSIoULoss(nn.Module):
    """Soft IoU loss of a frame's aggregated prediction.

    Args:
        channels: ``'softmax'`` (official, :func:`softmax_iou_loss`: every valid softmax channel,
            background included) or ``'objects'`` (:func:`soft_iou_loss` of the object channels only,
            ``eps`` in numerator and denominator).
        loss_weight, eps: weight and smoothing.

    ``forward(prob, labels, valid)``: prob (B, O+1, H, W) softmax probabilities (channel 0 the
    background), labels (B, H, W) class indices, valid (B, O) real objects.
    """

    MODES = ('softmax', 'objects')

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-6, channels: str = 'softmax') -> None:
        super().__init__()
        if channels not in self.MODES:
            raise ValueError(f'VOSIoULoss: channels must be one of {self.MODES}, got {channels!r}')
        self.loss_weight, self.eps, self.channels = loss_weight, eps, channels

    def forward(self, prob: Tensor, labels: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        if self.channels == 'softmax':
            return self.loss_weight * softmax_iou_loss(prob, labels, valid, self.eps)
        if prob.dim() != 4 or labels.shape != (prob.shape[0],) + tuple(prob.shape[2:]):
            raise ValueError(f'VOSIoULoss: prob must be (B, O+1, H, W) and labels (B, H, W), got '
                             f'{tuple(prob.shape)} and {tuple(labels.shape)}')
        ids = torch.arange(1, prob.shape[1], device=labels.device).view(1, -1, 1, 1)
        onehot = (labels.long().unsqueeze(1) == ids).to(prob.dtype)
        return self.loss_weight * soft_iou_loss(prob[:, 1:], onehot, valid, self.eps)
