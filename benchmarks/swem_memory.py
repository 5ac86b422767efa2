"""Per-frame inference time and memory size vs. frame index: SWEM's fixed memory vs. a growing memory.

Runs one long synthetic video (moving shapes, 2 objects) through the same SWEM network twice: once with
:class:`SWEMMemory` (L bases per class, 'first' + 'update' banks) and once with the STM-style
:class:`GrowingMemory` (every ``k``-th frame appended pixel-wise, plus the previous frame). Both use
L = 128 bases and T = 4 EM iterations as the paper, and the same network (tiny plain-CNN backbones and
64-d keys / 128-d values by default on CPU; ``--key-dim 128 --value-dim 512 --top-l 64`` are the paper's),
so only the memory differs. Writes ``benchmarks/results/swem_memory.md`` (table)
and ``.png`` (plot).

    python benchmarks/swem_memory.py                       # CPU, 128x128, 1000 frames (~2-3 min)
    python benchmarks/swem_memory.py --device cuda --size 480 864 --tiny-backbone 0   # on a GPU
"""
import argparse
import os
import os.path as osp
import platform
import sys
import time
from typing import Dict, List

import numpy as np
import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def build_model(memory: dict, tiny: bool, device: str, key_dim: int, value_dim: int):
    from mmengine.registry import MODELS

    import mmkd_plugins  # noqa: F401
    if tiny:
        cfg = dict(type='SWEM',
                   key_backbone=dict(type='VOSTinyBackbone', in_channels=3, channels=(32, 64, 128)),
                   value_backbone=dict(type='VOSTinyBackbone', in_channels=5, channels=(16, 32, 64)),
                   key_channels=(128, 64, 32), value_backbone_channels=64, decoder_channels=32)
    else:  # the paper's ResNet-50 / ResNet-18 (random weights: speed only)
        cfg = dict(type='SWEM')
    cfg.update(key_dim=key_dim, value_dim=value_dim, memory=memory)
    torch.manual_seed(0)
    return MODELS.build(cfg).to(device).eval()


def make_frames(num: int, size, device: str):
    """Frame generator (moving disc + square over a gradient) and the first-frame labels."""
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing='ij')
    base = torch.stack([xx / w, yy / h, torch.full_like(xx, 0.5)]) * 2 - 1
    r = min(h, w) / 8

    def masks(t):
        c1 = (h / 2 + h / 4 * np.sin(t / 17), w / 2 + w / 4 * np.cos(t / 23))
        c2 = (h / 2 + h / 4 * np.cos(t / 13), w / 2 + w / 4 * np.sin(t / 29))
        m1 = (yy - c1[0]) ** 2 + (xx - c1[1]) ** 2 <= r * r
        m2 = ((yy - c2[0]).abs() <= r) & ((xx - c2[1]).abs() <= r)
        return m1, m2

    def frame(t):
        m1, m2 = masks(t)
        img = base.clone()
        img[:, m1] = torch.tensor([1.0, -1.0, -1.0])[:, None]
        img[:, m2] = torch.tensor([-1.0, 1.0, -1.0])[:, None]
        return img.to(device)

    m1, m2 = masks(0)
    labels = torch.zeros(h, w, dtype=torch.long)
    labels[m1] = 1
    labels[m2 & ~m1] = 2
    return frame, labels.to(device)


@torch.no_grad()
def run(model, num_frames: int, size, device: str) -> Dict[str, List[float]]:
    frame, labels = make_frames(num_frames, size, device)
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    model.start_video()
    for t in range(3):  # warm-up on a throw-away video
        model.step(frame(t), labels if t == 0 else None)
    model.start_video()
    times, cpu_times, sizes = [], [], []
    for t in range(num_frames):
        img = frame(t)
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        model.step(img, labels if t == 0 else None)
        sync()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        sizes.append(model.memory.state_nbytes())
    model.start_video()
    # on a shared CPU the process time is the robust measure; on a GPU the wall time is the real one
    return dict(time=times if device.startswith('cuda') else cpu_times, wall=times, bytes=sizes)


