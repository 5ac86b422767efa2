"""BCT, RACT, UniBCT and BiCT losses against direct re-computations of the formulas."""
import math
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmkd_plugins.models.compatible import (BiCTTransformation, ClassMeanBank, fit_bict_transformation,
                                            knn_affinity, load_transformation, refine_prototypes,
                                            save_transformation)
from mmkd_plugins.models.losses.compatible import (BCTLoss, BiCTTransformLoss, RACTLoss, UniBCTLoss,
                                                   bct_influence_loss, bict_transform_loss, match_dim,
                                                   ract_loss, unibct_loss)


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    # tiny tensors: extra threads only contend with the other jobs on a busy CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _norm(v):
    return v / np.linalg.norm(v)


def _ce(logits, y):
    m = max(logits)
    return -(logits[y] - m - math.log(sum(math.exp(v - m) for v in logits)))


# ---------------------------------------------------------------------------------------------- BCT
def test_match_dim():
    x = torch.arange(6.).reshape(2, 3)
    assert torch.equal(match_dim(x, 2), x[:, :2])
    assert torch.equal(match_dim(x, 5), torch.cat([x, torch.zeros(2, 2)], 1))
    assert match_dim(x, 3) is x


def test_bct_influence_loss_matches_direct():
    g = torch.Generator().manual_seed(0)
    new, w, b = torch.randn(5, 6, generator=g), torch.randn(4, 4, generator=g), torch.randn(4, generator=g)
    y = torch.tensor([0, 3, 1, 1, 2])
    got = bct_influence_loss(new, y, w, b)
    ref = np.mean([_ce([float(new[i, :4] @ w[c] + b[c]) for c in range(4)], int(y[i])) for i in range(5)])
    assert got.item() == pytest.approx(ref, rel=1e-5)
    # zero-padding when the new embedding is narrower
    got = bct_influence_loss(new[:, :3], y, w)
    ref = np.mean([_ce([float(new[i, :3] @ w[c, :3]) for c in range(4)], int(y[i])) for i in range(5)])
    assert got.item() == pytest.approx(ref, rel=1e-5)
    # valid mask averages over the valid samples only
    valid = torch.tensor([True, False, True, False, True])
    per = bct_influence_loss(new, y, w, b, reduction='none')
    assert bct_influence_loss(new, y, w, b, valid).item() == pytest.approx(per[valid].mean().item(), rel=1e-6)


def test_bct_gradcheck():
    g = torch.Generator().manual_seed(1)
    new = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 2, 1])
    assert torch.autograd.gradcheck(lambda n: bct_influence_loss(n, y, w), (new, ))


def test_bct_loss_synthesises_new_class_rows():
    g = torch.Generator().manual_seed(2)
    fc = nn.Linear(4, 3)   # old classifier knows classes 0..2
    fc.requires_grad_(False)
    loss = BCTLoss(num_classes=5, loss_weight=0.5)
    loss.bind_old_classifier(fc)
    new = torch.randn(6, 4, generator=g, requires_grad=True)
    old = torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 3, 4, 3, 1, 2])
    got = loss(new=new, old=old, labels=y)
    rows = [fc.weight[c].numpy() for c in range(3)] + [old[y == c].mean(0).numpy() for c in (3, 4)]
    bias = list(fc.bias.numpy()) + [0.0, 0.0]
    ref = 0.5 * np.mean([_ce([float(new[i].detach().numpy() @ rows[c] + bias[c]) for c in range(5)],
                             int(y[i])) for i in range(6)])
    assert got.item() == pytest.approx(ref, rel=1e-5)
    got.backward()
    assert new.grad.abs().sum() > 0 and fc.weight.grad is None
    # the old classifier is not part of the loss's state
    assert not any('weight' in k for k in loss.state_dict())
    # soft labels are reduced to their argmax
    soft = torch.nn.functional.one_hot(y, 5).float()
    assert BCTLoss(num_classes=5, synthesize_new_classes=False)(new, soft, old_weight=fc.weight,
                                                                 old_bias=fc.bias).item() > 0


