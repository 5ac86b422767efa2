"""Recipe record of the compatible-training ImageNet configs (format: tests/test_configs/test_recipes.py).

BCT has no official code; openBCT (YantaoShen/openBCT, by the BCT first author) is the reference
for the ImageNet setting (new ResNet-50, old ResNet-18, SGD lr 0.1, batch 256). RACT:
TencentARC/OpenCompatible; UniBCT: yuleung/MixBCT BCT_Methods/UniBCT. Our schedule is mmpretrain's
ResNet-50 recipe (100 epochs; openBCT: 90), see README.md.
"""
OPENBCT = 'YantaoShen/openBCT: main.py'
RACT = 'TencentARC/OpenCompatible: config.json'
UNIBCT = 'yuleung/MixBCT: BCT_Methods/UniBCT/refine_prototype.py PrototypeGeneration'


def _r(value, source):
    return dict(value=value, source=source)


_BCT = {
    'model.teacher': _r('mmpretrain::resnet/resnet18_8xb32_in1k.py', f'{OPENBCT} --old-arch resnet18'),
    'model.student.backbone.depth': _r(50, f'{OPENBCT} -a resnet50 (README.md BCT command)'),
    'train_dataloader.batch_size': _r(32, f'{OPENBCT} --batch-size 256 (8 GPUs x 32)'),
    'optim_wrapper.optimizer.type': _r('SGD', f'{OPENBCT} torch.optim.SGD'),
    'optim_wrapper.optimizer.lr': _r(0.1, f'{OPENBCT} --lr'),
    'optim_wrapper.optimizer.momentum': _r(0.9, f'{OPENBCT} --momentum'),
    'optim_wrapper.optimizer.weight_decay': _r(0.0001, f'{OPENBCT} --weight-decay'),
}
RECIPES = {
    'bct_resnet50_resnet18-old_8xb32_in1k.py': dict(_BCT, **{
        'model.distill_losses.loss_bct.type': _r('BCTLoss', f'{OPENBCT} --use-feat (influence '
                                                            'loss through the old classifier)'),
        'model.distill_losses.loss_bct.loss_weight': _r(1.0, f'{OPENBCT} loss = new + old-classifier '
                                                             'loss (weight 1)'),
    }),
    'ract_resnet50_resnet18-old_8xb32_in1k.py': dict(_BCT, **{
        'model.distill_losses.loss_ract.tau': _r(0.01, f'{RACT} comp_loss.temperature'),
        'model.distill_losses.loss_ract.topk': _r(10, f'{RACT} comp_loss.topk_neg'),
        'model.distill_losses.loss_ract.loss_weight': _r(1.0, f'{RACT} comp_loss.weight'),
    }),
    'unibct_resnet50_resnet18-old_8xb32_in1k.py': dict(_BCT, **{
        'custom_hooks.0.lam': _r(0.9, f'{UNIBCT} lamb=0.9'),
        'custom_hooks.0.temperature': _r(0.05, f'{UNIBCT} temper=0.05'),
    }),
}
_DIGITS = 'tiny digits demo (CPU, minutes), not a paper setting; see README.md'
NOT_PAPER_CONFIGS = {
    'digits_old_model.py': _DIGITS,
    'digits_new_model.py': _DIGITS,
    'digits_bct.py': _DIGITS,
    'digits_ract.py': _DIGITS,
    'digits_unibct.py': _DIGITS,
    'digits_bict_transformation.py': _DIGITS,
    'digits_bict_transformation_regression.py': _DIGITS,
}
