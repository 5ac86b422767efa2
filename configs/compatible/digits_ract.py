# RACT: new-model cross-entropy + the contrastive compatibility loss (new-to-old and new-to-new negatives,
# the 10 hardest of each term as in the official code; new-new negatives are constants).
# tau=0.05 instead of the paper's 0.01 for the tiny 32-d digits embedding (configurable).
_base_ = ['./_compatible_base.py']
model = dict(distill_losses=dict(loss_ract=dict(
    type='RACTLoss', tau=0.05, topk=10, topk_mode='per_term', new_new=True, detach_new_negatives=True,
    loss_weight=1.0, inputs=dict(new='student.emb', old='teacher.emb', labels='gt_labels'))))
