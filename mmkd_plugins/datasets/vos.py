"""Video object segmentation data: DAVIS 2016/2017 and YouTube-VOS 2018/2019 layouts, static images.

Layouts read (``data_root`` is the dataset folder):

* DAVIS: ``JPEGImages/<res>/<video>/00000.jpg``, ``Annotations/<res>/<video>/00000.png`` (palette PNGs,
  label k = object k, 255 = void), ``ImageSets/<year>/<split>.txt`` (one video per line). DAVIS-2016
  evaluation (one object) is ``year='2016'`` with ``binary_masks=True`` (all objects merged).
* YouTube-VOS: ``<split>/JPEGImages/<video>/<frame>.jpg``, ``<split>/Annotations/<video>/<frame>.png``,
  ``<split>/meta.json`` (``{"videos": {video: {"objects": ...}}}``; the video folders are listed when it
  is missing). Training uses the annotated frames only; at test time every annotated frame may
  introduce new objects (``init_frames``).

Samples are ``dict(inputs=uint8 (T, 3, H, W) RGB, data_samples=BaseDataElement)`` with ``gt_masks``
(T, H, W) long label maps and metainfo ``video``, ``frame_names``, ``num_objects`` and, at test time,
``ori_shape``, ``init_frames`` and ``annotated`` (frames are resized so that the shorter side is
``test_short_side``; ``gt_masks`` stay at the original size). ``annotated`` has one bool per frame: whether
it has a ground-truth annotation (a frame without one has an all-zero ``gt_masks`` entry, which the DAVIS
metric refuses to score as an empty mask). A video folder without frames is an error naming it.
"""
import json
import logging
import multiprocessing
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmengine.registry import DATASETS
from mmengine.structures import BaseDataElement

IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def davis_palette() -> np.ndarray:
    """The 256-colour palette of the DAVIS / PASCAL-VOC annotations, (256, 3) uint8."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def read_mask(path: str, binary: bool = False) -> np.ndarray:
    """Read an annotation PNG as an (H, W) int64 label map.

    Palette ('P') and grey ('L') PNGs give their indices; with ``binary`` every non-zero label becomes 1
    (DAVIS-2016 / static datasets with 0/255 masks). RGB masks are refused (they need a palette).
    """
    from PIL import Image
    if not osp.isfile(path):
        raise FileNotFoundError(f'annotation not found: {path}')
    with Image.open(path) as im:
        if im.mode not in ('P', 'L', '1', 'I', 'I;16'):
            raise ValueError(f'{path}: annotation must be a palette or grey PNG, got mode {im.mode}')
        arr = np.array(im).astype(np.int64)
    if binary:
        arr = (arr > 0).astype(np.int64)
    return arr


def write_mask(path: str, labels: np.ndarray, palette: Optional[np.ndarray] = None) -> None:
    """Write an (H, W) label map as a palette PNG (DAVIS palette by default), atomically."""
    from PIL import Image

    from mmkd_plugins.utils.safe_output import atomic_write
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f'write_mask: labels must be (H, W), got {labels.shape}')
    if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
        raise ValueError('write_mask: labels must be in [0, 255]')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode='P')
    im.putpalette((davis_palette() if palette is None else palette).reshape(-1).tolist())
    with atomic_write(path, 'wb') as fh:
        im.save(fh, format='PNG')


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB image."""
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'image not found or unreadable: {path}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _list_images(folder: str) -> List[str]:
    if not osp.isdir(folder):
        raise FileNotFoundError(f'frame folder not found: {folder}')
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMG_EXTS))


def image_mask_pairs(img_root: str, mask_root: str, owner: str) -> List[dict]:
    """``dict(image, mask, name)`` for every image of ``img_root`` (sorted) and its
    ``<mask_root>/<stem>.png``; a missing mask or an empty folder is an error naming ``owner``."""
    out = []
    for name in _list_images(img_root):
        stem = osp.splitext(name)[0]
        mask = osp.join(mask_root, stem + '.png')
        if not osp.isfile(mask):
            raise FileNotFoundError(f'{owner}: mask missing for {name}: {mask}')
        out.append(dict(image=osp.join(img_root, name), mask=mask, name=stem))
    if not out:
        raise FileNotFoundError(f'{owner}: no images in {img_root}')
    return out


