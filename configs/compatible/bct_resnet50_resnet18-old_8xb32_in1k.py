# BCT on ImageNet-1k (openBCT's architectures): new ResNet-50 (2048-d GAP embedding) trained backward
# compatible with an old ResNet-18 (512-d): influence loss through the frozen R18 classifier; the new
# embedding is truncated to 512 dims when compared with the old one. The old model is mmpretrain's R18
# trained on ALL of ImageNet-1k (openBCT's old R18 saw 50 % of the training set, so its 39.5 / 42.2 top-1
# do not apply here), and all 1000 classes are old; for the extended-class protocol train the old model
# on a class subset and set BCTLoss.num_classes=1000 (new-class rows: means of normalised old features).
# Old model weights: mmpretrain's resnet18_8xb32_in1k_20210831-fbbb1da6.pth from
#   https://download.openmmlab.com/mmclassification/v0/resnet/
# into checkpoints/ (or set --cfg-options model.teacher_ckpt=PATH).
_base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py']
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='CompatibleDistiller',
    student=_base_.model,
    teacher='mmpretrain::resnet/resnet18_8xb32_in1k.py',
    # downloaded once into $TORCH_HOME/hub/checkpoints; offline: put the file in checkpoints/ and
    # set --cfg-options model.teacher_ckpt=checkpoints/resnet18_8xb32_in1k_20210831-fbbb1da6.pth
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/resnet18_8xb32_in1k_20210831-fbbb1da6.pth',
    teacher_forward='extract_feat',
    old_classifier='head.fc',
    student_taps=dict(emb=dict(module='neck', idx=-1)),
    teacher_taps=dict(emb=dict(module='neck', idx=-1)),
    distill_losses=dict(loss_bct=dict(
        type='BCTLoss', num_classes=1000, loss_weight=1.0,
        inputs=dict(new='student.emb', old='teacher.emb', labels='gt_labels'))))
# retrieval on the val set: 5000 random queries against the 50k gallery, entropy backfilling
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='HotRefreshMetric', fractions=11, order='entropy', num_queries=5000, topk=100)
]
test_evaluator = val_evaluator
