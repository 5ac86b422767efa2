# The canonical CIFAR-100 distillation setting (CRD / DKD benchmark): 240 epochs, batch 64 on one
# GPU, SGD lr 0.05 momentum 0.9, weight decay 5e-4, lr x0.1 at epochs 150, 180 and 210; random
# crop 32 (padding 4) and horizontal flip. Data: mmpretrain's CIFAR100 dataset in data/cifar100.
_base_ = [
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

# the benchmark's classifiers: backbone -> global average pooling -> linear layer (100 classes);
# each model config adds its backbone and the head's in_channels
model = dict(
    type='ImageClassifier',
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=100,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=False))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[150, 180, 210], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=240, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2))
