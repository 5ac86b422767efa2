# ResNet-8x4 on CIFAR-100. Student baseline of the CIFAR-100 benchmark (no distillation).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    backbone=dict(type='CifarResNet', depth=8, stem_channels=32, stage_channels=(64, 128, 256)),
    head=dict(in_channels=256))
