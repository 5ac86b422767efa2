"""Recipe record of the style-transfer configs (format: tests/test_configs/test_recipes.py).

The contrastive refinement (arXiv 2205.12135) has no public code: its settings are this project's
choices (README.md) and are not recorded. The AdaIN training both configs share follows the AdaIN
PyTorch reference (naoto0804/pytorch-AdaIN train.py; the authors' code is Torch7).
"""
ADAIN = 'naoto0804/pytorch-AdaIN: train.py'


def _r(value, source):
    return dict(value=value, source=source)


_ADAIN = {
    'train_dataloader.batch_size': _r(8, f'{ADAIN} --batch_size'),
    'train_dataloader.dataset.pipeline.1.crop_size': _r(256, f'{ADAIN} RandomCrop(256)'),
    'optim_wrapper.optimizer.type': _r('Adam', f'{ADAIN} torch.optim.Adam'),
    'optim_wrapper.optimizer.lr': _r(1e-4, f'{ADAIN} --lr'),
    'param_scheduler.0.decay': _r(5e-5, f'{ADAIN} --lr_decay (lr / (1 + decay * iter))'),
    'train_cfg.max_iters': _r(160000, f'{ADAIN} --max_iter'),
    'model.content_weight': _r(1.0, f'{ADAIN} --content_weight'),
    'model.style_weight': _r(10.0, f'{ADAIN} --style_weight'),
}
RECIPES = {
    'adain_vgg19_1xb8-160k_coco-wikiart.py': dict(_ADAIN),
    'adain-contrastive_vgg19_1xb8-160k_coco-wikiart.py': dict(_ADAIN),
}
NOT_PAPER_CONFIGS = {
    'adain_vgg19_sample-images.py': 'inference on the bundled sample images (no training recipe)',
    'adain-contrastive_vgg19_sample-images.py': 'inference on the bundled sample images (no '
                                                'training recipe)',
}
