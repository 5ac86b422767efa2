"""Stylise content images with style images using a trained AdaIN model.

Every content image (a file or a folder) is stylised with every style image (a file or a
folder); results go to ``OUT_DIR/<content>_<style>.png`` and an overview ``OUT_DIR/grid.png``
shows one row per pair: content | style | result.

Examples::

    # write scikit-image's bundled sample photos to data/style_samples/{content,style}
    python tools/style_transfer.py --export-samples data/style_samples

    python tools/style_transfer.py configs/style/adain_vgg19_sample-images.py \\
        work_dirs/adain_vgg19_sample-images/iter_400.pth \\
        --content data/style_samples/content --style data/style_samples/style \\
        --out-dir outputs/style --alpha 1.0 --size 256

Refuses (one line each): a checkpoint that is not a torch checkpoint or does not match the config's
model (missing / unexpected / mis-shaped keys; a distiller checkpoint with the conversion command);
result images or grid that already exist in ``--out-dir`` (``--force`` replaces them) or that are one of
the content / style images; with ``--export-samples DIR``, sample images that already exist under DIR
(``--force`` replaces them; all are checked before the first is written). Images are written
atomically (a temporary file renamed onto the name: an interrupted run leaves the old file or none).
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmkd_plugins.utils.safe_output import add_force_argument, atomic_write, check_output_files  # noqa: E402

__all__ = ['main', 'parse_args', 'make_grid', 'stylize_folder']


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='AdaIN style transfer: content + style (file or folder) -> stylised images')
    parser.add_argument('config', nargs='?', help='model config file')
    parser.add_argument('checkpoint', nargs='?',
                        help='trained checkpoint (.pth); "none" keeps the config\'s weights '
                        '(VGG checkpoint + untrained decoder)')
    parser.add_argument('--content', help='content image file or folder')
    parser.add_argument('--style', help='style image file or folder')
    parser.add_argument('--out-dir', default='outputs/style_transfer', help='output folder')
    parser.add_argument('--alpha', type=float, default=None,
                        help='content/style trade-off in [0, 1] (default: the model\'s)')
    parser.add_argument('--size', type=int, default=None,
                        help='resize the shorter side of the content images to this')
    parser.add_argument('--style-size', type=int, default=None,
                        help='resize the shorter side of the style images to this')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--grid', default='grid.png',
                        help='file name (inside --out-dir) of the content | style | result grid; '
                        '"" disables it')
    parser.add_argument('--grid-cell', type=int, default=256, help='grid cell size in pixels')
    parser.add_argument('--grid-max-rows', type=int, default=32, help='at most this many rows')
    parser.add_argument('--export-samples', metavar='DIR',
                        help='only write scikit-image\'s bundled sample photos to '
                        'DIR/{content,style} and exit (existing ones need --force)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.encoder.checkpoint=None')
    add_force_argument(parser)
    args = parser.parse_args(argv)
    if args.export_samples is None:
        missing = [n for n in ('config', 'checkpoint', 'content', 'style')
                   if getattr(args, n) is None]
        if missing:
            parser.error(f'missing {", ".join(missing)} (or use --export-samples DIR)')
        if args.alpha is not None and not 0.0 <= args.alpha <= 1.0:
            parser.error(f'--alpha must lie in [0, 1], got {args.alpha}')
    return args


def _fit_cell(img: np.ndarray, cell: int) -> np.ndarray:
    """Letterbox an ``(H, W, 3)`` uint8 image into a white ``cell x cell`` square."""
    from PIL import Image
    h, w = img.shape[:2]
    scale = cell / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BICUBIC))
    out = np.full((cell, cell, 3), 255, dtype=np.uint8)
    top, left = (cell - nh) // 2, (cell - nw) // 2
    out[top:top + nh, left:left + nw] = small
    return out


def make_grid(rows: Sequence[Sequence[np.ndarray]], cell: int = 256, gap: int = 4) -> np.ndarray:
    """Tile rows of ``(H, W, 3)`` uint8 images (content, style, result) into one image."""
    if not rows:
        raise ValueError('make_grid needs at least one row')
    ncol = max(len(r) for r in rows)
    height = len(rows) * cell + (len(rows) - 1) * gap
    width = ncol * cell + (ncol - 1) * gap
    grid = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = i * (cell + gap), j * (cell + gap)
            grid[y:y + cell, x:x + cell] = _fit_cell(img, cell)
    return grid


def _load(path: str, size: Optional[int]) -> np.ndarray:
    from mmkd_plugins.datasets.unpaired_style import _read_rgb, _resize_short
    img = _read_rgb(path)
    return _resize_short(img, size) if size else img


def _to_tensor(img: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div(255).unsqueeze(0).to(device)


def _result_name(content_path: str, style_path: str) -> str:
    return (f'{osp.splitext(osp.basename(content_path))[0]}_'
            f'{osp.splitext(osp.basename(style_path))[0]}.png')


def _save_png(img: np.ndarray, path: str) -> None:
    from PIL import Image
    with atomic_write(path, 'wb') as fh:
        Image.fromarray(img).save(fh, format='PNG')


def stylize_folder(model,
                   content: str,
                   style: str,
                   out_dir: str,
                   alpha: Optional[float] = None,
                   size: Optional[int] = None,
                   style_size: Optional[int] = None,
                   device: str = 'cpu',
                   grid: str = 'grid.png',
                   grid_cell: int = 256,
                   grid_max_rows: int = 32,
                   force: bool = False) -> List[str]:
    """Stylise every content image with every style image; return the written result paths.

    Refuses outputs that exist (unless ``force``) or that are one of the images, before writing any."""
    from mmengine.utils import ProgressBar

    from mmkd_plugins.datasets.unpaired_style import scan_images
    contents, styles = scan_images(content), scan_images(style)
    if not contents or not styles:
        raise FileNotFoundError(f'no images found: {len(contents)} under {content}, '
                                f'{len(styles)} under {style}')
    planned = [osp.join(out_dir, _result_name(c, s)) for c in contents for s in styles]
    check_output_files(planned + ([osp.join(out_dir, grid)] if grid else []), contents + styles, force)
    os.makedirs(out_dir, exist_ok=True)
    style_imgs = {p: _load(p, style_size) for p in styles}
    outputs, rows = [], []
    bar = ProgressBar(len(contents) * len(styles))
    for c_path in contents:
        c_img = _load(c_path, size)
        c_tensor = _to_tensor(c_img, device)
        for s_path in styles:
            s_img = style_imgs[s_path]
            result = model.stylize(c_tensor, _to_tensor(s_img, device), alpha=alpha)
            r_img = (result[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
            path = osp.join(out_dir, _result_name(c_path, s_path))
            _save_png(r_img, path)
            outputs.append(path)
            if len(rows) < grid_max_rows:
                rows.append((c_img, s_img, r_img))
            bar.update()
    sys.stdout.write('\n')
    if grid:
        _save_png(make_grid(rows, grid_cell), osp.join(out_dir, grid))
    return outputs


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    args = parse_args(argv)
    if args.export_samples is not None:
        from mmkd_plugins.datasets.unpaired_style import export_skimage_samples
        written = export_skimage_samples(args.export_samples, force=args.force)
        print(f'wrote {len(written["content"])} content and {len(written["style"])} style '
              f'images under {args.export_samples}')
        return written['content'] + written['style']

    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmkd_plugins  # noqa: F401  (registers the modules)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = MODELS.build(cfg.model)
    if str(args.checkpoint).lower() != 'none':
        from mmkd_plugins.distillers.teacher import read_state_dict
        from mmkd_plugins.utils.checkpoint_files import check_checkpoint_file
        from mmkd_plugins.utils.checkpoint_match import check_state_dict_matches
        check_checkpoint_file(args.checkpoint)
        state = read_state_dict(args.checkpoint)
        check_state_dict_matches(model.state_dict(), state, args.checkpoint, strict=True, hint=None)
        model.load_state_dict(state, strict=True)
    model.to(args.device).eval()
    outputs = stylize_folder(model, args.content, args.style, args.out_dir, args.alpha,
                             args.size, args.style_size, args.device, args.grid, args.grid_cell,
                             args.grid_max_rows, args.force)
    print(f'wrote {len(outputs)} stylised images' +
          (f' and {args.grid}' if args.grid else '') + f' to {args.out_dir}')
    return outputs


if __name__ == '__main__':
    run_main(main)