def test_bct_loss_skip_or_error_for_new_classes():
    fc = nn.Linear(4, 3)
    new, y = torch.randn(3, 4), torch.tensor([0, 5, 1])
    skip = BCTLoss(synthesize_new_classes=False)(new, y, old_weight=fc.weight, old_bias=fc.bias)
    ref = bct_influence_loss(new[[0, 2]], y[[0, 2]], fc.weight, fc.bias)
    assert skip.item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match='not an old class'):
        BCTLoss()(new, y, old_weight=fc.weight)
    with pytest.raises(ValueError, match='pass `old`'):
        BCTLoss(num_classes=6)(new, y, old_weight=fc.weight)
    with pytest.raises(ValueError, match='no old classifier'):
        BCTLoss()(new, y)
    with pytest.raises(ValueError, match='old has 3 rows but the batch has 2'):
        BCTLoss(num_classes=6)(new[:2], y[:2], old=torch.randn(3, 4), old_weight=fc.weight)
    with pytest.raises(ValueError, match='labels have 2 entries but new has 3 rows'):
        bct_influence_loss(new, y[:2], fc.weight)


# --------------------------------------------------------------------------------------------- RACT
def _ract_direct(new, old, y, tau, topk=None, new_new=True, bnew=None, bold=None, by=None):
    new, old = new.detach().numpy(), old.detach().numpy()
    bnew = new if bnew is None else bnew.detach().numpy()
    bold = old if bold is None else bold.detach().numpy()
    by = y if by is None else by
    d = old.shape[1]
    out = []
    for i in range(new.shape[0]):
        n = _norm(np.pad(new[i], (0, max(0, d - new.shape[1])))[:d])
        pos = n @ _norm(old[i]) / tau
        negs = []
        for j in range(bold.shape[0]):
            if int(by[j]) != int(y[i]):
                negs.append(n @ _norm(bold[j]) / tau)
                if new_new:
                    negs.append(n @ _norm(np.pad(bnew[j], (0, max(0, d - bnew.shape[1])))[:d]) / tau)
        if topk is not None:
            negs = sorted(negs, reverse=True)[:topk]
        allv = np.array([pos] + negs)
        m = allv.max()
        out.append(-(pos - m - math.log(np.exp(allv - m).sum())))
    return float(np.mean(out))


@pytest.mark.parametrize('topk,new_new', [(None, True), (None, False), (3, True)])
def test_ract_loss_matches_direct(topk, new_new):
    g = torch.Generator().manual_seed(3)
    new, old = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    y = torch.tensor([0, 1, 0, 2, 2, 1, 3])
    got = ract_loss(new, old, y, tau=0.5, topk=topk, new_new=new_new)
    assert got.item() == pytest.approx(_ract_direct(new, old, y, 0.5, topk, new_new), rel=1e-5)
    # a larger bank of candidate negatives
    bn, bo, by = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g), torch.tensor([1, 0, 3, 4])
    got = ract_loss(new, old, y, 0.5, topk, new_new, bank_new=bn, bank_old=bo, bank_labels=by)
    assert got.item() == pytest.approx(_ract_direct(new, old, y, 0.5, topk, new_new, bn, bo, by), rel=1e-5)


def test_ract_same_label_only_and_grad():
    # every sample shares the label: no negatives, the loss is exactly 0
    new = torch.randn(3, 4, requires_grad=True)
    assert ract_loss(new, torch.randn(3, 4), torch.zeros(3, dtype=torch.long)).item() == pytest.approx(0)
    g = torch.Generator().manual_seed(4)
    new = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    old = torch.randn(4, 3, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 1, 1, 2])
    assert torch.autograd.gradcheck(lambda n: ract_loss(n, old, y, tau=0.3, topk=2), (new, ))
    # old is detached
    old.requires_grad_(True)
    ract_loss(new, old, y).backward()
    assert old.grad is None


def test_ract_module_single_process_and_errors():
    new, old, y = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    mod = RACTLoss(tau=0.1, topk=4, loss_weight=2.0)
    assert mod(new, old, y).item() == pytest.approx(2 * ract_loss(new, old, y, 0.1, 4).item(), rel=1e-6)
    with pytest.raises(ValueError, match='tau must be > 0'):
        ract_loss(new, old, y, tau=0)
    with pytest.raises(ValueError, match='old has 5 rows but the batch has 6'):
        ract_loss(new, old[:5], y)


def _ddp_worker(rank, world, init_file, new, old, y, out):
    import torch.distributed as tdist
    tdist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    sl = slice(0, 3) if rank == 0 else slice(3, 5)   # unequal shards
    n = new[sl].clone().requires_grad_(True)
    loss = RACTLoss(tau=0.2)(n, old[sl], y[sl])
    loss.backward()
    torch.save(dict(loss=loss.detach(), grad=n.grad), f'{out}.{rank}')
    tdist.destroy_process_group()


