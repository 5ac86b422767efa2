"""Parity with the official REALY code: tools/realy_evaluate.py (defaults) on the fixture
tests/data/realy_parity/inputs must reproduce official_errors.csv (the official code's REALY_error.txt
on the same inputs, see the README there) to within 1 % relative in every subject x region cell."""
import csv
import importlib.util
import os.path as osp

import numpy as np
import pytest

pytest.importorskip('scipy')
pytest.importorskip('trimesh')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FIXTURE = osp.join(REPO, 'tests', 'data', 'realy_parity')
INPUTS = osp.join(FIXTURE, 'inputs')
REGIONS = ('nose', 'mouth', 'forehead', 'cheek')


def _official():
    with open(osp.join(FIXTURE, 'official_errors.csv')) as f:
        return {(r['subject'], r['region']): float(r['error_mm']) for r in csv.DictReader(f)}


def _tool():
    spec = importlib.util.spec_from_file_location('realy_evaluate', osp.join(REPO, 'tools', 'realy_evaluate.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _template_args():
    return ['--template-obj', osp.join(INPUTS, 'template', 'template.obj'),
            '--template-keypoints', osp.join(INPUTS, 'template', 'template.txt')]


def test_cli_reproduces_the_official_errors(tmp_path):
    official = _official()
    summary = _tool().main([INPUTS, osp.join(INPUTS, 'pred'), *_template_args(), '--out-dir', str(tmp_path),
                            '--no-progress'])
    with open(tmp_path / 'realy_errors.csv') as f:
        rows = list(csv.DictReader(f))
    assert sorted(r['subject'] for r in rows) == ['1', '2', '3', '4']
    rel = {}
    for r in rows:
        for region in REGIONS:
            want = official[(r['subject'], region)]
            rel[(r['subject'], region)] = (float(r[region]) - want) / want
    assert len(rel) == len(official) == 16
    worst = max(rel, key=lambda k: abs(rel[k]))
    assert abs(rel[worst]) < 0.01, f'cell {worst}: {100 * rel[worst]:+.3f} % from the official code'
    want_all = np.mean([np.mean([official[(s, g)] for s in '1234']) for g in REGIONS])
    assert summary['all'] == pytest.approx(want_all, rel=1e-3)


def test_the_absolute_nicp_option_is_a_real_deviation():
    """The former formulation (absolute affines, at least one step per stage), kept as an option, misses
    the official numbers by far more than 1 % on subject 2's mouth: the parity test can fail."""
    from mmkd_plugins.evaluation.realy import (REALYTemplate, evaluate_prediction, load_keypoints,
                                               load_mesh)
    template = REALYTemplate.from_files(osp.join(INPUTS, 'template', 'template.obj'),
                                        osp.join(INPUTS, 'template', 'template.txt'))
    pred, _ = load_mesh(osp.join(INPUTS, 'pred', '2_0.obj'))
    kp = load_keypoints(osp.join(INPUTS, 'REALY_HIFI3D_keypoints', '2.obj'))
    scans = {'mouth': load_mesh(osp.join(INPUTS, 'REALY_scan_region', '2', 'mouth.obj'))}
    scale = float(np.loadtxt(osp.join(INPUTS, 'metrical_scale.txt'))[1])
    legacy = dict(formulation='absolute', stop_rule='per_stage', max_steps_without_landmarks=11)
    old = evaluate_prediction(pred, template, kp, scans, scale=scale, regions=('mouth',), nicp_cfg=legacy)
    new = evaluate_prediction(pred, template, kp, scans, scale=scale, regions=('mouth',))
    want = _official()[('2', 'mouth')]
    assert abs(new['errors']['mouth'] - want) / want < 0.01
    assert abs(old['errors']['mouth'] - want) / want > 0.05
