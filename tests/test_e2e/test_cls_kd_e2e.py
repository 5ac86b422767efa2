"""End-to-end: a few training iterations through mmengine's Runner on tiny models and images.

* tf-NKD on a plain mmpretrain ImageClassifier (no distiller, no teacher), with Mixup soft labels;
* NKD with SingleTeacherDistiller (teacher loaded from a checkpoint written by the test), Mixup;
* ViTKD + NKD on tiny VisionTransformers with SingleTeacherDistiller.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')
cv2 = pytest.importorskip('cv2')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

NUM_CLASSES = 3


def _has_distiller() -> bool:
    try:
        from mmkd_plugins.distillers import single_teacher  # noqa: F401
    except ImportError:
        return False
    return MODELS.get('SingleTeacherDistiller') is not None


needs_distiller = pytest.mark.skipif(not _has_distiller(),
                                     reason='SingleTeacherDistiller is not available')


@pytest.fixture
def image_folder(tmp_path):
    """3 classes x 4 images of 32x32 in CustomDataset's folder layout; class k is brightest in
    channel k so that there is something to learn."""
    rng = np.random.default_rng(0)
    root = tmp_path / 'data'
    for k in range(NUM_CLASSES):
        (root / f'class_{k}').mkdir(parents=True)
        for i in range(4):
            img = rng.integers(0, 120, (32, 32, 3), dtype=np.uint8)
            img[..., k] += 120
            cv2.imwrite(str(root / f'class_{k}' / f'{i}.png'), img)
    return str(root)


def _runner_cfg(model, data_root, work_dir, max_iters=3):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5),
                dict(type='PackInputs')]
    loader = dict(batch_size=4, num_workers=0,
                  dataset=dict(type='CustomDataset', data_root=data_root, pipeline=pipeline),
                  sampler=dict(type='DefaultSampler', shuffle=True))
    val_loader = copy.deepcopy(loader)
    val_loader['dataset']['pipeline'] = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    val_loader['sampler']['shuffle'] = False
    return Config(dict(
        default_scope='mmpretrain',
        model=model,
        data_preprocessor=dict(num_classes=NUM_CLASSES, mean=[127.5] * 3, std=[127.5] * 3,
                               to_rgb=True),
        work_dir=work_dir,
        train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters),
        val_dataloader=val_loader,
        val_cfg=dict(),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=max_iters, by_epoch=False)),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        log_level='WARNING',
        randomness=dict(seed=0),
    ))


def _cnn(width, loss=None, mixup=False):
    model = dict(
        type='ImageClassifier',
        backbone=dict(type='CifarResNet', depth=8, stem_channels=width,
                      stage_channels=(width, 2 * width, 4 * width)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=4 * width,
                  loss=loss or dict(type='CrossEntropyLoss', loss_weight=1.0,
                                    use_soft=mixup)))
    if mixup:
        model['train_cfg'] = dict(augments=[dict(type='Mixup', alpha=0.8)])
    return model


def _vit(dims, layers):
    return dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', img_size=32, patch_size=8,
                      arch=dict(embed_dims=dims, num_layers=layers, num_heads=2,
                                feedforward_channels=2 * dims)),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES, in_channels=dims,
                  loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
        train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8)]))


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module, prefix=''):
    after = module.state_dict()
    return [k for k, v in before.items()
            if k.startswith(prefix) and v.is_floating_point() and not torch.equal(v, after[k])]


def _scalar(runner, key):
    return runner.message_hub.get_scalar(f'train/{key}').current()


def _teacher_ckpt(model_cfg, path):
    """Build a random teacher and save it as an mmengine-style checkpoint."""
    init_default_scope('mmpretrain')
    torch.manual_seed(1)
    teacher = MODELS.build(copy.deepcopy(model_cfg))
    torch.save(dict(state_dict=teacher.state_dict(), meta=dict()), path)
    return {k: v.clone() for k, v in teacher.state_dict().items()}


def test_tf_nkd_plain_classifier_with_mixup(image_folder, tmp_path):
    loss = dict(type='TaskLossWithTfNKD',
                task_loss=dict(type='CrossEntropyLoss', use_soft=True), tf_nkd_weight=1.0)
    cfg = _runner_cfg(_cnn(4, loss=loss, mixup=True), image_folder, str(tmp_path / 'work'))
    runner = Runner.from_cfg(cfg)
    model = runner.model
    before = _snapshot(model)
    runner.train()
    parts = model.head.loss_module.last_losses
    assert set(parts) == {'task', 'tf_nkd'}
    assert torch.isfinite(parts['tf_nkd']) and parts['tf_nkd'] > 0
    assert np.isfinite(_scalar(runner, 'loss'))
    assert _changed(before, model, 'backbone.')
    assert osp.isfile(osp.join(tmp_path, 'work', 'iter_3.pth'))
    assert 'accuracy/top1' in runner.message_hub.log_scalars or any(
        'accuracy' in k for k in runner.message_hub.log_scalars)


@needs_distiller
def test_nkd_distiller_runner(image_folder, tmp_path):
    teacher_cfg = _cnn(8)
    ckpt = str(tmp_path / 'teacher.pth')
    teacher_state = _teacher_ckpt(teacher_cfg, ckpt)
    model = dict(
        type='SingleTeacherDistiller',
        student=_cnn(4, mixup=True),
        teacher=teacher_cfg,
        teacher_ckpt=ckpt,
        teacher_forward='tensor',
        student_taps=dict(logits='head.fc'),
        teacher_taps=dict(logits='head.fc'),
        distill_losses=dict(
            loss_nkd=dict(type='NKDLoss', tau=3.0, gamma=3.5,
                          inputs=dict(student_logits='student.logits',
                                      teacher_logits='teacher.logits', target='gt_labels'))))
    runner = Runner.from_cfg(_runner_cfg(model, image_folder, str(tmp_path / 'work')))
    distiller = runner.model
    before = _snapshot(distiller)
    runner.train()
    nkd = _scalar(runner, 'distill.loss_nkd')
    assert np.isfinite(nkd) and nkd > 0
    assert _changed(before, distiller, 'student.backbone.')
    # the teacher is the checkpoint's and stays frozen
    for k, v in distiller.teacher.state_dict().items():
        assert torch.equal(v, teacher_state[k]), k
    saved = torch.load(osp.join(tmp_path, 'work', 'iter_3.pth'), map_location='cpu',
                       weights_only=False)['state_dict']
    assert not any(k.startswith('teacher') or k.startswith('_teacher') for k in saved)


@needs_distiller
def test_vitkd_nkd_distiller_runner(image_folder, tmp_path):
    teacher_cfg = _vit(32, 3)
    ckpt = str(tmp_path / 'teacher.pth')
    _teacher_ckpt(teacher_cfg, ckpt)
    taps = dict(low0='backbone.layers.0', low1='backbone.layers.1', high='backbone.ln1',
                logits='head.layers.head')
    model = dict(
        type='SingleTeacherDistiller',
        student=_vit(16, 2),
        teacher=teacher_cfg,
        teacher_ckpt=ckpt,
        teacher_forward='tensor',
        student_taps=taps,
        teacher_taps=taps,
        distill_losses=dict(
            loss_vitkd=dict(
                type='ViTKDLoss', student_dims=16, teacher_dims=32,
                # larger weights than the paper's 3e-5 / 3e-6: 3 iterations must move the
                # generator parameters visibly
                alpha_vitkd=1e-2, beta_vitkd=1e-2, lambda_vitkd=0.5,
                inputs=dict(student_low_0='student.low0', teacher_low_0='teacher.low0',
                            student_low_1='student.low1', teacher_low_1='teacher.low1',
                            student_high='student.high', teacher_high='teacher.high')),
            loss_nkd=dict(type='NKDLoss', tau=1.0, gamma=1.0,
                          inputs=dict(student_logits='student.logits',
                                      teacher_logits='teacher.logits', target='gt_labels'))))
    runner = Runner.from_cfg(_runner_cfg(model, image_folder, str(tmp_path / 'work')))
    distiller = runner.model
    before = _snapshot(distiller)
    runner.train()
    for key in ('distill.loss_vitkd.loss_vitkd_low', 'distill.loss_vitkd.loss_vitkd_gen',
                'distill.loss_nkd'):
        value = _scalar(runner, key)
        assert np.isfinite(value) and value > 0, key
    # the ViTKD connector parts live in the loss and are trained with the student
    changed = _changed(before, distiller, 'distill_losses.loss_vitkd.')
    assert any('generator.mask_token' in k for k in changed), changed
    assert any('low_connectors.0' in k for k in changed), changed
    assert _changed(before, distiller, 'student.backbone.layers.0')


@needs_distiller
def test_vitkd_token_grid_mismatch_is_reported(tmp_path):
    """A teacher at another patch size fails on the first step with the grid message."""
    init_default_scope('mmpretrain')
    teacher_cfg = _vit(32, 2)
    teacher_cfg['backbone']['patch_size'] = 4  # 8x8 grid vs the student's 4x4
    model = MODELS.build(dict(
        type='SingleTeacherDistiller', student=_vit(16, 2), teacher=teacher_cfg,
        teacher_ckpt=None, allow_random_teacher=True, teacher_forward='extract_feat',
        student_taps=dict(high='backbone.ln1'), teacher_taps=dict(high='backbone.ln1'),
        distill_losses=dict(loss_vitkd=dict(
            type='ViTKDLoss', student_dims=16, teacher_dims=32, num_low_layers=0,
            inputs=dict(student_high='student.high', teacher_high='teacher.high'))),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES)))
    from mmpretrain.structures import DataSample
    data = model.data_preprocessor(
        dict(inputs=[torch.zeros(3, 32, 32, dtype=torch.uint8)] * 2,
             data_samples=[DataSample().set_gt_label(0), DataSample().set_gt_label(1)]), True)
    with pytest.raises(ValueError, match=r'same token grid.*4x4.*8x8'):
        model(**data, mode='loss')
