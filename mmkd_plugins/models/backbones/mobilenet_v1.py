"""MobileNetV1 (Howard et al. 2017) for ImageNet: 3x3 stem + 13 depthwise-separable blocks.

mmpretrain has no MobileNetV1, which is the student of the NKD/MGD ImageNet benchmarks
(ResNet-50 -> MobileNetV1). Registered as ``'MobileNetV1KD'`` so that it can never shadow an
upstream ``MobileNetV1``. The blocks are grouped into five stages by output stride (2, 4, 8, 16,
32); the last stage gives (N, 1024, 7, 7) for 224x224 inputs.
"""
from typing import Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from .cifar_resnet import _DEFAULT_INIT, _check_indices, forward_stages

# (out_channels, stride) of the depthwise-separable blocks, grouped by stage
_STAGES = (
    ((64, 1), ),
    ((128, 2), (128, 1)),
    ((256, 2), (256, 1)),
    ((512, 2), ) + ((512, 1), ) * 5,
    ((1024, 2), (1024, 1)),
)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class DepthwiseSeparable(nn.Sequential):
    """Depthwise conv3x3-BN-ReLU then pointwise conv1x1-BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__(
            conv_bn_relu(in_ch, in_ch, 3, stride, groups=in_ch), conv_bn_relu(in_ch, out_ch, 1, 1))


@MODELS.register_module()
class MobileNetV1KD(BaseModule):
    """MobileNetV1 backbone (registered as ``'MobileNetV1KD'``).

    Args:
        widen_factor: channel multiplier (alpha of the paper).
        out_indices: which of the 5 stages to return.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 widen_factor: float = 1.0,
                 out_indices: Union[int, Sequence[int]] = (4, ),
                 init_cfg: Optional[Union[dict, list]] = _DEFAULT_INIT) -> None:
        super().__init__(init_cfg)
        if widen_factor <= 0:
            raise ValueError(f'widen_factor must be positive, got {widen_factor}')
        self.out_indices = _check_indices(out_indices, len(_STAGES))

        def ch(c: int) -> int:
            return max(8, int(round(c * widen_factor)))

        in_ch = ch(32)
        self.stem = conv_bn_relu(3, in_ch, 3, 2)
        self.stages = nn.ModuleList()
        channels = []
        for stage in _STAGES:
            blocks = []
            for out_ch, stride in stage:
                blocks.append(DepthwiseSeparable(in_ch, ch(out_ch), stride))
                in_ch = ch(out_ch)
            self.stages.append(nn.Sequential(*blocks))
            channels.append(in_ch)
        self.out_channels = tuple(channels)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return forward_stages(self.stem(x), self.stages, self.out_indices)
