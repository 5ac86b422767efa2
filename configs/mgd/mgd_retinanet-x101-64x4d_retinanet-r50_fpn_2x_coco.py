# MGD: RetinaNet-X101-64x4d teacher -> RetinaNet-R50 student on COCO (paper: 37.4 -> 41.0 box mAP).
# The student recipe is mmdet's retinanet_r50_fpn_2x_coco, inherited unchanged apart from the
# paper's gradient clipping (max_norm 35). MGD on all 5 FPN outputs (256 channels for both models):
# spatial mask lambda_mgd 0.65, alpha_mgd 2e-5, one generation block per level. The teacher runs
# extract_feat only (backbone + FPN, never its head); its FPN and head are copied into the student
# before training (init_student), as in the paper.
#
# Teacher weights (official mmdet model zoo):
#   https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_1x_coco/
#   retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth
# put into checkpoints/ or set --cfg-options model.teacher_ckpt=PATH.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_2x_coco.py']
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='SingleTeacherDistiller',
    student=_base_.model,
    teacher='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py',
    # downloaded once into $TORCH_HOME/hub/checkpoints; offline: put the file in checkpoints/ and
    # set --cfg-options model.teacher_ckpt=checkpoints/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_1x_coco/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth',
    teacher_forward='extract_feat',
    student_taps=dict(
        fpn0=dict(module='neck', idx=0), fpn1=dict(module='neck', idx=1),
        fpn2=dict(module='neck', idx=2), fpn3=dict(module='neck', idx=3),
        fpn4=dict(module='neck', idx=4)),
    teacher_taps=dict(
        fpn0=dict(module='neck', idx=0), fpn1=dict(module='neck', idx=1),
        fpn2=dict(module='neck', idx=2), fpn3=dict(module='neck', idx=3),
        fpn4=dict(module='neck', idx=4)),
    connectors=dict(
        mgd0=dict(type='MGDConnector', student_channels=256, teacher_channels=256,
                  lambda_mgd=0.65),
        mgd1=dict(type='MGDConnector', student_channels=256, teacher_channels=256,
                  lambda_mgd=0.65),
        mgd2=dict(type='MGDConnector', student_channels=256, teacher_channels=256,
                  lambda_mgd=0.65),
        mgd3=dict(type='MGDConnector', student_channels=256, teacher_channels=256,
                  lambda_mgd=0.65),
        mgd4=dict(type='MGDConnector', student_channels=256, teacher_channels=256,
                  lambda_mgd=0.65)),
    distill_losses=dict(
        loss_mgd_fpn0=dict(type='MGDLoss', alpha_mgd=2e-5,
                           inputs=dict(preds_S='mgd0(student.fpn0)', preds_T='teacher.fpn0')),
        loss_mgd_fpn1=dict(type='MGDLoss', alpha_mgd=2e-5,
                           inputs=dict(preds_S='mgd1(student.fpn1)', preds_T='teacher.fpn1')),
        loss_mgd_fpn2=dict(type='MGDLoss', alpha_mgd=2e-5,
                           inputs=dict(preds_S='mgd2(student.fpn2)', preds_T='teacher.fpn2')),
        loss_mgd_fpn3=dict(type='MGDLoss', alpha_mgd=2e-5,
                           inputs=dict(preds_S='mgd3(student.fpn3)', preds_T='teacher.fpn3')),
        loss_mgd_fpn4=dict(type='MGDLoss', alpha_mgd=2e-5,
                           inputs=dict(preds_S='mgd4(student.fpn4)', preds_T='teacher.fpn4'))),
    init_student=dict(neck='neck', bbox_head='bbox_head'))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: mmdet model zoo, retinanet_x101-64x4d_fpn_1x_coco: 41.0 box AP; CocoMetric reports fractions.
teacher_expected = dict(metric='coco/bbox_mAP', value=0.410, tol=0.25)
