"""scikit-learn's bundled handwritten digits as a tiny real image-classification dataset."""
from typing import List, Optional

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS

from ..utils import require


def load_digits_split(split: str, test_fraction: float = 0.25, seed: int = 0):
    """Images (M, 8, 8) in [0, 16] and labels (M,) of a fixed stratified train / test split.

    The 1797 digits are split per class with a fixed seed, so train and test never overlap.
    """
    if split not in ('train', 'test', 'all'):
        raise ValueError(f'split must be "train", "test" or "all", got {split!r}')
    datasets = require('sklearn.datasets', 'the digits demo dataset')
    digits = datasets.load_digits()
    images, labels = digits.images, digits.target
    if split == 'all':
        return images, labels
    rng = np.random.RandomState(seed)
    test_idx = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        test_idx.extend(idx[:int(round(len(idx) * test_fraction))])
    is_test = np.zeros(len(labels), bool)
    is_test[test_idx] = True
    keep = is_test if split == 'test' else ~is_test
    return images[keep], labels[keep]


def class_balanced_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` samples of every class, drawn with a fixed seed.

    The draw is a pure function of ``(labels, per_class, seed)``, so every run (and every machine)
    trains on the same images. Raises ValueError when a class has fewer than ``per_class`` samples.
    """
    if per_class < 1:
        raise ValueError(f'per_class must be >= 1, got {per_class}')
    rng = np.random.RandomState(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f'class {c} has only {len(idx)} samples, fewer than per_class={per_class}')
        keep.extend(rng.permutation(idx)[:per_class])
    return np.sort(np.asarray(keep, dtype=np.int64))


def digits_to_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 digit in [0, 16] -> (size, size, 3) uint8 image (bilinear upsampling)."""
    cv2 = require('cv2', 'the digits demo dataset')
    img = (np.clip(image, 0, 16) * (255.0 / 16.0)).astype(np.float32)
    if size != img.shape[0]:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2)


@DATASETS.register_module()
class DigitsDataset(BaseDataset):
    """The 1797 8x8 handwritten digits shipped inside scikit-learn (real data, no download).

    Each sample is ``dict(img=(S, S, 3) uint8, gt_label=int, img_shape, ori_shape)`` and works with
    mmpretrain pipelines (``PackInputs``) and metrics (``Accuracy``).

    Args:
        split: ``'train'`` (75 %), ``'test'`` (25 %) or ``'all'``; stratified, fixed seed.
        image_size: side S of the upsampled image.
        test_fraction: fraction of each class that goes to the test split.
        split_seed: seed of the split.
        per_class: keep only this many images of each class (a fixed, class-balanced draw with
            ``split_seed``; the demo's low-data students). ``None`` keeps the whole split.
        max_samples: keep only the first N samples (tests).
    """

    METAINFO = dict(classes=tuple(str(i) for i in range(10)))

    def __init__(self, split: str = 'train', image_size: int = 16, test_fraction: float = 0.25,
                 split_seed: int = 0, per_class: Optional[int] = None,
                 max_samples: Optional[int] = None, **kwargs) -> None:
        self.split = split
        self.image_size = image_size
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.per_class = per_class
        self.max_samples = max_samples
        kwargs.setdefault('serialize_data', False)
        super().__init__(ann_file='', **kwargs)

    def load_data_list(self) -> List[dict]:
        images, labels = load_digits_split(self.split, self.test_fraction, self.split_seed)
        if self.per_class is not None:
            keep = class_balanced_subset(labels, self.per_class, self.split_seed)
            images, labels = images[keep], labels[keep]
        if self.max_samples is not None:
            images, labels = images[:self.max_samples], labels[:self.max_samples]
        out = []
        for image, label in zip(images, labels):
            img = digits_to_rgb(image, self.image_size)
            out.append(dict(img=img, gt_label=int(label), img_shape=img.shape[:2],
                            ori_shape=img.shape[:2]))
        return out
