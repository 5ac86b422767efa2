# RACT on ImageNet-1k: the BCT setting above with the RACT contrastive loss in place of the influence loss,
# as the official code: tau 0.01, the 10 hardest negatives of each term (new-old, new-new), new-new
# negatives constant, bank gathered across GPUs.
_base_ = ['./bct_resnet50_resnet18-old_8xb32_in1k.py']
model = dict(distill_losses=dict(
    _delete_=True,
    loss_ract=dict(type='RACTLoss', tau=0.01, topk=10, topk_mode='per_term', new_new=True,
                   detach_new_negatives=True, loss_weight=1.0,
                   inputs=dict(new='student.emb', old='teacher.emb', labels='gt_labels'))))
