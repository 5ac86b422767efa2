"""A procedural face surface and a REALY-layout benchmark folder made from it (tests, benchmarks,
smoke runs of a new set-up). No real scan is shipped by any package, so the face is analytic.

The face is a height field over the parameter square (u, v) in [-1, 1]^2 (u: subject's right to left,
v: chin to forehead):

    S(u, v) = (W u, H v, Z(u, v)),   Z = D (1 - 0.55 u^2 - 0.35 v^2 - 0.1 u^4) + sum_k a_k g_k(u, v)

with Gaussian features g_k (nose ridge and tip, alar wings, eye sockets, brow ridges, lips, cheek
bones, chin). Units mimic REALY's scans (W = 8, H = 10, so about 9 mm per unit). An "identity" scales
the feature amplitudes. Keypoints (68 iBUG + 17 extra) sit at fixed (u, v) positions.
"""
import os.path as osp
from typing import Dict, Optional, Tuple

import numpy as np

from ...utils.safe_output import atomic_write
from .keypoints import NUM_KEYPOINTS, REGIONS, barycentric_from_points, save_barycentric

WIDTH, HEIGHT, DEPTH = 8.0, 10.0, 6.0

# (amplitude, cu, cv, su, sv) of the Gaussian features; mirrored features listed for both sides
FEATURES = np.array([
    [2.0, 0.0, 0.02, 0.13, 0.28],     # nose ridge
    [0.8, 0.0, -0.14, 0.13, 0.10],    # nose tip
    [0.4, -0.14, -0.19, 0.09, 0.07],  # alar wings
    [0.4, 0.14, -0.19, 0.09, 0.07],
    [-0.8, -0.35, 0.25, 0.16, 0.10],  # eye sockets
    [-0.8, 0.35, 0.25, 0.16, 0.10],
    [0.5, -0.35, 0.42, 0.22, 0.08],   # brow ridges
    [0.5, 0.35, 0.42, 0.22, 0.08],
    [0.4, 0.0, -0.44, 0.22, 0.07],    # upper lip
    [0.4, 0.0, -0.59, 0.20, 0.07],    # lower lip
    [0.5, -0.5, -0.05, 0.20, 0.17],   # cheek bones
    [0.5, 0.5, -0.05, 0.20, 0.17],
    [0.6, 0.0, -0.85, 0.22, 0.12],    # chin
])

#: Parameter boxes of the four scan regions: (|u| min, |u| max, v min, v max).
REGION_BOXES = {
    'nose': (0.0, 0.22, -0.30, 0.32),
    'mouth': (0.0, 0.38, -0.72, -0.32),
    'forehead': (0.0, 0.65, 0.12, 0.85),
    'cheek': (0.25, 0.85, -0.45, 0.10),
}


def random_identity(seed: int, spread: float = 0.15) -> np.ndarray:
    """Feature amplitude multipliers of a random subject, in ``[1 - spread, 1 + spread]``."""
    return 1.0 + np.random.default_rng(seed).uniform(-spread, spread, len(FEATURES))


def head_surface(u: np.ndarray, v: np.ndarray, identity: Optional[np.ndarray] = None) -> np.ndarray:
    """Points ``S(u, v)`` (shape ``u.shape + (3,)``) of the procedural face."""
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    amp = FEATURES[:, 0] * (1.0 if identity is None else np.asarray(identity))
    z = DEPTH * (1 - 0.55 * u ** 2 - 0.35 * v ** 2 - 0.1 * u ** 4)
    for a, (cu, cv, su, sv) in zip(amp, FEATURES[:, 1:]):
        z = z + a * np.exp(-0.5 * (((u - cu) / su) ** 2 + ((v - cv) / sv) ** 2))
    return np.stack([WIDTH * u, HEIGHT * v, z], axis=-1)


