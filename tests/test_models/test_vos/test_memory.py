"""SWEM memory: EM steps vs. direct loop re-computation, read-out, fixed vs. growing size, gradients."""
import math

import pytest
import torch

from mmkd_plugins.models.vos.memory import (GrowingMemory, SWEMMemory, em_e_step, em_m_step, em_masks,
                                            em_w_step, init_bases, memory_readout,
                                            permutation_invariant_feature, weighted_em)
from tests.test_models.test_vos.vos_helpers import single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()


def _unit(v):
    return v / (v.norm() + 1e-6)


def _direct_em(x, v, m, prior, T, tau):
    """Loop-by-loop SWEM update of one slot (x: (Ck, n), v: (Cv, n), m: (2, n))."""
    kp, nup, zp = prior['kappa'][0], prior['nu'][0], prior['zeta'][0]  # (2, Ck, L), (2, Cv, L), (2, L)
    _, ck, L = kp.shape
    n = x.shape[1]
    w = m.clone()
    kappa = kp.clone()
    for t in range(T):
        z = torch.zeros(2, n, L, dtype=x.dtype)
        for c in range(2):
            for p in range(n):
                a = torch.stack([x[:, p] @ _unit(kappa[c, :, k]) for k in range(L)])
                e = torch.exp((a - a.max()) / tau)
                z[c, p] = e / e.sum() * w[c, p]
        zeta = zp + z.sum(1)
        new = torch.zeros_like(kappa)
        for c in range(2):
            for k in range(L):
                acc = zp[c, k] * kp[c, :, k]
                for p in range(n):
                    acc = acc + z[c, p, k] * x[:, p]
                new[c, :, k] = acc / zeta[c, k]
        kappa = new
        if t < T - 1:
            for p in range(n):
                xh = _unit(x[:, p])
                a = torch.tensor([[xh @ _unit(kappa[c, :, k]) for k in range(L)] for c in range(2)])
                s = torch.exp((a - a.max()) / tau).sum(1)
                for c in range(2):
                    w[c, p] = m[c, p] * (1 - s[c] / s.sum())
    nu = torch.zeros_like(nup)
    for c in range(2):
        for k in range(L):
            acc = zp[c, k] * nup[c, :, k]
            for p in range(n):
                acc = acc + z[c, p, k] * v[:, p]
            nu[c, :, k] = acc / zeta[c, k]
    return kappa, nu, zeta


def test_em_masks_formula():
    hard = torch.tensor([[[[1., 0.], [1., 0.]]]])
    soft = torch.tensor([[[[0.8, 0.3], [0.4, 0.1]]]])
    m = em_masks(hard, soft)
    assert m.shape == (1, 2, 4)
    torch.testing.assert_close(m[0, 1], torch.tensor([0.8, 0.0, 0.4, 0.0]))
    torch.testing.assert_close(m[0, 0], torch.tensor([0.0, 0.7, 0.0, 0.9]))
    with pytest.raises(ValueError, match='same shape'):
        em_masks(hard, soft[..., :1])


def test_init_bases_statistics():
    g = torch.Generator().manual_seed(0)
    b = init_bases(3, 16, 8, 32, generator=g)
    assert b['kappa'].shape == (3, 2, 16, 32) and b['nu'].shape == (3, 2, 8, 32)
    torch.testing.assert_close(b['kappa'].norm(dim=2), torch.ones(3, 2, 32), atol=1e-5, rtol=0)
    assert torch.all(b['nu'] == 0) and torch.allclose(b['zeta'], torch.full((3, 2, 32), 1e-6))


