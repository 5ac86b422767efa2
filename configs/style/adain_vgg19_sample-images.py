# AdaIN baseline on scikit-image's bundled sample photos (a smoke-scale run on CPU):
#   python tools/style_transfer.py --export-samples data/style_samples
#   python tools/train.py configs/style/adain_vgg19_sample-images.py
# 4 contents (astronaut, coffee, chelsea, rocket) x 4 styles (Hubble deep field,
# immunohistochemistry, colour wheel, gravel); evaluation on the full 4 x 4 grid.
_base_ = './adain_vgg19_1xb8-160k_coco-wikiart.py'

data_root = 'data/style_samples'
train_pipeline = [
    dict(type='LoadStylePair'),
    dict(type='ResizeCropStylePair', scale=256, crop_size=128, random_crop=True),
    dict(type='PackStylePairInputs'),
]
test_pipeline = [
    dict(type='LoadStylePair'),
    dict(type='ResizeCropStylePair', scale=256, crop_size=256, random_crop=False),
    dict(type='PackStylePairInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, content_root='content', style_root='style', num_pairs=64,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, content_root='content', style_root='style',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=400, val_interval=200)
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=200, max_keep_ckpts=1))
