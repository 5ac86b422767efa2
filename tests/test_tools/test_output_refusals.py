"""Outputs as a user hits them (issue 25, "never destroys a file"): an existing output is refused
without ``--force`` (or, for a metric, without ``overwrite=True``) and replaced with it; a write that is
interrupted half-way leaves the original file, and no temporary file; every refusal is one line.

Real files on disk and the real command lines (``tests/test_tools/test_bad_input.py``'s helpers: a new
interpreter for the first case of each tool, ``runpy`` in this process for the others and wherever a
writer is made to fail half-way by a monkeypatch).
"""
import csv
import os
import os.path as osp
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.test_tools.test_bad_input import assert_error_line, cli, run_tool  # noqa: F401  (cli: fixture)


def no_temp_files(folder) -> bool:
    """No ``.<name>.<random>.tmp`` left by an interrupted atomic write, anywhere under ``folder``."""
    return not [f for _, _, files in os.walk(folder) for f in files if f.endswith('.tmp')]


# ------------------------------------------------------------------ style transfer --export-samples
def test_style_export_samples_refuses_existing_images_and_survives_a_failed_write(tmp_path, cli, monkeypatch):
    """DATA LOSS before: --export-samples DIR replaced DIR/content/astronaut.png etc. without a word,
    by writing into the file itself (a failed write left half an image)."""
    pytest.importorskip('skimage')
    from PIL import Image
    out = tmp_path / 'samples'
    mine = out / 'content' / 'astronaut.png'
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b'my own photo, not a sample')
    proc = run_tool('style_transfer.py', '--export-samples', out)
    assert_error_line(proc, 'style_transfer.py', str(mine), 'already exists', '--force')
    assert mine.read_bytes() == b'my own photo, not a sample'
    assert os.listdir(out) == ['content'] and os.listdir(out / 'content') == ['astronaut.png']  # none written

    real_save = Image.Image.save

    def half_save(self, fp, *args, **kwargs):   # the disk fills up in the middle of the PNG
        fp.write(b'\x89PNG\r\n\x1a\n half an image')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(Image.Image, 'save', half_save)
    proc = cli('style_transfer.py', '--export-samples', out, '--force')
    assert_error_line(proc, 'style_transfer.py', 'No space left on device')
    assert mine.read_bytes() == b'my own photo, not a sample' and no_temp_files(out)

    monkeypatch.setattr(Image.Image, 'save', real_save)
    proc = cli('style_transfer.py', '--export-samples', out, '--force')
    assert proc.returncode == 0, proc.stderr
    with Image.open(mine) as im:
        assert im.mode == 'RGB' and max(im.size) == 512
    assert sorted(os.listdir(out / 'style')) == ['colorwheel.png', 'gravel.png', 'hubble_deep_field.png',
                                                 'immunohistochemistry.png']
    assert no_temp_files(out)


# ------------------------------------------------------------------ DAVISMetric output_dir (tools/test.py)
@pytest.fixture
def davis_run(tmp_path):
    """A 6-frame DAVIS-layout video, a tiny SWEM config whose test_evaluator writes its CSV files to
    ``out``, and a checkpoint of that model."""
    from mmengine.registry import MODELS

    from mmkd_plugins.datasets.vos import synthesize_moving_shapes
    from tests.test_models.test_vos.vos_helpers import tiny_swem_cfg
    root = tmp_path / 'davis'
    synthesize_moving_shapes(str(root), videos=('clip', ), num_frames=6, size=(32, 32), split='val')
    out = tmp_path / 'davis_csv'
    loader = dict(batch_size=1, num_workers=0, collate_fn=dict(type='pseudo_collate'),
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  dataset=dict(type='VOSDataset', data_root=str(root), split='val', test_mode=True,
                               test_short_side=None))
    cfg = tmp_path / 'tiny_swem_test.py'
    cfg.write_text("custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)\n"
                   f'model = {tiny_swem_cfg()!r}\ntest_dataloader = {loader!r}\n'
                   "test_cfg = dict(type='TestLoop')\n"
                   f"test_evaluator = dict(type='DAVISMetric', output_dir={str(out)!r})\n"
                   "log_level = 'WARNING'\n")
    torch.manual_seed(0)
    ckpt = tmp_path / 'swem.pth'
    torch.save(dict(state_dict=MODELS.build(tiny_swem_cfg()).state_dict(), meta={}), ckpt)
    return dict(cfg=cfg, ckpt=ckpt, out=out, work=tmp_path / 'work')


