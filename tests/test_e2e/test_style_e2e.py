"""End-to-end: both style-transfer configs train, evaluate, test and infer through the Runner on
scikit-image's bundled sample photos (tiny VGG width, small crops, CPU)."""
import glob
import json
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from tests.conftest import REPO

pytest.importorskip('skimage')

sys.path.insert(0, osp.join(REPO, 'tools'))
import style_transfer  # noqa: E402

from mmkd_plugins.datasets.unpaired_style import export_skimage_samples  # noqa: E402

TRAIN_PIPE = [dict(type='LoadStylePair'),
              dict(type='ResizeCropStylePair', scale=64, crop_size=48, random_crop=True),
              dict(type='PackStylePairInputs')]
TEST_PIPE = [dict(type='LoadStylePair'),
             dict(type='ResizeCropStylePair', scale=48, crop_size=48, random_crop=False),
             dict(type='PackStylePairInputs')]


def tiny_options(data_root, work_dir, contrastive):
    opts = {
        'model.encoder.width': 0.125,
        'model.encoder.checkpoint': None,
        'train_dataloader.batch_size': 4,
        'train_dataloader.dataset.data_root': data_root,
        'train_dataloader.dataset.pipeline': TRAIN_PIPE,
        'val_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.pipeline': TEST_PIPE,
        'test_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.pipeline': TEST_PIPE,
        'train_cfg.max_iters': 4,
        'train_cfg.val_interval': 4,
        'default_hooks.logger.interval': 1,
        'log_processor.window_size': 1,
        'default_hooks.checkpoint.interval': 4,
        'randomness': dict(seed=0),
        'work_dir': work_dir,
    }
    if contrastive:
        opts.update({
            'model.refine_iters': 2,
            'model.style_contrastive_loss.hidden_dim': 32,
            'model.style_contrastive_loss.out_dim': 16,
            'model.content_contrastive_loss.hidden_dim': 32,
            'model.content_contrastive_loss.out_dim': 16,
        })
    return opts


@pytest.fixture(scope='module')
def sample_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('style_samples'))
    export_skimage_samples(root, max_side=96)
    return root


def _scalars(work_dir):
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert files, 'no scalars.json written'
    with open(files[0]) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize('config,contrastive', [
    ('adain_vgg19_sample-images.py', False),
    ('adain-contrastive_vgg19_sample-images.py', True),
])
def test_style_config_trains_tests_and_infers(sample_root, tmp_path, config, contrastive):
    cfg_path = osp.join(REPO, 'configs/style', config)
    cfg = Config.fromfile(cfg_path)
    options = tiny_options(sample_root, str(tmp_path), contrastive)
    cfg.merge_from_dict(options)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    init_enc = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    runner.train()
    test_metrics = runner.test()

    # --- training ran both phases / kept the encoder frozen
    logs = _scalars(str(tmp_path))
    train_logs = [r for r in logs if 'loss_style' in r]
    assert [r['iter'] for r in train_logs] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in train_logs)
    enc_changed = any(not torch.equal(init_enc[k], v) for k, v in model.encoder.state_dict().items()
                      if k != 'train_iter')
    assert int(model.train_iter) == 4
    if contrastive:
        assert [r['refine_phase'] for r in train_logs] == [1.0, 1.0, 0.0, 0.0]
        assert 'loss_style_contrast' in train_logs[0] and 'loss_content_contrast' in train_logs[0]
        assert train_logs[0]['loss_style_contrast'] > 0
        assert train_logs[-1]['loss_style_contrast'] == 0.0
        assert enc_changed, 'the refinement phase did not update the encoder'
        # the plain copy stays the initial encoder
        for k, v in model.plain_encoder.state_dict().items():
            assert torch.equal(init_enc[k], v)
    else:
        assert not enc_changed, 'the baseline must keep the VGG encoder frozen'

    # --- evaluation on the 4 x 4 content x style grid, in both encoders' spaces
    names = ['plain', 'refined'] if contrastive else ['plain']
    for name in names:
        for key in ('content_loss', 'style_loss', 'same_style_dist', 'diff_style_dist',
                    'style_triplet_acc'):
            value = test_metrics[f'style/{name}/{key}']
            assert value == value, f'{name}/{key} is nan'
        assert 0.0 <= test_metrics[f'style/{name}/style_triplet_acc'] <= 1.0
    assert any('style/plain/style_loss' in r for r in logs)  # validation ran during training

    # --- inference tool on the trained checkpoint
    ckpt = osp.join(str(tmp_path), 'iter_4.pth')
    assert osp.isfile(ckpt)
    out_dir = osp.join(str(tmp_path), 'stylised')
    outputs = style_transfer.main([
        cfg_path, ckpt, '--content', osp.join(sample_root, 'content', 'astronaut.png'),
        '--style', osp.join(sample_root, 'style'), '--out-dir', out_dir, '--size', '40',
        '--grid-cell', '32', '--cfg-options', 'model.encoder.width=0.125',
        'model.encoder.checkpoint=None'
    ] + ([
        'model.style_contrastive_loss.hidden_dim=32', 'model.style_contrastive_loss.out_dim=16',
        'model.content_contrastive_loss.hidden_dim=32',
        'model.content_contrastive_loss.out_dim=16'
    ] if contrastive else []))
    assert len(outputs) == 4
    from PIL import Image
    with Image.open(outputs[0]) as im:
        assert im.size == (40, 40) and im.mode == 'RGB'
    assert osp.isfile(osp.join(out_dir, 'grid.png'))


@pytest.mark.parametrize('config', ['adain_vgg19_1xb8-160k_coco-wikiart.py',
                                    'adain-contrastive_vgg19_1xb8-160k_coco-wikiart.py'])
def test_full_scale_configs_build_without_weights(config):
    """The COCO/WikiArt configs build at full width; the VGG path is only read when present."""
    from mmengine.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs/style', config))
    assert cfg.model.encoder.checkpoint == 'checkpoints/vgg_normalised.pth'
    assert cfg.param_scheduler[0]['type'] == 'InverseTimeLR'
    with pytest.raises(FileNotFoundError, match='Nothing is downloaded'):
        MODELS.build(cfg.model)
    cfg.model.encoder.checkpoint = None
    model = MODELS.build(cfg.model)
    assert model.encoder.out_channels('relu4_1') == 512
    assert model.refining == ('contrastive' in config)
    if model.refining:
        assert model.refine_iters == 40000
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys['encoder.'] == dict(lr_mult=0.1)
