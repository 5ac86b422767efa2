# ViT student baseline of the digits demo: 4 blocks, 32-d tokens, the same 4x4 token grid.
_base_ = ['./digits_vit_teacher.py']
model = dict(
    backbone=dict(arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)),
    head=dict(in_channels=32))
