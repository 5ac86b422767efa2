"""REALYDataset: the benchmark layout, prediction folders and clear errors for bad inputs."""
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip('scipy')
pytest.importorskip('trimesh')

from mmkd_plugins.datasets.realy import REALYDataset  # noqa: E402
from mmkd_plugins.evaluation.realy import (REGIONS, REALYMeshWarning, load_mesh, load_metric_scales,  # noqa: E402
                                           read_obj)
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('realy_ds'))
    info = syn.write_benchmark(root, num_subjects=2, scan_res=(30, 36), template_res=(20, 25))
    syn.write_predictions(osp.join(root, 'pred'), info, views=2)
    return root, info


def _copy(bench, tmp_path):
    dst = str(tmp_path / 'copy')
    shutil.copytree(bench[0], dst)
    return dst


def test_layout_items_and_arrays(bench):
    root, info = bench
    ds = REALYDataset(root, pred_root=osp.join(root, 'pred'))
    assert len(ds) == 4
    assert [ds.get_data_info(i)['img_id'] for i in range(4)] == ['1_0', '1_1', '2_0', '2_1']
    item = ds[2]
    sample = item['data_samples']
    assert sample.subject == '2' and sample.metric_scale == pytest.approx(info['scales'][2], abs=1e-6)
    assert sample.gt_keypoints.shape == (85, 3)
    assert set(sample.region_scans) == set(REGIONS)
    v, f = sample.region_scans['nose']
    v_ref, f_ref = read_obj(osp.join(root, 'REALY_scan_region', '2', 'nose.obj'))
    np.testing.assert_array_equal(v, v_ref)
    np.testing.assert_array_equal(f, f_ref)
    assert isinstance(item['inputs'], torch.Tensor) and item['inputs'].shape == (20 * 25, 3)
    np.testing.assert_allclose(item['inputs'].numpy(), sample.pred_vertices, rtol=1e-6, atol=1e-5)
    # without predictions: one item per subject, paths only when asked
    subjects = REALYDataset(root, load_meshes=False)
    assert len(subjects) == 2 and 'gt_keypoints' not in subjects[0]['data_samples']


def test_image_folder_mode(bench, tmp_path):
    root, _ = bench
    for name in ('2_frontal.jpg', '1_left.png', 'notes.txt'):
        (tmp_path / name).write_bytes(b'')
    ds = REALYDataset(root, img_dir=str(tmp_path), load_meshes=False)
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == ['1_left', '2_frontal']
    assert ds.get_data_info(0)['img_path'].endswith('1_left.png')


def test_metric_scale_formats(tmp_path):
    p = tmp_path / 's.txt'
    p.write_text('8.5\n9.25\n')
    assert load_metric_scales(str(p)) == {'1': 8.5, '2': 9.25}
    p.write_text('# subject scale\nm01 8.5\nm02 9.0\n')
    assert load_metric_scales(str(p)) == {'m01': 8.5, 'm02': 9.0}
    p.write_text('1 2 3\n')
    with pytest.raises(ValueError, match='should be'):
        load_metric_scales(str(p))
    p.write_text('-1\n')
    with pytest.raises(ValueError, match='positive'):
        load_metric_scales(str(p))


def test_missing_region_file_is_named(bench, tmp_path):
    root = _copy(bench, tmp_path)
    os.remove(osp.join(root, 'REALY_scan_region', '2', 'cheek.obj'))
    with pytest.raises(FileNotFoundError, match=r'missing region scan for subject 2: .*2[/\\]cheek\.obj'):
        REALYDataset(root, pred_root=osp.join(root, 'pred'))
    # evaluating only the other regions is fine
    assert len(REALYDataset(root, pred_root=osp.join(root, 'pred'), regions=('nose', 'mouth'))) == 4


