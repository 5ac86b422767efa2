# Optional static-image pretraining of SWEM: salient-object / segmentation image + mask folders
# turned into 3-frame synthetic clips by random affine warps. Initialise the main stage from the
# result with `load_from`. Folder names are an example: each holds images/ and masks/ (0/255 PNGs).
_base_ = ['./swem_r50_8xb1-150k_davis17-ytvos19-384.py']

static_root = 'data/static'
static_cfg = dict(type='StaticVOSDataset', img_dir='images', mask_dir='masks', num_frames=3,
                  crop_size=(384, 384), max_objects=1, rotation=20.0, scale=(0.9, 1.1), shear=10.0,
                  translate=0.1, binary_masks=True)
train_dataloader = dict(
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(data_root=f'{static_root}/{name}', **static_cfg)
        for name in ('ecssd', 'DUTS-TR', 'DUTS-TE', 'HRSOD', 'fss')
    ]))
# no curriculum for static clips; shorter schedule, decay at 80%
custom_hooks = []
train_cfg = dict(max_iters=150000, val_interval=150000)
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[120000], gamma=0.1)]
default_hooks = dict(checkpoint=dict(save_best=None))
