"""Optimal-step non-rigid ICP (Amberg et al., CVPR 2007) as REALY uses it to deform a scan region.

Every step solves, for the CURRENT source vertices ``c_i`` (homogeneous ``[x, y, z, 1]``), one affine
``X_i`` (4 x 3) per vertex; the source then moves to ``c_i <- c_i^T X_i`` (REALY's formulation: each step
solves an increment on the deformed source, so deformation accumulates). For a stiffness ``alpha`` the
step is the sparse linear least squares

    min_X  alpha^2 || (M kron G) X ||^2                        stiffness, M = edge-vertex incidence (E x N),
                                                              G = diag(1, 1, 1, gamma)
         + sum_i  w_i^2 || c_i^T X_i - u_i ||^2                data: u_i = nearest target point to c_i,
                                                              w_i in {0, 1} (outliers: distance
                                                              >= max(2 mean, 1) get 0)
         + sum_l  beta^2 || c_l^T X_l - y_l ||^2                landmarks (vertex l should reach y_l)
         + lambda || X - X_identity ||^2                        tiny damping (fixes null spaces)

solved through its normal equations with a sparse LU factorisation (``scipy.sparse.linalg.splu``).
Stiffness schedule ``alpha_d = 50 exp(-0.5 (d - 1))``, d = 1, 2, 3, thresholds ``eps_d = 1, 0.5, 0.25``.

With landmarks, REALY first makes one landmark-only step (no data term) with stiffness 150 and
``G = diag(2, 2, 3, 2 gamma)``, landmark weight 50; afterwards the landmark weight decays as
``50 exp(-0.9 c) / 10`` with c the number of steps made so far. A vertex listed twice as a landmark
gets one row, with its last target (REALY assigns the weights and targets by index).

REALY's stopping rule (``stop_rule='realy'``): before every step, ``delta = ||X - X_prev||_F`` (the
change between the last two solved increments) is compared with the stage's threshold; the stage ends
when ``delta <= eps_d`` or after ``max_steps`` steps (11 with landmarks; no cap without). ``X`` and
``X_prev`` carry over from one stage to the next (a stage whose threshold the last change already meets
makes no step at all) and start as all-ones / all-zeros matrices, so that the first test never stops.
The initial landmark-only stage makes exactly one step (its threshold ``2 eps_1`` is never met by the
all-ones start).

Deviation kept as options (configs/realy/README.md): ``formulation='absolute'`` solves affines relative
to the ORIGINAL source (Amberg's textbook form, ``v_i^T X_i``), and ``stop_rule='per_stage'`` makes at
least one step per stage and tests ``delta`` after each step.
"""
import math
import warnings
from typing import Dict, Optional, Sequence

import numpy as np

from ...utils import require

DEFAULT_STIFFNESS = tuple(50.0 * math.exp(-0.5 * d) for d in range(3))
DEFAULT_EPSILON = (1.0, 0.5, 0.25)
FORMULATIONS = ('incremental', 'absolute')
STOP_RULES = ('realy', 'per_stage')


def edge_vertex_incidence(faces: np.ndarray, num_vertices: int):
    """Sparse node-arc incidence ``M`` (E x N): row e has +1 at one end of edge e and -1 at the other.

    Edges are the unique undirected edges of the triangles (an edge of a degenerate triangle that joins
    a vertex to itself gives an all-zero row, as in REALY).
    """
    sparse = require('scipy.sparse', 'REALY non-rigid ICP')
    faces = np.asarray(faces, dtype=np.int64)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    edges = np.unique(edges, axis=0)
    e = np.arange(len(edges))
    return sparse.csr_matrix((np.r_[np.ones(len(e)), -np.ones(len(e))],
                              (np.r_[e, e], np.r_[edges[:, 0], edges[:, 1]])),
                             shape=(len(edges), num_vertices))


