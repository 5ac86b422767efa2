"""Old / new / test splits of the four UniBCT scenarios."""
import numpy as np
import pytest
from mmengine.dataset import BaseDataset

from mmkd_plugins.datasets.compatible_splits import (SCENARIOS, CompatibleSplitDataset,
                                                     build_compatible_splits, check_compatible_splits)

LABELS = np.repeat(np.arange(8), 10)[np.random.default_rng(0).permutation(80)]


@pytest.mark.parametrize('scenario', SCENARIOS)
def test_scenario_rules(scenario):
    sp = build_compatible_splits(LABELS, scenario, old_class_ratio=0.25, old_data_ratio=0.3,
                                 test_ratio=0.2, seed=1)
    old, new, test = set(sp['old']), set(sp['new']), set(sp['test'])
    assert not (old | new) & test
    assert len(test) == 16                                  # 2 of each class's 10
    assert all((LABELS[sp['test']] == c).sum() == 2 for c in range(8))
    old_c, new_c = set(LABELS[sp['old']]), set(LABELS[sp['new']])
    train = set(range(80)) - test
    if scenario == 'extended-class':
        assert len(old_c) == 2 and new_c == set(range(8)) and old <= new and new == train
    elif scenario == 'open-class':
        assert len(old_c) == 2 and old_c.isdisjoint(new_c) and old_c | new_c == set(range(8))
        assert old | new == train
    elif scenario == 'extended-data':
        assert old_c == new_c == set(range(8)) and old <= new and new == train
        assert all((LABELS[sp['old']] == c).sum() == 2 for c in range(8))   # round(0.3 * 8)
    else:
        assert old_c == new_c == set(range(8)) and not old & new and old | new == train
    # old classes first in the remapped ids, the others after, a permutation of all classes
    lm = sp['label_map']
    assert sorted(lm.tolist()) == list(range(8))
    assert set(lm[sorted(old_c)].tolist()) == set(range(int(sp['num_old_classes'])))


def test_seeded_and_different_seeds():
    a = build_compatible_splits(LABELS, 'open-class', seed=3)
    b = build_compatible_splits(LABELS, 'open-class', seed=3)
    c = build_compatible_splits(LABELS, 'open-class', seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in ('old', 'new', 'test'))
    assert not all(np.array_equal(a[k], c[k]) for k in ('old', 'new', 'test'))


def test_checks_catch_broken_splits():
    sp = build_compatible_splits(LABELS, 'open-data', seed=0)
    bad = dict(sp, new=np.concatenate([sp['new'], sp['old'][:1]]))
    with pytest.raises(ValueError, match='share 1 items'):
        check_compatible_splits(LABELS, 'open-data', bad)
    bad = dict(sp, old=np.concatenate([sp['old'], sp['test'][:2]]))
    with pytest.raises(ValueError, match='2 test items are also in the old'):
        check_compatible_splits(LABELS, 'open-data', bad)
    sp = build_compatible_splits(LABELS, 'extended-class', seed=0)
    with pytest.raises(ValueError, match='missing from the new set'):
        check_compatible_splits(LABELS, 'extended-class',
                                dict(sp, new=np.setdiff1d(sp['new'], sp['old'][:1])))
    with pytest.raises(ValueError, match='scenario must be one of'):
        build_compatible_splits(LABELS, 'closed-class')
    with pytest.raises(ValueError, match='old_class_ratio must be in'):
        build_compatible_splits(LABELS, 'open-class', old_class_ratio=1.0)


class _Toy(BaseDataset):
    METAINFO = dict(classes=tuple('abcdefgh'))

    def load_data_list(self):
        return [dict(x=i, gt_label=int(c)) for i, c in enumerate(LABELS)]


def test_split_dataset_wrapper_remaps_labels():
    ds = _Toy(ann_file='', serialize_data=False, pipeline=[lambda d: d])
    parts = {s: CompatibleSplitDataset(ds, 'extended-class', s, old_class_ratio=0.5, seed=2)
             for s in ('old', 'new', 'test')}
    old = parts['old']
    assert len(old) == len(old.splits['old']) and old.num_old_classes == 4 and old.num_classes == 8
    for i in range(len(old)):
        item = old[i]
        assert item['gt_label'] < 4 and item['sample_idx'] == i
        assert item['gt_label'] == old.label_map[LABELS[item['x']]]
    assert set(parts['new'].get_gt_labels().tolist()) == set(range(8))
    # class names follow the remapping
    names = old.metainfo['classes']
    for i in range(len(old)):
        assert names[old[i]['gt_label']] == 'abcdefgh'[LABELS[old[i]['x']]]
    with pytest.raises(ValueError, match="split must be 'old', 'new' or 'test'"):
        CompatibleSplitDataset(ds, 'open-class', 'train')
