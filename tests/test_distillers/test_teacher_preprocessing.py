"""A teacher with its own data preprocessor and input size, applied to the raw batch.

The teacher must see exactly what its own preprocessor gives for the raw batch (another mean / std,
channel order), resized to its input size, with the student's Mixup replayed with the same draws;
the student keeps seeing its own inputs, and the random stream is as without the teacher.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

pytest.importorskip('mmpretrain')

from mmkd_plugins.distillers.teacher_slot import rng_state, set_rng_state  # noqa: E402
from tests.helpers import save_random_weights, tiny_classifier_cfg  # noqa: E402
from tests.test_distillers.test_single_teacher import mgd_distiller_cfg  # noqa: E402

TEACHER_PRE = dict(type='mmpretrain.ClsDataPreprocessor', mean=[100., 110., 120.],
                   std=[50., 60., 70.], to_rgb=False, num_classes=10)


def raw_batch(n=4, size=16, seed=0):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
                        for _ in range(n)],
                data_samples=[DataSample().set_gt_label(i % 10) for i in range(n)])


def distiller_cfg(ckpt, student_pre=None, **kw):
    """The MGD test distiller (teacher run to its backbone) with a student preprocessor that
    differs from the teacher's."""
    cfg = mgd_distiller_cfg(ckpt, teacher_forward='backbone', **kw)
    cfg['student']['data_preprocessor'] = dict(
        type='mmpretrain.ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True,
        num_classes=10, **(student_pre or {}))
    return cfg


@pytest.fixture
def ckpt(tmp_path):
    path = str(tmp_path / 'teacher.pth')
    save_random_weights(tiny_classifier_cfg(width=8), path, seed=1)
    return path


def seen_by(module):
    seen = []
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    return seen


def train_forward(model, data):
    """What mmengine's train_step does: preprocess (training=True), then the loss forward."""
    out = model.data_preprocessor(data, True)
    return out, model(out['inputs'], out['data_samples'], mode='loss')


def test_teacher_sees_its_own_preprocessing_and_input_size(ckpt):
    cfg = distiller_cfg(ckpt, teacher_data_preprocessor=TEACHER_PRE, teacher_input_size=24)
    # 24 px gives the teacher a 3x3 last stage, the student's 16 px 2x2: resampled to 2x2
    cfg['connectors']['rs'] = dict(type='FeatureResample', size=2)
    cfg['distill_losses']['loss_mgd']['inputs']['preds_T'] = 'rs(teacher.feat)'
    model = MODELS.build(cfg)
    model.train()
    teacher_in, student_in = seen_by(model.teacher.backbone), seen_by(model.student.backbone)
    data = raw_batch()
    out, losses = train_forward(model, copy.deepcopy(data))
    assert torch.isfinite(losses['distill.loss_mgd'])
    # direct computation: the teacher's preprocessor on the raw batch, then a bilinear resize
    raw = torch.stack(data['inputs']).float()
    mean, std = torch.tensor([100., 110., 120.]).view(1, 3, 1, 1), torch.tensor(
        [50., 60., 70.]).view(1, 3, 1, 1)
    expected = F.interpolate((raw - mean) / std, size=(24, 24), mode='bilinear',
                             align_corners=False)
    assert teacher_in[0].shape == (4, 3, 24, 24)
    assert torch.allclose(teacher_in[0], expected, atol=1e-5)
    # the student keeps its own preprocessing (BGR -> RGB, 127.5)
    assert torch.allclose(student_in[0], (raw.flip(1) - 127.5) / 127.5, atol=1e-6)
    assert torch.equal(student_in[0], out['inputs'])
    # the preprocessor's buffers stay out of the checkpoint; the raw batch is not kept
    assert not any(k.startswith('teacher') for k in model.state_dict())
    assert model.data_preprocessor.take() is None


def test_teacher_preprocessor_from_its_own_config(ckpt):
    teacher = tiny_classifier_cfg(width=8)
    teacher['data_preprocessor'] = dict(TEACHER_PRE, to_rgb=True)
    model = MODELS.build(distiller_cfg(ckpt, teacher=teacher, teacher_data_preprocessor='teacher'))
    model.train()
    teacher_in = seen_by(model.teacher.backbone)
    data = raw_batch(seed=3)
    train_forward(model, copy.deepcopy(data))
    raw = torch.stack(data['inputs']).float().flip(1)  # the teacher's to_rgb
    mean, std = torch.tensor([100., 110., 120.]).view(1, 3, 1, 1), torch.tensor(
        [50., 60., 70.]).view(1, 3, 1, 1)
    assert torch.allclose(teacher_in[0], (raw - mean) / std, atol=1e-5)
    # without the option the teacher sees the student's inputs, as before
    plain = MODELS.build(distiller_cfg(ckpt, teacher=teacher))
    plain.train()
    seen = seen_by(plain.teacher.backbone)
    out, _ = train_forward(plain, copy.deepcopy(data))
    assert torch.equal(seen[0], out['inputs'])


