# MIRFlickr-25k (1000 query / 4000 train / rest database, mAP@1000): list files under
# data/flickr25k/ (format: mmkd_plugins/datasets/multilabel_hashing.py).
# The official HyP2 code uses the 38 label columns (24 potential + 14 relevant).
dataset_type = 'Flickr25kHashing'
data_root = 'data/flickr25k/'
meta_keys = ('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'split')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224)),
    dict(type='PackInputs', meta_keys=meta_keys),
]
train_dataloader = dict(
    batch_size=100,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix='mirflickr', split='train',
                 pipeline=train_pipeline))
# one loop encodes the queries and the database; HashingMAP separates them by the 'split' flag
val_dataloader = dict(
    batch_size=100,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix='mirflickr',
                 split=['query', 'database'], pipeline=test_pipeline))
val_evaluator = dict(type='HashingMAP', topk=1000, hamming_radius=2)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
