# MobileNetV1 baseline on ImageNet-1k (mmpretrain has no MobileNetV1; the backbone is
# mmkd_plugins' `MobileNetV1KD`). Standard ResNet-style recipe: 8 GPUs x 32 images, SGD lr 0.1,
# 100 epochs, steps at 30/60/90 (the schedule the NKD/MGD papers use for their MobileNetV1 student).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='MobileNetV1KD', widen_factor=1.0),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
