"""Benchmark: REALY evaluation time per subject (4 regions), split by stage.

Two parts, both CPU only (the evaluation is scipy/trimesh geometry, no GPU path):

- parity inputs (``tests/data/realy_parity/inputs``, the inputs on which the official REALY code was
  run, see the README there): per-subject time of ``evaluate_prediction`` with the defaults (REALY's
  incremental NICP) and, where the installed package has it, with the former absolute NICP option;
  plus the errors against ``official_errors.csv``;
- procedural faces (``mmkd_plugins.evaluation.realy.synthetic``) at a few mesh sizes: a perfect
  prediction in a random similarity frame against one subject.

Every time is the minimum over ``--repeats`` runs (the machine may be shared). Results go to
benchmarks/results/realy_eval.md; anything below a line ``<!-- manual -->`` in that file is kept.

    python benchmarks/realy_eval.py [--sizes small medium large] [--repeats 3] [--no-parity]
"""
import argparse
import csv
import inspect
import os
import os.path as osp
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmkd_plugins.evaluation.realy import (REGIONS, REALYTemplate, evaluate_prediction,  # noqa: E402
                                           load_keypoints, load_mesh, optimal_step_nicp)
from mmkd_plugins.evaluation.realy import synthetic as syn  # noqa: E402
from mmkd_plugins.evaluation.realy.pipeline import STAGES  # noqa: E402

PARITY = osp.join(ROOT, 'tests', 'data', 'realy_parity')
MANUAL = '<!-- manual -->'
# name: (template grid, scan grid)
SIZES = {
    'small': ((40, 50), (60, 75)),
    'medium': ((80, 100), (120, 150)),
    'large': ((120, 150), (180, 225)),
}
LEGACY_NICP = dict(formulation='absolute', stop_rule='per_stage', max_steps_without_landmarks=11)


def timed(fn, repeats):
    """``(min wall seconds, min CPU seconds of this process, result of the fastest run)`` over
    ``repeats`` calls of ``fn``. The CPU time is less sensitive to other jobs on a shared machine."""
    runs = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0, out))
    best = min(runs, key=lambda r: r[0])
    return best[0], min(r[1] for r in runs), best[2]


def load_subject(root, sid, pred_name):
    pred, _ = load_mesh(osp.join(root, 'pred', pred_name))
    gt_kp = load_keypoints(osp.join(root, 'REALY_HIFI3D_keypoints', f'{sid}.obj'))
    scans = {r: load_mesh(osp.join(root, 'REALY_scan_region', str(sid), f'{r}.obj')) for r in REGIONS}
    return pred, gt_kp, scans


def run_parity(repeats):
    inputs = osp.join(PARITY, 'inputs')
    template = REALYTemplate.from_files(osp.join(inputs, 'template', 'template.obj'),
                                        osp.join(inputs, 'template', 'template.txt'))
    scales = np.loadtxt(osp.join(inputs, 'metrical_scale.txt'), ndmin=1)
    with open(osp.join(PARITY, 'official_errors.csv')) as f:
        official = {(int(r['subject']), r['region']): float(r['error_mm']) for r in csv.DictReader(f)}
    has_legacy = 'formulation' in inspect.signature(optimal_step_nicp).parameters
    variants = {'default': None}
    if has_legacy:
        variants['former NICP option'] = LEGACY_NICP
    rows = []
    for sid in range(1, len(scales) + 1):
        pred, gt_kp, scans = load_subject(inputs, sid, f'{sid}_0.obj')
        for name, nicp_cfg in variants.items():
            total, cpu, out = timed(lambda: evaluate_prediction(pred, template, gt_kp, scans,
                                                                scale=scales[sid - 1], nicp_cfg=nicp_cfg),
                                    repeats)
            rows.append(dict(subject=sid, variant=name, total=total, cpu=cpu, timings=out['timings'],
                             errors=out['errors'],
                             rel={r: out['errors'][r] / official[(sid, r)] - 1 for r in REGIONS}))
            print('parity', sid, name, f'{total:.3f} s', f'cpu {cpu:.3f} s')
    return rows


def run_size(size, repeats, workdir):
    t_res, s_res = SIZES[size]
    root = osp.join(workdir, size)
    info = syn.write_benchmark(root, num_subjects=1, scan_res=s_res, template_res=t_res)
    syn.write_predictions(osp.join(root, 'pred'), info, views=1)
    t0 = time.perf_counter()
    template = REALYTemplate.from_files(info['template_obj'], info['template_keypoints'])
    pred, gt_kp, scans = load_subject(root, 1, '1_0.obj')
    load_s = time.perf_counter() - t0
    total, cpu, out = timed(lambda: evaluate_prediction(pred, template, gt_kp, scans, scale=info['scales'][1]),
                            repeats)
    return dict(size=size, template_vertices=template.num_vertices,
                scan_vertices={r: len(scans[r][0]) for r in REGIONS}, load=load_s, total=total, cpu=cpu,
                timings=out['timings'], errors=out['errors'])


