# AlexNet hashing network of the HyP2 paper: conv features -> fc6 -> fc7 -> Linear(4096, K), no tanh.
# AlexNetConv (mmkd_plugins; mmpretrain's AlexNet takes no init_cfg) gives the 256x6x6 conv map at
# 224x224; the head flattens it.
# ImageNet weights: torchvision's AlexNet (conv layers into the backbone, fc6/fc7 into the head MLP).
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='AlexNetConv',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://alexnet')),
    neck=None,
    head=dict(
        type='HashHead',
        hash_bits=48,
        num_classes=20,
        in_channels=256 * 6 * 6,
        hidden_channels=(4096, 4096),
        dropout=0.5,
        loss=dict(type='HyP2Loss', beta=0.5, margin=None),
        mlp_init_cfg=dict(type='Pretrained', checkpoint='torchvision://alexnet',
                          prefix='classifier.'),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01)))
