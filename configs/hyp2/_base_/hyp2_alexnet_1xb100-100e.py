# HyP2 with the AlexNet hashing network: model, SGD schedule (100 epochs), runtime. A config adds
# its dataset (./datasets/<name>.py) and the head's hash_bits / num_classes.
_base_ = [
    './models/hyp2_alexnet.py', './schedules/hyp2_sgd_100e.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2, save_best='auto'))
