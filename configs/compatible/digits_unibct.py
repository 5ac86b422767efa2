# UniBCT: new-model cross-entropy + cosine-softmax compatibility loss against old-model class prototypes
# (class means of the old embeddings on the new training data) after kNN-graph structural refinement.
_base_ = ['./_compatible_base.py']
model = dict(distill_losses=dict(loss_unibct=dict(
    type='UniBCTLoss', num_classes=10, scale=16.0, margin=0.0,
    refine=dict(k=3, temperature=0.1, num_iters=1, alpha=0.0), loss_weight=1.0,
    inputs=dict(new='student.emb', old='teacher.emb', labels='gt_labels'))))
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='HotRefreshMetric', fractions=11, order='entropy', plot_file='hot_refresh.png'),
    dict(type='FaceVerificationMetric', fars=(0.01, 0.1), modes=('new-new', 'new-old', 'old-old'))
]
test_evaluator = val_evaluator
