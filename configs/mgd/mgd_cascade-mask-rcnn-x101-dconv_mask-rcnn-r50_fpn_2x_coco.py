# MGD: Cascade Mask R-CNN X101-32x4d-DCN teacher -> Mask R-CNN-R50 student on COCO
# (paper: 35.4 -> 38.1 mask mAP). The student recipe is mmdet's mask-rcnn_r50_fpn_2x_coco, inherited
# unchanged apart from the paper's gradient clipping (max_norm 35). MGD on the first 4 FPN
# outputs (P2-P5, 256 ch): spatial mask lambda_mgd 0.45, alpha_mgd 5e-7, one generation block
# per level. The teacher runs extract_feat only (backbone + FPN, never its RPN / cascade heads).
# No init_student: the teacher's heads belong to a different detector.
#
# Teacher weights (official mmdet model zoo):
#   https://download.openmmlab.com/mmdetection/v2.0/dcn/
#   cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco/
#   cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco-e75f90c8.pth
# put into checkpoints/ or set --cfg-options model.teacher_ckpt=PATH.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py', './_base_/mgd_fpn.py']

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='mmdet::dcn/cascade-mask-rcnn_x101-32x4d-dconv-c3-c5_fpn_1x_coco.py',
    # downloaded once into $TORCH_HOME/hub/checkpoints; offline: put the file in checkpoints/ and
    # set --cfg-options model.teacher_ckpt=checkpoints/cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco-e75f90c8.pth
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/dcn/cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco/cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco-e75f90c8.pth',
    teacher_forward='extract_feat',
    student_taps=_base_.mgd_fpn4_rcnn.taps, teacher_taps=_base_.mgd_fpn4_rcnn.taps,
    connectors=_base_.mgd_fpn4_rcnn.connectors, distill_losses=_base_.mgd_fpn4_rcnn.losses)

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: mmdet model zoo, cascade-mask-rcnn_x101-32x4d-dconv-c3-c5_fpn_1x_coco: 47.3 box AP (41.1 mask AP).
teacher_expected = dict(metric='coco/bbox_mAP', value=0.473, tol=0.25)
