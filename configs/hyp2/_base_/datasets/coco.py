# MS-COCO, 80 classes (train / query / database lists, mAP@5000): list files under data/coco/
# (format: mmkd_plugins/datasets/multilabel_hashing.py).
# List files train.txt / test.txt / database.txt as in the public code.
dataset_type = 'COCOHashing'
data_root = 'data/coco/'
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
val_evaluator = dict(type='HashingMAP', topk=5000, hamming_radius=2)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
