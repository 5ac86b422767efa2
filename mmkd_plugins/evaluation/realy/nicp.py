"""Optimal-step non-rigid ICP (Amberg et al., CVPR 2007) as REALY uses it to deform a scan region.

Every source vertex v_i (homogeneous ``[x, y, z, 1]``) gets an affine ``X_i`` (4 x 3); the deformed
vertex is ``v_i^T X_i``. For a stiffness ``alpha`` one step solves the sparse linear least squares

    min_X  alpha^2 || (M kron G) X ||^2                        stiffness, M = edge-vertex incidence (E x N),
                                                              G = diag(1, 1, 1, gamma)
         + sum_i  w_i^2 || v_i^T X_i - u_i ||^2                data: u_i = nearest target point to the
                                                              current v_i^T X_i, w_i in {0, 1} (outliers:
                                                              distance >= max(2 mean, 1) get 0)
         + sum_l  beta^2 || v_l^T X_l - y_l ||^2                landmarks (vertex l should reach y_l)
         + lambda || X - X_identity ||^2                        tiny damping (fixes null spaces)

through its normal equations with a sparse LU factorisation (``scipy.sparse.linalg.splu``), and
repeats (re-matching u) until ``||X - X_prev||_F <= epsilon`` or ``max_steps`` steps, for a decreasing
stiffness schedule ``alpha_d = 50 exp(-0.5 (d - 1))``, d = 1, 2, 3 (REALY).

With landmarks, REALY first makes one landmark-only step (no data term) with stiffness 150 and
``G = diag(2, 2, 3, 2 gamma)``, landmark weight 50; afterwards the landmark weight decays as
``50 exp(-0.9 c) / 10`` with the global step counter c.
"""
import math
from typing import Dict, Optional, Sequence

import numpy as np

from ...utils import require

DEFAULT_STIFFNESS = tuple(50.0 * math.exp(-0.5 * d) for d in range(3))
DEFAULT_EPSILON = (1.0, 0.5, 0.25)


def edge_vertex_incidence(faces: np.ndarray, num_vertices: int):
    """Sparse node-arc incidence ``M`` (E x N): row e has +1 at one end of edge e and -1 at the other.

    Edges are the unique undirected edges of the triangles.
    """
    sparse = require('scipy.sparse', 'REALY non-rigid ICP')
    faces = np.asarray(faces, dtype=np.int64)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    edges = np.unique(edges, axis=0)
    e = np.arange(len(edges))
    return sparse.csr_matrix((np.r_[np.ones(len(e)), -np.ones(len(e))],
                              (np.r_[e, e], np.r_[edges[:, 0], edges[:, 1]])),
                             shape=(len(edges), num_vertices))


def _solve_step(mtm, g_diag, alpha, hom, row_weight_sq, row_target, damping, x_identity):
    """Solve one optimal step through its normal equations. ``row_weight_sq`` (N,) and ``row_target``
    (N, 3) already merge the data and landmark rows per vertex (``sum w^2`` and ``sum w^2 u``)."""
    sparse = require('scipy.sparse', 'REALY non-rigid ICP')
    splinalg = require('scipy.sparse.linalg', 'REALY non-rigid ICP')
    n = hom.shape[0]
    stiff = sparse.kron(mtm, sparse.diags(np.asarray(g_diag, dtype=np.float64) ** 2)) * alpha ** 2
    # block-diagonal data part: sum_i w_i^2 v_i v_i^T at block (i, i)
    rows = (4 * np.arange(n))[:, None, None] + np.arange(4)[None, :, None] + np.zeros((1, 1, 4), int)
    cols = (4 * np.arange(n))[:, None, None] + np.arange(4)[None, None, :] + np.zeros((1, 4, 1), int)
    vals = row_weight_sq[:, None, None] * hom[:, :, None] * hom[:, None, :]
    data = sparse.csr_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(4 * n, 4 * n))
    lhs = (stiff + data + damping * sparse.identity(4 * n)).tocsc()
    rhs = (hom[:, :, None] * row_target[:, None, :]).reshape(4 * n, 3) + damping * x_identity
    # symmetric positive definite: symmetric ordering, no row pivoting
    lu = splinalg.splu(lhs, permc_spec='MMD_AT_PLUS_A', diag_pivot_thresh=0.0,
                       options=dict(SymmetricMode=True))
    return lu.solve(rhs)


