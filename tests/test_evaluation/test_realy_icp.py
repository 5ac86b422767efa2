"""Closest points on a surface and the region-wise rigid ICP of REALY."""
import numpy as np
import pytest

pytest.importorskip('scipy')
trimesh = pytest.importorskip('trimesh')

from mmkd_plugins.evaluation.realy import (ICP_KEYPOINTS, REALYTemplate, MovedProximity,  # noqa: E402
                                           SurfaceProximity, apply_similarity, region_rigid_icp)
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402


def _rotation(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.deg2rad(deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _brute_force_closest(tris, q):
    """Independent check: project every query on EVERY triangle, keep the nearest."""
    best = np.full(len(q), np.inf)
    for i, p in enumerate(q):
        cp = trimesh.triangles.closest_point(tris, np.repeat(p[None], len(tris), 0))
        best[i] = np.linalg.norm(cp - p, axis=1).min()
    return best


def test_closest_points_are_exact_on_the_surface_not_the_vertices():
    v, f, _ = syn.grid_mesh(12, 14)
    # make triangle sizes uneven so that the radius bins matter
    v = v * np.where(v[:, :1] > 0, 1.6, 1.0)
    rng = np.random.default_rng(0)
    q = np.concatenate([v[rng.integers(0, len(v), 60)] + rng.normal(0, 0.8, (60, 3)),
                        rng.uniform(-20, 20, (20, 3))])
    cp, d, tri = SurfaceProximity(v, f, num_bins=3, chunk_size=16).query(q)
    np.testing.assert_allclose(d, _brute_force_closest(v[f], q), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(cp - q, axis=1), d, atol=1e-9)
    # the returned triangle holds the returned point
    on_tri = trimesh.triangles.closest_point(v[f[tri]], cp)
    np.testing.assert_allclose(on_tri, cp, atol=1e-9)
    # points in the middle of a face are their own closest points (a vertex query would miss them)
    mid = v[f[:30]].mean(1)
    np.testing.assert_allclose(SurfaceProximity(v, f).query(mid)[1], 0, atol=1e-12)


def test_moved_proximity_equals_a_rebuilt_index():
    v, f, _ = syn.grid_mesh(10, 10)
    rot, t = _rotation([1, 2, 3], 30), np.array([1.0, -2.0, 0.5])
    q = np.random.default_rng(1).normal(0, 5, (50, 3))
    a = MovedProximity(SurfaceProximity(v, f), rot, t).query(q)
    b = SurfaceProximity(apply_similarity(v, 1.0, rot, t), f).query(q)
    np.testing.assert_allclose(a[0], b[0], atol=1e-9)
    np.testing.assert_allclose(a[1], b[1], atol=1e-9)


@pytest.mark.parametrize('region', ['forehead', 'nose'])
def test_rigid_icp_recovers_a_known_rigid_motion_of_a_face_mesh(region):
    v, f, bary = syn.make_template(30, 38)
    tpl = REALYTemplate(faces=f, num_vertices=len(v), barycentric=bary)
    sv, sf, suv, _ = syn.scan_mesh(45, 56, seed=3)
    scan_v, _ = syn.crop_region(sv, sf, suv, region)
    kp_ids = ICP_KEYPOINTS[region]
    gt_kp = tpl.keypoints(v)[kp_ids]
    rot, t = _rotation([0.2, 1.0, -0.3], 6.0), np.array([0.4, -0.3, 0.25])
    moved = apply_similarity(v, 1.0, rot, t)
    out = region_rigid_icp(moved, f, scan_v, tpl.keypoints(moved)[kp_ids], gt_kp)
    # the motion found undoes the known one (up to the discretisation of the surfaces)
    np.testing.assert_allclose(out['rotation'] @ rot, np.eye(3), atol=2e-3)
    assert np.abs(out['vertices'] - v).max() < 0.02  # scan units (~0.2 mm), motion was ~5 units at the rim
    assert np.abs(moved - v).max() > 0.5
    assert 1 <= out['iterations'] < 100
    # without keypoints the surface term alone gets most of the way (point-to-point ICP converges slowly)
    out2 = region_rigid_icp(moved, f, scan_v, np.zeros((0, 3)), np.zeros((0, 3)), max_iter=300)
    before = np.linalg.norm(moved - v, axis=1).mean()
    assert np.linalg.norm(out2['vertices'] - v, axis=1).mean() < 0.1 * before


def test_rigid_icp_respects_max_iter_and_checks_inputs():
    v, f, _ = syn.grid_mesh(10, 12)
    moved = v + np.array([0.5, 0.0, 0.0])
    out = region_rigid_icp(moved, f, v[::3], np.zeros((0, 3)), np.zeros((0, 3)), max_iter=0)
    np.testing.assert_allclose(out['vertices'], moved)
    assert out['iterations'] == 0
    with pytest.raises(ValueError, match='keypoint shapes differ'):
        region_rigid_icp(v, f, v, np.zeros((3, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match='need >= 3'):
        region_rigid_icp(v, f, v[:2], np.zeros((0, 3)), np.zeros((0, 3)))
