# WRN-40-2 on CIFAR-100. Teacher of the CIFAR-100 benchmark (train it first; the NKD configs read
# work_dirs/wrn40-2_cifar100/epoch_240.pth).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarWideResNet', depth=40, widen_factor=2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
