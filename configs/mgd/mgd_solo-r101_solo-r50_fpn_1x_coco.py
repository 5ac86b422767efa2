# MGD: SOLO-R101 teacher -> SOLO-R50 student on COCO (paper: 33.1 -> 36.2 mask mAP).
# Student: mmdet's solo_r50_fpn_1x_coco (33.1 mask mAP), its 1x schedule (12 epochs, steps at 8 / 11)
# inherited unchanged as in the authors' config (det/configs/distillers/mgd/
# solo_r101_ms_distill_solo_r50_coco.py), plus gradient clipping (max_norm 35). MGD on the
# first 4 FPN outputs (256 ch, as in the spec): spatial mask lambda_mgd 0.65, alpha_mgd 2e-5,
# one generation block per level. The teacher's FPN and mask head are copied into the student
# before training (init_student).
#
# Teacher: the authors use a self-trained multi-scale 3x SOLO-R101 ('Solo_r101_3x.pth'). mmdet's only SOLO-R101 config is solo_r101_fpn_8xb8-lsj-200e_coco; its model (backbone,
# FPN, SOLOHead) is the R50 model with a ResNet-101, which is all the distiller builds (the teacher
# uses the student's data preprocessor and runs extract_feat only). mmdet publishes no SOLO-R101
# checkpoint: train that config (or any SOLO-R101 with this FPN / head) and pass its weights with
#   --cfg-options model.teacher_ckpt=PATH
_base_ = ['mmdet::solo/solo_r50_fpn_1x_coco.py', './_base_/mgd_fpn.py']

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='mmdet::solo/solo_r101_fpn_8xb8-lsj-200e_coco.py',
    teacher_ckpt='checkpoints/solo_r101_fpn_coco.pth',  # self-trained, see above
    teacher_forward='extract_feat',
    student_taps=_base_.mgd_fpn4.taps, teacher_taps=_base_.mgd_fpn4.taps,
    connectors=_base_.mgd_fpn4.connectors, distill_losses=_base_.mgd_fpn4.losses,
    init_student=dict(neck='neck', mask_head='mask_head'))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
