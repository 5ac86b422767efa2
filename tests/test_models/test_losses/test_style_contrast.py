"""Contrastive encoder-refinement losses vs. direct loop re-computation."""
import math

import numpy as np
import pytest
import torch
from mmengine.registry import MODELS

from mmkd_plugins.models.losses.style_contrast import (
    ContentContrastiveLoss, StyleContrastiveLoss, content_contrastive_loss, gram_descriptor,
    info_nce, mean_std_descriptor, style_contrastive_loss)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def loop_info_nce(anchor, cands, pos, neg, tau):
    """-log(e^{s_p} / (e^{s_p} + sum_n e^{s_n})) averaged over the positives, by plain loops."""
    out = []
    for i in range(len(anchor)):
        a = _unit(anchor[i])
        sims = [float(a @ _unit(c)) / tau for c in cands]
        negs = [math.exp(sims[j]) for j in range(len(cands)) if neg[i][j]]
        terms = [-math.log(math.exp(sims[p]) / (math.exp(sims[p]) + sum(negs)))
                 for p in range(len(cands)) if pos[i][p]]
        out.append(sum(terms) / len(terms))
    return np.array(out)


def test_info_nce_matches_loops_with_multiple_positives():
    g = torch.Generator().manual_seed(0)
    anchor = torch.randn(4, 6, generator=g, dtype=torch.float64)
    cands = torch.randn(7, 6, generator=g, dtype=torch.float64)
    pos = torch.zeros(4, 7, dtype=torch.bool)
    neg = torch.zeros(4, 7, dtype=torch.bool)
    pos[0, [0, 3]] = True
    neg[0, [1, 2, 5]] = True
    pos[1, 1] = True
    neg[1, [0, 2, 3, 4, 5, 6]] = True
    pos[2, [2, 4, 6]] = True
    neg[2, 0] = True
    pos[3, 5] = True  # no negatives -> 0
    out = info_nce(anchor, cands, pos, neg, tau=0.2)
    expected = loop_info_nce(anchor.numpy(), cands.numpy(), pos.tolist(), neg.tolist(), 0.2)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10)
    assert out[3] == 0


