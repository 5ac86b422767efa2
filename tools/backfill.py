"""Backfill an old gallery with a new model, and evaluate the hot-refresh upgrade.

Re-embed the gallery in steps, the most uncertain old embeddings first (or another order):

    python tools/backfill.py run CONFIG CHECKPOINT OLD_GALLERY.pth OUT_DIR [--order entropy] [--steps 10]

writes OUT_DIR/schedule.json (dataset indices re-embedded per step) and OUT_DIR/gallery_step{k}.pth
(the whole gallery after step k, per-row ``version`` flags). The gallery images are read from the config's
``--split`` dataloader (the dataset the old gallery was extracted from; rows are matched by index).

Evaluate, from embedding files only (no images): mAP / top-1 / NFR of new queries against a gallery with a
fraction f backfilled, for f on a grid, plus the cross-model table and a plot:

    python tools/backfill.py evaluate --query NEW_QUERY.pth --old-gallery OLD.pth --new-gallery NEW.pth \
        [--old-query OLD_QUERY.pth] [--bict-gallery UPGRADED.pth] [--order entropy] [--fractions 11] \
        [--plot hot_refresh.png]

Query / gallery pairs with the same dataset index are left out of the ranking (leave-one-out when the
queries are the gallery items).

Refuses (one line each): rows of two files are matched by their stored dataset indices, and the same
index must carry the same label (files of another split are an error, not re-paired by position);
``run`` checks that the re-embedded images have the gallery's labels and that ``--split`` is the split
the gallery was extracted from; NaN / infinite embeddings (naming file and rows); embedding widths that
do not fit (the queries and ``--new-gallery`` / ``--bict-gallery`` must have the new model's width,
``--old-query`` the old gallery's, and old embeddings are only ever zero-padded up to the new width);
outputs that exist (``--force`` replaces them) or that are an input. Files are written atomically.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmkd_plugins.engine.hooks.backfill import (BACKFILL_ORDERS, backfill_gallery,  # noqa: E402
                                                backfill_order)
from mmkd_plugins.evaluation.metrics.hot_refresh import (format_hot_refresh,  # noqa: E402
                                                         hot_refresh_curve, plot_hot_refresh)
from mmkd_plugins.models.compatible.embedding_io import align_rows, load_embeddings  # noqa: E402
from mmkd_plugins.utils.safe_output import add_force_argument, check_output, check_output_files  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Backfill a gallery / evaluate a hot-refresh upgrade.')
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('run', help='re-embed an old gallery with the new model, in ordered steps')
    run.add_argument('config', help='config of the new model (plain classifier or CompatibleDistiller)')
    run.add_argument('checkpoint', help='checkpoint of the new model')
    run.add_argument('gallery', help='old gallery embedding file (with logits for uncertainty orders)')
    run.add_argument('out_dir', help='output folder')
    run.add_argument('--split', default='test', choices=['train', 'val', 'test'],
                     help='dataloader whose dataset holds the gallery images (default: test)')
    run.add_argument('--order', default='entropy', choices=BACKFILL_ORDERS)
    run.add_argument('--steps', type=int, default=10)
    run.add_argument('--seed', type=int, default=0)
    run.add_argument('--device', default='cpu')
    run.add_argument('--no-progress', action='store_true')
    run.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                     help='override config entries (use the same as when the gallery was extracted)')
    add_force_argument(run)

    ev = sub.add_parser('evaluate', help='hot-refresh curve and cross-model table from embedding files')
    ev.add_argument('--query', required=True, help='new-model query embeddings')
    ev.add_argument('--old-gallery', required=True, help='old-model gallery embeddings')
    ev.add_argument('--new-gallery', required=True, help='new-model embeddings of the same gallery items')
    ev.add_argument('--old-query', help='old-model query embeddings (for mAP(old,old) and NFR)')
    ev.add_argument('--bict-gallery', help='old gallery upgraded by tools/bict_upgrade.py')
    ev.add_argument('--order', default='entropy', choices=BACKFILL_ORDERS)
    ev.add_argument('--seed', type=int, default=0)
    ev.add_argument('--fractions', type=int, default=11, help='number of f values in [0, 1]')
    ev.add_argument('--topk', type=int, default=None, help='mAP@K (default: full ranking)')
    ev.add_argument('--plot', default=None, help='PNG file of mAP and NFR vs f')
    add_force_argument(ev)
    return parser.parse_args(argv)


def check_widths(args, query, g_old, g_new, q_old, g_bict) -> None:
    """Embedding widths that can be compared: new-model files share one width, ``--old-query`` has the
    old gallery's, and the old width is at most the new one (old rows are zero-padded up to it)."""
    def dim(d):
        return d['embeddings'].shape[1]
    pairs = [(f'--query {args.query}', query, f'--new-gallery {args.new_gallery}', g_new)]
    if q_old is not None:
        pairs.append((f'--old-query {args.old_query}', q_old, f'--old-gallery {args.old_gallery}', g_old))
    if g_bict is not None:
        pairs.append((f'--bict-gallery {args.bict_gallery}', g_bict, f'--new-gallery {args.new_gallery}', g_new))
    for name_a, a, name_b, b in pairs:
        if dim(a) != dim(b):
            raise ValueError(f'{name_a} has {dim(a)}-d embeddings but {name_b} has {dim(b)}-d: they must come '
                             'from the same model')
    if dim(g_old) > dim(g_new):
        raise ValueError(f'--old-gallery {args.old_gallery} has {dim(g_old)}-d embeddings, wider than the new '
                         f"model's {dim(g_new)}-d (--new-gallery {args.new_gallery}): old embeddings are compared "
                         'by zero-padding them up to the new width, never by cutting; are old and new swapped?')