def test_student_mixup_is_replayed_on_the_teacher_inputs(ckpt):
    mixup = dict(batch_augments=dict(augments=[dict(type='Mixup', alpha=0.8)]))
    model = MODELS.build(distiller_cfg(ckpt, student_pre=mixup,
                                       teacher_data_preprocessor=TEACHER_PRE))
    model.train()
    teacher_in = seen_by(model.teacher.backbone)
    # the random state when the student starts its forward (after the teacher ran)
    states = []
    model.student.backbone.register_forward_pre_hook(lambda *a: states.append(rng_state()))
    data = raw_batch(n=6, seed=5)
    torch.manual_seed(7)
    start = rng_state()
    out, _ = train_forward(model, copy.deepcopy(data))

    # reference: the same draws applied to the teacher's own preprocessing of the raw batch
    teacher_pre = MODELS.build(TEACHER_PRE)
    student_pre = MODELS.build(dict(type='mmpretrain.ClsDataPreprocessor', mean=[127.5] * 3,
                                    std=[127.5] * 3, to_rgb=True, num_classes=10, **mixup))
    set_rng_state(start)
    ref_student = student_pre(copy.deepcopy(data), True)['inputs']
    after_plain = rng_state()
    set_rng_state(start)
    clean = teacher_pre(copy.deepcopy(data), True)['inputs']
    ref_teacher, _ = student_pre.batch_augments(clean, torch.zeros(6, 1))
    assert torch.allclose(out['inputs'], ref_student, atol=1e-6)
    assert torch.allclose(teacher_in[0], ref_teacher, atol=1e-5)
    assert not torch.allclose(teacher_in[0], clean, atol=1e-3)  # it was mixed
    # the random stream continues as if the teacher had not drawn anything
    assert torch.equal(states[0][2], after_plain[2])
    assert (states[0][1][1] == after_plain[1][1]).all() and states[0][0] == after_plain[0]


def test_errors_are_clear(ckpt):
    model = MODELS.build(distiller_cfg(ckpt, teacher_data_preprocessor=TEACHER_PRE))
    model.train()
    inputs = torch.randn(2, 3, 16, 16)
    with pytest.raises(RuntimeError, match='needs the raw batch'):
        model(inputs, raw_batch(2)['data_samples'], mode='loss')
    with pytest.raises(ValueError, match='needs the teacher\'s own data_preprocessor'):
        MODELS.build(distiller_cfg(ckpt, teacher_input_size=32))
    bare = tiny_classifier_cfg(width=8)
    bare.pop('data_preprocessor')
    with pytest.raises(ValueError, match="config has no data_preprocessor"):
        MODELS.build(distiller_cfg(ckpt, teacher=bare, teacher_data_preprocessor='teacher'))
    with pytest.raises(ValueError, match="a config dict or 'teacher'"):
        MODELS.build(distiller_cfg(ckpt, teacher_data_preprocessor='student'))


@pytest.mark.parametrize('run_scope', ['mmengine', 'mmdet'])
def test_models_are_built_in_their_own_repo_whatever_the_run_scope(ckpt, run_scope):
    """Student and teacher dicts typed 'mmpretrain.ImageClassifier' without a data_preprocessor type
    build mmpretrain's 'ClsDataPreprocessor' under a run whose default scope is another repo (a
    detection run with a classification teacher), as they do under no scope."""
    from mmengine.registry import DefaultScope
    pytest.importorskip('mmdet')
    cfg = mgd_distiller_cfg(ckpt, teacher_forward='backbone')
    for part in (cfg['student'], cfg['teacher']):
        part['data_preprocessor'] = dict(mean=[127.5] * 3, std=[127.5] * 3, num_classes=10)
    with DefaultScope.overwrite_default_scope(run_scope):
        model = MODELS.build(copy.deepcopy(cfg))
    from mmpretrain.models import ClsDataPreprocessor
    assert type(model.student.data_preprocessor) is ClsDataPreprocessor
    assert type(model.teacher.data_preprocessor) is ClsDataPreprocessor
    # a model dict with its own _scope_ keeps it
    from mmkd_plugins.distillers.teacher import load_model_config
    assert load_model_config(dict(type='mmpretrain.ImageClassifier'))['_scope_'] == 'mmpretrain'
    assert load_model_config(dict(type='mmdet.X', _scope_='mmseg'))['_scope_'] == 'mmseg'
    assert '_scope_' not in load_model_config(dict(type='ImageClassifier'))
