"""Doctor rules for set-ups whose losses or metrics are not those of plain distillation: a term
switched off by its schedule (UniBCT before its first prototype refresh), a student trained by
distillation terms only (BiCT's transformation), metrics that score a compatible pair's joint
predictions (HotRefreshMetric) and cannot score a teacher alone."""
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator

from mmkd_plugins.doctor.report import FAIL, OK, SKIP, WARN
from mmkd_plugins.doctor.steps import inactive_terms, share_rows, unhooked_terms
from mmkd_plugins.engine.hooks import UniBCTPrototypeHook
from mmkd_plugins.engine.loops.teacher_eval import NoTeacherMetric, evaluate_teacher
from mmkd_plugins.evaluation.metrics.hot_refresh import HotRefreshMetric
from mmkd_plugins.models.losses.compatible import UniBCTLoss


def _summary(**terms):
    """``name=(grad_norm, share)`` -> a ShareMeter-like summary (distill: name starts 'distill.')"""
    return {k.replace('__', '.'): dict(value=1.0, grad_norm=g, share=s, finite=True,
                                       distill=k.startswith('distill__'))
            for k, (g, s) in terms.items()}


def test_a_term_off_by_its_schedule_is_skipped_not_failed():
    losses = nn.ModuleDict(dict(loss_unibct=UniBCTLoss(num_classes=3)))
    model = nn.Module()
    model.distill_losses = losses
    assert inactive_terms(model) == {'distill.loss_unibct': 'UniBCTLoss'}
    summary = _summary(loss=(1.0, 1.0), distill__loss_unibct=(0.0, 0.0))
    (task, term) = share_rows(summary, inactive=inactive_terms(model))
    assert task.status == OK and term.status == SKIP and term.data['inactive']
    assert 'UniBCTLoss is off' in term.detail
    # once the prototypes are set the term is on: a zero gradient is a FAIL again
    losses['loss_unibct'].set_prototypes(torch.randn(3, 4))
    assert inactive_terms(model) == {}
    (_, term) = share_rows(summary, inactive=inactive_terms(model))
    assert term.status == FAIL and 'NO gradient' in term.detail


def test_a_term_whose_switching_hook_is_missing_fails():
    """UniBCT without UniBCTPrototypeHook in custom_hooks would stay 0 for the whole training."""
    model = nn.Module()
    model.distill_losses = nn.ModuleDict(dict(loss_unibct=UniBCTLoss(num_classes=3)))
    summary = _summary(loss=(1.0, 1.0), distill__loss_unibct=(0.0, 0.0))
    assert unhooked_terms(model, hooks=[UniBCTPrototypeHook()]) == {}
    missing = unhooked_terms(model, hooks=[])
    assert missing == {'distill.loss_unibct': 'UniBCTPrototypeHook'}
    (_, term) = share_rows(summary, inactive=inactive_terms(model), unhooked=missing)
    assert term.status == FAIL
    assert 'no UniBCTPrototypeHook in custom_hooks' in term.detail


def test_no_task_loss_is_not_drowned():
    # BiCT's transformation: the distillation term is the student's whole objective
    (term,) = share_rows(_summary(distill__loss_bict=(0.1, 1.0)))
    assert term.status == OK and 'no task loss' in term.detail
    # with a task loss, 95 % of the gradient is still "drowning" it
    rows = share_rows(_summary(loss=(0.05, 0.05), distill__loss_kd=(0.95, 0.95)))
    assert [r.status for r in rows] == [OK, WARN]


class _Count(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results += [1 for _ in data_samples]

    def compute_metrics(self, results):
        return dict(count=len(results))


class _Teacher(nn.Module):
    def forward(self, inputs, data_samples=None, mode='predict'):
        return [dict(pred=float(x.sum())) for x in inputs]


def test_teacher_is_scored_without_the_pair_metrics():
    batches = [dict(inputs=torch.ones(2, 3)), dict(inputs=torch.ones(2, 3))]
    hot = HotRefreshMetric(fractions=3, plot_file=None)
    evaluator = Evaluator([_Count(), hot])
    metrics, seen = evaluate_teacher(_Teacher(), lambda b, training: b, batches, evaluator)
    assert metrics == {'count': 4} and seen == 4
    assert evaluator.metrics[1] is hot  # the evaluator is given back whole
    with pytest.raises(NoTeacherMetric, match='HotRefreshMetric score the distiller'):
        evaluate_teacher(_Teacher(), lambda b, training: b, batches, Evaluator([hot]))
