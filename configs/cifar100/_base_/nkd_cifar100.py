# NKD on CIFAR-100 (paper: tau 3.0, gamma 3.5): the loss on the classifiers' logits (`head.fc`),
# the teacher run to its logits. A config adds its teacher, checkpoint and this block:
#   teacher_forward='tensor', student_taps=_base_.nkd_cifar100.taps,
#   teacher_taps=_base_.nkd_cifar100.taps, distill_losses=_base_.nkd_cifar100.losses
nkd_cifar100 = dict(
    taps=dict(logits='head.fc'),
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss', tau=3.0, gamma=3.5, loss_weight=1.0,
            inputs=dict(student_logits='student.logits', teacher_logits='teacher.logits',
                        target='gt_labels'))))
