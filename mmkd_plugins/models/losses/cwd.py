"""Channel-wise distillation of dense logits (Shu et al., ICCV 2021), as MGD's segmentation
distiller adds it on the decode head's logits."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS


def channel_wise_divergence(preds_S: torch.Tensor, preds_T: torch.Tensor, tau: float = 4.0,
                            loss_weight: float = 3.0) -> torch.Tensor:
    """Channel-wise KL divergence of two dense maps.

    Each channel of each image is turned into a distribution over its ``H * W`` positions at
    temperature ``tau``::

        p_T(n, c) = softmax(T[n, c].flatten() / tau)
        q_S(n, c) = softmax(S[n, c].flatten() / tau)
        L = loss_weight * tau^2 / (C * N) * sum_{n, c} KL(p_T(n, c) || q_S(n, c))
          = loss_weight * tau^2 / (C * N) * sum_{n, c, i} p_T * (log p_T - log q_S)

    Args:
        preds_S: student logits, shape (N, C, H, W).
        preds_T: teacher logits, the same shape. Not differentiated through (the teacher is frozen).
        tau: temperature (4 in MGD's segmentation distiller).
        loss_weight: factor in front (3 in MGD's segmentation distiller).

    Returns:
        A scalar tensor (float32: the sums run over whole logit maps).
    """
    if preds_S.dim() != 4:
        raise ValueError(f'channel-wise divergence: expected (N, C, H, W) logits, got shape '
                         f'{tuple(preds_S.shape)}')
    if preds_S.shape != preds_T.shape:
        raise ValueError(f'channel-wise divergence: student logits {tuple(preds_S.shape)} and '
                         f'teacher logits {tuple(preds_T.shape)} differ: both decode heads must '
                         'predict the same classes at the same output stride')
    if tau <= 0:
        raise ValueError(f'channel-wise divergence: tau must be > 0, got {tau}')
    n, c, h, w = preds_S.shape
    s = preds_S.float().reshape(n * c, h * w) / tau
    t = preds_T.detach().float().reshape(n * c, h * w) / tau
    log_p_t = F.log_softmax(t, dim=1)
    kl = (log_p_t.exp() * (log_p_t - F.log_softmax(s, dim=1))).sum()
    return loss_weight * tau ** 2 * kl / (c * n)


@MODELS.register_module()
class ChannelWiseDivergenceLoss(nn.Module):
    """Channel-wise distillation loss on dense logits (see :func:`channel_wise_divergence`).

    Feed it the decode heads' logits of student and teacher (taps on ``decode_head.conv_seg``).

    Args:
        tau: temperature of the per-channel spatial softmax (MGD segmentation: 4).
        loss_weight: weight of the term (MGD segmentation: 3).
    """

    def __init__(self, tau: float = 4.0, loss_weight: float = 3.0) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f'ChannelWiseDivergenceLoss: tau must be > 0, got {tau}')
        self.tau = tau
        self.loss_weight = loss_weight

    def forward(self, preds_S: torch.Tensor, preds_T: torch.Tensor) -> torch.Tensor:
        return channel_wise_divergence(preds_S, preds_T, self.tau, self.loss_weight)
