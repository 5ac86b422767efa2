"""CIFAR-style ResNet (He et al. 2016, Sec. 4.2): ResNet-8/20/32/56/110 and the 4x-wide 8x4/32x4.

A 3x3 stem, then three stages of ``(depth - 2) / 6`` basic blocks with strides 1, 2, 2; shortcut
convolutions (1x1 + BN) where the shape changes. ``resnet20/56``: ``stem_channels=16,
stage_channels=(16, 32, 64)``; ``resnet8x4/32x4``: ``stem_channels=32, stage_channels=(64, 128,
256)``. Output: tuple of the stage outputs listed in ``out_indices`` (mmpretrain convention).
"""
from typing import Callable, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

_DEFAULT_INIT = [
    dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu'),
    dict(type='Constant', val=1, bias=0, layer=['BatchNorm2d']),
]


def conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """3x3 convolution (no bias) + BN (+ ReLU)."""
    layers = [nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def forward_stages(x: Tensor, stages: Sequence[nn.Module], out_indices: Sequence[int],
                   after_stage: Optional[Callable[[int, Tensor], Tensor]] = None) -> Tuple[Tensor, ...]:
    """Run ``stages`` in order; return the outputs of the stages in ``out_indices``.

    ``after_stage(i, x)``, when given, transforms the output of stage ``i`` before it is recorded
    and passed on.
    """
    outs = []
    for i, stage in enumerate(stages):
        x = stage(x)
        if after_stage is not None:
            x = after_stage(i, x)
        if i in out_indices:
            outs.append(x)
    return tuple(outs)


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_ch, out_ch, stride)
        self.conv2 = conv_bn_relu(out_ch, out_ch, relu=False)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


@MODELS.register_module()
class CifarResNet(BaseModule):
    """CIFAR ResNet backbone (registered as ``'CifarResNet'``).

    Args:
        depth: 6n + 2 (8, 14, 20, 32, 44, 56, 110).
        stem_channels: channels of the 3x3 stem.
        stage_channels: channels of the three stages.
        out_indices: which stages (0..2) to return.
        init_cfg: mmengine init config (Kaiming conv, BN = 1/0 by default).
    """

    def __init__(self,
                 depth: int = 20,
                 stem_channels: int = 16,
                 stage_channels: Sequence[int] = (16, 32, 64),
                 out_indices: Union[int, Sequence[int]] = (2, ),
                 init_cfg: Optional[Union[dict, list]] = _DEFAULT_INIT) -> None:
        super().__init__(init_cfg)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f'CifarResNet depth must be 6n + 2 with n >= 1 (8, 20, 32, 56, ...), '
                             f'got {depth}')
        if len(stage_channels) != 3:
            raise ValueError(f'stage_channels needs 3 entries, got {tuple(stage_channels)}')
        self.out_indices = _check_indices(out_indices, 3)
        n = (depth - 2) // 6
        self.stem = conv_bn_relu(3, stem_channels)
        in_ch = stem_channels
        self.stages = nn.ModuleList()
        for i, out_ch in enumerate(stage_channels):
            blocks = []
            for j in range(n):
                blocks.append(CifarBasicBlock(in_ch, out_ch, 2 if (i > 0 and j == 0) else 1))
                in_ch = out_ch
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = tuple(stage_channels)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return forward_stages(self.stem(x), self.stages, self.out_indices)


def _check_indices(out_indices: Union[int, Sequence[int]], num: int) -> Tuple[int, ...]:
    """Normalise ``out_indices`` (negative allowed) and check the range."""
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    result = []
    for i in out_indices:
        j = i + num if i < 0 else i
        if not 0 <= j < num:
            raise ValueError(f'out_indices entries must lie in [-{num}, {num - 1}], got {i}')
        result.append(j)
    return tuple(result)
