"""Step time and peak memory of MGD-RetinaNet (X101-64x4d -> R50) vs. RetinaNet-R50 alone.

    python benchmarks/mgd_det_step_time.py                  # CPU: 1 image of 256x256, 1 thread
    python benchmarks/mgd_det_step_time.py --device cuda --size 800 1216 --batch 2

Full-size models from configs/mgd/mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py with
random weights (nothing is downloaded). Three measurements, each in its own process (so that peak
memory is its own):

- ``student``: one training step of the plain RetinaNet-R50 (data preprocessor, forward with
  losses, backward, SGD with the config's gradient clipping);
- ``mgd``: one training step of the SingleTeacherDistiller (the same student step + the teacher's
  extract_feat under no_grad, stopped after its FPN + 5 MGD connectors and losses);
- ``teacher``: the teacher's extract_feat alone (no_grad), on the preprocessed batch.

Reported: median step times, the ratios mgd / student and mgd / (student + teacher) (the lower
bound of any distiller that runs the student and the teacher's backbone + neck), and peak memory
(CUDA: max allocated; CPU: the process's peak resident set size, with the size after imports).
Writes benchmarks/results/mgd_det_step_time.md.
"""
import argparse
import copy
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)
CONFIG = osp.join(REPO, 'configs', 'mgd', 'mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py')
RESULT = osp.join(REPO, 'benchmarks', 'results', 'mgd_det_step_time.md')


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _strip_pretrained(cfg):
    if isinstance(cfg, dict):
        return {k: (None if k == 'init_cfg' and 'Pretrained' in repr(v) else _strip_pretrained(v))
                for k, v in cfg.items() if k != 'pretrained'}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_strip_pretrained(v) for v in cfg)
    return cfg


