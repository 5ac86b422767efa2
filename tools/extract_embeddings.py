"""Embed every image of a dataset split with a model and write an embedding file.

    python tools/extract_embeddings.py CONFIG CHECKPOINT OUT.pth [--split test] [--kind old]

The file (see ``mmkd_plugins/models/compatible/embedding_io.py``) holds the embeddings, labels, dataset
indices and, when the model has a classifier head, its logits (needed for uncertainty-based backfilling of
an old gallery). For a distiller config (``CompatibleDistiller``) the student (the new model) is embedded;
a distiller checkpoint is read as the student's weights.

Refuses (one line each): an output that is the config or the checkpoint, or that exists (``--force``
replaces it; the file is written atomically); a checkpoint that is not a torch checkpoint or does not
match the model (missing / unexpected / mis-shaped keys); embeddings with NaN / infinite rows.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmkd_plugins.models.compatible.embed import (build_embedding_model,  # noqa: E402
                                                  build_split_dataloader, extract_embeddings, load_config)
from mmkd_plugins.models.compatible.embedding_io import (VERSION_NEW, VERSION_OLD,  # noqa: E402
                                                         save_embeddings)
from mmkd_plugins.utils.safe_output import add_force_argument, check_output  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Extract embeddings of a dataset split to a file.')
    parser.add_argument('config', help='model config (plain classifier or CompatibleDistiller)')
    parser.add_argument('checkpoint', help='checkpoint of the model')
    parser.add_argument('out', help='output embedding file (.pth)')
    parser.add_argument('--split', default='test', choices=['train', 'val', 'test'],
                        help='which dataloader of the config to embed (default: test)')
    parser.add_argument('--kind', default='old', choices=['old', 'new'],
                        help='which model this is, stored as the per-row version flag (default: old)')
    parser.add_argument('--no-logits', action='store_true', help='do not store classifier logits')
    parser.add_argument('--batch-size', type=int, default=None, help='override the batch size')
    parser.add_argument('--device', default='cpu', help='device (default: cpu)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. test_dataloader.dataset.split=all')
    add_force_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_output(args.out, [args.config, args.checkpoint], args.force, 'output')
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model = build_embedding_model(cfg, args.checkpoint, args.device)
    loader = build_split_dataloader(cfg, args.split, args.batch_size)
    out = extract_embeddings(model, loader, with_logits=not args.no_logits, progress=not args.no_progress)
    version = VERSION_OLD if args.kind == 'old' else VERSION_NEW
    n = out['embeddings'].shape[0]
    save_embeddings(args.out, out['embeddings'], out.get('labels'), out.get('logits'), out['indices'],
                    torch.full((n, ), version, dtype=torch.long),
                    meta=dict(config=osp.abspath(args.config), checkpoint=osp.abspath(args.checkpoint),
                              split=args.split, kind=args.kind))
    print(f'wrote {n} embeddings of dim {out["embeddings"].shape[1]} '
          f'({"with" if "logits" in out else "without"} logits) to {args.out}')
    return args.out


if __name__ == '__main__':
    run_main(main)
