"""The main-job demo: knowledge distillation on real images that ship with scikit-learn.

Trains, for each seed, a teacher (ResNet-18 w16), the baseline student (ResNet-18 w4) and the student
distilled with each method, all through mmengine's Runner on CPU, then prints top-1 on the held-out
digits as mean +- std over the seeds, and writes the table to ``<work-dir>/results.md``.

    python tools/demo_digits.py [--seeds 0 1 2] [--methods mgd ...] [--work-dir work_dirs/demo]
"""
import argparse
import logging
import os.path as osp
import statistics
import sys
import time

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)

from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

DEMO = osp.join(REPO, 'configs', 'demo')
# name -> (config, which teacher it needs: None, 'cnn' or 'vit', baseline it compares with)
METHODS = {
    'teacher (ResNet-18 w16)': ('digits_teacher_resnet18.py', None),
    'student baseline (ResNet-18 w4)': ('digits_student_resnet18_w4.py', None),
    'MGD': ('digits_mgd.py', 'cnn'),
}
OPTIONAL = {  # added when their configs exist
    'NKD': ('digits_nkd.py', 'cnn'),
    'tf-NKD (no teacher)': ('digits_tfnkd.py', None),
    'ViT teacher (ViT 64-d, 6 blocks)': ('digits_vit_teacher.py', None),
    'ViT student baseline (ViT 16-d, 2 blocks)': ('digits_vit_student.py', None),
    'ViTKD': ('digits_vitkd.py', 'vit'),
}
TEACHERS = {'cnn': 'teacher (ResNet-18 w16)', 'vit': 'ViT teacher (ViT 64-d, 6 blocks)'}


def available_methods():
    methods = dict(METHODS)
    methods.update({k: v for k, v in OPTIONAL.items() if osp.exists(osp.join(DEMO, v[0]))})
    return methods


def train_and_test(config, work_dir, seed, teacher_ckpt=None, max_epochs=None):
    cfg = Config.fromfile(osp.join(DEMO, config))
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.log_level = 'ERROR'
    if max_epochs is not None:
        cfg.train_cfg.max_epochs = max_epochs
    if teacher_ckpt is not None:
        cfg.model.teacher_ckpt = teacher_ckpt
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    ckpt = osp.join(work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
    return metrics['accuracy/top1'], ckpt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--methods', nargs='+', help='subset of method names (default: all)')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo'))
    parser.add_argument('--max-epochs', type=int, help='override the epochs (smoke runs)')
    args = parser.parse_args(argv)

    methods = available_methods()
    if args.methods:
        unknown = [m for m in args.methods if m not in methods]
        if unknown:
            parser.error(f'unknown methods {unknown}; available: {list(methods)}')
        needed = set(args.methods) | {TEACHERS[methods[m][1]] for m in args.methods if methods[m][1]}
        methods = {k: v for k, v in methods.items() if k in needed}
    logging.getLogger('mmengine').setLevel(logging.ERROR)
    MMLogger.get_current_instance().setLevel(logging.ERROR)

    results = {name: [] for name in methods}
    start = time.time()
    for seed in args.seeds:
        ckpts = {}
        for name, (config, teacher) in methods.items():
            tag = osp.splitext(config)[0]
            t0 = time.time()
            acc, ckpt = train_and_test(config, osp.join(args.work_dir, f'seed{seed}', tag), seed,
                                       ckpts.get(TEACHERS.get(teacher)), args.max_epochs)
            ckpts[name] = ckpt
            results[name].append(acc)
            print(f'[seed {seed}] {name:42s} top-1 {acc:6.2f}  ({time.time() - t0:5.1f} s)', flush=True)

    lines = ['| model | top-1 (%) mean | std | per seed |', '|---|---|---|---|']
    for name, accs in results.items():
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f'| {name} | {statistics.mean(accs):.2f} | {std:.2f} | '
                     + ', '.join(f'{a:.2f}' for a in accs) + ' |')
    table = '\n'.join(lines)
    header = (f'Digits (scikit-learn, 1348 train / 449 test images, 16x16), seeds {args.seeds}, '
              f'CPU, {time.time() - start:.0f} s in total.')
    print('\n' + header + '\n\n' + table)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(header + '\n\n' + table + '\n')


if __name__ == '__main__':
    main()
