"""End-to-end: the digits MGD distillation through tools/train.py (mmengine Runner) on CPU."""
import glob
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, MODELS
from mmengine.runner import Runner

from tests.conftest import REPO
from tests.helpers import cls_batch, train_with_two_processes

sys.path.insert(0, osp.join(REPO, 'tools'))
import convert_kd_ckpt_to_student  # noqa: E402
import test as test_tool  # noqa: E402
import train as train_tool  # noqa: E402

TINY = ['train_dataloader.dataset.max_samples=64', 'val_dataloader.dataset.max_samples=48',
        'test_dataloader.dataset.max_samples=48', 'train_dataloader.batch_size=16',
        'default_hooks.logger.interval=1']


@HOOKS.register_module(force=True)
class SimulatedCrashHook(Hook):
    """Kills training right after the checkpoint of epoch ``after_epoch`` is written."""
    priority = 'LOWEST'

    def __init__(self, after_epoch):
        self.after_epoch = after_epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.after_epoch:
            raise RuntimeError('simulated crash')


def run_train(config, work_dir, *options, resume=False, crash_after_epoch=None):
    argv = [osp.join(REPO, 'configs/demo', config), '--work-dir', str(work_dir)]
    if resume:
        argv += ['--resume']
    args = train_tool.parse_args(argv + ['--cfg-options', *TINY, *options])
    cfg = train_tool.build_config(args)
    if crash_after_epoch is not None:
        cfg.custom_hooks = list(cfg.custom_hooks) + [
            dict(type='SimulatedCrashHook', after_epoch=crash_after_epoch)]
    Runner.from_cfg(cfg).train()


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    wd = tmp_path_factory.mktemp('teacher')
    run_train('digits_teacher_resnet18.py', wd, 'train_cfg.max_epochs=1',
              'default_hooks.checkpoint.interval=1')
    return str(wd / 'epoch_1.pth')


def test_mgd_trains_evaluates_and_exports_student(teacher_ckpt, tmp_path):
    run_train('digits_mgd.py', tmp_path, 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
              'default_hooks.checkpoint.interval=2', f'model.teacher_ckpt={teacher_ckpt}')
    ckpt = torch.load(tmp_path / 'epoch_2.pth', weights_only=False)
    keys = ckpt['state_dict'].keys()
    assert not any(k.startswith('teacher') for k in keys)
    logs = open(glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))[0]).read()
    assert 'distill.loss_mgd' in logs and 'accuracy/top1' in logs

    # tools/test.py evaluates the distiller checkpoint (the student's predictions)
    metrics = test_tool.main([osp.join(REPO, 'configs/demo/digits_mgd.py'), str(tmp_path / 'epoch_2.pth'),
                              '--work-dir', str(tmp_path / 'test'), '--cfg-options', *TINY,
                              f'model.teacher_ckpt={teacher_ckpt}'])
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0

    # export the student; it loads into the plain upstream student config with no key left over
    out = str(tmp_path / 'student.pth')
    convert_kd_ckpt_to_student.main([str(tmp_path / 'epoch_2.pth'), out])
    student_cfg = Config.fromfile(osp.join(REPO, 'configs/demo/digits_student_resnet18_w4.py'))
    plain = MODELS.build(dict(student_cfg.model, _scope_='mmpretrain',
                              data_preprocessor=dict(student_cfg.data_preprocessor,
                                                     type='mmpretrain.ClsDataPreprocessor')))
    state = torch.load(out, weights_only=False)['state_dict']
    missing, unexpected = plain.load_state_dict(state, strict=True)
    assert not missing and not unexpected

    distiller_cfg = Config.fromfile(osp.join(REPO, 'configs/demo/digits_mgd.py'))
    distiller_cfg.model.teacher_ckpt = teacher_ckpt
    distiller = MODELS.build(dict(distiller_cfg.model, data_preprocessor=distiller_cfg.data_preprocessor))
    distiller.load_state_dict(ckpt['state_dict'], strict=True)
    distiller.eval()
    plain.eval()
    x = torch.randn(5, 3, 16, 16)
    assert torch.allclose(distiller(x, mode='tensor'), plain(x, mode='tensor'), atol=1e-6)


def test_resume_matches_uninterrupted_run(teacher_ckpt, tmp_path):
    opts = [f'model.teacher_ckpt={teacher_ckpt}', 'default_hooks.checkpoint.interval=1',
            'train_cfg.val_interval=100']
    full, part = tmp_path / 'full', tmp_path / 'part'
    run_train('digits_mgd.py', full, 'train_cfg.max_epochs=3', *opts)
    with pytest.raises(RuntimeError, match='simulated crash'):
        run_train('digits_mgd.py', part, 'train_cfg.max_epochs=3', *opts, crash_after_epoch=1)
    assert not (part / 'epoch_2.pth').exists()
    run_train('digits_mgd.py', part, 'train_cfg.max_epochs=3', *opts, resume=True)
    a = torch.load(full / 'epoch_3.pth', weights_only=False)['state_dict']
    b = torch.load(part / 'epoch_3.pth', weights_only=False)['state_dict']
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_ddp_two_cpu_processes_gloo(teacher_ckpt, tmp_path):
    proc = train_with_two_processes(
        'configs/demo/digits_mgd.py', tmp_path,
        [*TINY, 'train_cfg.max_epochs=1', f'model.teacher_ckpt={teacher_ckpt}',
         'default_hooks.checkpoint.interval=1'],
        master_port=0, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=False)
    # 64 samples, batch 16: 4 iterations on one process, 2 per rank with 2 ranks sharing the data
    assert ckpt['meta']['iter'] == 2
    assert any(k.startswith('student.') for k in ckpt['state_dict'])
    assert not any(k.startswith('module.') or k.startswith('teacher') for k in ckpt['state_dict'])


def test_stop_distill_hook_turns_distillation_off(teacher_ckpt, tmp_path):
    args = train_tool.parse_args([osp.join(REPO, 'configs/demo/digits_mgd.py'), '--work-dir',
                                  str(tmp_path), '--cfg-options', *TINY, 'train_cfg.max_epochs=2',
                                  f'model.teacher_ckpt={teacher_ckpt}', 'train_cfg.val_interval=100'])
    cfg = train_tool.build_config(args)
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='StopDistillHook', stop_epoch=1)]
    runner = Runner.from_cfg(cfg)
    calls = []
    runner.model.teacher.backbone.register_forward_pre_hook(lambda *a: calls.append(runner.epoch))
    runner.train()
    assert calls == [0] * 4  # the teacher ran in the 4 iterations of epoch 0 only
    assert runner.model.distill_enabled is False
    losses = runner.model(*cls_batch(2, size=16), mode='loss')
    assert set(losses) == {'loss'}
