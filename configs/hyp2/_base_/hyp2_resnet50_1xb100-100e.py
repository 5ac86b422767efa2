# HyP2 with the ResNet-50 hashing network: model, SGD schedule (100 epochs), runtime. A config adds
# its dataset (./datasets/<name>.py) and the head's hash_bits / num_classes.
_base_ = [
    './models/hyp2_resnet50.py', './schedules/hyp2_sgd_100e.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

# ResNet-50: lr 0.02 for the network and the proxies. This is the official code's rate for its
# GoogLeNet (Inception-v3, 448 px) backbone, applied here to ResNet-50 by our choice: the official
# code sets no network lr for its 'resnet' option (selecting it stops with a NameError).
optim_wrapper = dict(optimizer=dict(lr=0.02),
                     paramwise_cfg=dict(custom_keys={'loss_module.proxies': dict(lr_mult=1.0)}))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2, save_best='auto'))
