# ViT student baseline of the digits demo: 2 blocks, 16-d tokens, the same 4x4 token grid and the
# same schedule as the teacher.
_base_ = ['./digits_vit_teacher.py']
model = dict(
    backbone=dict(arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)),
    head=dict(in_channels=16))
