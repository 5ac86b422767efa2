"""Several teachers: NKD from one teacher, MGD from another, each loss computed from its own.

Unit level: every teacher frozen, in eval mode, outside state_dict / parameters, stopped after its
last tap; each loss equals a direct computation from its own teacher's output. Runner level: a few
iterations on tiny images, checkpoint without teachers, conversion to the plain student, and
StopDistillHook stopping both teachers.
"""
import copy
import os.path as osp
import sys

import pytest
import torch
from mmengine.registry import MODELS
from mmengine.runner import Runner

pytest.importorskip('mmpretrain')

from mmkd_plugins.models.losses.mgd import MGDLoss  # noqa: E402
from mmkd_plugins.models.losses.nkd import NKDLoss  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.helpers import cls_batch, save_random_weights, tiny_classifier_cfg  # noqa: E402
from tests.test_e2e.test_cls_kd_e2e import _runner_cfg, image_folder  # noqa: E402,F401

sys.path.insert(0, osp.join(REPO, 'tools'))
import convert_kd_ckpt_to_student  # noqa: E402


def two_teacher_cfg(ckpts, num_classes=10):
    """NKD from teacher ``cls`` (width 8), MGD from teacher ``feat`` (width 6)."""
    return dict(
        type='SingleTeacherDistiller',
        student=tiny_classifier_cfg(width=4, num_classes=num_classes),
        teachers=dict(
            cls=dict(config=tiny_classifier_cfg(width=8, num_classes=num_classes), ckpt=ckpts[0],
                     forward='tensor', taps=dict(logits='head.fc')),
            feat=dict(config=tiny_classifier_cfg(width=6, num_classes=num_classes), ckpt=ckpts[1],
                      forward='backbone', taps=dict(feat=dict(module='backbone', idx=-1)))),
        student_taps=dict(logits='head.fc', feat=dict(module='backbone', idx=-1)),
        connectors=dict(mgd=dict(type='MGDConnector', student_channels=32, teacher_channels=48,
                                 lambda_mgd=0.5)),
        distill_losses=dict(
            loss_nkd=dict(type='NKDLoss', tau=1.0, gamma=1.5, inputs=dict(
                student_logits='student.logits', teacher_logits='teacher.cls.logits',
                target='gt_labels')),
            loss_mgd=dict(type='MGDLoss', alpha_mgd=2e-3, inputs=dict(
                preds_S='mgd(student.feat)', preds_T='teacher.feat.feat'))))


@pytest.fixture
def ckpts(tmp_path):
    paths = [str(tmp_path / 'cls.pth'), str(tmp_path / 'feat.pth')]
    save_random_weights(tiny_classifier_cfg(width=8), paths[0], seed=1)
    save_random_weights(tiny_classifier_cfg(width=6), paths[1], seed=2)
    return paths


def test_each_loss_uses_its_own_teacher(ckpts):
    model = MODELS.build(two_teacher_cfg(ckpts))
    model.train()
    teachers = model.teachers
    assert set(teachers) == {'cls', 'feat'}
    for name, t in teachers.items():
        assert not t.training and all(not p.requires_grad for p in t.parameters())
        ref = torch.load(ckpts[0 if name == 'cls' else 1], weights_only=False)['state_dict']
        assert all(torch.equal(v, ref[k]) for k, v in t.state_dict().items())
    assert not any(k.startswith(('teacher', '_slots')) for k in model.state_dict())
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for t in teachers.values() for p in t.parameters())
    # the feature teacher stops after its backbone: its head never runs
    head_calls = []
    teachers['feat'].head.register_forward_hook(lambda *a: head_calls.append(1))

    inputs, samples = cls_batch(4)
    torch.manual_seed(0)
    losses = model(inputs, samples, mode='loss')
    assert head_calls == []
    assert set(losses) == {'loss', 'distill.loss_nkd', 'distill.loss_mgd'}

    # direct computation, each from its own teacher
    with torch.no_grad():
        t_logits = teachers['cls'](inputs, mode='tensor')
        t_feat = teachers['feat'].backbone(inputs)[-1]
        s_logits = model.student(inputs, mode='tensor')
        s_feat = model.student.backbone(inputs)[-1]
    targets = torch.tensor([s.gt_label.item() for s in samples])
    nkd = NKDLoss(tau=1.0, gamma=1.5)(s_logits, t_logits, targets)
    assert torch.allclose(losses['distill.loss_nkd'], nkd, rtol=1e-5, atol=1e-6)
    # the other teacher's logits give another value: the loss did use teacher "cls"
    other = model.teachers['feat'](inputs, mode='tensor')
    assert not torch.allclose(NKDLoss(tau=1.0, gamma=1.5)(s_logits, other, targets), nkd)
    torch.manual_seed(0)  # the same MGD mask as in the forward above (the only random draw)
    mgd = MGDLoss(alpha_mgd=2e-3)(model.connectors['mgd'](s_feat), t_feat)
    assert torch.allclose(losses['distill.loss_mgd'], mgd, rtol=1e-5)


