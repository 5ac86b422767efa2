# UniBCT: new-model cross-entropy + CE over normalise(f) . P against the fixed old prototypes P (structural
# refinement within each class: edges from the new model's embeddings, Eq. 9-10), recomputed with the
# current new model by UniBCTPrototypeHook. Reference: refresh at epochs 10 and 20 of 25, term on from the
# first refresh; here the same fractions of the 12 epochs: 5 and 10 (0-based epoch at whose start it runs).
_base_ = ['./_compatible_base.py']
model = dict(distill_losses=dict(loss_unibct=dict(
    type='UniBCTLoss', num_classes=10, loss_weight=1.0,
    inputs=dict(new='student.emb', labels='gt_labels'))))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='UniBCTPrototypeHook', epochs=(5, 10), lam=0.9, temperature=0.05)
]
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='HotRefreshMetric', fractions=11, order='entropy', plot_file='hot_refresh.png'),
    dict(type='FaceVerificationMetric', fars=(0.01, 0.1), modes=('new-new', 'new-old', 'old-old'))
]
test_evaluator = val_evaluator
