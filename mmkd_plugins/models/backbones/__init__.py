"""Small backbones the upstream codebases lack: CIFAR-style ResNet / WRN / VGG (the canonical
CIFAR-100 distillation benchmark), MobileNetV1 (ImageNet NKD/MGD students) and AlexNet conv
layers that accept an ``init_cfg`` (HyP2)."""
from .alexnet import AlexNetConv  # noqa: F401
from .cifar_resnet import CifarResNet  # noqa: F401
from .cifar_vgg import CifarVGG  # noqa: F401
from .cifar_wrn import CifarWideResNet  # noqa: F401
from .mobilenet_v1 import MobileNetV1KD  # noqa: F401
