# HyP2 training schedule: SGD (momentum 0.9, wd 5e-4), network lr 0.01 (the official AlexNet rate;
# the official GoogLeNet rate is 0.02, which our ResNet-50 configs borrow), proxies lr 0.02 through a
# paramwise lr multiplier, StepLR(10, 0.5), 100 epochs.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'loss_module.proxies': dict(lr_mult=2.0)}))
param_scheduler = dict(type='StepLR', by_epoch=True, step_size=10, gamma=0.5)
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=100)
