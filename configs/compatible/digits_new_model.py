# NEW model architecture of the compatible-upgrade demo: ResNet-18 (width 8) + 48-d embedding, trained on
# the NEW training set (all 10 classes) of the same split. Trained alone this is the "independent" upgrade
# (no compatibility); the BCT / RACT / UniBCT configs wrap it as the student of a CompatibleDistiller.
# Its 48-d embedding is compared with the 32-d old one by truncation (BCT's convention).
_base_ = ['./digits_old_model.py']

model = dict(
    backbone=dict(stem_channels=8, base_channels=8),
    neck=dict(in_channels=64, out_channels=48),
    head=dict(num_classes=10, in_channels=48))
data_preprocessor = dict(num_classes=10)
train_dataloader = dict(dataset=dict(split='new'))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
