# UniBCT on ImageNet-1k: compatibility against kNN-refined old class prototypes (class means of the old
# R18 embeddings, accumulated online), cosine softmax with scale 30. Evaluated also by TAR@FAR on pairs.
_base_ = ['./bct_resnet50_resnet18-old_8xb32_in1k.py']
model = dict(distill_losses=dict(
    _delete_=True,
    loss_unibct=dict(type='UniBCTLoss', num_classes=1000, scale=30.0, margin=0.0,
                     refine=dict(k=10, temperature=0.1, num_iters=1, alpha=0.0), loss_weight=1.0,
                     inputs=dict(new='student.emb', old='teacher.emb', labels='gt_labels'))))
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='HotRefreshMetric', fractions=11, order='entropy', num_queries=5000, topk=100),
    dict(type='FaceVerificationMetric', fars=(1e-4, 1e-3, 1e-2), max_pairs=1000000)
]
test_evaluator = val_evaluator