def test_config_errors_name_the_problem(ckpts):
    cfg = two_teacher_cfg(ckpts)
    bad = copy.deepcopy(cfg)
    bad['distill_losses']['loss_mgd']['inputs']['preds_T'] = 'teacher.feat'
    with pytest.raises(ValueError, match=r'several teachers .*"teacher.<name>.<tap>"'):
        MODELS.build(bad)
    bad = copy.deepcopy(cfg)
    bad['distill_losses']['loss_mgd']['inputs']['preds_T'] = 'teacher.nope.feat'
    with pytest.raises(KeyError, match='unknown teacher "nope"'):
        MODELS.build(bad)
    bad = copy.deepcopy(cfg)
    bad['distill_losses']['loss_mgd']['inputs']['preds_T'] = 'teacher.cls.feat'
    with pytest.raises(KeyError, match='has no tap "feat"'):
        MODELS.build(bad)
    bad = copy.deepcopy(cfg)
    bad['teacher'] = bad['teachers']['cls']['config']
    with pytest.raises(ValueError, match='not both'):
        MODELS.build(bad)
    bad = copy.deepcopy(cfg)
    bad['teachers']['cls']['checkpoint'] = 'x.pth'
    with pytest.raises(ValueError, match=r"unknown keys \['checkpoint'\]"):
        MODELS.build(bad)
    with pytest.raises(RuntimeError, match='several teachers'):
        MODELS.build(cfg).teacher


def test_two_teachers_train_through_runner(ckpts, image_folder, tmp_path):  # noqa: F811
    from tests.test_e2e.test_cls_kd_e2e import NUM_CLASSES
    paths = [str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth')]
    save_random_weights(tiny_classifier_cfg(width=8, num_classes=NUM_CLASSES), paths[0], seed=1)
    save_random_weights(tiny_classifier_cfg(width=6, num_classes=NUM_CLASSES), paths[1], seed=2)
    model = two_teacher_cfg(paths, num_classes=NUM_CLASSES)
    model['student'].pop('data_preprocessor')  # the config's top-level one (Runner)
    cfg = _runner_cfg(model, image_folder, str(tmp_path / 'work'), max_iters=4)
    cfg.custom_hooks = [dict(type='StopDistillHook', stop_iter=2)]
    runner = Runner.from_cfg(cfg)
    calls = {name: [] for name in runner.model.teachers}
    for name, t in runner.model.teachers.items():
        t.backbone.register_forward_pre_hook(lambda *a, n=name: calls[n].append(runner.iter))
    runner.train()
    # both teachers ran in iterations 0 and 1, none after StopDistillHook
    assert calls == {'cls': [0, 1], 'feat': [0, 1]}
    names = {id(p) for g in runner.optim_wrapper.optimizer.param_groups for p in g['params']}
    assert not any(id(p) in names for t in runner.model.teachers.values() for p in t.parameters())
    ckpt = osp.join(tmp_path, 'work', 'iter_4.pth')
    state = torch.load(ckpt, weights_only=False)['state_dict']
    assert not any(k.startswith(('teacher', '_slots')) for k in state)
    out = str(tmp_path / 'student.pth')
    convert_kd_ckpt_to_student.main([ckpt, out])
    plain = MODELS.build(tiny_classifier_cfg(width=4, num_classes=NUM_CLASSES))
    plain.load_state_dict(torch.load(out, weights_only=False)['state_dict'], strict=True)
