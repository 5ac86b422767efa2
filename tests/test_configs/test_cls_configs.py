"""Every classification distillation config (NKD, tf-NKD, ViTKD, MGD-cls, CIFAR-100) builds.

Models are built with pretrained/init_cfg checkpoints removed and ``teacher_ckpt`` replaced by a
random teacher; loading any checkpoint (``torch.load`` / mmengine loaders) fails the test. Small
models also run one training forward on random images to check channel/token wiring; the large
ViT pairs are built on the meta device (no memory, no compute) and checked statically.
"""
import copy
import glob
import os.path as osp
import re

import pytest
import torch

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG_DIRS = ['configs/nkd', 'configs/vitkd', 'configs/mgd/cls', 'configs/cifar100']
CONFIGS = sorted(
    osp.relpath(p, REPO) for d in CONFIG_DIRS for p in glob.glob(osp.join(REPO, d, '*.py'))
    if osp.basename(p) != 'recipes.py')  # recipes.py: the recipe record, not a config

# big ViT pairs: build on the meta device only
META_ONLY = ('deit3-base_deit-small', 'deit3-large_deit-base')


def test_config_list_complete():
    names = {osp.basename(c) for c in CONFIGS}
    expected = {
        'nkd_resnet34_resnet18_8xb32_in1k.py', 'nkd_resnet50_mobilenet-v1_8xb32_in1k.py',
        'tf-nkd_resnet18_8xb32_in1k.py', 'tf-nkd_mobilenet-v1_8xb32_in1k.py',
        'tf-nkd_swin-tiny_16xb64_in1k.py', 'mgd_resnet34_resnet18_8xb32_in1k.py',
        'mgd_resnet50_mobilenet-v1_8xb32_in1k.py',
        'nkd_resnet56_resnet20_cifar100.py', 'nkd_resnet32x4_resnet8x4_cifar100.py',
        'nkd_wrn40-2_wrn16-2_cifar100.py', 'nkd_vgg13_vgg8_cifar100.py',
        'resnet56_cifar100.py', 'resnet32x4_cifar100.py', 'wrn40-2_cifar100.py',
        'vgg13_cifar100.py'
    }
    expected |= {f'{m}_{p}_in1k.py' for m in ('vitkd', 'vitkd-nkd') for p in (
        'deit3-small_deit-tiny_4xb256', 'deit3-base_deit-small_4xb256',
        'deit3-large_deit-base_16xb64')}
    assert expected <= names, sorted(expected - names)
    for d in CONFIG_DIRS:
        assert osp.isfile(osp.join(REPO, d, 'README.md')), d


@pytest.fixture
def no_checkpoint_loading(monkeypatch):
    """Any attempt to read a checkpoint (disk or URL) raises."""
    import mmengine.runner.checkpoint as ckpt_mod

    def refuse(*args, **kwargs):
        raise AssertionError(f'a config build tried to load a checkpoint: {args[:1]}')

    monkeypatch.setattr(torch, 'load', refuse)
    monkeypatch.setattr(ckpt_mod.CheckpointLoader, 'load_checkpoint', refuse)
    monkeypatch.setattr(ckpt_mod, 'load_checkpoint', refuse)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', refuse)


