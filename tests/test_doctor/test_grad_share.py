"""The gradient-share measurement and the calibration formula against direct computations."""
import math

import pytest
import torch
import torch.nn as nn

from mmkd_plugins.doctor.calibrate import config_text, propose, scale_factor, weight_of
from mmkd_plugins.doctor.grad_share import ShareMeter, loss_terms, term_grad_norms


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.student = nn.Linear(3, 2, bias=False)
        self.connector = nn.Linear(2, 2, bias=False)  # not the student: excluded


def test_term_norms_equal_the_analytic_gradients():
    torch.manual_seed(0)
    m = Tiny()
    x = torch.randn(5, 3)
    y = m.student(x)
    # L_task = sum(y) -> dL/dW = 1 (x) sum_n x_n ; L_kd = 0.5 * ||connector(y)||^2 -> through W
    terms = loss_terms({'loss': y.sum(), 'distill.loss_kd': [0.5 * m.connector(y).pow(2).sum(),
                                                              torch.zeros(())],
                        'acc': torch.tensor(1.0)})
    assert set(terms) == {'loss', 'distill.loss_kd'}
    norms = term_grad_norms(terms, list(m.student.parameters()))
    g_task = torch.ones(2, 1) * x.sum(0, keepdim=True)
    A = m.connector.weight
    g_kd = (A.t() @ A @ y.t()) @ x  # d/dW 0.5 ||A W x||^2 = A^T A W x x^T, summed over n
    assert norms['loss'] == pytest.approx(g_task.norm().item(), rel=1e-5)
    assert norms['distill.loss_kd'] == pytest.approx(g_kd.norm().item(), rel=1e-5)
    # a term with no path to the student has norm 0
    assert term_grad_norms({'distill.x': m.connector.weight.sum()},
                           list(m.student.parameters()))['distill.x'] == 0.0


def test_shares_average_norms_over_batches():
    meter = ShareMeter()
    meter.add({'loss': 1.0, 'distill.a': 2.0}, {'loss': 3.0, 'distill.a': 1.0})
    meter.add({'loss': 1.0, 'distill.a': 2.0}, {'loss': 5.0, 'distill.a': 3.0})
    s = meter.summary()
    assert s['loss']['share'] == pytest.approx(4 / 6) and s['distill.a']['share'] == pytest.approx(2 / 6)
    assert meter.distill_share() == pytest.approx(1 / 3)
    meter.add({'loss': float('nan'), 'distill.a': 1.0}, {'loss': 1.0, 'distill.a': 1.0})
    assert not meter.summary()['loss']['finite'] and meter.summary()['distill.a']['finite']


def test_calibration_factor_gives_the_target_share():
    summary = {'loss': dict(grad_norm=6.0, share=0.75, distill=False),
               'distill.loss_mgd': dict(grad_norm=1.0, share=0.125, distill=True),
               'distill.loss_vitkd.loss_vitkd_gen': dict(grad_norm=1.0, share=0.125, distill=True)}
    c = scale_factor(summary, 0.5)
    assert c == pytest.approx(3.0)  # 3 * 2 / (6 + 3 * 2) = 0.5
    losses = dict(loss_mgd=dict(type='MGDLoss', alpha_mgd=2e-5),
                  loss_vitkd=dict(type='ViTKDLoss', student_dims=4, teacher_dims=8))
    assert weight_of('distill.loss_mgd', losses) == ('loss_mgd', 'alpha_mgd', 2e-5)
    # beta_vitkd is not in the config: its default (the paper's 3e-6) is the current weight
    assert weight_of('distill.loss_vitkd.loss_vitkd_gen', losses) == (
        'loss_vitkd', 'beta_vitkd', 3e-6)
    p = propose(summary, losses, 0.5)
    new = {(c['loss'], c['arg']): c['new'] for c in p['changes']}
    assert new == {('loss_mgd', 'alpha_mgd'): pytest.approx(6e-5),
                   ('loss_vitkd', 'beta_vitkd'): pytest.approx(9e-6)}
    text = config_text(p, '/x/base.py')
    assert "_base_ = ['/x/base.py']" in text and 'alpha_mgd=6e-05' in text
    with pytest.raises(ValueError, match='in \\(0, 1\\)'):
        scale_factor(summary, 1.0)
    with pytest.raises(ValueError, match='no task loss'):
        scale_factor({'distill.a': dict(grad_norm=1.0, distill=True)}, 0.5)
    assert math.isfinite(p['factor'])
