"""Evaluate a folder of predicted face meshes on REALY (region-wise errors in mm).

Example::

    python tools/realy_evaluate.py data/REALY predictions/ \
        --template-obj data/REALY/templates/HIFI3D.obj --template-keypoints data/REALY/templates/HIFI3D.txt \
        --out-dir work_dirs/realy_eval [--error-maps] [--template-mask mask.txt] [--no-allow-reflection]

Writes ``<out-dir>/realy_errors.csv`` (one row per image: image, subject, one column per region, the
image's mean), ``<out-dir>/realy_summary.csv`` and ``realy_summary.json`` (per region mean, median,
std; ``all`` = mean of the region means), and with ``--error-maps``
``<out-dir>/error_maps/<image>/<region>.ply`` (scan regions coloured by error). See
configs/realy/README.md for the folder layout.

Refuses (one line each, naming the file and line): missing or malformed inputs (meshes, keypoint files,
template mask); result files that already exist in ``--out-dir`` (``--force`` replaces them; also an
existing ``error_maps`` folder with ``--error-maps``) or that are one of the inputs. Files are written
atomically, the ``.ply`` error maps included (an interrupted run leaves the previous file or none).
"""
import argparse
import csv
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout too

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

import numpy as np  # noqa: E402

from mmkd_plugins.utils.safe_output import add_force_argument, atomic_write, check_output_files  # noqa: E402

RESULT_FILES = ('realy_errors.csv', 'realy_summary.csv', 'realy_summary.json')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='REALY region-wise evaluation of predicted meshes')
    parser.add_argument('data_root', help='REALY benchmark folder (keypoints, region scans, scales)')
    parser.add_argument('pred_dir', help='folder of predicted meshes <subject>_<view>.obj')
    parser.add_argument('--template-obj', required=True, help='template mesh of the prediction topology')
    parser.add_argument('--template-keypoints', required=True,
                        help='barycentric keypoint file of the template (85 x [tri, w1, w2], JSON)')
    parser.add_argument('--out-dir', required=True, help='where the CSV/JSON (and error maps) go')
    parser.add_argument('--regions', nargs='+', default=['nose', 'mouth', 'forehead', 'cheek'])
    parser.add_argument('--pred-suffix', default='.obj')
    parser.add_argument('--error-maps', action='store_true', help='write error-coloured scan regions')
    parser.add_argument('--error-map-max', type=float, default=5.0, help='mm shown as full red')
    parser.add_argument('--icp-max-iter', type=int, default=100)
    parser.add_argument('--template-mask', default=None,
                        help="REALY's --template_mask: one 0/1 per template vertex (comma- or line-separated); "
                             'faces with a masked-out vertex are dropped from the prediction before the '
                             'closest points P* / P** (the alignments use every face)')
    parser.add_argument('--allow-reflection', action=argparse.BooleanOptionalAction, default=True,
                        help="keep reflections in the 7-point and Kabsch fits as REALY's code does "
                             '(default); --no-allow-reflection corrects them to det R = +1')
    parser.add_argument('--strict-checks', action='store_true',
                        help='refuse degenerate or non-manifold meshes (default: a warning naming the file '
                             'and the count, and the mesh is evaluated as REALY does)')
    parser.add_argument('--nicp-formulation', choices=['incremental', 'absolute'], default='incremental',
                        help="incremental: REALY's (each step solves affines on the deformed scan); "
                             'absolute: affines relative to the original scan (a deviation)')
    parser.add_argument('--nicp-stop-rule', choices=['realy', 'per_stage'], default='realy',
                        help="realy: REALY's (test before each step, carried across stages); per_stage: "
                             'at least one step per stage (a deviation)')
    parser.add_argument('--no-merge-scan-vertices', action='store_true',
                        help='compute the error on the scan vertices as in the files (REALY merges '
                             'duplicate vertices first; a deviation)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_force_argument(parser)
    return parser.parse_args(argv)


def write_results(out_dir, rows, summary, regions):
    """Write ``realy_errors.csv``, ``realy_summary.csv`` and ``realy_summary.json``."""
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(osp.join(out_dir, 'realy_errors.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['image', 'subject'] + list(regions) + ['mean'])
        for r in rows:
            errs = [r['errors'][k] for k in regions]
            w.writerow([r['img_id'], r['subject']] + [f'{e:.6f}' for e in errs] + [f'{np.mean(errs):.6f}'])
    with atomic_write(osp.join(out_dir, 'realy_summary.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['region', 'mean', 'median', 'std'])
        for k in regions:
            w.writerow([k] + [f'{summary[f"{k}_{s}"]:.6f}' for s in ('mean', 'median', 'std')])
        w.writerow(['all', f'{summary["all"]:.6f}', '', ''])
    with atomic_write(osp.join(out_dir, 'realy_summary.json'), 'w') as f:
        json.dump(dict(num_images=len(rows), **summary), f, indent=2)


def main(argv=None):
    args = parse_args(argv)
    check_output_files([osp.join(args.out_dir, n) for n in RESULT_FILES],
                       [args.template_obj, args.template_keypoints, args.template_mask], args.force)
    maps = osp.join(args.out_dir, 'error_maps')
    if args.error_maps and not args.force and osp.isdir(maps) and os.listdir(maps):
        raise FileExistsError(f'{maps} already holds error maps; pass --force to replace them')
    from tqdm import tqdm

    from mmkd_plugins.datasets.realy import REALYDataset
    from mmkd_plugins.evaluation.metrics.realy import REALYMetric

    dataset = REALYDataset(args.data_root, pred_root=args.pred_dir, regions=args.regions,
                           pred_suffix=args.pred_suffix, strict_mesh_checks=args.strict_checks)
    metric = REALYMetric(args.template_obj, args.template_keypoints, regions=args.regions,
                         icp_cfg=dict(max_iter=args.icp_max_iter),
                         nicp_cfg=dict(formulation=args.nicp_formulation, stop_rule=args.nicp_stop_rule),
                         template_mask=args.template_mask, allow_reflection=args.allow_reflection,
                         merge_scan_vertices=not args.no_merge_scan_vertices,
                         strict_mesh_checks=args.strict_checks,
                         error_map_dir=osp.join(args.out_dir, 'error_maps') if args.error_maps else None,
                         error_map_max=args.error_map_max, overwrite=args.force)
    rows = []
    start = time.perf_counter()
    bar = tqdm(range(len(dataset)), desc='REALY', unit='mesh', disable=args.no_progress)
    for idx in bar:
        sample = dataset[idx]['data_samples']
        rows.append(metric.evaluate_sample(sample))
        bar.set_postfix(img=rows[-1]['img_id'])
    summary = metric.compute_metrics(rows)
    write_results(args.out_dir, rows, summary, args.regions)
    print(f'REALY on {len(rows)} predictions ({time.perf_counter() - start:.1f} s), mm:')
    print('region    mean    median  std')
    for k in args.regions:
        print(f'{k:<9} {summary[k + "_mean"]:.3f}   {summary[k + "_median"]:.3f}   {summary[k + "_std"]:.3f}')
    print(f'all       {summary["all"]:.3f}')
    print(f'results in {args.out_dir}')
    return summary


if __name__ == '__main__':
    run_main(main)
