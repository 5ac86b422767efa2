"""tools/hyp2_make_flickr25k_split.py: the official FLICKR25K split on a tiny generated example."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest

from mmkd_plugins.datasets.multilabel_hashing import Flickr25kHashing, flickr25k_hashing_lists
from tests.conftest import REPO


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', osp.join(REPO, 'tools', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def flickr(tmp_path):
    """12 images, 5 labels, in the official file formats (targets rows start with a space)."""
    rng = np.random.default_rng(0)
    names = [f'im{i + 1}.jpg' for i in range(12)]
    labels = (rng.random((12, 5)) < 0.4).astype(int)
    labels[3] = 0  # an image without labels is kept
    perm = rng.permutation(12).tolist()
    (tmp_path / 'img.txt').write_text('\n'.join(names) + '\n')
    (tmp_path / 'targets.txt').write_text(
        ''.join(' ' + ' '.join(str(v) for v in row) + '\n' for row in labels))
    (tmp_path / 'flickr.txt').write_text(json.dumps(perm))
    return tmp_path, names, labels, perm


def _read(path):
    with open(path) as f:
        return [line.split() for line in f]


def test_tool_writes_the_official_split(flickr, tmp_path):
    root, names, labels, perm = flickr
    out = tmp_path / 'lists'
    tool = _load_tool('hyp2_make_flickr25k_split')
    assert tool.main(['--root', str(root), '--out-dir', str(out), '--num-query', '3',
                      '--num-train', '4']) == 0
    # direct re-computation: query = perm[:3], train = perm[3:7], database = perm[7:]
    for file, index in (('test.txt', perm[:3]), ('train.txt', perm[3:7]),
                        ('database.txt', perm[7:])):
        expected = [[names[i]] + [str(v) for v in labels[i]] for i in index]
        assert _read(out / file) == expected, file
    # the lists load with the dataset the Flickr configs use
    ds = Flickr25kHashing(split=['query', 'database'], data_root=str(out), data_prefix='mirflickr')
    assert len(ds) == 3 + 5 and ds.num_classes == 5
    assert ds.get_splits() == ['query'] * 3 + ['database'] * 5
    np.testing.assert_array_equal(ds.get_multi_hot(), labels[perm[:3] + perm[7:]])
    assert ds[0]['img_path'] == osp.join(str(out), 'mirflickr', names[perm[0]])


def test_defaults_are_1000_query_4000_train(tmp_path):
    n = 5012
    names = [f'im{i}.jpg' for i in range(n)]
    labels = np.eye(3, dtype=int)[np.arange(n) % 3]
    perm = list(range(n))[::-1]
    (tmp_path / 'img.txt').write_text('\n'.join(names))
    (tmp_path / 'targets.txt').write_text('\n'.join(' '.join(map(str, r)) for r in labels))
    (tmp_path / 'flickr.txt').write_text(json.dumps(perm))
    counts = flickr25k_hashing_lists(str(tmp_path / 'img.txt'), str(tmp_path / 'targets.txt'),
                                     str(tmp_path / 'flickr.txt'), str(tmp_path))
    assert counts == dict(query=1000, train=4000, database=12)
    assert _read(tmp_path / 'test.txt')[0][0] == names[n - 1]
    assert _read(tmp_path / 'train.txt')[0][0] == names[n - 1001]
    assert [r[0] for r in _read(tmp_path / 'database.txt')] == names[11::-1]


def test_errors(flickr):
    root, names, labels, perm = flickr
    args = [str(root / 'img.txt'), str(root / 'targets.txt'), str(root / 'flickr.txt'), str(root)]
    (root / 'flickr.txt').write_text(json.dumps(perm[:-1] + [perm[0]]))
    with pytest.raises(ValueError, match='each index 0..11 once'):
        flickr25k_hashing_lists(*args, num_query=3, num_train=4)
    (root / 'flickr.txt').write_text(json.dumps(perm))
    with pytest.raises(ValueError, match='at most the 12 images'):
        flickr25k_hashing_lists(*args, num_query=10, num_train=4)
    (root / 'img.txt').write_text('\n'.join(names[:-1]))
    with pytest.raises(ValueError, match='11 images .* but 12 label rows'):
        flickr25k_hashing_lists(*args, num_query=3, num_train=4)
    with pytest.raises(FileNotFoundError, match='nothing.txt'):
        flickr25k_hashing_lists(str(root / 'nothing.txt'), *args[1:])
