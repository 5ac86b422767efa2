# BCT: new-model cross-entropy + lambda * influence loss through the frozen old classifier (5 old classes;
# rows of the 5 new classes synthesised from old-feature class means).
_base_ = ['./_compatible_base.py']
model = dict(distill_losses=dict(loss_bct=dict(
    type='BCTLoss', num_classes=10, loss_weight=1.0,
    inputs=dict(new='student.emb', old='teacher.emb', labels='gt_labels'))))
