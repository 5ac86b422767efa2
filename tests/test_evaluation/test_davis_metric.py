"""DAVISMetric: J, F, recall, decay and J&F vs. direct re-computation on hand-made masks."""
import math

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from mmkd_plugins.evaluation.metrics.davis import (DAVISMetric, db_eval_boundary, db_eval_iou,
                                                   db_statistics, disk, evaluate_sequence, f_measure,
                                                   seg2bmap)


# ------------------------------------------------------------ direct re-computations (loops)
def direct_iou(gt, pred):
    inter = union = 0
    for g, p in zip(gt.flatten(), pred.flatten()):
        inter += int(g and p)
        union += int(g or p)
    return 1.0 if union == 0 else inter / union


def direct_boundary(seg):
    """Boundary pixels by explicit neighbour comparisons (right, down, down-right)."""
    h, w = seg.shape
    b = np.zeros_like(seg, dtype=bool)
    for i in range(h):
        for j in range(w):
            if i == h - 1 and j == w - 1:
                continue
            if i == h - 1:
                b[i, j] = seg[i, j] != seg[i, j + 1]
            elif j == w - 1:
                b[i, j] = seg[i, j] != seg[i + 1, j]
            else:
                b[i, j] = (seg[i, j] != seg[i, j + 1]) or (seg[i, j] != seg[i + 1, j]) or \
                    (seg[i, j] != seg[i + 1, j + 1])
    return b


def direct_dilate(b, r):
    """A pixel is in the dilation when a boundary pixel lies within Euclidean distance r."""
    pts = np.argwhere(b)
    if len(pts) == 0:
        return np.zeros_like(b)
    yy, xx = np.mgrid[0:b.shape[0], 0:b.shape[1]]
    d2 = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    return (d2 <= r * r).any(-1)


def direct_f(pred, gt, r=None):
    if r is None:
        r = math.ceil(0.008 * math.sqrt(pred.shape[0] ** 2 + pred.shape[1] ** 2))
    bp, bg = direct_boundary(pred), direct_boundary(gt)
    if bp.sum() == 0 and bg.sum() > 0:
        p, rc = 1.0, 0.0
    elif bp.sum() > 0 and bg.sum() == 0:
        p, rc = 0.0, 1.0
    elif bp.sum() == 0 and bg.sum() == 0:
        p, rc = 1.0, 1.0
    else:
        p = (bp & direct_dilate(bg, r)).sum() / bp.sum()
        rc = (bg & direct_dilate(bp, r)).sum() / bg.sum()
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def random_blob(rng, h, w):
    m = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        cy, cx, ry, rx = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 12), rng.integers(2, 12)
        yy, xx = np.mgrid[0:h, 0:w]
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return m


# ------------------------------------------------------------ tests
def test_iou_hand_made_and_empty():
    gt = np.zeros((20, 20), bool)
    gt[0:10, 0:10] = True
    pred = np.zeros((20, 20), bool)
    pred[0:10, 5:15] = True
    assert db_eval_iou(gt, pred) == pytest.approx(50 / 150)
    assert db_eval_iou(gt, gt) == 1.0
    empty = np.zeros_like(gt)
    assert db_eval_iou(empty, empty) == 1.0  # empty union -> 1
    assert db_eval_iou(gt, empty) == 0.0 and db_eval_iou(empty, gt) == 0.0
    stack = db_eval_iou(np.stack([gt, empty]), np.stack([pred, empty]))
    np.testing.assert_allclose(stack, [1 / 3, 1.0])
    with pytest.raises(ValueError, match='differ'):
        db_eval_iou(gt, gt[:5])


def test_seg2bmap_matches_direct():
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = random_blob(rng, 17, 23)
        np.testing.assert_array_equal(seg2bmap(m), direct_boundary(m))
    full = np.ones((5, 6), bool)
    assert not seg2bmap(full).any()  # the image border is not a boundary
    single = np.zeros((5, 6), bool)
    single[2, 3] = True
    assert seg2bmap(single).sum() == 4  # itself, left, up and up-left neighbours differ


