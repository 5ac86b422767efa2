"""REALYMetric end to end on a REALY-layout folder built from a procedural face."""
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('scipy')
trimesh = pytest.importorskip('trimesh')

from mmkd_plugins.datasets.realy import REALYDataset  # noqa: E402
from mmkd_plugins.evaluation.metrics.realy import REALYMetric  # noqa: E402
from mmkd_plugins.evaluation.realy import REGIONS, summarize  # noqa: E402
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('realy'))
    info = syn.write_benchmark(root, num_subjects=2)
    syn.write_predictions(osp.join(root, 'pred'), info, views=2)
    return root, info


def _metric(info, **kw):
    return REALYMetric(info['template_obj'], info['template_keypoints'], **kw)


@pytest.fixture(scope='module')
def self_metric(bench):
    root, info = bench
    ds = REALYDataset(root, pred_root=osp.join(root, 'pred'))
    metric = _metric(info)
    metric.process(None, [ds[i]['data_samples'] for i in range(len(ds))])
    errors = {r['img_id']: dict(r['errors']) for r in metric.results}  # evaluate() clears results
    return metric, len(ds), errors


def test_self_prediction_in_any_similarity_frame_scores_about_zero(self_metric):
    metric, size, _ = self_metric
    errs = {r['img_id']: r['errors'] for r in metric.results}
    assert sorted(errs) == ['1_0', '1_1', '2_0', '2_1']
    for name, e in errs.items():
        for region in REGIONS:
            assert 0 <= e[region] < 0.15, (name, region, e[region])
    # the same face seen in two different similarity frames gets the same errors
    for sid in ('1', '2'):
        for region in REGIONS:
            assert errs[f'{sid}_0'][region] == pytest.approx(errs[f'{sid}_1'][region], abs=1e-4)
    res = metric.evaluate(size)
    assert set(res) == {f'realy/{r}_{s}' for r in REGIONS for s in ('mean', 'median', 'std')} | {'realy/all'}
    assert res['realy/all'] < 0.1


def test_summary_statistics_match_numpy():
    rng = np.random.default_rng(0)
    per_image = [dict(zip(REGIONS, rng.uniform(0.5, 3.0, 4))) for _ in range(7)]
    out = summarize(per_image)
    for region in REGIONS:
        vals = np.array([p[region] for p in per_image])
        assert out[f'{region}_mean'] == pytest.approx(np.mean(vals))
        assert out[f'{region}_median'] == pytest.approx(np.median(vals))
        assert out[f'{region}_std'] == pytest.approx(np.sqrt(((vals - vals.mean()) ** 2).sum() / 6))
    assert out['all'] == pytest.approx(np.mean([np.mean([p[r] for p in per_image]) for r in REGIONS]))
    assert np.isnan(summarize(per_image[:1])['nose_std'])
    with pytest.raises(ValueError, match='no evaluated images'):
        summarize([])


def test_a_nose_bump_raises_the_nose_error_only(tmp_path, bench, self_metric):
    root, info = bench
    _, _, uv = syn.grid_mesh(*info['template_res'])
    bump = np.zeros((len(uv), 3))
    bump[:, 2] = 0.4 * np.exp(-0.5 * ((uv[:, 0] / 0.1) ** 2 + ((uv[:, 1] + 0.02) / 0.12) ** 2))
    syn.write_predictions(str(tmp_path), dict(info, identities={1: info['identities'][1]}),
                          vertex_offsets={1: bump})
    bumped = _metric(info)
    bumped.process(None, [REALYDataset(root, pred_root=str(tmp_path))[0]['data_samples']])
    assert bumped.results[0]['img_id'] == '1_0'
    e0 = self_metric[2]['1_0']
    e1 = bumped.results[0]['errors']
    assert e1['nose'] - e0['nose'] > 0.2
    for region in ('mouth', 'forehead', 'cheek'):
        assert abs(e1[region] - e0[region]) < 0.1, region


def test_bad_predictions_give_clear_errors(bench):
    root, info = bench
    ds = REALYDataset(root, pred_root=osp.join(root, 'pred'))
    sample = ds[0]['data_samples']
    metric = _metric(info)
    wrong = sample.clone()
    wrong.pred_vertices = sample.pred_vertices[:-5]
    wrong.pred_faces = None
    with pytest.raises(ValueError, match=r'1_0: 1995 vertices, but the template topology .* has 2000'):
        metric.process(None, [wrong])
    flipped = sample.clone()
    flipped.pred_faces = sample.pred_faces[:, ::-1].copy()
    with pytest.raises(ValueError, match='differ from the template'):
        metric.process(None, [flipped])
    with pytest.raises(KeyError, match='lacks'):
        metric.process(None, [dict(img_id='x', pred_vertices=sample.pred_vertices)])
    with pytest.raises(ValueError, match='regions must be'):
        _metric(info, regions=('nose', 'ear'))


def test_error_maps_are_written(tmp_path, bench):
    root, info = bench
    ds = REALYDataset(root, pred_root=osp.join(root, 'pred'), regions=('nose', 'mouth'))
    metric = _metric(info, regions=('nose', 'mouth'), error_map_dir=str(tmp_path))
    metric.process(None, [ds[0]['data_samples']])
    mesh = trimesh.load(str(tmp_path / '1_0' / 'nose.ply'), process=False)
    scan = trimesh.load(osp.join(root, 'REALY_scan_region', '1', 'nose.obj'), process=False)
    assert len(mesh.vertices) == len(scan.vertices)
    assert mesh.visual.vertex_colors.shape == (len(scan.vertices), 4)
    assert not (tmp_path / '1_0' / 'cheek.ply').exists()


def test_runner_test_loop(tmp_path, bench):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class PassThrough(BaseModel):
        """Returns the dataset's prediction (as a model whose output is a mesh would)."""

        def __init__(self):
            super().__init__()
            self.offset = torch.nn.Parameter(torch.zeros(3))

        def forward(self, inputs, data_samples=None, mode='tensor'):
            if mode == 'loss':
                return dict(loss=self.offset.sum())
            outs = []
            for x, ds in zip(inputs, data_samples):
                out = ds.clone()
                out.pred_vertices = (x + self.offset).detach()
                outs.append(out)
            return outs

    root, info = bench
    runner = Runner(
        model=PassThrough(), work_dir=str(tmp_path),
        test_dataloader=dict(dataset=dict(type='REALYDataset', data_root=root,
                                          pred_root=osp.join(root, 'pred'), indices=[0, 2]),
                             sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2,
                             num_workers=0, collate_fn=dict(type='pseudo_collate')),
        test_cfg=dict(type='TestLoop'),
        test_evaluator=dict(type='REALYMetric', template_obj=info['template_obj'],
                            template_keypoints=info['template_keypoints']),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        env_cfg=dict(dist_cfg=dict(backend='gloo')), log_level='WARNING')
    metrics = runner.test()
    assert metrics['realy/all'] < 0.1
    assert metrics['realy/nose_mean'] >= metrics['realy/nose_median'] - 1.0