def test_davis_metric_refuses_an_earlier_runs_csv_unless_overwrite(davis_run, cli):
    """DATA LOSS before: a test run with DAVISMetric(output_dir=D) replaced D/global_results.csv of an
    earlier run (another checkpoint's numbers) without a word. Now refused when the evaluator is built,
    before any inference; ``test_evaluator.overwrite=True`` replaces it."""
    out = davis_run['out']
    out.mkdir()
    old = out / 'global_results.csv'
    old.write_text('J&F-Mean\n81.300\n')   # the previous checkpoint's result
    args = ('test.py', davis_run['cfg'], davis_run['ckpt'], '--work-dir', davis_run['work'])
    proc = cli(*args)
    assert_error_line(proc, 'test.py', f'DAVISMetric: output {old} already exists (not written by this run)',
                      'DAVISMetric(overwrite=True)', 'test_evaluator.overwrite=True')
    assert old.read_text() == 'J&F-Mean\n81.300\n' and os.listdir(out) == ['global_results.csv']

    proc = cli(*args, '--cfg-options', 'test_evaluator.overwrite=True')
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.reader(open(old)))
    assert rows[0][0] == 'J&F-Mean' and rows[1][0] != '81.300' and 0 <= float(rows[1][0]) <= 100
    per_seq = list(csv.reader(open(out / 'per-sequence_results.csv')))
    assert per_seq[0] == ['Sequence', 'J-Mean', 'F-Mean'] and [r[0] for r in per_seq[1:]] == ['clip_1', 'clip_2']
    # the next run finds this run's files: refused again (a new run, a new metric)
    proc = cli(*args)
    assert_error_line(proc, 'test.py', 'global_results.csv already exists', 'overwrite=True')


def _davis_samples():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 3, (5, 16, 16))
    gt[0, :4, :4], gt[0, 8:, 8:] = 1, 2
    return [dict(video='v', gt_masks=gt, pred_masks=rng.integers(0, 3, (5, 16, 16)))]


def test_davis_metric_refreshes_its_own_files_and_survives_a_failed_write(tmp_path, monkeypatch):
    """Validation during training evaluates the same metric at every interval: its own files are
    refreshed. A write failing after the first row leaves the previous files whole."""
    from mmkd_plugins.evaluation.metrics import davis
    from mmkd_plugins.utils.safe_output import OutputExistsError
    metric = davis.DAVISMetric(output_dir=str(tmp_path), scale=1.0)
    for _ in range(2):   # two validations of one run
        metric.process({}, _davis_samples())
        first = metric.evaluate(1)
    before = {n: (tmp_path / n).read_bytes() for n in davis.DAVISMetric.RESULT_FILES}
    assert before['global_results.csv'].decode().splitlines()[1].startswith(f'{first["davis/J&F-Mean"]:.3f}')
    with pytest.raises(OutputExistsError, match='global_results.csv already exists'):
        davis.DAVISMetric(output_dir=str(tmp_path))   # the next run

    real_writer = csv.writer

    def failing_writer(fh, *args, **kwargs):   # the second row written fails (disk full)
        w = real_writer(fh, *args, **kwargs)

        class Half:
            rows = 0

            def writerow(self, row):
                Half.rows += 1
                if Half.rows == 2:
                    raise OSError(28, 'No space left on device')
                return w.writerow(row)
        return Half()
    monkeypatch.setattr(davis.csv, 'writer', failing_writer)
    again = davis.DAVISMetric(output_dir=str(tmp_path), scale=1.0, overwrite=True)
    again.process({}, _davis_samples())
    with pytest.raises(OSError, match='No space left'):
        again.evaluate(1)
    assert {n: (tmp_path / n).read_bytes() for n in davis.DAVISMetric.RESULT_FILES} == before
    assert sorted(os.listdir(tmp_path)) == sorted(davis.DAVISMetric.RESULT_FILES)   # no temporary file


