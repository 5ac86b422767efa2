# NKD on ImageNet (official: yzd-v/cls_KD configs/distillers/imagenet/*_distill_*_img.py, NKDLoss
# temp 1.0, gamma 1.5): the loss on the classifiers' logits (`head.fc`), the teacher run to its
# logits. A config adds its teacher, checkpoint and
#   teacher_forward='tensor', student_taps=_base_.nkd_in1k.taps,
#   teacher_taps=_base_.nkd_in1k.taps, distill_losses=_base_.nkd_in1k.losses
nkd_in1k = dict(
    taps=dict(logits='head.fc'),
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss', tau=1.0, gamma=1.5, loss_weight=1.0,
            inputs=dict(student_logits='student.logits', teacher_logits='teacher.logits',
                        target='gt_labels'))))
