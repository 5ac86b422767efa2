"""Static-image pre-training of SWEM as the official code does it (lmm077/SWEM
``datasets/static_dataset.py``, ``StaticTransformDataset``).

A sample draws ``num_images`` images (the indexed one and ``num_images - 1`` random others of the whole
pool); every frame of the synthetic clip is the first image with its object painted over by the
object's mean colour (the background), and the objects of all images cut out by their box, randomly
resized and pasted at random places in random order (later objects occlude earlier ones). The clip is
then augmented (:class:`StaticClipAugment`: clip-level scale / flip / jitter / grey, per-frame affine,
shorter side 384, 384x384 crop, jitter), warped per frame by a thin-plate spline
(:class:`RandomClipTPS`) and packed (:class:`PackVOSClip`: up to ``max_objects`` objects visible in the
first frame, relabelled 1..k).

The data set mixes sub-sets by repetition (``ratios``: official 5:5:1:1:1 for BIG, HRSOD, FSS, ECSSD,
DUTS); the partner images are drawn from the union of the sub-sets without repetition.
"""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS, TRANSFORMS

from .vos import (IM_MEAN, _pack, _resize, _rng, _select_objects, affine_matrix, apply_tps,
                  color_jitter, grey_rgb, image_mask_pairs, read_image, read_mask, sample_jitter)


# ------------------------------------------------------------------ pure composition
def object_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) bounding box (exclusive ends) of the non-zero pixels; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def resize_object(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                  area: Tuple[float, float] = (0.16, 0.81),
                  ratio: Tuple[float, float] = (3 / 4, 4 / 3)) -> Tuple[np.ndarray, np.ndarray]:
    """Official ``random_resize``: a cut-out object resized to ``U(area)`` times its box area with
    a log-uniform aspect ratio in ``ratio`` (bicubic image, nearest mask)."""
    import cv2
    h, w = img.shape[:2]
    target = rng.uniform(*area) * h * w
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    nh = max(1, int(round(np.sqrt(target / aspect))))
    nw = max(1, int(round(np.sqrt(target * aspect))))
    return (cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC),
            cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST))


