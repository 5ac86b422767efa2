_base_ = ['./_base_/hyp2_alexnet_1xb100-100e.py', './_base_/datasets/voc2012.py']

# 16-bit codes, 20 classes; the margin comes from the official (bits, classes) table
model = dict(head=dict(hash_bits=16, num_classes=20))
