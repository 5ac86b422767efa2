"""NKD / tf-NKD: numerical checks against loop re-computations, gradients, errors."""
import math

import pytest
import torch
import torch.nn as nn

from mmkd_plugins.models.losses import (NKDLoss, TaskLossWithTfNKD, TfNKDLoss, nkd_loss,
                                        tf_nkd_loss)


# ----------------------------------------------------------------- direct re-computations
def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def ref_nkd(zs, zt, labels, tau, gamma):
    """Per-sample L_t + L_nt with plain Python loops."""
    out = []
    for s_row, t_row, t in zip(zs, zt, labels):
        p, q = _softmax(s_row), _softmax(t_row)
        l_t = -q[t] * math.log(p[t])
        s_nt = [v / tau for i, v in enumerate(s_row) if i != t]
        t_nt = [v / tau for i, v in enumerate(t_row) if i != t]
        ph, qh = _softmax(s_nt), _softmax(t_nt)
        l_nt = -gamma * tau**2 * sum(qi * math.log(pi) for qi, pi in zip(qh, ph))
        out.append(l_t + l_nt)
    return out


def _top2(row):
    order = sorted(range(len(row)), key=lambda i: -row[i])[:2]
    return order, [row[i] for i in order]


def ref_tf_nkd(zs, target, batch_mean='all'):
    """Per-sample tf-NKD loss with loops; target: list of ints or list of soft-label rows.

    batch_mean='all': mean of y_{t_k} over every sample (official); 'labelled': over the samples
    whose k-th label value is non-zero.
    """
    n = len(zs)
    ys = [_softmax(r) for r in zs]
    if isinstance(target[0], int):
        idx, val = [[t] for t in target], [[1.0] for _ in target]
    else:
        pairs = [_top2(r) for r in target]
        idx, val = [p[0] for p in pairs], [p[1] for p in pairs]
    k_num = len(idx[0])
    means = []
    for k in range(k_num):
        if batch_mean == 'all':
            valid = list(range(n))
        else:  # only the samples that have a k-th label (v_k != 0)
            valid = [m for m in range(n) if val[m][k] != 0]
        means.append(sum(ys[m][idx[m][k]] for m in valid) / max(len(valid), 1))
    out = []
    for m in range(n):
        total = 0.0
        for k in range(k_num):
            y = ys[m][idx[m][k]]
            w = 0.0 if val[m][k] == 0 else y + val[m][k] - means[k]
            total += -w * math.log(y)
        out.append(total)
    return out, ys, idx, val, means


def _soft_labels(n, c, gen):
    """Mixup-like soft labels: lam * onehot(a) + (1 - lam) * onehot(b)."""
    lam = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 0.6 + 0.2
    a = torch.randint(c, (n, ), generator=gen)
    b = torch.randint(c, (n, ), generator=gen)
    eye = torch.eye(c, dtype=torch.float64)
    return lam * eye[a] + (1 - lam) * eye[b]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# ----------------------------------------------------------------- NKD
@pytest.mark.parametrize('tau,gamma', [(1.0, 1.5), (3.0, 3.5), (0.5, 1.0)])
def test_nkd_matches_loops_hard_labels(gen, tau, gamma):
    zs = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 2
    zt = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(7, (5, ), generator=gen)
    ref = ref_nkd(zs.tolist(), zt.tolist(), y.tolist(), tau, gamma)
    got = nkd_loss(zs, zt, y, tau=tau, gamma=gamma, reduction='none')
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(nkd_loss(zs, zt, y, tau, gamma), torch.tensor(sum(ref) / 5,
                                                                          dtype=torch.float64))
    assert torch.allclose(nkd_loss(zs, zt, y, tau, gamma, reduction='sum'),
                          torch.tensor(sum(ref), dtype=torch.float64))


