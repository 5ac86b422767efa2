"""AlexNet's convolutional layers as a backbone that takes an ``init_cfg``.

mmpretrain's ``AlexNet.__init__(num_classes=-1)`` accepts no ``init_cfg``, so a config cannot point
it at the ImageNet weights (``TypeError`` at build). ``AlexNetConv`` has the same layers under the
same names as torchvision's AlexNet ``features`` (conv 11/4 64, pool, conv 5 192, pool, conv 3 384,
conv 3 256, conv 3 256, pool), so ``init_cfg=dict(type='Pretrained', checkpoint='torchvision://alexnet')``
loads them by name. Output: ``(x, )`` with x (N, 256, 6, 6) for 224x224 inputs, as mmpretrain's
``AlexNet(num_classes=-1)``.
"""
from typing import Optional, Tuple

import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class AlexNetConv(BaseModule):
    """AlexNet conv features (torchvision layout ``features.*``) with an ``init_cfg``."""

    def __init__(self, init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        return (self.features(x), )
