"""Bad input as a user hits it: real files on disk, the real command line in a subprocess.

Each class of issue 25 has a test here: no silent wrong result (strict checkpoints, distiller
checkpoints, unannotated VOS frames, galleries of another split, NaN / mis-sized embeddings), no data
loss (output == input, existing outputs, atomic writes), one error line with a non-zero exit and no
traceback unless ``--debug`` / ``MMKD_DEBUG=1`` (unreadable checkpoints, bad connector arguments,
``--resume`` of a teacher checkpoint, empty label lists, empty frame folders), and no third-party
warning on ``--help``.
"""
import os
import os.path as osp
import runpy
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import REPO


def run_tool(tool: str, *args, **env) -> subprocess.CompletedProcess:
    """``python tools/<tool> args`` in a new interpreter, this checkout first on the path, one thread."""
    full_env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    full_env.pop('MMKD_DEBUG', None)
    full_env.update(env)
    return subprocess.run([sys.executable, osp.join(REPO, 'tools', tool), *map(str, args)], env=full_env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def cli(capsys, monkeypatch):
    """The same command line in this process (``runpy`` runs the tool as ``__main__``: argparse, the
    ``run_main`` wrapper, exit status and stderr as in a shell) without paying an interpreter start and
    the imports for every case; the subprocess tests above each class check the real start-up too."""
    def run(tool: str, *args, **env):
        monkeypatch.setattr(sys, 'argv', [osp.join(REPO, 'tools', tool), *map(str, args)])
        monkeypatch.delenv('MMKD_DEBUG', raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        code = 0
        try:
            runpy.run_path(osp.join(REPO, 'tools', tool), run_name='__main__')
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # noqa: BLE001  (as the interpreter would: a traceback, status 1)
            import traceback
            sys.stderr.write('Traceback (most recent call last):\n' + ''.join(traceback.format_exception(exc)))
            code = 1
        out = capsys.readouterr()
        err = out.err
        if isinstance(code, str):
            err, code = err + code + '\n', 1
        return SimpleNamespace(returncode=code or 0, stdout=out.out, stderr=err)
    return run


def assert_error_line(proc, tool: str, *needles: str) -> str:
    """Exit status 1, no traceback, and one ``<tool>: error: ...`` line holding every needle."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f'{tool}: error: ')]
    assert len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------ checkpoints and the classifier
DEMO = osp.join(REPO, 'configs', 'demo')
STUDENT_CFG = osp.join(DEMO, 'digits_student_resnet18_w4.py')
TEACHER_CFG = osp.join(DEMO, 'digits_teacher_resnet18.py')


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    """A student checkpoint, a checkpoint of another model (the w16 teacher), a distiller checkpoint
    of the student (weights under ``student.``, an MGD connector, resume state) and broken files."""
    pytest.importorskip('mmpretrain')
    from mmkd_plugins.models.compatible.embed import build_embedding_model
    root = tmp_path_factory.mktemp('ckpts')
    torch.manual_seed(0)
    student = build_embedding_model(STUDENT_CFG, None).state_dict()
    teacher = build_embedding_model(TEACHER_CFG, None).state_dict()
    files = dict(student=root / 'student.pth', teacher=root / 'teacher.pth', kd=root / 'kd.pth')
    torch.save(dict(state_dict=student, meta=dict(epoch=3)), files['student'])
    torch.save(dict(state_dict=teacher, meta=dict(epoch=12)), files['teacher'])
    kd_state = {f'student.{k}': v for k, v in student.items()}
    kd_state['connectors.mgd.align.weight'] = torch.randn(128, 32, 1, 1)
    torch.save(dict(state_dict=kd_state, meta=dict(epoch=3, iter=30),
                    optimizer=dict(state={}, param_groups=[dict(lr=0.1, params=list(range(3)))])),
               files['kd'])
    files['empty'] = root / 'empty.pth'
    files['empty'].write_bytes(b'')
    files['text'] = root / 'notes.pth'
    files['text'].write_text('epoch 3: top-1 90.2\n')
    whole = files['kd'].read_bytes()
    files['truncated'] = root / 'truncated.pth'
    files['truncated'].write_bytes(whole[:len(whole) // 2])
    files['student_state'] = student
    return files


def test_test_py_refuses_a_checkpoint_of_another_model(ckpts, tmp_path):
    """SILENT before: top-1 of random weights, exit 0. Now: the counts and a few keys, exit 1."""
    proc = run_tool('test.py', STUDENT_CFG, ckpts['teacher'], '--work-dir', tmp_path)
    line = assert_error_line(proc, 'test.py', str(ckpts['teacher']), 'does not match the model',
                             'shape mismatches', '--non-strict')
    assert 'backbone.conv1.weight: checkpoint (16, 3, 3, 3) vs model (4, 3, 3, 3)' in line
    assert 'accuracy' not in proc.stdout


def test_test_py_refuses_a_distiller_checkpoint_with_the_command(ckpts, tmp_path, cli):
    proc = cli('test.py', STUDENT_CFG, ckpts['kd'], '--work-dir', tmp_path, '--non-strict')
    assert_error_line(proc, 'test.py', 'this is a distillation checkpoint', 'convert it first',
                      f'python tools/convert_kd_ckpt_to_student.py {ckpts["kd"]} OUT.pth')


def test_unreadable_checkpoints_are_named_in_one_line(ckpts, tmp_path, cli):
    """CRYPTIC before (bare EOFError / invalid load key, no file name). With --debug or MMKD_DEBUG=1
    the traceback is back."""
    out = tmp_path / 'student.pth'
    proc = run_tool('convert_kd_ckpt_to_student.py', ckpts['empty'], out)
    assert_error_line(proc, 'convert_kd_ckpt_to_student.py', str(ckpts['empty']), 'is empty (0 bytes)')
    assert proc.stderr.count('\n') == 1 and not out.exists()   # nothing else on stderr
    for key, reason in (('text', 'is a text file'), ('truncated', 'damaged or truncated zip archive')):
        proc = cli('convert_kd_ckpt_to_student.py', ckpts[key], out)
        assert_error_line(proc, 'convert_kd_ckpt_to_student.py', str(ckpts[key]), reason)
        assert not out.exists()
    proc = cli('convert_kd_ckpt_to_student.py', ckpts['empty'], out, '--debug')
    assert proc.returncode == 1 and 'Traceback' in proc.stderr and 'CheckpointFileError' in proc.stderr
    proc = cli('convert_kd_ckpt_to_student.py', ckpts['empty'], out, MMKD_DEBUG='1')
    assert proc.returncode == 1 and 'Traceback' in proc.stderr


def test_convert_never_overwrites_its_input_and_needs_force(ckpts, tmp_path, cli):
    """DATA LOSS before: output == input replaced the distiller checkpoint (and its resume state)."""
    src = tmp_path / 'kd.pth'
    shutil.copy(ckpts['kd'], src)
    before = src.read_bytes()
    link = tmp_path / 'link.pth'
    link.symlink_to(src)
    for dst in (src, link, f'{tmp_path}/./kd.pth'):
        proc = cli('convert_kd_ckpt_to_student.py', src, dst, '--force')
        assert_error_line(proc, 'convert_kd_ckpt_to_student.py', 'is the input', 'refusing to write over an input')
        assert src.read_bytes() == before
    out = tmp_path / 'student.pth'
    out.write_bytes(b'previous result')
    proc = cli('convert_kd_ckpt_to_student.py', src, out)
    assert_error_line(proc, 'convert_kd_ckpt_to_student.py', str(out), 'already exists', '--force')
    assert out.read_bytes() == b'previous result'
    proc = cli('convert_kd_ckpt_to_student.py', src, out, '--force')
    assert proc.returncode == 0, proc.stderr
    state = torch.load(out, weights_only=True)['state_dict']
    assert state.keys() == ckpts['student_state'].keys()
    assert all(torch.equal(state[k], v) for k, v in ckpts['student_state'].items())
    assert sorted(os.listdir(tmp_path)) == ['kd.pth', 'link.pth', 'student.pth']  # no temp file left


def test_extract_embeddings_refuses_to_write_over_its_checkpoint(ckpts, tmp_path, cli):
    ckpt = tmp_path / 'model.pth'
    shutil.copy(ckpts['student'], ckpt)
    before = ckpt.read_bytes()
    proc = cli('extract_embeddings.py', STUDENT_CFG, ckpt, ckpt, '--force')
    assert_error_line(proc, 'extract_embeddings.py', 'is the input')
    assert ckpt.read_bytes() == before


def test_train_resume_of_a_teacher_checkpoint(ckpts, tmp_path):
    """CRYPTIC before: a parameter-group error from the optimizer. Now: not a training checkpoint."""
    teacher = tmp_path / 'teacher_run.pth'
    torch.save(dict(torch.load(ckpts['teacher'], weights_only=True),
                    optimizer=dict(state={}, param_groups=[dict(lr=0.1, params=[0, 1])])), teacher)
    proc = run_tool('train.py', STUDENT_CFG, '--work-dir', tmp_path / 'w', '--resume', teacher)
    assert_error_line(proc, 'train.py', f'--resume {teacher}: not a training checkpoint of this config',
                      'shape mismatches', 'teacher checkpoint goes to model.teacher_ckpt')


def test_train_connector_channels_must_be_integers(ckpts, tmp_path, cli):
    """CRYPTIC before: a string-formatting error. Now: the class, the argument and the value."""
    proc = cli('train.py', osp.join(DEMO, 'digits_mgd.py'), '--work-dir', tmp_path / 'w', '--cfg-options',
                    f'model.teacher_ckpt={ckpts["teacher"]}', 'model.connectors.mgd.student_channels=abc')
    assert_error_line(proc, 'train.py', "MGDConnector: student_channels must be a positive integer",
                      "got 'abc' (str)")


def test_help_prints_no_third_party_warning():
    """test.py imports mmengine.runner, whose optimizer registry imports transformers (two
    FutureWarnings before, when transformers is installed)."""
    proc = run_tool('test.py', '--help')
    assert proc.returncode == 0 and 'usage:' in proc.stdout
    assert proc.stderr == '', proc.stderr


# ------------------------------------------------------------------ VOS
@pytest.fixture
def vos(tmp_path):
    """A 12-frame DAVIS-layout video whose frames 1..11 have no annotation except 4 and 8, a tiny
    SWEM config and its checkpoint."""
    from mmengine.registry import MODELS

    from mmkd_plugins.datasets.vos import synthesize_moving_shapes
    from tests.test_models.test_vos.vos_helpers import tiny_swem_cfg
    root = tmp_path / 'davis'
    synthesize_moving_shapes(str(root), videos=('clip', ), num_frames=12, size=(32, 32), split='val')
    for t in range(1, 12):
        if t not in (4, 8):
            os.remove(root / 'Annotations' / '480p' / 'clip' / f'{t:05d}.png')
    model = tiny_swem_cfg()
    dataset = dict(type='VOSDataset', data_root=str(root), split='val', test_mode=True, test_short_side=32)
    cfg = tmp_path / 'tiny_swem.py'
    cfg.write_text("custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)\n"
                   f'model = {model!r}\ntest_dataloader = dict(batch_size=1, dataset={dataset!r})\n')
    torch.manual_seed(0)
    state = MODELS.build(tiny_swem_cfg()).state_dict()
    ckpt = tmp_path / 'swem.pth'
    torch.save(dict(state_dict=state, meta={}), ckpt)
    return dict(root=root, cfg=cfg, ckpt=ckpt, state=state)


def test_vos_eval_refuses_unannotated_frames_unless_skipped(vos, tmp_path, cli):
    """SILENT before: J&F 100.00 on a video annotated on its first frame only (missing masks counted as
    empty ground truth). Now an error; --skip-unannotated scores the annotated frames 4 and 8 only."""
    out = tmp_path / 'out'
    proc = cli('vos_inference.py', vos['cfg'], vos['ckpt'], '--out-dir', out, '--eval', '--device', 'cpu')
    assert_error_line(proc, 'vos_inference.py', 'video clip: 8 of its 10 scored frames have no annotation',
                      '--skip-unannotated')
    assert not out.exists()   # refused before anything was written
    proc = cli('vos_inference.py', vos['cfg'], vos['ckpt'], '--out-dir', out, '--eval', '--device', 'cpu',
                    '--skip-unannotated', '--no-progress')
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    from mmkd_plugins.datasets.vos import read_mask
    from mmkd_plugins.evaluation.metrics.davis import db_eval_iou
    metrics = json.load(open(out / 'inference_summary.json'))['metrics']
    # direct re-computation: J of objects 1, 2 on frames 4 and 8 only
    ann = vos['root'] / 'Annotations' / '480p' / 'clip'
    j = [[db_eval_iou(read_mask(str(ann / f'{t:05d}.png')) == o, read_mask(str(out / 'clip' / f'{t:05d}.png')) == o)
          for t in (4, 8)] for o in (1, 2)]
    assert metrics['J-Mean'] == pytest.approx(100 * np.mean(j), abs=1e-6)
    # the same output folder again: refused without --force, nothing replaced
    stamp = (out / 'clip' / '00004.png').stat().st_mtime_ns
    proc = cli('vos_inference.py', vos['cfg'], vos['ckpt'], '--out-dir', out, '--device', 'cpu')
    assert_error_line(proc, 'vos_inference.py', 'inference_summary.json already exists', '--force')
    assert (out / 'clip' / '00004.png').stat().st_mtime_ns == stamp


def test_vos_checkpoint_of_another_model_and_empty_frame_folder(vos, tmp_path, cli):
    bad = tmp_path / 'other.pth'
    state = {k: v for k, v in vos['state'].items() if not k.startswith('decoder.')}
    state['head.fc.weight'] = torch.zeros(2, 2)
    torch.save(dict(state_dict=state), bad)
    proc = cli('vos_inference.py', vos['cfg'], bad, '--out-dir', tmp_path / 'o', '--device', 'cpu')
    assert_error_line(proc, 'vos_inference.py', str(bad), 'missing keys (decoder.',
                      '1 unexpected keys (head.fc.weight)', '--non-strict')
    for f in (vos['root'] / 'JPEGImages' / '480p' / 'clip').iterdir():
        f.unlink()
    proc = cli('vos_inference.py', vos['cfg'], vos['ckpt'], '--out-dir', tmp_path / 'o', '--device', 'cpu')
    assert_error_line(proc, 'vos_inference.py', 'video clip has no frames',
                      str(vos['root'] / 'JPEGImages' / '480p' / 'clip'))


# ------------------------------------------------------------------ embeddings, galleries, hashing
@pytest.fixture
def galleries(tmp_path):
    """Embedding files: an old gallery (test split, 32-d), its new-model version (48-d), new queries,
    and the new gallery of ANOTHER split (same indices 0..N-1, other images and labels)."""
    from mmkd_plugins.models.compatible.embedding_io import save_embeddings
    g = torch.Generator().manual_seed(0)
    n = 20
    labels = torch.arange(n) % 5
    other_labels = (labels + 1) % 5
    files = {}
    for name, dim, lab in (('old', 32, labels), ('new', 48, labels), ('query', 48, labels),
                           ('new_other_split', 48, other_labels), ('query16', 16, labels)):
        files[name] = str(tmp_path / f'{name}.pth')
        save_embeddings(files[name], torch.randn(n, dim, generator=g), lab,
                        logits=torch.randn(n, 5, generator=g), meta=dict(split='test'))
    nan = torch.randn(n, 48, generator=g)
    nan[[3, 7]] = float('nan')
    files['nan'] = str(tmp_path / 'nan.pth')
    torch.save(dict(embeddings=nan, labels=labels, indices=torch.arange(n)), files['nan'])
    return files


def test_backfill_evaluate_matches_by_id_and_label_and_checks_rows(galleries, cli):
    base = ['evaluate', '--old-gallery', galleries['old'], '--fractions', '3', '--order', 'random']
    proc = run_tool('backfill.py', *base, '--query', galleries['query'], '--new-gallery',
                    galleries['new_other_split'])
    assert_error_line(proc, 'backfill.py', f'--new-gallery {galleries["new_other_split"]}',
                      '20 of 20 items with the same dataset index have another label', 'different splits')
    proc = cli('backfill.py', *base, '--query', galleries['nan'], '--new-gallery', galleries['new'])
    assert_error_line(proc, 'backfill.py', galleries['nan'], 'NaN or infinite values in 2 rows (3, 7)')
    proc = cli('backfill.py', *base, '--query', galleries['query16'], '--new-gallery', galleries['new'])
    assert_error_line(proc, 'backfill.py', f'--query {galleries["query16"]} has 16-d embeddings',
                      f'--new-gallery {galleries["new"]} has 48-d')
    proc = cli('backfill.py', *base, '--query', galleries['query'], '--new-gallery', galleries['new'])
    assert proc.returncode == 0 and 'mAP' in proc.stdout, proc.stderr


def test_backfill_run_refuses_a_gallery_of_another_split(galleries, tmp_path, cli):
    cfg = osp.join(REPO, 'configs', 'compatible', 'digits_new_model.py')
    proc = cli('backfill.py', 'run', cfg, 'new.pth', galleries['old'], tmp_path / 'bf', '--split', 'val')
    assert_error_line(proc, 'backfill.py', galleries['old'], "extracted from the 'test' split but --split is 'val'")


def test_bict_upgrade_refuses_to_write_over_the_gallery(galleries, tmp_path, cli):
    before = open(galleries['old'], 'rb').read()
    proc = cli('bict_upgrade.py', galleries['old'], galleries['old'], '--fit-old', galleries['old'],
                    '--fit-new', galleries['new'], '--objective', 'regression', '--epochs', '0', '--force')
    assert_error_line(proc, 'bict_upgrade.py', 'is the input')
    assert open(galleries['old'], 'rb').read() == before


def test_hyp2_split_tool_empty_lists_and_existing_outputs(tmp_path, cli):
    """CRYPTIC before: an empty label list gave "need at least one array to concatenate"."""
    import json
    root = tmp_path / 'flickr'
    root.mkdir()
    (root / 'img.txt').write_text('')
    (root / 'targets.txt').write_text('')
    (root / 'flickr.txt').write_text('[]')
    proc = run_tool('hyp2_make_flickr25k_split.py', '--root', root)
    assert_error_line(proc, 'hyp2_make_flickr25k_split.py', str(root / 'img.txt'), 'list no image')
    (root / 'img.txt').write_text('\n'.join(f'im{i}.jpg' for i in range(6)))
    (root / 'targets.txt').write_text('\n'.join('1 0 1' for _ in range(6)))
    (root / 'flickr.txt').write_text(json.dumps(list(range(6))))
    (root / 'train.txt').write_text('my own list\n')
    proc = cli('hyp2_make_flickr25k_split.py', '--root', root, '--num-query', '2', '--num-train', '2')
    assert_error_line(proc, 'hyp2_make_flickr25k_split.py', str(root / 'train.txt'), 'already exists')
    assert (root / 'train.txt').read_text() == 'my own list\n' and not (root / 'test.txt').exists()
    proc = cli('hyp2_make_flickr25k_split.py', '--root', root, '--num-query', '2', '--num-train', '4',
                    '--force')
    assert_error_line(proc, 'hyp2_make_flickr25k_split.py', 'the database split would be empty')


def test_empty_hashing_list_file_is_named(tmp_path):
    from mmkd_plugins.datasets.multilabel_hashing import MultiLabelHashingDataset
    empty = tmp_path / 'train.txt'
    empty.write_text('\n')
    with pytest.raises(ValueError, match=f'empty list file.*{empty}.*no image'):
        MultiLabelHashingDataset(ann_file=str(empty), num_classes=3)


# ------------------------------------------------------------------ the shared helpers, in process
def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    from mmkd_plugins.utils.safe_output import atomic_torch_save, atomic_write
    path = tmp_path / 'out.pth'
    atomic_torch_save({'a': torch.ones(3)}, str(path))
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(str(path)) as fh:
            fh.write(b'half a checkpoint')
            raise KeyboardInterrupt
    with pytest.raises(Exception):
        atomic_torch_save({'f': lambda: 0}, str(path))   # pickling fails mid-write
    assert path.read_bytes() == before and os.listdir(tmp_path) == ['out.pth']


def test_non_strict_loads_the_overlap_but_never_a_distiller_or_a_foreign_file():
    from mmkd_plugins.utils.checkpoint_match import CheckpointMismatchError, check_state_dict_matches
    model = {'a.weight': torch.zeros(2, 2), 'b.weight': torch.zeros(3)}
    check_state_dict_matches(model, {'a.weight': torch.ones(2, 2)}, 'x.pth', strict=False)
    with pytest.raises(CheckpointMismatchError, match=r'1 missing keys \(b.weight\)'):
        check_state_dict_matches(model, {'a.weight': torch.ones(2, 2)}, 'x.pth')
    with pytest.raises(CheckpointMismatchError, match='distillation checkpoint'):
        check_state_dict_matches(model, {'student.a.weight': torch.ones(2, 2)}, 'x.pth', strict=False)
    with pytest.raises(CheckpointMismatchError, match='none of its 1 keys'):
        check_state_dict_matches(model, {'c': torch.ones(1)}, 'x.pth', strict=False)


def test_evaluate_sequence_skips_exactly_the_unannotated_frames():
    from mmkd_plugins.evaluation.metrics.davis import db_eval_iou, evaluate_sequence
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 3, (6, 8, 8))
    pred = rng.integers(0, 3, (6, 8, 8))
    annotated = [True, False, True, False, True, True]
    with pytest.raises(ValueError, match='v: 2 of the 4 scored frames have no ground-truth'):
        evaluate_sequence(gt, pred, annotated=annotated, video='v')
    j, f = evaluate_sequence(gt, pred, annotated=annotated, skip_unannotated=True)
    assert j.shape == f.shape == (2, 2)
    for o in (1, 2):
        np.testing.assert_allclose(j[o - 1], [db_eval_iou(gt[t] == o, pred[t] == o) for t in (2, 4)])


def test_connector_arguments_are_validated():
    from mmkd_plugins.models.connectors.vitkd import ViTKDMimicConnector
    with pytest.raises(ValueError, match=r'ViTKDMimicConnector: teacher_dims .* got True \(bool\)'):
        ViTKDMimicConnector(16, True)
