"""The REALY evaluation of one predicted mesh, and the summary statistics over many.

    keypoints  k^P = barycentric keypoints of the prediction (template topology)
    1. global  (s, R, t) from 7 keypoint pairs; P <- s R P + t
    2. per region r: rigid ICP of P onto the scan region G_r (closest surface points + keypoint pairs)
    3. per region r: bidirectional error (NICP of G_r toward P*, closest points P**), times the scale

As in the official code, the rigid ICP uses the scan region's vertices as they are in the file, and the
error uses the region with duplicate vertices merged and unreferenced ones dropped (REALY loads it with
``trimesh.Trimesh(process=True)``). With a template mask, P* and P** are closest points on the
prediction without the masked faces, while the alignments use the whole prediction.
"""
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .alignment import global_align
from .icp import region_rigid_icp
from .io import merge_vertices
from .keypoints import (ICP_KEYPOINT_RATE_DIVISOR, ICP_KEYPOINTS, NICP_KEYPOINTS, NUM_KEYPOINTS,
                        REGIONS, barycentric_keypoints, check_barycentric, load_barycentric)
from .proximity import MovedProximity, SurfaceProximity
from .region_error import bidirectional_region_error, region_keypoint_arrays

STAGES = ('keypoints_global_align', 'surface_index', 'region_icp', 'closest_points', 'nicp')


@dataclass
class REALYTemplate:
    """A template topology: its faces, vertex count and barycentric keypoint file.

    Args:
        faces: ``(F, 3)`` template faces.
        num_vertices: vertex count every prediction in this topology must have.
        barycentric: ``(85, 3)`` rows ``[tri_idx, w1, w2]``.
        name: for messages.
        vertex_mask: optional ``(num_vertices,)`` bool, REALY's ``--template_mask``: faces with a
            vertex outside the mask are dropped from the prediction before P* and P** are computed
            (the alignments and keypoints still use every face).
    """
    faces: np.ndarray
    num_vertices: int
    barycentric: np.ndarray
    name: str = 'template'
    vertex_mask: Optional[np.ndarray] = None

    @classmethod
    def from_files(cls, obj_path: str, keypoint_path: str, mask_path: Optional[str] = None,
                   strict: bool = False) -> 'REALYTemplate':
        """Template mesh (``.obj``/``.ply``...) plus REALY barycentric keypoint file (JSON ``.txt``) and
        optionally REALY's template mask file (one 0/1 per vertex)."""
        from .io import load_mesh, load_template_mask
        vertices, faces = load_mesh(obj_path, strict=strict)
        mask = None if mask_path is None else load_template_mask(mask_path, len(vertices))
        return cls(faces=faces, num_vertices=len(vertices),
                   barycentric=load_barycentric(keypoint_path, num_faces=len(faces)), name=obj_path,
                   vertex_mask=mask)

    def __post_init__(self) -> None:
        from .io import masked_faces
        self.faces = np.asarray(self.faces, dtype=np.int64)
        self.barycentric = check_barycentric(self.barycentric, len(self.faces), name=f'{self.name} keypoints')
        if self.vertex_mask is None:
            self.eval_faces = self.faces
        else:
            self.vertex_mask = np.asarray(self.vertex_mask).astype(bool).reshape(-1)
            if self.vertex_mask.shape != (self.num_vertices,):
                raise ValueError(f'{self.name}: the template mask has {self.vertex_mask.size} entries, the '
                                 f'template {self.num_vertices} vertices')
            self.eval_faces = masked_faces(self.faces, self.vertex_mask)
            if len(self.eval_faces) == 0:
                raise ValueError(f'{self.name}: the template mask keeps no face (a face is kept when its '
                                 'three vertices are in the mask)')

    def check_prediction(self, vertices: np.ndarray, name: str = 'prediction') -> np.ndarray:
        """Return ``vertices`` as float64 ``(N, 3)`` or raise a ``ValueError`` if ``N`` is not the
        template's vertex count (or the values are not finite)."""
        v = np.asarray(vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f'{name}: vertices must have shape (N, 3), got {v.shape}')
        if len(v) != self.num_vertices:
            raise ValueError(f'{name}: {len(v)} vertices, but the template topology {self.name} has '
                             f'{self.num_vertices}; save the prediction in the template topology with its '
                             'vertex order kept (e.g. trimesh process=False)')
        if not np.all(np.isfinite(v)):
            raise ValueError(f'{name}: vertices contain NaN/inf')
        return v

    def keypoints(self, vertices: np.ndarray) -> np.ndarray:
        """The 85 keypoints of a mesh in this topology."""
        return barycentric_keypoints(vertices, self.faces, self.barycentric)


