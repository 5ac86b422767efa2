# UniBCT on ImageNet-1k: CE over normalise(f) . P against the structurally refined old (R18) prototypes,
# recomputed with the current new model by UniBCTPrototypeHook (per class over its samples; no C x C
# matrix). The reference refreshes at epochs 10 and 20 of 25 (term on from 10); over mmpretrain's 100-epoch
# ResNet-50 schedule the same fractions are epochs 40 and 80. Evaluated also by TAR@FAR on pairs.
_base_ = ['./bct_resnet50_resnet18-old_8xb32_in1k.py']
model = dict(distill_losses=dict(
    _delete_=True,
    loss_unibct=dict(type='UniBCTLoss', num_classes=1000, loss_weight=1.0,
                     inputs=dict(new='student.emb', labels='gt_labels'))))
custom_hooks = [
    dict(type='UniBCTPrototypeHook', epochs=(40, 80), lam=0.9, temperature=0.05, num_workers=8)
]
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='HotRefreshMetric', fractions=11, order='entropy', num_queries=5000, topk=100),
    dict(type='FaceVerificationMetric', fars=(1e-4, 1e-3, 1e-2), max_pairs=1000000)
]
test_evaluator = val_evaluator
