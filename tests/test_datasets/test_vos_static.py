"""Official SWEM static-image pre-training: paste composition, clip augmentation, TPS, the mixed
data set, and a short run of the static config's data pipeline through the Runner."""
import copy
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS
from mmengine.runner import Runner

from mmkd_plugins.datasets.vos import IM_MEAN
from mmkd_plugins.datasets.vos_static import (PackVOSClip, RandomClipTPS, StaticClipAugment,
                                              StaticPasteDataset, compose_frame, object_box,
                                              paste_objects_clip, place_object, random_centre)
from tests.test_models.test_vos.vos_helpers import single_thread, tiny_swem_cfg

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
STATIC_CFG = osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-300k_static-384.py')


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()


def _canvas(h, w, value, box):
    img = np.zeros((h, w, 3), np.float32)
    m = np.zeros((h, w), np.float32)
    y0, x0, y1, x1 = box
    img[y0:y1, x0:x1] = value
    m[y0:y1, x0:x1] = 1
    return img, m


# ---------------------------------------------------------------- pure composition
def test_compose_frame_later_objects_occlude():
    bg = np.full((12, 12, 3), 50, np.float32)
    a = _canvas(12, 12, 100, (2, 2, 8, 8))
    b = _canvas(12, 12, 200, (5, 5, 10, 10))
    img, lab = compose_frame(bg, [a, b], [0, 1])  # b pasted last: b on top
    assert (lab[5:8, 5:8] == 2).all() and (img[5:8, 5:8] == 200).all()
    assert (lab[2:5, 2:8] == 1).all() and (img[2:5, 2:8] == 100).all()
    assert (lab[8:10, 5:10] == 2).all() and lab[0, 0] == 0 and (img[0, 0] == 50).all()
    img, lab = compose_frame(bg, [a, b], [1, 0])  # a on top
    assert (lab[5:8, 5:8] == 1).all() and (img[5:8, 5:8] == 100).all()
    assert (lab[8:10, 8:10] == 2).all()
    # labels and pixels agree everywhere
    for value, label in ((50, 0), (100, 1), (200, 2)):
        assert np.array_equal(lab == label, (img[..., 0] == value))


def test_place_object_and_centre():
    obj = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3) + 1
    m = np.ones((4, 6), np.float32)
    m[0, 0] = 0
    img, mask = place_object(obj, m, (10, 10), (5, 5))  # top-left (3, 2)
    assert mask.sum() == 23 and mask[3, 2] == 0 and mask[3, 3] == 1
    np.testing.assert_array_equal(img[3:7, 2:8], obj * m[..., None])
    img, mask = place_object(obj, m, (10, 10), (0, 0))  # top-left (-2, -3): only the lower right
    np.testing.assert_array_equal(mask[:2, :3], m[2:, 3:])
    np.testing.assert_array_equal(img[:2, :3], obj[2:, 3:])
    assert mask[2:].sum() == 0 and mask[:, 3:].sum() == 0
    rng = np.random.default_rng(0)
    centres = np.array([random_centre((4, 6), (10, 20), rng) for _ in range(300)])
    assert centres[:, 0].min() == 2 and centres[:, 0].max() == 8  # [s//2, S - s//2]
    assert centres[:, 1].min() == 3 and centres[:, 1].max() == 17
    assert random_centre((30, 6), (10, 20), rng)[0] == 15  # larger than the frame: fixed
    assert object_box(np.zeros((3, 3))) is None and object_box(m) == (0, 0, 4, 6)


