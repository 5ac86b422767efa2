"""mmkd-doctor on the digits pair: a healthy set-up passes; each broken set-up, built for real,
FAILs naming its cause."""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmkd_plugins.doctor.main import run_doctor
from mmkd_plugins.doctor.report import FAIL, OK, WARN
from tests.conftest import REPO

pytest.importorskip('mmpretrain')


def _rows(report, check, item=None, status=None):
    return [r for r in report.rows if r.check == check and (item is None or r.item == item)
            and (status is None or r.status == status)]


def _cli(args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
    return subprocess.run([sys.executable, osp.join(REPO, 'tools', 'kd_doctor.py'), *args],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_healthy_setup_passes_through_the_cli(write_config, trained_teacher, tmp_path):
    cfg = write_config()
    out = str(tmp_path / 'report.json')
    proc = _cli([cfg, '--batches', '2', '--out', out])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert 'PASS' in proc.stdout and 'teacher metric' in proc.stdout
    report = json.load(open(out))
    assert report['result'] == 'PASS' and report['counts']['FAIL'] == 0
    rows = {(r['check'], r['item']): r for r in report['rows']}
    # every tensor of the teacher equals its checkpoint file
    w = rows[('teacher weights', 'teacher')]
    assert w['status'] == OK and w['data']['loaded'] == w['data']['total'] > 100
    # the trained teacher meets its declared accuracy on the first 2 val batches (128 images)
    m = rows[('teacher metric', 'teacher')]
    assert m['status'] == OK and m['data']['samples'] == 128
    assert abs(m['data']['measured'] - trained_teacher['top1']) < 10
    assert rows[('preprocessing', 'teacher')]['status'] == OK
    # taps on a real batch: the last stage of a 16x16 input is 2x2 (stride 8), logits 10 wide
    assert rows[('taps', 'student.feat')]['data'] == dict(shape='32x32x2x2', stride='8')
    assert rows[('taps', 'teacher.feat')]['data'] == dict(shape='32x128x2x2', stride='8')
    assert rows[('taps', 'teacher.logits')]['data']['shape'] == '32x10'
    assert rows[('connectors', 'mgd')]['data'] == dict(input='32x32x2x2', output='32x128x2x2')
    # every loss term, with shares of the student's gradient that sum to 1
    terms = [r for r in report['rows'] if r['check'] == 'loss terms']
    assert {r['item'] for r in terms} == {'loss', 'distill.loss_mgd', 'distill.loss_nkd'}
    assert sum(r['data']['share'] for r in terms) == pytest.approx(1.0)
    assert all(r['data']['grad_norm'] > 0 for r in terms)
    assert rows[('autocast', 'cpu bfloat16')]['status'] == OK
    # the student's modules: random init, nothing named pretrained
    assert rows[('student init', 'backbone')]['status'] == OK


def test_random_teacher_fails_on_its_metric_through_the_cli(write_config, trained_teacher,
                                                            tmp_path):
    """Same architecture and keys, weights never trained: loads cleanly, but scores ~10 %."""
    cfg = write_config(ckpt=trained_teacher['random_ckpt'])
    out = str(tmp_path / 'report.json')
    proc = _cli([cfg, '--out', out])
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert 'FAIL' in proc.stdout
    rows = [r for r in json.load(open(out))['rows'] if r['status'] == FAIL]
    assert [(r['check'], r['item']) for r in rows] == [('teacher metric', 'teacher')], rows
    assert 'far below' in rows[0]['detail']
    assert rows[0]['data']['measured'] < trained_teacher['top1'] - 10


def test_teacher_without_checkpoint_fails(write_config):
    report = run_doctor(write_config(), {'model.teacher_ckpt': None,
                                         'model.allow_random_teacher': True})
    (row,) = _rows(report, 'teacher weights', 'teacher')
    assert row.status == FAIL and 'random weights' in row.detail
    assert _rows(report, 'teacher metric', 'teacher', FAIL)


@pytest.mark.parametrize('change,field', [
    ("data_preprocessor = dict(num_classes=10, mean=[0.0] * 3, std=[255.0] * 3, to_rgb=False)",
     'mean'),
    ("data_preprocessor = dict(num_classes=10, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)",
     'channel_order'),
])
def test_teacher_trained_with_other_preprocessing_fails(write_config, tmp_path, change, field):
    teacher = tmp_path / 'teacher_other_preprocessing.py'
    teacher.write_text(f"_base_ = [{osp.join(REPO, 'configs/demo/digits_teacher_resnet18.py')!r}]\n"
                       f'{change}\n')
    report = run_doctor(write_config(teacher=str(teacher)))
    (row,) = _rows(report, 'preprocessing', 'teacher')
    assert row.status == FAIL and f'{field}: student' in row.detail
    assert report.failed
    # ... and a teacher with its own preprocessing is not compared (the config says so)
    from mmkd_plugins.doctor.preprocess import check_preprocessing
    from mmkd_plugins.doctor.teacher import teacher_specs
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(write_config(teacher=str(teacher)))
    specs = teacher_specs(cfg.model.to_dict())
    specs['teacher']['data_preprocessor'] = 'teacher'
    model = MODELS.build(dict(cfg.model, allow_random_teacher=True, teacher_ckpt=None,
                              data_preprocessor=cfg.data_preprocessor))
    (own,) = check_preprocessing(model, cfg, [('teacher', model.teacher)], specs)
    assert own.status == OK and 'its own data preprocessor' in own.detail


def test_pretrained_file_matching_no_key_fails(write_config, tmp_path):
    bad = str(tmp_path / 'other_model.pth')
    torch.save(dict(state_dict={'features.0.weight': torch.zeros(4, 3, 3, 3)}), bad)
    report = run_doctor(write_config(), {
        'model.student.backbone.init_cfg': dict(type='Pretrained', checkpoint=bad)})
    (row,) = _rows(report, 'student init', 'backbone')
    assert row.status == FAIL and 'NONE of its tensors loaded' in row.detail and bad in row.detail
    assert row.data['loaded'] == 0
    assert _rows(report, 'student init', 'head')[0].status == OK


def test_pretrained_file_that_matches_loads_every_tensor(write_config, tmp_path):
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.config import Config
    init_default_scope('mmpretrain')
    student_cfg = Config.fromfile(osp.join(REPO, 'configs/demo/digits_student_resnet18_w4.py'))
    torch.manual_seed(7)
    backbone = MODELS.build(student_cfg.model.backbone)
    good = str(tmp_path / 'backbone.pth')
    torch.save(dict(state_dict=backbone.state_dict()), good)
    report = run_doctor(write_config(), {
        'model.student.backbone.init_cfg': dict(type='Pretrained', checkpoint=good)})
    (row,) = _rows(report, 'student init', 'backbone')
    assert row.status == OK and row.data['loaded'] == row.data['tensors'] == len(
        backbone.state_dict())


def test_tap_on_a_module_the_forward_never_calls_fails(write_config):
    """The teacher runs extract_feat only: its classifier head never runs."""
    report = run_doctor(write_config(), {'model.teacher_forward': 'extract_feat'})
    (row,) = _rows(report, 'taps', 'teacher.logits')
    assert row.status == FAIL and 'never fired' in row.detail and '"head.fc"' in row.detail
    assert _rows(report, 'taps', 'teacher.feat', OK)
    (step,) = _rows(report, 'loss terms')
    assert step.status == FAIL and 'did not fire' in step.detail


def test_loss_weight_making_nan_fails(write_config):
    report = run_doctor(write_config(), {'model.distill_losses.loss_mgd.alpha_mgd': 1e38})
    (row,) = _rows(report, 'loss terms', 'distill.loss_mgd')
    assert row.status == FAIL and 'NaN/Inf' in row.detail
    assert not math.isfinite(row.data['value']) or not math.isfinite(row.data['grad_norm'])
    assert _rows(report, 'autocast', status=FAIL)


def test_distillation_term_without_gradient_fails(write_config):
    """NKD fed the teacher's logits on both sides: a loss the student cannot learn from."""
    report = run_doctor(write_config(), {
        'model.distill_losses.loss_nkd.inputs.student_logits': 'teacher.logits'})
    (row,) = _rows(report, 'loss terms', 'distill.loss_nkd')
    assert row.status == FAIL and 'NO gradient' in row.detail and row.data['grad_norm'] == 0
    assert _rows(report, 'lint', 'student_taps.logits', WARN)  # the student tap is now unused


def test_mmcv1_keys_unknown_arguments_and_unproduced_inputs_fail_the_lint(write_config):
    report = run_doctor(write_config(
        "optimizer_config = dict(grad_clip=dict(max_norm=35))\nlr_config = dict(policy='step')\n"))
    lint = {r.item: r for r in _rows(report, 'lint', status=FAIL)}
    assert set(lint) == {'optimizer_config', 'lr_config'}
    assert 'optim_wrapper=dict(clip_grad=...)' in lint['optimizer_config'].detail
    assert report.failed and not [r for r in report.rows if r.check != 'lint' and r.status == FAIL]

    report = run_doctor(write_config(), {'model.teacher_ckpts': 'x.pth',
                                         'model.distill_losses.loss_mgd.inputs.preds_T':
                                         'teacher.feats'})
    lint = {r.item: r for r in _rows(report, 'lint', status=FAIL)}
    assert 'did you mean teacher_ckpt' in lint['model.teacher_ckpts'].detail
    assert 'nothing produces it' in lint['distill_losses.loss_mgd.inputs.preds_T'].detail
    assert _rows(report, 'build', status=FAIL)  # and the build fails as training would


def test_doctor_restores_weights_and_optimizer(write_config):
    from mmkd_plugins.doctor.build import build_runner, load_config, unwrap
    from mmkd_plugins.doctor.steps import check_steps
    cfg = load_config(write_config())
    runner = build_runner(cfg)
    model = unwrap(runner.model)
    optim = runner.build_optim_wrapper(cfg.optim_wrapper)
    batches = [next(iter(runner.build_dataloader(cfg.train_dataloader)))] * 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = check_steps(model, optim, batches)
    assert all(r.status != FAIL for r in rows)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not optim.optimizer.state  # momentum buffers dropped again
    assert all(p.grad is None for p in model.parameters())
