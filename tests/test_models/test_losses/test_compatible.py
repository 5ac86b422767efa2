"""BCT, RACT, UniBCT and BiCT losses against direct re-computations of the formulas."""
import math
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmkd_plugins.models.compatible import (BiCTTransformation, ClassMeanBank, fit_bict_transformation,
                                            load_transformation, refine_class_samples, save_transformation,
                                            structural_prototypes)
from mmkd_plugins.models.losses.compatible import (BCTLoss, BiCTTransformLoss, RACTLoss, UniBCTLoss,
                                                   bct_influence_loss, bict_classifier_loss,
                                                   bict_transform_loss, match_dim, ract_loss, unibct_loss)
from tests.helpers import run_two_ranks


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
    torch.manual_seed(2)
    fc = nn.Linear(4, 3)   # old classifier knows classes 0..2
    fc.requires_grad_(False)
    loss = BCTLoss(num_classes=5, loss_weight=0.5)
    loss.bind_old_classifier(fc)
    new = torch.randn(6, 4, generator=g, requires_grad=True)
    old = torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 3, 4, 3, 1, 2])
    got = loss(new=new, old=old, labels=y)
    # openBCT: the synthesised row is the class mean of the L2-NORMALISED old features
    rows = [fc.weight[c].numpy() for c in range(3)] + [
        np.mean([_norm(old[i].numpy()) for i in range(6) if int(y[i]) == c], axis=0) for c in (3, 4)]
    bias = list(fc.bias.numpy()) + [0.0, 0.0]
    ref = 0.5 * np.mean([_ce([float(new[i].detach().numpy() @ rows[c] + bias[c]) for c in range(5)],
                             int(y[i])) for i in range(6)])
    assert got.item() == pytest.approx(ref, rel=1e-5)
    # the raw-mean variant is an option (and differs)
    raw = BCTLoss(num_classes=5, loss_weight=0.5, normalize_old_features=False)
    raw.bind_old_classifier(fc)
    rows_raw = rows[:3] + [old[y == c].mean(0).numpy() for c in (3, 4)]
    ref_raw = 0.5 * np.mean([_ce([float(new[i].detach().numpy() @ rows_raw[c] + bias[c]) for c in range(5)],
                                 int(y[i])) for i in range(6)])
    assert raw(new=new, old=old, labels=y).item() == pytest.approx(ref_raw, rel=1e-5)
    w_norm = BCTLoss(num_classes=5).full_old_weight(fc.weight, fc.bias, old, y)[0]
    assert torch.allclose(w_norm[3:], torch.from_numpy(np.stack(rows[3:])).float(), atol=1e-6)
    assert not torch.allclose(w_norm[3:], torch.from_numpy(np.stack(rows_raw[3:])).float(), atol=1e-2)
    got.backward()
    assert new.grad.abs().sum() > 0 and fc.weight.grad is None
    # the old classifier is not part of the loss's state
    assert not any('weight' in k for k in loss.state_dict())
    # soft labels are reduced to their argmax
    soft = torch.nn.functional.one_hot(y, 5).float()
    assert BCTLoss(num_classes=5, synthesize_new_classes=False)(new, soft, old_weight=fc.weight,
                                                                 old_bias=fc.bias).item() > 0


def test_bct_loss_rows_from_a_synthesized_file(tmp_path):
    """openBCT's separate pseudo-classifier pass: fixed rows = class means of the normalised old embeddings
    of the new training set, read once from an embedding file (no online update)."""
    from mmkd_plugins.models.compatible import save_embeddings
    g = torch.Generator().manual_seed(16)
    emb, lab = torch.randn(12, 4, generator=g), torch.arange(12) % 5
    path = str(tmp_path / 'train_old.pth')
    save_embeddings(path, emb, lab)
    fc = nn.Linear(4, 3)
    loss = BCTLoss(num_classes=5, synthesized_file=path)
    new, old, y = torch.randn(4, 4, generator=g), torch.randn(4, 4, generator=g), torch.tensor([0, 3, 4, 1])
    w, b, valid = loss.full_old_weight(fc.weight, fc.bias, old, y)
    on = torch.nn.functional.normalize(emb, dim=1)
    assert torch.allclose(w[3:], torch.stack([on[lab == c].mean(0) for c in (3, 4)]), atol=1e-6)
    assert valid.all()
    w2, _, _ = loss.full_old_weight(fc.weight, fc.bias, 10 * old, y)   # batches do not move the rows
    assert torch.equal(w, w2)
    with pytest.raises(ValueError, match='has 4-d embeddings but the old classifier expects 3'):
        loss.full_old_weight(fc.weight[:, :3], fc.bias, old[:, :3], y)


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


