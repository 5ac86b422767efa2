"""MGD connector: align, random mask, generation block (Masked Generative Distillation)."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ...utils.arg_checks import check_positive_int
from ...utils.torch_compat import autocast_enabled


def mgd_random_mask(feat: torch.Tensor, lambda_mgd: float, mask_type: str = 'spatial',
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random binary mask M for a feature (N, C, H, W): M = 0 where rand < lambda_mgd, else 1.

    Returns (N, 1, H, W) for ``mask_type='spatial'`` (detection / segmentation) or (N, C, 1, 1) for
    ``'channel'`` (classification, as in the authors' code). The mask has the feature's dtype.
    """
    if feat.dim() != 4:
        raise ValueError(f'MGD expects a 4-D feature (N, C, H, W), got shape {tuple(feat.shape)}')
    n, c, h, w = feat.shape
    if mask_type == 'spatial':
        shape = (n, 1, h, w)
    elif mask_type == 'channel':
        shape = (n, c, 1, 1)
    else:
        raise ValueError(f'mask_type must be "spatial" or "channel", got {mask_type!r}')
    rand = torch.rand(shape, device=feat.device, generator=generator)
    return (rand >= lambda_mgd).to(feat.dtype)


@MODELS.register_module()
class MGDConnector(BaseModule):
    """Student-side part of MGD: G(align(S) * M).

    ``align`` is a 1x1 conv (only when student and teacher channels differ); M is a random spatial
    or channel mask (:func:`mgd_random_mask`); G is Conv3x3(Ct->Ct) -> ReLU -> Conv3x3(Ct->Ct).

    Args:
        student_channels: channels Cs of the student feature.
        teacher_channels: channels Ct of the teacher feature.
        lambda_mgd: masked ratio.
        mask_type: ``'spatial'`` (N,1,H,W) or ``'channel'`` (N,C,1,1).

    Shapes: (N, Cs, H, W) -> (N, Ct, H, W).
    """

    def __init__(self, student_channels: int, teacher_channels: int, lambda_mgd: float = 0.65,
                 mask_type: str = 'spatial', init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not 0.0 <= lambda_mgd < 1.0:
            raise ValueError(f'lambda_mgd must be in [0, 1), got {lambda_mgd}')
        if mask_type not in ('spatial', 'channel'):
            raise ValueError(f'mask_type must be "spatial" or "channel", got {mask_type!r}')
        self.student_channels = check_positive_int(student_channels, 'student_channels', 'MGDConnector')
        self.teacher_channels = check_positive_int(teacher_channels, 'teacher_channels', 'MGDConnector')
        self.lambda_mgd = lambda_mgd
        self.mask_type = mask_type
        self.align = (nn.Conv2d(student_channels, teacher_channels, 1)
                      if student_channels != teacher_channels else nn.Identity())
        self.generation = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        if feat.dim() != 4 or feat.shape[1] != self.student_channels:
            raise ValueError(f'MGDConnector expects a student feature (N, {self.student_channels}, H, W), '
                             f'got {tuple(feat.shape)}: check student_channels and the student tap')
        if not autocast_enabled(feat.device.type):
            # outside autocast the connector follows its parameters' dtype (fp32 weights vs fp16
            # features would otherwise crash inside conv)
            feat = feat.to(self.generation[0].weight.dtype)
        feat = self.align(feat)
        mask = mgd_random_mask(feat, self.lambda_mgd, self.mask_type)
        return self.generation(feat * mask)
