_base_ = ['./_base_/hyp2_alexnet_1xb100-100e.py', './_base_/datasets/flickr25k.py']

# 24-bit codes, 38 classes; the margin comes from the official (bits, classes) table
model = dict(head=dict(hash_bits=24, num_classes=38))