def _bct_ddp_worker(rank, new, old, y, fc_w, fc_b, out):
    sl = slice(0, 3) if rank == 0 else slice(3, 6)   # rank 0: old classes only; rank 1: new classes too
    loss_mod = BCTLoss(num_classes=5)
    losses = []
    for _ in range(2):   # two steps: every call enters the same collectives on both ranks
        losses.append(loss_mod(new[sl], y[sl], old[sl], old_weight=fc_w, old_bias=fc_b))
    means, seen = loss_mod.bank.means()
    torch.save(dict(losses=torch.stack(losses), means=means, seen=seen), f'{out}.{rank}')


def test_bct_loss_ddp_rank_without_new_classes_does_not_hang(tmp_path):
    """Rank 0's batch has only old classes, rank 1's has new ones: both must enter the all_reduce of the
    synthesised rows (the early return used to skip it on rank 0 and rank 1 waited forever)."""
    g = torch.Generator().manual_seed(11)
    new, old = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 3])   # old classifier knows 0..2
    fc = nn.Linear(4, 3)
    out = str(tmp_path / 'res')
    run_two_ranks(_bct_ddp_worker, (new, old, y, fc.weight.detach(), fc.bias.detach(), out), tmp_path)
    res = [torch.load(f'{out}.{r}') for r in range(2)]
    # both ranks hold the same bank: per class the mean over BOTH ranks' normalised old features, counted
    # once per step (2 steps of the same data)
    on = torch.nn.functional.normalize(old, dim=1)
    for r in range(2):
        assert res[r]['seen'].tolist() == [False, False, False, True, True]
        assert torch.allclose(res[r]['means'][3], on[[3, 5]].mean(0), atol=1e-6)
        assert torch.allclose(res[r]['means'][4], on[4], atol=1e-6)
    # both ranks' softmax runs over the old rows + the rows synthesised from BOTH ranks' features
    w = torch.cat([fc.weight.detach(), on[[3, 5]].mean(0, keepdim=True), on[[4]]])
    b = torch.cat([fc.bias.detach(), torch.zeros(2)])
    for r, sl in ((0, slice(0, 3)), (1, slice(3, 6))):
        ref = bct_influence_loss(new[sl], y[sl], w, b)
        assert torch.allclose(res[r]['losses'], ref.repeat(2), atol=1e-5)


# --------------------------------------------------------------------------------------------- RACT
def _ract_direct(new, old, y, tau, topk=None, new_new=True, bnew=None, bold=None, by=None, mode='per_term'):
    new, old = new.detach().numpy(), old.detach().numpy()
    bnew = new if bnew is None else bnew.detach().numpy()
    bold = old if bold is None else bold.detach().numpy()
    by = y if by is None else by
    d = old.shape[1]
    out = []
    for i in range(new.shape[0]):
        n = _norm(np.pad(new[i], (0, max(0, d - new.shape[1])))[:d])
        pos = n @ _norm(old[i]) / tau
        n2o, n2n = [], []
        for j in range(bold.shape[0]):
            if int(by[j]) != int(y[i]):
                n2o.append(n @ _norm(bold[j]) / tau)
                if new_new:
                    n2n.append(n @ _norm(np.pad(bnew[j], (0, max(0, d - bnew.shape[1])))[:d]) / tau)
        if topk is not None and mode == 'per_term':   # k hardest of each term
            negs = sorted(n2o, reverse=True)[:topk] + sorted(n2n, reverse=True)[:topk]
        elif topk is not None:                         # k hardest of the pooled negatives
            negs = sorted(n2o + n2n, reverse=True)[:topk]
        else:
            negs = n2o + n2n
        allv = np.array([pos] + negs)
        m = allv.max()
        out.append(-(pos - m - math.log(np.exp(allv - m).sum())))
    return float(np.mean(out))


