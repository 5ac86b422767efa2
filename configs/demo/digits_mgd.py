# MGD (channel mask, as for ImageNet classification) from the ResNet-18 w16 teacher into the w4
# student, on the last backbone stage. The student config is inherited unchanged.
# alpha: the paper's 7e-5 is for a 512x7x7 ImageNet feature; this one is 128x2x2 (49x fewer terms
# in the sum), so alpha is scaled by about 49 to give the loss the same per-sample weight.
_base_ = ['./digits_student_resnet18_w4.py']
teacher_cfg = '{{fileDirname}}/digits_teacher_resnet18.py'
student = _base_.model
model = dict(
    _delete_=True,
    type='SingleTeacherDistiller',
    student=student,
    teacher=teacher_cfg,
    teacher_ckpt=None,  # set with --cfg-options model.teacher_ckpt=PATH
    teacher_forward='extract_feat',
    student_taps=dict(feat=dict(module='backbone', idx=-1)),
    teacher_taps=dict(feat=dict(module='backbone', idx=-1)),
    connectors=dict(mgd=dict(type='MGDConnector', student_channels=32, teacher_channels=128,
                             lambda_mgd=0.15, mask_type='channel')),
    distill_losses=dict(
        loss_mgd=dict(type='MGDLoss', alpha_mgd=3e-3,
                      inputs=dict(preds_S='mgd(student.feat)', preds_T='teacher.feat'))))
