"""A separate repository inherits our configs (configs/README.md, "Inheriting these configs").

Everything runs from a temporary directory outside the repository: ``_base_ = 'mmkd_plugins::...'``
through tools/train.py and tools/test.py (subprocesses, short runs), the same config loaded in
Python, and the documented ``{{$MMKD_PLUGINS_CONFIGS:}}`` recipe through ``mim train mmdet``.
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from mmengine.config import Config

from tests.conftest import REPO

TINY = ['train_dataloader.dataset.max_samples=64', 'val_dataloader.dataset.max_samples=48',
        'test_dataloader.dataset.max_samples=48', 'train_dataloader.batch_size=16',
        'default_hooks.logger.interval=1', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1', 'model.teacher_ckpt=None',
        'model.allow_random_teacher=True']


def _project(tmp_path, base_line):
    """A downstream project with one config that inherits ours; returns (project dir, config)."""
    proj = tmp_path / 'downstream'
    (proj / 'configs').mkdir(parents=True)
    cfg = proj / 'configs' / 'my_mgd.py'
    cfg.write_text(f'{base_line}\noptim_wrapper = dict(optimizer=dict(lr=0.02))\n')
    assert not str(proj).startswith(REPO)
    return proj, 'configs/my_mgd.py'


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'MMKD_PLUGINS_CONFIGS')}
    env.update(OMP_NUM_THREADS='1', **extra)
    return env


def _scalars(work_dir):
    files = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    assert len(files) == 1, files
    keys = set()
    with open(files[0]) as f:
        for line in f:
            keys |= set(json.loads(line))
    return keys


def test_prefix_loads_exactly_like_the_path(tmp_path):
    proj, rel = _project(tmp_path, "_base_ = 'mmkd_plugins::demo/digits_mgd.py'")
    cfg = Config.fromfile(str(proj / rel))
    ref = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'digits_mgd.py'))
    assert cfg.model.to_dict() == ref.model.to_dict() and '_scope_' not in cfg.model
    assert cfg.default_scope == ref.default_scope == 'mmpretrain'
    assert cfg.optim_wrapper.optimizer.lr == 0.02 and cfg.optim_wrapper.optimizer.type == 'SGD'
    # the teacher config named relative to our file still resolves
    assert osp.isfile(cfg.model.teacher) and cfg.model.teacher.startswith(
        osp.realpath(osp.join(REPO, 'configs')))


def test_prefix_with_an_upstream_scoped_config(tmp_path):
    pytest.importorskip('mmdet')
    name = 'mgd/mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py'
    proj, rel = _project(tmp_path, f"_base_ = 'mmkd_plugins::{name}'")
    cfg = Config.fromfile(str(proj / rel))
    ref = Config.fromfile(osp.join(REPO, 'configs', name))
    assert cfg.model.to_dict() == ref.model.to_dict()
    assert cfg.model.student._scope_ == 'mmdet' and '_scope_' not in cfg.model
    assert cfg.train_dataloader.to_dict() == ref.train_dataloader.to_dict()


def test_teacher_config_by_prefix():
    from mmkd_plugins.distillers.teacher import load_model_config
    model = load_model_config('mmkd_plugins::demo/digits_teacher_resnet18.py')
    assert model['type'] == 'ImageClassifier' and model['_scope_'] == 'mmpretrain'


def test_unknown_config_names_the_file(tmp_path):
    proj, rel = _project(tmp_path, "_base_ = 'mmkd_plugins::demo/no_such_config.py'")
    with pytest.raises(FileNotFoundError, match='mmkd_plugins has no config "demo/no_such_config.py"'):
        Config.fromfile(str(proj / rel))


def test_env_form_without_the_variable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv('MMKD_PLUGINS_CONFIGS', raising=False)
    proj, rel = _project(tmp_path, "_base_ = ['{{$MMKD_PLUGINS_CONFIGS:}}/demo/digits_mgd.py']")
    with pytest.raises(KeyError, match='MMKD_PLUGINS_CONFIGS'):
        Config.fromfile(str(proj / rel))


def test_train_and_test_tools_from_outside_the_repo(tmp_path):
    pytest.importorskip('mmpretrain')
    proj, rel = _project(tmp_path, "_base_ = 'mmkd_plugins::demo/digits_mgd.py'")
    train = [sys.executable, osp.join(REPO, 'tools', 'train.py'), rel, '--work-dir', 'work',
             '--cfg-options', *TINY]
    proc = subprocess.run(train, cwd=proj, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert 'distill.loss_mgd' in _scalars(proj / 'work')
    ckpt = proj / 'work' / 'epoch_1.pth'
    assert ckpt.is_file()
    test = [sys.executable, osp.join(REPO, 'tools', 'test.py'), rel, str(ckpt), '--work-dir',
            'test_work', '--out', 'metrics.json', '--cfg-options', *TINY]
    proc = subprocess.run(test, cwd=proj, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    metrics = json.loads((proj / 'metrics.json').read_text())
    assert 'accuracy/top1' in metrics
    # the console entry point mmkd-test (setup.py) runs the same tool: same metrics
    code = ('import sys; from mmkd_plugins.cli import test; '
            f'test([{rel!r}, {str(ckpt)!r}, "--work-dir", "cli_work", "--out", "cli.json", '
            '"--cfg-options", *sys.argv[1:]])')
    proc = subprocess.run([sys.executable, '-c', code, *TINY], cwd=proj, env=_env(PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert json.loads((proj / 'cli.json').read_text()) == metrics


def test_mim_train_mmdet_recipe(tmp_path):
    """The documented recipe: export MMKD_PLUGINS_CONFIGS=$(python -m mmkd_plugins configs-dir)."""
    if shutil.which('mim') is None:
        pytest.skip('mim (openmim) is not installed')
    pytest.importorskip('mmdet')
    pytest.importorskip('mmpretrain')
    # mmkd_plugins is importable here through PYTHONPATH (a checkout); a pip install needs nothing
    importable = _env(PYTHONPATH=REPO)
    configs = subprocess.run([sys.executable, '-m', 'mmkd_plugins', 'configs-dir'], cwd=tmp_path,
                             env=importable, capture_output=True, text=True, check=True)
    configs = configs.stdout.strip()
    assert configs == osp.realpath(osp.join(REPO, 'configs')) or osp.samefile(
        configs, osp.join(REPO, 'configs'))
    proj, rel = _project(tmp_path, "_base_ = ['{{$MMKD_PLUGINS_CONFIGS:}}/demo/digits_mgd.py']")
    cmd = ['mim', 'train', 'mmdet', rel, '--gpus', '0', '-y', '--work-dir', 'work',
           '--cfg-options', *TINY]
    proc = subprocess.run(cmd, cwd=proj, env=dict(importable, MMKD_PLUGINS_CONFIGS=configs),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert 'mmdet/.mim/tools/train.py' in proc.stdout  # mmdet's own training script ran
    assert 'distill.loss_mgd' in _scalars(proj / 'work')
    assert (proj / 'work' / 'epoch_1.pth').is_file()
