"""Recipe record of the MGD paper configs: each value and the official file it comes from.

Read by tests/test_configs/test_recipes.py, which resolves every config (``_base_`` and ``pkg::``
inheritance) and checks each dotted key against the value recorded here. Official code:
yzd-v/MGD (det/: mmdet 2.19.0, seg/: mmseg 0.20.2); the authors' configs inherit mmdet's /
mmseg's own configs, so values they do not override come from those files (named with the
version the authors used).
"""
MGD = 'yzd-v/MGD'
MMDET = 'open-mmlab/mmdetection v2.19.0 (base of the authors\' det configs)'
MMSEG = 'open-mmlab/mmsegmentation v0.20.2 (base of the authors\' seg configs)'
MMDET_ZOO = 'https://download.openmmlab.com/mmdetection/v2.0/'
MMSEG_ZOO = 'https://download.openmmlab.com/mmsegmentation/v0.5/'
DET = 'det/configs/distillers/mgd/'
SEG = 'seg/configs/distillers/mgd/'


def _r(value, source):
    return dict(value=value, source=source)


def _fpn(levels, lambda_mgd, alpha_mgd, official):
    """The MGD block on FPN outputs: taps, connectors and losses of every level."""
    src = f'{MGD}: {DET}{official}'
    rec = {
        'model.student_taps': _r({f'fpn{i}': dict(module='neck', idx=i) for i in range(levels)},
                                 f'{src} distill_cfg student_module neck.fpn_convs.0-{levels - 1}'),
        'model.teacher_taps': _r({f'fpn{i}': dict(module='neck', idx=i) for i in range(levels)},
                                 f'{src} distill_cfg teacher_module neck.fpn_convs.0-{levels - 1}'),
        'optim_wrapper.clip_grad.max_norm': _r(35, f'{src} optimizer_config grad_clip'),
        'train_dataloader.batch_size': _r(
            2, f'{MMDET}: configs/_base_/datasets/coco_*.py samples_per_gpu=2; '
               f'{MGD}: det/README.md "dist_train.sh ... 8" (8 GPUs)'),
        'train_dataloader.dataset.pipeline.2.scale': _r(
            (1333, 800), f'{MMDET}: configs/_base_/datasets/coco_*.py train_pipeline Resize'),
        'optim_wrapper.optimizer.type': _r('SGD', f'{MMDET}: configs/_base_/schedules/schedule_1x.py'),
        'optim_wrapper.optimizer.momentum': _r(0.9, f'{MMDET}: configs/_base_/schedules/schedule_1x.py'),
        'optim_wrapper.optimizer.weight_decay': _r(
            0.0001, f'{MMDET}: configs/_base_/schedules/schedule_1x.py'),
    }
    for i in range(levels):
        rec[f'model.connectors.mgd{i}.lambda_mgd'] = _r(lambda_mgd, f'{src} lambda_mgd')
        rec[f'model.connectors.mgd{i}.student_channels'] = _r(256, f'{src} student_channels')
        rec[f'model.connectors.mgd{i}.teacher_channels'] = _r(256, f'{src} teacher_channels')
        rec[f'model.distill_losses.loss_mgd_fpn{i}.alpha_mgd'] = _r(alpha_mgd, f'{src} alpha_mgd')
    return rec


def _schedule(epochs, milestones, lr, lr_source):
    sched = f'{MMDET}: configs/_base_/schedules/schedule_{epochs // 12}x.py'
    return {
        'train_cfg.max_epochs': _r(epochs, f'{sched} runner max_epochs'),
        'param_scheduler.1.milestones': _r(milestones, f'{sched} lr_config step'),
        'optim_wrapper.optimizer.lr': _r(lr, lr_source),
    }