@pytest.mark.parametrize('topk,new_new,mode', [(None, True, 'per_term'), (None, False, 'per_term'),
                                               (3, True, 'per_term'), (3, True, 'union'),
                                               (2, False, 'per_term')])
def test_ract_loss_matches_direct(topk, new_new, mode):
    g = torch.Generator().manual_seed(3)
    new, old = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    y = torch.tensor([0, 1, 0, 2, 2, 1, 3])
    got = ract_loss(new, old, y, tau=0.5, topk=topk, new_new=new_new, topk_mode=mode)
    assert got.item() == pytest.approx(_ract_direct(new, old, y, 0.5, topk, new_new, mode=mode), rel=1e-5)
    # a larger bank of candidate negatives
    bn, bo, by = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g), torch.tensor([1, 0, 3, 4])
    got = ract_loss(new, old, y, 0.5, topk, new_new, bank_new=bn, bank_old=bo, bank_labels=by,
                    topk_mode=mode)
    assert got.item() == pytest.approx(_ract_direct(new, old, y, 0.5, topk, new_new, bn, bo, by, mode),
                                       rel=1e-5)


def test_ract_defaults_are_official_per_term_top10():
    """Default = the official code: the 10 hardest new-old AND the 10 hardest new-new negatives (not the 10
    hardest of their union, which is a different loss), tau 0.01."""
    g = torch.Generator().manual_seed(12)
    new, old = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
    y = torch.arange(40) % 13
    mod = RACTLoss()
    assert (mod.tau, mod.topk, mod.topk_mode, mod.detach_new_negatives) == (0.01, 10, 'per_term', True)
    got = ract_loss(new, old, y)
    assert got.item() == pytest.approx(_ract_direct(new, old, y, 0.01, 10, True, mode='per_term'), rel=1e-5)
    per_term = ract_loss(new, old, y, tau=0.5)
    union = ract_loss(new, old, y, tau=0.5, topk=10, topk_mode='union')
    assert union.item() == pytest.approx(_ract_direct(new, old, y, 0.5, 10, True, mode='union'), rel=1e-5)
    assert per_term.item() == pytest.approx(_ract_direct(new, old, y, 0.5, 10, True), rel=1e-5)
    assert abs(union.item() - per_term.item()) > 1e-2
    with pytest.raises(ValueError, match='topk_mode must be one of'):
        ract_loss(new, old, y, topk_mode='pooled')


def test_ract_new_new_negatives_are_constants():
    """Official: the gathered new-new negatives carry no gradient; only the anchor side does."""
    g = torch.Generator().manual_seed(13)
    new = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    old = torch.randn(6, 4, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ract_loss(new, old, y, tau=0.3, topk=None).backward()
    got = new.grad.clone()
    # direct: the bank's new embeddings are a detached copy
    ref_new = new.detach().clone().requires_grad_(True)
    ract_loss(ref_new, old, y, tau=0.3, topk=None, bank_new=new.detach().clone(), bank_old=old,
              bank_labels=y, detach_new_negatives=False).backward()
    assert torch.allclose(got, ref_new.grad, atol=1e-10)
    # the option lets the gradient through both sides: different gradient, same value
    full = new.detach().clone().requires_grad_(True)
    val = ract_loss(full, old, y, tau=0.3, topk=None, detach_new_negatives=False)
    val.backward()
    assert val.item() == pytest.approx(ract_loss(new, old, y, tau=0.3, topk=None).item())
    assert not torch.allclose(full.grad, got, atol=1e-6)


def test_ract_same_label_only_and_grad():
    # every sample shares the label: no negatives, the loss is exactly 0
    new = torch.randn(3, 4, requires_grad=True)
    assert ract_loss(new, torch.randn(3, 4), torch.zeros(3, dtype=torch.long)).item() == pytest.approx(0)
    g = torch.Generator().manual_seed(4)
    new = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    old = torch.randn(4, 3, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 1, 1, 2])
    # default: the new-new negatives are constants, so check against a fixed bank
    bank = dict(bank_new=new.detach().clone(), bank_old=old, bank_labels=y)
    assert torch.autograd.gradcheck(lambda n: ract_loss(n, old, y, tau=0.3, topk=2, **bank), (new, ))
    assert torch.autograd.gradcheck(lambda n: ract_loss(n, old, y, tau=0.3, topk=2, topk_mode='union',
                                                        detach_new_negatives=False), (new, ))
    # old is detached
    old.requires_grad_(True)
    ract_loss(new, old, y).backward()
    assert old.grad is None


