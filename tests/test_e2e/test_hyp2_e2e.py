"""End-to-end HyP2: a tiny ImageClassifier + HashHead trained with mmengine's Runner on a tiny
multi-label image set drawn here (each label is a coloured shape), then Hamming-ranking evaluation;
and every HyP2 config builds."""
import copy
import glob
import math
import os.path as osp

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402

from mmkd_plugins.datasets.multilabel_hashing import write_hashing_list  # noqa: E402
from mmkd_plugins.evaluation.metrics.hashing import hashing_map, pack_bits  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'hyp2')
SIZE = 32


@MODELS.register_module(name='HyP2E2ETinyNet', force=True)
class TinyNet(nn.Module):
    """Two strided convs + global pooling -> (N, 16, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return (self.body(x), )


def _draw(labels, rng):
    """label 0: red square, 1: green disc, 2: blue horizontal bar, 3: yellow vertical bar,
    4: magenta cross; grey noisy background."""
    img = np.clip(rng.normal(110, 12, (SIZE, SIZE, 3)), 0, 255)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    if labels[0]:
        y, x = rng.integers(0, SIZE - 10, 2)
        img[y:y + 10, x:x + 10] = (230, 20, 20)
    if labels[1]:
        cy, cx = rng.integers(6, SIZE - 6, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 30] = (20, 220, 20)
    if labels[2]:
        y = rng.integers(0, SIZE - 5)
        img[y:y + 5, 2:SIZE - 2] = (20, 20, 230)
    if labels[3]:
        x = rng.integers(0, SIZE - 5)
        img[2:SIZE - 2, x:x + 5] = (230, 230, 20)
    if labels[4]:
        cy, cx = rng.integers(5, SIZE - 5, 2)
        img[cy - 5:cy + 6, cx - 1:cx + 2] = (230, 20, 230)
        img[cy - 1:cy + 2, cx - 5:cx + 6] = (230, 20, 230)
    return img.astype(np.uint8)


def _make_dataset(root, rng):
    from PIL import Image
    # singletons and two-label images (some of them disjoint: the pair term is active)
    subsets = [(1, 0, 0, 0, 0), (0, 1, 0, 0, 0), (0, 0, 1, 0, 0), (0, 0, 0, 1, 0), (0, 0, 0, 0, 1),
               (1, 1, 0, 0, 0), (0, 0, 1, 1, 0), (1, 0, 0, 0, 1), (0, 1, 1, 0, 0), (0, 0, 0, 1, 1)]
    counts = dict(train=60, query=15, database=45)
    files = dict(train='train.txt', query='test.txt', database='database.txt')
    (root / 'img').mkdir()
    for split, n in counts.items():
        names, labels = [], []
        for i in range(n):
            lab = np.array(subsets[(i + rng.integers(0, 10)) % 10])
            name = f'{split}_{i}.png'
            Image.fromarray(_draw(lab, rng)).save(root / 'img' / name)
            names.append(name)
            labels.append(lab)
        write_hashing_list(str(root / files[split]), names, np.stack(labels))


def _runner_cfg(root, work_dir, epochs):
    meta_keys = ('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'split')
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs', meta_keys=meta_keys)]
    val_loader = dict(
        batch_size=16, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='MultiLabelHashingDataset', data_root=str(root), data_prefix='img',
                     split=['query', 'database'], pipeline=pipeline))
    evaluator = dict(type='HashingMAP', topk=(10, 45), hamming_radius=2)
    return dict(
        default_scope='mmpretrain',
        work_dir=str(work_dir),
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3, std=[64.0] * 3,
                                   to_rgb=True),
            backbone=dict(type='HyP2E2ETinyNet'),
            neck=None,
            head=dict(type='HashHead', hash_bits=16, num_classes=5, in_channels=16,
                      loss=dict(type='HyP2Loss', beta=0.5))),
        train_dataloader=dict(
            batch_size=15, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(type='MultiLabelHashingDataset', data_root=str(root), data_prefix='img',
                         split='train', pipeline=[dict(type='LoadImageFromFile'),
                                                  dict(type='RandomFlip', prob=0.5),
                                                  dict(type='PackInputs', meta_keys=meta_keys)])),
        val_dataloader=val_loader,
        test_dataloader=copy.deepcopy(val_loader),
        val_evaluator=evaluator,
        test_evaluator=copy.deepcopy(evaluator),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4),
            paramwise_cfg=dict(custom_keys={'loss_module.proxies': dict(lr_mult=2.0)})),
        param_scheduler=dict(type='StepLR', by_epoch=True, step_size=10, gamma=0.5),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=epochs),
        val_cfg=dict(),
        test_cfg=dict(),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=10),
                           checkpoint=dict(type='CheckpointHook', interval=epochs)),
        randomness=dict(seed=0),
        log_level='WARNING',
    )


def test_hyp2_train_and_retrieval(tmp_path):
    from mmengine.runner import Runner
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    _make_dataset(tmp_path, rng)
    epochs = 30
    runner = Runner.from_cfg(Config(_runner_cfg(tmp_path, tmp_path / 'work', epochs)))
    before = runner.val()
    proxies_before = runner.model.head.loss_module.proxies.detach().clone()
    runner.train()
    after = runner.val()
    test = runner.test()
    assert osp.isfile(osp.join(str(tmp_path / 'work'), f'epoch_{epochs}.pth'))

    keys = {'hashing/mAP@10', 'hashing/mAP@45', 'hashing/precision@10', 'hashing/precision@45',
            'hashing/precision_r2', 'hashing/recall_r2'}
    assert keys <= set(after) and keys <= set(test)
    assert all(0.0 <= after[k] <= 1.0 and math.isfinite(after[k]) for k in keys)
    assert test['hashing/mAP@10'] == pytest.approx(after['hashing/mAP@10'])
    # the proxies were trained
    assert not torch.allclose(runner.model.head.loss_module.proxies.detach(), proxies_before)

    # chance level: random codes for the same labels
    db = runner.val_dataloader.dataset
    labels = torch.from_numpy(db.get_multi_hot()).bool()
    is_query = torch.tensor([s == 'query' for s in db.get_splits()])
    g = torch.Generator().manual_seed(0)
    chance = np.mean([
        hashing_map(pack_bits(torch.rand(int(is_query.sum()), 16, generator=g) < .5),
                    pack_bits(torch.rand(int((~is_query).sum()), 16, generator=g) < .5),
                    labels[is_query], labels[~is_query], topk=10) for _ in range(20)])
    print(f'mAP@10 before {before["hashing/mAP@10"]:.3f}, after {after["hashing/mAP@10"]:.3f}, '
          f'chance {chance:.3f}')
    assert after['hashing/mAP@10'] > chance + 0.1
    assert after['hashing/mAP@10'] > before['hashing/mAP@10']


def _hyp2_configs():
    return sorted(glob.glob(osp.join(CONFIG_DIR, 'hyp2_*.py')))


def _strip_init(model_cfg):
    model_cfg.backbone.pop('init_cfg', None)
    model_cfg.head.pop('init_cfg', None)
    model_cfg.head.pop('mlp_init_cfg', None)
    return model_cfg


def test_all_configs_load():
    paths = _hyp2_configs()
    assert len(paths) == 40
    for path in paths:
        cfg = Config.fromfile(path)
        head = cfg.model.head
        assert head.type == 'HashHead'
        assert f'-{head.hash_bits}bit' in osp.basename(path)
        assert cfg.val_dataloader.dataset.split == ['query', 'database']
        assert 'split' in cfg.val_dataloader.dataset.pipeline[-1].meta_keys
        assert cfg.val_evaluator.type == 'HashingMAP'
        assert cfg.custom_imports['imports'] == ['mmkd_plugins']


@pytest.mark.parametrize('name', ['alexnet_1xb100-100e_voc2007-64bit', 'resnet50_1xb100-100e_coco-16bit'])
def test_config_builds_and_runs(name):
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    cfg = Config.fromfile(osp.join(CONFIG_DIR, f'hyp2_{name}.py'))
    model = PRETRAIN_MODELS.build(_strip_init(cfg.model)).eval()
    bits, classes = cfg.model.head.hash_bits, cfg.model.head.num_classes
    assert model.head.loss_module.num_classes == classes
    from mmkd_plugins.models.losses.hyp2 import hyp2_margin
    assert model.head.loss_module.margin == hyp2_margin(bits, classes)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224), mode='predict')
    assert out[0].pred_hash_bits.shape == (bits // 8, )
