"""REALY options that follow the official code: the template mask (faces dropped before P* / P**),
the scan region with merged vertices for the error (raw vertices for the rigid ICP), reflections in
the fits, and mesh checks that warn where the official code evaluates."""
import os.path as osp

import numpy as np
import pytest

pytest.importorskip('scipy')
trimesh = pytest.importorskip('trimesh')

from mmkd_plugins.evaluation.metrics.realy import REALYMetric  # noqa: E402
from mmkd_plugins.evaluation.realy import (REGIONS, REALYMeshWarning, REALYTemplate,  # noqa: E402
                                           bidirectional_region_error, evaluate_prediction,
                                           global_align, load_keypoints, load_mesh, load_template_mask,
                                           masked_faces, merge_vertices, region_rigid_icp, validate_mesh)
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402
from mmkd_plugins.evaluation.realy.keypoints import (ICP_KEYPOINTS, NICP_KEYPOINTS,  # noqa: E402
                                                     ICP_KEYPOINT_RATE_DIVISOR)


@pytest.fixture(scope='module')
def subject(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('realy_opts'))
    info = syn.write_benchmark(root, num_subjects=1, scan_res=(30, 36), template_res=(20, 25))
    syn.write_predictions(osp.join(root, 'pred'), info, views=1)
    template = REALYTemplate.from_files(info['template_obj'], info['template_keypoints'])
    pred, _ = load_mesh(osp.join(root, 'pred', '1_0.obj'))
    kp = load_keypoints(osp.join(root, 'REALY_HIFI3D_keypoints', '1.obj'))
    scans = {r: load_mesh(osp.join(root, 'REALY_scan_region', '1', f'{r}.obj')) for r in REGIONS}
    return dict(root=root, info=info, template=template, pred=pred, kp=kp, scans=scans)


# ---------------------------------------------------------------- vertex merging
def test_merge_vertices_equals_trimesh_process():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 3))
    v[30:35] = v[[3, 7, 3, 12, 20]]  # exact duplicates
    v[35] = v[5] + 2e-10  # equal to 8 decimals: merged
    v[36] = v[6] + 1e-6  # a different vertex
    faces = rng.integers(0, 37, size=(60, 3))  # vertices 37..39 unreferenced
    got_v, got_f, kept = merge_vertices(v, faces)
    ref = trimesh.Trimesh(v.astype(np.float32), faces, process=True)  # REALY: float32 OBJ + process=True
    np.testing.assert_array_equal(got_f, ref.faces)
    np.testing.assert_allclose(got_v, ref.vertices, atol=1e-6)
    np.testing.assert_array_equal(got_v, v[kept])
    assert len(got_v) < 37 and 37 not in kept


