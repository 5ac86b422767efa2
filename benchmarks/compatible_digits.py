"""Compatible model upgrade on the digits demo (CPU): old model, independent new model, BCT, RACT, UniBCT
and BiCT with both of its objectives ('new_classifier', 'regression'), with the cross-model table and the
hot-refresh curves (entropy vs random backfill order).

    python benchmarks/compatible_digits.py [--epochs 6] [--threads 1]

Writes benchmarks/results/compatible_digits.md and compatible_digits.png; work files in
benchmarks/tmp/compatible_digits/.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import time

import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(REPO, 'tools'))
import backfill as backfill_tool  # noqa: E402
import convert_kd_ckpt_to_student  # noqa: E402
import extract_embeddings  # noqa: E402
import train as train_tool  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmkd_plugins.utils.machine import cpu_model  # noqa: E402

CFG = osp.join(REPO, 'configs', 'compatible')


def run(config, work_dir, epochs, *options):
    opts = [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            f'default_hooks.checkpoint.interval={epochs}', f'param_scheduler.T_max={epochs}',
            'log_level=WARNING']
    args = train_tool.parse_args([osp.join(CFG, config), '--work-dir', work_dir, '--cfg-options', *opts,
                                  *options])
    runner = Runner.from_cfg(train_tool.build_config(args))
    runner.train()
    return osp.join(work_dir, f'epoch_{epochs}.pth'), runner.test()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--epochs', type=int, default=6)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = osp.join(REPO, 'benchmarks', 'tmp', 'compatible_digits')
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.time()
    old, m_old = run('digits_old_model.py', osp.join(tmp, 'old'), args.epochs)
    res = dict(old=m_old)
    ckpts = {}
    ckpts['independent'], res['independent'] = run('digits_new_model.py', osp.join(tmp, 'independent'),
                                                   args.epochs)
    # UniBCT prototype refreshes at the reference's fractions of training (epochs 10 and 20 of 25)
    refresh = sorted({int(round(args.epochs * 10 / 25)), int(round(args.epochs * 20 / 25))})
    extra = dict(unibct=[f'custom_hooks.1.epochs={refresh}'.replace(' ', '')])
    for method in ('bct', 'ract', 'unibct'):
        ckpts[method], res[method] = run(f'digits_{method}.py', osp.join(tmp, method), args.epochs,
                                         f'model.teacher_ckpt={old}', *extra.get(method, []))
    student = osp.join(tmp, 'bct_student.pth')
    convert_kd_ckpt_to_student.convert(ckpts['bct'], student)
    for name, cfg in (('bict_new_classifier', 'digits_bict_transformation.py'),
                      ('bict_regression', 'digits_bict_transformation_regression.py')):
        _, res[name] = run(cfg, osp.join(tmp, name), args.epochs, f'model.student.old_ckpt={old}',
                           f'model.teacher_ckpt={student}', 'optim_wrapper.optimizer.lr=0.005')
    # files: old gallery, new queries; entropy vs random backfill of the BCT model and the independent one
    g_old = extract_embeddings.main([osp.join(CFG, 'digits_old_model.py'), old, osp.join(tmp, 'g_old.pth'),
                                     '--no-progress'])
    curves = {}
    for name, cfg in (('bct', 'digits_bct.py'), ('independent', 'digits_new_model.py')):
        q = extract_embeddings.main([osp.join(CFG, cfg), ckpts[name], osp.join(tmp, f'q_{name}.pth'),
                                     '--kind', 'new', '--no-progress'])
        for order in ('entropy', 'random'):
            plot = osp.join(REPO, 'benchmarks', 'results', 'compatible_digits.png') \
                if (name, order) == ('bct', 'entropy') else None
            curves[name, order] = backfill_tool.main(
                ['evaluate', '--query', q, '--old-query', g_old, '--old-gallery', g_old, '--new-gallery', q,
                 '--order', order, '--fractions', '6'] + (['--plot', plot] if plot else []))
    elapsed = time.time() - t0

    cpu = cpu_model()
    lines = ['# Compatible upgrade on the digits demo (CPU)', '',
             f'scikit-learn digits (1797 8x8 images upsampled to 16x16), extended-class split (old model: 5 '
             f'classes, new: 10), held-out test split (360 images) as queries and gallery (leave-one-out). '
             f'{args.epochs} epochs per model. Old: ResNet-18 w4 + 32-d embedding; new: ResNet-18 w8 + 48-d '
             'embedding (truncated to 32-d against old embeddings). UniBCT prototypes refreshed at the start '
             f'of epochs {refresh} (0-based; the spec\'s 10 and 20 of 25 at the same fractions). BiCT: psi '
             'on top of the BCT model, one row per objective.', '',
             f'Measured with `python benchmarks/compatible_digits.py --epochs {args.epochs} --threads '
             f'{args.threads}` on {cpu} ({os.cpu_count()} cores, shared with other jobs), torch '
             f'{torch.__version__} with {args.threads} thread(s), CPU only: {elapsed:.0f} s wall in all '
             '(training, test, embedding extraction and the file-based evaluation).', '',
             '| new model | top-1 acc | mAP(new,old) | mAP(old,old) | mAP(new,new) | compatible | '
             'mAP(new,BiCT(old)) |', '|---|---|---|---|---|---|---|']
    for name in ('independent', 'bct', 'ract', 'unibct', 'bict_new_classifier', 'bict_regression'):
        m = res[name]
        if name == 'independent':
            t = curves['independent', 'entropy']['table']
            row = [m['accuracy/top1'], t['mAP(new,old)'], t['mAP(old,old)'], t['mAP(new,new)'],
                   t['compatible'], None]
        else:
            row = [m.get('accuracy/top1'), m['hot_refresh/mAP_new_old'], m['hot_refresh/mAP_old_old'],
                   m['hot_refresh/mAP_new_new'], bool(m['hot_refresh/compatible']),
                   m.get(f'hot_refresh/mAP_new_{name}') if name.startswith('bict') else None]
        label = dict(bict_new_classifier="BCT + BiCT psi, objective 'new_classifier'",
                     bict_regression="BCT + BiCT psi, objective 'regression'").get(name, name)
        cells = ['-' if v is None else (('yes' if v else 'no') if isinstance(v, bool) else
                                        (f'{v:.1f}' if v > 1.5 else f'{v:.3f}')) for v in row]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Hot-refresh (new queries; gallery with a fraction f re-embedded, rest old):', '',
              '| model, backfill order | ' + ' | '.join(f'f={r["f"]:.1f}' for r in
                                                      curves['bct', 'entropy']['curves']['old']) + ' |',
              '|---|' + '---|' * len(curves['bct', 'entropy']['curves']['old'])]
    for (name, order), c in curves.items():
        rows = c['curves']['old']
        lines.append(f'| {name}, {order}: mAP | ' + ' | '.join(f'{r["mAP"]:.3f}' for r in rows) + ' |')
        lines.append(f'| {name}, {order}: NFR | ' + ' | '.join(f'{r["NFR"]:.3f}' for r in rows) + ' |')
    lines += ['', '![hot-refresh curve of the BCT model, entropy order](compatible_digits.png)', '']
    out = osp.join(REPO, 'benchmarks', 'results', 'compatible_digits.md')
    with open(out, 'w') as f:
        f.write('\n'.join(lines))
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