def _strip_pretrained(cfg):
    """Remove 'Pretrained' init_cfgs and ``pretrained=`` keys everywhere in a model config."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if k == 'pretrained':
                continue
            if k == 'init_cfg' and 'Pretrained' in repr(v):
                out[k] = None
                continue
            out[k] = _strip_pretrained(v)
        return out
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_strip_pretrained(v) for v in cfg)
    return cfg


def _inherits_upstream(path):
    """Follow relative ``_base_`` files until an upstream ``mmpretrain::`` base is found."""
    with open(osp.join(REPO, path)) as f:
        text = f.read()
    if 'mmpretrain::' in text:
        return True
    bases = re.findall(r"'(\.{1,2}/[^']+\.py)'", text.split('model = ')[0])
    return any(_inherits_upstream(osp.relpath(osp.normpath(osp.join(osp.dirname(
        osp.join(REPO, path)), b)), REPO)) for b in bases)


def _model_cfg(cfg):
    model = _strip_pretrained(copy.deepcopy(cfg.model.to_dict()))
    if cfg.get('data_preprocessor') is not None:  # what the Runner does
        model.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor.to_dict()))
    if model['type'] == 'SingleTeacherDistiller':
        assert model['teacher_ckpt'], 'a distillation config must name the teacher checkpoint'
        model['teacher_ckpt'] = None
        model['allow_random_teacher'] = True
        if isinstance(model['teacher'], dict):
            model['teacher'] = _strip_pretrained(model['teacher'])
    return model


def _batch(model, num_classes, size, n=2):
    from mmpretrain.structures import DataSample
    data = dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
                        for _ in range(n)],
                data_samples=[DataSample().set_gt_label(i % num_classes) for i in range(n)])
    return model.data_preprocessor(data, training=True)


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(c) for c in CONFIGS])
def test_config_builds(path, no_checkpoint_loading):
    cfg = Config.fromfile(osp.join(REPO, path))
    assert 'mmkd_plugins' in cfg.custom_imports['imports']
    assert _inherits_upstream(path), f'{path} does not inherit an mmpretrain:: config'
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = _model_cfg(cfg)
    name = osp.basename(path)
    is_vit = name.startswith('vitkd')
    meta = any(k in name for k in META_ONLY)
    torch.manual_seed(0)
    if meta:
        with torch.device('meta'):
            model = MODELS.build(model_cfg)
    else:
        model = MODELS.build(model_cfg)

    if name.startswith('tf-nkd'):
        assert model_cfg['type'] == 'ImageClassifier'  # teacher-free: no distiller
        assert type(model.head.loss_module).__name__ == 'TaskLossWithTfNKD'
        upstream = 'LabelSmoothLoss' if 'swin' in name else 'CrossEntropyLoss'
        assert type(model.head.loss_module.task_loss).__name__ == upstream
        if 'swin' in name:
            return  # Swin needs 224px inputs; the tf-NKD wiring is exercised by the others
    if name.startswith(('nkd', 'vitkd', 'mgd')):
        assert type(model).__name__ == 'SingleTeacherDistiller'
        assert model.teacher is not None and not model.teacher.training
        assert all(not p.requires_grad for p in model.teacher.parameters())
    if is_vit:
        vit = model.distill_losses['loss_vitkd']
        assert vit.student_dims == model.student.backbone.embed_dims
        assert vit.teacher_dims == model.teacher.backbone.embed_dims
        assert model.student.backbone.patch_resolution == model.teacher.backbone.patch_resolution
    if is_vit and not meta:
        # the ViTKD parts are optimised with the student; the mask token is not weight-decayed
        from mmengine.optim import build_optim_wrapper
        optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        groups = {id(p): g for g in optim.optimizer.param_groups for p in g['params']}
        mask_token = vit.generator.mask_token
        assert id(mask_token) in groups and groups[id(mask_token)]['weight_decay'] == 0
        assert groups[id(vit.low_connectors[0].align.weight)]['weight_decay'] > 0
    if meta or not name.startswith(('nkd', 'tf-nkd', 'vitkd', 'mgd')):
        return  # baselines/teachers: building them is enough

    # one training forward on random images
    head = model.student.head if hasattr(model, 'student') else model.head
    size = 16 if 'cifar' in name else 64
    data = _batch(model, head.num_classes, size)
    model.train()
    losses = model(**data, mode='loss')
    assert 'loss' in losses and torch.isfinite(losses['loss'])
    distill = {k: v for k, v in losses.items() if k.startswith('distill.')}
    if name.startswith(('nkd', 'vitkd', 'mgd')):
        assert distill and all(torch.isfinite(v) for v in distill.values()), losses
        if is_vit:
            assert any('loss_vitkd_gen' in k for k in distill)
        if 'nkd' in name.split('_')[0]:
            assert 'distill.loss_nkd' in distill
    else:
        assert not distill
