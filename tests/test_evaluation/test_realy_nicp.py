"""Optimal-step non-rigid ICP, checked against a dense least-squares re-computation."""
import math

import numpy as np
import pytest

pytest.importorskip('scipy')
pytest.importorskip('trimesh')

from mmkd_plugins.evaluation.realy import edge_vertex_incidence, optimal_step_nicp  # noqa: E402
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402


def _dense_step(src, faces, alpha, g_diag, data_w, data_tgt, lm_ids, lm_tgt, beta, damping):
    """One optimal step as an explicit dense least-squares problem (rows written out one by one)."""
    n = len(src)
    hom = np.column_stack([src, np.ones(n)])
    edges = {tuple(sorted((int(a), int(b)))) for tri in faces for a, b in ((tri[0], tri[1]),
                                                                          (tri[1], tri[2]),
                                                                          (tri[2], tri[0]))}
    rows, rhs = [], []
    for i, j in sorted(edges):
        for a in range(4):
            r = np.zeros(4 * n)
            r[4 * i + a], r[4 * j + a] = alpha * g_diag[a], -alpha * g_diag[a]
            rows.append(r)
            rhs.append(np.zeros(3))
    for i in range(n):
        r = np.zeros(4 * n)
        r[4 * i:4 * i + 4] = data_w[i] * hom[i]
        rows.append(r)
        rhs.append(data_w[i] * data_tgt[i])
    for l, y in zip(lm_ids, lm_tgt):
        r = np.zeros(4 * n)
        r[4 * l:4 * l + 4] = beta * hom[l]
        rows.append(r)
        rhs.append(beta * y)
    eye = np.vstack([np.eye(3), np.zeros((1, 3))])
    for i in range(n):
        for a in range(4):
            r = np.zeros(4 * n)
            r[4 * i + a] = math.sqrt(damping)
            rows.append(r)
            rhs.append(math.sqrt(damping) * eye[a])
    x = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.einsum('nc,ncd->nd', hom, x.reshape(n, 4, 3))


def _nn(points, cloud):
    d = np.linalg.norm(points[:, None] - cloud[None], axis=2)
    return cloud[d.argmin(1)], d.min(1)


def _tiny_problem():
    v, f, _ = syn.grid_mesh(4, 5)
    rng = np.random.default_rng(0)
    target = v * 1.01 + np.array([0.05, -0.02, 0.1]) + rng.normal(0, 0.02, v.shape)
    return v, f, target


def test_incidence_matrix():
    m = edge_vertex_incidence(np.array([[0, 1, 2], [0, 2, 3]]), 4).toarray()
    assert m.shape == (5, 4)
    np.testing.assert_array_equal(m.sum(1), 0)
    np.testing.assert_array_equal(np.abs(m).sum(1), 2)


def test_one_data_step_equals_dense_least_squares():
    v, f, target = _tiny_problem()
    alpha, damping = 7.0, 1e-6
    got = optimal_step_nicp(v, f, target, stiffness=(alpha,), epsilon=(0.0,), max_steps=1, gamma=0.5,
                            damping=damping)
    tgt, d = _nn(v, target)
    w = (d < max(2 * d.mean(), 1.0)).astype(float)
    want = _dense_step(v, f, alpha, [1, 1, 1, 0.5], w, tgt, [], [], 0.0, damping)
    assert got['steps'] == 1
    np.testing.assert_allclose(got['vertices'], want, atol=1e-7)


def test_landmark_schedule_equals_dense_least_squares():
    """Initial landmark-only step (stiffness 150, G = diag(2, 2, 3, 2 gamma), weight 50), then one data
    step with landmark weight 50 exp(-0.9) / 10."""
    v, f, target = _tiny_problem()
    lm_ids = np.array([0, 7, 13, 19])
    lm_tgt = v[lm_ids] + np.array([0.1, 0.0, -0.05])
    damping = 1e-6
    got = optimal_step_nicp(v, f, target, landmark_ids=lm_ids, landmark_targets=lm_tgt, stiffness=(20.0,),
                            epsilon=(0.0,), max_steps=1, damping=damping)
    zero = np.zeros(len(v))
    after_init = _dense_step(v, f, 150.0, [2, 2, 3, 2], zero, np.zeros_like(v), lm_ids, lm_tgt, 50.0, damping)
    tgt, d = _nn(after_init, target)
    w = (d < max(2 * d.mean(), 1.0)).astype(float)
    want = _dense_step(v, f, 20.0, [1, 1, 1, 1], w, tgt, lm_ids, lm_tgt, 50 * math.exp(-0.9) / 10, damping)
    assert got['steps'] == 2
    np.testing.assert_allclose(got['vertices'], want, atol=1e-6)


def test_nicp_reaches_an_affinely_moved_copy_and_keeps_a_matching_one():
    v, f, _ = syn.grid_mesh(15, 18)
    a = np.array([[1.02, 0.01, 0.0], [0.0, 0.99, 0.02], [0.01, 0.0, 1.01]])
    target = v @ a.T + np.array([0.03, -0.02, 0.05])
    out = optimal_step_nicp(v, f, target, max_steps=30)
    assert np.linalg.norm(out['vertices'] - target, axis=1).mean() < 0.01
    same = optimal_step_nicp(v, f, v)
    np.testing.assert_allclose(same['vertices'], v, atol=1e-5)


def test_nicp_input_errors():
    v, f, _ = syn.grid_mesh(4, 4)
    with pytest.raises(ValueError, match='landmark ids but'):
        optimal_step_nicp(v, f, v, landmark_ids=[0, 1], landmark_targets=v[:1])
    with pytest.raises(ValueError, match=r'landmark ids must be in \[0, 16\)'):
        optimal_step_nicp(v, f, v, landmark_ids=[16], landmark_targets=v[:1])
    with pytest.raises(ValueError, match='one entry per stage'):
        optimal_step_nicp(v, f, v, stiffness=(1.0, 2.0), epsilon=(1.0,))
