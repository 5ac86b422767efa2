"""Recipe record of the ViTKD / ViTKD + NKD configs (format: tests/test_configs/test_recipes.py).

Official code: yzd-v/cls_KD configs/distillers/imagenet/deit-{s3,b3,l3}_distill_deit-*_img.py
(ViTKD and NKD switched on together; ViTKD alone = the same config with nkd=False).
"""
CLS_KD = 'yzd-v/cls_KD'
DIST = 'configs/distillers/imagenet/'
ZOO = 'https://download.openmmlab.com/mmclassification/v0/deit3/'


def _r(value, source):
    return dict(value=value, source=source)


def _vitkd(official, size, ckpt, dims, batch, gpus, with_nkd):
    src = f'{CLS_KD}: {DIST}{official}'
    rec = {
        'model.teacher': _r(f'mmpretrain::deit3/deit3-{size}-p16_64xb64_in1k.py', f'{src} teacher_cfg'),
        'model.teacher_ckpt': _r(ZOO + ckpt, f'{src} teacher_pretrained'),
        'model.distill_losses.loss_vitkd.student_dims': _r(dims[0], f'{src} student_dims'),
        'model.distill_losses.loss_vitkd.teacher_dims': _r(dims[1], f'{src} teacher_dims'),
        'model.distill_losses.loss_vitkd.alpha_vitkd': _r(3e-5, f'{src} alpha_vitkd'),
        'model.distill_losses.loss_vitkd.beta_vitkd': _r(3e-6, f'{src} beta_vitkd'),
        'model.distill_losses.loss_vitkd.lambda_vitkd': _r(0.5, f'{src} lambda_vitkd'),
        'model.student_taps.low0': _r('backbone.layers.0', f'{CLS_KD}: mmcls/models/classifiers/'
                                                           'distiller.py (blocks 0, 1 and the last)'),
        'train_dataloader.batch_size': _r(batch, f'{src} (_base_ student config: {gpus} GPUs x '
                                                 f'{batch})'),
        'optim_wrapper.optimizer.type': _r('AdamW', f'{src} (_base_ student config)'),
        'train_cfg.max_epochs': _r(300, f'{src} (_base_ student config)'),
    }
    if with_nkd:
        rec.update({
            'model.teacher_forward': _r('tensor', f'{src} nkd=True (teacher logits)'),
            'model.distill_losses.loss_nkd.tau': _r(1.0, f'{src} NKDLoss temp'),
            'model.distill_losses.loss_nkd.gamma': _r(1.0, f'{src} NKDLoss gamma'),
        })
    else:
        rec['model.teacher_forward'] = _r('extract_feat', f'{src} with nkd=False (features only)')
    return rec


_PAIRS = {
    'deit3-small_deit-tiny_4xb256': ('deit-s3_distill_deit-t_img.py', 'small',
                                     'deit3-small-p16_in21k-pre_3rdparty_in1k_20221009-dcd90827.pth',
                                     (192, 384), 256, 4),
    'deit3-base_deit-small_4xb256': ('deit-b3_distill_deit-s_img.py', 'base',
                                     'deit3-base-p16_in21k-pre_3rdparty_in1k_20221009-87983ca1.pth',
                                     (384, 768), 256, 4),
    'deit3-large_deit-base_16xb64': ('deit-l3_distill_deit-b_img.py', 'large',
                                     'deit3-large-p16_in21k-pre_3rdparty_in1k_20221009-d8d27084.pth',
                                     (768, 1024), 64, 16),
}
RECIPES = {}
for _pair, _args in _PAIRS.items():
    RECIPES[f'vitkd_{_pair}_in1k.py'] = _vitkd(*_args, with_nkd=False)
    RECIPES[f'vitkd-nkd_{_pair}_in1k.py'] = _vitkd(*_args, with_nkd=True)
NOT_PAPER_CONFIGS = {}
