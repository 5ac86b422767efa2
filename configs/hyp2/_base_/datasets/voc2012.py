# PASCAL VOC 2012 (train = db = train, query = val, mAP@5717 = whole db): list files under
# data/VOCdevkit/VOC2012/ (format: mmkd_plugins/datasets/multilabel_hashing.py).
# Make the lists with mmkd_plugins.datasets.multilabel_hashing.voc_hashing_list.
_base_ = ['./multilabel_hashing.py']
dataset_type = 'VOC2012Hashing'
data_root = 'data/VOCdevkit/VOC2012/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(topk=5717)
test_evaluator = val_evaluator
