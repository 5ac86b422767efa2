"""DistillValLoop: the teacher is scored once by the upstream evaluator and logged as
``teacher/<metric>`` beside the student's metrics, through mmengine's Runner."""
import collections
import glob
import json
import os.path as osp

import pytest
import torch

from mmengine.config import Config
from mmengine.runner import Runner

pytest.importorskip('mmpretrain')


def _direct_top1(model, loader):
    """Teacher top-1 computed by hand: argmax of its logits vs the labels."""
    right = total = 0
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            logits = model.teacher(data['inputs'], mode='tensor')
            labels = torch.cat([s.gt_label for s in data['data_samples']])
            right += int((logits.argmax(1) == labels).sum())
            total += len(labels)
    return 100.0 * right / total


def test_teacher_scored_once_and_logged_beside_the_student(write_config, trained_teacher, tmp_path):
    cfg = Config.fromfile(write_config())
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.dataset.per_class = 3  # 30 images: one iteration per epoch
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.val_cfg = dict(type='DistillValLoop', evaluate_teacher='once')
    cfg.default_hooks.logger.interval = 1
    cfg.visualizer = dict(type='Visualizer', name=f'dvl_{id(cfg)}',
                          vis_backends=[dict(type='LocalVisBackend')])
    runner = Runner.from_cfg(cfg)
    calls = collections.Counter()
    runner.model.teacher.register_forward_pre_hook(lambda m, a, k: calls.update(['teacher']),
                                                   with_kwargs=True)
    runner.train()
    teacher_calls = calls['teacher']  # before the direct re-computation below calls it again
    files = glob.glob(osp.join(cfg.work_dir, '*', 'vis_data', 'scalars.json'))
    records = [json.loads(line) for line in open(files[0])]
    vals = [r for r in records if 'accuracy/top1' in r]
    assert len(vals) == 2
    assert all('teacher/accuracy/top1' in r for r in vals)
    teacher_top1 = vals[0]['teacher/accuracy/top1']
    assert vals[1]['teacher/accuracy/top1'] == teacher_top1
    loader = runner.val_dataloader
    assert teacher_top1 == pytest.approx(_direct_top1(runner.model, loader), abs=1e-4)
    assert teacher_top1 == pytest.approx(trained_teacher['top1'], abs=1e-4)
    # once: one pass over the 450 validation images (8 batches of 64) for both validations, plus
    # the training forwards (one teacher call per training iteration, 2 iterations)
    assert teacher_calls == len(loader) + 2
    assert vals[0]['accuracy/top1'] != teacher_top1  # the student's own metric is kept


def test_bad_mode_and_teacherless_model_are_clear_errors(write_config, tmp_path):
    from mmkd_plugins.engine.loops import DistillValLoop
    cfg = Config.fromfile(write_config())
    cfg.work_dir = str(tmp_path / 'w')
    cfg.val_cfg = dict(type='DistillValLoop', evaluate_teacher='sometimes')
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match="evaluate_teacher must be one of"):
        runner.build_val_loop(runner._val_loop)
    loop = DistillValLoop(runner, cfg.val_dataloader, cfg.val_evaluator)
    runner.model._slots = {}  # the distiller's built teachers: none
    with pytest.raises(ValueError, match='needs a model with a teacher'):
        loop.score_teachers()
