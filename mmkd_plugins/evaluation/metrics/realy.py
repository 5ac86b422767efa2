"""REALYMetric: region-wise errors (mm) of predicted face meshes, REALY (arXiv 2203.09729).

Each data sample carries a prediction in the template topology and the subject's ground truth (as
:class:`mmkd_plugins.datasets.REALYDataset` provides it):

- ``pred_vertices``: ``(N, 3)`` array/tensor (from the model's output or the dataset), optionally
  ``pred_faces`` (checked against the template's faces),
- ``gt_keypoints``: ``(85, 3)``, ``region_scans``: ``{region: (vertices, faces)}``,
- ``metric_scale``: float (scan units -> mm), ``img_id``: the image name.

Fields missing from the model's output sample are taken from the batch's sample at the same position.
The geometry runs in ``process`` (one subject at a time) and only the numbers are kept, so the
distributed collection stays small.
"""
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from mmkd_plugins.utils.safe_output import RunOutputs

from ..realy.keypoints import REGIONS

_FIELDS = ('pred_vertices', 'pred_faces', 'gt_keypoints', 'region_scans', 'metric_scale', 'img_id', 'subject')


def _get(sample: Any, key: str, default=None):
    if sample is None:
        return default
    if isinstance(sample, dict):
        return sample.get(key, default)
    return getattr(sample, key, default) if hasattr(sample, key) else default


