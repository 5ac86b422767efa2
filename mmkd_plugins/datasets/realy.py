"""REALYDataset: the REALY benchmark layout (ground truth) plus a folder of predicted meshes.

Layout (names as in REALY's release; configurable)::

    data_root/
      REALY_HIFI3D_keypoints/<subject>.obj     85 'v x y z' records (or <subject>.txt, 85 rows x y z)
      REALY_scan_region/<subject>/{nose,mouth,forehead,cheek}.obj   scan regions (scan frame)
      metrical_scale.txt                       line i: scale of subject i (scan units -> mm),
                                               or lines '<subject> <scale>'
    pred_root/<image>.obj                      prediction for image '<subject>_<anything>' (or
                                               '<subject>'), in the template topology

Each item is ``dict(inputs=<pred vertices tensor>, data_samples=<BaseDataElement>)`` whose sample holds
``img_id``, ``subject``, ``metric_scale`` (metainfo), ``gt_keypoints`` (85, 3), ``region_scans``
``{region: (vertices, faces)}`` and, with ``pred_root``, ``pred_vertices``/``pred_faces``. With a
``pipeline`` the raw dict goes through it instead (e.g. to load the image of ``img_path``).
"""
import os
import os.path as osp
import re
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS
from mmengine.structures import BaseDataElement

from ..evaluation.realy.keypoints import REGIONS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


