"""Style-transfer metrics vs. direct re-computation."""
import itertools
import math

import numpy as np
import pytest
import torch
from mmengine.registry import METRICS, MODELS
from mmengine.structures import BaseDataElement

from mmkd_plugins.evaluation.metrics.style import (StyleTransferMetric, feature_content_loss,
                                                   stats_descriptor, stats_style_loss,
                                                   style_distance_check)

LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1')


def test_feature_content_loss():
    a, b = torch.randn(4, 3, 3), torch.randn(4, 3, 3)
    expected = sum((float(x) - float(y))**2 for x, y in zip(a.flatten(), b.flatten())) / 36
    assert feature_content_loss(a, b) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match='equal feature shapes'):
        feature_content_loss(a, b[:2])


def test_stats_style_loss_and_descriptor():
    g = torch.Generator().manual_seed(0)
    r = {la: torch.randn(2, c, generator=g) for la, c in zip(LAYERS, (2, 3, 4, 5))}
    s = {la: torch.randn(2, c, generator=g) for la, c in zip(LAYERS, (2, 3, 4, 5))}
    expected = 0.0
    for la in LAYERS:
        c = r[la].shape[1]
        expected += sum((float(r[la][0, i]) - float(s[la][0, i]))**2 for i in range(c)) / c
        expected += sum((float(r[la][1, i]) - float(s[la][1, i]))**2 for i in range(c)) / c
    assert stats_style_loss(r, s) == pytest.approx(expected, rel=1e-6)
    assert stats_style_loss(r, s, ('relu2_1', )) < expected
    desc = stats_descriptor(r, ('relu1_1', 'relu3_1'))
    np.testing.assert_allclose(desc, np.concatenate([r['relu1_1'][0], r['relu1_1'][1],
                                                     r['relu3_1'][0], r['relu3_1'][1]]),
                               rtol=1e-6)
    with pytest.raises(KeyError, match="layer 'relu5_1' missing"):
        stats_style_loss(r, s, ('relu5_1', ))
    with pytest.raises(ValueError, match=r'must both be \(2, C\)'):
        stats_style_loss({'relu1_1': torch.zeros(2, 3)}, {'relu1_1': torch.zeros(2, 4)},
                         ('relu1_1', ))


def brute_force_check(desc, sid, cid):
    n = len(desc)
    d = lambda i, j: math.sqrt(sum((a - b)**2 for a, b in zip(desc[i], desc[j])))  # noqa: E731
    same = [d(i, j) for i, j in itertools.combinations(range(n), 2)
            if sid[i] == sid[j] and cid[i] != cid[j]]
    diff = [d(i, j) for i, j in itertools.combinations(range(n), 2) if sid[i] != sid[j]]
    scores = []
    for i in range(n):
        for j in range(n):
            if not (sid[j] == sid[i] and cid[j] != cid[i]):
                continue
            for k in range(n):
                if sid[k] != sid[i] and cid[k] == cid[i]:
                    dij, dik = d(i, j), d(i, k)
                    scores.append(1.0 if dij < dik else 0.5 if dij == dik else 0.0)
    return np.mean(same), np.mean(diff), np.mean(scores), len(scores)


def test_style_distance_check_matches_brute_force():
    rng = np.random.default_rng(0)
    sid = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    cid = [0, 1, 2, 0, 1, 2, 0, 1, 2]
    desc = rng.normal(size=(9, 5))
    out = style_distance_check(desc, sid, cid)
    same, diff, acc, num = brute_force_check(desc.tolist(), sid, cid)
    assert out['same_style_dist'] == pytest.approx(same)
    assert out['diff_style_dist'] == pytest.approx(diff)
    assert out['style_triplet_acc'] == pytest.approx(acc)
    assert out['num_triplets'] == num == 9 * 2 * 2


def test_style_distance_check_detects_content_dominated_space():
    sid = [0, 0, 1, 1]
    cid = [0, 1, 0, 1]
    style_space = np.array([[0, 0], [0, 0.1], [5, 0], [5, 0.1]])  # clusters by style
    content_space = np.array([[0, 0], [5, 0], [0, 0.1], [5, 0.1]])  # clusters by content
    good = style_distance_check(style_space, sid, cid)
    bad = style_distance_check(content_space, sid, cid)
    assert good['style_triplet_acc'] == 1.0 and good['same_style_dist'] < good['diff_style_dist']
    assert bad['style_triplet_acc'] == 0.0 and bad['same_style_dist'] > bad['diff_style_dist']
    # ties count one half
    assert style_distance_check(np.zeros((4, 2)), sid, cid)['style_triplet_acc'] == 0.5


