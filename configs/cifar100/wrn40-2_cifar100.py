# WRN-40-2 on CIFAR-100. Teacher of the CIFAR-100 benchmark (train it first; the NKD configs read
# work_dirs/wrn40-2_cifar100/epoch_240.pth).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    backbone=dict(type='CifarWideResNet', depth=40, widen_factor=2),
    head=dict(in_channels=128))