def test_info_nce_gradcheck_including_anchor_without_negatives():
    g = torch.Generator().manual_seed(1)
    anchor = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    cands = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.bool)
    neg = torch.tensor([[0, 1, 1, 1, 1], [1, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda a, c: info_nce(a, c, pos, neg, 0.5), (anchor, cands))
    info_nce(anchor, cands, pos, neg).sum().backward()
    assert torch.isfinite(anchor.grad).all() and torch.isfinite(cands.grad).all()


def test_info_nce_errors():
    a, c = torch.randn(2, 3), torch.randn(3, 3)
    pos = torch.tensor([[1, 0, 0], [0, 1, 0]], dtype=torch.bool)
    neg = ~pos
    with pytest.raises(ValueError, match='same D'):
        info_nce(a, torch.randn(3, 4), pos, neg)
    with pytest.raises(ValueError, match='pos_mask must be a bool tensor of shape'):
        info_nce(a, c, pos.float(), neg)
    with pytest.raises(ValueError, match='both a positive and a negative'):
        info_nce(a, c, pos, torch.ones_like(neg))
    with pytest.raises(ValueError, match=r'at least one positive.*\[1\]'):
        info_nce(a, c, torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool), neg & False)
    with pytest.raises(ValueError, match='tau must be positive'):
        info_nce(a, c, pos, neg, tau=0)


def test_descriptors_match_numpy():
    g = torch.Generator().manual_seed(2)
    f1 = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    f2 = torch.randn(2, 2, 2, 2, generator=g, dtype=torch.float64)
    desc = mean_std_descriptor([f1, f2]).numpy()
    for n in range(2):
        parts = []
        for f in (f1, f2):
            x = f[n].numpy().reshape(f.shape[1], -1)
            parts += [x.mean(1), np.sqrt(x.var(1) + 1e-5)]
        np.testing.assert_allclose(desc[n], np.concatenate(parts), rtol=1e-10)
    gram = gram_descriptor([f1]).numpy()
    x = f1[1].numpy().reshape(3, -1)
    np.testing.assert_allclose(gram[1], (x @ x.T / 20).ravel(), rtol=1e-10)
    with pytest.raises(ValueError, match='at least one'):
        mean_std_descriptor([])


def test_style_contrastive_loss_pairs():
    """Positive: same-style images; negatives: other styles + own content (by explicit loops)."""
    g = torch.Generator().manual_seed(3)
    a, s, c = (torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(3))
    ids = torch.tensor([0, 1, 0, 2])
    out = style_contrastive_loss(a, s, c, ids, tau=0.3).numpy()
    for i in range(4):
        ai = _unit(a[i])
        neg = [math.exp(ai @ _unit(s[j]) / 0.3) for j in range(4) if ids[j] != ids[i]]
        neg.append(math.exp(ai @ _unit(c[i]) / 0.3))
        terms = []
        for j in range(4):
            if ids[j] == ids[i]:
                p = math.exp(ai @ _unit(s[j]) / 0.3)
                terms.append(-math.log(p / (p + sum(neg))))
        assert out[i] == pytest.approx(np.mean(terms), rel=1e-10)
    # default ids: all different -> standard InfoNCE with 2N-1... here N - 1 styles + 1 content
    out_default = style_contrastive_loss(a, s, c, tau=0.3)
    assert out_default.shape == (4, )


def test_content_contrastive_loss_pairs():
    g = torch.Generator().manual_seed(4)
    a, c, s = (torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    ids = torch.tensor([7, 7, 2])
    out = content_contrastive_loss(a, c, s, ids, tau=0.2).numpy()
    for i in range(3):
        ai = _unit(a[i])
        neg = [math.exp(ai @ _unit(c[j]) / 0.2) for j in range(3) if ids[j] != ids[i]]
        neg.append(math.exp(ai @ _unit(s[i]) / 0.2))
        terms = [-math.log(math.exp(ai @ _unit(c[j]) / 0.2) /
                           (math.exp(ai @ _unit(c[j]) / 0.2) + sum(neg)))
                 for j in range(3) if ids[j] == ids[i]]
        assert out[i] == pytest.approx(np.mean(terms), rel=1e-10)


def test_pair_loss_errors():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match='equal shapes'):
        style_contrastive_loss(x, x[:2], x)
    with pytest.raises(ValueError, match='style_ids has 2 entries'):
        style_contrastive_loss(x, x, x, torch.tensor([0, 1]))


def test_perfect_embeddings_give_lower_loss():
    """Anchors equal to their positives and orthogonal to negatives: loss near its minimum."""
    eye = torch.eye(4, dtype=torch.float64)
    good = style_contrastive_loss(eye[:2], eye[:2], eye[2:], tau=0.1)
    bad = style_contrastive_loss(eye[:2], eye[2:], eye[:2], tau=0.1)
    assert (good < 1e-3).all() and (bad > 5).all()


def _feats(n, channels, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {la: torch.randn(n, c, s, s, generator=g)
            for la, c, s in zip(('relu3_1', 'relu4_1'), channels, size)}


def test_style_contrastive_module_matches_function():
    loss = MODELS.build(dict(type='StyleContrastiveLoss', in_channels=[6, 8],
                             layers=('relu3_1', 'relu4_1'), hidden_dim=16, out_dim=8, tau=0.25,
                             loss_weight=2.0))
    fa, fs, fc = _feats(3, (6, 8), (8, 4), 0), _feats(3, (6, 8), (8, 4), 1), _feats(3, (6, 8),
                                                                                    (8, 4), 2)
    ids = torch.tensor([0, 0, 1])
    out = loss(fa, fs, fc, ids)
    emb = [loss.head([f['relu3_1'], f['relu4_1']]) for f in (fa, fs, fc)]
    expected = 2.0 * style_contrastive_loss(*emb, ids, tau=0.25).mean()
    assert torch.allclose(out, expected)
    out.backward()
    assert loss.head.mlp[0].weight.grad.abs().sum() > 0
    loss.reduction = 'none'
    assert loss(fa, fs, fc, ids).shape == (3, )


def test_content_contrastive_module_matches_function():
    loss = ContentContrastiveLoss(in_channels=8, pool_size=2, hidden_dim=16, out_dim=8,
                                  reduction='sum')
    fa, fc, fs = _feats(2, (6, 8), (8, 4), 3), _feats(2, (6, 8), (8, 4), 4), _feats(2, (6, 8),
                                                                                    (8, 4), 5)
    out = loss(fa, fc, fs)
    emb = [loss.head(f['relu4_1']) for f in (fa, fc, fs)]
    assert torch.allclose(out, content_contrastive_loss(*emb, tau=0.2).sum())


def test_gram_descriptor_head():
    loss = StyleContrastiveLoss(in_channels=6, layers='relu3_1', descriptor='gram', hidden_dim=8,
                                out_dim=4)
    assert loss.head.mlp[0].in_features == 36
    f = _feats(2, (6, 8), (8, 4))
    assert loss(f, f, f).ndim == 0


def test_module_errors():
    with pytest.raises(ValueError, match='needs in_channels'):
        StyleContrastiveLoss()
    with pytest.raises(ValueError, match='one entry per layer'):
        StyleContrastiveLoss(in_channels=[4, 4], layers=('relu3_1', ))
    with pytest.raises(ValueError, match='reduction must be one of'):
        ContentContrastiveLoss(in_channels=4, reduction='avg')
    with pytest.raises(ValueError, match="descriptor must be 'mean_std' or 'gram'"):
        StyleContrastiveLoss(in_channels=4, descriptor='hist')
    loss = StyleContrastiveLoss(in_channels=4, hidden_dim=8, out_dim=4)
    f = _feats(2, (6, 8), (8, 4))
    with pytest.raises(ValueError, match=r'layers with \[4\] channels, got \[6\]'):
        loss(f, f, f)
    with pytest.raises(KeyError, match='lacks layer'):
        loss({'relu4_1': f['relu4_1']}, f, f)
    closs = ContentContrastiveLoss(in_channels=5, hidden_dim=8, out_dim=4)
    with pytest.raises(ValueError, match=r'expects \(N, 5, H, W\)'):
        closs(f, f, f)
