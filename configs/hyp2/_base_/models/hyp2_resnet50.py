# ResNet-50 hashing network: pooled 2048-d feature -> Linear(2048, K), no tanh.
_base_ = 'mmpretrain::_base_/models/resnet50.py'

model = dict(
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
            'resnet50_8xb32_in1k_20210831-ea4938fc.pth',
            prefix='backbone')),
    head=dict(
        _delete_=True,
        type='HashHead',
        hash_bits=48,
        num_classes=20,
        in_channels=2048,
        loss=dict(type='HyP2Loss', beta=0.5, margin=None),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01)))
