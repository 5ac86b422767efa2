"""Recipe record of the CIFAR-100 benchmark configs (format: tests/test_configs/test_recipes.py).

The schedule is the CRD / DKD benchmark's (HobbitLong/RepDistiller train_teacher.py /
train_student.py defaults); NKD's CIFAR-100 hyper-parameters are the authors' (yzd-v/cls_KD
configs/distillers/cifar100/res34_distill_res18_cifar.py).
"""
CRD = 'HobbitLong/RepDistiller'
NKD = 'yzd-v/cls_KD: configs/distillers/cifar100/res34_distill_res18_cifar.py'


def _r(value, source):
    return dict(value=value, source=source)


def _schedule(script):
    src = f'{CRD}: {script}'
    return {
        'train_dataloader.batch_size': _r(64, f'{src} --batch_size (1 GPU)'),
        'optim_wrapper.optimizer.type': _r('SGD', f'{src} optim.SGD'),
        'optim_wrapper.optimizer.lr': _r(0.05, f'{src} --learning_rate'),
        'optim_wrapper.optimizer.momentum': _r(0.9, f'{src} --momentum'),
        'optim_wrapper.optimizer.weight_decay': _r(5e-4, f'{src} --weight_decay'),
        'train_cfg.max_epochs': _r(240, f'{src} --epochs'),
        'param_scheduler.milestones': _r([150, 180, 210], f'{src} --lr_decay_epochs'),
        'param_scheduler.gamma': _r(0.1, f'{src} --lr_decay_rate'),
        'train_dataloader.dataset.pipeline.0.crop_size': _r(32, f'{src} RandomCrop(32, padding=4)'),
        'train_dataloader.dataset.pipeline.0.padding': _r(4, f'{src} RandomCrop(32, padding=4)'),
    }


def _model(backbone, in_channels, model_name):
    src = f'{CRD}: models/__init__.py model_dict[{model_name!r}]'
    return {'model.backbone': _r(backbone, src), 'model.head.in_channels': _r(in_channels, src)}


_MODELS = {
    'resnet56': (dict(type='CifarResNet', depth=56, stem_channels=16, stage_channels=(16, 32, 64)),
                 64),
    'resnet20': (dict(type='CifarResNet', depth=20, stem_channels=16, stage_channels=(16, 32, 64)),
                 64),
    'resnet32x4': (dict(type='CifarResNet', depth=32, stem_channels=32,
                        stage_channels=(64, 128, 256)), 256),
    'resnet8x4': (dict(type='CifarResNet', depth=8, stem_channels=32,
                       stage_channels=(64, 128, 256)), 256),
    'wrn_40_2': (dict(type='CifarWideResNet', depth=40, widen_factor=2), 128),
    'wrn_16_2': (dict(type='CifarWideResNet', depth=16, widen_factor=2), 128),
    'vgg13': (dict(type='CifarVGG', depth=13), 512),
    'vgg8': (dict(type='CifarVGG', depth=8), 512),
}
_FILES = {'resnet56': 'resnet56', 'resnet20': 'resnet20', 'resnet32x4': 'resnet32x4',
          'resnet8x4': 'resnet8x4', 'wrn_40_2': 'wrn40-2', 'wrn_16_2': 'wrn16-2', 'vgg13': 'vgg13',
          'vgg8': 'vgg8'}

RECIPES = {}
for _name, (_backbone, _channels) in _MODELS.items():
    RECIPES[f'{_FILES[_name]}_cifar100.py'] = dict(_schedule('train_teacher.py'),
                                                   **_model(_backbone, _channels, _name))
for _teacher, _student in (('resnet56', 'resnet20'), ('resnet32x4', 'resnet8x4'),
                           ('wrn_40_2', 'wrn_16_2'), ('vgg13', 'vgg8')):
    _t, _s = _FILES[_teacher], _FILES[_student]
    _rec = dict(_schedule('train_student.py'))
    _rec.update({f'model.student.{k[len("model."):]}': v
                 for k, v in _model(*_MODELS[_student], _student).items()})
    _rec.update({
        'model.distill_losses.loss_nkd.type': _r('NKDLoss', f'{NKD} distill_cfg loss_nkd'),
        'model.distill_losses.loss_nkd.tau': _r(3.0, f'{NKD} NKDLoss temp'),
        'model.distill_losses.loss_nkd.gamma': _r(3.5, f'{NKD} NKDLoss gamma'),
    })
    RECIPES[f'nkd_{_t}_{_s}_cifar100.py'] = _rec
NOT_PAPER_CONFIGS = {}