def test_paste_objects_clip_composition():
    """Every frame: the first image's background with its object painted in the object's mean
    colour, and the objects of both images pasted (solid colours, so each labelled pixel shows its
    object's colour); sizes and places change from frame to frame."""
    h, w = 48, 64
    img0 = np.full((h, w, 3), 30, np.uint8)
    img0[10:30, 10:30] = (120, 60, 90)
    m0 = np.zeros((h, w), np.uint8)
    m0[10:30, 10:30] = 255  # 0/255 masks are accepted
    img1 = np.full((40, 40, 3), 5, np.uint8)
    img1[5:25, 8:38] = (220, 180, 10)
    m1 = np.zeros((40, 40), np.uint8)
    m1[5:25, 8:38] = 1
    frames, labels = paste_objects_clip([img0, img1], [m0, m1], 3, np.random.default_rng(3))
    assert len(frames) == 3 and labels.shape == (3, h, w)
    background = np.full((h, w, 3), 30, np.uint8)
    background[10:30, 10:30] = (120, 60, 90)  # mean colour of a solid object = its colour
    colours = {1: (120, 60, 90), 2: (220, 180, 10)}
    for f, lab in zip(frames, labels):
        assert set(np.unique(lab)) <= {0, 1, 2} and (lab == 2).any()
        np.testing.assert_array_equal(f[lab == 0], background[lab == 0])
        for k, c in colours.items():
            if (lab == k).any():
                assert np.abs(f[lab == k].astype(int) - c).max() <= 1
        # object 2 area: 0.16-0.81 of its 20x30 box (rounding), minus what is cut off / occluded
        assert (lab == 2).sum() <= 0.81 * 600 + 60
    assert not np.array_equal(labels[0], labels[1]) or not np.array_equal(labels[1], labels[2])
    one, lab1 = paste_objects_clip([img0], [m0], 2, np.random.default_rng(0))
    assert np.array_equal(one[0], img0) and np.array_equal(lab1[1], (m0 > 0).astype(np.int64))
    with pytest.raises(ValueError, match='as many masks'):
        paste_objects_clip([img0, img1], [m0], 3, np.random.default_rng(0))


# ---------------------------------------------------------------- transforms
def test_static_clip_augment_identity_and_sizes():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (50, 70, 3)).astype(np.uint8) for _ in range(3)]
    labels = np.zeros((3, 50, 70), np.int64)
    labels[:, 10:30, 20:50] = 1
    off = StaticClipAugment(clip_scale=(1, 1), flip_prob=0, clip_jitter=(0, 0, 0, 0), grayscale_prob=0,
                            degrees=0, frame_scale=(1, 1), shear=0, short_side=50, crop_size=(50, 70),
                            frame_jitter=(0, 0, 0))
    out = off(dict(frames=list(frames), labels=labels.copy(), rng=rng))
    for a, b in zip(out['frames'], frames):
        assert np.abs(a.astype(int) - b).max() <= 1
    np.testing.assert_array_equal(out['labels'], labels)
    on = StaticClipAugment(short_side=24, crop_size=(24, 24))
    out = on(dict(frames=list(frames), labels=labels.copy(), rng=rng))
    assert [f.shape for f in out['frames']] == [(24, 24, 3)] * 3 and out['labels'].shape == (3, 24, 24)
    assert set(np.unique(out['labels'])) <= {0, 1}
    grey = StaticClipAugment(grayscale_prob=1.0, frame_jitter=(0, 0, 0), degrees=0, frame_scale=(1, 1),
                             shear=0, short_side=24, crop_size=(24, 24))  # no per-frame fill
    out = grey(dict(frames=list(frames), labels=labels.copy(), rng=rng))
    assert all((f == f[..., :1]).all() for f in out['frames'])  # a grey clip
    # small frames are padded with IM_MEAN (torchvision pad_if_needed)
    pad = StaticClipAugment(clip_scale=(1, 1), flip_prob=0, clip_jitter=(0, 0, 0, 0), degrees=0,
                            frame_scale=(1, 1), shear=0, short_side=10, crop_size=(30, 30),
                            frame_jitter=(0, 0, 0), grayscale_prob=0)
    out = pad(dict(frames=list(frames), labels=labels.copy(), rng=rng))
    assert out['frames'][0].shape == (30, 30, 3)
    assert (out['frames'][0].reshape(-1, 3) == IM_MEAN).all(1).any()


def test_random_clip_tps_and_pack():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 40, 3)).astype(np.uint8) for _ in range(3)]
    labels = np.zeros((3, 32, 40), np.int64)
    labels[:, 8:20, 10:30] = 1
    labels[:, 22:30, 2:12] = 3
    same = RandomClipTPS(noise=0.0)(dict(frames=list(frames), labels=labels.copy(), rng=rng))
    np.testing.assert_array_equal(same['labels'], labels)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(same['frames'], frames)) <= 1
    warped = RandomClipTPS(noise=0.3)(dict(frames=list(frames), labels=labels.copy(), rng=rng))
    assert not np.array_equal(warped['labels'], labels)
    packed = PackVOSClip(max_objects=1)(dict(frames=list(frames), labels=labels, rng=rng, name='x'))
    sample = packed['data_samples']
    assert packed['inputs'].shape == (3, 3, 32, 40) and sample.num_objects == 1
    assert set(sample.gt_masks.unique().tolist()) == {0, 1}
    empty = PackVOSClip()(dict(frames=list(frames), labels=np.zeros_like(labels), rng=rng))
    assert empty['data_samples'].num_objects == 0  # official: kept, no retry


