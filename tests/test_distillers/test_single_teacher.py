import copy

import pytest
import torch
from mmengine.registry import MODELS

from mmkd_plugins.distillers import TapError
from tests.helpers import cls_batch, save_random_weights, tiny_classifier_cfg


def mgd_distiller_cfg(teacher_ckpt, **overrides):
    cfg = dict(
        type='SingleTeacherDistiller',
        student=tiny_classifier_cfg(width=4),
        teacher=tiny_classifier_cfg(width=8),
        teacher_ckpt=teacher_ckpt,
        teacher_forward='tensor',
        student_taps=dict(feat=dict(module='backbone', idx=-1)),
        teacher_taps=dict(feat=dict(module='backbone', idx=-1)),
        connectors=dict(mgd=dict(type='MGDConnector', student_channels=32, teacher_channels=64,
                                 lambda_mgd=0.15, mask_type='channel')),
        distill_losses=dict(loss_mgd=dict(type='MGDLoss', alpha_mgd=1e-3,
                                          inputs=dict(preds_S='mgd(student.feat)',
                                                      preds_T='teacher.feat'))))
    cfg.update(overrides)
    return cfg


@pytest.fixture
def teacher_ckpt(tmp_path):
    path = str(tmp_path / 'teacher.pth')
    save_random_weights(tiny_classifier_cfg(width=8), path, seed=1)
    return path


def test_teacher_frozen_eval_and_outside_state_dict(teacher_ckpt):
    model = MODELS.build(mgd_distiller_cfg(teacher_ckpt))
    model.train()
    assert not model.teacher.training
    assert all(not m.training for m in model.teacher.modules())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    keys = model.state_dict().keys()
    assert not any(k.startswith('teacher') for k in keys)
    assert any(k.startswith('student.backbone') for k in keys)
    assert any(k.startswith('connectors.mgd') for k in keys)
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in model.teacher.parameters())
    # teacher weights are the checkpoint's
    ref = torch.load(teacher_ckpt, weights_only=False)['state_dict']
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, ref[k])


def test_loss_keys_and_teacher_bn_stats_untouched(teacher_ckpt):
    model = MODELS.build(mgd_distiller_cfg(teacher_ckpt))
    model.train()
    before = copy.deepcopy(model.teacher.state_dict())
    inputs, samples = cls_batch(4)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss', 'distill.loss_mgd'}
    assert losses['distill.loss_mgd'].requires_grad and losses['distill.loss_mgd'] > 0
    sum(losses.values()).backward()
    assert model.connectors['mgd'].generation[0].weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # eval mode: BN running stats unchanged


def test_loss_value_is_mgd_of_recorded_features(teacher_ckpt):
    model = MODELS.build(mgd_distiller_cfg(teacher_ckpt))
    inputs, samples = cls_batch(4)
    torch.manual_seed(7)
    losses = model(inputs, samples, mode='loss')
    # recompute: teacher feature, student feature, connector with the same random mask
    with torch.no_grad():
        t_feat = model.teacher.backbone(inputs)[-1]
        s_feat = model.student.backbone(inputs)[-1]
        torch.manual_seed(7)
        model.teacher.backbone(inputs)  # the distiller ran the teacher first: no rng use
        gen = model.connectors['mgd'](s_feat)
    expected = 1e-3 * ((gen - t_feat) ** 2).sum() / 4
    assert torch.allclose(losses['distill.loss_mgd'], expected, rtol=1e-4)


def test_teacher_stops_after_last_tap(teacher_ckpt):
    model = MODELS.build(mgd_distiller_cfg(teacher_ckpt))
    head_calls = []
    model.teacher.head.register_forward_hook(lambda *a: head_calls.append(1))
    inputs, samples = cls_batch(2)
    model(inputs, samples, mode='loss')
    assert head_calls == []  # 'tensor' mode would reach the head; the taps stop it at the backbone
    model.teacher_stop_early = False
    model(inputs, samples, mode='loss')
    assert head_calls == [1]


def test_predict_and_tensor_delegate_to_student(teacher_ckpt):
    model = MODELS.build(mgd_distiller_cfg(teacher_ckpt))
    model.eval()
    inputs, samples = cls_batch(3)
    out = model(inputs, copy.deepcopy(samples), mode='predict')
    ref = model.student(inputs, copy.deepcopy(samples), mode='predict')
    for a, b in zip(out, ref):
        assert torch.allclose(a.pred_score, b.pred_score)
    assert torch.allclose(model(inputs, mode='tensor'), model.student(inputs, mode='tensor'))


