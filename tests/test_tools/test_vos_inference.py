"""tools/vos_inference.py on a tiny 30-frame DAVIS-layout clip."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import MODELS
from PIL import Image

from mmkd_plugins.datasets.vos import read_mask, synthesize_moving_shapes
from tests.test_models.test_vos.vos_helpers import single_thread, tiny_swem_cfg

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()


def _load_tool():
    spec = importlib.util.spec_from_file_location('vos_inference', osp.join(REPO, 'tools',
                                                                            'vos_inference.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _setup(tmp_path):
    root = str(tmp_path / 'davis')
    synthesize_moving_shapes(root, videos=('clip', ), num_frames=30, size=(48, 64), split='val')
    cfg_path = tmp_path / 'tiny_swem.py'
    model = tiny_swem_cfg()
    model['memory']['init_seed'] = 0
    dataset = dict(type='VOSDataset', data_root=root, split='val', test_mode=True,
                   test_short_side=32)
    cfg_path.write_text(f"custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)\n"
                        f'model = {model!r}\n'
                        f'test_dataloader = dict(batch_size=1, dataset={dataset!r})\n')
    torch.manual_seed(0)
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=MODELS.build(tiny_swem_cfg()).state_dict(), meta={}), ckpt)
    return root, str(cfg_path), str(ckpt)


def test_inference_tool_writes_davis_layout(tmp_path, capsys):
    root, cfg, ckpt = _setup(tmp_path)
    out = str(tmp_path / 'out')
    tool = _load_tool()
    res = tool.main([cfg, ckpt, '--out-dir', out, '--device', 'cpu', '--eval', '--overlay', 'strip'])
    captured = capsys.readouterr()
    assert 'FPS' in captured.out and res['fps'] > 0 and res['frames'] == 30
    assert 'frame' in captured.err  # tqdm progress bar
    for i in range(30):
        path = osp.join(out, 'clip', f'{i:05d}.png')
        with Image.open(path) as im:
            assert im.mode == 'P' and im.size == (64, 48)  # original resolution
    labels = read_mask(osp.join(out, 'clip', '00000.png'))
    gt = read_mask(osp.join(root, 'Annotations', '480p', 'clip', '00000.png'))
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert (labels == gt).mean() > 0.9  # the first frame is the given annotation
    assert 0 <= res['metrics']['J&F-Mean'] <= 100
    strip = res['overlays'][0]
    assert strip.endswith('.jpg') and osp.isfile(strip)
    with Image.open(strip) as im:
        assert im.size[1] == 48 and im.size[0] == 8 * 64
    summary = json.load(open(osp.join(out, 'inference_summary.json')))
    assert summary['frames'] == 30


def test_inference_tool_video_overlay_and_options(tmp_path):
    _, cfg, ckpt = _setup(tmp_path)
    out = str(tmp_path / 'out2')
    tool = _load_tool()
    res = tool.main([cfg, ckpt, '--out-dir', out, '--device', 'cpu', '--overlay', 'video',
                     '--no-progress', '--cfg-options', 'test_dataloader.dataset.test_short_side=24'])
    assert res['overlays'][0].endswith('.mp4') and osp.getsize(res['overlays'][0]) > 0
    assert 'metrics' not in res
    with pytest.raises(KeyError, match='val_dataloader'):
        tool.main([cfg, ckpt, '--out-dir', out, '--dataloader', 'val_dataloader'])


def test_inference_tool_youtube_all_frames_writes_scored_frames(tmp_path):
    """YouTube-VOS with frames_split='valid_all_frames': every frame is segmented, only the frames
    of valid/JPEGImages (metainfo save_frames) are written."""
    import shutil
    davis = str(tmp_path / 'davis')
    synthesize_moving_shapes(davis, videos=('v', ), num_frames=11, size=(32, 48), split='val')
    root = tmp_path / 'yt'
    for i in range(11):
        src = osp.join(davis, 'JPEGImages', '480p', 'v', f'{i:05d}.jpg')
        (root / 'valid_all_frames' / 'JPEGImages' / 'v').mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / 'valid_all_frames' / 'JPEGImages' / 'v' / f'{i:05d}.jpg')
        if i % 5 == 0:
            (root / 'valid' / 'JPEGImages' / 'v').mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / 'valid' / 'JPEGImages' / 'v' / f'{i:05d}.jpg')
    (root / 'valid' / 'Annotations' / 'v').mkdir(parents=True)
    shutil.copy(osp.join(davis, 'Annotations', '480p', 'v', '00000.png'),
                root / 'valid' / 'Annotations' / 'v' / '00000.png')
    model = tiny_swem_cfg()
    dataset = dict(type='VOSDataset', data_root=str(root), layout='youtube', split='valid',
                   frames_split='valid_all_frames', test_mode=True, test_short_side=32,
                   test_size_divisor=16)
    cfg_path = tmp_path / 'yt_cfg.py'
    cfg_path.write_text(f"custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)\n"
                        f'model = {model!r}\n'
                        f'ytvos_test_dataloader = dict(batch_size=1, dataset={dataset!r})\n')
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=MODELS.build(tiny_swem_cfg()).state_dict(), meta={}), ckpt)
    out = str(tmp_path / 'out')
    res = _load_tool().main([str(cfg_path), str(ckpt), '--out-dir', out, '--device', 'cpu',
                             '--no-progress', '--dataloader', 'ytvos_test_dataloader'])
    assert res['frames'] == 11 and res['written'] == 3
    assert sorted(os.listdir(osp.join(out, 'v'))) == ['00000.png', '00005.png', '00010.png']
    with Image.open(osp.join(out, 'v', '00005.png')) as im:
        assert im.size == (48, 32)  # original size (the network ran at 32x48 -> 32x48 snapped)
