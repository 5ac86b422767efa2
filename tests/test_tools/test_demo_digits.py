"""tools/demo_digits.py: a tiny version of the demo, its statistics and its determinism."""
import math
import os.path as osp
import statistics
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools'))
import demo_digits  # noqa: E402

pytest.importorskip('sklearn')


def test_paired_gain_is_mean_and_standard_error_of_per_seed_differences():
    distilled, baseline = [92.0, 95.0, 91.0, 94.5], [90.0, 91.0, 91.5, 90.0]
    d = [2.0, 4.0, -0.5, 4.5]
    gain, se = demo_digits.paired_gain(distilled, baseline)
    assert gain == pytest.approx(statistics.mean(d))
    assert se == pytest.approx(statistics.stdev(d) / math.sqrt(4))
    ok, line = demo_digits.verdict('X', distilled, baseline)
    assert ok == (gain > 2 * se) and ok  # 2.5 > 2 * 1.14
    assert line.startswith('X: mean gain +2.50') and 'beyond noise' in line
    ok, line = demo_digits.verdict('Y', [91.0, 90.0, 93.0], [90.0, 91.0, 91.0])  # d = 1, -1, 2
    assert not ok and 'NOT beyond noise' in line
    assert not demo_digits.verdict('Z', [99.0], [90.0])[0]  # one seed proves nothing


def test_one_run_is_deterministic(tmp_path):
    job = ('digits_nkd.py', None, 3, None, 10, 1, 40, False)
    teacher = demo_digits.run_one(('digits_teacher_resnet18.py', str(tmp_path / 't'), 0, None, None,
                                   1, 40, True))
    a = demo_digits.run_one((job[0], str(tmp_path / 'a'), 3, teacher[1]) + job[4:])
    b = demo_digits.run_one((job[0], str(tmp_path / 'b'), 3, teacher[1]) + job[4:])
    assert a[0] == b[0]


def test_tiny_demo_runs_every_method_and_writes_verdicts(tmp_path, capsys):
    out = demo_digits.main(['--seeds', '0', '1', '--max-epochs', '1', '--max-samples', '40',
                            '--per-class', '10', '--jobs', '2', '--work-dir', str(tmp_path)])
    assert set(out['verdicts']) == set(demo_digits.METHODS) == {'MGD', 'NKD', 'tf-NKD', 'ViTKD'}
    for pair in demo_digits.PAIRS.values():
        assert len(out['results'][pair['teacher'][0]]) == 1
        assert len(out['results'][pair['baseline'][0]]) == 2
    text = open(tmp_path / 'results.md').read()
    for method in demo_digits.METHODS:
        assert f'- {method}: mean gain' in text
    assert 'CPU time (user+sys' in text and 'deterministic' in text
    assert out['cpu'] > 0


def test_default_seeds_are_per_pair(tmp_path, monkeypatch):
    """Without --seeds each pair runs its own number of seeds (demo: CNN 10, ViT 30)."""
    assert {k: p['seeds'] for k, p in demo_digits.PAIRS.items()} == {'cnn': 10, 'vit': 30}
    monkeypatch.setitem(demo_digits.PAIRS['cnn'], 'seeds', 1)
    monkeypatch.setitem(demo_digits.PAIRS['vit'], 'seeds', 2)
    out = demo_digits.main(['--methods', 'tf-NKD', 'ViTKD', '--max-epochs', '1', '--max-samples',
                            '40', '--per-class', '10', '--jobs', '2', '--work-dir', str(tmp_path)])
    assert len(out['results']['tf-NKD']) == 1 and len(out['results']['ViTKD']) == 2
    cnn, vit = demo_digits.PAIRS['cnn'], demo_digits.PAIRS['vit']
    assert len(out['results'][cnn['baseline'][0]]) == 1
    assert len(out['results'][vit['baseline'][0]]) == 2
    assert 'seeds CNN 0, ViT 0, 1' in open(tmp_path / 'results.md').read()


def test_demo_readme_states_the_configs_scaled_weights():
    """configs/demo/README.md lists the two non-paper weights with the values the configs use."""
    from mmengine.config import Config
    readme = open(osp.join(REPO, 'configs', 'demo', 'README.md')).read()
    vitkd = Config.fromfile(osp.join(demo_digits.DEMO, 'digits_vitkd.py'))
    mgd = Config.fromfile(osp.join(demo_digits.DEMO, 'digits_mgd.py'))
    loss = vitkd.model.distill_losses.loss_vitkd
    assert (loss.alpha_vitkd, loss.beta_vitkd) == (3e-5, 2.2e-4)
    assert mgd.model.distill_losses.loss_mgd.alpha_mgd == 3e-3
    assert '| `beta_vitkd` (generation) | 3e-6 (196 tokens x 384) | 2.2e-4 |' in readme
    assert '| `alpha_mgd` | 7e-5 (512x7x7) | 3e-3 |' in readme
