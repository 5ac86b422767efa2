# MGD (channel mask, as for ImageNet classification) from the ResNet-18 w16 teacher into the w4
# student, on the last backbone stage. The student config is inherited unchanged.
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
        loss_mgd=dict(type='MGDLoss', alpha_mgd=7e-5,
                      inputs=dict(preds_S='mgd(student.feat)', preds_T='teacher.feat'))))