def _resize(img: np.ndarray, size_hw: Tuple[int, int], nearest: bool,
            interpolation: str = 'bilinear') -> np.ndarray:
    """Resize an image (``interpolation``: bilinear / bicubic) or a label map (nearest, labels kept
    exactly) to ``size_hw``."""
    import cv2
    dsize = (size_hw[1], size_hw[0])
    if nearest:
        dtype = np.uint8 if img.max(initial=0) < 256 else np.int32
        return cv2.resize(img.astype(dtype), dsize, interpolation=cv2.INTER_NEAREST).astype(np.int64)
    flag = {'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC}[interpolation]
    return cv2.resize(img, dsize, interpolation=flag)


# ------------------------------------------------------------------ official SWEM clip sampling
def swem_clip_indices(n: int, num_frames: int, skip: int, rng: np.random.Generator) -> List[int]:
    """Frame indices of a training clip, sampled as the official SWEM code does (``select_frames``).

    A random anchor frame is drawn, then ``num_frames - 1`` more frames one at a time, each either to
    the left of the leftmost or to the right of the rightmost chosen frame, at most ``skip + 1`` frames
    further (``skip`` frames skipped) and never so far that the remaining frames could not fit
    (``mean_inter``). Videos shorter than the clip are sampled with replacement. Returned sorted.
    """
    ids = list(range(n))
    if num_frames > n:
        return sorted(int(i) for i in rng.choice(ids, size=num_frames, replace=True))
    i = int(rng.integers(0, n))
    chosen, left, right = [i], ids[:i], ids[i + 1:]
    for k in range(num_frames - 1, 0, -1):
        mean_inter = (len(left) + len(right) - k) // k
        n_left = min(len(left), skip + 1, mean_inter + 1)
        n_right = min(len(right), skip + 1, mean_inter + 1)
        j = int(rng.integers(-n_left, n_right))
        if j >= 0:
            chosen.append(right[j])
            right = right[j + 1:]
        else:
            chosen.append(left[j])
            left = left[:j]
    return sorted(chosen)


# ------------------------------------------------------------------ official SWEM augmentations
IM_MEAN = (124, 116, 104)  # fill value of the official per-frame affine warp (RGB)


def _gray(img: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma (PIL 'L'), float (H, W)."""
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def _shift_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of a float RGB image in [0, 255] by ``shift`` turns (torchvision ``adjust_hue``
    with ``hue_factor = shift``)."""
    import cv2
    hsv = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * shift, 360.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def grey_rgb(img: np.ndarray) -> np.ndarray:
    """torchvision ``Grayscale(3)``: the rounded luma in all three channels, uint8 (H, W, 3)."""
    return np.repeat(np.round(_gray(img.astype(np.float32)))[..., None], 3, -1).astype(np.uint8)


def color_jitter(img: np.ndarray, factors: Sequence[float], order: Sequence[int]) -> np.ndarray:
    """Brightness / contrast / saturation (/ hue) jitter (torchvision ``ColorJitter``).

    ``factors`` = (b, c, s) multiplicative factors, optionally a 4th, the hue shift ``h`` in turns;
    ``order`` a permutation of their indices (the order they are applied in). Brightness ``x * b``;
    contrast ``m + c (x - m)`` with ``m`` the mean grey level; saturation ``g + s (x - g)`` with ``g``
    the grey image; hue rotated by ``h`` turns in HSV; clipped to [0, 255] after each.
    """
    out = img.astype(np.float32)
    for k in order:
        f = float(factors[k])
        if k == 0:
            out = out * f
        elif k == 1:
            m = float(_gray(out).mean())
            out = m + f * (out - m)
        elif k == 2:
            g = _gray(out)[..., None]
            out = g + f * (out - g)
        else:
            out = _shift_hue(out, f)
        out = np.clip(out, 0, 255)
    return np.round(out).astype(np.uint8)


def sample_jitter(strength: Sequence[float], rng: np.random.Generator) -> Tuple[List[float], List[int]]:
    """Factors ``U(1 - s, 1 + s)`` for (brightness, contrast, saturation), with a 4th strength a hue
    shift ``U(-h, h)``, and a random order."""
    factors = [float(rng.uniform(max(0.0, 1 - s), 1 + s)) for s in strength[:3]]
    if len(strength) > 3:
        factors.append(float(rng.uniform(-strength[3], strength[3])))
    return factors, [int(i) for i in rng.permutation(len(factors))]


def affine_matrix(angle: float, shear: float, size_hw: Tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """2x3 matrix of a rotation by ``angle``, an x-shear by ``shear`` (degrees) and an isotropic
    ``scale`` about the centre."""
    h, w = size_hw
    a, s = np.deg2rad(angle), np.deg2rad(shear)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    lin = scale * rot @ np.array([[1.0, np.tan(s)], [0.0, 1.0]])
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    return np.hstack([lin, (c - lin @ c)[:, None]])


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``U(|a_i - b_j|^2)`` with ``U(d) = d log d`` (official ``K_matrix``), (len(a), len(b))."""
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return d2 * np.log(d2 + 1e-9)


def tps_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Coefficients of the thin-plate spline ``f`` with ``f(src_i) = dst_i``.

    ``f(p) = a0 + a1 p_x + a2 p_y + sum_i w_i U(|p - src_i|^2)``; solves
    ``[[K, P], [P^T, 0]] [w; a] = [dst; 0]`` with ``K_ij = U(|src_i - src_j|^2)``, ``P = [1, src]``.

    Args:
        src, dst: (K, 2) control points and their images (K >= 3, not collinear).

    Returns:
        (K + 3, 2): rows 0..K-1 the radial weights ``w``, rows K..K+2 the affine part ``a``.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 3:
        raise ValueError(f'tps_fit: src and dst must be (K, 2) with K >= 3, got {src.shape} and '
                         f'{dst.shape}')
    k = len(src)
    L = np.zeros((k + 3, k + 3))
    P = np.hstack([np.ones((k, 1)), src])
    L[:k, :k], L[:k, k:], L[k:, :k] = _tps_kernel(src, src), P, P.T
    Z = np.zeros((k + 3, 2))
    Z[:k] = dst
    return np.linalg.solve(L, Z)


def tps_apply(coef: np.ndarray, src: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Evaluate the spline of :func:`tps_fit` (control points ``src``) at ``pts`` (M, 2) -> (M, 2)."""
    k = len(src)
    pts = np.asarray(pts, np.float64)
    return (coef[k] + pts @ coef[k + 1:k + 3]) + _tps_kernel(pts, np.asarray(src, np.float64)) @ coef[:k]


def tps_grid(size_hw: Tuple[int, int], anchors: int, noise: float,
             rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Sampling maps of a random thin-plate-spline warp (the official ``JointRandomTPS``).

    Control points: an ``anchors x anchors`` grid ``X`` over [-1, 1]^2; targets ``Y = X`` plus
    ``U(-noise/2, noise/2)`` on the inner points (the border points stay); ``f = tps_fit(X, Y)``;
    output pixel ``p`` (its centre in [-1, 1]) samples the input at ``f(p)``. Returns (map_x, map_y)
    in pixels.
    """
    h, w = size_hw
    lin = np.linspace(-1.0, 1.0, anchors)
    gx, gy = np.meshgrid(lin, lin)
    ctrl = np.stack([gx.ravel(), gy.ravel()], 1)
    target = ctrl.copy()
    inner = np.zeros((anchors, anchors), bool)
    inner[1:-1, 1:-1] = True
    target[inner.ravel()] += (rng.random((int(inner.sum()), 2)) - 0.5) * noise
    coef = tps_fit(ctrl, target)
    px = (2 * np.arange(w) + 1) / w - 1  # pixel centres, align_corners=False
    py = (2 * np.arange(h) + 1) / h - 1
    qx, qy = np.meshgrid(px, py)
    f = tps_apply(coef, ctrl, np.stack([qx.ravel(), qy.ravel()], 1))
    map_x = ((f[:, 0] + 1) * w - 1) / 2
    map_y = ((f[:, 1] + 1) * h - 1) / 2
    return map_x.reshape(h, w).astype(np.float32), map_y.reshape(h, w).astype(np.float32)


def apply_tps(frame: np.ndarray, labels: np.ndarray, noise: float, rng: np.random.Generator,
              anchors: int = 4) -> Tuple[np.ndarray, np.ndarray]:
    """Warp a frame (bilinear) and its label map (nearest) by one random :func:`tps_grid`; pixels
    sampled from outside become 0 (``grid_sample`` zero padding)."""
    import cv2
    mx, my = tps_grid(frame.shape[:2], anchors, noise, rng)
    frame = cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    labels = cv2.remap(labels.astype(np.uint8), mx, my, cv2.INTER_NEAREST,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.int64)
    return frame, labels


def _select_objects(labels: np.ndarray, first: np.ndarray, max_objects: int, min_pixels: int,
                    rng: np.random.Generator) -> Tuple[np.ndarray, int]:
    """Keep up to ``max_objects`` random objects visible (>= min_pixels) in ``first``; relabel 1..k."""
    ids, counts = np.unique(first, return_counts=True)
    cand = [int(i) for i, c in zip(ids, counts) if i not in (0, 255) and c >= min_pixels]
    if not cand:
        return np.zeros_like(labels), 0
    rng.shuffle(cand)
    keep = cand[:max_objects]
    out = np.zeros_like(labels)
    for new, old in enumerate(keep, start=1):
        out[labels == old] = new
    return out, len(keep)


def _pack(frames: Sequence[np.ndarray], labels: np.ndarray, metainfo: dict) -> dict:
    inputs = torch.from_numpy(np.stack(frames).transpose(0, 3, 1, 2).copy())
    sample = BaseDataElement(metainfo=metainfo)
    sample.gt_masks = torch.from_numpy(np.ascontiguousarray(labels)).long()
    return dict(inputs=inputs, data_samples=sample)


def _rng() -> np.random.Generator:
    """A generator seeded from numpy's global state (which mmengine seeds per run and per worker)."""
    return np.random.default_rng(np.random.randint(0, 2**31 - 1))


class _SharedInt:
    """An int shared with (forked or spawned) DataLoader workers, so a hook can change it in training."""

    def __init__(self, value: int) -> None:
        self._v = multiprocessing.RawValue('i', int(value))

    @property
    def value(self) -> int:
        return int(self._v.value)

    @value.setter
    def value(self, v: int) -> None:
        self._v.value = int(v)

    def __getstate__(self):
        from multiprocessing.context import get_spawning_popen
        if get_spawning_popen() is not None:  # handing the dataset to a spawned worker: share
            return {'_v': self._v}
        return {'value': self.value}  # plain pickling / deepcopy: a private copy

    def __setstate__(self, state):
        self._v = state['_v'] if '_v' in state else multiprocessing.RawValue('i', state['value'])


@DATASETS.register_module()
class VOSDataset(BaseDataset):
    """DAVIS / YouTube-VOS videos: training clips or whole videos for inference.

    Training clips follow the official SWEM code (lmm077/SWEM ``datasets/video_dataset.py``): frames
    picked by :func:`swem_clip_indices` (gaps of at most ``cur_skip + 1`` frames; ``cur_skip`` is set
    by :class:`~mmkd_plugins.engine.hooks.VOSFrameSkipHook` from this dataset's ``max_skip``), time
    reversed with ``reverse_prob``; one random-resized crop + flip + colour jitter + grayscale for the
    whole clip, then per frame a random affine warp, a small colour jitter and a thin-plate-spline
    warp; up to ``max_objects`` objects present in the first clip frame are kept (relabelled 1..k).

    Args:
        data_root: dataset folder (DAVIS: the one holding ``JPEGImages``; YouTube-VOS: the one holding
            ``train``/``valid``).
        layout: ``'davis'`` or ``'youtube'``.
        split: DAVIS ``ImageSets`` split (``train``/``val``/``test-dev``) or YouTube-VOS folder
            (``train``/``valid``).
        year: DAVIS ``ImageSets`` year (``'2016'`` or ``'2017'``).
        resolution: DAVIS resolution folder (``'480p'``).
        ann_file: override of the video list (DAVIS ``.txt``) or ``meta.json`` (YouTube-VOS).
        subset_file: optional text file of video names (one a line); only these videos are used
            (the official YouTube-VOS training list ``yv_subset.txt`` keeps 3,464 videos).
        frames_split: YouTube-VOS folder the frames are read from at test time (e.g.
            ``'valid_all_frames'``: every frame, 30 fps) while annotations and ``meta.json`` come from
            ``split``; metainfo ``save_frames`` lists the frames of ``<split>/JPEGImages`` (the ones
            the evaluation server scores). None: the frames of ``split``.
        test_mode: whole videos (inference) instead of training clips.
        num_frames: frames per training clip (3).
        max_skip: the largest ``cur_skip`` of this dataset's frame-skip curriculum (official: DAVIS
            25, YouTube-VOS 5); ``cur_skip`` starts at this value (no hook: fixed).
        reverse_prob: probability of reversing the time order of a clip (0.5).
        max_objects: at most this many objects per clip (2).
        crop_size: (H, W) of the training crops.
        crop_scale: range of the crop area as a fraction of the frame (random resized crop, aspect
            ratio 3/4..4/3).
        flip_prob: horizontal flip probability (whole clip).
        clip_jitter: (brightness, contrast, saturation) jitter shared by the clip's frames
            ((0.1, 0.03, 0.03)); ``grayscale_prob``: whole clip to grey (0.05).
        frame_jitter: per-frame jitter ((0.01, 0.01, 0.01)).
        affine_degrees / affine_shear: per-frame rotation / x-shear ranges in degrees (15 / 10), fill
            ``IM_MEAN`` for frames and background for masks; 0 / 0 disables.
        tps_prob / tps_noise: per-frame thin-plate-spline warp probability (1.0) and control-point
            noise (0.25, 4x4 anchors).
        train_short_side: resize training frames to this shorter side before cropping (the official
            code trains YouTube-VOS from 480p copies; None keeps the files' size).
        min_object_pixels: an object must cover this many pixels of the first clip frame (1: present,
            as in the official code).
        test_short_side: inference frames are resized to this shorter side (None: original size);
            with ``test_size_divisor`` frames are never enlarged and both sides are rounded to the
            nearest multiple of the divisor (official YouTube-VOS inference: 480, 16).
        test_size: fixed inference (H, W), e.g. (480, 864) for DAVIS (official); overrides the above.
        test_interpolation: ``'bilinear'`` or ``'bicubic'`` (official DAVIS) resize of test frames.
        binary_masks: merge all objects into one (DAVIS 2016).
        max_retries: clip draws until the first frame shows an object (official: 5).
        on_no_object: after ``max_retries`` draws without an object: ``'empty'`` (official) returns
            the last clip with ``num_objects=1`` and an empty object 1 (all background), with a
            warning once per video (per DataLoader worker); ``'raise'`` raises an error naming the
            video.
    """

    def __init__(self, data_root: str, layout: str = 'davis', split: str = 'train', year: str = '2017',
                 resolution: str = '480p', ann_file: Optional[str] = None,
                 subset_file: Optional[str] = None, frames_split: Optional[str] = None,
                 test_mode: bool = False, num_frames: int = 3, max_skip: int = 10,
                 reverse_prob: float = 0.5, max_objects: int = 2,
                 crop_size: Tuple[int, int] = (384, 384), crop_scale: Tuple[float, float] = (0.36, 1.0),
                 flip_prob: float = 0.5, clip_jitter: Sequence[float] = (0.1, 0.03, 0.03),
                 grayscale_prob: float = 0.05, frame_jitter: Sequence[float] = (0.01, 0.01, 0.01),
                 affine_degrees: float = 15.0, affine_shear: float = 10.0, tps_prob: float = 1.0,
                 tps_noise: float = 0.25, train_short_side: Optional[int] = None,
                 min_object_pixels: int = 1, test_short_side: Optional[int] = 480,
                 test_size_divisor: Optional[int] = None, test_size: Optional[Tuple[int, int]] = None,
                 test_interpolation: str = 'bilinear', binary_masks: bool = False,
                 max_retries: int = 5, on_no_object: str = 'empty', **kwargs) -> None:
        if layout not in ('davis', 'youtube'):
            raise ValueError(f'VOSDataset: layout must be "davis" or "youtube", got {layout!r}')
        if num_frames < 2:
            raise ValueError(f'VOSDataset: num_frames must be >= 2, got {num_frames}')
        if max_skip < 0:
            raise ValueError(f'VOSDataset: max_skip must be >= 0, got {max_skip}')
        if test_interpolation not in ('bilinear', 'bicubic'):
            raise ValueError(f'VOSDataset: test_interpolation must be bilinear or bicubic, got '
                             f'{test_interpolation!r}')
        if on_no_object not in ('empty', 'raise'):
            raise ValueError(f'VOSDataset: on_no_object must be "empty" or "raise", got {on_no_object!r}')
        if max_retries < 1:
            raise ValueError(f'VOSDataset: max_retries must be >= 1, got {max_retries}')
        self.on_no_object = on_no_object
        self._warned_videos: set = set()
        self.layout, self.split, self.year, self.resolution = layout, split, str(year), resolution
        self.subset_file, self.frames_split = subset_file, frames_split
        self.num_frames, self.max_objects, self.reverse_prob = num_frames, max_objects, reverse_prob
        self.crop_size, self.crop_scale, self.flip_prob = tuple(crop_size), tuple(crop_scale), flip_prob
        self.clip_jitter, self.grayscale_prob = tuple(clip_jitter), grayscale_prob
        self.frame_jitter = tuple(frame_jitter)
        self.affine_degrees, self.affine_shear = affine_degrees, affine_shear
        self.tps_prob, self.tps_noise, self.train_short_side = tps_prob, tps_noise, train_short_side
        self.min_object_pixels, self.test_short_side = min_object_pixels, test_short_side
        self.test_size_divisor = test_size_divisor
        self.test_size = tuple(test_size) if test_size is not None else None
        self.test_interpolation = test_interpolation
        self.binary_masks, self.max_retries = binary_masks, max_retries
        self.max_skip = int(max_skip)
        self._cur_skip = _SharedInt(max_skip)
        kwargs.setdefault('serialize_data', False)
        super().__init__(ann_file=ann_file or '', data_root=data_root, test_mode=test_mode, **kwargs)

    # -------------------------------------------------------------- curriculum
    @property
    def cur_skip(self) -> int:
        """Current largest number of frames skipped between neighbouring clip frames."""
        return self._cur_skip.value

    @cur_skip.setter
    def cur_skip(self, value: int) -> None:
        if value < 0:
            raise ValueError(f'VOSDataset: cur_skip must be >= 0, got {value}')
        self._cur_skip.value = value

    # -------------------------------------------------------------- listing
    def _davis_dirs(self) -> Tuple[str, str]:
        return (osp.join(self.data_root, 'JPEGImages', self.resolution),
                osp.join(self.data_root, 'Annotations', self.resolution))

    def _video_names(self) -> List[str]:
        if self.layout == 'davis':
            list_file = self.ann_file or osp.join(self.data_root, 'ImageSets', self.year,
                                                  f'{self.split}.txt')
            if not osp.isfile(list_file):
                raise FileNotFoundError(f'VOSDataset: DAVIS video list not found: {list_file} '
                                        '(expected ImageSets/<year>/<split>.txt)')
            with open(list_file) as fh:
                return [ln.strip() for ln in fh if ln.strip()]
        root = osp.join(self.data_root, self.split)
        meta = self.ann_file or osp.join(root, 'meta.json')
        if osp.isfile(meta):
            with open(meta) as fh:
                content = json.load(fh)
            if 'videos' not in content:
                raise ValueError(f'VOSDataset: {meta} has no "videos" entry (YouTube-VOS meta.json)')
            return sorted(content['videos'])
        img_root = osp.join(root, 'JPEGImages')
        if not osp.isdir(img_root):
            raise FileNotFoundError(f'VOSDataset: neither {meta} nor {img_root} exists '
                                    '(YouTube-VOS layout <split>/JPEGImages, <split>/meta.json)')
        return sorted(os.listdir(img_root))

    def _subset(self) -> Optional[set]:
        if self.subset_file is None:
            return None
        path = self.subset_file
        if not osp.isabs(path) and not osp.isfile(path) and self.data_root:
            path = osp.join(self.data_root, path)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'VOSDataset: subset_file not found: {self.subset_file} (the official YouTube-VOS '
                'training list is yv_subset.txt of the SWEM / STCN repositories)')
        with open(path) as fh:
            return {ln.strip() for ln in fh if ln.strip()}

    def load_data_list(self) -> List[dict]:
        save_root = None
        if self.layout == 'davis':
            img_root, ann_root = self._davis_dirs()
        else:
            img_root = osp.join(self.data_root, self.frames_split or self.split, 'JPEGImages')
            ann_root = osp.join(self.data_root, self.split, 'Annotations')
            if self.frames_split:
                save_root = osp.join(self.data_root, self.split, 'JPEGImages')
        subset = self._subset()
        data_list = []
        for video in self._video_names():
            if subset is not None and video not in subset:
                continue
            names = _list_images(osp.join(img_root, video))
            if not names:
                raise FileNotFoundError(f'VOSDataset: video {video} has no frames: no '
                                        f'{"/".join(IMG_EXTS)} file in {osp.join(img_root, video)}')
            stems = [osp.splitext(n)[0] for n in names]
            masks = [osp.join(ann_root, video, s + '.png') for s in stems]
            masks = [m if osp.isfile(m) else None for m in masks]
            if masks and masks[0] is None and self.layout == 'davis':
                raise FileNotFoundError(f'VOSDataset: the first frame of {video} has no annotation '
                                        f'({osp.join(ann_root, video, stems[0] + ".png")})')
            if not self.test_mode:  # train on annotated frames only
                keep = [i for i, m in enumerate(masks) if m is not None]
                names, stems, masks = [names[i] for i in keep], [stems[i] for i in keep], \
                    [masks[i] for i in keep]
                if len(names) < self.num_frames:  # official: videos with < 3 frames are dropped
                    continue
            item = dict(video=video, frames=[osp.join(img_root, video, n) for n in names],
                        frame_names=stems, masks=masks)
            if save_root is not None:
                item['save_frames'] = [osp.splitext(n)[0]
                                       for n in _list_images(osp.join(save_root, video))]
            data_list.append(item)
        return data_list

    # -------------------------------------------------------------- samples
    def prepare_data(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        if self.test_mode:
            return self._load_video(info)
        return self._sample_clip(info, _rng())

    def _read_labels(self, path: Optional[str], shape: Tuple[int, int]) -> np.ndarray:
        if path is None:
            return np.zeros(shape, dtype=np.int64)
        lab = read_mask(path, self.binary_masks)
        if lab.shape != shape:
            raise ValueError(f'VOSDataset: annotation {path} has size {lab.shape}, frame has {shape}')
        return lab

    def test_frame_size(self, h: int, w: int) -> Tuple[int, int]:
        """Inference (H, W) of a video whose frames are (h, w) (see the class arguments)."""
        if self.test_size is not None:
            return self.test_size
        if not self.test_short_side:
            return h, w
        d = self.test_size_divisor
        if d:
            def snap(x):  # official get_suit_size: nearest multiple, halves up
                r = x % d
                return x - r + (d if r >= d / 2 else 0)
            short = min(h, w, self.test_short_side)
            if h <= w:
                return snap(short), snap(int(w * short / h))
            return snap(int(h * short / w)), snap(short)
        s = self.test_short_side / min(h, w)
        return int(round(h * s)), int(round(w * s))

    def _load_video(self, info: dict) -> dict:
        first = None
        if self.layout == 'youtube':  # official: start at the first annotated frame
            first = next((i for i, m in enumerate(info['masks']) if m is not None), 0)
            info = dict(info, frames=info['frames'][first:], frame_names=info['frame_names'][first:],
                        masks=info['masks'][first:])
        frames = [read_image(p) for p in info['frames']]
        h, w = frames[0].shape[:2]
        labels = np.stack([self._read_labels(m, (h, w)) for m in info['masks']])
        labels[labels == 255] = 0
        init = [0] if self.layout == 'davis' else [i for i, m in enumerate(info['masks']) if m is not None]
        size = self.test_frame_size(h, w)
        if size != (h, w):
            frames = [_resize(f, size, nearest=False, interpolation=self.test_interpolation)
                      for f in frames]
        meta = dict(video=info['video'], frame_names=info['frame_names'], ori_shape=(h, w),
                    init_frames=init, num_objects=int(labels[0].max()),
                    annotated=[m is not None for m in info['masks']])
        if 'save_frames' in info:
            meta['save_frames'] = info['save_frames']
        return _pack(frames, labels, meta)

    # -------------------------------------------------------------- training clips
    def _random_crop_box(self, h: int, w: int, rng: np.random.Generator) -> Tuple[int, int, int, int]:
        """torchvision ``RandomResizedCrop.get_params``: area ``U(crop_scale) * h * w``, log-uniform
        aspect 3/4..4/3 of the crop size, 10 attempts, else a centre crop."""
        ch, cw = self.crop_size
        log_r = (np.log(3 / 4), np.log(4 / 3))
        for _ in range(10):
            area = h * w * rng.uniform(*self.crop_scale)
            ratio = np.exp(rng.uniform(*log_r)) * cw / ch
            bw = int(round(np.sqrt(area * ratio)))
            bh = int(round(np.sqrt(area / ratio)))
            if 0 < bw <= w and 0 < bh <= h:
                return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
        ratio = w / h
        if ratio < 3 / 4:
            bw, bh = w, int(round(w / (3 / 4)))
        elif ratio > 4 / 3:
            bh, bw = h, int(round(h * 4 / 3))
        else:
            bw, bh = w, h
        bh, bw = min(bh, h), min(bw, w)
        return (h - bh) // 2, (w - bw) // 2, bh, bw

    def _augment(self, frames: List[np.ndarray], labels: np.ndarray,
                 rng: np.random.Generator) -> Tuple[List[np.ndarray], np.ndarray]:
        """Whole-clip crop / flip / jitter / grayscale, then per-frame affine / jitter / TPS."""
        import cv2
        if self.train_short_side:
            h, w = frames[0].shape[:2]
            s = self.train_short_side / min(h, w)
            if s != 1:
                size = (int(h * s), int(w * s))
                frames = [_resize(f, size, nearest=False, interpolation='bicubic') for f in frames]
                labels = np.stack([_resize(lab, size, nearest=True) for lab in labels])
        h, w = frames[0].shape[:2]
        flip = rng.random() < self.flip_prob
        y0, x0, bh, bw = self._random_crop_box(h, w, rng)
        frames = [_resize(f[y0:y0 + bh, x0:x0 + bw], self.crop_size, nearest=False,
                          interpolation='bicubic') for f in frames]
        labels = np.stack([_resize(lab[y0:y0 + bh, x0:x0 + bw], self.crop_size, nearest=True)
                           for lab in labels])
        if flip:
            frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
            labels = np.ascontiguousarray(labels[:, :, ::-1])
        if any(self.clip_jitter):
            factors, order = sample_jitter(self.clip_jitter, rng)
            frames = [color_jitter(f, factors, order) for f in frames]
        if rng.random() < self.grayscale_prob:
            frames = [grey_rgb(f) for f in frames]
        ch, cw = self.crop_size
        out_f, out_l = [], []
        for f, lab in zip(frames, labels):
            if self.affine_degrees or self.affine_shear:
                mat = affine_matrix(rng.uniform(-self.affine_degrees, self.affine_degrees),
                                    rng.uniform(-self.affine_shear, self.affine_shear), (ch, cw))
                f = cv2.warpAffine(f, mat, (cw, ch), flags=cv2.INTER_CUBIC,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=IM_MEAN)
                lab = cv2.warpAffine(lab.astype(np.uint8), mat, (cw, ch), flags=cv2.INTER_NEAREST,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.int64)
            if any(self.frame_jitter):
                f = color_jitter(f, *sample_jitter(self.frame_jitter, rng))
            if rng.random() < self.tps_prob:
                f, lab = apply_tps(f, lab, self.tps_noise, rng)
            out_f.append(f)
            out_l.append(lab)
        return out_f, np.stack(out_l)

    def _sample_clip(self, info: dict, rng: np.random.Generator) -> dict:
        n = len(info['frames'])
        for _ in range(self.max_retries):
            idx = swem_clip_indices(n, self.num_frames, self.cur_skip, rng)
            if rng.random() < self.reverse_prob:
                idx = idx[::-1]
            frames = [read_image(info['frames'][i]) for i in idx]
            h, w = frames[0].shape[:2]
            labels = np.stack([self._read_labels(info['masks'][i], (h, w)) for i in idx])
            frames, labels = self._augment(frames, labels, rng)
            labels, k = _select_objects(labels, labels[0], self.max_objects, self.min_object_pixels, rng)
            if k > 0:
                break
        else:
            msg = (f'VOSDataset: no object of at least {self.min_object_pixels} pixels in the first '
                   f'frame of {self.max_retries} clips of video {info["video"]}')
            if self.on_no_object == 'raise':
                raise RuntimeError(msg)
            # official (video_dataset.py): train on the last clip with one empty object
            k = 1
            if info['video'] not in self._warned_videos:
                self._warned_videos.add(info['video'])
                print_log(msg + '; training on it with one empty object (on_no_object="empty"), '
                          'reported once per video', logger='current', level=logging.WARNING)
        meta = dict(video=info['video'], frame_names=[info['frame_names'][i] for i in idx],
                    num_objects=k)
        return _pack(frames, labels, meta)


@DATASETS.register_module()
class StaticVOSDataset(BaseDataset):
    """Static-image pretraining: an image + mask folder pair turned into synthetic clips.

    Each clip repeats one image under ``num_frames`` random affine warps (rotation, scale, shear,
    translation); the masks follow with nearest-neighbour warping. Images are
    ``<data_root>/<img_dir>/<name>.<ext>`` and masks ``<data_root>/<mask_dir>/<name>.png`` (binary
    0/255 by default, or palette labels with ``binary_masks=False``).

    Args:
        img_dir, mask_dir: sub-folders. num_frames: clip length. crop_size: output (H, W).
        max_objects: objects kept per clip. rotation (degrees), scale (range), shear (degrees),
        translate (fraction of the size): warp ranges. flip_prob: horizontal flip of the clip.
        min_object_pixels, max_retries: as :class:`VOSDataset`.
    """

    def __init__(self, data_root: str, img_dir: str = 'images', mask_dir: str = 'masks',
                 num_frames: int = 3, crop_size: Tuple[int, int] = (384, 384), max_objects: int = 2,
                 rotation: float = 20.0, scale: Tuple[float, float] = (0.9, 1.1), shear: float = 10.0,
                 translate: float = 0.1, flip_prob: float = 0.5, binary_masks: bool = True,
                 min_object_pixels: int = 20, max_retries: int = 30, **kwargs) -> None:
        self.img_dir, self.mask_dir = img_dir, mask_dir
        self.num_frames, self.crop_size, self.max_objects = num_frames, tuple(crop_size), max_objects
        self.rotation, self.scale, self.shear, self.translate = rotation, tuple(scale), shear, translate
        self.flip_prob, self.binary_masks = flip_prob, binary_masks
        self.min_object_pixels, self.max_retries = min_object_pixels, max_retries
        kwargs.setdefault('serialize_data', False)
        super().__init__(data_root=data_root, **kwargs)

    def load_data_list(self) -> List[dict]:
        return image_mask_pairs(osp.join(self.data_root, self.img_dir),
                                osp.join(self.data_root, self.mask_dir), 'StaticVOSDataset')

    def _warp(self, img: np.ndarray, lab: np.ndarray,
              rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        import cv2
        h, w = img.shape[:2]
        angle = rng.uniform(-self.rotation, self.rotation)
        s = rng.uniform(*self.scale)
        mat = cv2.getRotationMatrix2D((w / 2, h / 2), angle, s)
        sh = np.tan(np.deg2rad(rng.uniform(-self.shear, self.shear)))
        shear = np.array([[1, sh, -sh * h / 2], [0, 1, 0], [0, 0, 1]])
        mat = (np.vstack([mat, [0, 0, 1]]) @ shear)[:2]
        mat[:, 2] += rng.uniform(-self.translate, self.translate, 2) * (w, h)
        size = (self.crop_size[1], self.crop_size[0])
        scale = np.diag([self.crop_size[1] / w, self.crop_size[0] / h, 1.0])
        mat = (scale @ np.vstack([mat, [0, 0, 1]]))[:2]
        img = cv2.warpAffine(img, mat, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        lab = cv2.warpAffine(lab.astype(np.uint8), mat, size, flags=cv2.INTER_NEAREST,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return img, lab.astype(np.int64)

    def prepare_data(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        rng = _rng()
        img = read_image(info['image'])
        lab = read_mask(info['mask'], self.binary_masks)
        if lab.shape != img.shape[:2]:
            raise ValueError(f'StaticVOSDataset: mask {info["mask"]} has size {lab.shape}, image has '
                             f'{img.shape[:2]}')
        for _ in range(self.max_retries):
            pairs = [self._warp(img, lab, rng) for _ in range(self.num_frames)]
            frames = [p[0] for p in pairs]
            labels = np.stack([p[1] for p in pairs])
            if rng.random() < self.flip_prob:
                frames = [f[:, ::-1] for f in frames]
                labels = labels[:, :, ::-1]
            labels, k = _select_objects(labels, labels[0], self.max_objects, self.min_object_pixels, rng)
            if k > 0:
                break
        else:
            raise RuntimeError(f'StaticVOSDataset: no visible object in {info["image"]} after '
                               f'{self.max_retries} warps')
        return _pack(frames, labels, dict(video=info['name'], frame_names=[info['name']] * len(frames),
                                          num_objects=k))


def synthesize_moving_shapes(root: str, videos: Sequence[str] = ('shapes0', 'shapes1'),
                             num_frames: int = 10, size: Tuple[int, int] = (64, 64),
                             num_objects: int = 2, split: str = 'train', year: str = '2017',
                             seed: int = 0) -> List[str]:
    """Write a toy DAVIS-layout dataset: shapes moving over a textured background.

    Object 1 is a disc, object 2 a square, further objects alternate; later objects occlude earlier
    ones. Creates ``JPEGImages/480p``, ``Annotations/480p`` (palette PNGs) and
    ``ImageSets/<year>/<split>.txt`` under ``root`` (each file written atomically). Returns the video
    names.
    """
    import cv2

    from mmkd_plugins.utils.safe_output import atomic_write
    rng = np.random.default_rng(seed)
    h, w = size
    img_root, ann_root = osp.join(root, 'JPEGImages', '480p'), osp.join(root, 'Annotations', '480p')
    yy, xx = np.mgrid[0:h, 0:w]
    for v in videos:
        os.makedirs(osp.join(img_root, v), exist_ok=True)
        base = np.stack([(xx * 255 / w), (yy * 255 / h), np.full((h, w), 128.0)], -1)
        base = (0.6 * base + 0.4 * rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(
            8, 1)[:h, :w]).astype(np.float32)
        r = max(3, min(h, w) // 8)
        pos = rng.uniform([r, r], [h - r, w - r], (num_objects, 2))
        vel = rng.uniform(-2.5, 2.5, (num_objects, 2)) * min(h, w) / 64
        colors = rng.uniform(0, 255, (num_objects, 3))
        for t in range(num_frames):
            img = base.copy()
            lab = np.zeros((h, w), dtype=np.uint8)
            for o in range(num_objects):
                cy, cx = pos[o]
                if o % 2 == 0:
                    m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
                else:
                    m = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
                img[m] = colors[o]
                lab[m] = o + 1
            pos += vel
            for o in range(num_objects):  # bounce on the borders
                for d, lim in ((0, h), (1, w)):
                    if not r <= pos[o, d] <= lim - r:
                        vel[o, d] = -vel[o, d]
                        pos[o, d] = np.clip(pos[o, d], r, lim - r)
            noisy = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise RuntimeError(f'could not encode frame {t} of {v} as JPEG')
            with atomic_write(osp.join(img_root, v, f'{t:05d}.jpg'), 'wb') as fh:
                fh.write(jpg.tobytes())
            write_mask(osp.join(ann_root, v, f'{t:05d}.png'), lab)
    with atomic_write(osp.join(root, 'ImageSets', str(year), f'{split}.txt'), 'w') as fh:
        fh.write('\n'.join(videos) + '\n')
    return list(videos)


__all__ = ['davis_palette', 'read_mask', 'write_mask', 'read_image', 'image_mask_pairs',
           'swem_clip_indices', 'color_jitter', 'affine_matrix', 'tps_fit', 'tps_apply', 'tps_grid',
           'apply_tps', 'VOSDataset', 'StaticVOSDataset', 'synthesize_moving_shapes']
