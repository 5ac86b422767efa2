"""tools/realy_evaluate.py on a REALY-layout folder: CSV per image, summary, error maps."""
import csv
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest

pytest.importorskip('scipy')
pytest.importorskip('trimesh')

from mmkd_plugins.evaluation.realy import REGIONS  # noqa: E402
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402

TOOL = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools', 'realy_evaluate.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location('realy_evaluate', TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tool_writes_csv_summary_and_error_maps(tmp_path, capsys):
    root = str(tmp_path / 'REALY')
    info = syn.write_benchmark(root, num_subjects=1)
    syn.write_predictions(str(tmp_path / 'pred'), info, views=2)
    # a third prediction of subject 1 with a nose bump (a worse reconstruction)
    _, _, uv = syn.grid_mesh(*info['template_res'])
    bump = np.zeros((len(uv), 3))
    bump[:, 2] = 0.4 * np.exp(-0.5 * ((uv[:, 0] / 0.1) ** 2 + ((uv[:, 1] + 0.02) / 0.12) ** 2))
    v = syn.template_vertices(*info['template_res'], info['identities'][1]) + bump
    syn.write_obj(str(tmp_path / 'pred' / '1_bump.obj'), v, syn.grid_mesh(*info['template_res'])[1])
    out = tmp_path / 'out'
    summary = _load_tool().main([root, str(tmp_path / 'pred'), '--template-obj', info['template_obj'],
                                 '--template-keypoints', info['template_keypoints'], '--out-dir', str(out),
                                 '--error-maps'])
    printed = capsys.readouterr()
    assert 'REALY on 3 predictions' in printed.out and 'all' in printed.out

    with open(out / 'realy_errors.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['image'] for r in rows] == ['1_0', '1_1', '1_bump']
    errs = np.array([[float(r[k]) for k in REGIONS] for r in rows])
    np.testing.assert_allclose([float(r['mean']) for r in rows], errs.mean(1), atol=1e-5)
    assert errs[:2].max() < 0.15  # perfect predictions in random similarity frames
    assert errs[2, 0] > errs[0, 0] + 0.2  # the bump is on the nose

    with open(out / 'realy_summary.csv') as f:
        srows = {r['region']: r for r in csv.DictReader(f)}
    for j, region in enumerate(REGIONS):
        assert float(srows[region]['mean']) == pytest.approx(errs[:, j].mean(), abs=1e-5)
        assert float(srows[region]['median']) == pytest.approx(np.median(errs[:, j]), abs=1e-5)
        assert float(srows[region]['std']) == pytest.approx(errs[:, j].std(ddof=1), abs=1e-5)
    assert float(srows['all']['mean']) == pytest.approx(errs.mean(0).mean(), abs=1e-5)
    js = json.load(open(out / 'realy_summary.json'))
    assert js['num_images'] == 3 and js['all'] == pytest.approx(summary['all'])
    for name in ('1_0', '1_bump'):
        for region in REGIONS:
            assert (out / 'error_maps' / name / f'{region}.ply').is_file()


def test_tool_reports_a_wrong_topology(tmp_path):
    root = str(tmp_path / 'REALY')
    info = syn.write_benchmark(root, num_subjects=1, scan_res=(30, 36), template_res=(20, 25))
    v, f, _ = syn.grid_mesh(21, 25)
    syn.write_obj(str(tmp_path / 'pred' / '1.obj'), v, f)
    with pytest.raises(ValueError, match='525 vertices, but the template topology'):
        _load_tool().main([root, str(tmp_path / 'pred'), '--template-obj', info['template_obj'],
                           '--template-keypoints', info['template_keypoints'], '--out-dir',
                           str(tmp_path / 'o'), '--no-progress'])


def test_tool_options_reach_the_evaluation(tmp_path):
    """--allow-reflection (a mirrored prediction scores like the original), --template-mask (faces
    dropped before the closest points), --strict-checks (a non-manifold scan: warning by default, error
    when strict), --nicp-formulation (the deviation option changes the numbers)."""
    from mmkd_plugins.evaluation.realy import REALYMeshWarning, load_mesh, read_obj
    root = str(tmp_path / 'REALY')
    info = syn.write_benchmark(root, num_subjects=1, scan_res=(30, 36), template_res=(20, 25))
    syn.write_predictions(str(tmp_path / 'pred'), info, views=1)
    v, f = load_mesh(str(tmp_path / 'pred' / '1_0.obj'))
    syn.write_obj(str(tmp_path / 'pred' / '1_m.obj'), v * np.array([-1.0, 1.0, 1.0]), f)
    tool = _load_tool()

    def run(*extra):
        out = tmp_path / f'out{len(list(tmp_path.glob("out*")))}'
        tool.main([root, str(tmp_path / 'pred'), '--template-obj', info['template_obj'], '--template-keypoints',
                   info['template_keypoints'], '--out-dir', str(out), '--no-progress', *extra])
        with open(out / 'realy_errors.csv') as fh:
            return {r['image']: np.array([float(r[k]) for k in REGIONS]) for r in csv.DictReader(fh)}

    default = run()  # REALY's fits: reflections kept, the mirror is undone
    np.testing.assert_allclose(default['1_m'], default['1_0'], atol=1e-5)
    corrected = run('--no-allow-reflection')
    assert corrected['1_m'].mean() > corrected['1_0'].mean() + 0.1
    np.testing.assert_allclose(corrected['1_0'], default['1_0'], atol=1e-5)
    tv, _ = load_mesh(info['template_obj'])
    mask = tmp_path / 'mask.txt'
    mask.write_text(','.join(str(int(x < np.quantile(tv[:, 0], 0.7))) for x in tv[:, 0]))
    masked = run('--template-mask', str(mask))
    assert masked['1_0'][3] > default['1_0'][3] + 0.05  # the cheek lost one side of the prediction
    absolute = run('--nicp-formulation', 'absolute', '--nicp-stop-rule', 'per_stage')
    assert np.abs(absolute['1_0'] - default['1_0']).max() > 1e-4

    path = osp.join(root, 'REALY_scan_region', '1', 'nose.obj')
    sv, sf = read_obj(path)
    syn.write_obj(path, np.vstack([sv, sv[sf[0, :2]].mean(0) + [0, 0, 0.2]]),
                  np.vstack([sf, [sf[0, 0], sf[0, 1], len(sv)]]))
    with pytest.warns(REALYMeshWarning, match='nose.obj: the mesh is non-manifold'):
        run()
    with pytest.raises(ValueError, match='nose.obj: the mesh is non-manifold'):
        run('--strict-checks')