def grid_mesh(n_u: int, n_v: int, identity: Optional[np.ndarray] = None, jitter: float = 0.0,
              flip_diagonals: bool = False, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangulated ``n_u x n_v`` parameter grid of the face.

    Args:
        jitter: random parameter offsets in units of the grid step (interior vertices only), so that
            two meshes of the same face have different vertex positions.
        flip_diagonals: split the quads along the other diagonal (a different topology).

    Returns:
        ``(vertices (n_u n_v, 3), faces, uv (n_u n_v, 2))``.
    """
    uu, vv = np.meshgrid(np.linspace(-1, 1, n_u), np.linspace(-1, 1, n_v), indexing='ij')
    if jitter:
        rng = np.random.default_rng(seed)
        inner = np.zeros_like(uu, dtype=bool)
        inner[1:-1, 1:-1] = True
        uu = uu + inner * rng.uniform(-jitter, jitter, uu.shape) * 2 / (n_u - 1)
        vv = vv + inner * rng.uniform(-jitter, jitter, vv.shape) * 2 / (n_v - 1)
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1)
    idx = np.arange(n_u * n_v).reshape(n_u, n_v)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    if flip_diagonals:
        faces = np.concatenate([np.stack([a, b, d], 1), np.stack([b, c, d], 1)])
    else:
        faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return head_surface(uv[:, 0], uv[:, 1], identity), faces.astype(np.int64), uv


def scan_mesh(n_u: int, n_v: int, identity: Optional[np.ndarray] = None, jitter: float = 0.3,
              seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 'scan' of the face: Delaunay triangulation (in the parameter plane) of a jittered
    ``n_u x n_v`` grid plus the 85 keypoint positions, so that the ground-truth keypoints are scan
    vertices (as dense real scans nearly have them) and the topology differs from any template.

    Returns:
        ``(vertices, faces, uv, keypoint_vertex_ids (85,))``.
    """
    from ...utils import require
    spatial = require('scipy.spatial', 'procedural REALY scans')
    _, _, grid_uv = grid_mesh(n_u, n_v, jitter=jitter, seed=seed)
    kuv = keypoint_uv()
    step = 2.0 / (max(n_u, n_v) - 1)
    dist, _ = spatial.cKDTree(kuv).query(grid_uv)
    uv = np.concatenate([kuv, grid_uv[dist > 0.5 * step]])
    faces = spatial.Delaunay(uv).simplices.astype(np.int64)
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    faces[area2 < 0] = faces[area2 < 0][:, [0, 2, 1]]  # counter-clockwise in (u, v): normals to +z
    faces = faces[np.abs(area2) > 1e-12]
    return head_surface(uv[:, 0], uv[:, 1], identity), faces, uv, np.arange(NUM_KEYPOINTS)


def keypoint_uv() -> np.ndarray:
    """``(85, 2)`` parameter positions of the keypoints (iBUG-68 order, then 17 extra points)."""
    pts = []
    theta = np.linspace(np.pi + 0.35, 2 * np.pi - 0.35, 17)  # jaw 0-16
    pts += [(0.85 * np.cos(t), -0.1 + 0.8 * np.sin(t)) for t in theta]
    pts += [(u, 0.42 + 0.03 * np.cos(np.pi * (u + 0.375) / 0.45)) for u in np.linspace(-0.6, -0.15, 5)]
    pts += [(u, 0.42 + 0.03 * np.cos(np.pi * (u - 0.375) / 0.45)) for u in np.linspace(0.15, 0.6, 5)]
    pts += [(0.0, v) for v in (0.28, 0.16, 0.04, -0.12)]  # nose bridge 27-30
    pts += [(u, -0.2) for u in (-0.14, -0.07, 0.0, 0.07, 0.14)]  # nostrils 31-35
    eye = [(-0.12, 0.0), (-0.04, 0.04), (0.04, 0.04), (0.12, 0.0), (0.04, -0.04), (-0.04, -0.04)]
    pts += [(-0.35 + du, 0.25 + dv) for du, dv in eye]  # 36-41 (36 outer, 39 inner)
    pts += [(0.35 - du, 0.25 + dv) for du, dv in [eye[3], eye[2], eye[1], eye[0], eye[5], eye[4]]]
    outer = [np.pi - k * np.pi / 6 for k in range(7)] + [-k * np.pi / 6 for k in range(1, 6)]
    pts += [(0.28 * np.cos(t), -0.51 + 0.1 * np.sin(t)) for t in outer]  # 48-59
    inner = [np.pi - k * np.pi / 4 for k in range(5)] + [-k * np.pi / 4 for k in range(1, 4)]
    pts += [(0.2 * np.cos(t), -0.515 + 0.03 * np.sin(t)) for t in inner]  # 60-67
    pts += [(-0.3, 0.75), (0.3, 0.75), (-0.16, -0.12), (0.16, -0.12), (-0.7, 0.35), (0.7, 0.35),
            (-0.2, 0.6), (0.2, 0.6), (-0.55, -0.15), (0.55, -0.15), (-0.65, -0.4), (0.65, -0.4),
            (0.0, 0.38), (0.0, 0.8), (0.0, -0.75), (-0.45, 0.0), (0.45, 0.0)]  # 68-84
    out = np.asarray(pts, dtype=np.float64)
    assert out.shape == (NUM_KEYPOINTS, 2)
    return out


def crop_region(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray,
                region: str) -> Tuple[np.ndarray, np.ndarray]:
    """The faces of a mesh whose three corners lie in ``REGION_BOXES[region]``, re-indexed."""
    au_min, au_max, v_min, v_max = REGION_BOXES[region]
    au = np.abs(uv[:, 0])
    inside = (au >= au_min) & (au <= au_max) & (uv[:, 1] >= v_min) & (uv[:, 1] <= v_max)
    kept = faces[inside[faces].all(axis=1)]
    used = np.unique(kept)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[kept]


def make_template(n_u: int = 40, n_v: int = 50) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A template topology (mean face on an ``n_u x n_v`` grid) and its barycentric keypoints.

    Returns ``(vertices, faces, barycentric (85, 3))``.
    """
    vertices, faces, _ = grid_mesh(n_u, n_v)
    kuv = keypoint_uv()
    bary = barycentric_from_points(vertices, faces, head_surface(kuv[:, 0], kuv[:, 1]))
    return vertices, faces, bary


def template_vertices(n_u: int, n_v: int, identity: Optional[np.ndarray] = None) -> np.ndarray:
    """Vertices of the ``make_template(n_u, n_v)`` topology for a given identity (a 'perfect'
    prediction of that subject, in the scan frame)."""
    return grid_mesh(n_u, n_v, identity)[0]


def write_obj(path: str, vertices: np.ndarray, faces: Optional[np.ndarray] = None) -> None:
    """Minimal Wavefront OBJ writer (``v`` and 1-based ``f`` records), atomic."""
    with atomic_write(path, 'w') as f:   # creates the folder
        np.savetxt(f, np.asarray(vertices), fmt='v %.8f %.8f %.8f')
        if faces is not None and len(faces):
            np.savetxt(f, np.asarray(faces) + 1, fmt='f %d %d %d')


def random_similarity(seed: int, max_angle_deg: float = 25.0) -> Tuple[float, np.ndarray, np.ndarray]:
    """A random ``(s, R, t)``: scale in [0.5, 2], rotation up to ``max_angle_deg``, translation."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k
    return float(rng.uniform(0.5, 2.0)), rot, rng.uniform(-20, 20, 3)


def write_benchmark(root: str,
                    num_subjects: int = 2,
                    scan_res: Tuple[int, int] = (60, 75),
                    template_res: Tuple[int, int] = (40, 50),
                    seed: int = 0,
                    identities: Optional[Dict[int, np.ndarray]] = None) -> Dict:
    """Write a REALY-layout folder (see configs/realy/README.md) for ``num_subjects`` procedural subjects.

    ``root/REALY_HIFI3D_keypoints/<id>.obj``, ``root/REALY_scan_region/<id>/<region>.obj``,
    ``root/metrical_scale.txt`` (line i: subject i), and the template topology
    ``root/template/template.obj`` + ``template.txt`` (barycentric JSON). Scans come from
    :func:`scan_mesh` (another resolution and topology than the template).

    Returns:
        dict with ``identities`` ``{id: multipliers}``, ``scales`` ``{id: float}``, ``template_obj``,
        ``template_keypoints`` and ``template_res``.
    """
    rng = np.random.default_rng(seed)
    identities = dict(identities or {})
    t_v, t_f, bary = make_template(*template_res)
    write_obj(osp.join(root, 'template', 'template.obj'), t_v, t_f)
    save_barycentric(osp.join(root, 'template', 'template.txt'), bary)
    scales = {}
    kuv = keypoint_uv()
    for sid in range(1, num_subjects + 1):
        ident = identities.setdefault(sid, random_identity(seed * 1000 + sid))
        scales[sid] = float(rng.uniform(8.5, 9.5))
        write_obj(osp.join(root, 'REALY_HIFI3D_keypoints', f'{sid}.obj'),
                  head_surface(kuv[:, 0], kuv[:, 1], ident))
        s_v, s_f, s_uv, _ = scan_mesh(*scan_res, identity=ident, seed=seed * 1000 + sid)
        for region in REGIONS:
            r_v, r_f = crop_region(s_v, s_f, s_uv, region)
            write_obj(osp.join(root, 'REALY_scan_region', str(sid), f'{region}.obj'), r_v, r_f)
    with atomic_write(osp.join(root, 'metrical_scale.txt'), 'w') as f:
        f.writelines(f'{scales[sid]:.6f}\n' for sid in range(1, num_subjects + 1))
    return dict(identities=identities, scales=scales, template_res=template_res,
                template_obj=osp.join(root, 'template', 'template.obj'),
                template_keypoints=osp.join(root, 'template', 'template.txt'))


def write_predictions(pred_dir: str, info: Dict, views: int = 1, seed: int = 0,
                      vertex_offsets: Optional[Dict[int, np.ndarray]] = None) -> Dict[str, Tuple]:
    """Write 'perfect' predictions ``<subject>_<view>.obj`` (the subject's true face in the template
    topology of :func:`write_benchmark`), each in a random similarity frame.

    Args:
        pred_dir: output folder.
        info: what :func:`write_benchmark` returned.
        views: predictions per subject.
        seed: seed of the random frames.
        vertex_offsets: optional ``{subject: (N, 3)}`` displacement added in the scan frame before the
            random frame (to make imperfect predictions with a known change).

    Returns:
        ``{image name: (s, R, t)}`` of the frames used.
    """
    _, faces, _ = grid_mesh(*info['template_res'])
    frames = {}
    for sid, ident in sorted(info['identities'].items()):
        verts = template_vertices(*info['template_res'], ident)
        if vertex_offsets is not None and sid in vertex_offsets:
            verts = verts + vertex_offsets[sid]
        for view in range(views):
            s, rot, t = random_similarity(seed * 7919 + sid * 31 + view)
            name = f'{sid}_{view}'
            write_obj(osp.join(pred_dir, name + '.obj'), s * verts @ rot.T + t, faces)
            frames[name] = (s, rot, t)
    return frames