@pytest.mark.parametrize('T', [1, 3])
def test_weighted_em_matches_direct_loops(T):
    torch.manual_seed(0)
    ck, cv, n, L, tau = 4, 3, 6, 3, 0.5
    x = torch.randn(1, ck, n, dtype=torch.float64)
    v = torch.randn(1, cv, n, dtype=torch.float64)
    m = em_masks((torch.rand(1, 1, 2, 3) > 0.5).double(), torch.rand(1, 1, 2, 3, dtype=torch.float64))
    prior = init_bases(1, ck, cv, L, dtype=torch.float64)
    prior['nu'] = torch.randn_like(prior['nu'])
    prior['zeta'] = torch.rand_like(prior['zeta']) + 0.5
    out = weighted_em(x, v, m, prior, num_iters=T, tau=tau)
    kappa, nu, zeta = _direct_em(x[0], v[0], m[0], prior, T, tau)
    torch.testing.assert_close(out['kappa'][0], kappa)
    torch.testing.assert_close(out['nu'][0], nu)
    torch.testing.assert_close(out['zeta'][0], zeta)


def test_em_steps_properties():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 7)
    kappa = torch.randn(2, 2, 5, 4)
    w = torch.rand(2, 2, 7)
    z = em_e_step(x, kappa, w, 0.1)
    torch.testing.assert_close(z.sum(-1), w)  # soft assignment over bases, weighted
    kp, zp = torch.randn(2, 2, 5, 4), torch.rand(2, 2, 4)
    k_new, zeta = em_m_step(x, torch.zeros_like(z), kp, zp)  # no evidence: the prior is kept
    torch.testing.assert_close(k_new, kp)
    torch.testing.assert_close(zeta, zp)
    m = torch.rand(2, 2, 7)
    w2 = em_w_step(x, kappa, m, 0.1)
    assert torch.all(w2 <= m + 1e-7) and torch.all(w2 >= 0)
    # the two class probabilities sum to one: (m_bg - w_bg)/m_bg + (m_fg - w_fg)/m_fg == 1
    torch.testing.assert_close((1 - w2[:, 0] / m[:, 0]) + (1 - w2[:, 1] / m[:, 1]), torch.ones(2, 7))


def test_weighted_em_errors():
    prior = init_bases(1, 4, 3, 2)
    with pytest.raises(ValueError, match='num_iters'):
        weighted_em(torch.randn(1, 4, 5), torch.randn(1, 3, 5), torch.rand(1, 2, 5), prior, 0)
    with pytest.raises(ValueError, match='keys'):
        weighted_em(torch.randn(1, 5, 5), torch.randn(1, 3, 5), torch.rand(1, 2, 5), prior)
    with pytest.raises(ValueError, match='masks'):
        weighted_em(torch.randn(1, 4, 5), torch.randn(1, 3, 5), torch.rand(1, 2, 4), prior)


