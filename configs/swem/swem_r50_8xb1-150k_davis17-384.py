# SWEM trained on DAVIS-2017 train only (official stage 1: 60k iterations, x0.1 at 50k), otherwise as
# the main config.
_base_ = ['./swem_r50_8xb1-150k_davis17-ytvos19-384.py']

train_dataloader = dict(dataset=dict(_delete_=True, **_base_.davis_train))
train_cfg = dict(max_iters=60000)
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[50000], gamma=0.1)]