def test_style_distance_check_without_triplets_is_nan():
    out = style_distance_check(np.eye(3), [0, 1, 2], [0, 1, 2])
    assert math.isnan(out['style_triplet_acc']) and math.isnan(out['same_style_dist'])
    assert out['num_triplets'] == 0
    with pytest.raises(ValueError, match='need \\(N, D\\) descriptors and N ids'):
        style_distance_check(np.eye(3), [0, 1], [0, 1, 2])


def fake_feats(seed):
    g = torch.Generator().manual_seed(seed)
    stats = lambda: {la: torch.rand(2, 4, generator=g) for la in LAYERS}  # noqa: E731
    return dict(content_relu4_1=torch.rand(4, 2, 2, generator=g),
                result_relu4_1=torch.rand(4, 2, 2, generator=g), result_stats=stats(),
                style_stats=stats())


def test_metric_aggregates_pure_functions():
    metric = METRICS.build(dict(type='StyleTransferMetric'))
    items = []
    for i, (c, s) in enumerate(itertools.product(range(2), range(2))):
        feats = {'plain': fake_feats(i), 'refined': fake_feats(10 + i)}
        ds = BaseDataElement(metainfo=dict(content_id=c, style_id=s))
        ds.eval_feats = feats
        items.append((ds, feats, c, s))
    metric.process({}, [ds for ds, *_ in items[:2]])
    metric.process({}, [ds.to_dict() for ds, *_ in items[2:]])  # dicts, as the Evaluator passes
    out = metric.compute_metrics(metric.results)
    for name in ('plain', 'refined'):
        cl = np.mean([feature_content_loss(f[name]['result_relu4_1'], f[name]['content_relu4_1'])
                      for _, f, _, _ in items])
        sl = np.mean([stats_style_loss(f[name]['result_stats'], f[name]['style_stats'])
                      for _, f, _, _ in items])
        check = style_distance_check(
            np.stack([stats_descriptor(f[name]['result_stats']) for _, f, _, _ in items]),
            [s for *_, s in items], [c for _, _, c, _ in items])
        assert out[f'{name}/content_loss'] == pytest.approx(cl)
        assert out[f'{name}/style_loss'] == pytest.approx(sl)
        assert out[f'{name}/style_triplet_acc'] == pytest.approx(check['style_triplet_acc'])
        assert out[f'{name}/same_style_dist'] == pytest.approx(check['same_style_dist'])
    only = StyleTransferMetric(encoders=['refined'])
    only.process({}, [items[0][0]])
    assert set(only.compute_metrics(only.results)) == {
        'refined/content_loss', 'refined/style_loss', 'refined/same_style_dist',
        'refined/diff_style_dist', 'refined/style_triplet_acc'}


def test_metric_errors():
    metric = StyleTransferMetric(encoders=['refined'])
    with pytest.raises(KeyError, match='with_eval_feats=True'):
        metric.process({}, [BaseDataElement(metainfo=dict(content_id=0, style_id=0))])
    ds = BaseDataElement()
    ds.eval_feats = {'plain': fake_feats(0)}
    with pytest.raises(KeyError, match=r"encoder\(s\) \['refined'\]"):
        metric.process({}, [ds])
    assert metric.compute_metrics([]) == {}


def test_metric_on_model_predictions():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='AdaINStyleTransfer',
                              encoder=dict(type='VGG19Encoder', width=0.125)))
    model.eval()
    g = torch.Generator().manual_seed(0)
    contents = torch.rand(2, 3, 32, 32, generator=g)
    styles = torch.rand(2, 3, 32, 32, generator=g)
    metric = StyleTransferMetric()
    for c in range(2):
        samples = [BaseDataElement(metainfo=dict(content_id=c, style_id=s)) for s in range(2)]
        out = model(dict(content=contents[c:c + 1].expand(2, -1, -1, -1), style=styles), samples,
                    mode='predict')
        metric.process({}, out)
    res = metric.compute_metrics(metric.results)
    assert 0.0 <= res['plain/style_triplet_acc'] <= 1.0
    # recompute the content loss of one prediction directly with the encoder
    with torch.no_grad():
        pred = metric.results[0]['plain']['content_loss']
        result = model.stylize(contents[:1], styles[:1])
        direct = ((model.encoder(result, 'relu4_1')['relu4_1'] -
                   model.encoder(contents[:1], 'relu4_1')['relu4_1'])**2).mean()
    assert pred == pytest.approx(float(direct), rel=1e-5)
