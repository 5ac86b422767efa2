"""Old / new training splits for compatible-upgrade experiments (UniBCT's four scenarios).

From one labelled dataset (labels y_1..y_N over C classes), with a per-class held-out test part first:

================  ===============================================  ==========================================
scenario          old training set                                 new training set
================  ===============================================  ==========================================
extended-class    all train samples of a random subset of classes  all train samples (old set is a subset)
extended-data     a random part of each class's train samples      all train samples (old set is a subset)
open-class        all train samples of a random subset of classes  the train samples of the OTHER classes
open-data         a random part of each class's train samples      the rest of the train samples (disjoint)
================  ===============================================  ==========================================

Labels are remapped so that the old classes come first (ids 0..C_old-1, in original order) and the others
follow: an old classifier with C_old outputs then "knows" exactly labels < C_old, as BCT needs. In the data
scenarios every class is old (the identity map). Everything is seeded and checked (test disjoint from both
training sets; open-* disjoint; extended-* nested; class sets as stated).
"""
from typing import Dict, Sequence

import numpy as np
from mmengine.registry import DATASETS

SCENARIOS = ('extended-class', 'extended-data', 'open-class', 'open-data')


def build_compatible_splits(labels: Sequence[int],
                            scenario: str,
                            old_class_ratio: float = 0.5,
                            old_data_ratio: float = 0.5,
                            test_ratio: float = 0.2,
                            seed: int = 0) -> Dict[str, np.ndarray]:
    """Index splits for one scenario.

    Args:
        labels: (N,) class id of each item.
        scenario: one of :data:`SCENARIOS`.
        old_class_ratio: share of classes that are old (class scenarios).
        old_data_ratio: share of each class's train samples that is old (data scenarios).
        test_ratio: share of each class's samples held out for testing (at least one kept for training).
        seed: random seed.

    Returns:
        dict(old=..., new=..., test=... sorted index arrays, label_map=(C,) new id of each original class,
        num_old_classes=array(C_old)).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f'scenario must be one of {SCENARIOS}, got {scenario!r}')
    for name, val in (('old_class_ratio', old_class_ratio), ('old_data_ratio', old_data_ratio)):
        if not 0.0 < val < 1.0:
            raise ValueError(f'{name} must be in (0, 1), got {val}')
    if not 0.0 <= test_ratio < 1.0:
        raise ValueError(f'test_ratio must be in [0, 1), got {test_ratio}')
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or labels.size == 0 or labels.min() < 0:
        raise ValueError('labels must be a non-empty 1-D array of class ids >= 0')
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    train, test = [], []
    per_class_train = {}
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = min(int(round(test_ratio * idx.size)), idx.size - 1)
        test.append(idx[:n_test])
        per_class_train[c] = idx[n_test:]
        train.append(idx[n_test:])
    train_all = np.concatenate(train)
    if scenario.endswith('class'):
        if classes.size < 2:
            raise ValueError('class scenarios need at least 2 classes')
        n_old = min(max(1, int(round(old_class_ratio * classes.size))), classes.size - 1)
        old_classes = np.sort(rng.choice(classes, n_old, replace=False))
        old = np.concatenate([per_class_train[c] for c in old_classes])
        new = (train_all if scenario == 'extended-class' else
               np.concatenate([per_class_train[c] for c in classes if c not in set(old_classes)]))
    else:
        old_classes = classes
        old_parts, new_parts = [], []
        for c in classes:
            idx = per_class_train[c]
            if scenario == 'open-data' and idx.size < 2:
                raise ValueError(f'open-data needs at least 2 training samples of class {c}')
            n_old = min(max(1, int(round(old_data_ratio * idx.size))),
                        idx.size - 1 if scenario == 'open-data' else idx.size)
            old_parts.append(idx[:n_old])
            new_parts.append(idx[n_old:])
        old = np.concatenate(old_parts)
        new = train_all if scenario == 'extended-data' else np.concatenate(new_parts)
    others = np.array([c for c in classes if c not in set(old_classes)], dtype=np.int64)
    label_map = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
    label_map[old_classes] = np.arange(old_classes.size)
    label_map[others] = old_classes.size + np.arange(others.size)
    splits = dict(old=np.sort(old), new=np.sort(new), test=np.sort(np.concatenate(test)),
                  label_map=label_map, num_old_classes=np.array(old_classes.size))
    check_compatible_splits(labels, scenario, splits)
    return splits


def check_compatible_splits(labels: Sequence[int], scenario: str, splits: Dict[str, np.ndarray]) -> None:
    """Raise ValueError when ``splits`` break the scenario's rules (see module docstring)."""
    labels = np.asarray(labels)
    old, new, test = (set(np.asarray(splits[k]).tolist()) for k in ('old', 'new', 'test'))
    if not old or not new:
        raise ValueError(f'{scenario}: empty old or new training set')
    for name, part in (('old', old), ('new', new)):
        both = part & test
        if both:
            raise ValueError(f'{scenario}: {len(both)} test items are also in the {name} training set')
    old_c, new_c = set(labels[list(old)].tolist()), set(labels[list(new)].tolist())
    if scenario.startswith('open') and old & new:
        raise ValueError(f'{scenario}: old and new training sets share {len(old & new)} items')
    if scenario.startswith('extended') and not old <= new:
        raise ValueError(f'{scenario}: {len(old - new)} old training items are missing from the new set')
    if scenario == 'open-class' and old_c & new_c:
        raise ValueError(f'open-class: old and new training sets share classes {sorted(old_c & new_c)[:5]}')
    if scenario == 'extended-class' and not old_c < new_c:
        raise ValueError('extended-class: the new training classes must strictly contain the old ones')
    if scenario.endswith('data') and old_c != new_c:
        raise ValueError(f'{scenario}: old and new training sets must have the same classes')


