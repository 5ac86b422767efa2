# PASCAL VOC 2007 (train = db = trainval, query = test, mAP@5011 = whole db): list files under
# data/VOCdevkit/VOC2007/ (format: mmkd_plugins/datasets/multilabel_hashing.py).
# Make the lists with mmkd_plugins.datasets.multilabel_hashing.voc_hashing_list.
_base_ = ['./multilabel_hashing.py']
dataset_type = 'VOC2007Hashing'
data_root = 'data/VOCdevkit/VOC2007/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(topk=5011)
test_evaluator = val_evaluator
