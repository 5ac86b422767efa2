"""mmkd-doctor on a distiller with several teachers (``teachers=dict(cls=..., feat=...)``): every
check reports each teacher under its own name (weights, metric, preprocessing, taps)."""
import pytest
from mmengine.config import Config

from mmkd_plugins.doctor.main import run_doctor
from mmkd_plugins.doctor.report import FAIL, OK
from tests.helpers import save_random_weights, tiny_classifier_cfg

pytest.importorskip('mmpretrain')

from tests.test_distillers.test_several_teachers import two_teacher_cfg  # noqa: E402
from tests.test_e2e.test_cls_kd_e2e import NUM_CLASSES, _runner_cfg, image_folder  # noqa: E402,F401


def _rows(report, check, item=None):
    return [r for r in report.rows if r.check == check and (item is None or r.item == item)]


def test_doctor_reports_each_teacher(image_folder, tmp_path):  # noqa: F811
    ckpts = [str(tmp_path / 'cls.pth'), str(tmp_path / 'feat.pth')]
    save_random_weights(tiny_classifier_cfg(width=8, num_classes=NUM_CLASSES), ckpts[0], seed=1)
    save_random_weights(tiny_classifier_cfg(width=6, num_classes=NUM_CLASSES), ckpts[1], seed=2)
    model = two_teacher_cfg(ckpts, num_classes=NUM_CLASSES)
    model['student'].pop('data_preprocessor')  # the config's top-level one (Runner)
    # teacher "feat" prepares its own inputs (its config's preprocessor); "cls" gets the student's
    model['teachers']['feat']['data_preprocessor'] = 'teacher'
    cfg = _runner_cfg(model, image_folder, str(tmp_path / 'work'))
    # teacher "cls" declares its expected accuracy (a random 3-class teacher cannot reach 99 %);
    # "feat" declares none
    cfg.data_preprocessor.to_rgb = False  # as the teachers' configs (no channel conversion)
    cfg.teacher_expected = dict(cls=dict(metric='accuracy/top1', value=99.0, tol=1.0))
    cfg.visualizer = dict(type='Visualizer', name=f'vis_several_{id(cfg)}')
    path = str(tmp_path / 'two_teachers.py')
    cfg.dump(path)

    report = run_doctor(path, batches=1)
    weights = {r.item: r for r in _rows(report, 'teacher weights')}
    assert set(weights) == {'cls', 'feat'}
    assert all(r.status == OK and r.data['loaded'] == r.data['total'] for r in weights.values())
    assert weights['cls'].data['source'] == ckpts[0] and weights['feat'].data['source'] == ckpts[1]
    # each teacher is scored with the run's evaluator; only "cls" has an expectation (missed)
    metric = {r.item: r for r in _rows(report, 'teacher metric')}
    assert set(metric) == {'cls', 'feat'}
    assert metric['cls'].status == FAIL and metric['cls'].data['expected'] == 99.0
    assert metric['feat'].status == OK and 'accuracy/top1' in metric['feat'].data['metrics']
    pre = {r.item: r for r in _rows(report, 'preprocessing')}
    assert set(pre) == {'cls', 'feat'} and all(r.status == OK for r in pre.values())
    assert 'same mean/std' in pre['cls'].detail
    assert 'its own data preprocessor' in pre['feat'].detail
    # taps of both teachers on a real batch: the logits of "cls", the last stage of "feat"
    taps = {r.item: r for r in _rows(report, 'taps')}
    assert {'teacher.cls.logits', 'teacher.feat.feat'} <= set(taps), sorted(taps)
    assert all(taps[k].status == OK for k in ('teacher.cls.logits', 'teacher.feat.feat'))
    assert taps['teacher.cls.logits'].data['shape'] == f'4x{NUM_CLASSES}'
    assert taps['teacher.feat.feat'].data['shape'].startswith('4x48x')
    # both distillation terms (one per teacher) train the student
    terms = {r.item: r for r in _rows(report, 'loss terms')}
    assert {'distill.loss_nkd', 'distill.loss_mgd'} <= set(terms)
    assert all(terms[k].data['grad_norm'] > 0 for k in ('distill.loss_nkd', 'distill.loss_mgd'))
    # the only FAIL is the missed expectation of teacher "cls"
    assert [(r.check, r.item) for r in report.rows if r.status == FAIL] == [
        ('teacher metric', 'cls')]


def test_lint_of_per_teacher_expectations():
    from mmkd_plugins.doctor.lint import lint_top_level
    model = dict(teachers=dict(cls=dict(config='a.py'), feat=dict(config='b.py')))
    good = dict(metric='accuracy/top1', value=70.0, tol=5.0)
    assert lint_top_level(Config(dict(model=model, teacher_expected=dict(cls=good)))) == []
    rows = lint_top_level(Config(dict(model=model, teacher_expected=dict(clss=good))))
    assert [r.status for r in rows] == [FAIL] and 'does not have (did you mean cls?)' in \
        rows[0].detail
    rows = lint_top_level(Config(dict(model=model, teacher_expected=dict(cls=dict(value=1.0)))))
    assert [r.status for r in rows] == [FAIL] and 'teacher_expected["cls"] must be' in \
        rows[0].detail
    # a single teacher keeps the flat form; the per-teacher form is an error there
    single = dict(teacher='a.py')
    assert lint_top_level(Config(dict(model=single, teacher_expected=good))) == []
    rows = lint_top_level(Config(dict(model=single, teacher_expected=dict(cls=good))))
    assert [r.status for r in rows] == [FAIL]
