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
from mmkd_plugins.engine.hooks.vos_frame_skip import swem_skip
import mmkd_plugins.datasets.vos as vos_module
from mmkd_plugins.datasets.vos import (IM_MEAN, StaticVOSDataset, VOSDataset, affine_matrix,
                                       color_jitter, davis_palette, read_mask, swem_clip_indices,
                                       synthesize_moving_shapes, tps_apply, tps_fit, tps_grid,
                                       write_mask)


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


def _gaps_ok(idx, skip):
    """Clip frames are monotonic (forward or reversed) with gaps of 1 .. skip + 1."""
    d = [b - a for a, b in zip(idx, idx[1:])]
    return (all(x > 0 for x in d) or all(x < 0 for x in d)) and all(abs(x) <= skip + 1 for x in d)


def test_davis_train_clips(tmp_path):
    make_davis(str(tmp_path))
    ds = VOSDataset(str(tmp_path), split='train', crop_size=(32, 32), num_frames=3, max_objects=1,
                    min_object_pixels=5, max_skip=2)
    assert len(ds) == 2 and ds.cur_skip == 2  # no hook: the dataset's max_skip
    for _ in range(5):
        s = ds[0]
        assert s['inputs'].shape == (3, 3, 32, 32) and s['inputs'].dtype == torch.uint8
        gt = s['data_samples'].gt_masks
        assert gt.shape == (3, 32, 32) and gt.dtype == torch.long
        assert s['data_samples'].num_objects == 1 and set(gt.unique().tolist()) <= {0, 1}
        assert (gt[0] == 1).sum() >= 5  # the kept object is visible in the first frame
        idx = [int(n) for n in s['data_samples'].frame_names]
        assert _gaps_ok(idx, ds.cur_skip), idx
    ds2 = VOSDataset(str(tmp_path), split='train', crop_size=(32, 32), max_objects=2)
    s = ds2[1]
    assert s['data_samples'].num_objects in (1, 2)
    assert int(s['data_samples'].gt_masks.max()) <= 2  # void 255 never survives


def test_swem_clip_indices_properties():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, skip, t = int(rng.integers(1, 30)), int(rng.integers(0, 8)), int(rng.integers(2, 5))
        idx = swem_clip_indices(n, t, skip, rng)
        assert len(idx) == t and idx == sorted(idx) and all(0 <= i < n for i in idx)
        if n >= t:
            assert len(set(idx)) == t and _gaps_ok(idx, skip), (n, t, skip, idx)
    # skip 0: consecutive frames only; every anchor position reachable
    firsts = {swem_clip_indices(10, 3, 0, rng)[0] for _ in range(300)}
    assert firsts == set(range(8))
    assert all(np.diff(swem_clip_indices(10, 3, 0, rng)).tolist() == [1, 1] for _ in range(50))
    # larger skips give larger gaps
    gaps = [max(np.diff(swem_clip_indices(100, 3, 20, rng))) for _ in range(300)]
    assert max(gaps) > 10 and max(gaps) <= 21


def test_time_reversal(tmp_path):
    make_davis(str(tmp_path))
    kw = dict(split='train', crop_size=(32, 32), max_skip=1, max_objects=1)
    fwd = VOSDataset(str(tmp_path), reverse_prob=0.0, **kw)
    bwd = VOSDataset(str(tmp_path), reverse_prob=1.0, **kw)
    for _ in range(5):
        f = [int(n) for n in fwd[0]['data_samples'].frame_names]
        b = [int(n) for n in bwd[0]['data_samples'].frame_names]
        assert f == sorted(f) and b == sorted(b, reverse=True)
    half = VOSDataset(str(tmp_path), reverse_prob=0.5, **kw)
    orders = {tuple(np.sign(np.diff([int(n) for n in half[0]['data_samples'].frame_names])))
              for _ in range(40)}
    assert orders == {(1, 1), (-1, -1)}


