"""Reading and checking meshes, keypoints and metric scales of the REALY layout.

OBJ files are read line by line (``v`` and ``f`` records, as REALY itself does): a template-topology
prediction is only meaningful with its vertex list untouched, and a generic OBJ loader may split
vertices along texture seams or drop unreferenced ones. Other formats (PLY, OFF, STL, ...) go through
``trimesh.load(process=False)``.
"""
import os.path as osp
import warnings
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


class REALYMeshWarning(UserWarning):
    """A mesh the official REALY code evaluates as it is, but which is probably not what was meant
    (degenerate faces, non-manifold edges, ...)."""


def validate_mesh(vertices: np.ndarray, faces: np.ndarray, name: str = 'mesh',
                  check_manifold: bool = True, strict: bool = False) -> None:
    """Check that a mesh can be evaluated; ``name`` (the file) is named in every message.

    Always a ``ValueError``: no faces, face indices out of range, non-finite vertex coordinates (the
    official code cannot evaluate these either). Degenerate faces (a corner repeated) and non-manifold
    edges (an edge in more than two faces) are accepted by the official code, so they only give a
    :class:`REALYMeshWarning` with their count, or a ``ValueError`` with ``strict=True``.
    ``check_manifold=False`` skips the (slower) edge count.
    """
    if len(faces) == 0:
        raise ValueError(f'{name}: the mesh has no faces (a surface is needed, not a point cloud)')
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f'{name}: face indices reach {faces.max()} but the mesh has {len(vertices)} '
                         'vertices')
    if not np.all(np.isfinite(vertices)):
        raise ValueError(f'{name}: the mesh has non-finite (NaN/inf) vertex coordinates')
    problems = []
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    if degenerate.any():
        problems.append(f'{int(degenerate.sum())} degenerate faces (a vertex repeated in a face), first is '
                        f'face {int(np.argmax(degenerate))}')
    if check_manifold:  # edges of the proper triangles (a degenerate one would count an edge twice)
        edges = np.sort(faces[~degenerate][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        uniq, counts = np.unique(edges, axis=0, return_counts=True)
        bad = counts > 2
        if len(edges) and bad.any():
            e = uniq[np.argmax(bad)]
            problems.append(f'the mesh is non-manifold: {int(bad.sum())} edges are shared by more than two '
                            f'faces (e.g. edge {int(e[0])}-{int(e[1])} by {int(counts[np.argmax(bad)])} faces)')
    if not problems:
        return
    if strict:
        raise ValueError(f'{name}: ' + '; '.join(problems) + ' (strict mesh checks)')
    warnings.warn(f'{name}: ' + '; '.join(problems) + '. Evaluated as it is, as the official REALY code '
                  'does (strict mesh checks refuse it).', REALYMeshWarning, stacklevel=2)


def merge_vertices(vertices: np.ndarray, faces: np.ndarray,
                   digits: int = 8) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge duplicate vertices and drop unreferenced ones, as ``trimesh.Trimesh(..., process=True)``
    does to REALY's ground-truth region before the error is computed.

    Vertices referenced by a face whose coordinates, read as float32 (REALY's OBJ reader), agree after
    rounding to ``digits`` decimals (trimesh's ``tol.merge = 1e-8``) become one, kept at the first
    occurrence, in order of first occurrence; faces are re-indexed (a face may become degenerate; none is
    removed).

    Returns:
        ``(vertices (M, 3), faces (F, 3), kept (M,))``: ``kept`` are the source indices of the kept
        vertices (``vertices = input[kept]``).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    referenced = np.zeros(len(v), dtype=bool)
    referenced[f.reshape(-1)] = True
    ref_ids = np.nonzero(referenced)[0]
    key = np.round(v[ref_ids].astype(np.float32).astype(np.float64) * 10.0 ** digits).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind='stable')  # groups in order of first occurrence
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[ref_ids] = rank[inverse.reshape(-1)]
    kept = ref_ids[first[order]]
    return v[kept], remap[f], kept


def load_mesh(path: str, check_manifold: bool = True, strict: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Read and validate a triangle mesh: ``(vertices (N, 3) float64, faces (F, 3) int64)``, vertices as
    in the file (see :func:`validate_mesh` for ``check_manifold`` and ``strict``)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'mesh file not found: {path}')
    if path.lower().endswith('.obj'):
        vertices, faces = read_obj(path)
    else:
        trimesh = require('trimesh', 'reading REALY meshes')
        mesh = trimesh.load(path, process=False, force='mesh')
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(getattr(mesh, 'faces', np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    validate_mesh(vertices, faces, name=path, check_manifold=check_manifold, strict=strict)
    return vertices, faces


def load_template_mask(path: str, num_vertices: int) -> np.ndarray:
    """REALY's ``--template_mask`` file: one 0/1 value per template vertex (comma- or line-separated,
    read with ``np.loadtxt(delimiter=',')``). Returns a bool ``(num_vertices,)`` mask (nonzero = kept).

    A file with more values than vertices is accepted (the extra values are ignored, with a warning, as
    the official code ignores them); fewer is an error.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'template mask file not found: {path}')
    try:
        values = np.loadtxt(path, delimiter=',', dtype=np.float64, ndmin=1).reshape(-1)
    except ValueError as err:
        raise ValueError(f'{path}: a template mask holds one number (0 or 1) per template vertex, '
                         f'separated by commas or new lines: {err}') from None
    if len(values) < num_vertices:
        raise ValueError(f'{path}: the template mask has {len(values)} values but the template has '
                         f'{num_vertices} vertices')
    if len(values) > num_vertices:
        warnings.warn(f'{path}: the template mask has {len(values)} values for {num_vertices} template '
                      'vertices; the extra values are ignored', REALYMeshWarning, stacklevel=2)
    if not np.all(np.isfinite(values)):
        raise ValueError(f'{path}: the template mask contains NaN/inf')
    return values[:num_vertices] != 0


def masked_faces(faces: np.ndarray, vertex_mask: np.ndarray) -> np.ndarray:
    """The faces whose three vertices are all kept by ``vertex_mask`` (REALY's ``--template_mask``)."""
    faces = np.asarray(faces, dtype=np.int64)
    return faces[np.asarray(vertex_mask, dtype=bool)[faces].all(axis=1)]


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
    red >= ``vmax`` mm); the per-vertex error in mm is stored as the vertex quality too.

    The file is written atomically (encoded in memory, then a temporary file renamed onto ``path``):
    an interrupted write leaves the previous file or none. Whether an existing file may be replaced
    is the caller's decision (:class:`~mmkd_plugins.evaluation.metrics.REALYMetric` ``overwrite``,
    ``tools/realy_evaluate.py --force``)."""
    trimesh = require('trimesh', 'writing REALY error maps')
    from ...utils.safe_output import atomic_write
    from .region_error import error_colors
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=error_colors(errors, vmax),
                           process=False)
    mesh.vertex_attributes['quality'] = np.asarray(errors, dtype=np.float64)
    data = mesh.export(file_type='ply')
    with atomic_write(path, 'wb') as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