def optimal_step_nicp(src_vertices: np.ndarray,
                      src_faces: np.ndarray,
                      target_points: np.ndarray,
                      landmark_ids: Optional[Sequence[int]] = None,
                      landmark_targets: Optional[np.ndarray] = None,
                      stiffness: Sequence[float] = DEFAULT_STIFFNESS,
                      epsilon: Sequence[float] = DEFAULT_EPSILON,
                      max_steps: int = 11,
                      gamma: float = 1.0,
                      landmark_weight: float = 50.0,
                      landmark_decay: float = 0.9,
                      landmark_weight_scale: float = 0.1,
                      init_stiffness: float = 150.0,
                      init_g: Sequence[float] = (2.0, 2.0, 3.0, 2.0),
                      outlier_factor: float = 2.0,
                      outlier_min: float = 1.0,
                      damping: float = 1e-8) -> Dict:
    """Deform ``src`` (a scan region) toward the point set ``target_points`` (see the module docstring).

    Args:
        src_vertices: ``(N, 3)`` source vertices.
        src_faces: ``(F, 3)`` source faces (define the stiffness edges).
        target_points: ``(T, 3)`` target point set (REALY: closest points on the prediction, P*).
        landmark_ids: ``(L,)`` source vertex ids with known targets (None/empty: no landmark term and no
            initial landmark-only step, as REALY does for the cheek).
        landmark_targets: ``(L, 3)`` their targets.
        stiffness: stiffness ``alpha`` per stage (REALY: 50 exp(-0.5 d), d = 0, 1, 2).
        epsilon: convergence threshold per stage on ``||X - X_prev||_F`` (REALY: 1, 0.5, 0.25).
        max_steps: steps per stage at most (REALY: 11).
        gamma: weight of the translation column in the stiffness term.
        landmark_weight: landmark row weight of the initial step (REALY: 50).
        landmark_decay: later landmark weight is ``landmark_weight * exp(-decay * c) * scale``.
        landmark_weight_scale: that ``scale`` (REALY: 1/10).
        init_stiffness: stiffness of the initial landmark-only step (REALY: 150).
        init_g: ``G`` diagonal of the initial step, the last entry multiplied by ``gamma``.
        outlier_factor, outlier_min: data rows whose match is at least
            ``max(outlier_factor * mean distance, outlier_min)`` away get weight 0 (scan units).
        damping: weight of the pull toward the identity transforms (numerical safety only).

    Returns:
        dict with ``vertices`` (``(N, 3)`` deformed source), ``transforms`` (``(N, 4, 3)``), ``steps``.
    """
    spatial = require('scipy.spatial', 'REALY non-rigid ICP')
    src = np.asarray(src_vertices, dtype=np.float64)
    n = len(src)
    if src.ndim != 2 or src.shape[1] != 3 or n < 3:
        raise ValueError(f'optimal_step_nicp: src_vertices must be (N>=3, 3), got {src.shape}')
    if len(stiffness) != len(epsilon):
        raise ValueError('optimal_step_nicp: stiffness and epsilon need one entry per stage')
    lm_ids = np.asarray([] if landmark_ids is None else landmark_ids, dtype=np.int64).reshape(-1)
    lm_tgt = np.zeros((0, 3)) if landmark_targets is None else \
        np.asarray(landmark_targets, dtype=np.float64).reshape(-1, 3)
    if len(lm_ids) != len(lm_tgt):
        raise ValueError(f'optimal_step_nicp: {len(lm_ids)} landmark ids but {len(lm_tgt)} targets')
    if len(lm_ids) and (lm_ids.min() < 0 or lm_ids.max() >= n):
        raise ValueError(f'optimal_step_nicp: landmark ids must be in [0, {n})')

    incidence = edge_vertex_incidence(src_faces, n)
    mtm = (incidence.T @ incidence).tocsr()
    hom = np.column_stack([src, np.ones(n)])
    x_identity = np.tile(np.vstack([np.eye(3), np.zeros((1, 3))]), (n, 1))  # (4N, 3)
    tree = spatial.cKDTree(np.asarray(target_points, dtype=np.float64))

    def landmark_rows(beta):
        w2 = np.zeros(n)
        tgt = np.zeros((n, 3))
        np.add.at(w2, lm_ids, beta ** 2)
        np.add.at(tgt, lm_ids, beta ** 2 * lm_tgt)
        return w2, tgt

    x = x_identity.copy()
    steps = 0
    if len(lm_ids):  # landmark-only initial step
        w2, tgt = landmark_rows(landmark_weight)
        g = np.asarray(init_g, dtype=np.float64) * np.array([1.0, 1.0, 1.0, gamma])
        x = _solve_step(mtm, g, init_stiffness, hom, w2, tgt, damping, x_identity)
        steps += 1
    g = np.array([1.0, 1.0, 1.0, gamma])
    for alpha, eps in zip(stiffness, epsilon):
        for _ in range(max_steps):
            cur = np.einsum('nc,ncd->nd', hom, x.reshape(n, 4, 3))
            dist, idx = tree.query(cur)
            thr = max(outlier_factor * float(dist.mean()), outlier_min)
            w2 = (dist < thr).astype(np.float64)
            tgt = w2[:, None] * tree.data[idx]
            if len(lm_ids):
                lw2, ltgt = landmark_rows(landmark_weight * math.exp(-landmark_decay * steps)
                                          * landmark_weight_scale)
                w2, tgt = w2 + lw2, tgt + ltgt
            x_new = _solve_step(mtm, g, alpha, hom, w2, tgt, damping, x_identity)
            steps += 1
            delta = float(np.linalg.norm(x_new - x))
            x = x_new
            if delta <= eps:
                break
    vertices = np.einsum('nc,ncd->nd', hom, x.reshape(n, 4, 3))
    return dict(vertices=vertices, transforms=x.reshape(n, 4, 3), steps=steps)
