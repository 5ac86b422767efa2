_base_ = [
    './_base_/models/hyp2_alexnet.py', './_base_/datasets/voc2012.py',
    './_base_/schedules/hyp2_sgd_100e.py', 'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

# 48-bit codes, 20 classes; the margin comes from the official (bits, classes) table
model = dict(head=dict(hash_bits=48, num_classes=20))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2, save_best='auto'))