def test_ract_module_single_process_and_errors():
    new, old, y = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    mod = RACTLoss(tau=0.1, topk=4, loss_weight=2.0)
    assert mod(new, old, y).item() == pytest.approx(2 * ract_loss(new, old, y, 0.1, 4).item(), rel=1e-6)
    with pytest.raises(ValueError, match='topk_mode must be one of'):
        RACTLoss(topk_mode='pooled')
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
def _refine_direct(old, new, lam=0.9, t=0.05, dim=0):
    """Eq. 9 written out with numpy: E = softmax over columns of F F^T / T (self edges removed),
    O' = (1 - lam) (I - lam E)^-1 O."""
    o, f = old.numpy().astype(np.float64), new.numpy().astype(np.float64)
    n = o.shape[0]
    if n == 1:
        return o.copy()
    a = f @ f.T / t
    e = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if dim == 0:   # column j: normalise over the rows k != j
                e[i, j] = math.exp(a[i, j] - max(a[k, j] for k in range(n) if k != j)) / sum(
                    math.exp(a[k, j] - max(a[m, j] for m in range(n) if m != j)) for k in range(n) if k != j)
            else:
                e[i, j] = math.exp(a[i, j] - max(a[i, k] for k in range(n) if k != i)) / sum(
                    math.exp(a[i, k] - max(a[i, m] for m in range(n) if m != i)) for k in range(n) if k != i)
    return (1 - lam) * np.linalg.inv(np.eye(n) - lam * e) @ o


@pytest.mark.parametrize('dim,edge', [(0, 'column'), (1, 'row')])
def test_refine_class_samples_matches_eq9(dim, edge):
    g = torch.Generator().manual_seed(6)
    old, new = torch.randn(5, 3, dtype=torch.float64, generator=g), torch.randn(5, 4, dtype=torch.float64,
                                                                               generator=g)
    new = torch.nn.functional.normalize(new, dim=1)   # moderate logits at T = 0.05
    got = refine_class_samples(old, new, lam=0.9, temperature=0.05, edge_softmax=edge)
    assert np.allclose(got.numpy(), _refine_direct(old, new, 0.9, 0.05, dim), atol=1e-10)
    # a single sample has no edge: O' = O
    assert torch.equal(refine_class_samples(old[:1], new[:1]), old[:1])
    with pytest.raises(ValueError, match=r'lambda must be in \[0, 1\)'):
        refine_class_samples(old, new, lam=1.0)
    with pytest.raises(ValueError, match='same n'):
        refine_class_samples(old, new[:3])


def test_structural_prototypes_per_class_matches_direct():
    g = torch.Generator().manual_seed(7)
    labels = torch.tensor([2, 0, 2, 4, 0, 2, 0, 2, 4, 1])   # class 3 empty, class 1 a single sample
    old = torch.randn(10, 3, dtype=torch.float64, generator=g)
    new = torch.nn.functional.normalize(torch.randn(10, 5, dtype=torch.float64, generator=g), dim=1)
    for edge, dim in (('column', 0), ('row', 1)):
        protos, valid = structural_prototypes(old, new, labels, 5, edge_softmax=edge)
        assert valid.tolist() == [True, True, True, False, True]
        for c in (0, 1, 2, 4):
            idx = (labels == c).nonzero()[:, 0]
            ref = _refine_direct(old[idx], new[idx], 0.9, 0.05, dim).mean(0)
            assert np.allclose(protos[c].numpy(), ref, atol=1e-10)
        assert torch.equal(protos[3], torch.zeros(3))
    # a share of the classes (what one DDP rank computes)
    part, pvalid = structural_prototypes(old, new, labels, 5, classes=torch.tensor([0, 4]))
    assert pvalid.tolist() == [True, False, False, False, True]
    full, _ = structural_prototypes(old, new, labels, 5)
    assert torch.allclose(part[[0, 4]], full[[0, 4]]) and (part[[1, 2, 3]] == 0).all()
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 5\)'):
        structural_prototypes(old, new, labels + 1, 5)


