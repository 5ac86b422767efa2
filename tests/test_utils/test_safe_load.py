"""Safe checkpoint loading: mmengine's own checkpoints resume, code in a checkpoint never runs.

The allowlist is checked against real checkpoints written by mmengine's Runner (CheckpointHook with
save_best, EMAHook, the project's RNGStateHook), a resume is exact, a checkpoint whose unpickling
would run code is refused (the code does not run) with an error that names the global and the
opt-in, and each opt-in (env var, context, tools' --unsafe-load / config key) works.
"""
import collections
import json
import os
import re
import os.path as osp
import pickle
import random
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

from mmkd_plugins.utils import (UNSAFE_ENV, UnsafeCheckpointError, checkpoint_safe_globals,
                                load_local_checkpoint, unsafe_load, unsafe_load_enabled)
from mmkd_plugins.utils import safe_load
from tests.conftest import REPO
from tests.test_utils._toy import MarkerPayload, ToyData

import mmkd_plugins.engine.hooks  # noqa: F401,E402  (RNGStateHook)


@pytest.fixture(autouse=True)
def no_unsafe_env(monkeypatch):
    monkeypatch.delenv(UNSAFE_ENV, raising=False)


#: the mechanisms this torch has: torch >= 2.5 both (each tested), torch 2.1-2.4 the fallback only
MECHANISMS = [m for m in safe_load.MECHANISMS
              if m != 'native' or hasattr(torch.serialization, 'safe_globals')]


@pytest.fixture(params=MECHANISMS)
def mechanism(request, monkeypatch):
    """Run the test under each loading mechanism this torch supports."""
    monkeypatch.setattr(safe_load, 'MECHANISM', request.param)
    return request.param


def make_runner(work_dir, max_epochs, resume=False, seed=0):
    return Runner(
        model=dict(type='ToyLoadNet'), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        val_dataloader=dict(dataset=ToyData(), batch_size=4, num_workers=0,
                            sampler=dict(type='DefaultSampler', shuffle=False)),
        val_evaluator=dict(type='ToyLoadMetric'), val_cfg=dict(),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.05)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
                         dict(type='MultiStepLR', milestones=[1], by_epoch=True)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, save_best='score',
                                           rule='greater')),
        custom_hooks=[dict(type='RNGStateHook'), dict(type='EMAHook')],
        randomness=dict(seed=seed), resume=resume, default_scope='mmengine')


@pytest.fixture(scope='module')
def runner_ckpts(tmp_path_factory):
    wd = tmp_path_factory.mktemp('runner')
    make_runner(wd, 2).train()
    return wd


def _allowlist_names():
    names = set()
    for g in checkpoint_safe_globals():
        names.add(g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}')
    return names


def test_allowlist_covers_exactly_what_mmengine_checkpoints_need(runner_ckpts):
    torch_own = set(safe_load._torch_weights_only_globals())
    needed = set()
    for name in ('epoch_1.pth', 'epoch_2.pth', 'best_score_epoch_2.pth'):
        path = runner_ckpts / name
        if path.exists():
            needed |= set(safe_load.checkpoint_globals(str(path))) - torch_own
            if hasattr(torch.serialization, 'get_unsafe_globals_in_checkpoint'):  # torch >= 2.5
                assert (set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
                        == set(safe_load.checkpoint_globals(str(path))) - torch_own)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert needed <= _allowlist_names(), needed - _allowlist_names()
    # torch's own weights-only load (no allowlist) refuses these files: the allowlist is needed
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_ckpts / 'epoch_2.pth', weights_only=True)


def test_runner_checkpoint_loads_with_message_hub_and_rng_state(runner_ckpts, mechanism):
    ckpt = _load_checkpoint(str(runner_ckpts / 'epoch_2.pth'), map_location='cpu')
    assert set(ckpt) >= {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers',
                         'ema_state_dict'}
    buffers = ckpt['message_hub']['log_scalars']
    assert isinstance(buffers['train/lr'], HistoryBuffer)
    assert buffers['train/lr'].statistics('current') == buffers['train/lr'].current()
    rng = ckpt['meta']['rng_state']
    assert rng['numpy'][0] == 'MT19937' and isinstance(rng['numpy'][1], np.ndarray)
    random.setstate(rng['python'])  # a valid python RNG state
    # torch.load is itself again after the wrapped loader returned
    assert not getattr(torch.load, '_mmkd_policy', False)


