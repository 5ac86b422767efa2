"""VOS datasets: DAVIS and YouTube-VOS layouts, training clips, whole videos, static pretraining."""
import json
import os
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mmkd_plugins.engine.hooks import VOSFrameSkipHook
from mmkd_plugins.datasets.vos import (StaticVOSDataset, VOSDataset, davis_palette,
                                       read_mask, synthesize_moving_shapes, write_mask)


def _write_frame(path, h, w, value):
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[..., 0] = 200  # BGR: blue channel on disk -> last channel after RGB conversion
    cv2.imwrite(path, img)


def _write_label(path, lab):
    os.makedirs(osp.dirname(path), exist_ok=True)
    im = Image.fromarray(lab.astype(np.uint8), mode='P')
    im.putpalette(davis_palette().reshape(-1).tolist())
    im.save(path)


def make_davis(root, videos=(('v0', 8), ('v1', 5)), h=40, w=56, split='train', year='2017'):
    for v, t in videos:
        for i in range(t):
            _write_frame(osp.join(root, 'JPEGImages', '480p', v, f'{i:05d}.jpg'), h, w, 10 * i)
            lab = np.zeros((h, w), np.uint8)
            lab[5:20, 5 + i:25 + i] = 1
            lab[22:35, 30:50] = 2
            lab[0, 0] = 255
            _write_label(osp.join(root, 'Annotations', '480p', v, f'{i:05d}.png'), lab)
    os.makedirs(osp.join(root, 'ImageSets', year), exist_ok=True)
    with open(osp.join(root, 'ImageSets', year, f'{split}.txt'), 'w') as fh:
        fh.write('\n'.join(v for v, _ in videos) + '\n')


def test_palette_roundtrip(tmp_path):
    pal = davis_palette()
    assert tuple(pal[1]) == (128, 0, 0) and tuple(pal[2]) == (0, 128, 0) and tuple(pal[0]) == (0, 0, 0)
    lab = np.array([[0, 1], [2, 255]])
    write_mask(str(tmp_path / 'm.png'), lab)
    with Image.open(tmp_path / 'm.png') as im:
        assert im.mode == 'P'
    np.testing.assert_array_equal(read_mask(str(tmp_path / 'm.png')), lab)
    np.testing.assert_array_equal(read_mask(str(tmp_path / 'm.png'), binary=True), lab > 0)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / 'rgb.png')
    with pytest.raises(ValueError, match='palette or grey'):
        read_mask(str(tmp_path / 'rgb.png'))
    with pytest.raises(FileNotFoundError, match='annotation not found'):
        read_mask(str(tmp_path / 'none.png'))


def test_davis_train_clips(tmp_path):
    make_davis(str(tmp_path))
    ds = VOSDataset(str(tmp_path), split='train', crop_size=(32, 32), num_frames=3, max_objects=1,
                    min_object_pixels=5)
    assert len(ds) == 2
    for _ in range(5):
        s = ds[0]
        assert s['inputs'].shape == (3, 3, 32, 32) and s['inputs'].dtype == torch.uint8
        gt = s['data_samples'].gt_masks
        assert gt.shape == (3, 32, 32) and gt.dtype == torch.long
        assert s['data_samples'].num_objects == 1 and set(gt.unique().tolist()) <= {0, 1}
        assert (gt[0] == 1).sum() >= 5  # the kept object is visible in the first frame
        idx = [int(n) for n in s['data_samples'].frame_names]
        assert idx == sorted(idx) and all(0 < b - a <= ds.max_skip for a, b in zip(idx, idx[1:])
                                          if b < 7)
    ds2 = VOSDataset(str(tmp_path), split='train', crop_size=(32, 32), max_objects=2)
    s = ds2[1]
    assert s['data_samples'].num_objects in (1, 2)
    assert int(s['data_samples'].gt_masks.max()) <= 2  # void 255 never survives


def test_max_skip_is_shared_and_curriculum(tmp_path):
    make_davis(str(tmp_path))
    ds = VOSDataset(str(tmp_path), split='train', max_skip=2)
    ds.max_skip = 1
    for _ in range(5):
        idx = [int(n) for n in ds[0]['data_samples'].frame_names]
        assert all(b - a <= 1 for a, b in zip(idx, idx[1:]))
    assert pickle.loads(pickle.dumps(ds)).max_skip == 1
    with pytest.raises(ValueError, match='max_skip'):
        ds.max_skip = 0
    hook = VOSFrameSkipHook(milestones=(0.1, 0.3, 0.8), max_skips=(10, 15, 5, 5))
    assert [hook.skip_at(i, 100) for i in (0, 9, 10, 29, 30, 80, 99)] == [10, 10, 15, 15, 5, 5, 5]
    assert VOSFrameSkipHook(milestones=(50, ), max_skips=(3, 7)).skip_at(60, 100) == 7
    with pytest.raises(ValueError, match='len'):
        VOSFrameSkipHook(milestones=(0.1, ), max_skips=(1, ))


