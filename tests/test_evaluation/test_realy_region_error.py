"""Bidirectional region error: ~0 for a prediction of the scanned surface, and the offset for a
prediction offset by a known distance along its normals."""
import numpy as np
import pytest

pytest.importorskip('scipy')
trimesh = pytest.importorskip('trimesh')

from mmkd_plugins.evaluation.realy import bidirectional_region_error, error_colors  # noqa: E402
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402

SCALE = 9.0  # scan units -> mm


@pytest.fixture(scope='module')
def face():
    ident = syn.random_identity(11)
    v, f, _ = syn.grid_mesh(40, 50, ident)
    sv, sf, suv, _ = syn.scan_mesh(60, 75, ident, seed=2)
    regions = {r: syn.crop_region(sv, sf, suv, r) for r in ('nose', 'mouth', 'cheek')}
    normals = trimesh.Trimesh(v, f, process=False).vertex_normals
    return v, f, regions, normals


def test_prediction_of_the_scanned_surface_scores_about_zero(face):
    v, f, regions, _ = face
    for region, (rv, rf) in regions.items():
        res = bidirectional_region_error(v, f, rv, rf, scale=SCALE)
        # only the piecewise-linear discretisation of the prediction remains (~0.1 mm on the nose)
        assert res['error'] < 0.15, region
        assert res['vertex_errors'].shape == (len(rv),)
        assert res['error'] == pytest.approx(res['vertex_errors'].mean())


@pytest.mark.parametrize('delta', [0.05, 0.2])
def test_uniform_normal_offset_gives_the_offset_in_mm(face, delta):
    v, f, regions, normals = face
    for region, (rv, rf) in regions.items():
        res = bidirectional_region_error(v + delta * normals, f, rv, rf, scale=SCALE)
        # up to the discretisation floor (the error of the un-offset prediction, ~0.1 mm on the convex
        # nose where chords lie inside the scanned surface) and 3 %
        floor = bidirectional_region_error(v, f, rv, rf, scale=SCALE)['error']
        assert abs(res['error'] - delta * SCALE) <= floor + 0.03 * delta * SCALE, region
        # the error is measured against the ORIGINAL scan vertices
        np.testing.assert_allclose(res['vertex_errors'],
                                   np.linalg.norm(res['correspondences'] - rv, axis=1) * SCALE)


def test_error_is_linear_in_the_metric_scale_and_keypoints_are_checked(face):
    v, f, regions, normals = face
    rv, rf = regions['mouth']
    e1 = bidirectional_region_error(v + 0.1 * normals, f, rv, rf, scale=1.0)['error']
    e3 = bidirectional_region_error(v + 0.1 * normals, f, rv, rf, scale=3.0)['error']
    assert e3 == pytest.approx(3 * e1)
    with pytest.raises(ValueError, match='gt_keypoints must match'):
        bidirectional_region_error(v, f, rv, rf, pred_keypoints=np.zeros((3, 3)), gt_keypoints=None)


def test_error_colors_ramp():
    c = error_colors(np.array([0.0, 2.5, 5.0, 50.0]), vmax=5.0)
    assert c.shape == (4, 4) and c.dtype == np.uint8
    assert c[0, 2] > 100 and c[0, 0] == 0  # blue at 0
    assert c[2, 0] > 100 and c[2, 2] == 0  # red at vmax
    np.testing.assert_array_equal(c[2], c[3])  # clipped above vmax
    assert c[1, 1] == 255  # green in the middle