class _NormalEquations:
    """The normal equations of one optimal step, assembled on a fixed sparsity pattern.

    ``A = alpha^2 kron(M^T M, G^2) + blockdiag_i(w_i^2 c_i c_i^T) + lambda I`` (4N x 4N) always has the
    pattern of ``kron(M^T M + I, ones(4, 4))``; it is built once with index maps so that each step only
    writes values (no sparse additions), and the fill-reducing column order of the first factorisation
    is reused for the later ones (same pattern, so the same order).
    """

    def __init__(self, mtm, damping: float) -> None:
        sparse = require('scipy.sparse', 'REALY non-rigid ICP')
        n = mtm.shape[0]
        self.n, self.damping = n, float(damping)
        # vertex-level pattern: M^T M plus the diagonal, each entry a dense 4 x 4 block
        vpat = (abs(mtm) + sparse.identity(n, format='csr')).tocoo()
        vpat.sum_duplicates()
        vrow, vcol = vpat.row.astype(np.int64), vpat.col.astype(np.int64)
        mtm_coo = mtm.tocsr()
        mtm_vals = np.asarray(mtm_coo[vrow, vcol]).ravel()
        a, b = np.meshgrid(np.arange(4), np.arange(4), indexing='ij')
        rows = (4 * vrow[:, None] + a.ravel()[None]).ravel()
        cols = (4 * vcol[:, None] + b.ravel()[None]).ravel()
        pattern = sparse.csc_matrix((np.arange(1, len(rows) + 1, dtype=np.float64), (rows, cols)),
                                    shape=(4 * n, 4 * n))
        pattern.sort_indices()
        # position in pattern.data of every (vertex pair, a, b) entry
        pos = np.empty(len(rows), dtype=np.int64)
        pos[pattern.data.astype(np.int64) - 1] = np.arange(len(rows))
        self.indices, self.indptr = pattern.indices, pattern.indptr
        self.entry = pos.reshape(-1, 4, 4)  # (P, 4, 4) -> data slot, P = vertex pairs of the pattern
        self.pair_mtm = mtm_vals  # (P,) value of M^T M at each vertex pair
        self.diag_pair = np.nonzero(vrow == vcol)[0][np.argsort(vrow[vrow == vcol])]  # (N,) pair id of (i, i)
        self.perm_c = None

    def solve(self, g_diag, alpha, hom, row_weight_sq, row_target, x_identity):
        """Solve for ``X`` (4N x 3). ``row_weight_sq`` (N,) and ``row_target`` (N, 3) already merge the
        data and landmark rows per vertex (``sum w^2`` and ``sum w^2 u``)."""
        sparse = require('scipy.sparse', 'REALY non-rigid ICP')
        splinalg = require('scipy.sparse.linalg', 'REALY non-rigid ICP')
        n = self.n
        g2 = np.asarray(g_diag, dtype=np.float64) ** 2
        data = np.zeros(len(self.indices))
        # stiffness: alpha^2 (M^T M)_{ij} G^2 on the diagonal of each 4 x 4 block
        for k in range(4):
            data[self.entry[:, k, k]] += alpha ** 2 * g2[k] * self.pair_mtm
        # data + landmarks: w_i^2 c_i c_i^T on block (i, i), plus the damping on the diagonal
        block = row_weight_sq[:, None, None] * hom[:, :, None] * hom[:, None, :] \
            + self.damping * np.eye(4)[None]
        data[self.entry[self.diag_pair].reshape(-1)] += block.reshape(-1)  # distinct slots
        lhs = sparse.csc_matrix((data, self.indices, self.indptr), shape=(4 * n, 4 * n))
        rhs = (hom[:, :, None] * row_target[:, None, :]).reshape(4 * n, 3) + self.damping * x_identity
        if self.perm_c is None:  # symmetric positive definite: symmetric ordering, no row pivoting
            lu = splinalg.splu(lhs, permc_spec='MMD_AT_PLUS_A', diag_pivot_thresh=0.0,
                               options=dict(SymmetricMode=True))
            self.perm_c = lu.perm_c
            return lu.solve(rhs)
        # same pattern: permute symmetrically with the first order, factorise without re-ordering
        p = np.argsort(self.perm_c)  # column j of lhs goes to position perm_c[j]
        lhs_p = lhs[p][:, p].tocsc()
        lu = splinalg.splu(lhs_p, permc_spec='NATURAL', diag_pivot_thresh=0.0,
                           options=dict(SymmetricMode=True))
        return lu.solve(rhs[p])[self.perm_c]