def test_nkd_soft_labels_use_argmax(gen):
    zs = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    zt = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    soft = _soft_labels(6, 5, gen)
    labels = [max(range(5), key=lambda i: row[i]) for row in soft.tolist()]
    ref = ref_nkd(zs.tolist(), zt.tolist(), labels, 1.0, 1.5)
    got = nkd_loss(zs, zt, soft, reduction='none')
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), atol=1e-10)
    # (N, 1) hard labels are accepted too
    hard = torch.tensor(labels).view(-1, 1)
    assert torch.allclose(nkd_loss(zs, zt, hard, reduction='none'), got)


def test_nkd_module_weight_and_repr(gen):
    zs, zt = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    y = torch.tensor([0, 3, 1])
    loss = NKDLoss(tau=2.0, gamma=1.0, loss_weight=0.5)
    assert torch.allclose(loss(zs, zt, y), 0.5 * nkd_loss(zs, zt, y, 2.0, 1.0))
    assert 'tau=2.0' in repr(loss)


def test_nkd_identical_logits_two_classes(gen):
    """With C = 2 the non-target part has one class and vanishes: loss = -q_t log p_t."""
    z = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    p = torch.softmax(z, 1)[torch.arange(4), y]
    assert torch.allclose(nkd_loss(z, z, y, reduction='none'), -p * p.log())


def test_nkd_gradcheck_student_and_teacher_frozen(gen):
    zs = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    zt = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([4, 0, 2])
    assert torch.autograd.gradcheck(lambda s: nkd_loss(s, zt, y, 2.0, 1.5), (zs, ))
    soft = _soft_labels(3, 5, gen)
    assert torch.autograd.gradcheck(lambda s: nkd_loss(s, zt, soft, 1.0, 3.5), (zs, ))
    nkd_loss(zs, zt, y).backward()
    assert zt.grad is None and zs.grad is not None


def test_nkd_gradient_closed_form(gen):
    """d/dz_s: L_t gives -q_t (onehot_t - p); L_nt gives gamma*tau*(p^ - q^) on non-targets."""
    tau, gamma = 2.0, 1.5
    zs = torch.randn(2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    zt = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    y = [1, 3]
    nkd_loss(zs, zt, torch.tensor(y), tau, gamma, reduction='sum').backward()
    for n in range(2):
        p, q = _softmax(zs[n].tolist()), _softmax(zt[n].tolist())
        others = [i for i in range(4) if i != y[n]]
        ph = _softmax([zs[n, i].item() / tau for i in others])
        qh = _softmax([zt[n, i].item() / tau for i in others])
        for j in range(4):
            g = -q[y[n]] * ((j == y[n]) - p[j])
            if j != y[n]:
                k = others.index(j)
                g += gamma * tau * (ph[k] - qh[k])
            assert abs(zs.grad[n, j].item() - g) < 1e-10


@pytest.mark.parametrize('kwargs,match', [
    (dict(zt_shape=(3, 6)), 'same shape'),
    (dict(target=torch.tensor([0, 1])), '2 samples'),
    (dict(target=torch.tensor([0, 1, 5])), r'\[0, 4\]'),
    (dict(target=torch.tensor([0., 1., 2.])), 'integer class indices'),
    (dict(target=torch.zeros(3, 4)), 'class indices'),
])
def test_nkd_errors(kwargs, match):
    zs = torch.randn(3, 5)
    zt = torch.randn(*kwargs.get('zt_shape', (3, 5)))
    target = kwargs.get('target', torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=match):
        nkd_loss(zs, zt, target)


def test_nkd_bad_args():
    with pytest.raises(ValueError, match='at least 2 classes'):
        nkd_loss(torch.randn(2, 1), torch.randn(2, 1), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r'\(N, C\) tensor'):
        nkd_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match='reduction'):
        NKDLoss(reduction='avg')
    with pytest.raises(ValueError, match='tau must be positive'):
        NKDLoss(tau=0)


# ----------------------------------------------------------------- tf-NKD
def test_tf_nkd_matches_loops_hard(gen):
    zs = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(5, (6, ), generator=gen)
    ref = ref_tf_nkd(zs.tolist(), y.tolist())[0]
    got = tf_nkd_loss(zs, y, reduction='none')
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(TfNKDLoss(loss_weight=2.0)(zs, y), 2 * got.mean())