def _numpy(x) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@METRICS.register_module()
class REALYMetric(BaseMetric):
    """REALY region errors: per-region mean, median, std over images and ``all`` (mean of the region
    means), in mm.

    Args:
        template_obj: template mesh of the prediction topology (``.obj``/``.ply``).
        template_keypoints: the template's barycentric keypoint file (REALY's JSON ``.txt``).
        regions: evaluated regions (default nose, mouth, forehead, cheek).
        icp_cfg: options of the region rigid ICP (``max_iter`` = 100, ``tol`` = 1e-6).
        nicp_cfg: options of the non-rigid ICP (see ``optimal_step_nicp``; defaults are REALY's).
        template_mask: REALY's ``--template_mask`` file (one 0/1 per template vertex): faces with a
            masked-out vertex are dropped from the prediction before P* / P** (alignments use all).
        allow_reflection: keep reflections in the 7-point and Kabsch fits as REALY's code does
            (default False: corrected to ``det R = +1``; see configs/realy/README.md).
        merge_scan_vertices: errors on the scan regions with duplicate vertices merged (REALY);
            False: the vertices as they are in the files (a deviation).
        strict_mesh_checks: refuse a degenerate or non-manifold template (default: a warning).
        error_map_dir: if set, write each scan region coloured by per-vertex error to
            ``<error_map_dir>/<img_id>/<region>.ply`` (atomically). A folder that already holds
            ``.ply`` files not written by this metric is refused at construction (before any
            evaluation), and such a file met later at writing time too, unless ``overwrite``; the
            metric's own maps are refreshed at every evaluation.
        overwrite: replace error maps this metric did not write (a previous run's).
        error_map_max: error (mm) shown in full red on the error maps.
        collect_device, prefix, collect_dir: see ``mmengine.evaluator.BaseMetric``.
    """
    default_prefix = 'realy'

    def __init__(self,
                 template_obj: str,
                 template_keypoints: str,
                 regions: Sequence[str] = REGIONS,
                 icp_cfg: Optional[Dict] = None,
                 nicp_cfg: Optional[Dict] = None,
                 template_mask: Optional[str] = None,
                 allow_reflection: bool = True,
                 merge_scan_vertices: bool = True,
                 strict_mesh_checks: bool = False,
                 error_map_dir: Optional[str] = None,
                 error_map_max: float = 5.0,
                 overwrite: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        from ..realy.pipeline import REALYTemplate
        unknown = [r for r in regions if r not in REGIONS]
        if unknown or not regions:
            raise ValueError(f'REALYMetric: regions must be a non-empty subset of {REGIONS}, got {regions}')
        self.template = REALYTemplate.from_files(template_obj, template_keypoints, mask_path=template_mask,
                                                 strict=strict_mesh_checks)
        self.allow_reflection = bool(allow_reflection)
        self.merge_scan_vertices = bool(merge_scan_vertices)
        self.regions = tuple(regions)
        self.icp_cfg = dict(icp_cfg or {})
        self.nicp_cfg = dict(nicp_cfg or {})
        self.error_map_dir = error_map_dir
        self.error_map_max = float(error_map_max)
        self._outputs = RunOutputs('REALYMetric', overwrite)
        self._outputs.check_folder(error_map_dir, '.ply')

    def evaluate_sample(self, sample: Any, fallback: Any = None) -> Dict:
        """Evaluate one sample; returns ``dict(img_id, subject, errors={region: mm}, timings)``."""
        from ..realy.io import save_error_map
        from ..realy.pipeline import evaluate_prediction
        get = {k: _get(sample, k, _get(fallback, k)) for k in _FIELDS}
        img_id = str(get['img_id'] if get['img_id'] is not None else len(self.results))
        missing = [k for k in ('pred_vertices', 'gt_keypoints', 'region_scans', 'metric_scale')
                   if get[k] is None]
        if missing:
            raise KeyError(f'REALYMetric: sample {img_id} lacks {missing} (expected from the model output '
                           'or the REALYDataset sample)')
        pred = self.template.check_prediction(_numpy(get['pred_vertices']), f'prediction {img_id}')
        if get['pred_faces'] is not None:
            faces = _numpy(get['pred_faces'])
            if faces.shape != self.template.faces.shape or not np.array_equal(faces, self.template.faces):
                raise ValueError(f'REALYMetric: prediction {img_id} has faces {faces.shape} that differ from '
                                 f'the template {self.template.name} {self.template.faces.shape}: it is not '
                                 'in the template topology (save meshes without re-processing them)')
        scans = {r: (_numpy(v), _numpy(f).astype(np.int64)) for r, (v, f) in get['region_scans'].items()}
        res = evaluate_prediction(pred, self.template, _numpy(get['gt_keypoints']),
                                  scans, scale=float(get['metric_scale']), regions=self.regions,
                                  icp_cfg=self.icp_cfg, nicp_cfg=self.nicp_cfg,
                                  return_details=self.error_map_dir is not None, name=f'prediction {img_id}',
                                  allow_reflection=self.allow_reflection,
                                  merge_scan_vertices=self.merge_scan_vertices)
        if self.error_map_dir is not None:
            out_dir = osp.join(self.error_map_dir, img_id)
            paths = {region: osp.join(out_dir, f'{region}.ply') for region in res['details']}
            for path in paths.values():   # all of the image's maps refused before one is written
                self._outputs.check(path)
            os.makedirs(out_dir, exist_ok=True)
            for region, det in res['details'].items():
                save_error_map(paths[region], det['scan_vertices'], det['scan_faces'],
                               det['vertex_errors'], vmax=self.error_map_max)
                self._outputs.add(paths[region])
        return dict(img_id=img_id, subject=str(get['subject']), errors=res['errors'],
                    timings=res['timings'])

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Evaluate every predicted sample of the batch and keep its region errors."""
        batch_samples = _get(data_batch, 'data_samples') if data_batch is not None else None
        for i, sample in enumerate(data_samples):
            fallback = batch_samples[i] if batch_samples is not None and i < len(batch_samples) else None
            self.results.append(self.evaluate_sample(sample, fallback))

    def compute_metrics(self, results: List[Dict]) -> Dict[str, float]:
        """Per-region ``<region>_mean``, ``<region>_median``, ``<region>_std`` and ``all``."""
        from ..realy.pipeline import summarize
        return summarize([r['errors'] for r in results], self.regions)