def stage_cells(timings):
    return ' | '.join(f'{timings[s]:.3f}' for s in STAGES)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', nargs='*', default=list(SIZES), choices=list(SIZES))
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--no-parity', action='store_true', help='skip the parity inputs')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'realy_eval.md'))
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    parity = [] if args.no_parity else run_parity(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for size in args.sizes:
            res = run_size(size, args.repeats, tmp)
            print(size, f"{res['total']:.2f} s", {k: round(v, 3) for k, v in res['timings'].items()})
            results.append(res)
    threads = os.environ.get('OMP_NUM_THREADS', 'unset')
    lines = [
        '# REALY evaluation time per subject (4 regions)',
        '',
        f'Generated by `python benchmarks/realy_eval.py --repeats {args.repeats}` on CPU '
        f'({platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the '
        f'start, OMP_NUM_THREADS={threads}, '
        f'Python {platform.python_version()}, numpy {np.__version__}). No GPU is involved. Every time is '
        f'the minimum over {args.repeats} runs of `evaluate_prediction` for one subject (loading excluded), '
        'in seconds: stage and total wall-clock times of the fastest run, and the least CPU time of this '
        'process (`cpu`, less sensitive to other jobs on a shared machine).',
        '',
    ]
    if parity:
        lines += [
            '## Parity inputs (`tests/data/realy_parity/inputs`)',
            '',
            '4 subjects; template 2000 vertices, scan regions about 300 / 340 / 1040 / 710 vertices '
            '(nose / mouth / forehead / cheek). `rel` = largest |relative difference| of the 4 region '
            'errors from the official code (`official_errors.csv`). `former NICP option` = '
            "`nicp_cfg=dict(formulation='absolute', stop_rule='per_stage', max_steps_without_landmarks=11)` "
            '(the former default, with the current solver).',
            '',
            '| subject | variant | ' + ' | '.join(STAGES) + ' | total | cpu | max rel vs official |',
            '|' + '---|' * (5 + len(STAGES)),
        ]
        for r in parity:
            lines.append(f"| {r['subject']} | {r['variant']} | {stage_cells(r['timings'])} | {r['total']:.3f} | "
                         f"{r['cpu']:.3f} | {100 * max(abs(v) for v in r['rel'].values()):.4f} % |")
        for variant in dict.fromkeys(r['variant'] for r in parity):
            sel = [r for r in parity if r['variant'] == variant]
            lines.append(f"| mean | {variant} | "
                         + ' | '.join(f"{np.mean([r['timings'][s] for r in sel]):.3f}" for s in STAGES)
                         + f" | {np.mean([r['total'] for r in sel]):.3f} | {np.mean([r['cpu'] for r in sel]):.3f} | "
                         f"{100 * max(abs(v) for r in sel for v in r['rel'].values()):.4f} % |")
        lines.append('')
    if results:
        lines += [
            '## Procedural faces',
            '',
            'A perfect prediction in a random similarity frame against one subject.',
            '',
            '| size | template verts | scan verts (nose/mouth/forehead/cheek) | load | '
            + ' | '.join(STAGES) + ' | total (excl. load) | cpu |',
            '|' + '---|' * (6 + len(STAGES)),
        ]
        for r in results:
            sv = '/'.join(str(r['scan_vertices'][k]) for k in REGIONS)
            lines.append(f"| {r['size']} | {r['template_vertices']} | {sv} | {r['load']:.2f} | "
                         f"{stage_cells(r['timings'])} | {r['total']:.2f} | {r['cpu']:.2f} |")
        lines += [
            '',
            'Errors of these perfect predictions (mm, the discretisation floor): '
            + '; '.join(f"{r['size']}: " + ', '.join(f"{k} {r['errors'][k]:.3f}" for k in REGIONS)
                        for r in results),
            '',
        ]
    lines += [
        'Stages: `keypoints_global_align` = barycentric keypoints + 7-point similarity; `surface_index` = '
        'closest-point index of the prediction (built once, reused for all regions through rigid-motion '
        'queries); `region_icp` = the 4 rigid ICPs (closest surface points + keypoint pairs, Kabsch); '
        '`closest_points` = P* and P** queries; `nicp` = the optimal-step non-rigid ICP of the 4 scan '
        'regions (sparse normal equations, SuperLU).',
        '',
    ]
    manual = ''
    if osp.isfile(args.out):
        with open(args.out) as f:
            old = f.read()
        if MANUAL in old:
            manual = old[old.index(MANUAL):]
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write('\n'.join(lines) + ('\n' + manual if manual else ''))
    print('written', args.out)


if __name__ == '__main__':
    main()
