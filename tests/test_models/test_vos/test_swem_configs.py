"""The SWEM configs parse, build the paper-sized model (mmpretrain ResNet-50/18) and their datasets."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS
from mmengine.structures import BaseDataElement

from mmkd_plugins.datasets.vos import synthesize_moving_shapes
from tests.test_models.test_vos.vos_helpers import single_thread

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', 'swem', '*.py'))
                 if osp.basename(p) != 'recipes.py')  # the recipe record, not a config
has_mmpretrain = __import__('importlib').util.find_spec('mmpretrain') is not None


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()


def test_configs_exist_and_parse():
    names = {osp.basename(c) for c in CONFIGS}
    assert {'swem_r50_8xb1-150k_davis17-ytvos19-384.py', 'swem_r50_8xb1-150k_davis17-384.py',
            'swem_r50_8xb1-300k_static-384.py'} <= names
    for path in CONFIGS:
        cfg = Config.fromfile(path)
        assert cfg.custom_imports['imports'] == ['mmkd_plugins']
        assert cfg.model.memory.num_bases == 128 and cfg.model.memory.top_l == 64
        assert cfg.optim_wrapper.optimizer.lr == 2e-5
        assert cfg.model.key_backbone.norm_eval and cfg.model.key_backbone.norm_cfg.requires_grad
    main = Config.fromfile(osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-150k_davis17-ytvos19-384.py'))
    yt, davis_rep = main.train_dataloader.dataset.datasets
    assert davis_rep.type == 'RepeatDataset' and davis_rep.times == 5
    assert (davis_rep.dataset.max_skip, yt.max_skip) == (25, 5)  # official per-dataset peaks
    assert yt.subset_file == 'yv_subset.txt' and main.custom_hooks[0].policy == 'swem'
    assert main.val_dataloader.dataset.test_size == (480, 864)
    ytt = main.ytvos_test_dataloader.dataset
    assert (ytt.frames_split, ytt.test_short_side, ytt.test_size_divisor) == ('valid_all_frames', 480, 16)


def _torchvision_like_checkpoint(depth: int, path: str, seed: int) -> dict:
    """A file shaped like torchvision's ImageNet ResNet checkpoint (all keys incl. layer4 / fc, RGB
    conv1), holding distinct random values."""
    import torchvision
    net = getattr(torchvision.models, f'resnet{depth}')(weights=None)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in net.state_dict().items():
        if not v.dtype.is_floating_point:
            state[k] = v.clone() + 7
        elif k.endswith('running_var'):
            state[k] = torch.rand(v.shape, generator=g) + 0.5  # a variance is positive
        elif v.dim() == 4:  # conv: He-scaled, so that 50 random layers stay finite
            state[k] = torch.randn(v.shape, generator=g) * (2 / v[0].numel()) ** 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.1
    torch.save(state, path)
    return state


@pytest.mark.skipif(not has_mmpretrain, reason='mmpretrain not installed')
def test_main_config_starts_from_imagenet_weights_and_trains(tmp_path):
    """The main config with its two ImageNet references pointed at local torchvision-shaped files:
    init_weights() loads every backbone tensor; the 5-channel conv1 keeps the RGB filters and gets
    orthogonal extra channels (official mod_resnet); BN statistics stay frozen in training while
    the BN affine parameters are trainable (official set_bn_eval); one loss step runs."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-150k_davis17-ytvos19-384.py'))
    model_cfg = copy.deepcopy(cfg.model)
    r50 = _torchvision_like_checkpoint(50, str(tmp_path / 'r50.pth'), 1)
    r18 = _torchvision_like_checkpoint(18, str(tmp_path / 'r18.pth'), 2)
    assert model_cfg.key_backbone.init_cfg.checkpoint == 'torchvision://resnet50'
    assert model_cfg.value_backbone.init_cfg.checkpoint == 'torchvision://resnet18'
    model_cfg.key_backbone.init_cfg.checkpoint = str(tmp_path / 'r50.pth')
    model_cfg.value_backbone.init_cfg.checkpoint = str(tmp_path / 'r18.pth')
    model_cfg['memory']['num_bases'] = 8
    model = MODELS.build(model_cfg)
    model.init_weights()
    key_state = model.key_encoder.backbone.state_dict()
    covered = [k for k in r50 if k in key_state]
    assert len(covered) > 200 and all(torch.equal(key_state[k], r50[k]) for k in covered), \
        [k for k in covered if not torch.equal(key_state[k], r50[k])][:5]
    val_state = model.value_encoder.backbone.state_dict()
    covered = [k for k in r18 if k in val_state and k != 'conv1.weight']
    assert len(covered) > 60 and all(torch.equal(val_state[k], r18[k]) for k in covered)
    w = val_state['conv1.weight']
    assert w.shape == (64, 5, 7, 7) and torch.equal(w[:, :3], r18['conv1.weight'])
    extra = w[:, 3:].reshape(64, -1)  # orthogonal_: rows orthonormal (64 <= 2 * 49)
    torch.testing.assert_close(extra @ extra.T, torch.eye(64), atol=1e-4, rtol=0)

    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)  # running statistics frozen
    assert all(m.weight.requires_grad and m.bias.requires_grad for m in bns)  # affine trained
    before = model.key_encoder.backbone.bn1.running_mean.clone()
    frames = torch.randint(0, 255, (1, 3, 3, 32, 32), dtype=torch.uint8)
    lab = torch.zeros(3, 32, 32, dtype=torch.long)
    lab[:, 5:20, 5:20] = 1
    data = model.data_preprocessor(dict(inputs=list(frames), data_samples=[BaseDataElement(
        gt_masks=lab, metainfo=dict(num_objects=1))]), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.key_encoder.backbone.bn1.weight.grad is not None
    assert torch.equal(model.key_encoder.backbone.bn1.running_mean, before)
    assert model.fusion.feat.in_channels == 512 + 512 + 128


def test_davis_only_and_static_datasets_build(tmp_path):
    root = str(tmp_path / 'DAVIS')
    synthesize_moving_shapes(root, videos=('a', ), num_frames=5, size=(48, 48), split='train')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-150k_davis17-384.py'))
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.update(data_root=root, crop_size=(32, 32))
    ds = DATASETS.build(ds_cfg)
    assert ds[0]['inputs'].shape == (3, 3, 32, 32)
    static = Config.fromfile(osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-300k_static-384.py'))
    assert static.train_dataloader.dataset.type == 'StaticPasteDataset'  # built in test_vos_static