def evaluate_prediction(pred_vertices: np.ndarray,
                        template: REALYTemplate,
                        gt_keypoints: np.ndarray,
                        region_scans: Mapping[str, Tuple[np.ndarray, np.ndarray]],
                        scale: float = 1.0,
                        regions: Sequence[str] = REGIONS,
                        icp_cfg: Optional[Dict] = None,
                        nicp_cfg: Optional[Dict] = None,
                        return_details: bool = False,
                        name: str = 'prediction',
                        allow_reflection: bool = True,
                        merge_scan_vertices: bool = True) -> Dict:
    """REALY errors (mm) of one predicted mesh against one subject.

    Args:
        pred_vertices: ``(N, 3)`` prediction in ``template``'s topology (any frame and scale).
        template: the topology.
        gt_keypoints: ``(85, 3)`` ground-truth keypoints (scan frame).
        region_scans: ``{region: (vertices, faces)}`` scan regions (scan frame), as in their files.
        scale: metric scale of the subject (scan units -> mm).
        regions: regions to evaluate (REALY: nose, mouth, forehead, cheek).
        icp_cfg: keyword arguments of :func:`region_rigid_icp` (``max_iter``, ``tol``).
        nicp_cfg: keyword arguments of :func:`optimal_step_nicp`.
        return_details: also return per-vertex errors, deformed scans and the aligned predictions.
        name: used in error messages.
        allow_reflection: keep reflections in the 7-point and Kabsch fits (REALY's code does).
        merge_scan_vertices: compute the error on the scan region with duplicate vertices merged and
            unreferenced ones dropped (REALY); False uses the vertices as they are (a deviation).

    Returns:
        dict with ``errors`` ``{region: mm}``, ``timings`` ``{stage: seconds}`` and, with
        ``return_details``, ``details`` ``{region: dict(vertex_errors, deformed, aligned_vertices,
        scan_vertices, scan_faces, icp_iterations, nicp_steps)}`` (``vertex_errors`` and ``deformed``
        belong to ``scan_vertices`` / ``scan_faces``, the merged region).
    """
    timings = dict.fromkeys(STAGES, 0.0)
    t0 = time.perf_counter()
    pred = template.check_prediction(pred_vertices, name)
    gt_kp = np.asarray(gt_keypoints, dtype=np.float64)
    if gt_kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f'{name}: ground-truth keypoints must be ({NUM_KEYPOINTS}, 3), got {gt_kp.shape}')
    missing = [r for r in regions if r not in region_scans]
    if missing:
        raise KeyError(f'{name}: no scan for region(s) {missing}; have {sorted(region_scans)}')
    unknown = [r for r in regions if r not in ICP_KEYPOINTS]
    if unknown:
        raise ValueError(f'unknown REALY region(s) {unknown}; choose from {list(REGIONS)}')
    pred, pred_kp, _ = global_align(pred, template.keypoints(pred), gt_kp,
                                    allow_reflection=allow_reflection)
    t1 = time.perf_counter()
    prox = SurfaceProximity(pred, template.faces)
    prox_eval = prox if template.vertex_mask is None else SurfaceProximity(pred, template.eval_faces)
    timings['keypoints_global_align'] = t1 - t0
    timings['surface_index'] = time.perf_counter() - t1

    errors, details = {}, {}
    for region in regions:
        scan_v, scan_f = (np.asarray(a) for a in region_scans[region])
        t2 = time.perf_counter()
        kp_p, kp_g = region_keypoint_arrays(pred_kp, gt_kp, ICP_KEYPOINTS[region])
        icp = region_rigid_icp(pred, template.faces, scan_v, kp_p, kp_g,
                               keypoint_rate_divisor=ICP_KEYPOINT_RATE_DIVISOR[region], proximity=prox,
                               allow_reflection=allow_reflection, **(icp_cfg or {}))
        timings['region_icp'] += time.perf_counter() - t2
        if merge_scan_vertices:
            scan_v, scan_f, _ = merge_vertices(scan_v, scan_f)
        moved = MovedProximity(prox_eval, icp['rotation'], icp['translation'])
        aligned_kp = pred_kp @ icp['rotation'].T + icp['translation']
        nkp_p, nkp_g = region_keypoint_arrays(aligned_kp, gt_kp, NICP_KEYPOINTS[region])
        res = bidirectional_region_error(icp['vertices'], template.eval_faces, scan_v, scan_f, nkp_p, nkp_g,
                                         scale=scale, nicp_cfg=nicp_cfg, proximity=moved)
        for k, v in res['timings'].items():
            timings[k] += v
        errors[region] = res['error']
        if return_details:
            details[region] = dict(vertex_errors=res['vertex_errors'], deformed=res['deformed'],
                                   aligned_vertices=icp['vertices'], icp_iterations=icp['iterations'],
                                   scan_vertices=scan_v, scan_faces=scan_f, nicp_steps=res['nicp_steps'])
    out = dict(errors=errors, timings=timings)
    if return_details:
        out['details'] = details
    return out


def summarize(per_image: List[Mapping[str, float]], regions: Sequence[str] = REGIONS) -> Dict[str, float]:
    """Per-region ``mean``, ``median``, ``std`` (sample std, ddof = 1; NaN for a single image) over
    images, and ``all`` = mean of the region means (REALY's headline number).

    Returns keys ``'<region>_mean'``, ``'<region>_median'``, ``'<region>_std'``, ``'all'``.
    """
    if not per_image:
        raise ValueError('summarize: no evaluated images')
    out = {}
    for region in regions:
        vals = np.asarray([float(e[region]) for e in per_image])
        out[f'{region}_mean'] = float(vals.mean())
        out[f'{region}_median'] = float(np.median(vals))
        out[f'{region}_std'] = float(vals.std(ddof=1)) if len(vals) > 1 else float('nan')
    out['all'] = float(np.mean([out[f'{r}_mean'] for r in regions]))
    return out
