# MGD: RepPoints-X101-DCN teacher -> RepPoints-R50 student on COCO (paper: 38.6 -> 42.3 box mAP).
# Student: mmdet's reppoints-moment_r50_fpn-gn_head-gn_2x_coco (GN neck + head), inherited, plus
# gradient clipping (max_norm 35). MGD on all 5 FPN outputs (256 ch): lambda_mgd 0.65,
# alpha_mgd 2e-5. The teacher's FPN and head are copied into the student before training
# (init_student), which needs a teacher of the same detector type: the spec's table lists
# RetinaNet-X101 beside RepPoints, whose head cannot be copied into a RepPoints head, so this config
# uses mmdet's RepPoints-X101 (ResNeXt-101-32x4d, DCN in stages 2-4, same GN FPN and head).
# To distil from RetinaNet-X101 instead, set model.teacher to the RetinaNet config (and its
# checkpoint) and model.init_student=None.
#
# Teacher weights (official mmdet model zoo):
#   https://download.openmmlab.com/mmdetection/v2.0/reppoints/
#   reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco/
#   reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco_20200329-f87da1ea.pth
# put into checkpoints/ or set --cfg-options model.teacher_ckpt=PATH.
_base_ = ['mmdet::reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py', './_base_/mgd_fpn.py']

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='mmdet::reppoints/reppoints-moment_x101-dconv-c3-c5_fpn-gn_head-gn_2x_coco.py',
    # downloaded once into $TORCH_HOME/hub/checkpoints; offline: put the file in checkpoints/ and
    # set --cfg-options model.teacher_ckpt=checkpoints/reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck+head_2x_coco_20200329-f87da1ea.pth
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/reppoints/reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco/reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco_20200329-f87da1ea.pth',
    teacher_forward='extract_feat',
    student_taps=_base_.mgd_fpn5.taps, teacher_taps=_base_.mgd_fpn5.taps,
    connectors=_base_.mgd_fpn5.connectors, distill_losses=_base_.mgd_fpn5.losses,
    init_student=dict(neck='neck', bbox_head='bbox_head'))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: mmdet model zoo, reppoints-moment_x101-dconv-c3-c5_fpn-gn_head-gn_2x_coco: 44.2 box AP.
teacher_expected = dict(metric='coco/bbox_mAP', value=0.442, tol=0.25)
