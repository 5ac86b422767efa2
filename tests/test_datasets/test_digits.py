"""DigitsDataset: the fixed split and the class-balanced subset of the demo's students."""
import numpy as np
import pytest

from mmkd_plugins.datasets.digits import DigitsDataset, class_balanced_subset, load_digits_split


def test_class_balanced_subset_is_balanced_fixed_and_checked():
    labels = np.array([0] * 5 + [1] * 7 + [2] * 3)
    keep = class_balanced_subset(labels, 3, seed=1)
    assert np.bincount(labels[keep]).tolist() == [3, 3, 3]
    assert np.array_equal(keep, np.unique(keep))  # sorted, no repeats
    assert np.array_equal(keep, class_balanced_subset(labels, 3, seed=1))
    assert not np.array_equal(class_balanced_subset(labels, 2, seed=0),
                              class_balanced_subset(labels, 2, seed=5))
    with pytest.raises(ValueError, match='class 2 has only 3'):
        class_balanced_subset(labels, 4)
    with pytest.raises(ValueError, match='per_class'):
        class_balanced_subset(labels, 0)


def test_per_class_keeps_train_images_only():
    pytest.importorskip('sklearn')
    full = DigitsDataset(split='train', image_size=8)
    sub = DigitsDataset(split='train', image_size=8, per_class=20)
    assert len(full) == 1347 and len(sub) == 200
    labels = [sub.get_data_info(i)['gt_label'] for i in range(len(sub))]
    assert np.bincount(labels).tolist() == [20] * 10
    train_images, _ = load_digits_split('train')
    # every kept image is a train image (8x8 at image_size 8: the raw pixels, rescaled)
    train_set = {(np.clip(im, 0, 16) * (255.0 / 16.0)).astype(np.uint8).tobytes() for im in train_images}
    for i in range(len(sub)):
        raw = sub.get_data_info(i)['img'][:, :, 0].tobytes()
        assert raw in train_set
