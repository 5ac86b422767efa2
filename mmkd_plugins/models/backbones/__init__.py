"""Small backbones the upstream codebases lack: CIFAR-style ResNet / WRN / VGG (the canonical
CIFAR-100 distillation benchmark) and MobileNetV1 (ImageNet NKD/MGD students)."""
from .cifar_resnet import CifarResNet  # noqa: F401
from .cifar_vgg import CifarVGG  # noqa: F401
from .cifar_wrn import CifarWideResNet  # noqa: F401
from .mobilenet_v1 import MobileNetV1KD  # noqa: F401