def optimal_step_nicp(src_vertices: np.ndarray,
                      src_faces: np.ndarray,
                      target_points: np.ndarray,
                      landmark_ids: Optional[Sequence[int]] = None,
                      landmark_targets: Optional[np.ndarray] = None,
                      stiffness: Sequence[float] = DEFAULT_STIFFNESS,
                      epsilon: Sequence[float] = DEFAULT_EPSILON,
                      max_steps: Optional[int] = 11,
                      max_steps_without_landmarks: Optional[int] = None,
                      gamma: float = 1.0,
                      landmark_weight: float = 50.0,
                      landmark_decay: float = 0.9,
                      landmark_weight_scale: float = 0.1,
                      init_stiffness: float = 150.0,
                      init_g: Sequence[float] = (2.0, 2.0, 3.0, 2.0),
                      outlier_factor: float = 2.0,
                      outlier_min: float = 1.0,
                      damping: float = 1e-8,
                      formulation: str = 'incremental',
                      stop_rule: str = 'realy',
                      step_limit: int = 1000) -> Dict:
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
        max_steps: steps per stage at most, with landmarks (REALY: 11; None: no cap).
        max_steps_without_landmarks: the same without landmarks (REALY: None, no cap).
        gamma: weight of the translation column in the stiffness term.
        landmark_weight: landmark row weight of the initial step (REALY: 50).
        landmark_decay: later landmark weight is ``landmark_weight * exp(-decay * c) * scale``.
        landmark_weight_scale: that ``scale`` (REALY: 1/10).
        init_stiffness: stiffness of the initial landmark-only step (REALY: 150).
        init_g: ``G`` diagonal of the initial step, the last entry multiplied by ``gamma``.
        outlier_factor, outlier_min: data rows whose match is at least
            ``max(outlier_factor * mean distance, outlier_min)`` away get weight 0 (scan units).
        damping: weight of the pull toward the identity transforms (numerical safety only).
        formulation: ``'incremental'`` (REALY: each step's affines act on the current deformed source)
            or ``'absolute'`` (affines relative to the original source; a deviation).
        stop_rule: ``'realy'`` (test before each step, carried across stages) or ``'per_stage'`` (at
            least one step per stage, test after each step; a deviation).
        step_limit: safety cap on the steps of one stage when no ``max_steps`` applies (REALY has none;
            a ``RuntimeWarning`` says when it is reached).

    Returns:
        dict with ``vertices`` (``(N, 3)`` deformed source), ``transforms`` (``(N, 4, 3)``, the last
        step's affines, acting on the source before that step with ``'incremental'``), ``steps`` (total)
        and ``stage_steps`` (steps per stage, the landmark-only stage first when there is one).
    """
    spatial = require('scipy.spatial', 'REALY non-rigid ICP')
    src = np.asarray(src_vertices, dtype=np.float64)
    n = len(src)
    if src.ndim != 2 or src.shape[1] != 3 or n < 3:
        raise ValueError(f'optimal_step_nicp: src_vertices must be (N>=3, 3), got {src.shape}')
    if len(stiffness) != len(epsilon):
        raise ValueError('optimal_step_nicp: stiffness and epsilon need one entry per stage')
    if formulation not in FORMULATIONS:
        raise ValueError(f'optimal_step_nicp: formulation must be one of {FORMULATIONS}, got {formulation!r}')
    if stop_rule not in STOP_RULES:
        raise ValueError(f'optimal_step_nicp: stop_rule must be one of {STOP_RULES}, got {stop_rule!r}')
    lm_ids = np.asarray([] if landmark_ids is None else landmark_ids, dtype=np.int64).reshape(-1)
    lm_tgt = np.zeros((0, 3)) if landmark_targets is None else \
        np.asarray(landmark_targets, dtype=np.float64).reshape(-1, 3)
    if len(lm_ids) != len(lm_tgt):
        raise ValueError(f'optimal_step_nicp: {len(lm_ids)} landmark ids but {len(lm_tgt)} targets')
    if len(lm_ids) and (lm_ids.min() < 0 or lm_ids.max() >= n):
        raise ValueError(f'optimal_step_nicp: landmark ids must be in [0, {n})')
    # one row per landmark vertex, the last target wins (REALY writes weights and targets by index)
    last = len(lm_ids) - 1 - np.unique(lm_ids[::-1], return_index=True)[1]
    lm_ids, lm_tgt = lm_ids[last], lm_tgt[last]
    has_lm = len(lm_ids) > 0

    incidence = edge_vertex_incidence(src_faces, n)
    system = _NormalEquations((incidence.T @ incidence).tocsr(), damping)
    x_identity = np.tile(np.vstack([np.eye(3), np.zeros((1, 3))]), (n, 1))  # (4N, 3)
    tree = spatial.cKDTree(np.asarray(target_points, dtype=np.float64))
    hom0 = np.column_stack([src, np.ones(n)])

    def landmark_rows(beta):
        w2, tgt = np.zeros(n), np.zeros((n, 3))
        w2[lm_ids] = beta ** 2
        tgt[lm_ids] = beta ** 2 * lm_tgt
        return w2, tgt

    g = np.array([1.0, 1.0, 1.0, gamma])
    # stages: (stiffness, G, threshold, step cap, landmark-only)
    cap = max_steps if has_lm else max_steps_without_landmarks
    stages = [(float(a), g, float(e), cap, False) for a, e in zip(stiffness, epsilon)]
    if has_lm:
        stages.insert(0, (float(init_stiffness), np.asarray(init_g, dtype=np.float64) * [1, 1, 1, gamma],
                          2.0 * float(epsilon[0]) if len(epsilon) else 0.0, 1, True))

    cur = src.copy()  # current deformed source
    if stop_rule == 'realy':
        x_prev, x = np.zeros((4 * n, 3)), np.ones((4 * n, 3))
    else:
        x_prev, x = None, x_identity.copy()
    steps, stage_steps = 0, []
    for alpha, g_diag, eps, stage_cap, lm_only in stages:
        limit = stage_cap if stage_cap is not None else step_limit
        done = 0
        while True:
            if stop_rule == 'realy':
                delta = float(np.linalg.norm(x - x_prev))
                if delta <= eps or done >= limit:
                    break
            if lm_only:
                w2, tgt = landmark_rows(landmark_weight)
            else:
                dist, idx = tree.query(cur)
                thr = max(outlier_factor * float(dist.mean()), outlier_min)
                w2 = (dist < thr).astype(np.float64)
                tgt = w2[:, None] * tree.data[idx]
                if has_lm:
                    lw2, ltgt = landmark_rows(landmark_weight * math.exp(-landmark_decay * steps)
                                              * landmark_weight_scale)
                    w2, tgt = w2 + lw2, tgt + ltgt
            hom = np.column_stack([cur, np.ones(n)]) if formulation == 'incremental' else hom0
            x_new = system.solve(g_diag, alpha, hom, w2, tgt, x_identity)
            cur = np.einsum('nc,ncd->nd', hom, x_new.reshape(n, 4, 3))
            steps += 1
            done += 1
            x_prev, x = x, x_new
            if stop_rule == 'per_stage':
                if float(np.linalg.norm(x - x_prev)) <= eps or done >= limit:
                    break
            elif lm_only:
                break
        if stage_cap is None and done >= step_limit:
            warnings.warn(f'optimal_step_nicp: stiffness stage {alpha:g} stopped at the safety cap of '
                          f'{step_limit} steps without meeting its threshold {eps:g}', RuntimeWarning)
        stage_steps.append(done)
    return dict(vertices=cur, transforms=x.reshape(n, 4, 3) if steps else x_identity.reshape(n, 4, 3),
                steps=steps, stage_steps=stage_steps)
