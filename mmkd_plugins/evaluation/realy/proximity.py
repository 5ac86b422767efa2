"""Closest points on a triangle surface (not only on its vertices).

For a query point q let d_v be its distance to the nearest mesh vertex: the closest surface point is at
most d_v away. A triangle with centroid c and radius r (largest centroid-corner distance) can only hold
a point within d_v of q if |c - q| <= d_v + r. Candidate triangles are found with scipy's cKDTree on
triangle centroids (triangles are binned by radius so that a few large triangles do not widen every
query), and the exact point-triangle projection is trimesh's ``triangles.closest_point``. The result is
exact, and needs neither rtree nor embree.
"""
from typing import Tuple

import numpy as np

from ...utils import require


class SurfaceProximity:
    """Closest-point queries on a fixed triangle mesh.

    Args:
        vertices: ``(N, 3)`` vertices.
        faces: ``(F, 3)`` 0-based triangle indices.
        num_bins: number of triangle-radius bins (each has its own centroid tree).
        chunk_size: query points handled at once (bounds the memory of the candidate lists).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, num_bins: int = 4,
                 chunk_size: int = 4096) -> None:
        spatial = require('scipy.spatial', 'REALY closest-point queries')
        self._tri_mod = require('trimesh.triangles', 'REALY closest-point queries')
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise ValueError(f'SurfaceProximity: faces must be a non-empty (F, 3) array, got {faces.shape}')
        self.triangles = vertices[faces]  # (F, 3, 3)
        centroids = self.triangles.mean(axis=1)
        radii = np.linalg.norm(self.triangles - centroids[:, None], axis=2).max(axis=1)
        self.vertex_tree = spatial.cKDTree(vertices[np.unique(faces)])
        # bins of triangle ids by radius quantiles
        edges = np.unique(np.quantile(radii, np.linspace(0, 1, num_bins + 1)[1:-1]))
        bin_id = np.searchsorted(edges, radii, side='left')
        self.bins = []
        for b in np.unique(bin_id):
            ids = np.nonzero(bin_id == b)[0]
            self.bins.append((ids, spatial.cKDTree(centroids[ids]), float(radii[ids].max())))
        self.chunk_size = int(chunk_size)

    def query(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Closest surface points.

        Args:
            points: ``(M, 3)`` query points.

        Returns:
            ``(closest (M, 3), distance (M,), triangle_id (M,))``.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out_p = np.empty_like(points)
        out_d = np.empty(len(points))
        out_t = np.empty(len(points), dtype=np.int64)
        for start in range(0, len(points), self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            out_p[sl], out_d[sl], out_t[sl] = self._query_chunk(points[sl])
        return out_p, out_d, out_t

    def _query_chunk(self, q: np.ndarray):
        d_v, _ = self.vertex_tree.query(q)
        pair_q, pair_t = [], []
        for ids, tree, r_max in self.bins:
            lists = tree.query_ball_point(q, d_v + r_max + 1e-12, return_sorted=False)
            lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
            if lengths.sum() == 0:
                continue
            pair_q.append(np.repeat(np.arange(len(q)), lengths))
            pair_t.append(ids[np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])])
        pq, pt = np.concatenate(pair_q), np.concatenate(pair_t)
        cp = self._tri_mod.closest_point(self.triangles[pt], q[pq])
        d2 = np.einsum('ij,ij->i', cp - q[pq], cp - q[pq])
        d2[~np.isfinite(d2)] = np.inf  # degenerate triangles
        order = np.lexsort((d2, pq))  # by query, then distance
        first = order[np.r_[True, pq[order][1:] != pq[order][:-1]]]
        # every query has >= 1 candidate (the triangles of its nearest vertex)
        return cp[first], np.sqrt(d2[first]), pt[first]


class MovedProximity:
    """Closest points on a rigidly moved copy ``R V + t`` of the mesh indexed by ``base``, without
    rebuilding the index: ``closest(q; R V + t) = R closest(R^T (q - t); V) + t``."""

    def __init__(self, base: SurfaceProximity, rotation: np.ndarray, translation: np.ndarray) -> None:
        self.base, self.rotation, self.translation = base, np.asarray(rotation), np.asarray(translation)

    def query(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        local, dist, tri = self.base.query((np.asarray(points, dtype=np.float64) - self.translation)
                                           @ self.rotation)
        return local @ self.rotation.T + self.translation, dist, tri


def closest_points_on_surface(vertices: np.ndarray, faces: np.ndarray,
                              points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-shot ``SurfaceProximity(vertices, faces).query(points)``."""
    return SurfaceProximity(vertices, faces).query(points)


def nearest_vertices(vertices: np.ndarray, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Index and distance of the nearest vertex of ``vertices (N, 3)`` to each of ``points (M, 3)``."""
    spatial = require('scipy.spatial', 'REALY nearest-vertex queries')
    dist, idx = spatial.cKDTree(np.asarray(vertices, dtype=np.float64)).query(np.asarray(points))
    return idx.astype(np.int64), dist
