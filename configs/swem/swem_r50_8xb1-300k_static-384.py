# SWEM static-image pre-training as the official code trains it (lmm077/SWEM stage 0:
# datasets/static_dataset.py StaticTransformDataset, configs/config.py PRETRAIN_*): each clip is the
# first image's background (its object painted with its mean colour) with the objects of two images
# pasted at random sizes / places per frame; clip zoom 0.8-1.5, flip, jitter, grey; per frame affine
# (20 deg, 0.9-1.1, shear 10), shorter side 384, 384x384 crop, jitter, thin-plate spline (0.3);
# sub-sets mixed 5:5:1:1:1; 300k iterations, x0.1 at 150k. Initialise the main stage from the result
# with `load_from`. Data: the STCN / SWEM pre-training folders JPEGImages/<set>/, Annotations/<set>/.
_base_ = ['./swem_r50_8xb1-150k_davis17-ytvos19-384.py']

static_root = 'data/static'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='StaticPasteDataset',
        data_root=static_root,
        subsets=['BIG_small', 'HRSOD_small', 'FSS', 'ECSSD', 'DUTS'],
        ratios=[5, 5, 1, 1, 1],
        num_images=2,
        pipeline=[
            dict(type='PasteObjectsClip', num_frames=3, object_area=(0.16, 0.81)),
            dict(type='StaticClipAugment', clip_scale=(0.8, 1.5), clip_jitter=(0.1, 0.05, 0.05, 0.05),
                 degrees=20.0, frame_scale=(0.9, 1.1), shear=10.0, short_side=384,
                 crop_size=(384, 384), frame_jitter=(0.1, 0.05, 0.05)),
            dict(type='RandomClipTPS', noise=0.3, anchors=4, prob=1.0),
            dict(type='PackVOSClip', max_objects=2),
        ]))
# no frame-skip curriculum for synthetic clips
custom_hooks = []
train_cfg = dict(max_iters=300000, val_interval=300000)
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[150000], gamma=0.1)]
default_hooks = dict(checkpoint=dict(save_best=None))
