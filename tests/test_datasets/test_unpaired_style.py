"""Unpaired content/style folder dataset and its transforms."""
import os

import numpy as np
import pytest
import torch
from mmengine.registry import DATASETS
from PIL import Image

from mmkd_plugins.datasets.unpaired_style import (LoadStylePair, PackStylePairInputs,
                                                  ResizeCropStylePair, UnpairedStyleDataset,
                                                  default_pipeline, export_skimage_samples,
                                                  scan_images)


@pytest.fixture
def folders(tmp_path):
    content, style = tmp_path / 'content', tmp_path / 'style'
    (content / 'sub').mkdir(parents=True)
    style.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(content / 'a.png')
    Image.fromarray(rng.integers(0, 255, (50, 30, 3), dtype=np.uint8)).save(content / 'b.jpg')
    grey = rng.integers(0, 255, (36, 36), dtype=np.uint8)
    Image.fromarray(grey).save(content / 'sub' / 'c.png')
    Image.fromarray(rng.integers(0, 255, (32, 48, 4), dtype=np.uint8)).save(style / 'x.png')
    Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(style / 'y.png')
    (style / 'notes.txt').write_text('not an image')
    return str(tmp_path)


def test_scan_images(folders):
    paths = scan_images(os.path.join(folders, 'content'))
    rel = [os.path.relpath(p, folders) for p in paths]
    assert rel == ['content/a.png', 'content/b.jpg', 'content/sub/c.png']
    assert len(scan_images(os.path.join(folders, 'content'), recursive=False)) == 2
    assert scan_images(paths[0]) == [paths[0]]
    with pytest.raises(FileNotFoundError, match='does not exist'):
        scan_images(os.path.join(folders, 'nope'))
    with pytest.raises(ValueError, match='not an image file'):
        scan_images(os.path.join(folders, 'style', 'notes.txt'))


def test_train_mode_random_pairs(folders):
    ds = DATASETS.build(dict(type='UnpairedStyleDataset', data_root=folders,
                             content_root='content', style_root='style', seed=0,
                             pipeline=default_pipeline(32, 24, True)))
    assert len(ds) == 3  # max(3 contents, 2 styles)
    styles = {ds.get_data_info(0)['style_id'] for _ in range(30)}
    assert styles == {0, 1}  # drawn anew on every access
    assert [ds.get_data_info(i)['content_id'] for i in range(3)] == [0, 1, 2]
    item = ds[2]
    assert set(item['inputs']) == {'content', 'style'}
    for key in ('content', 'style'):
        assert item['inputs'][key].shape == (3, 24, 24)
        assert item['inputs'][key].dtype == torch.uint8
    meta = item['data_samples'].metainfo
    assert meta['content_path'].endswith('c.png') and meta['content_id'] == 2
    assert meta['content_ori_shape'] == (36, 36)
    # seeded: same sequence of styles
    again = UnpairedStyleDataset(os.path.join(folders, 'content'),
                                 os.path.join(folders, 'style'), seed=0)
    first = UnpairedStyleDataset(os.path.join(folders, 'content'),
                                 os.path.join(folders, 'style'), seed=0)
    assert [again.get_data_info(0)['style_id'] for _ in range(8)] == \
        [first.get_data_info(0)['style_id'] for _ in range(8)]
    assert len(UnpairedStyleDataset(os.path.join(folders, 'content'),
                                    os.path.join(folders, 'style'), num_pairs=10)) == 10


def test_test_mode_is_content_by_style_grid(folders):
    ds = UnpairedStyleDataset('content', 'style', data_root=folders, test_mode=True,
                              pipeline=default_pipeline(None, 24, False))
    assert len(ds) == 6
    pairs = [(ds.get_data_info(i)['content_id'], ds.get_data_info(i)['style_id'])
             for i in range(6)]
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    a, b = ds[3], ds[3]
    assert torch.equal(a['inputs']['content'], b['inputs']['content'])  # centre crop
    capped = UnpairedStyleDataset('content', 'style', data_root=folders, test_mode=True,
                                  num_pairs=4)
    assert len(capped) == 4


def test_load_resize_crop_pack(folders):
    results = dict(content_path=os.path.join(folders, 'content', 'sub', 'c.png'),
                   style_path=os.path.join(folders, 'style', 'x.png'))
    results = LoadStylePair()(results)
    assert results['content_img'].shape == (36, 36, 3)  # grey -> RGB
    assert results['style_img'].shape == (32, 48, 3)  # RGBA -> RGB
    style = results['style_img'].copy()
    out = ResizeCropStylePair(scale=16, crop_size=None)(dict(results))
    assert out['content_img'].shape == (16, 16, 3) and out['style_img'].shape == (16, 24, 3)
    out = ResizeCropStylePair(scale=None, crop_size=20, random_crop=False)(
        dict(results, style_img=style))
    np.testing.assert_array_equal(out['style_img'], style[6:26, 14:34])
    packed = PackStylePairInputs()(out)
    assert packed['inputs']['style'].shape == (3, 20, 20)
    np.testing.assert_array_equal(packed['inputs']['style'].numpy().transpose(1, 2, 0),
                                  style[6:26, 14:34])


def test_errors(folders, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match='no style images'):
        UnpairedStyleDataset(os.path.join(folders, 'content'), str(empty))
    with pytest.raises(ValueError, match='must not exceed scale'):
        ResizeCropStylePair(scale=16, crop_size=32)
    small = dict(content_img=np.zeros((32, 80, 3), np.uint8),
                 style_img=np.zeros((80, 80, 3), np.uint8))
    with pytest.raises(ValueError, match='smaller than crop_size=64'):
        ResizeCropStylePair(scale=None, crop_size=64)(small)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        LoadStylePair()(dict(content_path=str(tmp_path / 'x.png'), style_path='y'))
    bad = tmp_path / 'broken.png'
    bad.write_bytes(b'not a png')
    with pytest.raises(OSError, match='cannot read image'):
        LoadStylePair()(dict(content_path=str(bad), style_path=str(bad)))
    with pytest.raises(KeyError, match='add LoadStylePair first'):
        PackStylePairInputs()(dict(style_img=np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(ValueError, match='num_pairs must be >= 1'):
        UnpairedStyleDataset('a', 'b', num_pairs=0)


def test_export_skimage_samples(tmp_path):
    pytest.importorskip('skimage')
    written = export_skimage_samples(str(tmp_path), contents=('astronaut', ),
                                     styles=('gravel', ), max_side=64)
    with Image.open(written['content'][0]) as im:
        assert im.size == (64, 64) and im.mode == 'RGB'
    with Image.open(written['style'][0]) as im:
        assert im.mode == 'RGB'  # grey texture converted
    with pytest.raises(ValueError, match='no image called'):
        export_skimage_samples(str(tmp_path), contents=('nonexistent', ), styles=())
