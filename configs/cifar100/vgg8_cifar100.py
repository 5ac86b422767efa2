# VGG-8 (BN) on CIFAR-100. Student baseline of the CIFAR-100 benchmark (no distillation).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    backbone=dict(type='CifarVGG', depth=8),
    head=dict(in_channels=512))