def _seg(student, official, student_official):
    src = f'{MGD}: {SEG}{official}'
    data = f'{MGD}: seg/configs/_base_/datasets/cityscapes_512x512.py'
    sched = f'{MMSEG}: configs/_base_/schedules/schedule_40k.py'
    stu = f'{MGD}: seg/configs/{student_official}'
    return {
        'model.teacher': _r('mmseg::pspnet/pspnet_r101-d8_4xb2-40k_cityscapes-512x1024.py',
                            f'{src} teacher_cfg (pspnet_r101-d8_512x1024_40k_cityscapes)'),
        'model.teacher_ckpt': _r(
            MMSEG_ZOO + 'pspnet/pspnet_r101-d8_512x1024_40k_cityscapes/'
            'pspnet_r101-d8_512x1024_40k_cityscapes_20200604_232751-467e7cf4.pth',
            f'{src} teacher_pretrained'),
        'model.student.type': _r('EncoderDecoder', f'{stu} _base_ models'),
        'model.student.decode_head.type': _r(student, f'{stu} _base_ models'),
        'model.student.backbone.depth': _r(18, f'{stu} backbone depth'),
        'model.student.decode_head.in_channels': _r(512, f'{stu} decode_head in_channels'),
        'model.student.decode_head.channels': _r(128, f'{stu} decode_head channels'),
        'model.student.auxiliary_head.in_channels': _r(256, f'{stu} auxiliary_head in_channels'),
        'model.student.auxiliary_head.channels': _r(64, f'{stu} auxiliary_head channels'),
        'model.student.data_preprocessor.size': _r((512, 512), f'{data} Pad size=crop_size'),
        'train_dataloader.dataset.pipeline.2.scale': _r((2048, 1024), f'{data} Resize img_scale'),
        'train_dataloader.dataset.pipeline.2.ratio_range': _r(
            (0.5, 2.0), f'{data} Resize ratio_range'),
        'train_dataloader.dataset.pipeline.3.crop_size': _r((512, 512), f'{data} crop_size'),
        'train_dataloader.dataset.pipeline.3.cat_max_ratio': _r(0.75, f'{data} RandomCrop'),
        'train_dataloader.batch_size': _r(
            2, f'{MMSEG}: configs/_base_/datasets/cityscapes.py samples_per_gpu=2; '
               f'{MGD}: seg/README.md "dist_train.sh ... 8" (8 GPUs)'),
        'optim_wrapper.optimizer.type': _r('SGD', f'{sched} optimizer'),
        'optim_wrapper.optimizer.lr': _r(0.01, f'{sched} optimizer lr'),
        'optim_wrapper.optimizer.momentum': _r(0.9, f'{sched} optimizer momentum'),
        'optim_wrapper.optimizer.weight_decay': _r(0.0005, f'{sched} optimizer weight_decay'),
        'train_cfg.max_iters': _r(40000, f'{sched} runner max_iters'),
        'param_scheduler.0.type': _r('PolyLR', f'{sched} lr_config policy=poly'),
        'param_scheduler.0.power': _r(0.9, f'{sched} lr_config power'),
        'param_scheduler.0.eta_min': _r(0.0001, f'{sched} lr_config min_lr'),
        'model.student_taps.feat': _r(dict(module='backbone', idx=-1),
                                      f'{MGD}: seg/mmseg/distillation/distillers/'
                                      'segmentation_distiller.py student_feat[-1]'),
        'model.connectors.mgd.student_channels': _r(512, f'{src} student_channels'),
        'model.connectors.mgd.teacher_channels': _r(2048, f'{src} teacher_channels'),
        'model.connectors.mgd.lambda_mgd': _r(0.75, f'{src} lambda_mgd'),
        'model.distill_losses.loss_mgd.alpha_mgd': _r(2e-5, f'{src} alpha_mgd'),
    }


def _with_logits(rec, official):
    dist = f'{MGD}: seg/mmseg/distillation/distillers/segmentation_distiller.py'
    return dict(rec, **{
        'model.teacher_forward': _r('tensor', f'{MGD}: {SEG}{official} use_logit=True; '
                                              f'{dist} _decode_head_forward_test (teacher)'),
        'model.distill_losses.loss_cwd.type': _r('ChannelWiseDivergenceLoss',
                                                 f'{dist} forward_train loss_logit'),
        'model.distill_losses.loss_cwd.tau': _r(4.0, f'{dist} forward_train "/ 4", "4**2"'),
        'model.distill_losses.loss_cwd.loss_weight': _r(3.0, f'{dist} forward_train "3 * loss"'),
    })


def _mgd_only(rec, official):
    return dict(rec, **{
        'model.teacher_forward': _r('extract_feat', f'{MGD}: {SEG}{official} with use_logit=False'),
        'model.student_taps': _r(dict(feat=dict(module='backbone', idx=-1)),
                                 f'{MGD}: {SEG}{official} with use_logit=False (no logit term)'),
        'model.distill_losses': _r(
            dict(loss_mgd=dict(type='MGDLoss', alpha_mgd=2e-5,
                               inputs=dict(preds_S='mgd(student.feat)', preds_T='teacher.feat'))),
            f'{MGD}: {SEG}{official} with use_logit=False (loss_mgd_fea only)'),
    })


_PSP = _seg('PSPHead', 'psp_r101_distill_psp_r18_40k_512x512_city.py',
            'pspnet/pspnet_r18-d8_512x512_40k_cityscapes.py')
_DLV3 = _seg('ASPPHead', 'psp_r101_distill_deepv3_r18_40k_512x512_city.py',
             'deeplabv3/deeplabv3_r18-d8_512x512_40k_cityscapes.py')

_RETINA = 'retina_rx101_64x4d_distill_retina_r50_fpn_2x_coco.py'
_REPP = 'reppoints_rx101_64x4d_distill_reppoints_r50_fpn_2x_coco.py'
_FASTER = 'cascade_mask_rcnn_rx101_32x4d_distill_faster_rcnn_r50_fpn_2x_coco.py'
_MASK = 'cascade_mask_rcnn_rx101_32x4d_distill_mask_rcnn_r50_fpn_2x_coco.py'
_SOLO = 'solo_r101_ms_distill_solo_r50_coco.py'
_CASCADE_URL = (MMDET_ZOO + 'dcn/cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco/'
                'cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco-e75f90c8.pth')