def test_cur_skip_is_shared_and_curricula(tmp_path):
    make_davis(str(tmp_path))
    ds = VOSDataset(str(tmp_path), split='train', max_skip=25)
    assert ds.max_skip == 25 and ds.cur_skip == 25
    ds.cur_skip = 0
    for _ in range(5):
        idx = [int(n) for n in ds[0]['data_samples'].frame_names]
        assert all(abs(b - a) == 1 for a, b in zip(idx, idx[1:]))
    assert pickle.loads(pickle.dumps(ds)).cur_skip == 0
    with pytest.raises(ValueError, match='cur_skip'):
        ds.cur_skip = -1
    # official schedule, worked by hand for 1000 iterations: ramp 0 -> peak over the first 100,
    # flat, down to floor(0.4 peak) between 800 and 900
    assert [swem_skip(i, 1000, 25) for i in (0, 3, 4, 40, 99, 100, 800, 801, 850, 899, 900, 999)] \
        == [0, 0, 1, 10, 24, 25, 25, 25, 25 - 7, 25 - 14, 10, 10]
    assert [swem_skip(i, 1000, 5) for i in (0, 20, 100, 800, 834, 867, 900)] == [0, 1, 5, 5, 4, 3, 2]
    hook = VOSFrameSkipHook()
    assert hook.skip_at(850, 1000, 25) == 18 and hook.skip_at(850, 1000, 5) == 4
    steps = VOSFrameSkipHook(policy='steps', milestones=(0.1, 0.3, 0.8), max_skips=(10, 15, 5, 5))
    assert [steps.skip_at(i, 100) for i in (0, 9, 10, 29, 30, 80, 99)] == [10, 10, 15, 15, 5, 5, 5]
    assert VOSFrameSkipHook(policy='steps', milestones=(50, ), max_skips=(3, 7)).skip_at(60, 100) == 7
    with pytest.raises(ValueError, match='len'):
        VOSFrameSkipHook(policy='steps', milestones=(0.1, ), max_skips=(1, ))
    with pytest.raises(ValueError, match='steps'):
        VOSFrameSkipHook(max_skips=(1, 2))


def test_frame_skip_hook_sets_each_dataset(tmp_path):
    """Per-dataset curricula through ConcatDataset / RepeatDataset wrappers."""
    from mmengine.dataset import ConcatDataset
    make_davis(str(tmp_path))
    davis = VOSDataset(str(tmp_path), split='train', max_skip=25)
    yt = VOSDataset(str(tmp_path), split='train', max_skip=5)
    concat = ConcatDataset([yt, dict(type='RepeatDataset', times=5, dataset=davis)])
    davis = concat.datasets[1].dataset

    class _Runner:
        iter, max_iters = 850, 1000
        train_dataloader = type('L', (), dict(dataset=concat))()
    VOSFrameSkipHook().before_train_iter(_Runner(), 0)
    assert (davis.cur_skip, yt.cur_skip) == (18, 4)


def test_subset_file(tmp_path):
    make_davis(str(tmp_path), videos=(('v0', 4), ('v1', 4), ('v2', 2)))
    (tmp_path / 'keep.txt').write_text('v1\nv2\n')
    ds = VOSDataset(str(tmp_path), split='train', subset_file='keep.txt')
    assert [d['video'] for d in ds.data_list] == ['v1']  # v2 has fewer than 3 frames (official)
    with pytest.raises(FileNotFoundError, match='yv_subset'):
        VOSDataset(str(tmp_path), split='train', subset_file='missing.txt')


def test_color_jitter_matches_direct():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    f = img.astype(np.float64)

    def gray(x):
        return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    b = np.clip(f * 1.1, 0, 255)
    c = np.clip(gray(b).mean() + 0.9 * (b - gray(b).mean()), 0, 255)
    s = np.clip(gray(c)[..., None] + 1.2 * (c - gray(c)[..., None]), 0, 255)
    out = color_jitter(img, (1.1, 0.9, 1.2), (0, 1, 2))
    assert np.abs(out.astype(np.float64) - np.round(s)).max() <= 1
    # another order gives another result; identity factors change nothing
    assert not np.array_equal(out, color_jitter(img, (1.1, 0.9, 1.2), (2, 1, 0)))
    assert np.array_equal(color_jitter(img, (1.0, 1.0, 1.0), (0, 1, 2)), img)


def test_affine_and_tps_warps():
    mat = affine_matrix(15.0, 0.0, (9, 13))
    np.testing.assert_allclose(mat @ np.array([6.0, 4.0, 1.0]), [6.0, 4.0], atol=1e-9)  # centre
    np.testing.assert_allclose(np.rad2deg(np.arctan2(mat[1, 0], mat[0, 0])), 15.0)
    sh = affine_matrix(0.0, 10.0, (9, 13))
    np.testing.assert_allclose(sh[:, :2], [[1.0, np.tan(np.deg2rad(10.0))], [0.0, 1.0]])
    rng = np.random.default_rng(0)
    mx, my = tps_grid((12, 16), 4, 0.0, rng)  # no noise: identity
    yy, xx = np.mgrid[0:12, 0:16]
    np.testing.assert_allclose(mx, xx, atol=1e-4)
    np.testing.assert_allclose(my, yy, atol=1e-4)
    mx, my = tps_grid((48, 48), 4, 0.25, rng)
    disp = np.hypot(mx - np.mgrid[0:48, 0:48][1], my - np.mgrid[0:48, 0:48][0])
    assert disp[16:32, 16:32].max() > 0.3 and disp[16:32, 16:32].max() < 0.25 * 48 / 2 + 1
    assert disp[0, 0] < 0.5 and disp[-1, -1] < 0.5  # corners stay