def test_disk_is_euclidean():
    d = disk(2)
    assert d.shape == (5, 5) and d.sum() == 13
    assert d[0, 2] and not d[0, 1]


@pytest.mark.parametrize('shape', [(60, 80), (130, 150)])
def test_f_measure_matches_direct(shape):
    rng = np.random.default_rng(1)
    for _ in range(4):
        gt, pred = random_blob(rng, *shape), random_blob(rng, *shape)
        assert f_measure(pred, gt) == pytest.approx(direct_f(pred, gt))
    gt = random_blob(rng, *shape)
    shifted = np.roll(gt, 2, axis=1)  # within the tolerance of ceil(0.008 * diag) = 2 px (130x150)
    assert f_measure(shifted, gt) == pytest.approx(direct_f(shifted, gt))
    assert f_measure(gt, gt) == 1.0
    # tolerance in pixels when bound_th >= 1
    assert f_measure(pred, gt, bound_th=3) == pytest.approx(direct_f(pred, gt, r=3))


def test_f_measure_empty_cases():
    gt = np.zeros((30, 30), bool)
    gt[5:15, 5:15] = True
    empty = np.zeros_like(gt)
    assert f_measure(empty, gt) == 0.0  # (P, R) = (1, 0)
    assert f_measure(gt, empty) == 0.0  # (P, R) = (0, 1)
    assert f_measure(empty, empty) == 1.0  # (1, 1)
    far = np.zeros_like(gt)
    far[20:28, 20:28] = True
    assert f_measure(far, gt) == 0.0  # P + R == 0
    np.testing.assert_allclose(db_eval_boundary(np.stack([gt, gt]), np.stack([gt, empty])), [1, 0])


def test_statistics_hand_computed_bins():
    x = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    mean, recall, decay = db_statistics(x)
    assert mean == pytest.approx(x.mean())
    assert recall == pytest.approx(4 / 8)  # strictly greater than 0.5
    # N = 8: linspace(1, 8, 5) = [1, 2.75, 4.5, 6.25, 8] -> ids [0, 2, 4, 5, 7];
    # first bin x[0:3], last bin x[5:8]
    assert decay == pytest.approx(np.mean([0.9, 0.8, 0.7]) - np.mean([0.4, 0.3, 0.2]))
    # longer than 256 frames (the reference's uint8 ids would wrap): N = 400 -> ids [0,100,200,299,399]
    y = np.linspace(1, 0, 400)
    assert db_statistics(y)[2] == pytest.approx(y[0:101].mean() - y[299:400].mean())


def _labels(rng, t, h, w, k):
    lab = np.zeros((t, h, w), np.int64)
    for i in range(t):
        for o in range(1, k + 1):
            lab[i][random_blob(rng, h, w)] = o
    return lab


def test_evaluate_sequence_protocol():
    rng = np.random.default_rng(2)
    gt = _labels(rng, 7, 40, 50, 2)
    gt[0][:2, :2] = 0
    gt[0][5:15, 5:15] = 1
    gt[0][20:30, 20:30] = 2  # both objects in the first frame
    pred = _labels(rng, 7, 40, 50, 2)
    j, f = evaluate_sequence(gt, pred)
    assert j.shape == (2, 5) and f.shape == (2, 5)  # first and last frame dropped
    for o in range(2):
        for i in range(5):
            assert j[o, i] == pytest.approx(direct_iou(gt[i + 1] == o + 1, pred[i + 1] == o + 1))
            assert f[o, i] == pytest.approx(direct_f(pred[i + 1] == o + 1, gt[i + 1] == o + 1))
    # an object missing from the prediction counts as an empty mask
    pred1 = np.where(pred == 2, 0, pred)
    j1, f1 = evaluate_sequence(gt, pred1)
    expected = [direct_iou(gt[i] == 2, np.zeros_like(gt[i], bool)) for i in range(1, 6)]
    np.testing.assert_allclose(j1[1], expected)
    # void (255) is background
    gt_void = gt.copy()
    gt_void[3][0, 0] = 255
    evaluate_sequence(gt_void, pred)
    with pytest.raises(ValueError, match='only 2 objects'):
        evaluate_sequence(gt, np.where(pred == 2, 3, pred))
    with pytest.raises(ValueError, match='at least 3 frames'):
        evaluate_sequence(gt[:2], pred[:2])
    with pytest.raises(ValueError, match='equal'):
        evaluate_sequence(gt, pred[:, :10])


