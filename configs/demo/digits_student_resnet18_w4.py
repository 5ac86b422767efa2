# Baseline student of the digits demo: the same ResNet-18 at a quarter of the width (4), trained on a
# fixed class-balanced subset of 20 images per class (200 of the 1347 train images; the teacher saw
# all of them), 40 epochs at batch 32. The small data makes the teacher-student gap large (about 90
# vs. 98 top-1), so that distillation has something to transfer.
_base_ = ['../_base_/digits_cls.py']
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=4, base_channels=4),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=32,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
train_dataloader = dict(batch_size=32, dataset=dict(per_class=20))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=40)
train_cfg = dict(max_epochs=40, val_interval=40)
default_hooks = dict(checkpoint=dict(interval=40))
