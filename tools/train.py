"""Train with any mmkd_plugins / OpenMMLab config through mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--unsafe-load]
                                 [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG GPUS [args]      # DDP through mmengine's launcher

CONFIG may live anywhere (a downstream repository) and inherit ours with
``_base_ = 'mmkd_plugins::mgd/...'`` or ``'{{$MMKD_PLUGINS_CONFIGS:}}/mgd/...'`` (set here if unset).
Checkpoints (``--resume``, ``load_from``, ``teacher_ckpt``, pretrained inits) are unpickled
weights-only with the allowlist of mmengine checkpoints; ``--unsafe-load`` (or ``unsafe_load = True``
in the config, or ``MMKD_UNSAFE_LOAD=1``) unpickles them fully: only for files you trust.

``--resume CKPT`` refuses a file that is not a training checkpoint of this config's model (e.g. the
teacher's weights, or a checkpoint of another model): its keys must be the model's and it must hold the
optimizer state. Errors are one line (``--debug`` or ``MMKD_DEBUG=1`` for the traceback).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmkd_plugins  # noqa: E402,F401  (registers modules and the 'mmkd_plugins::' config prefix)
from mmkd_plugins.utils import export_configs_env, set_unsafe_load  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model (distillers included)')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or from the latest one in work-dir')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale lr by batch size')
    add_unsafe_load_argument(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.teacher_ckpt=t.pth')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def add_unsafe_load_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--unsafe-load', action='store_true',
                        help='unpickle checkpoints fully (resume, load_from, teacher_ckpt, pretrained '
                        'inits) instead of weights-only with the allowlist of mmengine checkpoints; '
                        'arbitrary code in a checkpoint would run: only for files you trust (same as '
                        'unsafe_load = True in the config or MMKD_UNSAFE_LOAD=1)')


def load_config(args) -> Config:
    """The config with ``--launcher``, ``--cfg-options``, ``--work-dir`` and ``--unsafe-load`` applied.

    ``--unsafe-load`` or a config's ``unsafe_load = True`` sets ``MMKD_UNSAFE_LOAD=1`` for this
    process (and its workers).
    """
    export_configs_env()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if getattr(args, 'unsafe_load', False) or cfg.get('unsafe_load', False):
        cfg.unsafe_load = True
        set_unsafe_load(True)
    return cfg


def build_config(args) -> Config:
    cfg = load_config(args)
    if args.amp:
        opt = cfg.optim_wrapper
        if opt.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP is already enabled in the config')
        else:
            opt.type = 'AmpOptimWrapper'
            opt.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on CPU-only machines (gloo).

    mmengine's pytorch launcher always calls ``torch.cuda.set_device``; on a machine without CUDA
    the process group is initialised here with gloo instead (mmengine then keeps it), and DDP is
    built without ``device_ids``, as torch requires for CPU modules.
    """
    import torch
    import torch.distributed as dist
    if cfg.launcher != 'pytorch' or torch.cuda.is_available() or dist.is_initialized():
        return
    dist.init_process_group(backend='gloo')
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                     broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters', False))


def check_resume_checkpoint(runner, checkpoint: str) -> None:
    """Refuse ``--resume CKPT`` unless CKPT is a training checkpoint of the runner's model: same keys
    and shapes, and an optimizer state (a teacher's or another model's weights are not)."""
    from mmengine.model import is_model_wrapper

    from mmkd_plugins.utils import load_local_checkpoint
    from mmkd_plugins.utils.checkpoint_files import check_checkpoint_file
    from mmkd_plugins.utils.checkpoint_match import CheckpointMismatchError, check_state_dict_matches
    if '://' in checkpoint:
        return
    check_checkpoint_file(checkpoint, '--resume checkpoint')
    ckpt = load_local_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict') if isinstance(ckpt, dict) else None
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    what = f'--resume {checkpoint}: not a training checkpoint of this config\'s model'
    if not isinstance(state, dict):
        raise ValueError(f'{what} (no "state_dict"; a bare weight file can be loaded with '
                         '--cfg-options load_from=PATH instead of --resume)')
    state = {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}
    try:
        check_state_dict_matches(model.state_dict(), state, checkpoint, strict=True, hint=None)
    except CheckpointMismatchError as err:
        detail = str(err).replace(f'{checkpoint}: ', '', 1)
        raise ValueError(f'{what}: {detail} (a teacher checkpoint goes to model.teacher_ckpt, '
                         'initial weights to load_from)') from err
    if 'optimizer' not in ckpt:
        raise ValueError(f'{what}: it holds no optimizer state (weights only; start from it with '
                         '--cfg-options load_from=PATH instead of --resume)')


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else None
    if runner is None:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    if args.resume not in (None, 'auto'):
        check_resume_checkpoint(runner, args.resume)
    runner.train()


if __name__ == '__main__':
    run_main(main)
