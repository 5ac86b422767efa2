_base_ = ['./_base_/hyp2_resnet50_1xb100-100e.py', './_base_/datasets/nuswide21.py']

# 36-bit codes, 21 classes; the margin comes from the official (bits, classes) table
model = dict(head=dict(hash_bits=36, num_classes=21))
