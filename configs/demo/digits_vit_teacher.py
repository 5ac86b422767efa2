# ViT teacher of the digits demo: 6 blocks, 64-d tokens, 4x4 patches (a 4x4 token grid + cls token).
_base_ = ['../_base_/digits_cls.py']
model = dict(
    type='ImageClassifier',
    backbone=dict(type='VisionTransformer', img_size=16, patch_size=4, drop_rate=0.0,
                  arch=dict(embed_dims=64, num_layers=6, num_heads=4, feedforward_channels=128)),
    neck=None,
    head=dict(type='VisionTransformerClsHead', num_classes=10, in_channels=64,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'.cls_token': dict(decay_mult=0.0),
                                    '.pos_embed': dict(decay_mult=0.0)}))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=40)
train_cfg = dict(max_epochs=40, val_interval=40)
default_hooks = dict(checkpoint=dict(interval=40))