# ------------------------------------------------------------------ REALY error maps
@pytest.fixture
def realy_bench(tmp_path):
    pytest.importorskip('scipy')
    pytest.importorskip('trimesh')
    from mmkd_plugins.evaluation.realy import synthetic as syn
    root = str(tmp_path / 'REALY')
    info = syn.write_benchmark(root, num_subjects=1, scan_res=(30, 36), template_res=(20, 25))
    syn.write_predictions(str(tmp_path / 'pred'), info, views=1)
    return root, info


def test_realy_error_maps_refused_without_force_and_atomic(realy_bench, tmp_path, cli, monkeypatch):
    """The .ply error maps were written by trimesh straight into the destination: an interrupted run
    left a truncated map. Now atomic; an existing map is replaced only with --force."""
    import trimesh

    from mmkd_plugins.utils import safe_output
    root, info = realy_bench
    out = tmp_path / 'eval'
    args = ('realy_evaluate.py', root, tmp_path / 'pred', '--template-obj', info['template_obj'],
            '--template-keypoints', info['template_keypoints'], '--out-dir', out, '--regions', 'nose',
            '--error-maps', '--no-progress')
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ply = out / 'error_maps' / '1_0' / 'nose.ply'
    (out / 'realy_errors.csv').unlink()
    (out / 'realy_summary.csv').unlink()
    (out / 'realy_summary.json').unlink()
    before = ply.read_bytes()
    proc = run_tool(*args)
    assert_error_line(proc, 'realy_evaluate.py', str(out / 'error_maps'), 'already holds error maps', '--force')
    assert ply.read_bytes() == before and not (out / 'realy_errors.csv').exists()

    real_replace = os.replace

    def interrupted(src, dst):   # Ctrl-C after the map was encoded and written, before it is in place
        if str(dst).endswith('.ply'):
            raise KeyboardInterrupt
        return real_replace(src, dst)
    monkeypatch.setattr(safe_output.os, 'replace', interrupted)
    proc = cli(*args, '--force')
    assert proc.returncode == 130 and 'realy_evaluate.py: interrupted' in proc.stderr, proc.stderr[-3000:]
    assert ply.read_bytes() == before and no_temp_files(out)

    monkeypatch.setattr(safe_output.os, 'replace', real_replace)
    ply.write_bytes(b'ply\nnot a mesh any more\n')
    proc = cli(*args, '--force')
    assert proc.returncode == 0, proc.stderr[-3000:]
    mesh = trimesh.load(str(ply), process=False)
    assert len(mesh.vertices) > 0 and mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)
    assert no_temp_files(out)


def test_realy_metric_error_map_dir_refusal_and_opt_in(realy_bench, tmp_path):
    """A config's REALYMetric(error_map_dir=D) refuses, when built, a D holding .ply files it did not
    write; overwrite=True replaces them; its own maps are refreshed when it evaluates again."""
    from mmkd_plugins.datasets.realy import REALYDataset
    from mmkd_plugins.evaluation.metrics.realy import REALYMetric
    from mmkd_plugins.utils.safe_output import OutputExistsError
    root, info = realy_bench
    maps = tmp_path / 'maps'
    (maps / '1_0').mkdir(parents=True)
    (maps / 'notes.txt').write_text('kept')   # only .ply files count
    metric = REALYMetric(info['template_obj'], info['template_keypoints'], regions=('nose', ),
                         error_map_dir=str(maps))
    sample = REALYDataset(root, pred_root=str(tmp_path / 'pred'), regions=('nose', ))[0]['data_samples']
    metric.process(None, [sample])
    metric.process(None, [sample])   # the next validation: refreshed, no error
    nose = maps / '1_0' / 'nose.ply'
    written = nose.read_bytes()
    with pytest.raises(OutputExistsError, match=f'REALYMetric: output folder {maps} already holds .ply files '
                                                rf'\({nose}, ...\); set REALYMetric\(overwrite=True\)'):
        REALYMetric(info['template_obj'], info['template_keypoints'], error_map_dir=str(maps))
    nose.write_bytes(b'an earlier run')
    again = REALYMetric(info['template_obj'], info['template_keypoints'], regions=('nose', ),
                        error_map_dir=str(maps), overwrite=True)
    again.process(None, [sample])
    assert nose.read_bytes() == written and (maps / 'notes.txt').read_text() == 'kept'


