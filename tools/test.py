"""Evaluate a checkpoint with any mmkd_plugins / OpenMMLab config through mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--unsafe-load] [--non-strict]
                         [--cfg-options k=v ...]

CONFIG may inherit ours from anywhere (``_base_ = 'mmkd_plugins::...'``); CHECKPOINT is a path or URL,
unpickled weights-only unless ``--unsafe-load`` (see tools/train.py).

The checkpoint is checked against the config's model before anything is evaluated (mmengine alone loads
``load_from`` non-strictly, so a checkpoint of another model would report metrics of random weights):
any missing, unexpected or mis-shaped key is an error naming the counts and a few keys (``--non-strict``
loads the matching weights anyway); a distiller checkpoint for a plain model config is refused with the
conversion command; a file that is not a torch checkpoint (empty, truncated, text, ...) is named as
such. ``--out`` is written atomically and refuses to replace an existing file without ``--force``.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from train import add_unsafe_load_argument, load_config, setup_cpu_distributed  # noqa: E402

from mmkd_plugins.utils.safe_output import add_force_argument, atomic_write, check_output  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--out', help='dump the metrics to this json/pkl file')
    parser.add_argument('--amp', action='store_true', help='test with mixed precision')
    add_unsafe_load_argument(parser)
    parser.add_argument('--non-strict', action='store_true',
                        help='load the checkpoint even when some keys are missing / unexpected / '
                        'mis-shaped (the rest stays randomly initialised; default: an error)')
    add_force_argument(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def check_checkpoint(runner: Runner, checkpoint: str, strict: bool = True) -> None:
    """Refuse a checkpoint that does not fit the runner's model (see the module doc)."""
    from mmengine.model import is_model_wrapper

    from mmkd_plugins.distillers.teacher import read_state_dict
    from mmkd_plugins.utils.checkpoint_files import check_checkpoint_file
    from mmkd_plugins.utils.checkpoint_match import check_state_dict_matches
    check_checkpoint_file(checkpoint)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    check_state_dict_matches(model.state_dict(), read_state_dict(checkpoint), checkpoint, strict)


def main(argv=None):
    args = parse_args(argv)
    if args.out:
        check_output(args.out, [args.config, args.checkpoint], args.force, '--out')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    check_checkpoint(runner, args.checkpoint, strict=not args.non_strict)
    metrics = runner.test()
    if args.out:
        from mmengine.fileio import dump
        ext = osp.splitext(args.out)[1].lower().lstrip('.') or 'json'
        with atomic_write(args.out, 'w' if ext in ('json', 'yaml', 'yml') else 'wb') as fh:
            dump(metrics, fh, file_format='yaml' if ext == 'yml' else ext)
    return metrics


if __name__ == '__main__':
    run_main(main)