def test_ract_gathers_across_ranks():
    g = torch.Generator().manual_seed(5)
    new, old = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 1, 2, 1, 3])
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'res')
        torch.multiprocessing.start_processes(_ddp_worker, nprocs=2, join=True, start_method='fork',
                                              args=(2, os.path.join(tmp, 'init'), new, old, y, out))
        res = [torch.load(f'{out}.{r}') for r in range(2)]
    for rank, sl in ((0, slice(0, 3)), (1, slice(3, 5))):
        ref_new = new.clone().requires_grad_(True)
        # bank = full batch; gradient only through this rank's own slice
        bank = torch.cat([ref_new[sl] if s == sl else new[s] for s in (slice(0, 3), slice(3, 5))])
        ref = ract_loss(ref_new[sl], old[sl], y[sl], 0.2, bank_new=bank, bank_old=old, bank_labels=y)
        ref.backward()
        assert res[rank]['loss'].item() == pytest.approx(ref.item(), rel=1e-5)
        assert torch.allclose(res[rank]['grad'], ref_new.grad[sl], atol=1e-6)
        # and it differs from the rank-local loss: the other rank's negatives count
        assert abs(ract_loss(new[sl], old[sl], y[sl], 0.2).item() - ref.item()) > 1e-4


# ------------------------------------------------------------------------------------------- UniBCT
def _refine_direct(p, k, t, iters=1, alpha=0.0, valid=None):
    p = np.stack([_norm(v) for v in p.numpy().astype(np.float64)])
    c = p.shape[0]
    valid = np.ones(c, bool) if valid is None else valid.numpy()
    sim = p @ p.T
    a = np.zeros((c, c))
    kk = min(k, valid.sum())
    for i in range(c):
        if not valid[i]:
            continue
        cand = sorted([j for j in range(c) if valid[j]], key=lambda j: -sim[i, j])[:kk]
        e = np.array([math.exp(sim[i, j] / t) for j in cand])
        for j, w in zip(cand, e / e.sum()):
            a[i, j] = w
    for _ in range(iters):
        q = []
        for i in range(c):
            v = (alpha * p[i] + (1 - alpha) * (a[i] @ p)) if valid[i] else p[i]
            q.append(_norm(v))
        p = np.stack(q)
    return p


@pytest.mark.parametrize('k,iters,alpha', [(3, 1, 0.0), (2, 2, 0.3), (10, 1, 0.0)])
def test_refine_prototypes_matches_direct(k, iters, alpha):
    g = torch.Generator().manual_seed(6)
    p = torch.randn(6, 4, dtype=torch.float64, generator=g)
    got = refine_prototypes(p, k=k, temperature=0.2, num_iters=iters, alpha=alpha)
    assert np.allclose(got.numpy(), _refine_direct(p, k, 0.2, iters, alpha), atol=1e-10)
    valid = torch.tensor([True, True, False, True, True, False])
    got = refine_prototypes(p, k=k, temperature=0.2, num_iters=iters, alpha=alpha, valid=valid)
    assert np.allclose(got.numpy(), _refine_direct(p, k, 0.2, iters, alpha, valid), atol=1e-10)


def test_refinement_smooths_noisy_prototypes():
    # k=1: only itself -> unchanged; noisy copies of 2 centres move towards their centre
    g = torch.Generator().manual_seed(7)
    centres = torch.eye(4)[:2]
    p = torch.cat([centres[0] + 0.3 * torch.randn(3, 4, generator=g),
                   centres[1] + 0.3 * torch.randn(3, 4, generator=g)])
    assert torch.allclose(refine_prototypes(p, k=1), torch.nn.functional.normalize(p, dim=1), atol=1e-6)
    r = refine_prototypes(p, k=3, temperature=0.05)
    spread = lambda q: sum(float((q[3 * c:3 * c + 3] - q[3 * c:3 * c + 3].mean(0)).norm()) for c in (0, 1))
    assert spread(r) < spread(torch.nn.functional.normalize(p, dim=1))
    aff = knn_affinity(p, k=3)
    assert torch.allclose(aff.sum(1), torch.ones(6)) and int((aff > 0).sum(1).max()) == 3
    with pytest.raises(ValueError, match='temperature must be > 0'):
        knn_affinity(p, temperature=0)


