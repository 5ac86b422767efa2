"""Recipe record of the NKD / tf-NKD ImageNet configs (format: tests/test_configs/test_recipes.py).

Official code: yzd-v/cls_KD (mmpretrain 1.x). Its distillation configs inherit mmpretrain's
student configs (ResNet-18 / MobileNetV1 8 GPUs x 32, SGD lr 0.1, 100 epochs; Swin-T 16 x 64,
AdamW, 300 epochs), which ours inherit too.
"""
CLS_KD = 'yzd-v/cls_KD'
DIST = 'configs/distillers/imagenet/'
ZOO = 'https://download.openmmlab.com/mmclassification/v0/resnet/'


def _r(value, source):
    return dict(value=value, source=source)


def _sgd_100e(student_cfg):
    src = f'{CLS_KD}: {student_cfg}'
    return {
        'train_dataloader.batch_size': _r(32, f'{src} (_base_ imagenet_bs32: batch_size 32, 8 GPUs)'),
        'optim_wrapper.optimizer.type': _r('SGD', f'{src} (_base_ imagenet_bs256 optim_wrapper)'),
        'optim_wrapper.optimizer.lr': _r(0.1, f'{src} (_base_ imagenet_bs256 optim_wrapper lr)'),
        'optim_wrapper.optimizer.momentum': _r(0.9, f'{src} (_base_ imagenet_bs256 momentum)'),
        'optim_wrapper.optimizer.weight_decay': _r(0.0001, f'{src} (_base_ imagenet_bs256 '
                                                           'weight_decay)'),
        'train_cfg.max_epochs': _r(100, f'{src} (_base_ imagenet_bs256 train_cfg max_epochs)'),
        'param_scheduler.milestones': _r([30, 60, 90], f'{src} (_base_ imagenet_bs256 '
                                                       'param_scheduler milestones)'),
    }


def _nkd(official, teacher, ckpt, student_cfg):
    src = f'{CLS_KD}: {DIST}{official}'
    return dict(_sgd_100e(student_cfg), **{
        'model.teacher': _r(teacher, f'{src} teacher_cfg'),
        'model.teacher_ckpt': _r(ZOO + ckpt, f'{src} teacher_pretrained'),
        'model.distill_losses.loss_nkd.type': _r('NKDLoss', f'{src} distill_cfg loss_nkd'),
        'model.distill_losses.loss_nkd.tau': _r(1.0, f'{src} NKDLoss temp'),
        'model.distill_losses.loss_nkd.gamma': _r(1.5, f'{src} NKDLoss gamma'),
    })


_MV1 = 'configs/mobilenet_v1/mobilenet_v1.py'
_R18 = 'configs/resnet/resnet18_8xb32_in1k.py'
RECIPES = {
    'nkd_resnet34_resnet18_8xb32_in1k.py': _nkd(
        'res34_distill_res18_img.py', 'mmpretrain::resnet/resnet34_8xb32_in1k.py',
        'resnet34_8xb32_in1k_20210831-f257d4e6.pth', _R18),
    'nkd_resnet50_mobilenet-v1_8xb32_in1k.py': _nkd(
        'res50_distill_mv1_img.py', 'mmpretrain::resnet/resnet50_8xb32_in1k.py',
        'resnet50_8xb32_in1k_20210831-ea4938fc.pth', _MV1),
    'mobilenet-v1_8xb32_in1k.py': dict(_sgd_100e(_MV1), **{
        'model.head.in_channels': _r(1024, f'{CLS_KD}: {_MV1} (_base_ mobilenet_v1_1x head)')}),
    'tf-nkd_resnet18_8xb32_in1k.py': dict(_sgd_100e(_R18), **{
        'model.head.loss.type': _r('TaskLossWithTfNKD', f'{CLS_KD}: {DIST}res18_sd_img.py '
                                                        '(self-distillation on the student only)')}),
    'tf-nkd_mobilenet-v1_8xb32_in1k.py': dict(_sgd_100e(_MV1), **{
        'model.head.loss.type': _r('TaskLossWithTfNKD', f'{CLS_KD}: {DIST}mv1_sd_img.py '
                                                        '(self-distillation on the student only)')}),
    'tf-nkd_swin-tiny_16xb64_in1k.py': {
        'train_dataloader.batch_size': _r(64, f'{CLS_KD}: {DIST}swin-t_sd_img.py (_base_ '
                                              'swin-tiny_16xb64_in1k: 16 GPUs x 64)'),
        'optim_wrapper.optimizer.type': _r('AdamW', f'{CLS_KD}: {DIST}swin-t_sd_img.py (_base_ '
                                                    'imagenet_bs1024_adamw_swin)'),
        'train_cfg.max_epochs': _r(300, f'{CLS_KD}: {DIST}swin-t_sd_img.py (_base_ '
                                        'imagenet_bs1024_adamw_swin)'),
        'model.head.loss.type': _r('TaskLossWithTfNKD', f'{CLS_KD}: {DIST}swin-t_sd_img.py '
                                                        '(self-distillation on the student only)'),
    },
}
NOT_PAPER_CONFIGS = {}
