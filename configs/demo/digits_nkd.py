# NKD (tau 1.0, gamma 1.5, the paper's ImageNet CNN setting) on the logits, from the ResNet-18 w16
# teacher into the w4 student. The student and its cross-entropy are inherited unchanged.
_base_ = ['./digits_student_resnet18_w4.py']
model = dict(
    _delete_=True,
    type='SingleTeacherDistiller',
    student=_base_.model,
    teacher='{{fileDirname}}/digits_teacher_resnet18.py',
    teacher_ckpt=None,  # set with --cfg-options model.teacher_ckpt=PATH
    teacher_forward='tensor',
    student_taps=dict(logits='head.fc'),
    teacher_taps=dict(logits='head.fc'),
    distill_losses=dict(
        loss_nkd=dict(type='NKDLoss', tau=1.0, gamma=1.5,
                      inputs=dict(student_logits='student.logits', teacher_logits='teacher.logits',
                                  target='gt_labels'))))
