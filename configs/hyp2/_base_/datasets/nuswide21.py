# NUS-WIDE, 21 most frequent concepts (10500 train / 2100 query, mAP@5000): list files under
# data/nus_wide/ (format: mmkd_plugins/datasets/multilabel_hashing.py).
# List files train.txt / test.txt / database.txt as in the public code.
_base_ = ['./multilabel_hashing.py']
dataset_type = 'NUSWIDEHashing'
data_root = 'data/nus_wide/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(topk=5000)
test_evaluator = val_evaluator
