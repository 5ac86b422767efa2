# MIRFlickr-25k (1000 query / 4000 train / rest database, mAP@1000): list files under
# data/flickr25k/ (format: mmkd_plugins/datasets/multilabel_hashing.py), made from the official
# img.txt + targets.txt + fixed permutation flickr.txt by tools/hyp2_make_flickr25k_split.py.
# The official HyP2 code uses the 38 label columns (24 potential + 14 relevant).
_base_ = ['./multilabel_hashing.py']
dataset_type = 'Flickr25kHashing'
data_root = 'data/flickr25k/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, data_prefix='mirflickr'))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, data_prefix='mirflickr'))
test_dataloader = val_dataloader
val_evaluator = dict(topk=1000)
test_evaluator = val_evaluator