def test_davis_test_mode_whole_video(tmp_path):
    make_davis(str(tmp_path), split='val')
    ds = VOSDataset(str(tmp_path), split='val', test_mode=True, test_short_side=20)
    s = ds[0]
    assert s['inputs'].shape == (8, 3, 20, 28)  # shorter side 40 -> 20
    assert s['inputs'][0, 2, 0, 0] == 200  # RGB order
    meta = s['data_samples'].metainfo
    assert meta['ori_shape'] == (40, 56) and meta['init_frames'] == [0] and meta['num_objects'] == 2
    gt = s['data_samples'].gt_masks
    assert gt.shape == (8, 40, 56) and int(gt[0, 0, 0]) == 0  # void -> 0
    assert meta['frame_names'] == [f'{i:05d}' for i in range(8)]
    bin_ds = VOSDataset(str(tmp_path), split='val', test_mode=True, binary_masks=True,
                        test_short_side=None)
    s = bin_ds[1]
    assert s['inputs'].shape[-2:] == (40, 56) and int(s['data_samples'].gt_masks.max()) == 1


def test_youtube_layout(tmp_path):
    root = str(tmp_path)
    h, w = 24, 32
    for split in ('train', 'valid'):
        for i in range(0, 10):
            _write_frame(osp.join(root, split, 'JPEGImages', 'yt0', f'{5 * i:05d}.jpg'), h, w, i)
        with open(osp.join(root, split, 'meta.json'), 'w') as fh:
            json.dump({'videos': {'yt0': {'objects': {'1': {'category': 'x', 'frames': []}}}}}, fh)
    for i in range(0, 10, 2):  # annotated every other frame in train
        lab = np.zeros((h, w), np.uint8)
        lab[2:12, 2:12] = 1
        _write_label(osp.join(root, 'train', 'Annotations', 'yt0', f'{5 * i:05d}.png'), lab)
    first = np.zeros((h, w), np.uint8)
    first[2:12, 2:12] = 1
    _write_label(osp.join(root, 'valid', 'Annotations', 'yt0', '00000.png'), first)
    later = np.zeros((h, w), np.uint8)
    later[14:20, 14:20] = 2
    _write_label(osp.join(root, 'valid', 'Annotations', 'yt0', '00015.png'), later)

    train = VOSDataset(root, layout='youtube', split='train', crop_size=(16, 16), min_object_pixels=3)
    assert len(train.get_data_info(0)['frames']) == 5  # annotated frames only
    assert train[0]['inputs'].shape == (3, 3, 16, 16)
    valid = VOSDataset(root, layout='youtube', split='valid', test_mode=True, test_short_side=None)
    s = valid[0]
    assert s['inputs'].shape[0] == 10
    assert s['data_samples'].metainfo['init_frames'] == [0, 3]  # new object at frame 00015
    os.remove(osp.join(root, 'valid', 'meta.json'))  # falls back to listing the folders
    assert len(VOSDataset(root, layout='youtube', split='valid', test_mode=True)) == 1


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='ImageSets'):
        VOSDataset(str(tmp_path), split='train')
    with pytest.raises(ValueError, match='layout'):
        VOSDataset(str(tmp_path), layout='kitti')
    make_davis(str(tmp_path), videos=(('v0', 3), ))
    os.remove(osp.join(str(tmp_path), 'Annotations', '480p', 'v0', '00000.png'))
    with pytest.raises(FileNotFoundError, match='first frame'):
        VOSDataset(str(tmp_path), split='train')


def test_static_dataset(tmp_path):
    os.makedirs(tmp_path / 'images')
    os.makedirs(tmp_path / 'masks')
    for i in range(2):
        img = np.random.default_rng(i).integers(0, 255, (50, 60, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / 'images' / f'im{i}.jpg'), img)
        m = np.zeros((50, 60), np.uint8)
        m[10:40, 15:45] = 255
        cv2.imwrite(str(tmp_path / 'masks' / f'im{i}.png'), m)
    ds = StaticVOSDataset(str(tmp_path), crop_size=(32, 40), num_frames=3)
    assert len(ds) == 2
    s = ds[1]
    assert s['inputs'].shape == (3, 3, 32, 40)
    gt = s['data_samples'].gt_masks
    assert set(gt.unique().tolist()) == {0, 1} and s['data_samples'].num_objects == 1
    # the warps differ between frames (synthetic motion)
    assert not torch.equal(gt[0], gt[1]) or not torch.equal(gt[1], gt[2])
    os.remove(tmp_path / 'masks' / 'im0.png')
    with pytest.raises(FileNotFoundError, match='mask missing'):
        StaticVOSDataset(str(tmp_path))


def test_synthesized_dataset_is_readable(tmp_path):
    names = synthesize_moving_shapes(str(tmp_path), videos=('a', ), num_frames=4, size=(32, 48),
                                     split='val')
    ds = VOSDataset(str(tmp_path), split='val', test_mode=True, test_short_side=None)
    s = ds[0]
    assert names == ['a'] and s['inputs'].shape == (4, 3, 32, 48)
    assert set(s['data_samples'].gt_masks.unique().tolist()) == {0, 1, 2}
