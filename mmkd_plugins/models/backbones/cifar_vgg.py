"""CIFAR VGG with BatchNorm (VGG-8/11/13/16/19), as used by the CIFAR-100 KD benchmark.

Five stages of conv3x3-BN-ReLU layers with 64, 128, 256, 512, 512 channels; 2x2 max pooling after
the first four. For 32x32 inputs the output is (N, 512, 2, 2); a global-average-pooling neck and a
linear head complete the classifier.
"""
from typing import Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from .cifar_resnet import _DEFAULT_INIT, _check_indices, conv_bn_relu

# convolutions per stage
_VGG_DEPTHS = {8: (1, 1, 1, 1, 1), 11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
               19: (2, 2, 4, 4, 4)}
_VGG_CHANNELS = (64, 128, 256, 512, 512)


@MODELS.register_module()
class CifarVGG(BaseModule):
    """CIFAR VGG-BN backbone (registered as ``'CifarVGG'``).

    Args:
        depth: 8, 11, 13, 16 or 19.
        out_indices: which stages (0..4) to return (stage outputs before pooling).
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 depth: int = 13,
                 out_indices: Union[int, Sequence[int]] = (4, ),
                 init_cfg: Optional[Union[dict, list]] = _DEFAULT_INIT) -> None:
        super().__init__(init_cfg)
        if depth not in _VGG_DEPTHS:
            raise ValueError(f'CifarVGG depth must be one of {sorted(_VGG_DEPTHS)}, got {depth}')
        self.out_indices = _check_indices(out_indices, 5)
        in_ch = 3
        self.stages = nn.ModuleList()
        for num_convs, out_ch in zip(_VGG_DEPTHS[depth], _VGG_CHANNELS):
            layers = []
            for _ in range(num_convs):
                layers.append(conv_bn_relu(in_ch, out_ch))
                in_ch = out_ch
            self.stages.append(nn.Sequential(*layers))
        self.pool = nn.MaxPool2d(2, 2)
        self.out_channels = _VGG_CHANNELS

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
            if i < len(self.stages) - 1:
                x = self.pool(x)
        return tuple(outs)