def test_tps_pure_functions():
    """tps_fit / tps_apply: identity control points give the identity map; the spline interpolates
    its control points, so a moved control point lands exactly on its target; the border points
    held still stay; a translation of all points translates everything (affine part)."""
    lin = np.linspace(-1, 1, 4)
    gx, gy = np.meshgrid(lin, lin)
    ctrl = np.stack([gx.ravel(), gy.ravel()], 1)
    pts = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(tps_apply(tps_fit(ctrl, ctrl), ctrl, pts), pts, atol=1e-10)
    dst = ctrl.copy()
    moved = 5  # an inner control point, (x, y) = (-1/3, -1/3)
    dst[moved] += (0.1, -0.05)
    coef = tps_fit(ctrl, dst)
    np.testing.assert_allclose(tps_apply(coef, ctrl, ctrl[moved:moved + 1])[0], [-1 / 3 + 0.1,
                                                                                -1 / 3 - 0.05])
    np.testing.assert_allclose(tps_apply(coef, ctrl, ctrl[[0, 3, 12, 15]]), ctrl[[0, 3, 12, 15]],
                               atol=1e-10)
    near = tps_apply(coef, ctrl, np.array([[-1 / 3 + 0.02, -1 / 3]]))[0] - (-1 / 3 + 0.02, -1 / 3)
    assert 0.05 < near[0] < 0.1 and -0.05 < near[1] < 0  # a nearby point follows partly
    shift = tps_apply(tps_fit(ctrl, ctrl + (0.2, -0.1)), ctrl, pts)
    np.testing.assert_allclose(shift, pts + (0.2, -0.1), atol=1e-10)
    with pytest.raises(ValueError, match='K >= 3'):
        tps_fit(ctrl[:2], ctrl[:2])


def _make_objectless_davis(root, name='empty', t=5):
    for i in range(t):
        _write_frame(osp.join(root, 'JPEGImages', '480p', name, f'{i:05d}.jpg'), 24, 32, 10 * i)
        _write_label(osp.join(root, 'Annotations', '480p', name, f'{i:05d}.png'),
                     np.zeros((24, 32), np.uint8))
    os.makedirs(osp.join(root, 'ImageSets', '2017'), exist_ok=True)
    with open(osp.join(root, 'ImageSets', '2017', 'train.txt'), 'w') as fh:
        fh.write(name + '\n')


def test_video_without_objects_official_empty_clip(tmp_path, monkeypatch):
    """Default (official video_dataset.py): after max_retries=5 draws without an object the clip is
    trained on with one empty object; a warning names the video once (per worker); the earlier
    behaviour (an error) is on_no_object='raise'."""
    _make_objectless_davis(str(tmp_path))
    logged = []
    monkeypatch.setattr(vos_module, 'print_log', lambda msg, **kw: logged.append((msg, kw)))
    ds = VOSDataset(str(tmp_path), split='train', crop_size=(24, 32))
    assert (ds.max_retries, ds.on_no_object) == (5, 'empty')
    draws = []
    real = vos_module.swem_clip_indices
    monkeypatch.setattr(vos_module, 'swem_clip_indices', lambda *a: draws.append(1) or real(*a))
    for _ in range(3):
        s = ds[0]
        assert s['data_samples'].num_objects == 1
        assert s['data_samples'].gt_masks.shape == (3, 24, 32)
        assert int(s['data_samples'].gt_masks.max()) == 0
    assert len(draws) == 15  # 5 draws per sample
    assert len(logged) == 1 and 'empty' in logged[0][0] and logged[0][1]['level'] == 30
    strict = VOSDataset(str(tmp_path), split='train', crop_size=(24, 32), on_no_object='raise',
                        max_retries=2)
    with pytest.raises(RuntimeError, match='no object .* 2 clips of video empty'):
        strict[0]
    with pytest.raises(ValueError, match='on_no_object'):
        VOSDataset(str(tmp_path), split='train', on_no_object='skip')