def test_column_softmax_prototype_is_the_old_class_mean():
    """Exact algebra of the spec's algorithm: E column-stochastic => mean(O') = mean(O), whatever the new
    model; the refined samples O' themselves do depend on it, and the row variant moves the mean."""
    g = torch.Generator().manual_seed(8)
    old = torch.randn(30, 6, dtype=torch.float64, generator=g)
    labels = torch.arange(30) % 3
    for _ in range(2):
        new = torch.nn.functional.normalize(torch.randn(30, 4, dtype=torch.float64, generator=g), dim=1)
        protos, _ = structural_prototypes(old, new, labels, 3)
        means = torch.stack([old[labels == c].mean(0) for c in range(3)])
        assert torch.allclose(protos, means, atol=1e-9)
        refined = refine_class_samples(old[labels == 0], new[labels == 0])
        assert not torch.allclose(refined, old[labels == 0], atol=1e-3)
    row, _ = structural_prototypes(old, new, labels, 3, edge_softmax='row')
    assert not torch.allclose(row, means, atol=1e-3)


def test_structural_prototypes_scale_to_many_classes():
    """Per-class work only: 20000 classes x 3 samples run quickly and never build a C x C matrix."""
    import time
    g = torch.Generator().manual_seed(9)
    num = 20000
    labels = torch.arange(num).repeat_interleave(3)
    old, new = torch.randn(3 * num, 8, generator=g), torch.randn(3 * num, 8, generator=g)
    t0 = time.time()
    protos, valid = structural_prototypes(old, torch.nn.functional.normalize(new, dim=1), labels, num)
    assert valid.all() and protos.shape == (num, 8)
    assert time.time() - t0 < 120
    assert torch.allclose(protos[123], torch.from_numpy(_refine_direct(
        old[369:372], torch.nn.functional.normalize(new[369:372], dim=1))).float().mean(0), atol=1e-4)


def test_unibct_loss_matches_direct_and_grad():
    g = torch.Generator().manual_seed(8)
    new, protos = torch.randn(5, 6, generator=g), 3 * torch.randn(4, 4, generator=g)
    y = torch.tensor([0, 3, 1, 1, 2])
    valid = torch.tensor([True, True, True, False])
    for val, scale, norm_p in ((None, 1.0, False), (valid, 1.0, False), (None, 2.0, True)):
        got = unibct_loss(new, protos, y, scale=scale, normalize_prototypes=norm_p, valid=val)
        vals = []
        for i in range(5):
            if val is not None and not val[int(y[i])]:
                continue
            n = _norm(new[i, :4].numpy())   # truncated to the old dim, then normalised
            cls = [c for c in range(4) if val is None or val[c]]
            p = [(_norm(protos[c].numpy()) if norm_p else protos[c].numpy()) for c in cls]
            vals.append(_ce([scale * float(n @ pc) for pc in p], cls.index(int(y[i]))))
        assert got.item() == pytest.approx(np.mean(vals), rel=1e-5)
    new64 = new.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda n: unibct_loss(n, protos.double(), y, valid=valid), (new64, ))


