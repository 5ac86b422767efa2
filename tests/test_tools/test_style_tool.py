"""tools/style_transfer.py: output files, sizes, grid image, CLI errors."""
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS
from PIL import Image

from tests.conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools'))
import style_transfer  # noqa: E402

CONFIG = osp.join(REPO, 'configs/style/adain_vgg19_sample-images.py')
TINY = ['model.encoder.width=0.125', 'model.encoder.checkpoint=None']


@pytest.fixture
def setup(tmp_path):
    cfg = Config.fromfile(CONFIG)
    cfg.model.encoder.width = 0.125
    cfg.model.encoder.checkpoint = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    rng = np.random.default_rng(0)
    (tmp_path / 'content').mkdir()
    (tmp_path / 'style').mkdir()
    files = [('content', 'c1.png', (45, 37, 3)), ('content', 'c2.jpg', (24, 40, 3)),
             ('style', 's1.png', (30, 30, 3))]
    for folder, name, shape in files:
        Image.fromarray(rng.integers(0, 255, shape, np.uint8)).save(tmp_path / folder / name)
    return tmp_path, model, str(ckpt)


def test_tool_writes_results_and_grid(setup):
    tmp, model, ckpt = setup
    out_dir = tmp / 'out'
    outputs = style_transfer.main([CONFIG, ckpt, '--content', str(tmp / 'content'), '--style',
                                   str(tmp / 'style' / 's1.png'), '--out-dir', str(out_dir),
                                   '--grid-cell', '20', '--device', 'cpu', '--cfg-options',
                                   *TINY])
    assert [osp.basename(p) for p in outputs] == ['c1_s1.png', 'c2_s1.png']
    with Image.open(outputs[0]) as im:
        assert im.size == (37, 45) and im.mode == 'RGB'  # the content's own size
        result = np.asarray(im)
    with Image.open(outputs[1]) as im:
        assert im.size == (40, 24)
    # the saved file is the model's stylisation of the content with the style
    content = np.asarray(Image.open(tmp / 'content' / 'c1.png'))
    style = np.asarray(Image.open(tmp / 'style' / 's1.png'))
    as_t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy()).float()[None] / 255  # noqa
    model.eval()
    expected = model.stylize(as_t(content), as_t(style))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(result.astype(float) - expected).max() <= 1.0
    # grid: 2 rows (content | style | result) of 20 px cells with 4 px gaps
    with Image.open(out_dir / 'grid.png') as im:
        assert im.size == (3 * 20 + 2 * 4, 2 * 20 + 4)


def test_tool_alpha_size_and_no_grid(setup):
    tmp, _, ckpt = setup
    out_dir = tmp / 'out2'
    outputs = style_transfer.main([CONFIG, ckpt, '--content', str(tmp / 'content' / 'c2.jpg'),
                                   '--style', str(tmp / 'style'), '--out-dir', str(out_dir),
                                   '--size', '32', '--alpha', '0.5', '--grid', '',
                                   '--cfg-options', *TINY])
    with Image.open(outputs[0]) as im:
        assert im.size == (53, 32)  # shorter side resized to 32
    assert not osp.exists(out_dir / 'grid.png')


def test_make_grid_letterboxes():
    rows = [[np.zeros((10, 20, 3), np.uint8), np.zeros((30, 10, 3), np.uint8)]]
    grid = style_transfer.make_grid(rows, cell=16, gap=2)
    assert grid.shape == (16, 34, 3)
    assert (grid[0, :16] == 255).all()  # letterbox border of the wide image
    assert (grid[8, 4:12] == 0).all()
    with pytest.raises(ValueError, match='at least one row'):
        style_transfer.make_grid([])


def test_tool_errors(setup, capsys):
    tmp, _, _ = setup
    with pytest.raises(SystemExit):
        style_transfer.main([CONFIG])
    assert 'missing checkpoint, content, style' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        style_transfer.main([CONFIG, 'x.pth', '--content', 'a', '--style', 'b', '--alpha', '2'])
    with pytest.raises(FileNotFoundError, match='checkpoint'):
        style_transfer.main([CONFIG, str(tmp / 'nope.pth'), '--content', str(tmp / 'content'),
                             '--style', str(tmp / 'style'), '--cfg-options', *TINY])
    with pytest.raises(FileNotFoundError, match='does not exist'):
        style_transfer.main([CONFIG, 'none', '--content', str(tmp / 'missing'), '--style',
                             str(tmp / 'style'), '--cfg-options', *TINY])


def test_export_samples(tmp_path):
    pytest.importorskip('skimage')
    paths = style_transfer.main(['--export-samples', str(tmp_path)])
    assert len(paths) == 8 and all(osp.isfile(p) for p in paths)