def measure(mode: str, args) -> dict:
    """Run in a child process: build what ``mode`` needs, time ``args.steps`` steps."""
    import torch
    from mmengine.config import Config, ConfigDict
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    from mmdet.testing import demo_mm_inputs

    import mmkd_plugins  # noqa: F401
    from mmkd_plugins.distillers.teacher import build_frozen_teacher, load_model_config

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rss_after_imports = _rss_mb()
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmdet')
    model_cfg = _strip_pretrained(cfg.model.to_dict())
    # the teacher config file's backbone names an ImageNet init: resolve and strip it too
    model_cfg['teacher'] = _strip_pretrained(load_model_config(model_cfg['teacher']))
    torch.manual_seed(0)
    # random weights, but initialised as mmdet initialises them (a default torch init gives
    # exploding losses and activations whose inf / denormal arithmetic distorts CPU timings)
    if mode == 'mgd':
        model = MODELS.build(ConfigDict(model_cfg, teacher_ckpt=None, allow_random_teacher=True))
        model.teacher.init_weights()
        model.init_weights()  # student + connectors, then init_student copies teacher neck + head
    elif mode == 'student':
        model = MODELS.build(ConfigDict(model_cfg['student']))
        model.init_weights()
    else:
        model = build_frozen_teacher(model_cfg['teacher'], None, allow_random=True)
        model.init_weights()
    model.to(device)

    h, w = args.size
    packed = demo_mm_inputs(batch_size=args.batch, image_shapes=[(3, h, w)] * args.batch,
                            num_items=[5] * args.batch, num_classes=80)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    if mode == 'teacher':
        preproc = MODELS.build(ConfigDict(model_cfg['student']['data_preprocessor'])).to(device)
        inputs = preproc(copy.deepcopy(packed), True)['inputs']
        for _ in range(args.warmup + args.steps):
            sync()
            t0 = time.perf_counter()
            with torch.no_grad():
                model.extract_feat(inputs)
            sync()
            times.append(time.perf_counter() - t0)
    else:
        optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper.to_dict()))
        model.train()
        for _ in range(args.warmup + args.steps):
            data = copy.deepcopy(packed)
            sync()
            t0 = time.perf_counter()
            model.train_step(data, optim)
            sync()
            times.append(time.perf_counter() - t0)
    out = dict(mode=mode, median_s=statistics.median(times[args.warmup:]),
               times_s=times[args.warmup:],
               params_m=sum(p.numel() for p in model.parameters()) / 1e6)
    if device.type == 'cuda':
        out['peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out['peak_mb'] = _rss_mb()
        out['rss_after_imports_mb'] = rss_after_imports
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--size', type=int, nargs=2, default=[256, 256], metavar=('H', 'W'))
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads (1: stable timings on a shared CPU)')
    p.add_argument('--mode', choices=['student', 'mgd', 'teacher'], help=argparse.SUPPRESS)
    p.add_argument('--out', default=RESULT)
    args = p.parse_args(argv)

    if args.mode is not None:  # child process
        print('RESULT ' + json.dumps(measure(args.mode, args)))
        return

    results = {}
    for mode in ('student', 'teacher', 'mgd'):
        cmd = [sys.executable, __file__, '--mode', mode, '--device', args.device,
               '--size', *map(str, args.size), '--batch', str(args.batch),
               '--steps', str(args.steps), '--warmup', str(args.warmup),
               '--threads', str(args.threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
        if proc.returncode != 0 or not line:
            raise RuntimeError(f'{mode} run failed:\n{proc.stderr[-3000:]}')
        results[mode] = json.loads(line[0][len('RESULT '):])
        print(mode, results[mode])

    s, t, m = (results[k]['median_s'] for k in ('student', 'teacher', 'mgd'))
    import torch
    dev = (torch.cuda.get_device_name(0) if args.device.startswith('cuda')
           else f'CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
                f'torch threads {args.threads})')
    mem_kind = ('max CUDA memory allocated' if args.device.startswith('cuda')
                else 'peak resident set size of the process (after imports: ~{:.0f} MB)'.format(
                    results['student']['rss_after_imports_mb']))
    lines = [
        '# MGD-RetinaNet step time (X101-64x4d teacher -> R50 student)',
        '',
        f'Generated by `python benchmarks/mgd_det_step_time.py` on **{dev}**, torch '
        f'{torch.__version__}; input: batch {args.batch} of {args.size[0]}x{args.size[1]} '
        f'(small inputs: no GPU was available to this run), median of {args.steps} steps after '
        f'{args.warmup} warm-up, full-size models with random weights, SGD + clip_grad 35.',
        '',
        '| run | median time / step | params (trainable for steps) | peak memory (MB) |',
        '|---|---|---|---|',
        f'| RetinaNet-R50 alone, train step | {s * 1e3:.0f} ms | '
        f'{results["student"]["params_m"]:.1f} M | {results["student"]["peak_mb"]:.0f} |',
        f'| teacher RetinaNet-X101-64x4d extract_feat alone (no_grad) | {t * 1e3:.0f} ms | '
        f'{results["teacher"]["params_m"]:.1f} M (frozen) | {results["teacher"]["peak_mb"]:.0f} |',
        f'| MGD distiller train step | {m * 1e3:.0f} ms | {results["mgd"]["params_m"]:.1f} M '
        f'(student + 5 MGD connectors) | {results["mgd"]["peak_mb"]:.0f} |',
        '',
        '| ratio | value |',
        '|---|---|',
        f'| MGD step / student step | {m / s:.2f} |',
        f'| MGD step / (student step + teacher extract_feat) = overhead vs. the lower bound | '
        f'{m / (s + t):.2f} |',
        '',
        f'Peak memory: {mem_kind}. The teacher is never in the optimizer, runs under no_grad and '
        'stops after its FPN (its RetinaNet head is never run); the distiller adds its forward '
        'and five generation blocks (Conv3x3-ReLU-Conv3x3, 256 ch) with their backward.',
        'A ratio to the lower bound near 1.0 means the distiller costs no more than running the '
        'two networks (hooks, connectors and MGD losses are small next to R50 + X101); each run '
        'is a separate process, so ratios slightly below 1 are timing noise. CPU timings use one '
        'thread: with more threads on a shared CPU, OpenMP barriers make step times vary by 10x.',
        '',
        'Raw step times (s): ' + ', '.join(
            f'{k}: {[round(x, 3) for x in v["times_s"]]}' for k, v in results.items()),
        '',
    ]
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write('\n'.join(lines))
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
