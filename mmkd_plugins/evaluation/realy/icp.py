"""REALY step 2: region-wise rigid ICP of the prediction onto one scan region.

Each iteration, with the prediction P (moved by the current R, t) and scan region vertices G:

    C_i  = closest point on the SURFACE of P to g_i                  (i = 1..N_scan)
    pairs = {(C_i, g_i)}  U  {(k^P_j, k^G_j)} x floor(N_scan / (N_kp * div))   (region keypoints)
    (R', t') = Kabsch(pairs)                                          (no scale)
    e = mean over pairs of ||R' c + t' - g||^2
    stop when |e - e_prev| < tol or after max_iter iterations, else P <- R' P + t'

Replicating a keypoint pair k times is a weight of k in the Kabsch fit, which is how it is done here.
The prediction's surface index is built once; the moving prediction is handled by querying with the
scan points mapped into the prediction's original frame.
"""
from typing import Dict, Optional

import numpy as np

from .alignment import apply_similarity, fit_similarity
from .proximity import SurfaceProximity


def region_rigid_icp(pred_vertices: np.ndarray,
                     pred_faces: np.ndarray,
                     scan_vertices: np.ndarray,
                     pred_keypoints: np.ndarray,
                     gt_keypoints: np.ndarray,
                     keypoint_rate_divisor: float = 1.0,
                     max_iter: int = 100,
                     tol: float = 1e-6,
                     proximity: Optional[SurfaceProximity] = None,
                     allow_reflection: bool = False) -> Dict:
    """Rigidly align a prediction to one scan region (see the module docstring).

    Args:
        pred_vertices: ``(N, 3)`` prediction (already globally aligned).
        pred_faces: ``(F, 3)`` prediction faces.
        scan_vertices: ``(M, 3)`` vertices of the scan region.
        pred_keypoints: ``(K, 3)`` region keypoints on the prediction (same frame as ``pred_vertices``).
        gt_keypoints: ``(K, 3)`` corresponding ground-truth keypoints (may be ``K = 0``).
        keypoint_rate_divisor: keypoint pairs weigh ``floor(M / (K * divisor))`` (REALY: 4 for the cheek).
        max_iter: iteration cap (REALY: 100).
        tol: stop when the mean squared pair error changes by less than this (REALY: 1e-6).
        proximity: a prebuilt ``SurfaceProximity(pred_vertices, pred_faces)`` to reuse.
        allow_reflection: keep a reflection in the Kabsch fit (REALY's code does; see
            :func:`fit_similarity`).

    Returns:
        dict with ``vertices`` (aligned prediction), ``keypoints`` (aligned ``pred_keypoints``),
        ``rotation``, ``translation`` (the motion applied on top of the input), ``iterations``, ``error``.
    """
    pred_vertices = np.asarray(pred_vertices, dtype=np.float64)
    scan = np.asarray(scan_vertices, dtype=np.float64)
    kp_p = np.asarray(pred_keypoints, dtype=np.float64).reshape(-1, 3)
    kp_g = np.asarray(gt_keypoints, dtype=np.float64).reshape(-1, 3)
    if kp_p.shape != kp_g.shape:
        raise ValueError(f'region_rigid_icp: keypoint shapes differ: {kp_p.shape} vs {kp_g.shape}')
    if len(scan) < 3:
        raise ValueError(f'region_rigid_icp: the scan region has {len(scan)} vertices, need >= 3')
    prox = proximity if proximity is not None else SurfaceProximity(pred_vertices, pred_faces)
    rate = int(np.floor(len(scan) / (len(kp_p) * keypoint_rate_divisor))) if len(kp_p) else 0
    weights = np.concatenate([np.ones(len(scan)), np.full(len(kp_p), float(rate))])
    target = np.concatenate([scan, kp_g])

    rot, trans = np.eye(3), np.zeros(3)  # current motion of the prediction
    err_prev, it, err = 0.0, 0, np.inf
    while True:
        # closest points on the moved surface: R * closest(R^T (g - t)) + t
        local, _, _ = prox.query((scan - trans) @ rot)
        src = np.concatenate([apply_similarity(local, 1.0, rot, trans),
                              apply_similarity(kp_p, 1.0, rot, trans)])
        _, r_step, t_step = fit_similarity(src, target, with_scale=False, weights=weights,
                                          allow_reflection=allow_reflection)
        moved = apply_similarity(src, 1.0, r_step, t_step)
        err = float((weights * ((moved - target) ** 2).sum(1)).sum() / weights.sum())
        if abs(err - err_prev) < tol or it >= max_iter:
            break
        it += 1
        err_prev = err
        rot, trans = r_step @ rot, r_step @ trans + t_step
    return dict(vertices=apply_similarity(pred_vertices, 1.0, rot, trans),
                keypoints=apply_similarity(kp_p, 1.0, rot, trans),
                rotation=rot, translation=trans, iterations=it, error=err)
