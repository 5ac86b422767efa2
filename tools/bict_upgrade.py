"""Upgrade a stored OLD gallery embedding file to the new embedding space with BiCT's transformation psi,
without the images.

    # psi trained through a config (configs/compatible/*bict*.py), checkpoint of that run:
    python tools/bict_upgrade.py OLD_GALLERY.pth OUT.pth --transformation work_dirs/bict/iter_200.pth
    # or fit psi here from embeddings of the same training images (tools/extract_embeddings.py), with
    # objective 'new_classifier' (default: CE through the new model's frozen classifier, read from its
    # checkpoint) or 'regression' (psi(old) -> new embedding):
    python tools/bict_upgrade.py OLD_GALLERY.pth OUT.pth --fit-old train_old.pth \
        --new-checkpoint new.pth [--classifier-key head.fc] [--save-transformation psi.pth]
    python tools/bict_upgrade.py OLD_GALLERY.pth OUT.pth --fit-old train_old.pth --fit-new train_new.pth \
        --objective regression

The objective psi was trained with is written into the output's meta (``bict_objective``) and named by
``tools/backfill.py evaluate`` in every BiCT result.

The output keeps labels, indices and the old logits (old uncertainty stays valid for backfilling) and marks
every row as upgraded (version 2).

Refuses (one line each): an output (or ``--save-transformation``) that is one of the inputs or already
exists (``--force`` replaces an existing one), written atomically; NaN / infinite embeddings (naming file
and rows); a gallery whose width is not psi's input width; ``--fit-new`` rows that do not match
``--fit-old`` by dataset index and label.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

import torch  # noqa: E402

from mmkd_plugins.models.compatible.bict import (fit_bict_transformation,  # noqa: E402
                                                 load_transformation, save_transformation)
from mmkd_plugins.models.compatible.embedding_io import (VERSION_BICT, VERSION_OLD,  # noqa: E402
                                                         align_rows, load_embeddings,
                                                         save_embeddings)
from mmkd_plugins.utils.safe_output import add_force_argument, check_output  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Upgrade old gallery embeddings with a BiCT transformation.')
    parser.add_argument('gallery', help='old gallery embedding file')
    parser.add_argument('out', help='output (upgraded) embedding file')
    parser.add_argument('--transformation', help='psi: a file from --save-transformation or a training '
                        'checkpoint of a BiCT transformation config')
    parser.add_argument('--residual', action='store_true',
                        help='the checkpoint\'s transformation was built with residual=True')
    parser.add_argument('--fit-old', help='old-model embeddings of training images (fit psi here)')
    parser.add_argument('--fit-new', help='new-model embeddings of the same training images (regression)')
    parser.add_argument('--objective', choices=['new_classifier', 'regression'], default=None,
                        help="fitting: 'new_classifier' (default) or 'regression'; with --transformation: "
                        'names the objective when the checkpoint does not record it')
    parser.add_argument('--new-checkpoint', help="new model checkpoint holding its classifier "
                        "('new_classifier' objective)")
    parser.add_argument('--classifier-key', default='head.fc',
                        help='module path of the new classifier in that checkpoint')
    parser.add_argument('--regression-weight', type=float, default=0.0,
                        help="regression added to the 'new_classifier' objective")
    parser.add_argument('--hidden-dim', type=int, default=2048)
    parser.add_argument('--num-layers', type=int, default=2)
    parser.add_argument('--epochs', type=int, default=50)
    parser.add_argument('--lr', type=float, default=5e-4)
    parser.add_argument('--loss', default='mse', choices=['mse', 'cosine'])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--save-transformation', help='where to write the fitted psi')
    parser.add_argument('--batch-size', type=int, default=4096, help='rows transformed at once')
    add_force_argument(parser)
    return parser.parse_args(argv)


def read_classifier(path: str, key: str):
    """(weight (C, D), bias (C,) or None) of module ``key`` in a checkpoint (plain or distiller:
    ``student.`` prefix)."""
    from mmkd_plugins.distillers.teacher import read_state_dict
    state = read_state_dict(path)
    for prefix in ('', 'student.'):
        if f'{prefix}{key}.weight' in state:
            return state[f'{prefix}{key}.weight'].float(), state.get(f'{prefix}{key}.bias')
    raise SystemExit(f'{path}: no classifier "{key}.weight" (set --classifier-key)')


def main(argv=None):
    args = parse_args(argv)
    fitting = args.fit_old is not None
    if (args.transformation is None) == (not fitting):
        raise SystemExit('give either --transformation, or --fit-old (with --new-checkpoint or --fit-new)')
    objective = args.objective or ('new_classifier' if fitting else None)
    if fitting and objective == 'new_classifier' and args.new_checkpoint is None:
        raise SystemExit("objective 'new_classifier' needs --new-checkpoint (the new model's classifier); "
                         'or use --objective regression with --fit-new')
    if fitting and (objective == 'regression' or args.regression_weight) and args.fit_new is None:
        raise SystemExit('the regression needs --fit-new (new-model embeddings of the same images)')
    inputs = [args.gallery, args.transformation, args.fit_old, args.fit_new, args.new_checkpoint]
    check_output(args.out, inputs, args.force, 'output')
    if args.save_transformation:
        check_output(args.save_transformation, inputs + [args.out], args.force, '--save-transformation')
    gallery = load_embeddings(args.gallery)
    if (gallery['version'] != VERSION_OLD).any():
        raise SystemExit(f'{args.gallery}: only old rows (version 0) can be upgraded; '
                         f'{int((gallery["version"] != VERSION_OLD).sum())} rows are not old')
    if args.transformation is not None:
        psi = load_transformation(args.transformation, dict(residual=True) if args.residual else None)
        if args.objective is not None:
            if psi.objective is not None and psi.objective != args.objective:
                raise SystemExit(f'{args.transformation} was trained with objective {psi.objective!r}, '
                                 f'not {args.objective!r}')
            psi.objective = args.objective
        if psi.objective is None:
            raise SystemExit(f'{args.transformation} does not record its objective: give --objective')
    else:
        old = load_embeddings(args.fit_old)
        new = align_rows(old, load_embeddings(args.fit_new), f'--fit-new {args.fit_new}')['embeddings'] \
            if args.fit_new else None
        cls = dict()
        if objective == 'new_classifier':
            if 'labels' not in old:
                raise SystemExit(f'{args.fit_old}: no labels; the new_classifier objective needs them')
            weight, bias = read_classifier(args.new_checkpoint, args.classifier_key)
            cls = dict(labels=old['labels'], new_weight=weight, new_bias=bias)
        psi = fit_bict_transformation(old['embeddings'], new, args.hidden_dim, args.num_layers,
                                      kind=args.loss, epochs=args.epochs, lr=args.lr, seed=args.seed,
                                      objective=objective, regression_weight=args.regression_weight, **cls)
        if args.save_transformation:
            save_transformation(args.save_transformation, psi)
            print(f'wrote the transformation to {args.save_transformation}')
    emb = gallery['embeddings']
    if emb.shape[1] != psi.old_dim:
        raise SystemExit(f'{args.gallery}: embeddings have dim {emb.shape[1]} but the transformation '
                         f'expects {psi.old_dim}')
    with torch.no_grad():
        up = torch.cat([psi(emb[i:i + args.batch_size]) for i in range(0, emb.shape[0], args.batch_size)])
    save_embeddings(args.out, up, gallery.get('labels'), gallery.get('logits'), gallery['indices'],
                    torch.full((up.shape[0], ), VERSION_BICT, dtype=torch.long),
                    meta=dict(gallery['meta'], upgraded_from=osp.abspath(args.gallery), kind='bict',
                              bict_objective=psi.objective))
    print(f'upgraded {up.shape[0]} embeddings {psi.old_dim} -> {psi.new_dim} dims '
          f'(BiCT objective: {psi.objective}): {args.out}')
    return args.out


if __name__ == '__main__':
    run_main(main)
