"""REALY keypoints (barycentric) and the global similarity alignment."""
import json

import numpy as np
import pytest

pytest.importorskip('scipy')
pytest.importorskip('trimesh')

from mmkd_plugins.evaluation.realy import (GLOBAL_KEYPOINTS, ICP_KEYPOINTS, NICP_KEYPOINTS,  # noqa: E402
                                           REALYTemplate, apply_similarity, barycentric_from_points,
                                           barycentric_keypoints, fit_similarity, global_align,
                                           load_barycentric, save_barycentric)
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402


def _random_bary(num_faces, rng, k=85):
    w = rng.dirichlet(np.ones(3), size=k)
    return np.column_stack([rng.integers(0, num_faces, k), w[:, 0], w[:, 1]]).astype(np.float64)


def _rotation(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.deg2rad(deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def test_region_keypoint_tables_follow_the_spec():
    assert GLOBAL_KEYPOINTS == (36, 39, 42, 45, 33, 48, 54)
    assert sorted(ICP_KEYPOINTS['forehead']) == list(range(17, 27)) + list(range(36, 48))
    assert sorted(ICP_KEYPOINTS['mouth']) == list(range(48, 61)) + [64]
    assert sorted(ICP_KEYPOINTS['nose']) == list(range(27, 36)) + [70, 71]
    assert sorted(ICP_KEYPOINTS['cheek']) == sorted(list(range(48, 61)) + [64, 76, 77, 36, 41, 40, 39, 42,
                                                                           47, 46, 45, 7, 8, 9])
    assert NICP_KEYPOINTS['cheek'] == [] and sorted(NICP_KEYPOINTS['nose']) == list(range(27, 36))


def test_barycentric_keypoints_match_a_loop():
    rng = np.random.default_rng(0)
    v, f, _ = syn.grid_mesh(6, 7)
    bary = _random_bary(len(f), rng)
    got = barycentric_keypoints(v, f, bary)
    for j, (t, w1, w2) in enumerate(bary):
        a, b, c = v[f[int(t)]]
        np.testing.assert_allclose(got[j], w1 * a + w2 * b + (1 - w1 - w2) * c, atol=1e-12)


def test_barycentric_from_points_round_trip_and_file_io(tmp_path):
    rng = np.random.default_rng(1)
    v, f, _ = syn.grid_mesh(8, 9)
    pts = barycentric_keypoints(v, f, _random_bary(len(f), rng))
    bary = barycentric_from_points(v, f, pts + 1e-9)
    np.testing.assert_allclose(barycentric_keypoints(v, f, bary), pts, atol=1e-6)
    path = str(tmp_path / 'tpl.txt')
    save_barycentric(path, bary)
    assert len(json.load(open(path))) == 85
    np.testing.assert_allclose(load_barycentric(path, num_faces=len(f)), bary)


def test_barycentric_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='barycentric keypoint file not found'):
        load_barycentric(str(tmp_path / 'nope.txt'))
    p = tmp_path / 'short.txt'
    p.write_text(json.dumps([[0, 0.2, 0.3]] * 84))
    with pytest.raises(ValueError, match='85 keypoints'):
        load_barycentric(str(p))
    p.write_text(json.dumps([[10, 0.2, 0.3]] * 85))
    with pytest.raises(ValueError, match='triangle indices'):
        load_barycentric(str(p), num_faces=10)


def test_fit_similarity_recovers_known_transform_from_7_points():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(7, 3)) * 3
    rot, s, t = _rotation([0.3, -1, 0.5], 37), 1.7, np.array([4.0, -2.0, 9.0])
    s_hat, r_hat, t_hat = fit_similarity(src, apply_similarity(src, s, rot, t))
    assert s_hat == pytest.approx(s, rel=1e-10)
    np.testing.assert_allclose(r_hat, rot, atol=1e-10)
    np.testing.assert_allclose(t_hat, t, atol=1e-9)


def test_fit_similarity_matches_a_direct_recomputation_of_realys_formula():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(12, 3))
    tgt = apply_similarity(src, 0.8, _rotation([1, 1, 0], 20), np.ones(3)) + 0.05 * rng.normal(size=(12, 3))
    # W = T~^T S~ ; R = U V^T ; s = sum|T~| / sum|R S~| ; t = mean(T - s R S)
    ms, mt = src.mean(0), tgt.mean(0)
    w = np.zeros((3, 3))
    for i in range(len(src)):
        w += np.outer(tgt[i] - mt, src[i] - ms)
    u, _, vt = np.linalg.svd(w)
    r = u @ vt
    s = sum(np.abs(tgt[i] - mt).sum() for i in range(len(src))) / \
        sum(np.abs(r @ (src[i] - ms)).sum() for i in range(len(src)))
    t = np.mean([tgt[i] - s * r @ src[i] for i in range(len(src))], axis=0)
    s_hat, r_hat, t_hat = fit_similarity(src, tgt)
    assert s_hat == pytest.approx(s, rel=1e-10)
    np.testing.assert_allclose(r_hat, r, atol=1e-10)
    np.testing.assert_allclose(t_hat, t, atol=1e-10)
    # rigid variant keeps s = 1
    assert fit_similarity(src, tgt, with_scale=False)[0] == 1.0


def test_integer_weights_equal_replicated_pairs_and_reflections_are_removed():
    rng = np.random.default_rng(4)
    src, tgt = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    wts = rng.integers(1, 5, 10)
    a = fit_similarity(src, tgt, with_scale=False, weights=wts)
    b = fit_similarity(np.repeat(src, wts, 0), np.repeat(tgt, wts, 0), with_scale=False)
    np.testing.assert_allclose(a[1], b[1], atol=1e-10)
    np.testing.assert_allclose(a[2], b[2], atol=1e-10)
    mirrored = src * np.array([-1.0, 1.0, 1.0])
    assert np.linalg.det(fit_similarity(src, mirrored)[1]) == pytest.approx(1.0)
    assert np.linalg.det(fit_similarity(src, mirrored, allow_reflection=True)[1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match='at least 3'):
        fit_similarity(src[:2], tgt[:2])
    with pytest.raises(ValueError, match=r'\(n, 3\)'):
        fit_similarity(src, tgt[:5])


def test_global_align_undoes_a_similarity_of_a_face_mesh():
    v, f, bary = syn.make_template(20, 25)
    tpl = REALYTemplate(faces=f, num_vertices=len(v), barycentric=bary)
    gt_kp = tpl.keypoints(v)
    s, rot, t = syn.random_similarity(5)
    moved = apply_similarity(v, s, rot, t)
    aligned, aligned_kp, (s_hat, _, _) = global_align(moved, tpl.keypoints(moved), gt_kp)
    np.testing.assert_allclose(aligned, v, atol=1e-9)
    np.testing.assert_allclose(aligned_kp, gt_kp, atol=1e-9)
    assert s_hat == pytest.approx(1 / s)