def test_error_uses_the_merged_region_and_the_icp_the_raw_vertices(subject):
    """A mouth scan split along a seam (duplicated vertices) plus an unreferenced vertex: the rigid ICP
    sees every vertex of the file, the error only the merged region (trimesh process=True)."""
    t, kp = subject['template'], subject['kp']
    v, f = subject['scans']['mouth']
    n = len(v)
    seam = np.unique(f[: len(f) // 2, 0])
    v_raw = np.vstack([v, v[seam], v.mean(0) + [0.0, 0.0, 0.3]])
    f_raw = f.copy()
    f_raw[: len(f) // 2, 0] = n + np.searchsorted(seam, f[: len(f) // 2, 0])
    out = evaluate_prediction(subject['pred'], t, kp, {'mouth': (v_raw, f_raw)}, regions=('mouth',),
                              return_details=True)
    det = out['details']['mouth']
    ref = trimesh.Trimesh(v_raw, f_raw, process=True)
    np.testing.assert_array_equal(det['scan_faces'], ref.faces)
    np.testing.assert_allclose(det['scan_vertices'], ref.vertices)
    assert len(det['scan_vertices']) == n

    pred_g, kp_g, _ = global_align(subject['pred'], t.keypoints(subject['pred']), kp)
    ids = ICP_KEYPOINTS['mouth']
    icp = region_rigid_icp(pred_g, t.faces, v_raw, kp_g[ids], kp[ids],
                           keypoint_rate_divisor=ICP_KEYPOINT_RATE_DIVISOR['mouth'])
    np.testing.assert_allclose(det['aligned_vertices'], icp['vertices'], atol=1e-9)
    nk = NICP_KEYPOINTS['mouth']
    kp_a = kp_g @ icp['rotation'].T + icp['translation']
    want = bidirectional_region_error(icp['vertices'], t.faces, ref.vertices, ref.faces, kp_a[nk], kp[nk])
    assert out['errors']['mouth'] == pytest.approx(want['error'], rel=1e-9)
    raw = evaluate_prediction(subject['pred'], t, kp, {'mouth': (v_raw, f_raw)}, regions=('mouth',),
                              merge_scan_vertices=False)
    assert raw['errors']['mouth'] != pytest.approx(out['errors']['mouth'], rel=1e-6)


# ---------------------------------------------------------------- template mask
def test_template_mask_file(tmp_path):
    p = tmp_path / 'mask.txt'
    p.write_text('1,0,1,1\n')
    np.testing.assert_array_equal(load_template_mask(str(p), 4), [True, False, True, True])
    p.write_text('1\n0\n1\n1\n1\n')
    with pytest.warns(REALYMeshWarning, match='5 values for 4 template vertices'):
        np.testing.assert_array_equal(load_template_mask(str(p), 4), [True, False, True, True])
    with pytest.raises(ValueError, match='has 5 values but the template has 6 vertices'):
        load_template_mask(str(p), 6)
    with pytest.raises(FileNotFoundError, match='template mask file not found'):
        load_template_mask(str(tmp_path / 'none.txt'), 4)
    np.testing.assert_array_equal(masked_faces(np.array([[0, 1, 2], [0, 2, 3], [2, 3, 0]]),
                                               np.array([1, 0, 1, 1])), [[0, 2, 3], [2, 3, 0]])


def test_template_mask_drops_faces_for_the_closest_points_only(subject, tmp_path):
    t, kp, pred = subject['template'], subject['kp'], subject['pred']
    tv, _ = load_mesh(subject['info']['template_obj'])
    keep = tv[:, 0] < np.quantile(tv[:, 0], 0.7)  # drop one side of the face
    mask_path = tmp_path / 'mask.txt'
    mask_path.write_text('\n'.join(str(int(k)) for k in keep))
    tm = REALYTemplate.from_files(subject['info']['template_obj'], subject['info']['template_keypoints'],
                                  mask_path=str(mask_path))
    full = evaluate_prediction(pred, t, kp, subject['scans'], regions=('cheek',), return_details=True)
    masked = evaluate_prediction(pred, tm, kp, subject['scans'], regions=('cheek',), return_details=True)
    # the alignments use every face ...
    np.testing.assert_allclose(masked['details']['cheek']['aligned_vertices'],
                               full['details']['cheek']['aligned_vertices'], atol=1e-12)
    # ... P* and P** only the kept ones
    sv, sf = masked['details']['cheek']['scan_vertices'], masked['details']['cheek']['scan_faces']
    want = bidirectional_region_error(full['details']['cheek']['aligned_vertices'], t.faces[keep[t.faces].all(1)],
                                      sv, sf)
    assert masked['errors']['cheek'] == pytest.approx(want['error'], rel=1e-9)
    assert masked['errors']['cheek'] > full['errors']['cheek'] + 0.05
    # the metric takes the mask file
    metric = REALYMetric(subject['info']['template_obj'], subject['info']['template_keypoints'],
                         regions=('cheek',), template_mask=str(mask_path))
    res = metric.evaluate_sample(dict(pred_vertices=pred, gt_keypoints=kp, region_scans=subject['scans'],
                                      metric_scale=1.0, img_id='1_0'))
    assert res['errors']['cheek'] == pytest.approx(masked['errors']['cheek'], rel=1e-9)
    mask_path.write_text('\n'.join('0' for _ in keep))
    with pytest.raises(ValueError, match='the template mask keeps no face'):
        REALYTemplate.from_files(subject['info']['template_obj'], subject['info']['template_keypoints'],
                                 mask_path=str(mask_path))


# ---------------------------------------------------------------- reflections
def test_allow_reflection_reaches_the_fits_through_the_metric(subject):
    """A mirrored prediction: REALY's fits (reflections kept) undo the mirror and score it like the
    original; the corrected fits (``allow_reflection=False``) cannot. REALY's is the default."""
    kp, pred, scans = subject['kp'], subject['pred'], subject['scans']
    mirrored = pred * np.array([-1.0, 1.0, 1.0])
    sample = dict(gt_keypoints=kp, region_scans=scans, metric_scale=1.0, img_id='1_0')
    args = (subject['info']['template_obj'], subject['info']['template_keypoints'])
    realy = REALYMetric(*args)
    corrected = REALYMetric(*args, allow_reflection=False)
    orig = corrected.evaluate_sample(dict(sample, pred_vertices=pred))['errors']
    mirror_realy = realy.evaluate_sample(dict(sample, pred_vertices=mirrored))['errors']
    mirror_corr = corrected.evaluate_sample(dict(sample, pred_vertices=mirrored))['errors']
    for region in REGIONS:
        assert mirror_realy[region] == pytest.approx(orig[region], abs=1e-6), region
    assert np.mean(list(mirror_corr.values())) > np.mean(list(orig.values())) + 0.1


# ---------------------------------------------------------------- mesh checks
def test_degenerate_and_non_manifold_meshes_warn_unless_strict(subject):
    v, f = subject['scans']['nose']
    fin = np.vstack([v, v[f[0, :2]].mean(0) + [0, 0, 0.1]])
    bad_f = np.vstack([f, [f[0, 0], f[0, 1], len(v)], [f[1, 0], f[1, 0], f[1, 2]]])
    with pytest.warns(REALYMeshWarning, match=r'nose\.obj: 1 degenerate faces .*non-manifold: 1 edges'):
        validate_mesh(fin, bad_f, name='nose.obj')
    with pytest.raises(ValueError, match=r'nose\.obj: 1 degenerate faces.*strict'):
        validate_mesh(fin, bad_f, name='nose.obj', strict=True)
    # evaluated as the official code does: a number, not an error
    t, kp, pred = subject['template'], subject['kp'], subject['pred']
    degenerate_t = REALYTemplate(faces=np.vstack([t.faces, [[0, 0, 1]]]), num_vertices=t.num_vertices,
                                 barycentric=t.barycentric)
    out = evaluate_prediction(pred, degenerate_t, kp, {'nose': (fin, bad_f)}, regions=('nose',))
    assert np.isfinite(out['errors']['nose']) and out['errors']['nose'] < 0.5
