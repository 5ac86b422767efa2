"""AdaIN decoder: the mirror image of :class:`VGG19Encoder` up to relu4_1.

Pooling layers become nearest-neighbour 2x upsampling and every convolution is 3x3 with reflection
padding (to avoid border artefacts), as in AdaIN::

    conv(512->256) relu up
    conv(256->256) relu x3, conv(256->128) relu up
    conv(128->128) relu, conv(128->64) relu up
    conv(64->64) relu, conv(64->3)            (no output activation)

The output is an RGB image in the encoder's input range (``[0, 1]`` here), not clamped while
training.
"""
from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

__all__ = ['AdaINDecoder']


@MODELS.register_module()
class AdaINDecoder(BaseModule):
    """Decoder ``g`` mapping relu4_1-sized features ``(N, C4, H/8, W/8)`` to ``(N, 3, H, W)``.

    Args:
        width: channel multiplier; must equal the encoder's.
        padding_mode: ``'reflect'`` (AdaIN) or ``'zeros'``.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 width: float = 1.0,
                 padding_mode: str = 'reflect',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if width <= 0:
            raise ValueError(f'width must be positive, got {width}')

        def ch(c: int) -> int:
            return max(1, int(round(c * width)))

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding_mode)

        self.width = float(width)
        self.in_channels = ch(512)
        c4, c3, c2, c1 = ch(512), ch(256), ch(128), ch(64)
        # stages separated by the 2x upsamplings
        self.stage4 = nn.ModuleList([conv(c4, c3)])
        self.stage3 = nn.ModuleList([conv(c3, c3), conv(c3, c3), conv(c3, c3), conv(c3, c2)])
        self.stage2 = nn.ModuleList([conv(c2, c2), conv(c2, c1)])
        self.stage1 = nn.ModuleList([conv(c1, c1)])
        self.to_rgb = conv(c1, 3)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f'AdaINDecoder(width={self.width}) expects (N, {self.in_channels}, '
                             f'h, w) relu4_1 features, got {tuple(x.shape)}')
        for stage in (self.stage4, self.stage3, self.stage2):
            for layer in stage:
                x = F.relu(layer(x))
            x = F.interpolate(x, scale_factor=2, mode='nearest')
        for layer in self.stage1:
            x = F.relu(layer(x))
        return self.to_rgb(x)