def test_resume_is_exact(tmp_path, mechanism):
    full, part = tmp_path / 'full', tmp_path / 'part'
    make_runner(full, 3).train()
    make_runner(part, 2).train()
    make_runner(part, 3, resume=True).train()  # resumes from part/epoch_2.pth
    a = torch.load(full / 'epoch_3.pth', weights_only=False)['state_dict']
    b = torch.load(part / 'epoch_3.pth', weights_only=False)['state_dict']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _malicious(tmp_path):
    marker = tmp_path / 'code_ran.txt'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(2)), meta=dict(x=MarkerPayload(str(marker)))),
               path)
    assert not marker.exists()
    return str(path), marker


def test_code_in_checkpoint_is_refused_and_does_not_run(tmp_path, mechanism):
    path, marker = _malicious(tmp_path)
    for load in (lambda: CheckpointLoader.load_checkpoint(path, map_location='cpu'),
                 lambda: _load_checkpoint(path),
                 lambda: load_local_checkpoint(path)):
        with pytest.raises(UnsafeCheckpointError) as info:
            load()
        msg = str(info.value)
        assert 'builtins.exec' in msg and path in msg
        assert UNSAFE_ENV in msg and '--unsafe-load' in msg and 'teacher_unsafe_load' in msg
        assert not marker.exists()
    assert not getattr(torch.load, '_mmkd_policy', False)


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path, mechanism):
    class Sneaky:
        def __reduce__(self):
            return (getattr, (np.ndarray, 'tofile'))

    path = tmp_path / 'sneaky.pth'
    torch.save(dict(meta=Sneaky()), path)
    with pytest.raises(UnsafeCheckpointError, match=r"getattr\(.*ndarray.*'tofile'\)"):
        CheckpointLoader.load_checkpoint(str(path))


def test_allowlist_is_scoped_to_our_loads(runner_ckpts, mechanism):
    if not hasattr(torch.serialization, 'get_safe_globals'):  # torch < 2.5: no global allowlist
        _load_checkpoint(str(runner_ckpts / 'epoch_1.pth'))
        with pytest.raises(pickle.UnpicklingError):  # torch's own weights-only load is unchanged
            torch.load(runner_ckpts / 'epoch_1.pth', weights_only=True)
        return
    before = set(map(str, torch.serialization.get_safe_globals()))
    _load_checkpoint(str(runner_ckpts / 'epoch_1.pth'))
    assert set(map(str, torch.serialization.get_safe_globals())) == before
    assert not any('HistoryBuffer' in name for name in before)


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_both_mechanisms_accept_and_refuse_the_same_files(tmp_path, legacy):
    """Each mechanism this torch has gives equal objects for good files (zip and legacy format,
    protocol-2 python-2 names, numpy bytes, every dtype) and refuses the same globals."""
    hb = HistoryBuffer()
    hb.update(1.5)
    good = dict(state_dict={f'w_{d}': torch.ones(2, dtype=d) for d in
                            (torch.float32, torch.float16, torch.bfloat16, torch.bool, torch.uint8)},
                meta=dict(hb=hb, np_rng=np.random.get_state(), py_rng=random.getstate(),
                          torch_rng=torch.get_rng_state(), dtype=torch.float16,
                          device=torch.device('cpu'), scalar=np.float32(2.0),
                          raw=b'\x00\xff', steps={1, 2}, size=torch.Size([3])))
    bad = {'builtins.list, collections.defaultdict': dict(d=collections.defaultdict(list)),
           'posix.system': dict(x=_SystemCall())}
    save = dict(_use_new_zipfile_serialization=not legacy)
    torch.save(good, tmp_path / 'good.pth', **save)
    results = {}
    for mech in MECHANISMS:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(safe_load, 'MECHANISM', mech)
            out = load_local_checkpoint(str(tmp_path / 'good.pth'))
            assert out['meta']['hb'].current() == 1.5 and out['meta']['raw'] == b'\x00\xff'
            assert out['meta']['dtype'] is torch.float16 and out['meta']['size'] == (3,)
            assert all(torch.equal(out['state_dict'][k], good['state_dict'][k])
                       for k in good['state_dict'])
            for name, payload in bad.items():
                path = tmp_path / f'bad_{len(name)}.pth'
                torch.save(payload, path, **save)
                with pytest.raises(UnsafeCheckpointError, match=re.escape(f'`{name}`')):
                    load_local_checkpoint(str(path))
            results[mech] = out['meta']['np_rng'][1]
    assert all(np.array_equal(v, results[MECHANISMS[0]]) for v in results.values())


