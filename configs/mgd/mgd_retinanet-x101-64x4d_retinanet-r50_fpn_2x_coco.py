# MGD: RetinaNet-X101-64x4d (multi-scale 3x) teacher -> RetinaNet-R50 student on COCO (paper: 37.4 -> 41.0 box mAP).
# The student recipe is mmdet's retinanet_r50_fpn_2x_coco, inherited unchanged apart from the
# paper's gradient clipping (max_norm 35). MGD on all 5 FPN outputs (256 channels for both models):
# spatial mask lambda_mgd 0.65, alpha_mgd 2e-5, one generation block per level. The teacher runs
# extract_feat only (backbone + FPN, never its head); its FPN and head are copied into the student
# before training (init_student), as in the paper.
#
# Teacher: the authors' (det/configs/distillers/mgd/retina_rx101_64x4d_distill_retina_r50_fpn_2x_coco.py),
# mmdet's multi-scale 3x RetinaNet-X101-64x4d (41.6 box mAP, mmdet's metafile; mmdet 3.x config
# retinanet_x101-64x4d_fpn_ms-640-800-3x_coco.py). Weights (official mmdet model zoo):
#   https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_mstrain_3x_coco/
#   retinanet_x101_64x4d_fpn_mstrain_3x_coco_20210719_051838-022c2187.pth
# put into checkpoints/ or set --cfg-options model.teacher_ckpt=PATH.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_2x_coco.py', './_base_/mgd_fpn.py']

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='mmdet::retinanet/retinanet_x101-64x4d_fpn_ms-640-800-3x_coco.py',
    # downloaded once into $TORCH_HOME/hub/checkpoints; offline: put the file in checkpoints/ and
    # set --cfg-options model.teacher_ckpt=checkpoints/retinanet_x101_64x4d_fpn_mstrain_3x_coco_20210719_051838-022c2187.pth
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_mstrain_3x_coco/retinanet_x101_64x4d_fpn_mstrain_3x_coco_20210719_051838-022c2187.pth',
    teacher_forward='extract_feat',
    student_taps=_base_.mgd_fpn5.taps, teacher_taps=_base_.mgd_fpn5.taps,
    connectors=_base_.mgd_fpn5.connectors, distill_losses=_base_.mgd_fpn5.losses,
    init_student=dict(neck='neck', bbox_head='bbox_head'))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: mmdet model zoo, retinanet_x101-64x4d_fpn_1x_coco: 41.0 box AP; CocoMetric reports fractions.
teacher_expected = dict(metric='coco/bbox_mAP', value=0.410, tol=0.25)