# ---------------------------------------------------------------- data set
def _write_static(root, subset, n, size=(60, 80), seed=0, ext='.jpg'):
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'JPEGImages', subset), exist_ok=True)
    os.makedirs(osp.join(root, 'Annotations', subset), exist_ok=True)
    for i in range(n):
        img = np.full(size + (3, ), rng.integers(0, 255, 3), np.uint8)
        m = np.zeros(size, np.uint8)
        y, x = rng.integers(5, size[0] // 2), rng.integers(5, size[1] // 2)
        m[y:y + size[0] // 3, x:x + size[1] // 3] = 255
        img[m > 0] = rng.integers(0, 255, 3)
        cv2.imwrite(osp.join(root, 'JPEGImages', subset, f'{subset}{i}{ext}'), img)
        cv2.imwrite(osp.join(root, 'Annotations', subset, f'{subset}{i}.png'), m)


def _pipeline(size=32):
    return [dict(type='PasteObjectsClip', num_frames=3),
            dict(type='StaticClipAugment', short_side=size, crop_size=(size, size)),
            dict(type='RandomClipTPS', noise=0.3),
            dict(type='PackVOSClip', max_objects=2)]


def test_static_paste_dataset_mix_and_samples(tmp_path):
    root = str(tmp_path)
    _write_static(root, 'A', 3, seed=0)
    _write_static(root, 'B', 2, seed=1, ext='.png')
    ds = StaticPasteDataset(root, subsets=['A', 'B'], ratios=[5, 1], pipeline=_pipeline())
    assert len(ds) == 5 * 3 + 2 and len(ds.pool) == 5
    names = [ds.get_data_info(i)['name'] for i in range(len(ds))]
    assert names.count('A/A0') == 5 and names.count('B/B1') == 1
    for i in (0, len(ds) - 1):
        s = ds[i]
        assert s['inputs'].shape == (3, 3, 32, 32) and s['inputs'].dtype == torch.uint8
        k = s['data_samples'].num_objects
        assert 0 <= k <= 2 and int(s['data_samples'].gt_masks.max()) <= k
    with pytest.raises(ValueError, match='ratios'):
        StaticPasteDataset(root, subsets=['A', 'B'], ratios=[5], pipeline=_pipeline())
    os.remove(osp.join(root, 'Annotations', 'B', 'B0.png'))
    with pytest.raises(FileNotFoundError, match='mask missing'):
        StaticPasteDataset(root, subsets=['A', 'B'], pipeline=_pipeline())


def test_static_config_is_official_and_trains_through_runner(tmp_path):
    """The static config (official recipe: 5:5:1:1:1, paste of 2 images, 384, TPS 0.3, 300k with the
    decay at 150k) runs its data pipeline, scaled to 32x32 images, for 2 iterations of a tiny SWEM."""
    cfg = Config.fromfile(STATIC_CFG)
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    assert ds_cfg.type == 'StaticPasteDataset' and ds_cfg.ratios == [5, 5, 1, 1, 1]
    assert [t.type for t in ds_cfg.pipeline] == ['PasteObjectsClip', 'StaticClipAugment',
                                                 'RandomClipTPS', 'PackVOSClip']
    assert cfg.train_cfg.max_iters == 300000 and cfg.param_scheduler[0].milestones == [150000]
    root = str(tmp_path / 'static')
    for i, name in enumerate(ds_cfg.subsets):
        _write_static(root, name, 2, size=(40, 52), seed=i)
    ds_cfg.data_root = root
    ds_cfg.pipeline[1].update(short_side=32, crop_size=(32, 32))
    runner = Runner(
        model=tiny_swem_cfg(), work_dir=str(tmp_path / 'work'),
        train_dataloader=dict(batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler'),
                              collate_fn=dict(type='pseudo_collate'), dataset=ds_cfg),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=2),
        optim_wrapper=copy.deepcopy(cfg.optim_wrapper), param_scheduler=copy.deepcopy(cfg.param_scheduler),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        log_processor=dict(by_epoch=False), randomness=dict(seed=0), log_level='WARNING')
    assert len(runner.train_dataloader.dataset) == 2 * (5 + 5 + 1 + 1 + 1)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    assert osp.isfile(str(tmp_path / 'work' / 'iter_2.pth'))
    after = runner.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith('decoder'))
    scalars = runner.message_hub.log_scalars
    assert np.isfinite(scalars['train/loss'].current())
    built = DATASETS.build(ds_cfg)
    assert built[0]['inputs'].shape == (3, 3, 32, 32)