# ------------------------------------------------------------------ hot-refresh plot
def test_hot_refresh_metric_refuses_an_existing_plot_file(tmp_path):
    from mmkd_plugins.evaluation.metrics.hot_refresh import HotRefreshMetric
    from mmkd_plugins.utils.safe_output import OutputExistsError
    plot = tmp_path / 'plot.png'
    plot.write_bytes(b'an earlier plot')
    with pytest.raises(OutputExistsError, match=f'HotRefreshMetric: output {plot} already exists'):
        HotRefreshMetric(plot_file=str(plot))
    HotRefreshMetric(plot_file=str(plot), overwrite=True)
    HotRefreshMetric(plot_file='hot_refresh.png')   # relative: the run's own log folder
    assert plot.read_bytes() == b'an earlier plot'


# ------------------------------------------------------------------ mmkd-doctor --out / --write, mmkd-wire -o
DIGITS_MGD = osp.join(REPO, 'configs', 'demo', 'digits_mgd.py')


def test_doctor_refuses_its_config_and_existing_outputs_before_running(tmp_path, cli):
    """DATA LOSS before: --write CONFIG replaced the config being checked; --out replaced any file."""
    cfg = tmp_path / 'mine.py'
    shutil.copy(DIGITS_MGD, cfg)
    text = cfg.read_text()
    proc = run_tool('kd_doctor.py', cfg, '--calibrate', '0.3', '--write', cfg)
    assert_error_line(proc, 'kd_doctor.py', f'--write {cfg} is the input {cfg}', 'refusing to write over an input')
    assert cfg.read_text() == text
    report = tmp_path / 'report.json'
    report.write_text('{"result": "PASS"}')
    proc = cli('kd_doctor.py', cfg, '--out', report)
    assert_error_line(proc, 'kd_doctor.py', f'--out {report} already exists', '--force')
    assert report.read_text() == '{"result": "PASS"}'
    proc = cli('kd_doctor.py', cfg, '--out', cfg, '--force')
    assert_error_line(proc, 'kd_doctor.py', 'is the input')
    assert cfg.read_text() == text
    # the console command mmkd-doctor: the same line
    code = ('import sys; from mmkd_plugins.cli import doctor; '
            f'sys.argv = ["mmkd-doctor", {str(cfg)!r}, "--out", {str(report)!r}]; doctor()')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert_error_line(proc, 'mmkd-doctor', f'--out {report} already exists')


def test_doctor_report_is_written_atomically(tmp_path, monkeypatch):
    from mmkd_plugins.doctor.report import OK, Report
    from mmkd_plugins.utils import safe_output
    path = tmp_path / 'report.json'
    path.write_text('{"result": "PASS"}')
    report = Report('x.py')
    report.add('data', 'loader', OK, 'fine')
    monkeypatch.setattr(safe_output.os, 'fsync', lambda fd: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        report.dump(str(path))
    assert path.read_text() == '{"result": "PASS"}' and os.listdir(tmp_path) == ['report.json']


def test_wire_refuses_its_inputs_and_an_existing_out(tmp_path):
    student = tmp_path / 'student.py'
    shutil.copy(osp.join(REPO, 'configs', 'demo', 'digits_student_resnet18_w4.py'), student)
    teacher = osp.join(REPO, 'configs', 'demo', 'digits_teacher_resnet18.py')
    text = student.read_text()
    base = ['--student', student, '--teacher', teacher, '--method', 'nkd', '--input-size', '32']
    proc = run_tool('kd_wire.py', *base, '-o', student, '--force')
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('mmkd-wire: error: --out') and 'is the input' in lines[0]
    assert student.read_text() == text
    out = tmp_path / 'wired.py'
    out.write_text('# my edits\n')
    proc = run_tool('kd_wire.py', *base, '-o', out)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f'mmkd-wire: error: --out {out} already exists; pass --force to replace it')
    assert out.read_text() == '# my edits\n'