def test_tf_nkd_matches_loops_soft(gen):
    zs = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    soft = _soft_labels(6, 5, gen)
    soft[0] = torch.eye(5, dtype=torch.float64)[2]  # an un-mixed sample: second value is 0
    ref = ref_tf_nkd(zs.tolist(), soft.tolist())[0]
    got = tf_nkd_loss(zs, soft, reduction='none')
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize('batch_mean', ['all', 'labelled'])
def test_tf_nkd_batch_mean_options_match_loops(gen, batch_mean):
    zs = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    soft = _soft_labels(7, 5, gen)
    soft[1] = torch.eye(5, dtype=torch.float64)[4]  # un-mixed: its second label value is 0
    soft[4] = torch.eye(5, dtype=torch.float64)[0]
    ref = ref_tf_nkd(zs.tolist(), soft.tolist(), batch_mean)[0]
    got = tf_nkd_loss(zs, soft, reduction='none', batch_mean=batch_mean)
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), atol=1e-10)
    module = TfNKDLoss(batch_mean=batch_mean)
    assert torch.allclose(module(zs, soft), got.mean())
    assert f"batch_mean='{batch_mean}'" in repr(module)


def _official_style_tf_nkd(logits, soft):
    """tf-NKD written the way the official code computes it: sort the soft labels, and for each of
    the top-2 entries w = y_t + v - mean(y_t over the WHOLE batch), w = 0 where v = 0, loss
    -= mean(w log y_t)."""
    value, label = torch.sort(soft, descending=True, dim=-1, stable=True)
    y = torch.softmax(logits, dim=1)
    total = 0.
    for i in range(2):
        y_t = y.gather(1, label[:, i:i + 1])
        w = y_t + value[:, i:i + 1] - y_t.mean()
        w[value[:, i:i + 1] == 0] = 0
        total = total - (w.detach() * torch.log(y_t)).mean()
    return total


def test_tf_nkd_default_is_official_all_sample_mean(gen):
    """The default batch mean runs over ALL samples (the official code), zeros included; the
    former behaviour (mean over labelled samples) is the named option 'labelled' and differs."""
    zs = torch.randn(6, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    soft = _soft_labels(6, 8, gen)
    soft[0] = torch.eye(8, dtype=torch.float64)[3]
    soft[2] = torch.eye(8, dtype=torch.float64)[7]
    official = _official_style_tf_nkd(zs, soft)
    default = tf_nkd_loss(zs, soft)
    assert torch.allclose(default, official, atol=1e-12)
    g_official = torch.autograd.grad(official, zs)[0]
    g_default = torch.autograd.grad(tf_nkd_loss(zs, soft), zs)[0]
    assert torch.allclose(g_default, g_official, atol=1e-12)
    labelled = tf_nkd_loss(zs, soft, batch_mean='labelled')
    assert not torch.allclose(default, labelled)
    # hard labels: both options are the plain batch mean
    y = torch.randint(8, (6, ), generator=gen)
    assert torch.allclose(tf_nkd_loss(zs, y), tf_nkd_loss(zs, y, batch_mean='labelled'))
    # the head-loss wrapper passes the option on
    wrapped = TaskLossWithTfNKD(task_loss=_RecordingCE(), batch_mean='labelled')
    assert wrapped.tf_nkd.batch_mean == 'labelled'
    assert TaskLossWithTfNKD(task_loss=_RecordingCE()).tf_nkd.batch_mean == 'all'
    with pytest.raises(ValueError, match='batch_mean'):
        tf_nkd_loss(zs, soft, batch_mean='valid')
    with pytest.raises(ValueError, match='batch_mean'):
        TfNKDLoss(batch_mean='mean')


def test_tf_nkd_onehot_soft_differs_from_hard_only_by_batch_mean(gen):
    """One-hot soft labels: the k=1 term is zero (v=0), the k=0 term equals the hard-label loss."""
    zs = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 5, 2, 2])
    onehot = torch.eye(6, dtype=torch.float64)[y]
    assert torch.allclose(tf_nkd_loss(zs, onehot), tf_nkd_loss(zs, y))