def test_missing_keypoints_scale_and_unknown_subject(bench, tmp_path):
    root = _copy(bench, tmp_path)
    os.remove(osp.join(root, 'REALY_HIFI3D_keypoints', '1.obj'))
    with pytest.raises(FileNotFoundError, match='keypoint file of subject 1'):
        REALYDataset(root)
    root2 = str(tmp_path / 'c2')
    shutil.copytree(bench[0], root2)
    with open(osp.join(root2, 'metrical_scale.txt'), 'w') as f:
        f.write('9.0\n')
    with pytest.raises(KeyError, match='no metric scale for subject 2'):
        REALYDataset(root2)
    shutil.copy(osp.join(bench[0], 'metrical_scale.txt'), osp.join(root2, 'metrical_scale.txt'))
    syn.write_obj(osp.join(root2, 'pred', '7_0.obj'), np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(FileNotFoundError, match='refers to subject 7'):
        REALYDataset(root2, pred_root=osp.join(root2, 'pred'))


def test_non_manifold_and_degenerate_meshes_warn_unless_strict_and_broken_ones_fail(bench, tmp_path):
    root = _copy(bench, tmp_path)
    path = osp.join(root, 'REALY_scan_region', '1', 'nose.obj')
    v, f = read_obj(path)
    # a third and fourth face on the edge of face 0 (a 'fin'): edge shared by > 2 faces
    extra_v = np.vstack([v, v[f[0, :2]].mean(0) + [0, 0, 1.0], v[f[0, :2]].mean(0) + [0, 0, -1.0]])
    extra_f = np.vstack([f, [f[0, 0], f[0, 1], len(v)], [f[0, 1], f[0, 0], len(v) + 1]])
    syn.write_obj(path, extra_v, extra_f)
    # the official code evaluates it: a warning naming the file and the count, and the arrays
    with pytest.warns(REALYMeshWarning, match=r'1/nose.obj: the mesh is non-manifold: 1 edges are shared'):
        sample = REALYDataset(root, pred_root=osp.join(root, 'pred'))[0]['data_samples']
    assert sample.region_scans['nose'][1].shape == extra_f.shape
    ds = REALYDataset(root, pred_root=osp.join(root, 'pred'), strict_mesh_checks=True)
    with pytest.raises(ValueError, match='nose.obj: the mesh is non-manifold'):
        ds[0]
    syn.write_obj(path, v, np.vstack([f, [0, 0, 1]]))
    with pytest.warns(REALYMeshWarning, match=r'nose.obj: 1 degenerate faces'):
        load_mesh(path)
    with pytest.raises(ValueError, match='degenerate faces'):
        load_mesh(path, strict=True)
    syn.write_obj(path, v)
    with pytest.raises(ValueError, match='no faces'):
        load_mesh(path)
    with open(path, 'w') as fh:
        fh.write('v 0 0 0\nv 1 0 x\n')
    with pytest.raises(ValueError, match=r'nose.obj:2: malformed'):
        load_mesh(path)
    with pytest.raises(FileNotFoundError, match='mesh file not found'):
        load_mesh(str(tmp_path / 'none.obj'))


def test_read_obj_keeps_vertex_order_with_texture_records_and_quads(tmp_path):
    p = tmp_path / 'q.obj'
    p.write_text('v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 9 9 9\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n'
                 'f 1/1 2/2 3/3 4/4\nf -5//1 -2//1 -1//1\n')
    v, f = read_obj(str(p))
    assert v.shape == (5, 3) and v[4, 0] == 9
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3], [0, 3, 4]])


def test_config_builds_dataset_and_metric(bench):
    from mmengine.config import Config
    from mmengine.registry import DATASETS, METRICS

    import mmkd_plugins  # noqa: F401  (registration, as custom_imports does)
    root, info = bench
    cfg_path = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs', 'realy',
                        'realy_eval.py')
    cfg = Config.fromfile(cfg_path)
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.update(data_root=root, pred_root=osp.join(root, 'pred'), img_dir=None)
    ds = DATASETS.build(ds_cfg)
    assert len(ds) == 4
    metric = METRICS.build(dict(cfg.test_evaluator, template_obj=info['template_obj'],
                                template_keypoints=info['template_keypoints']))
    assert metric.nicp_cfg['stiffness'][1] == pytest.approx(50 * np.exp(-0.5), rel=1e-6)
    assert metric.template.num_vertices == 20 * 25
