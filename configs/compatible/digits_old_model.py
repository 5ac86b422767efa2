# OLD model of the compatible-upgrade demo: ResNet-18 (width 4) + 32-d embedding (LinearNeck) + a
# classifier over the 5 OLD classes of the digits "extended-class" split (see CompatibleSplitDataset).
_base_ = ['../_base_/digits_cls.py']

scenario = dict(scenario='extended-class', old_class_ratio=0.5, test_ratio=0.2, seed=0)
digits = dict(type='DigitsDataset', split='all', image_size=16)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=4, base_channels=4),
    neck=dict(type='LinearNeck', in_channels=32, out_channels=32, gap_dim=2),
    head=dict(type='LinearClsHead', num_classes=5, in_channels=32,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
data_preprocessor = dict(num_classes=5)

train_dataloader = dict(dataset=dict(
    _delete_=True, type='CompatibleSplitDataset', split='old',
    dataset=dict(digits, pipeline=[dict(type='PackInputs')]), **scenario))
# gallery / queries: the held-out test part (all 10 classes)
val_dataloader = dict(dataset=dict(
    _delete_=True, type='CompatibleSplitDataset', split='test',
    dataset=dict(digits, pipeline=[dict(type='PackInputs')]), **scenario))
test_dataloader = val_dataloader
# (items of the 5 new classes count as errors for the old model)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