class _SystemCall:
    def __reduce__(self):
        return (os.system, ('echo should-not-run',))


def test_opt_in_env_var_and_context(tmp_path, monkeypatch, mechanism):
    path, marker = _malicious(tmp_path)
    assert not unsafe_load_enabled()
    with unsafe_load():
        ckpt = CheckpointLoader.load_checkpoint(path)
    assert marker.exists() and torch.equal(ckpt['state_dict']['w'], torch.ones(2))
    marker.unlink()
    monkeypatch.setenv(UNSAFE_ENV, '1')
    assert unsafe_load_enabled()
    CheckpointLoader.load_checkpoint(path)
    assert marker.exists()
    marker.unlink()
    with unsafe_load(False):  # an explicit opt-out wins over the environment
        with pytest.raises(UnsafeCheckpointError):
            CheckpointLoader.load_checkpoint(path)
    assert not marker.exists()


def test_tools_unsafe_load_switches(tmp_path, monkeypatch):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import train as train_tool
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("model = dict(type='ToyLoadNet')\n")
    monkeypatch.setattr(os, 'environ', dict(os.environ))  # whatever the tool sets is undone
    args = train_tool.parse_args([str(cfg_file), '--work-dir', str(tmp_path)])
    train_tool.build_config(args)
    assert not unsafe_load_enabled()
    args = train_tool.parse_args([str(cfg_file), '--work-dir', str(tmp_path), '--unsafe-load'])
    assert train_tool.build_config(args).unsafe_load is True and unsafe_load_enabled()
    os.environ.pop(UNSAFE_ENV)
    cfg_file.write_text("model = dict(type='ToyLoadNet')\nunsafe_load = True\n")
    args = train_tool.parse_args([str(cfg_file), '--work-dir', str(tmp_path)])
    train_tool.build_config(args)
    assert unsafe_load_enabled()
    path, marker = _malicious(tmp_path)
    CheckpointLoader.load_checkpoint(path)
    assert marker.exists()


PLAIN_RUN = """
import json, os, sys
from mmengine.config import Config
cfg = Config.fromfile(sys.argv[1])  # custom_imports: mmkd_plugins, then the toy model
assert 'mmkd_plugins' in sys.modules
from mmengine.runner import Runner
runner = Runner.from_cfg(cfg)
try:
    runner.load_or_resume()
    result = 'loaded'
except Exception as err:
    result = type(err).__name__
print(json.dumps([result, os.path.exists(sys.argv[2])]))
"""


@pytest.mark.parametrize('mech', MECHANISMS)
@pytest.mark.parametrize('how', ['load_from', 'resume', 'good'])
def test_plain_upstream_config_with_custom_imports_loads_safely(how, mech, tmp_path):
    """What upstream tools/train.py does (Config.fromfile -> Runner.from_cfg -> load_or_resume) with
    ``custom_imports=['mmkd_plugins']``: the package is imported before mmengine.runner, without
    torch, and the safe loader is installed when mmengine.runner.checkpoint is imported."""
    import subprocess
    path, marker = _malicious(tmp_path)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    lines = ["custom_imports = dict(imports=['mmkd_plugins', 'tests.test_utils._toy'], "
             'allow_failed_imports=False)',
             "model = dict(type='ToyLoadNet')", f'work_dir = {str(work_dir)!r}',
             "default_scope = 'mmengine'"]
    if how == 'load_from':
        lines.append(f'load_from = {path!r}')
    elif how == 'resume':  # --resume: the latest checkpoint named in work_dir/last_checkpoint
        (work_dir / 'last_checkpoint').write_text(path)
        lines.append('resume = True')
    else:  # a plain weights checkpoint still loads
        from tests.test_utils._toy import ToyLoadNet
        good = tmp_path / 'good.pth'
        torch.save(dict(state_dict=ToyLoadNet().state_dict(), meta=dict(epoch=1)), good)
        lines.append(f'load_from = {str(good)!r}')
    cfg = tmp_path / 'plain_cfg.py'
    cfg.write_text('\n'.join(lines) + '\n')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', UNSAFE_ENV)}
    env.update(PYTHONPATH=REPO, OMP_NUM_THREADS='1', MMKD_SAFE_LOAD_MECHANISM=mech)
    proc = subprocess.run([sys.executable, '-c', PLAIN_RUN, str(cfg), str(marker)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, code_ran = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not code_ran
    assert result == ('loaded' if how == 'good' else 'UnsafeCheckpointError'), proc.stderr[-3000:]
