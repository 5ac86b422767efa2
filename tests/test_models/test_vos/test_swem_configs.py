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
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'swem', '*.py')))
has_mmpretrain = __import__('importlib').util.find_spec('mmpretrain') is not None


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()


def test_configs_exist_and_parse():
    names = {osp.basename(c) for c in CONFIGS}
    assert {'swem_r50_8xb1-150k_davis17-ytvos19-384.py', 'swem_r50_8xb1-150k_davis17-384.py',
            'swem_r50_8xb1-150k_static-384.py'} <= names
    for path in CONFIGS:
        cfg = Config.fromfile(path)
        assert cfg.custom_imports['imports'] == ['mmkd_plugins']
        assert cfg.model.memory.num_bases == 128 and cfg.model.memory.top_l == 64
        assert cfg.optim_wrapper.optimizer.lr == 2e-5
    main = Config.fromfile(osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-150k_davis17-ytvos19-384.py'))
    davis_rep = main.train_dataloader.dataset.datasets[1]
    assert davis_rep.type == 'RepeatDataset' and davis_rep.times == 5


@pytest.mark.skipif(not has_mmpretrain, reason='mmpretrain not installed')
def test_main_config_model_runs():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-150k_davis17-ytvos19-384.py'))
    model_cfg = copy.deepcopy(cfg.model)
    for key in ('key_backbone', 'value_backbone'):
        model_cfg[key].pop('init_cfg')  # no download in tests
    model_cfg['memory']['num_bases'] = 8
    model = MODELS.build(model_cfg)
    assert model.fusion.feat.in_channels == 512 + 512 + 128
    frames = torch.randint(0, 255, (1, 3, 3, 32, 32), dtype=torch.uint8)
    lab = torch.zeros(3, 32, 32, dtype=torch.long)
    lab[:, 5:20, 5:20] = 1
    data = model.data_preprocessor(dict(inputs=list(frames), data_samples=[BaseDataElement(
        gt_masks=lab, metainfo=dict(num_objects=1))]), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    # frozen BN: no trainable BN parameters in the backbones
    assert not any(p.requires_grad for n, p in model.key_encoder.named_parameters() if 'bn' in n)


def test_davis_only_and_static_datasets_build(tmp_path):
    root = str(tmp_path / 'DAVIS')
    synthesize_moving_shapes(root, videos=('a', ), num_frames=5, size=(48, 48), split='train')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-150k_davis17-384.py'))
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.update(data_root=root, crop_size=(32, 32))
    ds = DATASETS.build(ds_cfg)
    assert ds[0]['inputs'].shape == (3, 3, 32, 32)
    static = Config.fromfile(osp.join(REPO, 'configs', 'swem', 'swem_r50_8xb1-150k_static-384.py'))
    assert all(d.type == 'StaticVOSDataset' for d in static.train_dataloader.dataset.datasets)