def window_mean(x: List[float], idx: int, half: int = 5) -> float:
    """Mean around frame ``idx`` (1-based), robust to single slow frames (median of the window)."""
    lo, hi = max(0, idx - 1 - half), min(len(x), idx + half)
    return float(np.median(x[lo:hi]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int, default=1000)
    parser.add_argument('--size', type=int, nargs=2, default=(128, 128), metavar=('H', 'W'))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument('--mem-every', type=int, default=5, help='growing memory period k')
    parser.add_argument('--num-bases', type=int, default=128, help='SWEM bases L per class')
    parser.add_argument('--tiny-backbone', type=int, default=1, help='1: tiny CNNs, 0: ResNet-50/18')
    parser.add_argument('--key-dim', type=int, default=64, help='key channels (paper: 128)')
    parser.add_argument('--value-dim', type=int, default=128, help='value channels (paper: 512)')
    parser.add_argument('--top-l', type=int, default=32, help='permutation-invariant length (paper: 64)')
    parser.add_argument('--out', default=osp.join(REPO, 'benchmarks', 'results', 'swem_memory'))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    memories = {
        'SWEM (fixed)': dict(type='SWEMMemory', num_bases=args.num_bases, num_iters=4, tau=0.05,
                             top_l=args.top_l, init_seed=0),
        f'growing, every {args.mem_every}th (STM-style)': dict(type='GrowingMemory',
                                                               mem_every=args.mem_every,
                                                               include_last=True, top_l=args.top_l),
    }
    results = {}
    for name, mem in memories.items():
        model = build_model(mem, bool(args.tiny_backbone), args.device, args.key_dim, args.value_dim)
        start = time.time()
        results[name] = run(model, args.frames, size, args.device)
        print(f'{name}: {args.frames} frames in {time.time() - start:.1f} s', flush=True)

    checkpoints = [c for c in (1, 10, 100, 1000, 10000) if c <= args.frames]
    if args.frames not in checkpoints:
        checkpoints.append(args.frames)
    device_desc = (torch.cuda.get_device_name(0) if args.device.startswith('cuda')
                   else f'CPU ({platform.processor() or platform.machine()}, {args.threads} thread(s))')
    time_label = 'ms/frame' if args.device.startswith('cuda') else 'CPU ms/frame (wall ms)'
    lines = [
        '# SWEM memory benchmark: per-frame cost vs. frame index',
        '',
        f'Produced by `python benchmarks/swem_memory.py` on **{device_desc}**, frames '
        f'{size[0]}x{size[1]} (stride-16 memory grid {size[0] // 16}x{size[1] // 16}), 2 objects, '
        f'{args.frames}-frame synthetic video. '
        + ('Tiny plain-CNN backbones (no GPU was lent for this run; CPU at small resolution), '
           if args.tiny_backbone else 'ResNet-50/18 backbones with random weights, ')
        + f'{args.key_dim}-d keys, {args.value_dim}-d values, top-l {args.top_l} (paper: 128, 512, 64), '
        + 'the same network for both memories, SWEM with '
        f'L = {args.num_bases} bases per class and T = 4 EM iterations. Time = median over 11 frames '
        'around the index, model only; '
        + ('wall-clock time with CUDA synchronisation' if args.device.startswith('cuda') else
           'CPU time of the process (the machine is shared, so wall time is noisy; it is given too)')
        + '; memory = bytes of the memory state after the frame.',
        '',
        '| frame | ' + ' | '.join(f'{n} {time_label} | {n} memory (KiB)' for n in results) + ' |',
        '|---:|' + '---:|---:|' * len(results),
    ]
    for c in checkpoints:
        cells = []
        for r in results.values():
            cells += [f'{1000 * window_mean(r["time"], c):.2f} ({1000 * window_mean(r["wall"], c):.1f})',
                      f'{r["bytes"][c - 1] / 1024:.0f}']
        lines.append(f'| {c} | ' + ' | '.join(cells) + ' |')
    names = list(results)
    sw, gr = results[names[0]], results[names[1]]
    first, last = checkpoints[1] if len(checkpoints) > 1 else 1, checkpoints[-1]
    lines += [
        '',
        f'SWEM: memory {sw["bytes"][last - 1] / max(sw["bytes"][first - 1], 1):.2f}x and time '
        f'{window_mean(sw["time"], last) / window_mean(sw["time"], first):.2f}x from frame {first} to '
        f'{last} (flat). Growing memory: memory {gr["bytes"][last - 1] / gr["bytes"][first - 1]:.1f}x '
        f'and time {window_mean(gr["time"], last) / window_mean(gr["time"], first):.1f}x.',
        '',
        '![per-frame time and memory size](swem_memory.png)',
        '',
    ]
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out + '.md', 'w') as fh:
        fh.write('\n'.join(lines))
    print('\n'.join(lines))

    from mmkd_plugins.utils import require
    matplotlib = require('matplotlib', 'the benchmark plot')
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        x = np.arange(1, len(r['time']) + 1)
        k = 9
        smooth = np.array([window_mean(r['time'], i, k // 2) for i in x]) * 1000
        axes[0].plot(x, smooth, label=name)
        axes[1].plot(x, np.array(r['bytes']) / 2 ** 20, label=name)
    axes[0].set(xlabel='frame index', ylabel='ms / frame (running median of 9)',
                title='per-frame time' + ('' if args.device.startswith('cuda') else ' (CPU time)'))
    axes[1].set(xlabel='frame index', ylabel='memory state (MiB)', title='memory size')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f'SWEM vs growing memory, {size[0]}x{size[1]}, {device_desc}', fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out + '.png', dpi=110)
    return results


if __name__ == '__main__':
    main()