def test_per_frame_augmentation(tmp_path):
    """Frames of a clip of a static video differ (per-frame affine / TPS); the affine border is
    filled with IM_MEAN; with all augmentations off the crop of a still video is identical."""
    make_davis(str(tmp_path), videos=(('v0', 6), ))
    kw = dict(split='train', crop_size=(40, 56), crop_scale=(1.0, 1.0), max_objects=2,
              flip_prob=0.0, reverse_prob=0.0)
    off = VOSDataset(str(tmp_path), clip_jitter=(0, 0, 0), grayscale_prob=0.0,
                     frame_jitter=(0, 0, 0), affine_degrees=0, affine_shear=0, tps_prob=0.0, **kw)
    s = off[0]
    assert torch.equal(s['data_samples'].gt_masks[1][22:35, 30:50],
                       s['data_samples'].gt_masks[2][22:35, 30:50])  # object 2 does not move
    on = VOSDataset(str(tmp_path), tps_prob=0.0, frame_jitter=(0, 0, 0), clip_jitter=(0, 0, 0),
                    **kw)
    seen_fill = False
    for _ in range(10):
        s = on[0]
        gt = s['data_samples'].gt_masks
        assert not torch.equal(gt[0], gt[1]) or not torch.equal(gt[1], gt[2])
        corner = s['inputs'][:, :, 0, 0]  # (T, 3)
        seen_fill |= bool((corner == torch.tensor(IM_MEAN, dtype=torch.uint8)).all(1).any())
    assert seen_fill


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


def test_inference_frame_sizes(tmp_path):
    make_davis(str(tmp_path), split='val', videos=(('v0', 3), ))
    davis = VOSDataset(str(tmp_path), split='val', test_mode=True, test_size=(24, 40),
                       test_interpolation='bicubic')
    s = davis[0]
    assert s['inputs'].shape == (3, 3, 24, 40)  # fixed size (official DAVIS: 480x864)
    assert s['data_samples'].metainfo['ori_shape'] == (40, 56)
    yt = VOSDataset(str(tmp_path), split='val', test_mode=True, test_short_side=480,
                    test_size_divisor=16)
    # official get_suit_size: shorter side min(480, h), rounded to the nearest multiple of 16
    # (halves up), the other side scaled then rounded; never enlarged
    assert yt.test_frame_size(720, 1280) == (480, 848)  # 1280 * 480 / 720 = 853 -> 848
    assert yt.test_frame_size(360, 640) == (368, 640)  # 360 = 22.5 * 16 -> 368, not enlarged
    assert yt.test_frame_size(1280, 720) == (848, 480)
    assert yt.test_frame_size(40, 56) == (48, 64)
    plain = VOSDataset(str(tmp_path), split='val', test_mode=True, test_short_side=20)
    assert plain.test_frame_size(40, 56) == (20, 28)
    with pytest.raises(ValueError, match='interpolation'):
        VOSDataset(str(tmp_path), split='val', test_mode=True, test_interpolation='area')


def test_youtube_valid_all_frames(tmp_path):
    """Every frame of valid_all_frames is read, annotations and the written-frame list come from
    valid; frames before the first annotation are skipped (official)."""
    root = str(tmp_path)
    h, w = 24, 32
    for i in range(0, 21):
        _write_frame(osp.join(root, 'valid_all_frames', 'JPEGImages', 'yt0', f'{i:05d}.jpg'), h, w, i)
    for i in range(0, 21, 5):
        _write_frame(osp.join(root, 'valid', 'JPEGImages', 'yt0', f'{i:05d}.jpg'), h, w, i)
    with open(osp.join(root, 'valid', 'meta.json'), 'w') as fh:
        json.dump({'videos': {'yt0': {'objects': {}}}}, fh)
    lab = np.zeros((h, w), np.uint8)
    lab[2:12, 2:12] = 1
    _write_label(osp.join(root, 'valid', 'Annotations', 'yt0', '00005.png'), lab)
    lab2 = np.zeros((h, w), np.uint8)
    lab2[14:20, 14:20] = 2
    _write_label(osp.join(root, 'valid', 'Annotations', 'yt0', '00010.png'), lab2)
    ds = VOSDataset(root, layout='youtube', split='valid', frames_split='valid_all_frames',
                    test_mode=True, test_short_side=None)
    s = ds[0]
    meta = s['data_samples'].metainfo
    assert meta['frame_names'] == [f'{i:05d}' for i in range(5, 21)]  # starts at the 1st annotation
    assert s['inputs'].shape[0] == 16 and meta['init_frames'] == [0, 5]
    assert meta['save_frames'] == [f'{i:05d}' for i in range(0, 21, 5)]
    plain = VOSDataset(root, layout='youtube', split='valid', test_mode=True, test_short_side=None)
    assert plain[0]['inputs'].shape[0] == 4 and 'save_frames' not in plain[0]['data_samples']
