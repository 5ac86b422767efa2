# MGD: SOLO-R101 teacher -> SOLO-R50 student on COCO (paper: 33.1 -> 36.2 mask mAP).
# Student: mmdet's solo_r50_fpn_1x_coco (33.1 mask mAP at 1x), trained for 2x (24 epochs, steps at
# 16 / 22) with gradient clipping (max_norm 35) as for the paper's other detectors. MGD on the
# first 4 FPN outputs (256 ch, as in the spec): spatial mask lambda_mgd 0.65, alpha_mgd 2e-5,
# one generation block per level. The teacher's FPN and mask head are copied into the student
# before training (init_student).
#
# Teacher: mmdet's only SOLO-R101 config is solo_r101_fpn_8xb8-lsj-200e_coco; its model (backbone,
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

# 2x schedule
max_epochs = 24
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[16, 22],
         gamma=0.1)
]
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
