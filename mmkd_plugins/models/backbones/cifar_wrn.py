"""CIFAR Wide ResNet (Zagoruyko & Komodakis 2016): WRN-depth-k with pre-activation blocks.

Stem 3x3 conv to 16 channels, three stages of ``(depth - 4) / 6`` pre-activation blocks
(BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3) with ``16k, 32k, 64k`` channels and strides 1, 2, 2,
a final BN-ReLU. WRN-40-2 and WRN-16-2 end with 128 channels at 8x8 for 32x32 inputs.
"""
from typing import Optional, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from .cifar_resnet import _DEFAULT_INIT, _check_indices, forward_stages


class PreActBlock(nn.Module):
    """Wide-ResNet block; the 1x1 shortcut (when shapes change) sees the pre-activated input."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(pre))


@MODELS.register_module()
class CifarWideResNet(BaseModule):
    """CIFAR WRN backbone (registered as ``'CifarWideResNet'``).

    Args:
        depth: 6n + 4 (16, 22, 28, 40).
        widen_factor: k.
        drop_rate: dropout inside the blocks.
        out_indices: which stages (0..2) to return; the last one goes through the final BN-ReLU.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 depth: int = 16,
                 widen_factor: int = 2,
                 drop_rate: float = 0.0,
                 out_indices: Union[int, Sequence[int]] = (2, ),
                 init_cfg: Optional[Union[dict, list]] = _DEFAULT_INIT) -> None:
        super().__init__(init_cfg)
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f'CifarWideResNet depth must be 6n + 4 (10, 16, 22, 28, 40, ...), '
                             f'got {depth}')
        self.out_indices = _check_indices(out_indices, 3)
        n = (depth - 4) // 6
        channels = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        in_ch = 16
        self.stages = nn.ModuleList()
        for i, out_ch in enumerate(channels):
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(in_ch, out_ch, 2 if (i > 0 and j == 0) else 1,
                                          drop_rate))
                in_ch = out_ch
            self.stages.append(nn.Sequential(*blocks))
        self.final_bn = nn.BatchNorm2d(channels[-1])
        self.out_channels = tuple(channels)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        last = len(self.stages) - 1
        return forward_stages(self.stem(x), self.stages, self.out_indices,
                              lambda i, y: F.relu(self.final_bn(y)) if i == last else y)
