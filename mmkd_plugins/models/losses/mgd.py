"""MGD loss: alpha_mgd * sum((G(S' * M) - T)^2) / N."""
import torch
import torch.nn as nn
from mmengine.registry import MODELS


def mgd_loss(generated: torch.Tensor, teacher_feat: torch.Tensor, alpha_mgd: float) -> torch.Tensor:
    """alpha_mgd * sum over all positions of (generated - teacher)^2, divided by the batch size N.

    Args:
        generated: G(align(S) * M), shape (N, C, H, W) (any shape with the batch first).
        teacher_feat: T, the same shape. Not differentiated through (the teacher is frozen).
        alpha_mgd: loss weight.

    Computed in float32 (a sum of squares over a whole FPN level overflows fp16).
    """
    if generated.shape != teacher_feat.shape:
        raise ValueError(f'MGD: generated student feature {tuple(generated.shape)} and teacher feature '
                         f'{tuple(teacher_feat.shape)} differ: check the connector channels and that '
                         'student and teacher taps give the same spatial size')
    diff = generated.float() - teacher_feat.detach().float()
    return alpha_mgd * diff.pow(2).sum() / generated.shape[0]


@MODELS.register_module()
class MGDLoss(nn.Module):
    """Masked generative distillation loss (feed it the MGDConnector output and the teacher feature).

    Args:
        alpha_mgd: weight (7e-5 cls, 2e-5 RetinaNet / RepPoints / SOLO / seg, 5e-7 Faster / Mask R-CNN).
    """

    def __init__(self, alpha_mgd: float = 2e-5) -> None:
        super().__init__()
        self.alpha_mgd = alpha_mgd

    def forward(self, preds_S: torch.Tensor, preds_T: torch.Tensor) -> torch.Tensor:
        return mgd_loss(preds_S, preds_T, self.alpha_mgd)
