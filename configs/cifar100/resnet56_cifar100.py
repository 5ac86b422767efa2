# ResNet-56 on CIFAR-100. Teacher of the CIFAR-100 benchmark (train it first; the NKD configs read
# work_dirs/resnet56_cifar100/epoch_240.pth).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    backbone=dict(type='CifarResNet', depth=56, stem_channels=16, stage_channels=(16, 32, 64)),
    head=dict(in_channels=64))
