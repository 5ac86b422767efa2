"""Smoke-scale comparison of the two style-transfer configs on scikit-image's sample photos.

Trains configs/style/adain_vgg19_sample-images.py and adain-contrastive_vgg19_sample-images.py
for a few hundred iterations on CPU with a narrow, randomly initialised VGG (no pretrained weights
may be downloaded here), evaluates both on the 4 contents x 4 styles grid, and writes
benchmarks/results/style_transfer_sample.md plus a content | style | result grid per config.

    python benchmarks/style_transfer_sample.py [--iters 200] [--width 0.25]
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
import tempfile
import time

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(REPO, 'tools'))

from mmkd_plugins.datasets.unpaired_style import export_skimage_samples  # noqa: E402

CONFIGS = ('adain_vgg19_sample-images.py', 'adain-contrastive_vgg19_sample-images.py')
KEYS = ('content_loss', 'style_loss', 'same_style_dist', 'diff_style_dist', 'style_triplet_acc')


def run(config, data_root, work_dir, iters, width, crop):
    cfg = Config.fromfile(osp.join(REPO, 'configs/style', config))
    train_pipe = [dict(type='LoadStylePair'),
                  dict(type='ResizeCropStylePair', scale=crop + crop // 2, crop_size=crop,
                       random_crop=True),
                  dict(type='PackStylePairInputs')]
    test_pipe = [dict(type='LoadStylePair'),
                 dict(type='ResizeCropStylePair', scale=crop, crop_size=crop, random_crop=False),
                 dict(type='PackStylePairInputs')]
    opts = {
        'model.encoder.width': width, 'model.encoder.checkpoint': None,
        'train_dataloader.dataset.data_root': data_root,
        'train_dataloader.dataset.pipeline': train_pipe,
        'test_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.pipeline': test_pipe,
        'val_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.pipeline': test_pipe,
        'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.logger.interval': max(1, iters // 8), 'log_processor.window_size': 1,
        'randomness': dict(seed=0), 'work_dir': work_dir,
    }
    if 'contrastive' in config:
        opts['model.refine_iters'] = iters // 2
    cfg.merge_from_dict(opts)
    runner = Runner.from_cfg(cfg)
    start = time.time()
    runner.train()
    metrics = runner.test()
    secs = time.time() - start
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))[0]
    with open(scalars) as f:
        logged = [json.loads(line) for line in f if 'loss_style' in line]
    metrics['train_loss_style'] = (logged[0]['loss_style'], logged[-1]['loss_style'],
                                   logged[0]['iter'], logged[-1]['iter'])
    return metrics, secs, osp.join(work_dir, f'iter_{iters}.pth'), cfg


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--iters', type=int, default=200)
    parser.add_argument('--width', type=float, default=0.25)
    parser.add_argument('--crop', type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    import style_transfer
    out_dir = osp.join(REPO, 'benchmarks/results')
    os.makedirs(out_dir, exist_ok=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_root = osp.join(tmp, 'samples')
        export_skimage_samples(data_root, max_side=128)
        for config in CONFIGS:
            name = osp.splitext(config)[0]
            metrics, secs, ckpt, cfg = run(config, data_root, osp.join(tmp, name), args.iters,
                                           args.width, args.crop)
            rows[name] = (metrics, secs)
            opts = [f'model.encoder.width={args.width}', 'model.encoder.checkpoint=None']
            style_transfer.main([
                osp.join(REPO, 'configs/style', config), ckpt, '--content',
                osp.join(data_root, 'content'), '--style', osp.join(data_root, 'style'),
                '--out-dir', osp.join(tmp, name + '_out'), '--size', str(args.crop),
                '--grid', 'grid.png', '--grid-cell', '64', '--cfg-options', *opts])
            os.replace(osp.join(tmp, name + '_out', 'grid.png'),
                       osp.join(out_dir, f'style_transfer_sample_{name}.png'))
    lines = [
        '# Style transfer on scikit-image sample photos (smoke scale, CPU)', '',
        f'CPU only (no GPU in this session), 2 shared cores; VGG width {args.width} with RANDOM '
        f'init (no pretrained weights can be downloaded here), {args.iters} iterations, batch 4, '
        f'{args.crop}px crops, 4 contents x 4 styles evaluation grid (16 pairs). The numbers '
        'show that the pipeline runs end to end and how the metrics behave; they say nothing '
        'about the method at full scale.', '',
        '| config | encoder | content loss | style loss | same-style dist | diff-style dist '
        '| triplet acc | train+test s |', '|---|---|---|---|---|---|---|---|'
    ]
    train_lines = ['', '| config | training loss_style (10 x style loss), first -> last logged '
                   'iteration |', '|---|---|']
    for name, (metrics, secs) in rows.items():
        encs = sorted({k.split('/')[1] for k in metrics if k.startswith('style/')})
        for enc in encs:
            vals = [metrics[f'style/{enc}/{k}'] for k in KEYS]
            lines.append(f'| {name} | {enc} | ' + ' | '.join(f'{v:.4g}' for v in vals) +
                         f' | {secs:.0f} |')
        first, last, i0, i1 = metrics['train_loss_style']
        train_lines.append(f'| {name} | {first:.4g} (iter {i0}) -> {last:.4g} (iter {i1}) |')
    lines += train_lines
    lines += ['', 'Grids (content | style | result): ' + ', '.join(
        f'`style_transfer_sample_{osp.splitext(c)[0]}.png`' for c in CONFIGS), '']
    with open(osp.join(out_dir, 'style_transfer_sample.md'), 'w') as f:
        f.write('\n'.join(lines))
    MMLogger.get_current_instance().info('\n'.join(lines))


if __name__ == '__main__':
    main()
