# ResNet-20 on CIFAR-100. Student baseline of the CIFAR-100 benchmark (no distillation).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    backbone=dict(type='CifarResNet', depth=20, stem_channels=16, stage_channels=(16, 32, 64)),
    head=dict(in_channels=64))
