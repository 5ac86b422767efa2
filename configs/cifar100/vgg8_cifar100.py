# VGG-8 (BN) on CIFAR-100. Student baseline of the CIFAR-100 benchmark (no distillation).
_base_ = ['./_base_/cifar100_bs64_240e.py']

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarVGG', depth=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
