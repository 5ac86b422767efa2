"""Tiny detection / segmentation datasets drawn by the tests (no download, a few KB on disk).

``make_tiny_coco`` writes a COCO-layout instance dataset::

    root/train2017/*.png  root/val2017/*.png
    root/annotations/instances_train2017.json  root/annotations/instances_val2017.json

Each image is a noisy background with 1-3 filled rectangles and ellipses; the json holds their
boxes (x, y, w, h), polygons and areas, categories ``rectangle`` (id 1) and ``ellipse`` (id 2).

``make_tiny_cityscapes`` writes a Cityscapes-layout semantic segmentation dataset::

    root/leftImg8bit/{train,val}/tiny/<name>_leftImg8bit.png
    root/gtFine/{train,val}/tiny/<name>_gtFine_labelTrainIds.png

label maps in Cityscapes train ids: road (0) background, a car (13) rectangle and a person (11)
ellipse, a 255 (ignore) border of 2 pixels.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

COCO_CLASSES = ('rectangle', 'ellipse')


def _ellipse_polygon(x0: float, y0: float, x1: float, y1: float, n: int = 16) -> List[float]:
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    pts = []
    for k in range(n):
        a = 2 * math.pi * k / n
        pts += [cx + rx * math.cos(a), cy + ry * math.sin(a)]
    return pts


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    base = rng.integers(40, 90, size=3)
    noise = rng.integers(-15, 16, size=(h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _random_box(rng: np.random.Generator, h: int, w: int) -> Tuple[int, int, int, int]:
    bw, bh = int(rng.integers(w // 5, w // 2)), int(rng.integers(h // 5, h // 2))
    x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    return x0, y0, x0 + bw, y0 + bh


def make_tiny_coco(root: str, num_train: int = 4, num_val: int = 2, size: int = 64,
                   seed: int = 0) -> Dict[str, str]:
    """Draw the images and write the COCO json files; returns the paths."""
    rng = np.random.default_rng(seed)
    out = dict(root=root)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, num in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(num):
            img = _background(rng, size, size)
            draw = ImageDraw.Draw(img)
            image_id = i + 1
            for _ in range(int(rng.integers(1, 4))):
                x0, y0, x1, y1 = _random_box(rng, size, size)
                cat = int(rng.integers(1, 3))
                color = tuple(int(c) for c in rng.integers(150, 256, size=3))
                if cat == 1:
                    draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=color)
                    poly = [x0, y0, x1, y0, x1, y1, x0, y1]
                    area = (x1 - x0) * (y1 - y0)
                else:
                    draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=color)
                    poly = _ellipse_polygon(x0, y0, x1, y1)
                    area = math.pi * (x1 - x0) * (y1 - y0) / 4
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=cat,
                    bbox=[x0, y0, x1 - x0, y1 - y0], area=float(area),
                    segmentation=[[float(v) for v in poly]], iscrowd=0))
            name = f'{split}_{i:03d}.png'
            img.save(osp.join(root, split, name))
            images.append(dict(id=image_id, file_name=name, width=size, height=size))
        ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=[dict(id=k + 1, name=n) for k, n in enumerate(COCO_CLASSES)]),
                      f)
        out[split] = ann_file
    return out


def make_tiny_cityscapes(root: str, num_train: int = 2, num_val: int = 2,
                         size: Tuple[int, int] = (64, 128), seed: int = 0) -> Dict[str, str]:
    """Draw the images and label maps (Cityscapes train ids); ``size`` is (h, w)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, num in (('train', num_train), ('val', num_val)):
        img_dir = osp.join(root, 'leftImg8bit', split, 'tiny')
        seg_dir = osp.join(root, 'gtFine', split, 'tiny')
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(seg_dir, exist_ok=True)
        for i in range(num):
            img = _background(rng, h, w)
            label = Image.new('L', (w, h), 0)  # road
            d_img, d_lab = ImageDraw.Draw(img), ImageDraw.Draw(label)
            x0, y0, x1, y1 = _random_box(rng, h, w)
            d_img.rectangle([x0, y0, x1 - 1, y1 - 1], fill=(200, 40, 40))
            d_lab.rectangle([x0, y0, x1 - 1, y1 - 1], fill=13)  # car
            x0, y0, x1, y1 = _random_box(rng, h, w)
            d_img.ellipse([x0, y0, x1 - 1, y1 - 1], fill=(40, 200, 40))
            d_lab.ellipse([x0, y0, x1 - 1, y1 - 1], fill=11)  # person
            lab = np.array(label)
            lab[:2], lab[-2:], lab[:, :2], lab[:, -2:] = 255, 255, 255, 255
            name = f'tiny_{split}_{i:06d}'
            img.save(osp.join(img_dir, f'{name}_leftImg8bit.png'))
            Image.fromarray(lab).save(osp.join(seg_dir, f'{name}_gtFine_labelTrainIds.png'))
    return dict(root=root)
