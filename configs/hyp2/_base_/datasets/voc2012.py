# PASCAL VOC 2012 (train = db = train, query = val, mAP@5717 = whole db): list files under
# data/VOCdevkit/VOC2012/ (format: mmkd_plugins/datasets/multilabel_hashing.py).
# Make the lists with mmkd_plugins.datasets.multilabel_hashing.voc_hashing_list.
dataset_type = 'VOC2012Hashing'
data_root = 'data/VOCdevkit/VOC2012/'
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
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix='', split='train',
                 pipeline=train_pipeline))
# one loop encodes the queries and the database; HashingMAP separates them by the 'split' flag
val_dataloader = dict(
    batch_size=100,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix='',
                 split=['query', 'database'], pipeline=test_pipeline))
val_evaluator = dict(type='HashingMAP', topk=5717, hamming_radius=2)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
