# ViT student baseline of the digits demo: 2 blocks, 16-d tokens, the same 4x4 token grid as the
# teacher, trained on a fixed class-balanced subset of 50 images per class (500 of the 1347 train
# images; the teacher saw all of them), 60 epochs of AdamW at batch 32.
_base_ = ['./digits_vit_teacher.py']
model = dict(
    backbone=dict(arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)),
    head=dict(in_channels=16))
train_dataloader = dict(batch_size=32, dataset=dict(per_class=50))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=60)
train_cfg = dict(max_epochs=60, val_interval=60)
default_hooks = dict(checkpoint=dict(interval=60))