def test_unibct_loss_matches_direct_and_grad():
    g = torch.Generator().manual_seed(8)
    new, protos = torch.randn(5, 6, generator=g), torch.randn(4, 4, generator=g)
    y = torch.tensor([0, 3, 1, 1, 2])
    valid = torch.tensor([True, True, True, False])
    for m, val in ((0.0, None), (0.2, None), (0.2, valid)):
        got = unibct_loss(new, protos, y, scale=8.0, margin=m, valid=val)
        vals = []
        for i in range(5):
            if val is not None and not val[int(y[i])]:
                continue
            n = _norm(new[i, :4].numpy())
            logits = [8.0 * (n @ _norm(protos[c].numpy()) - (m if c == int(y[i]) else 0.0))
                      for c in range(4) if val is None or val[c]]
            cls = [c for c in range(4) if val is None or val[c]]
            vals.append(_ce(logits, cls.index(int(y[i]))))
        assert got.item() == pytest.approx(np.mean(vals), rel=1e-5)
    new64 = new.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda n: unibct_loss(n, protos.double(), y, 4.0, 0.1, valid), (new64, ))


def test_unibct_module_online_prototypes():
    g = torch.Generator().manual_seed(9)
    new, old = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 4, 4])   # class 3 unseen
    mod = UniBCTLoss(num_classes=5, scale=10., refine=dict(k=2, temperature=0.1))
    got = mod(new, y, old)
    means = torch.stack([old[y == c].mean(0) if (y == c).any() else torch.zeros(4) for c in range(5)])
    valid = torch.tensor([True, True, True, False, True])
    ref = unibct_loss(new, refine_prototypes(means, k=2, temperature=0.1, valid=valid), y, 10., 0., valid)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    # refine=None: plain class means
    plain = UniBCTLoss(num_classes=5, scale=10., refine=None)(new, y, old)
    assert plain.item() == pytest.approx(unibct_loss(new, means, y, 10., 0., valid).item(), rel=1e-5)
    with pytest.raises(ValueError, match='pass the old embeddings'):
        mod(new, y)


def test_class_mean_bank_accumulates():
    bank = ClassMeanBank(3)
    a, b = torch.randn(4, 2), torch.randn(2, 2)
    bank.update(a, torch.tensor([0, 0, 1, 1]))
    bank.update(b, torch.tensor([0, 1]))
    means, valid = bank.means()
    assert torch.allclose(means[0], torch.stack([a[0], a[1], b[0]]).mean(0))
    assert valid.tolist() == [True, True, False]
    with pytest.raises(ValueError, match='label out of range'):
        bank.update(b, torch.tensor([0, 3]))


# --------------------------------------------------------------------------------------------- BiCT
def test_bict_transform_loss_and_fit(tmp_path):
    pred, tgt = torch.randn(4, 3), torch.randn(4, 3)
    assert bict_transform_loss(pred, tgt).item() == pytest.approx(((pred - tgt) ** 2).mean().item())
    cos = [float(_norm(pred[i].numpy()) @ _norm(tgt[i].numpy())) for i in range(4)]
    assert bict_transform_loss(pred, tgt, 'cosine').item() == pytest.approx(1 - np.mean(cos), rel=1e-5)
    assert BiCTTransformLoss(loss_weight=2.)(pred, tgt).item() == pytest.approx(
        2 * ((pred - tgt) ** 2).mean().item())
    with pytest.raises(ValueError, match='output dim 3 != new embedding dim 2'):
        bict_transform_loss(pred, tgt[:, :2])
    # psi recovers a fixed linear map old -> new much better than the untrained start
    g = torch.Generator().manual_seed(10)
    old = torch.randn(256, 6, generator=g)
    new = old @ torch.randn(6, 5, generator=g)
    psi = fit_bict_transformation(old, new, hidden_dim=32, epochs=60, batch_size=64, lr=5e-3)
    start = BiCTTransformation(6, 5, 32)
    with torch.no_grad():
        assert bict_transform_loss(psi(old), new) < 0.1 * bict_transform_loss(start(old), new)
    path = str(tmp_path / 'psi.pth')
    save_transformation(path, psi)
    with torch.no_grad():
        assert torch.allclose(load_transformation(path)(old), psi(old))
    with pytest.raises(ValueError, match=r'expects \(N, 6\)'):
        psi(torch.randn(2, 5))