def _det(official, levels, lambda_mgd, alpha_mgd, teacher, teacher_ckpt, init_student, epochs,
         milestones, lr, lr_source):
    src = f'{MGD}: {DET}{official}'
    rec = _fpn(levels, lambda_mgd, alpha_mgd, official)
    rec.update(_schedule(epochs, milestones, lr, lr_source))
    rec['model.teacher'] = _r(teacher, f'{src} teacher_cfg')
    rec['model.teacher_ckpt'] = _r(teacher_ckpt, f'{src} teacher_pretrained')
    if init_student:  # official init_student=True: the teacher's neck + head into the student
        rec['model.init_student'] = _r(init_student, f'{src} init_student=True')
    return rec


RECIPES = {
    'mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py': _det(
        _RETINA, 5, 0.65, 2e-5, 'mmdet::retinanet/retinanet_x101-64x4d_fpn_ms-640-800-3x_coco.py',
        MMDET_ZOO + 'retinanet/retinanet_x101_64x4d_fpn_mstrain_3x_coco/'
        'retinanet_x101_64x4d_fpn_mstrain_3x_coco_20210719_051838-022c2187.pth',
        dict(neck='neck', bbox_head='bbox_head'), 24, [16, 22], 0.01,
        f'{MMDET}: configs/retinanet/retinanet_r50_fpn_1x_coco.py optimizer lr'),
    'mgd_reppoints-x101-dconv_reppoints-r50_fpn-gn_head-gn_2x_coco.py': _det(
        _REPP, 5, 0.65, 2e-5,
        'mmdet::reppoints/reppoints-moment_x101-dconv-c3-c5_fpn-gn_head-gn_2x_coco.py',
        MMDET_ZOO + 'reppoints/reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco/'
        'reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco_20200329-f87da1ea.pth',
        dict(neck='neck', bbox_head='bbox_head'), 24, [16, 22], 0.01,
        f'{MMDET}: configs/reppoints/reppoints_moment_r50_fpn_1x_coco.py optimizer lr'),
    'mgd_cascade-mask-rcnn-x101-dconv_faster-rcnn-r50_fpn_2x_coco.py': _det(
        _FASTER, 4, 0.45, 5e-7, 'mmdet::dcn/cascade-mask-rcnn_x101-32x4d-dconv-c3-c5_fpn_1x_coco.py',
        _CASCADE_URL, None, 24, [16, 22], 0.02,
        f'{MMDET}: configs/_base_/schedules/schedule_2x.py optimizer lr'),
    'mgd_cascade-mask-rcnn-x101-dconv_mask-rcnn-r50_fpn_2x_coco.py': _det(
        _MASK, 4, 0.45, 5e-7, 'mmdet::dcn/cascade-mask-rcnn_x101-32x4d-dconv-c3-c5_fpn_1x_coco.py',
        _CASCADE_URL, None, 24, [16, 22], 0.02,
        f'{MMDET}: configs/_base_/schedules/schedule_2x.py optimizer lr'),
    'mgd_solo-r101_solo-r50_fpn_1x_coco.py': _det(
        _SOLO, 4, 0.65, 2e-5, 'mmdet::solo/solo_r101_fpn_8xb8-lsj-200e_coco.py',
        'checkpoints/solo_r101_fpn_coco.pth', dict(neck='neck', mask_head='mask_head'), 12,
        [8, 11], 0.01, f'{MMDET}: configs/solo/solo_r50_fpn_1x_coco.py optimizer lr'),
    'mgd_pspnet-r101_pspnet-r18-d8_8xb2-40k_cityscapes-512x512.py': _with_logits(
        _PSP, 'psp_r101_distill_psp_r18_40k_512x512_city.py'),
    'mgd_pspnet-r101_deeplabv3-r18-d8_8xb2-40k_cityscapes-512x512.py': _with_logits(
        _DLV3, 'psp_r101_distill_deepv3_r18_40k_512x512_city.py'),
    'mgd_pspnet-r101_pspnet-r18-d8_8xb2-40k_cityscapes-512x512_mgd-only.py': _mgd_only(
        _PSP, 'psp_r101_distill_psp_r18_40k_512x512_city.py'),
    'mgd_pspnet-r101_deeplabv3-r18-d8_8xb2-40k_cityscapes-512x512_mgd-only.py': _mgd_only(
        _DLV3, 'psp_r101_distill_deepv3_r18_40k_512x512_city.py'),
}
# the SOLO teacher: the authors' self-trained 'Solo_r101_3x.pth' (no public checkpoint); the record
# holds the local path the config documents.
RECIPES['mgd_solo-r101_solo-r50_fpn_1x_coco.py']['model.teacher_ckpt']['source'] = (
    f'{MGD}: {DET}{_SOLO} teacher_pretrained=\'Solo_r101_3x.pth\' (self-trained, not published)')

NOT_PAPER_CONFIGS = {}
