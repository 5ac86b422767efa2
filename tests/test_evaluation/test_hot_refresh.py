"""Hot-refresh mAP / top-1 / NFR, the cross-model table, and TAR@FAR, on hand-made embeddings."""
import os

import numpy as np
import pytest
import torch

from mmkd_plugins.evaluation.metrics.face_verification import (FaceVerificationMetric, all_pairs,
                                                               tar_at_far)
from mmkd_plugins.evaluation.metrics.hot_refresh import (HotRefreshMetric, format_hot_refresh,
                                                         hot_refresh_curve, plot_hot_refresh,
                                                         ranking_metrics)


def _ap_direct(scores, qlab, glab, excl=None, topk=None):
    aps, top1 = [], []
    for i in range(len(qlab)):
        items = [j for j in range(len(glab)) if excl is None or not excl[i][j]]
        items.sort(key=lambda j: (-scores[i][j], j))
        rel = [int(glab[j] == qlab[i]) for j in items]
        r = sum(rel)
        if r == 0:
            continue
        if topk is not None:
            rel, r = rel[:topk], min(r, topk)
        hits, s = 0, 0.0
        for k, v in enumerate(rel, 1):
            if v:
                hits += 1
                s += hits / k
        aps.append(s / r)
        top1.append(rel[0])
    return np.mean(aps), np.mean(top1)


@pytest.mark.parametrize('topk', [None, 3])
def test_ranking_metrics_matches_direct(topk):
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (6, 9), generator=g).double()   # many ties
    ql, gl = torch.randint(0, 3, (6, ), generator=g), torch.randint(0, 3, (9, ), generator=g)
    excl = torch.rand(6, 9, generator=g) < 0.2
    r = ranking_metrics(scores, ql, gl, excl, topk)
    ap, top1 = _ap_direct(scores.tolist(), ql.tolist(), gl.tolist(), excl.tolist(), topk)
    assert r['ap'][r['valid']].mean().item() == pytest.approx(ap)
    assert r['top1'][r['valid']].double().mean().item() == pytest.approx(top1)


def _hand_made():
    q_new = torch.tensor([[1., 0.], [0., 1.]])
    q_old = torch.tensor([[.6, .8], [1., 0.]])
    g_old = torch.tensor([[1., 0.], [.8, .6], [.6, .8]])
    g_new = torch.tensor([[0., 1.], [1., 0.], [.8, .6]])
    return q_new, q_old, g_old, g_new, torch.tensor([0, 1]), torch.tensor([1, 0, 0])


def test_hot_refresh_known_answer():
    q_new, q_old, g_old, g_new, ql, gl = _hand_made()
    res = hot_refresh_curve(q_new, g_old, g_new, ql, gl, order=[0, 1, 2], fractions=[0, 1 / 3, 2 / 3, 1],
                            q_old=q_old, g_bict=g_new)
    t = res['table']
    # query 0 ranks (neg, pos, pos) against the old gallery: AP = (1/2 + 2/3) / 2; query 1: AP = 1/3
    assert t['mAP(new,old)'] == pytest.approx((7 / 12 + 1 / 3) / 2)
    assert t['mAP(old,old)'] == pytest.approx(1.0) and t['mAP(new,new)'] == pytest.approx(1.0)
    assert t['top1(new,old)'] == 0.0 and t['compatible'] is False
    rows = res['curves']['old']
    assert [r['mAP'] for r in rows] == pytest.approx([11 / 24, 1, 1, 1])
    assert [r['top1'] for r in rows] == pytest.approx([0, 1, 1, 1])
    assert [r['NFR'] for r in rows] == pytest.approx([1, 0, 0, 0])   # both queries right in the old system
    assert [r['mAP'] for r in res['curves']['bict']] == pytest.approx([1, 1, 1, 1])
    # f=0 is the cross-model number, f=1 the new-new number
    assert rows[0]['mAP'] == pytest.approx(t['mAP(new,old)'])
    assert rows[-1]['mAP'] == pytest.approx(t['mAP(new,new)'])
    text = format_hot_refresh(res)
    assert 'mAP(new,old)' in text and '0.4583' in text
    # with the objective psi was trained with, every BiCT entry carries its name
    named = hot_refresh_curve(q_new, g_old, g_new, ql, gl, order=[0, 1, 2], fractions=[0, 1 / 3, 2 / 3, 1],
                              q_old=q_old, g_bict=g_new, bict_objective='regression')
    assert named['bict_objective'] == 'regression'
    assert named['table']['mAP(new,bict_regression)'] == t['mAP(new,bict)']
    assert 'bict' not in named['curves'] and named['curves']['bict_regression'] == res['curves']['bict']
    assert 'bict_regression' in format_hot_refresh(named)


