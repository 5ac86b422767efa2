"""Recipe record of the MGD classification configs (format: tests/test_configs/test_recipes.py).

Official code: yzd-v/MGD cls/ (mmcls 0.19.0); the authors' configs inherit mmcls's ResNet-18 /
MobileNetV1 ImageNet configs (8 GPUs x 32 images, SGD lr 0.1, 100 epochs, steps 30 / 60 / 90).
"""
MGD = 'yzd-v/MGD'
MMCLS = 'open-mmlab/mmclassification v0.19.0 (base of the authors\' cls configs)'
ZOO = 'https://download.openmmlab.com/mmclassification/v0/resnet/'


def _r(value, source):
    return dict(value=value, source=source)


def _mgd_cls(official, teacher, ckpt, c_s, c_t):
    src = f'{MGD}: cls/configs/distillers/mgd/{official}'
    sched = f'{MMCLS}: configs/_base_/schedules/imagenet_bs256.py'
    return {
        'model.teacher': _r(teacher, f'{src} teacher_cfg'),
        'model.teacher_ckpt': _r(ZOO + ckpt, f'{src} teacher_pretrained'),
        'model.connectors.mgd.student_channels': _r(c_s, f'{src} student_channels'),
        'model.connectors.mgd.teacher_channels': _r(c_t, f'{src} teacher_channels'),
        'model.connectors.mgd.lambda_mgd': _r(0.15, f'{src} lambda_mgd'),
        'model.connectors.mgd.mask_type': _r('channel', f'{MGD}: cls/mmcls/distillation/losses/'
                                                        'mgd.py get_dis_loss (channel mask)'),
        'model.distill_losses.loss_mgd.alpha_mgd': _r(7e-5, f'{src} alpha_mgd'),
        'train_dataloader.batch_size': _r(32, f'{MMCLS}: configs/_base_/datasets/imagenet_bs32.py '
                                              f'samples_per_gpu; {MGD}: cls/README.md "dist_train.sh'
                                              ' ... 8" (8 GPUs)'),
        'optim_wrapper.optimizer.type': _r('SGD', f'{sched} optimizer'),
        'optim_wrapper.optimizer.lr': _r(0.1, f'{sched} optimizer lr'),
        'optim_wrapper.optimizer.momentum': _r(0.9, f'{sched} optimizer momentum'),
        'optim_wrapper.optimizer.weight_decay': _r(0.0001, f'{sched} optimizer weight_decay'),
        'train_cfg.max_epochs': _r(100, f'{sched} runner max_epochs'),
        'param_scheduler.milestones': _r([30, 60, 90], f'{sched} lr_config step'),
    }


RECIPES = {
    'mgd_resnet34_resnet18_8xb32_in1k.py': _mgd_cls(
        'res34_distill_res18_img.py', 'mmpretrain::resnet/resnet34_8xb32_in1k.py',
        'resnet34_8xb32_in1k_20210831-f257d4e6.pth', 512, 512),
    'mgd_resnet50_mobilenet-v1_8xb32_in1k.py': dict(_mgd_cls(
        'res50_distill_mv1_img.py', 'mmpretrain::resnet/resnet50_8xb32_in1k.py',
        'resnet50_8xb32_in1k_20210831-ea4938fc.pth', 1024, 2048), **{
            'optim_wrapper.clip_grad.max_norm': _r(
                5.0, f'{MGD}: cls/configs/distillers/mgd/res50_distill_mv1_img.py optimizer_config '
                     'grad_clip')}),
}
NOT_PAPER_CONFIGS = {}
