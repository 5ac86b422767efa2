# ResNet-32x4 on CIFAR-100. Teacher of the CIFAR-100 benchmark (train it first; the NKD configs read
# work_dirs/resnet32x4_cifar100/epoch_240.pth).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    backbone=dict(type='CifarResNet', depth=32, stem_channels=32, stage_channels=(64, 128, 256)),
    head=dict(in_channels=256))