def test_backfill_order_matters_and_dims_are_matched():
    q_new, q_old, g_old, g_new, ql, gl = _hand_made()
    # backfilling item 2 first (f=1/3) does not fix query 0 (neg item 0 still scores 1.0)
    rows = hot_refresh_curve(q_new, g_old, g_new, ql, gl, [2, 1, 0], [1 / 3], q_old=q_old)['curves']['old']
    assert rows[0]['top1'] == pytest.approx(0.0)
    # a 3-d new model is compared with the 2-d old gallery by truncation: same numbers with a padded dim
    pad = torch.nn.functional.pad
    res = hot_refresh_curve(pad(q_new, (0, 1)), g_old, pad(g_new, (0, 1)), ql, gl, [0, 1, 2], [0, 1])
    assert res['table']['mAP(new,old)'] == pytest.approx((7 / 12 + 1 / 3) / 2)
    with pytest.raises(ValueError, match='permutation of the 3 gallery items'):
        hot_refresh_curve(q_new, g_old, g_new, ql, gl, [0, 0, 1], [0.5])


def test_leave_one_out_and_queries_without_match():
    emb = torch.tensor([[1., 0.], [.9, .1], [0., 1.], [.1, .9], [-1., 0.]])
    lab = torch.tensor([0, 0, 1, 1, 2])    # class 2 has a single item: no match once itself is excluded
    res = hot_refresh_curve(emb, emb, emb, lab, lab, [0, 1, 2, 3, 4], [0, 1], q_old=emb,
                            exclude=torch.eye(5, dtype=torch.bool))
    assert res['table']['mAP(old,old)'] == pytest.approx(1.0)
    assert res['curves']['old'][0]['NFR'] == pytest.approx(0.0)


def test_metric_end_to_end(tmp_path):
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(4, 8, generator=g)
    labels = torch.arange(4).repeat_interleave(5)
    old = centres[labels] + 0.8 * torch.randn(20, 8, generator=g)
    new = centres[labels] + 0.1 * torch.randn(20, 8, generator=g)
    logits = torch.randn(20, 4, generator=g)
    samples = [dict(new_emb=new[i], old_emb=old[i], old_logits=logits[i], gt_label=labels[i:i + 1])
               for i in range(20)]
    plot = str(tmp_path / 'curve.png')
    metric = HotRefreshMetric(fractions=5, order='entropy', plot_file=plot)
    metric.process({}, samples[:10])
    metric.process({}, samples[10:])
    out = metric.evaluate(20)
    assert os.path.getsize(plot) > 1000
    excl = torch.eye(20, dtype=torch.bool)
    ap_nn, _ = _ap_direct((torch.nn.functional.normalize(new, dim=1) @
                           torch.nn.functional.normalize(new, dim=1).t()).tolist(), labels.tolist(),
                          labels.tolist(), excl.tolist())
    assert out['hot_refresh/mAP_new_new'] == pytest.approx(ap_nn)
    assert out['hot_refresh/old_mAP@f1.00'] == pytest.approx(ap_nn)
    assert out['hot_refresh/old_mAP@f0.00'] == pytest.approx(out['hot_refresh/mAP_new_old'])
    assert set(out) >= {'hot_refresh/mAP_old_old', 'hot_refresh/compatible', 'hot_refresh/old_NFR@f0.50'}
    # BiCT predictions name psi's objective in every BiCT key
    metric = HotRefreshMetric(fractions=[0, 1], order='entropy', plot_file=None)
    metric.process({}, [dict(s, bict_emb=new[i] + 0.3, bict_objective='new_classifier')
                        for i, s in enumerate(samples)])
    named = metric.evaluate(20)
    assert {'hot_refresh/mAP_new_bict_new_classifier', 'hot_refresh/bict_new_classifier_mAP@f0.00',
            'hot_refresh/bict_new_classifier_NFR@f1.00'} <= set(named)
    assert not any('bict_mAP' in k or k.endswith('mAP_new_bict') for k in named)
    metric = HotRefreshMetric(fractions=[0, 1], order='entropy', plot_file=None)
    metric.process({}, [dict(s, bict_emb=new[i], bict_objective=('regression' if i else 'new_classifier'))
                        for i, s in enumerate(samples)])
    with pytest.raises(ValueError, match='mix BiCT objectives'):
        metric.evaluate(20)
    with pytest.raises(KeyError, match='prediction without "old_emb"'):
        HotRefreshMetric().process({}, [dict(new_emb=new[0], gt_label=labels[:1])])
    with pytest.raises(ValueError, match='order must be one of'):
        HotRefreshMetric(order='fifo')


