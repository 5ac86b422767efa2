"""Similarity / rigid fits between corresponding point sets, and REALY's global alignment.

REALY's fit (``source`` -> ``target``, both ``(n, 3)``):

    S~ = S - mean(S),  T~ = T - mean(T)
    W  = T~^T diag(w) S~           (3 x 3, weights w default to 1)
    W  = U Sigma V^T  (SVD),  R = U D V^T   with D = diag(1, 1, det(U V^T)) (no reflections)
    s  = sum |T~| / sum |R S~|     (an L1 ratio; 1 for a rigid fit)
    t  = mean(T - s R S)

and the aligned source is ``s R S + t``. Only numpy is needed here.
"""
from typing import Optional, Tuple

import numpy as np

from .keypoints import GLOBAL_KEYPOINTS, select


def fit_similarity(source: np.ndarray,
                   target: np.ndarray,
                   with_scale: bool = True,
                   weights: Optional[np.ndarray] = None,
                   allow_reflection: bool = False) -> Tuple[float, np.ndarray, np.ndarray]:
    """Fit ``target ~ s R source + t`` (see the module docstring for the formula).

    Args:
        source: ``(n, 3)`` points to move.
        target: ``(n, 3)`` fixed points, row-wise corresponding to ``source``.
        with_scale: estimate ``s`` with REALY's L1 ratio; else ``s = 1`` (rigid, Kabsch).
        weights: optional ``(n,)`` non-negative point weights (an integer weight ``k`` is the same as
            repeating the pair ``k`` times, which is how REALY weighs its keypoints).
        allow_reflection: keep ``R = U V^T`` even if ``det < 0`` (REALY's code does; a reflection never
            is a valid pose, so the default corrects it).

    Returns:
        ``(s, R, t)``: scale (float), ``(3, 3)`` rotation, ``(3,)`` translation.
    """
    src = np.asarray(source, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != tgt.shape:
        raise ValueError(f'fit_similarity: source and target must both be (n, 3), got {src.shape} and '
                         f'{tgt.shape}')
    if src.shape[0] < 3:
        raise ValueError(f'fit_similarity: need at least 3 point pairs, got {src.shape[0]}')
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != src.shape[0] or np.any(w < 0) or w.sum() <= 0:
        raise ValueError('fit_similarity: weights must be (n,), non-negative, with a positive sum')
    w_sum = w.sum()
    mu_s = (w[:, None] * src).sum(0) / w_sum
    mu_t = (w[:, None] * tgt).sum(0) / w_sum
    s_c, t_c = src - mu_s, tgt - mu_t
    cov = (t_c * w[:, None]).T @ s_c  # W = T~^T diag(w) S~
    u, _, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if not allow_reflection and np.linalg.det(u @ vt) < 0:
        d[2] = -1.0
    rot = (u * d) @ vt
    if with_scale:
        denom = (w[:, None] * np.abs(s_c @ rot.T)).sum()
        if denom <= 0:
            raise ValueError('fit_similarity: the source points are all identical, scale undefined')
        scale = float((w[:, None] * np.abs(t_c)).sum() / denom)
    else:
        scale = 1.0
    trans = mu_t - scale * rot @ mu_s
    return scale, rot, trans


def apply_similarity(points: np.ndarray, scale: float, rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """``s R p + t`` for every row ``p`` of ``(n, 3)`` ``points``."""
    return scale * np.asarray(points, dtype=np.float64) @ np.asarray(rot).T + np.asarray(trans)


def global_align(pred_vertices: np.ndarray,
                 pred_keypoints: np.ndarray,
                 gt_keypoints: np.ndarray,
                 keypoint_ids=GLOBAL_KEYPOINTS,
                 allow_reflection: bool = False) -> Tuple[np.ndarray, np.ndarray, Tuple]:
    """REALY step 1: similarity-align a prediction to the scan frame from 7 keypoints.

    Args:
        pred_vertices: ``(N, 3)`` predicted vertices.
        pred_keypoints: ``(85, 3)`` keypoints of the prediction (barycentric on the template).
        gt_keypoints: ``(85, 3)`` ground-truth keypoints in the scan frame.
        keypoint_ids: which keypoints drive the fit (REALY: 36, 39, 42, 45, 33, 48, 54).

    Returns:
        ``(aligned_vertices, aligned_keypoints, (s, R, t))``.
    """
    s, r, t = fit_similarity(select(pred_keypoints, keypoint_ids), select(gt_keypoints, keypoint_ids),
                             with_scale=True, allow_reflection=allow_reflection)
    return apply_similarity(pred_vertices, s, r, t), apply_similarity(pred_keypoints, s, r, t), (s, r, t)