def place_object(img: np.ndarray, mask: np.ndarray, size_hw: Tuple[int, int], centre: Tuple[int, int]
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Put an (h, w) cut-out with its centre at ``centre`` = (cy, cx) on an empty canvas of
    ``size_hw``; parts outside are cut off. Returns (canvas image = img * mask, canvas mask)."""
    hh, ww = size_hw
    sh, sw = img.shape[:2]
    cy, cx = centre
    y0, x0 = cy - sh // 2, cx - sw // 2
    ty0, tx0 = max(0, y0), max(0, x0)
    ty1, tx1 = min(hh, y0 + sh), min(ww, x0 + sw)
    out_img = np.zeros((hh, ww) + img.shape[2:], np.float32)
    out_mask = np.zeros((hh, ww), np.float32)
    if ty1 > ty0 and tx1 > tx0:
        src = (slice(ty0 - y0, ty1 - y0), slice(tx0 - x0, tx1 - x0))
        m = mask[src].astype(np.float32)
        out_img[ty0:ty1, tx0:tx1] = img[src] * m[..., None]
        out_mask[ty0:ty1, tx0:tx1] = m
    return out_img, out_mask


def random_centre(obj_hw: Tuple[int, int], size_hw: Tuple[int, int],
                  rng: np.random.Generator) -> Tuple[int, int]:
    """Official placement: centre uniform in ``[s // 2, max(S - s // 2, s // 2)]`` per axis."""
    out = []
    for s, big in zip(obj_hw, size_hw):
        lo = s // 2
        out.append(int(rng.integers(lo, max(big - lo, lo) + 1)))
    return out[0], out[1]


def compose_frame(background: np.ndarray, pasted: Sequence[Tuple[np.ndarray, np.ndarray]],
                  order: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Paste canvases (image, 0/1 mask) on ``background`` in ``order``; object ``i`` gets label
    ``i + 1`` and a later object occludes an earlier one (image and label).

    ``out = out (1 - m_i) + img_i m_i``; ``label[m_i = 1] = i + 1``.
    """
    out = background.astype(np.float32).copy()
    labels = np.zeros(background.shape[:2], np.int64)
    for i in order:
        img, m = pasted[i]
        out = out * (1 - m[..., None]) + img * m[..., None]
        labels[m == 1] = i + 1
    return np.clip(out, 0, 255).astype(np.uint8), labels


def paste_objects_clip(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], num_frames: int,
                       rng: np.random.Generator, area: Tuple[float, float] = (0.16, 0.81),
                       ratio: Tuple[float, float] = (3 / 4, 4 / 3)
                       ) -> Tuple[List[np.ndarray], np.ndarray]:
    """Official ``synthesis_frames``: a clip of ``num_frames`` frames that share the first image's
    background (its object painted with the object's mean colour) and show the objects of all
    images, each frame with its own random size, place and pasting order.

    Args:
        images: (H_i, W_i, 3) uint8 RGB images; the first one sets the frame size.
        masks: (H_i, W_i) 0/1 object masks (an empty mask contributes no object).
        num_frames: clip length. area / ratio: :func:`resize_object` ranges.

    Returns:
        frames (list of (H, W, 3) uint8) and labels (T, H, W) int64 (object ``j`` of the non-empty
        masks, in input order, has label ``j + 1``). A single image is repeated unchanged.
    """
    if len(images) != len(masks) or not images:
        raise ValueError(f'paste_objects_clip: need as many masks as images (>= 1), got '
                         f'{len(images)} and {len(masks)}')
    masks = [(np.asarray(m) > 0).astype(np.float32) for m in masks]
    for img, m in zip(images, masks):
        if img.shape[:2] != m.shape:
            raise ValueError(f'paste_objects_clip: mask {m.shape} does not match image {img.shape[:2]}')
    if len(images) == 1:
        return [images[0].copy() for _ in range(num_frames)], np.stack(
            [masks[0].astype(np.int64)] * num_frames)
    h, w = images[0].shape[:2]
    cuts = []
    for img, m in zip(images, masks):
        box = object_box(m)
        if box is not None:
            y0, x0, y1, x1 = box
            cuts.append((img[y0:y1, x0:x1].astype(np.float32), m[y0:y1, x0:x1]))
    m0 = masks[0][..., None]
    img0 = images[0].astype(np.float32)
    mean_fg = (img0 * m0).sum((0, 1)) / (m0.sum() + 1e-8)
    background = img0 * (1 - m0) + mean_fg * m0
    frames, labels = [], []
    for _ in range(num_frames):
        pasted = []
        for img, m in cuts:
            r_img, r_m = resize_object(img, m, rng, area, ratio)
            pasted.append(place_object(r_img, r_m, (h, w), random_centre(r_m.shape, (h, w), rng)))
        frame, lab = compose_frame(background, pasted, [int(i) for i in rng.permutation(len(pasted))])
        frames.append(frame)
        labels.append(lab)
    return frames, np.stack(labels)


# ------------------------------------------------------------------ transforms
@TRANSFORMS.register_module()
class PasteObjectsClip:
    """``images`` / ``masks`` (lists) -> ``frames`` / ``labels`` by :func:`paste_objects_clip`.

    Args:
        num_frames: clip length (3). object_area / object_ratio: resize ranges of a cut-out object
            (official 0.16-0.81 of its box area, aspect 3/4-4/3).
    """

    def __init__(self, num_frames: int = 3, object_area: Tuple[float, float] = (0.16, 0.81),
                 object_ratio: Tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        if num_frames < 2:
            raise ValueError(f'PasteObjectsClip: num_frames must be >= 2, got {num_frames}')
        self.num_frames, self.area, self.ratio = num_frames, tuple(object_area), tuple(object_ratio)

    def __call__(self, results: dict) -> dict:
        rng = results.setdefault('rng', _rng())
        results['frames'], results['labels'] = paste_objects_clip(
            results['images'], results['masks'], self.num_frames, rng, self.area, self.ratio)
        return results


def _warp(frame: np.ndarray, labels: np.ndarray, mat: np.ndarray,
          cubic: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Affine warp: frame bicubic (or nearest) with ``IM_MEAN`` fill, labels nearest with 0 fill."""
    import cv2
    h, w = frame.shape[:2]
    flag = cv2.INTER_CUBIC if cubic else cv2.INTER_NEAREST
    frame = cv2.warpAffine(frame, mat, (w, h), flags=flag, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=IM_MEAN)
    labels = cv2.warpAffine(labels.astype(np.uint8), mat, (w, h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.int64)
    return frame, labels


@TRANSFORMS.register_module()
class StaticClipAugment:
    """The official static-image augmentation of a synthetic clip (``frames``, ``labels``).

    Shared by the clip's frames: affine zoom ``U(clip_scale)`` about the centre (nearest, fill
    ``IM_MEAN`` / background), horizontal flip with ``flip_prob``, colour jitter ``clip_jitter`` (brightness,
    contrast, saturation, hue), grey with ``grayscale_prob``. Per frame: affine (rotation
    ``U(-degrees, degrees)``, scale ``U(frame_scale)``, x-shear ``U(-shear, shear)``, bicubic / nearest,
    fill ``IM_MEAN`` / background), shorter side resized to ``short_side`` (bicubic / nearest), random
    ``crop_size`` crop (padded with ``IM_MEAN`` / background if needed), jitter ``frame_jitter``.
    """

    def __init__(self, clip_scale: Tuple[float, float] = (0.8, 1.5), flip_prob: float = 0.5,
                 clip_jitter: Sequence[float] = (0.1, 0.05, 0.05, 0.05), grayscale_prob: float = 0.05,
                 degrees: float = 20.0, frame_scale: Tuple[float, float] = (0.9, 1.1),
                 shear: float = 10.0, short_side: int = 384, crop_size: Tuple[int, int] = (384, 384),
                 frame_jitter: Sequence[float] = (0.1, 0.05, 0.05)) -> None:
        self.clip_scale, self.flip_prob = tuple(clip_scale), flip_prob
        self.clip_jitter, self.grayscale_prob = tuple(clip_jitter), grayscale_prob
        self.degrees, self.frame_scale, self.shear = degrees, tuple(frame_scale), shear
        self.short_side, self.crop_size = short_side, tuple(crop_size)
        self.frame_jitter = tuple(frame_jitter)

    def _resize_crop(self, frame: np.ndarray, labels: np.ndarray,
                     rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        s = self.short_side / min(h, w)
        size = (self.short_side, int(w * s)) if h <= w else (int(h * s), self.short_side)
        if size != (h, w):
            frame = _resize(frame, size, nearest=False, interpolation='bicubic')
            labels = _resize(labels, size, nearest=True)
        ch, cw = self.crop_size
        ph, pw = max(0, ch - size[0]), max(0, cw - size[1])
        if ph or pw:  # torchvision pad_if_needed: both sides
            pad = ((ph, ph), (pw, pw))
            frame = np.stack([np.pad(frame[..., c], pad, constant_values=IM_MEAN[c]) for c in range(3)],
                             -1)
            labels = np.pad(labels, pad, constant_values=0)
        h, w = frame.shape[:2]
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return frame[y0:y0 + ch, x0:x0 + cw], labels[y0:y0 + ch, x0:x0 + cw]

    def __call__(self, results: dict) -> dict:
        rng = results.setdefault('rng', _rng())
        frames, labels = results['frames'], results['labels']
        h, w = frames[0].shape[:2]
        zoom = affine_matrix(0.0, 0.0, (h, w), scale=rng.uniform(*self.clip_scale))
        flip = rng.random() < self.flip_prob
        jitter = sample_jitter(self.clip_jitter, rng) if any(self.clip_jitter) else None
        grey = rng.random() < self.grayscale_prob
        out_f, out_l = [], []
        for f, lab in zip(frames, labels):
            f, lab = _warp(f, lab, zoom, cubic=False)  # official: RandomAffine's default NEAREST
            if flip:
                f, lab = np.ascontiguousarray(f[:, ::-1]), np.ascontiguousarray(lab[:, ::-1])
            if jitter is not None:
                f = color_jitter(f, *jitter)
            if grey:
                f = grey_rgb(f)
            mat = affine_matrix(rng.uniform(-self.degrees, self.degrees),
                                rng.uniform(-self.shear, self.shear), f.shape[:2],
                                scale=rng.uniform(*self.frame_scale))
            f, lab = _warp(f, lab, mat)
            f, lab = self._resize_crop(f, lab, rng)
            if any(self.frame_jitter):
                f = color_jitter(f, *sample_jitter(self.frame_jitter, rng))
            out_f.append(np.ascontiguousarray(f))
            out_l.append(np.ascontiguousarray(lab))
        results['frames'], results['labels'] = out_f, np.stack(out_l)
        return results


@TRANSFORMS.register_module()
class RandomClipTPS:
    """Per frame, with probability ``prob``, a random thin-plate-spline warp (:func:`apply_tps`,
    ``anchors x anchors`` control points, inner ones moved by ``U(-noise/2, noise/2)`` in [-1, 1]
    units; official static stage: noise (margin rate) 0.3, 4x4, p 1)."""

    def __init__(self, noise: float = 0.3, anchors: int = 4, prob: float = 1.0) -> None:
        self.noise, self.anchors, self.prob = noise, anchors, prob

    def __call__(self, results: dict) -> dict:
        rng = results.setdefault('rng', _rng())
        out_f, out_l = [], []
        for f, lab in zip(results['frames'], results['labels']):
            if rng.random() < self.prob:
                f, lab = apply_tps(f, lab, self.noise, rng, self.anchors)
            out_f.append(f)
            out_l.append(lab)
        results['frames'], results['labels'] = out_f, np.stack(out_l)
        return results


@TRANSFORMS.register_module()
class PackVOSClip:
    """``frames`` / ``labels`` -> the VOS training sample (``inputs`` (T, 3, H, W) uint8,
    ``data_samples`` with ``gt_masks`` and ``num_objects``): up to ``max_objects`` random objects
    present in the first frame (>= ``min_object_pixels``), relabelled 1..k. As in the official
    static dataset a clip whose first frame shows no object is kept with ``num_objects = 0``."""

    def __init__(self, max_objects: int = 2, min_object_pixels: int = 1) -> None:
        self.max_objects, self.min_object_pixels = max_objects, min_object_pixels

    def __call__(self, results: dict) -> dict:
        rng = results.get('rng') or _rng()
        labels, k = _select_objects(np.asarray(results['labels']), np.asarray(results['labels'][0]),
                                    self.max_objects, self.min_object_pixels, rng)
        name = results.get('name', '')
        return _pack(results['frames'], labels,
                     dict(video=name, frame_names=[name] * len(results['frames']), num_objects=k))


# ------------------------------------------------------------------ data set
@DATASETS.register_module()
class StaticPasteDataset(BaseDataset):
    """Mixed static-image sub-sets, each sample ``num_images`` images for :class:`PasteObjectsClip`.

    Layout (the STCN / SWEM pre-training folders): ``<data_root>/<img_dir>/<subset>/<name>.jpg|png``
    and ``<data_root>/<ann_dir>/<subset>/<name>.png`` (0/255 or 0/1 masks, any non-zero = object).

    Args:
        subsets: sub-set folder names; ratios: how often each is repeated in one pass (official
            ``PRETRAIN_SET_RATIO`` 5, 5, 1, 1, 1).
        num_images: images per sample (official: ``MAX_NUM_OBJS`` = 2): the indexed one (its
            background) and ``num_images - 1`` partners drawn as the official code does
            (``(index + U{0..N-2}) mod N`` over the N pooled images, without replacement).
        pipeline: e.g. PasteObjectsClip, StaticClipAugment, RandomClipTPS, PackVOSClip.
    """

    def __init__(self, data_root: str, subsets: Sequence[str], ratios: Optional[Sequence[int]] = None,
                 img_dir: str = 'JPEGImages', ann_dir: str = 'Annotations', num_images: int = 2,
                 **kwargs) -> None:
        ratios = [1] * len(subsets) if ratios is None else list(ratios)
        if len(ratios) != len(subsets) or any(int(r) != r or r < 1 for r in ratios):
            raise ValueError(f'StaticPasteDataset: ratios must be one positive integer per subset, got '
                             f'{ratios} for {list(subsets)}')
        if num_images < 1:
            raise ValueError(f'StaticPasteDataset: num_images must be >= 1, got {num_images}')
        self.subsets, self.ratios = list(subsets), [int(r) for r in ratios]
        self.img_dir, self.ann_dir, self.num_images = img_dir, ann_dir, num_images
        self.pool: List[dict] = []
        kwargs.setdefault('serialize_data', False)
        super().__init__(data_root=data_root, **kwargs)

    def load_data_list(self) -> List[dict]:
        pool, data_list = [], []
        for subset, ratio in zip(self.subsets, self.ratios):
            items = image_mask_pairs(osp.join(self.data_root, self.img_dir, subset),
                                     osp.join(self.data_root, self.ann_dir, subset),
                                     'StaticPasteDataset')
            for i, item in enumerate(items):
                item.update(name=f'{subset}/{item["name"]}', pool_index=len(pool) + i)
            pool += items
            data_list += items * ratio
        self.pool = pool
        if self.num_images > 1 and len(pool) < self.num_images:
            raise ValueError(f'StaticPasteDataset: {len(pool)} images cannot give {self.num_images} '
                             'per sample')
        return data_list

    def _read(self, item: dict) -> Tuple[np.ndarray, np.ndarray]:
        img = read_image(item['image'])
        mask = read_mask(item['mask'], binary=True)
        if mask.shape != img.shape[:2]:
            raise ValueError(f'StaticPasteDataset: mask {item["mask"]} has size {mask.shape}, image '
                             f'has {img.shape[:2]}')
        return img, mask

    def prepare_data(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        rng = _rng()
        items = [info]
        if self.num_images > 1:
            n = len(self.pool)
            offsets = rng.choice(n - 1, size=self.num_images - 1, replace=False)
            items += [self.pool[(int(o) + info['pool_index']) % n] for o in offsets]
        pairs = [self._read(it) for it in items]
        results = dict(images=[p[0] for p in pairs], masks=[p[1] for p in pairs], name=info['name'],
                       rng=rng)
        return self.pipeline(results)


__all__ = ['object_box', 'resize_object', 'place_object', 'random_centre', 'compose_frame',
           'paste_objects_clip', 'PasteObjectsClip', 'StaticClipAugment', 'RandomClipTPS',
           'PackVOSClip', 'StaticPasteDataset']
