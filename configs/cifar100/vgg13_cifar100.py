# VGG-13 (BN) on CIFAR-100. Teacher of the CIFAR-100 benchmark (train it first; the NKD configs read
# work_dirs/vgg13_cifar100/epoch_240.pth).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    backbone=dict(type='CifarVGG', depth=13),
    head=dict(in_channels=512))
