"""Keypoint definitions of REALY and barycentric keypoint extraction from a template mesh.

A template topology (BFM, FLAME, HIFI3D, ...) defines its 85 keypoints (68 iBUG + 17 extra) as
barycentric coordinates ``[[tri_idx, w1, w2], ...]`` (a JSON list, as REALY's ``<template>.txt``):

    k = w1 * V[F[tri, 0]] + w2 * V[F[tri, 1]] + (1 - w1 - w2) * V[F[tri, 2]]

so the keypoints of every mesh in that topology follow from its vertices alone.
Only numpy is needed here.
"""
import json
import os.path as osp
from typing import Dict, List, Sequence, Union

import numpy as np

#: Number of REALY keypoints (68 iBUG landmarks + 17 extra points).
NUM_KEYPOINTS = 85

#: The four evaluated regions, in REALY's reporting order.
REGIONS = ('nose', 'mouth', 'forehead', 'cheek')

#: Keypoints used for the global similarity alignment (eye corners, nose tip, mouth corners).
GLOBAL_KEYPOINTS = (36, 39, 42, 45, 33, 48, 54)

#: Keypoint pairs added to the region-wise rigid ICP.
ICP_KEYPOINTS: Dict[str, List[int]] = {
    'forehead': list(range(17, 27)) + list(range(36, 48)),
    'mouth': list(range(48, 61)) + [64],
    'nose': list(range(27, 36)) + [70, 71],
    'cheek': list(range(48, 61)) + [64, 76, 77, 36, 41, 40, 39, 42, 47, 46, 45, 7, 8, 9],
}

#: Keypoints guiding the non-rigid ICP of the scan (the cheek uses none).
NICP_KEYPOINTS: Dict[str, List[int]] = {
    'forehead': list(range(17, 27)) + list(range(36, 48)),
    'mouth': list(range(48, 61)) + [64],
    'nose': list(range(27, 36)),
    'cheek': [],
}

#: Divisor of the keypoint replication rate of the rigid ICP (the cheek weighs its keypoints 4x less).
ICP_KEYPOINT_RATE_DIVISOR: Dict[str, float] = {'forehead': 1.0, 'mouth': 1.0, 'nose': 1.0, 'cheek': 4.0}


def check_barycentric(bary: np.ndarray, num_faces: int, name: str = 'barycentric keypoints') -> np.ndarray:
    """Validate a ``(K, 3)`` array of ``[tri_idx, w1, w2]`` rows against a mesh with ``num_faces`` faces.

    Returns the array as float64. Raises ``ValueError`` with a message naming the problem.
    """
    bary = np.asarray(bary, dtype=np.float64)
    if bary.ndim != 2 or bary.shape[1] != 3:
        raise ValueError(f'{name}: expected rows [tri_idx, w1, w2] (shape (K, 3)), got shape {bary.shape}')
    if bary.shape[0] != NUM_KEYPOINTS:
        raise ValueError(f'{name}: REALY needs {NUM_KEYPOINTS} keypoints (68 iBUG + 17), got {bary.shape[0]}')
    tri = bary[:, 0]
    if np.any(tri != np.round(tri)) or tri.min() < 0 or tri.max() >= num_faces:
        raise ValueError(f'{name}: triangle indices must be integers in [0, {num_faces}), got range '
                         f'[{tri.min():g}, {tri.max():g}] (is the file for another template topology?)')
    return bary


def load_barycentric(path: str, num_faces: int = None) -> np.ndarray:
    """Read a REALY barycentric keypoint file (JSON list ``[[tri_idx, w1, w2], ...]``, or whitespace text).

    Args:
        path: file path.
        num_faces: if given, triangle indices are checked against it.

    Returns:
        ``(85, 3)`` float64 array.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'barycentric keypoint file not found: {path}')
    with open(path) as f:
        text = f.read().strip()
    try:
        bary = np.asarray(json.loads(text), dtype=np.float64) if text.startswith('[') else \
            np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(f'cannot parse barycentric keypoint file {path}: {err}') from err
    return check_barycentric(bary, num_faces if num_faces is not None else np.inf, name=path)


def save_barycentric(path: str, bary: np.ndarray) -> None:
    """Write ``[[tri_idx, w1, w2], ...]`` as JSON, the format REALY ships for its templates (atomic)."""
    from ...utils.safe_output import atomic_write
    rows = [[int(r[0]), float(r[1]), float(r[2])] for r in np.asarray(bary)]
    with atomic_write(path, 'w') as f:
        json.dump(rows, f)


def barycentric_keypoints(vertices: np.ndarray, faces: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Keypoints of a mesh from barycentric coordinates.

    ``k_j = w1_j V[F[t_j,0]] + w2_j V[F[t_j,1]] + (1 - w1_j - w2_j) V[F[t_j,2]]``

    Args:
        vertices: ``(N, 3)`` mesh vertices (template topology).
        faces: ``(F, 3)`` template faces (0-based).
        bary: ``(K, 3)`` rows ``[tri_idx, w1, w2]``.

    Returns:
        ``(K, 3)`` keypoints.
    """
    bary = np.asarray(bary, dtype=np.float64)
    tri = np.asarray(faces)[bary[:, 0].astype(np.int64)]  # (K, 3) vertex ids
    w = np.stack([bary[:, 1], bary[:, 2], 1.0 - bary[:, 1] - bary[:, 2]], axis=1)  # (K, 3)
    return np.einsum('kc,kcd->kd', w, np.asarray(vertices, dtype=np.float64)[tri])


def barycentric_from_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Make a barycentric keypoint array for a template: each point is projected onto the closest
    point of the template surface and expressed as ``[tri_idx, w1, w2]``.

    This is how a keypoint file for a new template topology is made from 85 3D landmarks placed on it.

    Args:
        vertices: ``(N, 3)`` template vertices.
        faces: ``(F, 3)`` template faces.
        points: ``(K, 3)`` landmark positions on (or near) the template.

    Returns:
        ``(K, 3)`` rows ``[tri_idx, w1, w2]`` (weights of the triangle's first two corners).
    """
    from .proximity import SurfaceProximity
    from ...utils import require
    triangles_mod = require('trimesh.triangles', 'REALY evaluation')
    vertices = np.asarray(vertices, dtype=np.float64)
    closest, _, tri = SurfaceProximity(vertices, faces).query(np.asarray(points, dtype=np.float64))
    w = triangles_mod.points_to_barycentric(vertices[np.asarray(faces)[tri]], closest)
    return np.column_stack([tri.astype(np.float64), w[:, 0], w[:, 1]])


def select(keypoints: np.ndarray, ids: Union[Sequence[int], np.ndarray]) -> np.ndarray:
    """``keypoints[ids]`` as a float64 ``(len(ids), 3)`` array."""
    return np.asarray(keypoints, dtype=np.float64)[np.asarray(list(ids), dtype=np.int64)].reshape(-1, 3)