def test_m_step_gradcheck():
    torch.manual_seed(2)
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    z = torch.rand(1, 2, 4, 2, dtype=torch.float64, requires_grad=True)
    kp = torch.randn(1, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    zp = (torch.rand(1, 2, 2, dtype=torch.float64) + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(em_m_step, (x, z, kp, zp))


def _em_grad_setup():
    torch.manual_seed(2)
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    m = torch.rand(1, 2, 4, dtype=torch.float64)
    prior = init_bases(1, 3, 2, 2, dtype=torch.float64)
    prior['zeta'] = prior['zeta'] + 0.3
    prior['nu'] = torch.randn_like(prior['nu']).requires_grad_()
    return x, v, m, prior


def test_weighted_em_gradient_reaches_values_only_by_default():
    """Official code: E, M and W steps run under no_grad, so kappa / zeta are constants and the
    gradient reaches only the values (and the prior values) through nu = (zeta' nu' + sum z v) / zeta."""
    x, v, m, prior = _em_grad_setup()
    for T in (1, 3):
        out = weighted_em(x, v, m, prior, num_iters=T, tau=0.5)
        assert not out['kappa'].requires_grad and not out['zeta'].requires_grad
        assert out['nu'].requires_grad
        gx, gv, gnu = torch.autograd.grad(out['nu'].pow(2).sum(), (x, v, prior['nu']),
                                          allow_unused=True)
        assert gx is None  # no path from the keys to the values
        with torch.no_grad():  # direct: every z, zeta fixed
            ref = weighted_em(x, v, m, prior, num_iters=T, tau=0.5)
        z = em_e_step(x.detach(), prior['kappa'], m, 0.5) if T == 1 else None

        def direct(v, nu_p):
            zz = z
            if zz is None:  # recompute the last z as the loop does, all without grad
                with torch.no_grad():
                    w, kap = m, prior['kappa']
                    for t in range(T):
                        zz = em_e_step(x, kap, w, 0.5)
                        kap, _ = em_m_step(x, zz, prior['kappa'], prior['zeta'])
                        if t < T - 1:
                            w = em_w_step(x, kap, m, 0.5)
            nu = (prior['zeta'].unsqueeze(2) * nu_p
                  + torch.einsum('nvp,ncpl->ncvl', v, zz)) / ref['zeta'].unsqueeze(2)
            return nu.pow(2).sum()
        gv2, gnu2 = torch.autograd.grad(direct(v, prior['nu']), (v, prior['nu']))
        torch.testing.assert_close(gv, gv2)
        torch.testing.assert_close(gnu, gnu2)
        torch.testing.assert_close(out['nu'], ref['nu'])


def test_weighted_em_key_grad_option_flows_through_m_step():
    """key_grad=True (a named deviation): for T = 1 the gradient equals the one of the M-step and
    value formulas with the responsibilities z held fixed."""
    x, v, m, prior = _em_grad_setup()
    out = weighted_em(x, v, m, prior, num_iters=1, tau=0.5, key_grad=True)
    gx, gv = torch.autograd.grad(out['kappa'].sum() + out['nu'].pow(2).sum(), (x, v))
    z = em_e_step(x.detach(), prior['kappa'], m, 0.5)

    def direct(x, v):
        kappa, zeta = em_m_step(x, z, prior['kappa'], prior['zeta'])
        nu = (prior['zeta'].unsqueeze(2) * prior['nu']
              + torch.einsum('nvp,ncpl->ncvl', v, z)) / zeta.unsqueeze(2)
        return kappa.sum() + nu.pow(2).sum()
    gx2, gv2 = torch.autograd.grad(direct(x, v), (x, v))
    torch.testing.assert_close(gx, gx2)
    torch.testing.assert_close(gv, gv2)


def _direct_readout(q, k, v, cls, tau, top_l):
    n, ck, Q = q.shape
    M = k.shape[2]
    r = torch.zeros(n, v.shape[1], Q, dtype=q.dtype)
    S = torch.zeros(n, 2 * top_l, Q, dtype=q.dtype)
    for i in range(n):
        for p in range(Q):
            a = torch.stack([_unit(k[i, :, j]) @ _unit(q[i, :, p]) for j in range(M)])
            e = torch.exp((a - a.max()) / tau)
            r[i, :, p] = (v[i] * (e / e.sum())).sum(1)
            tops = []
            for c in range(2):
                vals = sorted([float(e[j]) for j in range(M) if cls[i, j] == c], reverse=True)
                vals = (vals + [0.0] * top_l)[:top_l]
                tops.append(torch.tensor(vals, dtype=q.dtype).cumsum(0))
            f = tops[0] / (tops[0] + tops[1])
            S[i, :, p] = torch.cat([f, 1 - f])
    return r, S


def test_memory_readout_matches_direct():
    torch.manual_seed(3)
    q = torch.randn(2, 4, 5, dtype=torch.float64)
    k = torch.randn(2, 4, 9, dtype=torch.float64)
    v = torch.randn(2, 3, 9, dtype=torch.float64)
    cls = torch.randint(0, 2, (2, 9))
    cls[:, 0], cls[:, 1] = 0, 1
    for top_l in (3, 12):  # 12 > items of a class: zero padding
        r, S = memory_readout(q, k, v, cls, tau=0.2, top_l=top_l)
        r2, S2 = _direct_readout(q, k, v, cls, 0.2, top_l)
        torch.testing.assert_close(r, r2)
        torch.testing.assert_close(S, S2)


def test_readout_invalid_items_are_ignored_and_permutation_invariant():
    torch.manual_seed(4)
    q, k, v = torch.randn(1, 4, 6), torch.randn(1, 4, 8), torch.randn(1, 3, 8)
    cls = torch.tensor([[0, 1, 0, 1, 0, 1, 0, 1]])
    valid = torch.tensor([[True] * 5 + [False] * 3])
    r, S = memory_readout(q, k, v, cls, 0.1, 4, valid)
    r2, S2 = memory_readout(q, k[..., :5], v[..., :5], cls[..., :5], 0.1, 4)
    torch.testing.assert_close(r, r2)
    torch.testing.assert_close(S, S2)
    perm = torch.randperm(8)
    r3, S3 = memory_readout(q, k[..., perm], v[..., perm], cls[:, perm], 0.1, 4)
    r4, S4 = memory_readout(q, k, v, cls, 0.1, 4)
    torch.testing.assert_close(r3, r4)
    torch.testing.assert_close(S3, S4)


def test_readout_gradcheck():
    torch.manual_seed(5)
    q = torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 3, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True)
    cls = torch.tensor([[0, 1, 0, 1, 1]])
    assert torch.autograd.gradcheck(lambda q, k, v: memory_readout(q, k, v, cls, 0.5, 2), (q, k, v))


def test_permutation_invariant_feature_bounds():
    e = torch.rand(2, 10, 3)
    e[:, 0] = 1.0
    S = permutation_invariant_feature(e, torch.randint(0, 2, (2, 10)), 4)
    assert S.shape == (2, 8, 3)
    assert torch.all(S >= 0) and torch.all(S <= 1)
    torch.testing.assert_close(S[:, :4] + S[:, 4:], torch.ones(2, 4, 3))


def _frame(n, ck, cv, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    hard = (torch.rand(n, 1, h, w, generator=g) > 0.5).float()
    return (torch.randn(n, ck, h, w, generator=g), torch.randn(n, cv, h, w, generator=g), hard,
            hard * 0.8 + 0.1)


def test_swem_memory_size_is_constant_and_banks_follow_the_spec():
    mem = SWEMMemory(key_dim=8, value_dim=6, num_bases=4, num_iters=2, tau=0.1, top_l=4)
    k, v, hard, soft = _frame(2, 8, 6)
    mem.add_objects(k, v, hard, soft)
    assert mem.num_slots == 2 and not mem.has_update.any()
    first = {n: t.clone() for n, t in mem.first.items()}
    r, S = mem.read(torch.randn(2, 8, 3, 3))
    assert r.shape == (2, 6, 3, 3) and S.shape == (2, 8, 3, 3)
    size = mem.state_numel()
    assert size == 2 * 2 * 2 * 4 * (8 + 6 + 1)  # banks x slots x classes x L x (Ck + Cv + 1)
    for t in range(1, 12):
        k, v, hard, soft = _frame(2, 8, 6, seed=t)
        prior = {n: (mem.update_bank if t > 1 else mem.first)[n].clone() for n in mem.first}
        mem.memorize(k, v, hard, soft)
        expected = weighted_em(k.flatten(2), v.flatten(2), em_masks(hard, soft), prior, 2, 0.1)
        for n in expected:  # 'update' = EM with the previous update (or 'first') as prior
            torch.testing.assert_close(mem.update_bank[n], expected[n])
            torch.testing.assert_close(mem.first[n], first[n])  # 'first' never changes
        assert mem.state_numel() == size
    assert mem.has_update.all()
    # the read-out uses both banks: 4 * L items
    mem2 = SWEMMemory(key_dim=8, value_dim=6, num_bases=4, top_l=16)
    mem2.first, mem2.update_bank, mem2.has_update = mem.first, mem.update_bank, mem.has_update
    q = torch.randn(2, 8, 2, 2)
    keys = torch.cat([b['kappa'].transpose(1, 2).flatten(2) for b in (mem.first, mem.update_bank)], 2)
    vals = torch.cat([b['nu'].transpose(1, 2).flatten(2) for b in (mem.first, mem.update_bank)], 2)
    cls = torch.tensor([0] * 4 + [1] * 4 + [0] * 4 + [1] * 4).expand(2, -1)
    r, S = mem2.read(q)
    r2, S2 = memory_readout(q.flatten(2), keys, vals, cls, 0.05, 16)
    torch.testing.assert_close(r.flatten(2), r2)
    torch.testing.assert_close(S.flatten(2), S2)
    mem.reset()
    assert mem.num_slots == 0 and mem.state_numel() == 0


def test_swem_memory_new_objects_and_errors():
    mem = SWEMMemory(key_dim=8, value_dim=6, num_bases=4, top_l=4)
    with pytest.raises(RuntimeError, match='empty'):
        mem.read(torch.randn(1, 8, 2, 2))
    mem.add_objects(*_frame(1, 8, 6))
    mem.memorize(*_frame(1, 8, 6, seed=1))
    mem.add_objects(*_frame(2, 8, 6, seed=2))
    assert mem.num_slots == 3 and mem.has_update.tolist() == [True, False, False]
    r, _ = mem.read(torch.randn(3, 8, 4, 4))
    assert torch.isfinite(r).all()
    mem.memorize(*_frame(3, 8, 6, seed=3))
    assert mem.has_update.all()
    with pytest.raises(ValueError, match='slots'):
        mem.memorize(*_frame(2, 8, 6))
    with pytest.raises(ValueError, match='query'):
        mem.read(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match='channels'):
        SWEMMemory(key_dim=8, value_dim=6).add_objects(*_frame(1, 7, 6))
    with pytest.raises(ValueError, match='tau'):
        SWEMMemory(tau=0)


def test_growing_memory_grows_every_kth_frame():
    mem = GrowingMemory(mem_every=3, include_last=True, top_l=4)
    mem.add_objects(*_frame(2, 8, 6))
    hw = 16
    sizes = []
    for t in range(1, 10):
        mem.memorize(*_frame(2, 8, 6, seed=t))
        sizes.append(mem.keys.shape[2])
        r, S = mem.read(torch.randn(2, 8, 4, 4))
        assert r.shape == (2, 6, 4, 4) and S.shape == (2, 8, 4, 4)
    assert sizes == [hw * (1 + t // 3) for t in range(1, 10)]
    # new slot after some frames: old items are invalid for it, its first frame is invalid for others
    mem.add_objects(*_frame(1, 8, 6, seed=20))
    assert mem.num_slots == 3
    assert not mem.item_valid[2, :-hw].any() and mem.item_valid[2, -hw:].all()
    assert not mem.item_valid[:2, -hw:].any()
    r, _ = mem.read(torch.randn(3, 8, 4, 4))
    assert torch.isfinite(r).all()
    # read-out equals the functional read-out over the stored items
    q = torch.randn(3, 8, 4, 4)
    mem.last = None
    r, S = mem.read(q)
    r2, S2 = memory_readout(q.flatten(2), mem.keys, mem.values, mem.item_class, mem.tau, 4,
                            mem.item_valid)
    torch.testing.assert_close(r.flatten(2), r2)
    with pytest.raises(ValueError, match='mem_every'):
        GrowingMemory(mem_every=0)


def test_swem_flat_vs_growing_state():
    swem = SWEMMemory(key_dim=8, value_dim=6, num_bases=4, top_l=4)
    grow = GrowingMemory(mem_every=1, include_last=False, top_l=4)
    for mem in (swem, grow):
        mem.add_objects(*_frame(1, 8, 6))
    s0, g0 = swem.state_numel(), grow.state_numel()
    for t in range(1, 20):
        for mem in (swem, grow):
            mem.memorize(*_frame(1, 8, 6, seed=t))
    assert swem.state_numel() == s0
    assert grow.state_numel() == 20 * g0
    assert math.isclose(grow.state_nbytes() / grow.state_numel(), 4, rel_tol=0.7)