def dataset_labels(dataset) -> np.ndarray:
    """Class id of every item of an mmengine / mmpretrain dataset (without running the pipeline)."""
    if hasattr(dataset, 'get_gt_labels'):
        return np.asarray(dataset.get_gt_labels(), dtype=np.int64)
    out = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if 'gt_label' not in info:
            raise ValueError(f'item {i} of {type(dataset).__name__} has no "gt_label"')
        out.append(int(np.asarray(info['gt_label']).reshape(-1)[0]))
    return np.asarray(out, dtype=np.int64)


@DATASETS.register_module()
class CompatibleSplitDataset:
    """One part ('old', 'new' or 'test') of a scenario split of a labelled dataset, labels remapped.

    Args:
        dataset: the wrapped dataset (config dict or object) with ``get_data_info`` and a ``pipeline``
            (any mmengine ``BaseDataset``, e.g. mmpretrain's ``CustomDataset``).
        scenario: one of :data:`SCENARIOS`.
        split: 'old', 'new' or 'test'.
        old_class_ratio, old_data_ratio, test_ratio, seed: see :func:`build_compatible_splits`.
    """

    def __init__(self,
                 dataset,
                 scenario: str,
                 split: str,
                 old_class_ratio: float = 0.5,
                 old_data_ratio: float = 0.5,
                 test_ratio: float = 0.2,
                 seed: int = 0) -> None:
        if split not in ('old', 'new', 'test'):
            raise ValueError(f"CompatibleSplitDataset: split must be 'old', 'new' or 'test', got {split!r}")
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        if not hasattr(self.dataset, 'get_data_info') or not hasattr(self.dataset, 'pipeline'):
            raise TypeError('CompatibleSplitDataset wraps a dataset with get_data_info() and a pipeline '
                            f'(an mmengine BaseDataset), got {type(self.dataset).__name__}')
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        self.scenario, self.split = scenario, split
        self.splits = build_compatible_splits(dataset_labels(self.dataset), scenario, old_class_ratio,
                                              old_data_ratio, test_ratio, seed)
        self.indices: np.ndarray = self.splits[split]
        self.label_map: np.ndarray = self.splits['label_map']
        self.num_old_classes = int(self.splits['num_old_classes'])
        self.num_classes = int((self.label_map >= 0).sum())

    @property
    def metainfo(self) -> dict:
        meta = dict(getattr(self.dataset, 'metainfo', {}))
        classes = meta.get('classes')
        if classes is not None:
            inv = np.argsort(self.label_map[self.label_map >= 0])
            kept = np.flatnonzero(self.label_map >= 0)
            meta['classes'] = tuple(classes[kept[k]] for k in inv)
        meta.update(scenario=self.scenario, split=self.split, num_old_classes=self.num_old_classes)
        return meta

    def full_init(self) -> None:
        """Already initialised (mmengine calls this on datasets)."""

    def get_data_info(self, idx: int) -> dict:
        info = dict(self.dataset.get_data_info(int(self.indices[idx])))
        info['gt_label'] = int(self.label_map[int(np.asarray(info['gt_label']).reshape(-1)[0])])
        info['sample_idx'] = idx
        return info

    def get_gt_labels(self) -> np.ndarray:
        return self.label_map[dataset_labels(self.dataset)[self.indices]]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int):
        return self.dataset.pipeline(self.get_data_info(idx))
