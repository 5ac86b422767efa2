"""Reading and checking meshes, keypoints and metric scales of the REALY layout.

OBJ files are read line by line (``v`` and ``f`` records, as REALY itself does): a template-topology
prediction is only meaningful with its vertex list untouched, and a generic OBJ loader may split
vertices along texture seams or drop unreferenced ones. Other formats (PLY, OFF, STL, ...) go through
``trimesh.load(process=False)``.
"""
import os.path as osp
from typing import Dict, Tuple

import numpy as np

from ...utils import require


def read_obj(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(vertices (N, 3), faces (F, 3))`` of a Wavefront OBJ, vertex order kept, polygons fanned into
    triangles, 0-based faces (``f`` records may be ``i``, ``i/t``, ``i//n``, ``i/t/n``, negative)."""
    verts, faces = [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if parts[0] == 'v':
                    verts.append([float(x) for x in parts[1:4]])
                elif parts[0] == 'f':
                    ids = [int(p.split('/')[0]) for p in parts[1:]]
                    ids = [i - 1 if i > 0 else len(verts) + i for i in ids]
                    faces.extend([ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1))
            except (ValueError, IndexError) as err:
                raise ValueError(f'{path}:{lineno}: malformed OBJ record {line.strip()!r}') from err
    vertices = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    return vertices, np.asarray(faces, dtype=np.int64).reshape(-1, 3)


def validate_mesh(vertices: np.ndarray, faces: np.ndarray, name: str = 'mesh',
                  check_manifold: bool = True) -> None:
    """Raise ``ValueError`` naming ``name`` if the mesh cannot be evaluated: no faces, face indices out
    of range, non-finite vertices, degenerate faces (a repeated corner) or non-manifold edges (an edge
    shared by more than two faces)."""
    if len(faces) == 0:
        raise ValueError(f'{name}: the mesh has no faces (a surface is needed, not a point cloud)')
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f'{name}: face indices reach {faces.max()} but the mesh has {len(vertices)} '
                         'vertices')
    if not np.all(np.isfinite(vertices)):
        raise ValueError(f'{name}: the mesh has non-finite (NaN/inf) vertex coordinates')
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    if degenerate.any():
        raise ValueError(f'{name}: {int(degenerate.sum())} degenerate faces (a vertex repeated in a '
                         f'face), first is face {int(np.argmax(degenerate))}')
    if check_manifold:
        edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        uniq, counts = np.unique(edges, axis=0, return_counts=True)
        bad = counts > 2
        if bad.any():
            e = uniq[np.argmax(bad)]
            raise ValueError(f'{name}: the mesh is non-manifold: {int(bad.sum())} edges are shared by '
                             f'more than two faces (e.g. edge {int(e[0])}-{int(e[1])} by '
                             f'{int(counts[np.argmax(bad)])} faces)')


def load_mesh(path: str, check_manifold: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Read and validate a triangle mesh: ``(vertices (N, 3) float64, faces (F, 3) int64)``."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'mesh file not found: {path}')
    if path.lower().endswith('.obj'):
        vertices, faces = read_obj(path)
    else:
        trimesh = require('trimesh', 'reading REALY meshes')
        mesh = trimesh.load(path, process=False, force='mesh')
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(getattr(mesh, 'faces', np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    validate_mesh(vertices, faces, name=path, check_manifold=check_manifold)
    return vertices, faces


def load_keypoints(path: str, num: int = 85) -> np.ndarray:
    """Ground-truth keypoints: an OBJ with ``num`` ``v`` records (REALY's ``REALY_HIFI3D_keypoints/<id>.obj``)
    or a text file with ``num`` rows ``x y z``."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'keypoint file not found: {path}')
    if path.lower().endswith('.obj'):
        kp, _ = read_obj(path)
    else:
        kp = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if kp.shape != (num, 3):
        raise ValueError(f'{path}: expected {num} keypoints with x y z, got an array of shape {kp.shape}')
    if not np.all(np.isfinite(kp)):
        raise ValueError(f'{path}: keypoints contain NaN/inf')
    return kp


def load_metric_scales(path: str) -> Dict[str, float]:
    """Metric scales (scan units -> mm) per subject.

    Either REALY's file (one number per line, line i is subject ``i``, counted from 1) or two columns
    ``<subject> <scale>``. Returns ``{subject: scale}`` with subjects as strings.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'metric scale file not found: {path}')
    scales = {}
    with open(path) as f:
        rows = [ln.split() for ln in f if ln.strip() and not ln.lstrip().startswith('#')]
    for i, row in enumerate(rows, 1):
        try:
            if len(row) not in (1, 2):
                raise ValueError
            key, value = (str(i), float(row[0])) if len(row) == 1 else (row[0], float(row[1]))
        except ValueError:
            raise ValueError(f'{path}: line {i} should be "<scale>" or "<subject> <scale>", got '
                             f'{" ".join(row)!r}') from None
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f'{path}: line {i}: the metric scale must be a positive number, got {value}')
        scales[key] = value
    return scales


def save_error_map(path: str, vertices: np.ndarray, faces: np.ndarray, errors: np.ndarray,
                   vmax: float = 5.0) -> None:
    """Write a scan region coloured by per-vertex error (PLY keeps the colours; 'jet', blue = 0 mm,
    red >= ``vmax`` mm); the per-vertex error in mm is stored as the vertex quality too."""
    trimesh = require('trimesh', 'writing REALY error maps')
    from .region_error import error_colors
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=error_colors(errors, vmax),
                           process=False)
    mesh.vertex_attributes['quality'] = np.asarray(errors, dtype=np.float64)
    mesh.export(path)