def test_plot_written(tmp_path):
    q_new, q_old, g_old, g_new, ql, gl = _hand_made()
    res = hot_refresh_curve(q_new, g_old, g_new, ql, gl, [0, 1, 2], [0, .5, 1], q_old=q_old)
    path = plot_hot_refresh(res, str(tmp_path / 'sub' / 'p.png'))
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


# ------------------------------------------------------------------------------------ verification
def _tar_direct(scores, same, far):
    pos = [s for s, t in zip(scores, same) if t]
    neg = [s for s, t in zip(scores, same) if not t]
    best = 0.0
    for thr in sorted(set(scores)) + [float('-inf')]:
        if sum(v > thr for v in neg) / len(neg) <= far:
            best = max(best, sum(v > thr for v in pos) / len(pos))
    return best


def test_tar_at_far_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    same = torch.rand(300, generator=g) < 0.3
    scores = torch.randn(300, generator=g) + 1.5 * same
    scores = torch.round(scores * 4) / 4    # ties
    fars = [0.0, 0.01, 0.1, 0.5, 1.0]
    got = tar_at_far(scores, same, fars)
    for far in fars:
        assert got[far] == pytest.approx(_tar_direct(scores.tolist(), same.tolist(), far))
    # perfectly separated scores: TAR = 1 even at FAR = 0
    assert tar_at_far(torch.tensor([.9, .8, .1, .2]), torch.tensor([1, 1, 0, 0]).bool(), [0.0])[0.0] == 1
    with pytest.raises(ValueError, match='needs genuine and impostor pairs'):
        tar_at_far(torch.ones(3), torch.ones(3, dtype=torch.bool), [0.1])


def test_face_verification_metric_cross_model():
    g = torch.Generator().manual_seed(3)
    ids = torch.arange(5).repeat_interleave(4)
    centres = torch.randn(5, 6, generator=g)
    new = centres[ids] + 0.05 * torch.randn(20, 6, generator=g)
    old = torch.randn(20, 6, generator=g)         # an old model that knows nothing
    metric = FaceVerificationMetric(fars=(0.01, 0.1), modes=('new-new', 'new-old'))
    metric.process({}, [dict(new_emb=new[i], old_emb=old[i], gt_label=ids[i:i + 1]) for i in range(20)])
    out = metric.evaluate(20)
    assert out['face_verif/new-new/TAR@FAR=0.01'] == pytest.approx(1.0)
    i, j, same = all_pairs(ids)
    assert len(i) == 190 and int(same.sum()) == 30
    nn_ = torch.nn.functional.normalize
    cross = (nn_(new, dim=1)[i] * nn_(old, dim=1)[j]).sum(1)
    assert out['face_verif/new-old/TAR@FAR=0.1'] == pytest.approx(
        _tar_direct(cross.tolist(), same.tolist(), 0.1))
    assert out['face_verif/new-old/TAR@FAR=0.1'] < 0.8


def test_chunked_scoring_and_query_subset():
    g = torch.Generator().manual_seed(4)
    lab = torch.randint(0, 3, (13, ), generator=g)
    q_new, g_old, g_new, q_old, g_b = (torch.randn(13, 4, generator=g) for _ in range(5))
    excl = torch.eye(13, dtype=torch.bool)
    kw = dict(q_old=q_old, g_bict=g_b, exclude=excl)
    order = np.random.default_rng(0).permutation(13)
    full = hot_refresh_curve(q_new, g_old, g_new, lab, lab, order, [0, .3, 1], **kw)
    chunked = hot_refresh_curve(q_new, g_old, g_new, lab, lab, order, [0, .3, 1], chunk_size=4, **kw)
    assert full['table'] == pytest.approx(chunked['table'])
    assert full['curves'] == chunked['curves']
    # the metric's query subset: the same numbers as the curve over those queries, full gallery
    samples = [dict(new_emb=q_new[i], old_emb=g_old[i], gt_label=lab[i:i + 1]) for i in range(13)]
    metric = HotRefreshMetric(fractions=[0, 1], order='sequential', num_queries=5, seed=3, plot_file=None)
    metric.process({}, samples)
    out = metric.evaluate(13)
    pick = torch.as_tensor(np.sort(np.random.default_rng(3).choice(13, 5, replace=False)))
    ref = hot_refresh_curve(q_new[pick], g_old, q_new, lab[pick], lab, np.arange(13), [0, 1],
                            q_old=g_old[pick], exclude=pick[:, None] == torch.arange(13)[None, :])
    assert out['hot_refresh/mAP_new_old'] == pytest.approx(ref['table']['mAP(new,old)'])
    assert out['hot_refresh/mAP_old_old'] == pytest.approx(ref['table']['mAP(old,old)'])
