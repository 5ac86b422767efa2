"""Channel-wise distillation loss: direct re-computation of MGD's segmentation logit term."""
import math

import pytest
import torch

from mmkd_plugins.models.losses import ChannelWiseDivergenceLoss, channel_wise_divergence


def _direct(s, t, tau, weight):
    """Loop over images and channels: KL(softmax(t/tau) || softmax(s/tau)) over the H*W positions."""
    n, c = s.shape[:2]
    total = 0.0
    for i in range(n):
        for j in range(c):
            tv = [v / tau for v in t[i, j].flatten().tolist()]
            sv = [v / tau for v in s[i, j].flatten().tolist()]
            zt = math.log(sum(math.exp(v) for v in tv))
            zs = math.log(sum(math.exp(v) for v in sv))
            for a, b in zip(tv, sv):
                p = math.exp(a - zt)
                total += p * ((a - zt) - (b - zs))
    return weight * tau ** 2 * total / (c * n)


@pytest.mark.parametrize('tau,weight', [(4.0, 3.0), (1.0, 1.0), (2.5, 0.5)])
def test_cwd_matches_direct_recomputation(tau, weight):
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4, 5) * 3, torch.randn(2, 3, 4, 5) * 3
    expected = _direct(s, t, tau, weight)
    got = channel_wise_divergence(s, t, tau, weight)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert ChannelWiseDivergenceLoss(tau=tau, loss_weight=weight)(s, t).item() == pytest.approx(
        expected, rel=1e-5)


def test_cwd_zero_for_equal_logits_and_shift_invariant():
    torch.manual_seed(1)
    t = torch.randn(2, 4, 3, 3)
    assert channel_wise_divergence(t.clone(), t).abs().item() < 1e-6
    # a constant added to one channel of the student does not change its spatial softmax
    s = t.clone()
    s[:, 1] += 7.0
    assert channel_wise_divergence(s, t).abs().item() < 1e-5
    assert channel_wise_divergence(torch.randn(2, 4, 3, 3), t).item() > 0


def test_cwd_default_is_mgd_segmentation_term():
    """Defaults: tau 4, weight 3, i.e. 3 * sum(p_T (log p_T - log q_S)) * 16 / (C * N)."""
    torch.manual_seed(2)
    s, t = torch.randn(2, 19, 8, 8), torch.randn(2, 19, 8, 8)
    p_t = torch.softmax(t.reshape(-1, 64) / 4, dim=1)
    ref = 3 * (p_t * (torch.log_softmax(t.reshape(-1, 64) / 4, 1)
                      - torch.log_softmax(s.reshape(-1, 64) / 4, 1))).sum() * 16 / (19 * 2)
    assert torch.allclose(ChannelWiseDivergenceLoss()(s, t), ref, rtol=1e-5)


def test_cwd_gradient_and_teacher_detached():
    torch.manual_seed(3)
    s = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    tau, w = 2.0, 1.5
    channel_wise_divergence(s, t, tau, w).backward()
    # d/ds KL(p || softmax(s / tau)) = (q - p) / tau, per channel
    p = torch.softmax(t.detach().reshape(6, 12) / tau, 1)
    q = torch.softmax(s.detach().reshape(6, 12) / tau, 1)
    expected = (w * tau ** 2 / (3 * 2) * (q - p) / tau).reshape(2, 3, 3, 4)
    assert torch.allclose(s.grad, expected.float().double(), atol=1e-6)
    assert t.grad is None
    # numerical gradient check (the float32 computation, compared at a loose tolerance)
    s2 = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    t2 = torch.randn(1, 2, 2, 3, dtype=torch.float64)
    eps = 1e-3
    base = s2.detach().clone()
    for idx in [(0, 0, 0, 0), (0, 1, 1, 2)]:
        plus, minus = base.clone(), base.clone()
        plus[idx] += eps
        minus[idx] -= eps
        num = (channel_wise_divergence(plus, t2).item()
               - channel_wise_divergence(minus, t2).item()) / (2 * eps)
        s2.grad = None
        channel_wise_divergence(s2, t2).backward()
        assert s2.grad[idx].item() == pytest.approx(num, rel=1e-2, abs=1e-4)


def test_cwd_bad_input_is_clear():
    with pytest.raises(ValueError, match='differ'):
        channel_wise_divergence(torch.zeros(2, 19, 8, 8), torch.zeros(2, 19, 4, 4))
    with pytest.raises(ValueError, match='N, C, H, W'):
        channel_wise_divergence(torch.zeros(2, 19), torch.zeros(2, 19))
    with pytest.raises(ValueError, match='tau'):
        ChannelWiseDivergenceLoss(tau=0)
