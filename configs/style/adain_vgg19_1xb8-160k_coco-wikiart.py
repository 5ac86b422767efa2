# AdaIN (Huang & Belongie, ICCV 2017) baseline: normalised VGG19 encoder to relu4_1 (frozen),
# mirrored decoder, content + 10 x style loss, Adam 1e-4 with lr / (1 + 5e-5 iter), batch 8,
# content = MS-COCO, style = WikiArt, resize 512 + random crop 256, 160k iterations.
# Nothing is downloaded: put VGG19 weights at `vgg_checkpoint` (torchvision's vgg19-dcbb9e9d.pth
# or AdaIN's vgg_normalised.pth, see configs/style/README.md).
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)
default_scope = 'mmengine'  # the modules are in mmengine's root registries; 'mmagic' works too

vgg_checkpoint = 'checkpoints/vgg_normalised.pth'
model = dict(
    type='AdaINStyleTransfer',
    data_preprocessor=dict(type='StyleTransferDataPreprocessor'),
    encoder=dict(type='VGG19Encoder', checkpoint=vgg_checkpoint, padding_mode='reflect'),
    decoder=dict(type='AdaINDecoder'),
    content_weight=1.0,
    style_weight=10.0,
    style_layers=('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1'),
    alpha=1.0)

# ------------------------------------------------------------------ data
data_root = 'data/'
train_pipeline = [
    dict(type='LoadStylePair'),
    dict(type='ResizeCropStylePair', scale=512, crop_size=256, random_crop=True),
    dict(type='PackStylePairInputs'),
]
test_pipeline = [
    dict(type='LoadStylePair'),
    dict(type='ResizeCropStylePair', scale=512, crop_size=512, random_crop=False),
    dict(type='PackStylePairInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='UnpairedStyleDataset',
        data_root=data_root,
        content_root='coco/train2014',
        style_root='wikiart/train',
        pipeline=train_pipeline))
# evaluation on a small content x style grid (every content with every style), e.g. 10 x 10
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='UnpairedStyleDataset',
        data_root=data_root,
        content_root='style_eval/content',
        style_root='style_eval/style',
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='StyleTransferMetric')
test_evaluator = val_evaluator

# ------------------------------------------------------------------ schedule
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4))
param_scheduler = [dict(type='InverseTimeLR', decay=5e-5, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# ------------------------------------------------------------------ runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