# ------------------------------------------------------------------ gen_registry_manifest.py
@pytest.fixture
def manifest_tree(tmp_path):
    """A copy of the tool and the package source (the tool writes ``<repo>/mmkd_plugins/...``)."""
    (tmp_path / 'tools').mkdir()
    shutil.copy(osp.join(REPO, 'tools', 'gen_registry_manifest.py'), tmp_path / 'tools')
    shutil.copytree(osp.join(REPO, 'mmkd_plugins'), tmp_path / 'mmkd_plugins',
                    ignore=shutil.ignore_patterns('__pycache__', '*.so', '.mim'))
    return tmp_path


def _gen(tree, *args, **env):
    return subprocess.run([sys.executable, str(tree / 'tools' / 'gen_registry_manifest.py'), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items() if k != 'MMKD_DEBUG'}, **env})


def test_gen_registry_manifest_errors_refusal_and_atomic_write(manifest_tree, monkeypatch, capsys):
    """One line per error (no traceback unless --debug); a file at the manifest path that is not a
    generated manifest is replaced only with --force; a stale generated one is rewritten; atomic."""
    tree = manifest_tree
    manifest = tree / 'mmkd_plugins' / '_registry_manifest.py'
    generated = manifest.read_text()
    assert _gen(tree, '--check').returncode == 0

    manifest.write_text('MANIFEST = ()  # written by hand\n')
    proc = _gen(tree)
    assert_error_line(proc, 'gen_registry_manifest.py', str(manifest), 'not a generated manifest', '--force')
    assert manifest.read_text() == 'MANIFEST = ()  # written by hand\n'
    proc = _gen(tree, '--force')
    assert proc.returncode == 0 and manifest.read_text() == generated, proc.stderr
    stale = generated.replace("    ('METRICS', 'DAVISMetric', 'mmkd_plugins.evaluation.metrics.davis'),\n", '')
    assert stale != generated
    manifest.write_text(stale)
    assert _gen(tree, '--check').returncode == 1
    assert _gen(tree).returncode == 0 and manifest.read_text() == generated   # its own file: rewritten

    bad = tree / 'mmkd_plugins' / 'bad_registration.py'
    bad.write_text('from somewhere import REG\n\n\n@REG.register_module()\nclass X:\n    pass\n')
    proc = _gen(tree)
    assert_error_line(proc, 'gen_registry_manifest.py', 'mmkd_plugins/bad_registration.py:5',
                      "register_module on 'REG', which is not a registry imported from mmengine.registry")
    proc = _gen(tree, '--debug')
    assert proc.returncode == 1 and 'Traceback' in proc.stderr and 'ValueError' in proc.stderr
    proc = _gen(tree, MMKD_DEBUG='1')
    assert proc.returncode == 1 and 'Traceback' in proc.stderr
    bad.unlink()

    # interrupted before the rename: the stale manifest stays whole, no temporary file
    manifest.write_text(stale)
    real_replace = os.replace

    def interrupted(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, 'replace', interrupted)
    monkeypatch.setattr(sys, 'argv', [str(tree / 'tools' / 'gen_registry_manifest.py')])
    monkeypatch.delenv('MMKD_DEBUG', raising=False)
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(tree / 'tools' / 'gen_registry_manifest.py'), run_name='__main__')
    monkeypatch.setattr(os, 'replace', real_replace)
    assert exc.value.code == 130 and 'interrupted' in capsys.readouterr().err
    assert manifest.read_text() == stale and no_temp_files(tree / 'mmkd_plugins')
