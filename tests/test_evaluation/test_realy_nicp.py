"""Optimal-step non-rigid ICP, checked against dense least-squares re-computations: one step, the
landmark schedule, and REALY's whole loop (increments on the deformed scan, stop test before each step
carried across stages)."""
import math

import numpy as np
import pytest

pytest.importorskip('scipy')
pytest.importorskip('trimesh')

from mmkd_plugins.evaluation.realy import edge_vertex_incidence, optimal_step_nicp  # noqa: E402
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402


def _dense_solve(src, faces, alpha, g_diag, data_w, data_tgt, lm, beta, damping):
    """One optimal step as an explicit dense least-squares problem (rows written out one by one) for the
    affines X (4N x 3) acting on ``src``; ``lm`` = {vertex: target}. Returns (X, src^T X)."""
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
    for l, y in lm.items():
        r = np.zeros(4 * n)
        r[4 * l:4 * l + 4] = beta * hom[l]
        rows.append(r)
        rhs.append(beta * np.asarray(y))
    eye = np.vstack([np.eye(3), np.zeros((1, 3))])
    for i in range(n):
        for a in range(4):
            r = np.zeros(4 * n)
            r[4 * i + a] = math.sqrt(damping)
            rows.append(r)
            rhs.append(math.sqrt(damping) * eye[a])
    x = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return x, np.einsum('nc,ncd->nd', hom, x.reshape(n, 4, 3))


def _dense_step(*args):
    return _dense_solve(*args)[1]


def _nn(points, cloud):
    d = np.linalg.norm(points[:, None] - cloud[None], axis=2)
    return cloud[d.argmin(1)], d.min(1)


def _data_rows(cur, target):
    tgt, d = _nn(cur, target)
    return (d < max(2 * d.mean(), 1.0)).astype(float), tgt


def _realy_loop(src, faces, target, lm_ids=(), lm_tgt=(), epsilon=1.0, alpha=50.0, damping=1e-8):
    """REALY's nICP_with/without_keypoints.apply() transcribed with dense solves: X starts all-ones and
    X_prev all-zeros; before every step the stage stops if ||X - X_prev|| <= eps (or after 11 steps with
    keypoints); each step solves affines on the CURRENT vertices; the landmark-only stage (stiffness
    150, G = diag(2, 2, 3, 2), weight 50) makes one step; later landmark weight 50 exp(-0.9 c) / 10."""
    n = len(src)
    lm = {int(i): y for i, y in zip(lm_ids, lm_tgt)}  # assignment by index: the last target wins
    cur, x_prev, x = src.copy(), np.zeros((4 * n, 3)), np.ones((4 * n, 3))
    stages = [(150.0, [2, 2, 3, 2], 2 * epsilon, True)] if lm else []
    stages += [(alpha * math.exp(-0.5 * d), [1, 1, 1, 1], epsilon * 0.5 ** d, False) for d in range(3)]
    count, stage_steps = 0, []
    for a, g, eps, lm_only in stages:
        step = 0
        while not (np.linalg.norm(x - x_prev) <= eps or (lm and step > 10)):
            x_prev = x
            if lm_only:
                w, tgt, beta = np.zeros(n), np.zeros((n, 3)), 50.0
            else:
                (w, tgt), beta = _data_rows(cur, target), 50.0 * math.exp(-0.9 * count) / 10.0
            x, cur = _dense_solve(cur, faces, a, g, w, tgt, lm, beta, damping)
            step += 1
            count += 1
            if lm_only:
                break
        stage_steps.append(step)
    return cur, stage_steps


def _tiny_problem():
    v, f, _ = syn.grid_mesh(4, 5)
    rng = np.random.default_rng(0)
    target = v * 1.01 + np.array([0.05, -0.02, 0.1]) + rng.normal(0, 0.02, v.shape)
    return v, f, target


def _wavy_problem():
    v, f, _ = syn.grid_mesh(5, 6)
    rng = np.random.default_rng(0)
    target = v * 1.03 + np.array([0.1, -0.05, 0.2]) + 0.3 * np.sin(3 * v[:, [1, 2, 0]]) \
        + rng.normal(0, 0.02, v.shape)
    return v, f, target


def test_incidence_matrix():
    m = edge_vertex_incidence(np.array([[0, 1, 2], [0, 2, 3]]), 4).toarray()
    assert m.shape == (5, 4)
    np.testing.assert_array_equal(m.sum(1), 0)
    np.testing.assert_array_equal(np.abs(m).sum(1), 2)


@pytest.mark.parametrize('formulation', ['incremental', 'absolute'])
def test_one_data_step_equals_dense_least_squares(formulation):
    v, f, target = _tiny_problem()
    alpha, damping = 7.0, 1e-6
    got = optimal_step_nicp(v, f, target, stiffness=(alpha,), epsilon=(0.0,),
                            max_steps_without_landmarks=1, gamma=0.5, damping=damping,
                            formulation=formulation)
    w, tgt = _data_rows(v, target)
    want = _dense_step(v, f, alpha, [1, 1, 1, 0.5], w, tgt, {}, 0.0, damping)
    assert got['steps'] == 1 and got['stage_steps'] == [1]
    np.testing.assert_allclose(got['vertices'], want, atol=1e-7)