def test_unibct_module_prototypes_and_state():
    g = torch.Generator().manual_seed(9)
    new, y = torch.randn(8, 4, generator=g, requires_grad=True), torch.tensor([0, 1, 2, 0, 1, 2, 4, 4])
    mod = UniBCTLoss(num_classes=5)
    # no prototypes yet: the term is off (0, graph kept)
    off = mod(new, y)
    assert off.item() == 0 and off.requires_grad and not mod.active
    protos = torch.randn(5, 4, generator=g)
    valid = torch.tensor([True, True, True, False, True])
    mod.set_prototypes(protos, valid)
    assert mod.active
    assert mod(new, y).item() == pytest.approx(unibct_loss(new, protos, y, valid=valid).item(), rel=1e-6)
    # P is saved and restored (resume after a refresh)
    fresh = UniBCTLoss(num_classes=5)
    fresh.load_state_dict(mod.state_dict())
    assert torch.equal(fresh.prototypes, protos) and torch.equal(fresh.valid, valid)
    assert fresh(new, y).item() == pytest.approx(mod(new, y).item())
    with pytest.raises(ValueError, match=r'expected \(5, D\)'):
        mod.set_prototypes(torch.randn(4, 4))


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
    assert BiCTTransformLoss('regression', loss_weight=2.)(pred, tgt).item() == pytest.approx(
        2 * ((pred - tgt) ** 2).mean().item())
    with pytest.raises(ValueError, match='output dim 3 != new embedding dim 2'):
        bict_transform_loss(pred, tgt[:, :2])
    # psi recovers a fixed linear map old -> new much better than the untrained start
    g = torch.Generator().manual_seed(10)
    old = torch.randn(256, 6, generator=g)
    new = old @ torch.randn(6, 5, generator=g)
    psi = fit_bict_transformation(old, new, hidden_dim=32, epochs=60, batch_size=64, lr=5e-3,
                                  objective='regression')
    assert psi.objective == 'regression'
    start = BiCTTransformation(6, 5, 32)
    with torch.no_grad():
        assert bict_transform_loss(psi(old), new) < 0.1 * bict_transform_loss(start(old), new)
    path = str(tmp_path / 'psi.pth')
    save_transformation(path, psi)
    with torch.no_grad():
        loaded = load_transformation(path)
        assert torch.allclose(loaded(old), psi(old)) and loaded.objective == 'regression'
    with pytest.raises(ValueError, match=r'expects \(N, 6\)'):
        psi(torch.randn(2, 5))


def test_bict_objectives_match_direct():
    g = torch.Generator().manual_seed(14)
    pred, tgt = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    y = torch.tensor([0, 2, 1, 3, 2])
    fc = nn.Linear(3, 4)
    ce = np.mean([_ce([float(pred[i] @ fc.weight[c] + fc.bias[c]) for c in range(4)], int(y[i]))
                  for i in range(5)])
    assert bict_classifier_loss(pred, y, fc.weight, fc.bias).item() == pytest.approx(ce, rel=1e-5)
    # default objective: 'new_classifier' through the bound (frozen) new classifier, regression weight 0
    loss = BiCTTransformLoss()
    assert loss.objective == 'new_classifier' and loss.regression_weight == 0
    loss.bind_new_classifier(fc)
    p = pred.clone().requires_grad_(True)
    got = loss(p, tgt, y)
    assert got.item() == pytest.approx(ce, rel=1e-5)
    got.backward()
    assert p.grad.abs().sum() > 0 and fc.weight.grad is None   # the classifier is frozen
    mse = ((pred - tgt) ** 2).mean().item()
    mixed = BiCTTransformLoss(regression_weight=0.5, loss_weight=2.0)
    assert mixed(pred, tgt, y, new_weight=fc.weight, new_bias=fc.bias).item() == pytest.approx(
        2 * (ce + 0.5 * mse), rel=1e-5)
    # 'regression' alone
    assert BiCTTransformLoss(objective='regression')(pred, tgt).item() == pytest.approx(mse, rel=1e-6)
    with pytest.raises(ValueError, match='objective must be one of'):
        BiCTTransformLoss(objective='mse')
    with pytest.raises(ValueError, match="needs the new model's classifier"):
        BiCTTransformLoss()(pred, tgt, y)
    with pytest.raises(ValueError, match='needs `labels`'):
        loss(pred, tgt)
    with pytest.raises(ValueError, match='needs `target`'):
        BiCTTransformLoss(objective='regression')(pred)


def test_bict_fit_new_classifier_objective():
    # classes separable in the new classifier's space: psi learns to land old embeddings on the right side
    g = torch.Generator().manual_seed(15)
    y = torch.arange(200) % 4
    old = torch.randn(200, 6, generator=g) * 0.3 + torch.eye(6)[y] * 2
    fc = nn.Linear(5, 4)
    psi = fit_bict_transformation(old, None, hidden_dim=32, epochs=40, batch_size=50, lr=5e-3,
                                  labels=y, new_weight=fc.weight.detach(), new_bias=fc.bias.detach())
    assert psi.objective == 'new_classifier' and psi.new_dim == 5
    with torch.no_grad():
        acc = (fc(psi(old)).argmax(1) == y).float().mean().item()
    assert acc > 0.9
    with pytest.raises(ValueError, match="'new_classifier' needs labels"):
        fit_bict_transformation(old, None)
