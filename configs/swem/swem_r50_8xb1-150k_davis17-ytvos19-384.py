# SWEM main stage (arXiv 2208.10128; official code lmm077/SWEM, train_swem_s3.sh + configs/config.py):
# DAVIS-2017 train (5 samples per video) + YouTube-VOS-2019 train (official 3,464-video subset),
# 3-frame clips, <= 2 objects, 384x384 crops, per-dataset frame-skip curricula, random time reversal,
# AdamW 2e-5, 150k iterations (x0.1 at 125k), total batch 8 (8 GPUs x 1 clip), BN running statistics
# frozen (affine parameters trained). Evaluated on DAVIS-2017 val at 480x864.
# No upstream OpenMMLab config exists for VOS, so this file is self-contained.
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

# official set_bn_eval: BN layers in eval mode (running statistics frozen), affine parameters trained
bn_eval = dict(norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True)
model = dict(
    type='SWEM',
    data_preprocessor=dict(type='VOSDataPreprocessor', mean=(123.675, 116.28, 103.53),
                           std=(58.395, 57.12, 57.375)),
    # key encoder: ResNet-50 up to layer3 -> strides 4 (256 ch), 8 (512), 16 (1024)
    key_backbone=dict(type='mmpretrain.ResNet', depth=50, num_stages=3, strides=(1, 2, 2),
                      dilations=(1, 1, 1), out_indices=(0, 1, 2), **bn_eval,
                      init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    # value encoder: ResNet-18 with 5 input channels (RGB, own mask, others) up to layer3 (256 ch);
    # conv1 keeps the ImageNet RGB filters, its 2 extra input channels are initialised orthogonally
    value_backbone=dict(type='mmpretrain.ResNet', depth=18, in_channels=5, num_stages=3,
                        strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2, ), **bn_eval,
                        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    value_extra_channel_init='orthogonal',
    key_channels=(1024, 512, 256),
    value_backbone_channels=256,
    key_dim=128,
    value_dim=512,
    decoder_channels=256,
    memory=dict(type='SWEMMemory', num_bases=128, num_iters=4, tau=0.05, top_l=64),
    # official losses: bootstrapped CE with the top-p hardest pixels of each clip and frame, plus the
    # soft IoU of every softmax channel (background included); both averaged over the predicted frames
    loss_ce=dict(type='VOSBootstrappedCELoss', start_iter=20000, end_iter=70000, p_start=1.0,
                 p_end=0.3, loss_weight=1.0, top_p_over='clip_frame'),
    loss_iou=dict(type='VOSIoULoss', loss_weight=1.0, channels='softmax'),
    frame_reduction='mean')

davis_root = 'data/DAVIS'  # JPEGImages/480p, Annotations/480p, ImageSets/2017
ytvos_root = 'data/YouTube-VOS-2019'  # train/JPEGImages, train/Annotations, train/meta.json
# Official per-clip / per-frame augmentation (VOSDataset defaults): flip + random-resized crop (area
# 36-100%) + colour jitter (0.1, 0.03, 0.03) + grayscale 5% per clip; affine (15 deg, shear 10),
# jitter (0.01) and a thin-plate-spline warp per frame; clips reversed in time with p = 0.5. A video
# whose first clip frame shows no object in 5 draws is trained on as an empty clip (a warning names it).
clip_cfg = dict(num_frames=3, max_objects=2, crop_size=(384, 384), crop_scale=(0.36, 1.0),
                flip_prob=0.5, reverse_prob=0.5, max_retries=5, on_no_object='empty')
# max_skip: peak of each dataset's frame-skip curriculum (VOSFrameSkipHook below)
davis_train = dict(type='VOSDataset', data_root=davis_root, layout='davis', split='train', year='2017',
                   max_skip=25, **clip_cfg)
# YouTube-VOS: the official 3,464-video training list (yv_subset.txt of the SWEM / STCN repositories,
# put into data_root) and frames at 480p, as the official code reads them (train_480p)
ytvos_train = dict(type='VOSDataset', data_root=ytvos_root, layout='youtube', split='train',
                   subset_file='yv_subset.txt', train_short_side=480, max_skip=5, **clip_cfg)
train_dataloader = dict(
    batch_size=1,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='ConcatDataset',
                 datasets=[ytvos_train, dict(type='RepeatDataset', times=5, dataset=davis_train)]))

# DAVIS inference as the official evaluator: frames resized (bicubic) to 480x864, masks returned at
# the original size
davis_val = dict(type='VOSDataset', data_root=davis_root, layout='davis', split='val', year='2017',
                 test_mode=True, test_size=(480, 864), test_interpolation='bicubic')
val_dataloader = dict(batch_size=1, num_workers=2, persistent_workers=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      collate_fn=dict(type='pseudo_collate'), dataset=davis_val)
test_dataloader = val_dataloader
val_evaluator = dict(type='DAVISMetric')
test_evaluator = val_evaluator

# YouTube-VOS valid (server evaluation; tools/vos_inference.py --dataloader ytvos_test_dataloader):
# every frame of valid_all_frames is segmented and memorised, only the frames of valid/JPEGImages are
# written; shorter side 480 (never enlarged), both sides rounded to multiples of 16 (official).
ytvos_test_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False), collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='VOSDataset', data_root='data/YouTube-VOS-2018', layout='youtube',
                 split='valid', frames_split='valid_all_frames', test_mode=True,
                 test_short_side=480, test_size_divisor=16))

train_cfg = dict(type='IterBasedTrainLoop', max_iters=150000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-5, betas=(0.9, 0.999),
                                                          eps=1e-8, weight_decay=5e-4))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[125000], gamma=0.1)]
auto_scale_lr = dict(enable=False, base_batch_size=8)

# official per-dataset frame-skip curricula: 0 -> max_skip over the first 10% of training, then down
# to 40% of it between 80% and 90% (DAVIS 25 -> 10, YouTube-VOS 5 -> 2)
custom_hooks = [dict(type='VOSFrameSkipHook', policy='swem', ramp_end=0.1, decay=(0.8, 0.9),
                     final_ratio=0.4)]

default_scope = None
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000, max_keep_ckpts=3,
                    save_best='davis/J&F-Mean', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None)