def evaluate(args) -> dict:
    if args.plot:
        check_output(args.plot, [args.query, args.old_gallery, args.new_gallery, args.old_query,
                                 args.bict_gallery], args.force, '--plot')
    query = load_embeddings(args.query)
    g_old = load_embeddings(args.old_gallery)
    g_new = align_rows(g_old, load_embeddings(args.new_gallery), f'--new-gallery {args.new_gallery}')
    q_old = align_rows(query, load_embeddings(args.old_query), f'--old-query {args.old_query}') \
        if args.old_query else None
    g_bict = align_rows(g_old, load_embeddings(args.bict_gallery), f'--bict-gallery {args.bict_gallery}') \
        if args.bict_gallery else None
    for name, d in ((f'--query {args.query}', query), (f'--old-gallery {args.old_gallery}', g_old)):
        if 'labels' not in d:
            raise ValueError(f'{name}: the file has no labels; retrieval evaluation needs them')
    check_widths(args, query, g_old, g_new, q_old, g_bict)
    exclude = query['indices'][:, None] == g_old['indices'][None, :]
    order = backfill_order(g_old['embeddings'].shape[0], args.order, g_old.get('logits'), args.seed)
    res = hot_refresh_curve(query['embeddings'], g_old['embeddings'], g_new['embeddings'], query['labels'],
                            g_old['labels'], order, list(np.linspace(0, 1, args.fractions)),
                            q_old=None if q_old is None else q_old['embeddings'],
                            g_bict=None if g_bict is None else g_bict['embeddings'],
                            exclude=exclude if exclude.any() else None, topk=args.topk,
                            bict_objective=None if g_bict is None else g_bict['meta'].get('bict_objective'))
    print(f'hot-refresh evaluation: {query["embeddings"].shape[0]} queries, {g_old["embeddings"].shape[0]} '
          f'gallery items, {args.order} backfill order')
    print(format_hot_refresh(res))
    if args.plot:
        print(f'plot: {plot_hot_refresh(res, args.plot)}')
    return res


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'evaluate':
        return evaluate(args)
    from mmkd_plugins.models.compatible.embed import (build_embedding_model, build_split_dataloader,
                                                      load_config)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    stored_split = load_embeddings(args.gallery)['meta'].get('split')
    if stored_split is not None and stored_split != args.split:
        raise ValueError(f'{args.gallery}: the gallery was extracted from the {stored_split!r} split but '
                         f'--split is {args.split!r}: its rows would be re-embedded from other images')
    check_output_files([osp.join(args.out_dir, 'schedule.json')] +
                       [osp.join(args.out_dir, f'gallery_step{k}.pth') for k in range(1, args.steps + 1)],
                       [args.gallery, args.checkpoint, args.config], args.force)
    model = build_embedding_model(cfg, args.checkpoint, args.device)
    loader = build_split_dataloader(cfg, args.split)
    files = backfill_gallery(model, loader, args.gallery, args.out_dir, args.order, args.steps, args.seed,
                             progress=not args.no_progress)
    print(f'backfilled in {len(files)} steps ({args.order} order): '
          f'{osp.join(args.out_dir, "schedule.json")}, {files[-1]}')
    return files


if __name__ == '__main__':
    run_main(main)
