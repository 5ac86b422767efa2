# Shared data setting of the HyP2 multi-label hashing datasets: 224x224 inputs, batch 100, one
# val loop that encodes the query and the database sets (HashingMAP separates them by the 'split'
# flag). Each dataset file below sets the dataset type, the data root and mAP@K.
dataset_type = None  # set by the dataset file
data_root = None
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
