"""REALY step 3: the bidirectional region error.

With the region-aligned prediction P and the scan region G = {g_i}:

    P*_i  = closest point on the surface of P to g_i
    G'    = NICP(G -> P*)                      (the scan deforms toward P*; keypoint-guided except cheek)
    P**_i = closest point on the surface of P to g'_i
    e_i   = ||P**_i - g_i||,   error = scale * mean_i e_i     (scale: scan units -> mm)

Deforming the scan first lets the correspondence slide to the semantically right place on P (a
prediction that is right but shifted along the surface is not rewarded for the wrong closest point).
"""
import time
from typing import Dict, Optional, Sequence

import numpy as np

from .nicp import optimal_step_nicp
from .proximity import SurfaceProximity, nearest_vertices


def bidirectional_region_error(pred_vertices: np.ndarray,
                               pred_faces: np.ndarray,
                               scan_vertices: np.ndarray,
                               scan_faces: np.ndarray,
                               pred_keypoints: Optional[np.ndarray] = None,
                               gt_keypoints: Optional[np.ndarray] = None,
                               scale: float = 1.0,
                               nicp_cfg: Optional[Dict] = None,
                               proximity: Optional[SurfaceProximity] = None) -> Dict:
    """Region error of an (already region-aligned) prediction against one scan region.

    Args:
        pred_vertices: ``(N, 3)`` prediction in the scan frame.
        pred_faces: ``(F, 3)`` prediction faces.
        scan_vertices: ``(M, 3)`` scan region vertices.
        scan_faces: ``(Fs, 3)`` scan region faces.
        pred_keypoints: ``(K, 3)`` region keypoints on the prediction (None or K = 0: no landmarks).
        gt_keypoints: ``(K, 3)`` ground-truth keypoints; each is attached to its nearest scan vertex,
            which the NICP pulls toward the predicted keypoint.
        scale: metric scale (scan units -> mm).
        nicp_cfg: keyword arguments of :func:`optimal_step_nicp`.
        proximity: a prebuilt ``SurfaceProximity`` of the prediction to reuse.

    Returns:
        dict with ``error`` (float, mm), ``vertex_errors`` (``(M,)`` mm), ``deformed`` (``(M, 3)``
        deformed scan), ``correspondences`` (``(M, 3)`` P**), ``nicp_steps`` (steps per NICP stage)
        and ``timings`` (seconds of the closest-point queries and of the NICP).
    """
    t0 = time.perf_counter()
    scan = np.asarray(scan_vertices, dtype=np.float64)
    prox = proximity if proximity is not None else SurfaceProximity(pred_vertices, pred_faces)
    p_star, _, _ = prox.query(scan)
    t1 = time.perf_counter()
    lm_ids, lm_tgt = None, None
    if pred_keypoints is not None and len(pred_keypoints):
        if gt_keypoints is None or np.shape(gt_keypoints) != np.shape(pred_keypoints):
            raise ValueError('bidirectional_region_error: gt_keypoints must match pred_keypoints in shape')
        lm_ids, _ = nearest_vertices(scan, gt_keypoints)
        lm_tgt = np.asarray(pred_keypoints, dtype=np.float64)
    nicp = optimal_step_nicp(scan, scan_faces, p_star, landmark_ids=lm_ids, landmark_targets=lm_tgt,
                             **(nicp_cfg or {}))
    deformed = nicp['vertices']
    t2 = time.perf_counter()
    p_2star, _, _ = prox.query(deformed)
    vertex_errors = np.linalg.norm(p_2star - scan, axis=1) * float(scale)
    t3 = time.perf_counter()
    return dict(error=float(vertex_errors.mean()), vertex_errors=vertex_errors, deformed=deformed,
                correspondences=p_2star, nicp_steps=nicp['stage_steps'],
                timings=dict(closest_points=t1 - t0 + t3 - t2, nicp=t2 - t1))


def error_colors(errors: np.ndarray, vmax: float = 5.0, vmin: float = 0.0) -> np.ndarray:
    """RGBA uint8 colours (``(M, 4)``) of per-vertex errors with the 'jet' ramp (blue = ``vmin``,
    red = ``vmax`` and above)."""
    x = np.clip((np.asarray(errors, dtype=np.float64) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    rgb = np.clip(np.stack([1.5 - np.abs(4 * x - 3), 1.5 - np.abs(4 * x - 2), 1.5 - np.abs(4 * x - 1)],
                           axis=1), 0.0, 1.0)
    return np.column_stack([(rgb * 255).round().astype(np.uint8), np.full(len(x), 255, np.uint8)])


def region_keypoint_arrays(pred_keypoints: np.ndarray, gt_keypoints: np.ndarray,
                           ids: Sequence[int]):
    """``(pred_keypoints[ids], gt_keypoints[ids])`` as float arrays (``(0, 3)`` when ``ids`` is empty)."""
    ids = np.asarray(list(ids), dtype=np.int64)
    return (np.asarray(pred_keypoints, dtype=np.float64)[ids].reshape(-1, 3),
            np.asarray(gt_keypoints, dtype=np.float64)[ids].reshape(-1, 3))