@DATASETS.register_module()
class REALYDataset(BaseDataset):
    """REALY ground truth (+ predictions) for :class:`REALYMetric`.

    Args:
        data_root: the benchmark folder (see the module docstring).
        pred_root: folder of predicted meshes ``<image>.<ext>``; one item per prediction.
        img_dir: without ``pred_root``, one item per image here (``img_path`` set), for models that
            predict from images; without both, one item per subject.
        keypoint_dir, scan_dir, scale_file: names inside ``data_root``.
        regions: regions whose scans are required.
        pred_suffix: file suffix of predictions (``.obj``; ``.ply`` etc. go through trimesh).
        check_manifold: look for non-manifold edges (an edge in more than two faces).
        strict_mesh_checks: refuse degenerate or non-manifold meshes with an error; by default they
            give a ``REALYMeshWarning`` naming the file and the count and are evaluated as they are,
            as the official REALY code does.
        load_meshes: read the arrays when an item is fetched (False: paths only).
        pipeline: optional transforms; default packs ``inputs``/``data_samples`` as described above.
    """
    METAINFO = dict(regions=REGIONS)

    def __init__(self,
                 data_root: str,
                 pred_root: Optional[str] = None,
                 img_dir: Optional[str] = None,
                 keypoint_dir: str = 'REALY_HIFI3D_keypoints',
                 scan_dir: str = 'REALY_scan_region',
                 scale_file: str = 'metrical_scale.txt',
                 regions: Sequence[str] = REGIONS,
                 pred_suffix: str = '.obj',
                 check_manifold: bool = True,
                 strict_mesh_checks: bool = False,
                 load_meshes: bool = True,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: bool = True,
                 **kwargs) -> None:
        self.pred_root, self.img_dir = pred_root, img_dir
        self.keypoint_dir, self.scan_dir, self.scale_file = keypoint_dir, scan_dir, scale_file
        self.regions = tuple(regions)
        self.pred_suffix = pred_suffix
        self.check_manifold = check_manifold
        self.strict_mesh_checks = strict_mesh_checks
        self.load_meshes = load_meshes
        self._cache: Dict[str, Dict] = {}
        super().__init__(data_root=data_root, pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    # ------------------------------------------------------------------ index
    def _subject_files(self, subject: str) -> Dict:
        kp_base = osp.join(self.data_root, self.keypoint_dir, subject)
        kp_path = next((kp_base + ext for ext in ('.obj', '.txt') if osp.isfile(kp_base + ext)), None)
        if kp_path is None:
            raise FileNotFoundError(f'REALYDataset: keypoint file of subject {subject} not found: '
                                    f'{kp_base}.obj (or .txt)')
        region_paths = {}
        for region in self.regions:
            path = osp.join(self.data_root, self.scan_dir, subject, f'{region}.obj')
            if not osp.isfile(path):
                raise FileNotFoundError(f'REALYDataset: missing region scan for subject {subject}: {path}')
            region_paths[region] = path
        return dict(keypoint_path=kp_path, region_paths=region_paths)

    def load_data_list(self) -> List[dict]:
        from ..evaluation.realy.io import load_metric_scales
        if not osp.isdir(self.data_root):
            raise FileNotFoundError(f'REALYDataset: data_root is not a folder: {self.data_root}')
        scan_root = osp.join(self.data_root, self.scan_dir)
        if not osp.isdir(scan_root):
            raise FileNotFoundError(f'REALYDataset: scan folder not found: {scan_root}')
        scales = load_metric_scales(osp.join(self.data_root, self.scale_file))
        subjects = sorted((d for d in os.listdir(scan_root) if osp.isdir(osp.join(scan_root, d))),
                          key=_natural_key)
        if self.pred_root is not None:
            if not osp.isdir(self.pred_root):
                raise FileNotFoundError(f'REALYDataset: prediction folder not found: {self.pred_root}')
            files = [f for f in os.listdir(self.pred_root) if f.lower().endswith(self.pred_suffix)]
            items = [(f[:-len(self.pred_suffix)], dict(pred_path=osp.join(self.pred_root, f))) for f in files]
        elif self.img_dir is not None:
            files = [f for f in os.listdir(self.img_dir) if f.lower().endswith(IMG_EXTENSIONS)]
            items = [(osp.splitext(f)[0], dict(img_path=osp.join(self.img_dir, f))) for f in files]
        else:
            items = [(s, {}) for s in subjects]
        if not items:
            raise FileNotFoundError(f'REALYDataset: nothing to evaluate in '
                                    f'{self.pred_root or self.img_dir or scan_root}')
        data_list, files_cache = [], {}
        for name, extra in sorted(items, key=lambda x: _natural_key(x[0])):
            subject = name.split('_')[0]
            if subject not in subjects:
                raise FileNotFoundError(f'REALYDataset: "{name}" refers to subject {subject}, which has no '
                                        f'scan folder in {scan_root} (names must be <subject>_<view>)')
            if subject not in scales:
                raise KeyError(f'REALYDataset: no metric scale for subject {subject} in '
                               f'{osp.join(self.data_root, self.scale_file)}')
            if subject not in files_cache:
                files_cache[subject] = self._subject_files(subject)
            data_list.append(dict(img_id=name, subject=subject, metric_scale=scales[subject],
                                  **files_cache[subject], **extra))
        return data_list

    # ------------------------------------------------------------------ loading
    def load_ground_truth(self, info: dict) -> dict:
        """``gt_keypoints`` and ``region_scans`` of ``info['subject']`` (the last subject is cached)."""
        from ..evaluation.realy.io import load_keypoints, load_mesh
        subject = info['subject']
        if subject not in self._cache:
            self._cache.clear()
            self._cache[subject] = dict(
                gt_keypoints=load_keypoints(info['keypoint_path']),
                region_scans={r: load_mesh(p, check_manifold=self.check_manifold,
                                           strict=self.strict_mesh_checks)
                              for r, p in info['region_paths'].items()})
        return self._cache[subject]

    def prepare_data(self, idx: int):
        from ..evaluation.realy.io import load_mesh
        info = self.get_data_info(idx)
        if self.load_meshes:
            info.update(self.load_ground_truth(info))
            if 'pred_path' in info:
                info['pred_vertices'], info['pred_faces'] = load_mesh(
                    info['pred_path'], check_manifold=self.check_manifold, strict=self.strict_mesh_checks)
        if len(self.pipeline.transforms):
            return self.pipeline(info)
        return self.pack(info)

    @staticmethod
    def pack(info: dict) -> dict:
        """``dict(inputs, data_samples)``: ``inputs`` is the prediction as a float tensor (empty without
        one); ``data_samples`` a ``BaseDataElement`` whose metainfo holds names, paths and the metric
        scale and whose data fields hold the arrays (kept whole by ``pseudo_collate``)."""
        array_keys = ('gt_keypoints', 'region_scans', 'pred_vertices', 'pred_faces')
        sample = BaseDataElement(metainfo={k: v for k, v in info.items() if k not in array_keys},
                                 **{k: info[k] for k in array_keys if k in info})
        inputs = torch.from_numpy(np.asarray(info['pred_vertices'], dtype=np.float32)) \
            if 'pred_vertices' in info else torch.zeros(0)
        return dict(inputs=inputs, data_samples=sample)
