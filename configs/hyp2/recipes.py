"""Recipe record of the HyP2 configs (format: tests/test_configs/test_recipes.py).

Official code: JerryXu0129/HyP2-Loss (config.py: data, optimizer, schedule; retrieval.py: the loss).
The official network rate is 0.01 for AlexNet and 0.02 for GoogLeNet; its 'resnet' option sets
none (it stops with a NameError), so the ResNet-50 configs record the GoogLeNet rate with that
source (our choice, see README.md).
"""
HYP2 = 'JerryXu0129/HyP2-Loss'
CFG = f'{HYP2}: config.py'

# dataset file -> (official --dataset, classes, retrieval top-k, source of the top-k)
DATASETS = {
    'coco': ('coco', 80, 5000, f'{CFG} --dataset help lists coco (no coco branch: mAP@5000 as '
                               'nuswide)'),
    'flickr25k': ('flickr', 38, 1000, f'{CFG} dataset == \'flickr\' retrieve = 1000'),
    'nuswide21': ('nuswide', 21, 5000, f'{CFG} dataset == \'nuswide\' retrieve = 5000'),
    'voc2007': ('voc2007', 20, 5011, f'{CFG} dataset == \'voc2007\' retrieve = 5011'),
    'voc2012': ('voc2012', 20, 5717, f'{CFG} dataset == \'voc2012\' retrieve = 5717'),
}
BITS = {'coco': (16, 32, 48, 64), 'flickr25k': (12, 24, 36, 48), 'nuswide21': (12, 24, 36, 48),
        'voc2007': (16, 32, 48, 64), 'voc2012': (16, 32, 48, 64)}


def _r(value, source):
    return dict(value=value, source=source)


def _hyp2(net, dataset, bits):
    official, classes, topk, topk_src = DATASETS[dataset]
    lr = (_r(0.01, f'{CFG} feature_rate (alexnet)') if net == 'alexnet' else
          _r(0.02, f'{CFG} feature_rate (googlenet; the resnet option sets none)'))
    proxies_mult = 2.0 if net == 'alexnet' else 1.0
    return {
        'model.head.hash_bits': _r(bits, f'{CFG} --hash_bit'),
        'model.head.num_classes': _r(classes, f'{CFG} num_classes ({official})'),
        'model.head.loss.beta': _r(0.5, f'{CFG} --beta'),
        'model.head.loss.margin': _r(None, f'{CFG} threshold from codetable.xlsx (margin=None: '
                                           'the packaged table)'),
        'val_evaluator.topk': _r(topk, topk_src),
        'train_dataloader.batch_size': _r(100, f'{CFG} --batch_size (1 GPU)'),
        'train_dataloader.dataset.pipeline.1.scale': _r((224, 224), f'{CFG} data_transform '
                                                                    'Resize((224, 224))'),
        'optim_wrapper.optimizer.type': _r('SGD', f'{HYP2}: retrieval.py torch.optim.SGD'),
        'optim_wrapper.optimizer.lr': lr,
        'optim_wrapper.paramwise_cfg.custom_keys': _r(
            {'loss_module.proxies': dict(lr_mult=proxies_mult)},
            f'{CFG} --rate 0.02 (proxies lr) / feature_rate'),
        'optim_wrapper.optimizer.momentum': _r(0.9, f'{HYP2}: retrieval.py SGD momentum'),
        'optim_wrapper.optimizer.weight_decay': _r(0.0005, f'{HYP2}: retrieval.py SGD weight_decay'),
        'param_scheduler.step_size': _r(10, f'{HYP2}: retrieval.py StepLR step_size'),
        'param_scheduler.gamma': _r(0.5, f'{HYP2}: retrieval.py StepLR gamma'),
        'train_cfg.max_epochs': _r(100, f'{CFG} --epochs'),
    }


RECIPES = {
    f'hyp2_{net}_1xb100-100e_{dataset}-{bits}bit.py': _hyp2(net, dataset, bits)
    for net in ('alexnet', 'resnet50') for dataset in DATASETS for bits in BITS[dataset]
}
NOT_PAPER_CONFIGS = {}