def test_landmark_schedule_equals_dense_least_squares():
    """Initial landmark-only step (stiffness 150, G = diag(2, 2, 3, 2 gamma), weight 50), then one data
    step with landmark weight 50 exp(-0.9) / 10, solved on the deformed vertices (REALY); with
    formulation='absolute' the second step's affines act on the original vertices instead."""
    v, f, target = _tiny_problem()
    lm_ids = np.array([0, 7, 13, 19])
    lm = dict(zip(lm_ids.tolist(), v[lm_ids] + np.array([0.1, 0.0, -0.05])))
    damping = 1e-6
    kw = dict(landmark_ids=lm_ids, landmark_targets=np.array(list(lm.values())), stiffness=(20.0,),
              epsilon=(0.0,), max_steps=1, damping=damping)
    after_init = _dense_step(v, f, 150.0, [2, 2, 3, 2], np.zeros(len(v)), np.zeros_like(v), lm, 50.0, damping)
    w, tgt = _data_rows(after_init, target)
    beta = 50 * math.exp(-0.9) / 10
    got = optimal_step_nicp(v, f, target, **kw)
    want = _dense_step(after_init, f, 20.0, [1, 1, 1, 1], w, tgt, lm, beta, damping)
    assert got['steps'] == 2 and got['stage_steps'] == [1, 1]
    np.testing.assert_allclose(got['vertices'], want, atol=1e-6)

    got_abs = optimal_step_nicp(v, f, target, formulation='absolute', **kw)
    want_abs = _dense_step(v, f, 20.0, [1, 1, 1, 1], w, tgt, lm, beta, damping)
    np.testing.assert_allclose(got_abs['vertices'], want_abs, atol=1e-6)
    assert np.abs(want_abs - want).max() > 1e-4  # the two formulations differ by far more than atol


@pytest.mark.parametrize('with_landmarks', [False, True])
def test_whole_loop_equals_realys_loop(with_landmarks):
    """Default options = REALY's apply(): same vertices and the same number of steps in every stage,
    including stages skipped because the change carried over from the previous stage is small enough."""
    v, f, target = _wavy_problem()
    lm_ids = [0, 7, 13, 19, 25] if with_landmarks else []
    lm_tgt = target[lm_ids] + 0.1 if with_landmarks else []
    got = optimal_step_nicp(v, f, target, landmark_ids=lm_ids or None,
                            landmark_targets=np.asarray(lm_tgt) if with_landmarks else None)
    want, want_steps = _realy_loop(v, f, target, lm_ids, lm_tgt)
    assert got['stage_steps'] == want_steps
    assert 0 in want_steps  # this problem does exercise a skipped stage
    np.testing.assert_allclose(got['vertices'], want, atol=1e-6)


def test_realy_rule_differs_from_the_per_stage_rule():
    """The deviation option stop_rule='per_stage' makes at least one step in every stage."""
    v, f, target = _wavy_problem()
    realy = optimal_step_nicp(v, f, target)
    per_stage = optimal_step_nicp(v, f, target, stop_rule='per_stage', formulation='absolute')
    assert 0 in realy['stage_steps']
    assert min(per_stage['stage_steps']) >= 1 and len(per_stage['stage_steps']) == 3


def test_duplicate_landmark_vertex_keeps_its_last_target():
    v, f, target = _tiny_problem()
    dup = optimal_step_nicp(v, f, target, landmark_ids=[3, 9, 3], landmark_targets=v[[3, 9, 3]] + [[0.2, 0, 0],
                                                                                                   [0, 0.1, 0],
                                                                                                   [0, 0, 0.3]])
    last = optimal_step_nicp(v, f, target, landmark_ids=[9, 3], landmark_targets=v[[9, 3]] + [[0, 0.1, 0],
                                                                                              [0, 0, 0.3]])
    np.testing.assert_allclose(dup['vertices'], last['vertices'], atol=1e-12)


def test_nicp_reaches_an_affinely_moved_copy_and_keeps_a_matching_one():
    v, f, _ = syn.grid_mesh(15, 18)
    a = np.array([[1.02, 0.01, 0.0], [0.0, 0.99, 0.02], [0.01, 0.0, 1.01]])
    target = v @ a.T + np.array([0.03, -0.02, 0.05])
    out = optimal_step_nicp(v, f, target)
    assert np.linalg.norm(out['vertices'] - target, axis=1).mean() < 0.01
    same = optimal_step_nicp(v, f, v)
    np.testing.assert_allclose(same['vertices'], v, atol=1e-5)


def test_step_cap_without_landmarks_warns():
    v, f, target = _tiny_problem()
    with pytest.warns(RuntimeWarning, match='safety cap of 3 steps'):
        out = optimal_step_nicp(v, f, target, stiffness=(7.0,), epsilon=(0.0,), step_limit=3)
    assert out['stage_steps'] == [3]


def test_nicp_input_errors():
    v, f, _ = syn.grid_mesh(4, 4)
    with pytest.raises(ValueError, match='landmark ids but'):
        optimal_step_nicp(v, f, v, landmark_ids=[0, 1], landmark_targets=v[:1])
    with pytest.raises(ValueError, match=r'landmark ids must be in \[0, 16\)'):
        optimal_step_nicp(v, f, v, landmark_ids=[16], landmark_targets=v[:1])
    with pytest.raises(ValueError, match='one entry per stage'):
        optimal_step_nicp(v, f, v, stiffness=(1.0, 2.0), epsilon=(1.0,))
    with pytest.raises(ValueError, match='formulation must be one of'):
        optimal_step_nicp(v, f, v, formulation='relative')
    with pytest.raises(ValueError, match='stop_rule must be one of'):
        optimal_step_nicp(v, f, v, stop_rule='never')