def test_metric_overall_matches_direct():
    rng = np.random.default_rng(3)
    videos = []
    for name, k, t in (('v1', 2, 6), ('v2', 1, 9)):
        gt = _labels(rng, t, 36, 44, k)
        gt[0][2:12, 2:12] = 1
        if k == 2:
            gt[0][20:30, 20:30] = 2
        pred = gt.copy()
        pred[2:] = _labels(rng, t - 2, 36, 44, k)  # frames 0 and 1 exact, the rest random
        pred[-1] = 0
        videos.append((name, gt, pred))
    metric = DAVISMetric()
    samples = []
    for name, gt, pred in videos:
        s = BaseDataElement(metainfo=dict(video=name))
        s.gt_masks, s.pred_masks = torch.from_numpy(gt), torch.from_numpy(pred).to(torch.uint8)
        samples.append(s)
    metric.process({}, samples[:1])
    metric.process({}, samples[1:])
    res = metric.evaluate(2)

    per = {'J': [], 'F': []}
    for name, gt, pred in videos:
        for o in range(1, int(gt[0].max()) + 1):
            js = [direct_iou(gt[i] == o, pred[i] == o) for i in range(1, len(gt) - 1)]
            fs = [direct_f(pred[i] == o, gt[i] == o) for i in range(1, len(gt) - 1)]
            per['J'].append(js)
            per['F'].append(fs)

    def decay(v):
        n = len(v)
        ids = [int(round(1 + q * (n - 1) / 4 + 1e-10)) - 1 for q in range(5)]
        return np.mean(v[ids[0]:ids[1] + 1]) - np.mean(v[ids[3]:ids[4] + 1])
    for m in ('J', 'F'):
        assert res[f'davis/{m}-Mean'] == pytest.approx(100 * np.mean([np.mean(v) for v in per[m]]))
        assert res[f'davis/{m}-Recall'] == pytest.approx(
            100 * np.mean([np.mean(np.array(v) > 0.5) for v in per[m]]))
        assert res[f'davis/{m}-Decay'] == pytest.approx(100 * np.mean([decay(v) for v in per[m]]))
    assert res['davis/J&F-Mean'] == pytest.approx((res['davis/J-Mean'] + res['davis/F-Mean']) / 2)
    assert set(metric.per_object) == {'v1_1', 'v1_2', 'v2_1'}
    assert metric.per_object['v1_2']['J'] == pytest.approx(100 * np.mean(per['J'][1]))


def test_metric_perfect_prediction_and_csv(tmp_path):
    rng = np.random.default_rng(4)
    gt = _labels(rng, 5, 30, 30, 2)
    gt[0][1:8, 1:8] = 1
    gt[0][15:25, 15:25] = 2
    metric = DAVISMetric(output_dir=str(tmp_path), scale=1.0)
    metric.process({}, [dict(video='p', gt_masks=gt, pred_masks=gt)])
    res = metric.evaluate(1)
    assert res['davis/J&F-Mean'] == 1.0 and res['davis/J-Decay'] == 0.0
    assert (tmp_path / 'global_results.csv').read_text().startswith('J&F-Mean')
    assert 'p_2' in (tmp_path / 'per-sequence_results.csv').read_text()
    with pytest.raises(KeyError, match='pred_masks'):
        DAVISMetric().process({}, [dict(video='p', gt_masks=gt)])