def test_missing_and_mismatching_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        MODELS.build(mgd_distiller_cfg(str(tmp_path / 'nope.pth')))
    wrong = str(tmp_path / 'wrong.pth')
    save_random_weights(tiny_classifier_cfg(width=4), wrong)  # student-sized, not teacher-sized
    with pytest.raises(ValueError, match=r'wrong.pth does not match.*shape mismatches'):
        MODELS.build(mgd_distiller_cfg(wrong))
    partial = str(tmp_path / 'partial.pth')
    sd = save_random_weights(tiny_classifier_cfg(width=8), partial).state_dict()
    sd.pop('head.fc.weight')
    torch.save(dict(state_dict=sd), partial)
    with pytest.raises(ValueError, match=r"missing keys \['head.fc.weight'\]"):
        MODELS.build(mgd_distiller_cfg(partial))
    with pytest.raises(ValueError, match='teacher_ckpt is required'):
        MODELS.build(mgd_distiller_cfg(None))


def test_config_errors_are_clear(teacher_ckpt):
    with pytest.raises(TapError, match=r'teacher has no module "backbone.layer9"'):
        MODELS.build(mgd_distiller_cfg(teacher_ckpt, teacher_taps=dict(feat='backbone.layer9')))
    bad_inputs = mgd_distiller_cfg(teacher_ckpt)
    bad_inputs['distill_losses']['loss_mgd']['inputs']['preds_T'] = 'teacher.logits'
    with pytest.raises(TapError, match='teacher has no tap "logits"'):
        MODELS.build(bad_inputs)
    bad_conn = mgd_distiller_cfg(teacher_ckpt)
    bad_conn['distill_losses']['loss_mgd']['inputs']['preds_S'] = 'gen(student.feat)'
    with pytest.raises(KeyError, match='unknown connector "gen"'):
        MODELS.build(bad_conn)
    bad_name = mgd_distiller_cfg(teacher_ckpt)
    bad_name['distill_losses'] = dict(mgd=bad_name['distill_losses']['loss_mgd'])
    with pytest.raises(ValueError, match='must contain "loss"'):
        MODELS.build(bad_name)
    channels = mgd_distiller_cfg(teacher_ckpt)
    channels['connectors']['mgd']['student_channels'] = 16
    model = MODELS.build(channels)
    with pytest.raises(ValueError, match=r'expects a student feature \(N, 16, H, W\)'):
        model(*cls_batch(2), mode='loss')


def test_init_student_copies_teacher_module(tmp_path):
    ckpt = str(tmp_path / 't.pth')
    teacher = tiny_classifier_cfg(width=4)  # same architecture: head can be copied
    save_random_weights(teacher, ckpt, seed=3)
    model = MODELS.build(mgd_distiller_cfg(ckpt, teacher=teacher, init_student=dict(head='head'),
                                           connectors=dict(mgd=dict(type='MGDConnector',
                                                                    student_channels=32,
                                                                    teacher_channels=32))))
    model.init_weights()
    assert torch.equal(model.student.head.fc.weight, model.teacher.head.fc.weight)
    assert not torch.equal(model.student.backbone.conv1.weight, model.teacher.backbone.conv1.weight)
    model.student.head.fc.weight.data += 1  # a copy, not shared storage
    assert not torch.equal(model.student.head.fc.weight, model.teacher.head.fc.weight)


def test_teacher_moves_with_to_and_half(teacher_ckpt):
    model = MODELS.build(mgd_distiller_cfg(teacher_ckpt))
    model.to(torch.float64)
    assert next(model.teacher.parameters()).dtype == torch.float64


def test_autocast_bf16_training_step(teacher_ckpt):
    model = MODELS.build(mgd_distiller_cfg(teacher_ckpt))
    inputs, samples = cls_batch(2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(inputs, samples, mode='loss')
    assert losses['distill.loss_mgd'].dtype == torch.float32
    assert torch.isfinite(losses['distill.loss_mgd'])
    sum(losses.values()).backward()


def test_gt_labels_source_hard_and_soft():
    seen = {}

    @MODELS.register_module(force=True)
    class _RecordTarget(torch.nn.Module):
        def forward(self, logits, target):
            seen['target'] = target
            return logits.sum() * 0

    cfg = mgd_distiller_cfg(None, connectors=None, teacher=None, teacher_taps=None, student_taps=dict(logits='head.fc'),
                            distill_losses=dict(loss_rec=dict(type='_RecordTarget', inputs=dict(
                                logits='student.logits', target='gt_labels'))))
    model = MODELS.build(cfg)
    inputs, samples = cls_batch(3)
    model(inputs, samples, mode='loss')
    assert seen['target'].tolist() == [0, 1, 2]
    for s in samples:
        s.set_gt_score(torch.full((10, ), 0.1))
    model(inputs, samples, mode='loss')
    assert seen['target'].shape == (3, 10)


def test_features_not_kept_after_step_nor_recorded_in_predict(teacher_ckpt):
    model = MODELS.build(mgd_distiller_cfg(teacher_ckpt))
    inputs, samples = cls_batch(2)
    model(inputs, samples, mode='loss')
    assert 'feat' not in model.student_taps and 'feat' not in model.teacher_taps
    model.eval()
    model(inputs, samples, mode='predict')
    assert 'feat' not in model.student_taps
