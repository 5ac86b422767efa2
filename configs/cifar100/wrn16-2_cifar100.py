# WRN-16-2 on CIFAR-100. Student baseline of the CIFAR-100 benchmark (no distillation).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    backbone=dict(type='CifarWideResNet', depth=16, widen_factor=2),
    head=dict(in_channels=128))
