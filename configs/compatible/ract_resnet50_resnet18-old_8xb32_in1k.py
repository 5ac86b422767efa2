# RACT on ImageNet-1k: the BCT setting above with the RACT contrastive loss (tau 0.01, the paper's value;
# top-k hardest negatives off; gathered across GPUs) in place of the influence loss.
_base_ = ['./bct_resnet50_resnet18-old_8xb32_in1k.py']
model = dict(distill_losses=dict(
    _delete_=True,
    loss_ract=dict(type='RACTLoss', tau=0.01, topk=None, new_new=True, loss_weight=1.0,
                   inputs=dict(new='student.emb', old='teacher.emb', labels='gt_labels'))))
