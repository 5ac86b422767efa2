"""mmkd-doctor --calibrate on the digits pair: after applying the proposed weights, the measured
share of the distillation terms is the target."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmkd_plugins.doctor.main import run_calibration
from tests.conftest import REPO

pytest.importorskip('mmpretrain')


@pytest.mark.parametrize('target', [0.3, 0.8])
def test_proposed_weights_give_the_target_share(write_config, tmp_path, target):
    cfg = write_config()
    out = str(tmp_path / 'calibrated.py')
    report = run_calibration(cfg, target, batches=2, write=out)
    proposal = report.meta['calibration']
    assert not report.failed and abs(proposal['measured'] - target) > 0.05
    args = {(c['loss'], c['arg']) for c in proposal['changes']}
    assert args == {('loss_mgd', 'alpha_mgd'), ('loss_nkd', 'loss_weight')}
    # the written config inherits the original and measures the target share
    again = run_calibration(out, target, batches=2)
    assert again.meta['calibration']['measured'] == pytest.approx(target, abs=0.01)
    assert again.meta['calibration']['factor'] == pytest.approx(1.0, abs=0.05)
    # the same through --cfg-options
    opts = dict(o.split('=', 1) for o in proposal['cfg_options'])
    opts = {k: float(v) for k, v in opts.items()}
    third = run_calibration(cfg, target, opts, batches=2)
    assert third.meta['calibration']['measured'] == pytest.approx(target, abs=0.01)


def test_calibrate_cli_prints_a_config_diff(write_config, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
    out = str(tmp_path / 'calibrated.py')
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'kd_doctor.py'), write_config(),
                           '--calibrate', '0.5', '--write', out, '--batches', '1'],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'model.distill_losses.loss_mgd.alpha_mgd: 0.003 -> ' in proc.stdout
    assert 'model.distill_losses.loss_nkd.loss_weight: 1 -> ' in proc.stdout
    assert '--cfg-options: model.distill_losses.loss_mgd.alpha_mgd=' in proc.stdout
    assert osp.isfile(out) and '_base_' in open(out).read()