@pytest.mark.parametrize('soft', [False, True])
def test_tf_nkd_gradient_treats_weights_as_constants(gen, soft):
    """Autograd grad equals -(1/N) sum_k w_k (onehot(t_k) - y) with w from the loop reference."""
    n, c = 4, 5
    zs = torch.randn(n, c, generator=gen, dtype=torch.float64, requires_grad=True)
    target = _soft_labels(n, c, gen) if soft else torch.randint(c, (n, ), generator=gen)
    tf_nkd_loss(zs, target).backward()
    _, ys, idx, val, means = ref_tf_nkd(zs.tolist(), target.tolist())
    for m in range(n):
        for j in range(c):
            g = 0.0
            for k in range(len(idx[m])):
                t = idx[m][k]
                w = 0.0 if val[m][k] == 0 else ys[m][t] + val[m][k] - means[k]
                g += -w * ((j == t) - ys[m][j]) / n
            assert abs(zs.grad[m, j].item() - g) < 1e-10


def test_tf_nkd_gradcheck_with_frozen_weights(gen):
    """gradcheck of the function whose soft targets are frozen at the evaluation point."""
    zs = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 1, 3])
    with torch.no_grad():
        p = torch.softmax(zs, 1)[torch.arange(3), y]
        w = p + 1 - p.mean()

    def frozen(z):
        return -(w * torch.log_softmax(z, 1)[torch.arange(3), y]).mean()

    assert torch.autograd.gradcheck(frozen, (zs, ))
    g1 = torch.autograd.grad(tf_nkd_loss(zs, y), zs)[0]
    g2 = torch.autograd.grad(frozen(zs), zs)[0]
    assert torch.allclose(g1, g2)


def test_tf_nkd_errors():
    with pytest.raises(ValueError, match='class indices'):
        tf_nkd_loss(torch.randn(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match='3 samples'):
        tf_nkd_loss(torch.randn(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match='at least 2 classes'):
        tf_nkd_loss(torch.randn(2, 1), torch.ones(2, 1))


# ----------------------------------------------------------------- head loss wrapper
class _RecordingCE(nn.Module):
    """A stand-in task loss with the mmpretrain call signature."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, cls_score, label, avg_factor=None, **kwargs):
        self.calls.append(dict(avg_factor=avg_factor, **kwargs))
        return nn.functional.cross_entropy(cls_score, label)


def test_task_loss_with_tf_nkd_module(gen):
    zs = torch.randn(4, 5, generator=gen)
    y = torch.tensor([0, 1, 2, 3])
    task = _RecordingCE()
    loss = TaskLossWithTfNKD(task_loss=task, tf_nkd_weight=0.5)
    out = loss(zs, y, avg_factor=4, weight=None)
    expected = nn.functional.cross_entropy(zs, y) + 0.5 * tf_nkd_loss(zs, y)
    assert torch.allclose(out, expected)
    assert task.calls == [dict(avg_factor=4, weight=None)]
    assert set(loss.last_losses) == {'task', 'tf_nkd'}
    with pytest.raises(TypeError, match='task_loss'):
        TaskLossWithTfNKD(task_loss='CrossEntropyLoss')


def test_task_loss_with_tf_nkd_mmpretrain_ce(gen):
    pytest.importorskip('mmpretrain')
    zs = torch.randn(4, 5, generator=gen, requires_grad=True)
    soft = _soft_labels(4, 5, gen).float()
    loss = TaskLossWithTfNKD(task_loss=dict(type='CrossEntropyLoss', use_soft=True))
    out = loss(zs, soft, avg_factor=4)
    ce = -(soft * torch.log_softmax(zs, 1)).sum(1).mean()
    assert torch.allclose(out, ce + tf_nkd_loss(zs, soft), atol=1e-6)
    out.backward()
    assert zs.grad is not None
