"""Evaluate a checkpoint with any mmkd_plugins / OpenMMLab config through mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--unsafe-load] [--cfg-options k=v ...]

CONFIG may inherit ours from anywhere (``_base_ = 'mmkd_plugins::...'``); CHECKPOINT is a path or URL,
unpickled weights-only unless ``--unsafe-load`` (see tools/train.py).
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from train import add_unsafe_load_argument, load_config, setup_cpu_distributed  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--out', help='dump the metrics to this json/pkl file')
    parser.add_argument('--amp', action='store_true', help='test with mixed precision')
    add_unsafe_load_argument(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out:
        from mmengine.fileio import dump
        dump(metrics, args.out)
    return metrics


if __name__ == '__main__':
    main()
