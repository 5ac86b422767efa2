"""``mmkd-doctor CONFIG [--cfg-options ...] [--batches N] [--out report.json]
[--calibrate TARGET_SHARE [--write OUT.py]]``.

Builds model, data and evaluator from the config exactly as training does (mmengine's Runner, with
``--cfg-options``), runs a few batches on this machine, prints one table, writes JSON, and exits 1
on any FAIL. ``--calibrate`` instead measures the distillation terms' share of the student's
gradient and proposes loss weights giving the target share.

``--out`` / ``--write`` are refused before anything runs when they name the config itself or an
existing file (``--force`` replaces an existing one, never the config); both are written atomically.
"""
import argparse
import itertools
import os.path as osp
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional

from .report import FAIL, OK, Report


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        prog='mmkd-doctor', description='Check a distillation set-up before training.')
    parser.add_argument('config', help='config file (mmkd_plugins::... allowed)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, as for tools/train.py')
    parser.add_argument('--batches', type=int, default=2,
                        help='batches for the teacher metric and the training steps (default 2)')
    parser.add_argument('--out', help='write the report as JSON here')
    parser.add_argument('--calibrate', type=float, metavar='TARGET_SHARE',
                        help='propose distillation loss weights so that the distillation terms '
                        'carry this share (0-1) of the student\'s gradient')
    parser.add_argument('--write', metavar='OUT.py',
                        help='with --calibrate: write a config inheriting CONFIG with the weights')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='unpickle checkpoints fully (only files you trust)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing --out / --write file (never the config itself)')
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error('--batches must be >= 1')
    if args.write and args.calibrate is None:
        parser.error('--write needs --calibrate')
    if args.calibrate is not None and not 0 < args.calibrate < 1:
        parser.error('--calibrate takes a share in (0, 1), e.g. 0.3')
    return args


def config_file(config: str) -> str:
    """The file behind ``config`` (``pkg::path`` resolved where possible), to compare outputs with."""
    try:
        from mmkd_plugins.distillers.teacher import resolve_config_path
        return resolve_config_path(config)
    except Exception:  # noqa: BLE001  (an unknown package: nothing on disk to protect)
        return config


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse ``--out`` / ``--write`` before anything runs: the config itself, the same file twice,
    or an existing file without ``--force``."""
    from mmkd_plugins.utils.safe_output import OutputIsInputError, check_output
    inputs = [config_file(args.config)]
    if args.out:
        check_output(args.out, inputs, args.force, '--out')
    if args.write:
        check_output(args.write, inputs, args.force, '--write')
        if args.out and osp.realpath(args.out) == osp.realpath(args.write):
            raise OutputIsInputError(f'--out and --write are the same file {args.out}; give two names')


def _batches(runner, cfg, n: int) -> List[dict]:
    loader = runner.build_dataloader(cfg.train_dataloader)
    batches = list(itertools.islice(iter(loader), n))
    if not batches:
        raise ValueError('the train dataloader gave no batch')
    return batches


def _build(config: str, cfg_options, report: Report, unsafe_load: bool = False,
           work_dir: Optional[str] = None):
    from .build import build_runner, load_config
    from .lint import lint_config
    cfg = load_config(config, cfg_options, unsafe_load)
    report.extend(lint_config(cfg))
    try:
        runner = build_runner(cfg, work_dir)
    except Exception as err:  # noqa: BLE001 - the report says why
        report.add('build', 'model / data', FAIL, f'building the Runner failed: '
                   f'{type(err).__name__}: {err}')
        return cfg, None
    return cfg, runner


def _start(config: str, cfg_options, batches: int, unsafe_load: bool, work_dir: Optional[str]):
    """``(report, cfg, runner, model)``: the lint rows and the built Runner (``runner`` None when
    the build failed, with a FAIL row saying why)."""
    from .build import unwrap
    report = Report(config)
    report.meta.update(batches=batches, cfg_options=cfg_options or {})
    cfg, runner = _build(config, cfg_options, report, unsafe_load, work_dir)
    if runner is None:
        return report, cfg, None, None
    model = unwrap(runner.model)
    report.meta['device'] = str(next(model.parameters()).device)
    return report, cfg, runner, model


def run_doctor(config: str, cfg_options: Optional[Dict[str, Any]] = None, batches: int = 2,
               unsafe_load: bool = False, work_dir: Optional[str] = None) -> Report:
    """Every check; returns the report (``report.failed`` on any FAIL)."""
    from .preprocess import check_preprocessing
    from .steps import check_autocast, check_steps
    from .student_init import init_and_check
    from .taps import check_taps
    from .teacher import run_teacher_checks, teacher_specs
    report, cfg, runner, model = _start(config, cfg_options, batches, unsafe_load, work_dir)
    if runner is None:
        return report

    def guarded(check: str, fn, *args):
        try:
            report.extend(fn(*args))
        except Exception as err:  # noqa: BLE001 - one check failing must not hide the others
            report.add(check, '-', FAIL, f'{type(err).__name__}: {err}')

    guarded('student init', init_and_check, runner, cfg)
    guarded('teacher', run_teacher_checks, runner, model, cfg, batches)
    from mmkd_plugins.engine.loops.teacher_eval import teachers_of
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    guarded('preprocessing', check_preprocessing, model, cfg, teachers_of(model),
            teacher_specs(model_cfg))
    try:
        data = _batches(runner, cfg, batches)
    except Exception as err:  # noqa: BLE001
        report.add('data', 'train_dataloader', FAIL, f'{type(err).__name__}: {err}')
        return report
    guarded('taps', check_taps, model, data[0])
    try:
        optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    except Exception as err:  # noqa: BLE001
        report.add('loss terms', 'optim_wrapper', FAIL, f'{type(err).__name__}: {err}')
        return report
    guarded('loss terms', check_steps, model, optim_wrapper, data, runner.hooks)
    guarded('autocast', check_autocast, model, data[0])
    return report


def run_calibration(config: str, target: float, cfg_options: Optional[Dict[str, Any]] = None,
                    batches: int = 2, unsafe_load: bool = False, work_dir: Optional[str] = None,
                    write: Optional[str] = None) -> Report:
    """Measure the shares (no optimizer step) and propose weights; ``report.meta['calibration']``
    holds the proposal."""
    from .calibrate import cfg_options as to_options
    from .calibrate import config_text, propose
    from .grad_share import measure_shares
    from .steps import restored, share_rows
    from .student_init import init_and_check
    report, cfg, runner, model = _start(config, cfg_options, batches, unsafe_load, work_dir)
    if runner is None:
        return report
    report.extend(init_and_check(runner, cfg))
    with restored(model):
        meter = measure_shares(model, _batches(runner, cfg, batches))
    summary = meter.summary()
    report.extend(share_rows(summary))
    losses_cfg = (cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)).get(
        'distill_losses') or {}
    try:
        proposal = propose(summary, losses_cfg, target)
    except ValueError as err:
        report.add('calibration', '-', FAIL, str(err))
        return report
    proposal['cfg_options'] = to_options(proposal)
    report.meta['calibration'] = proposal
    report.add('calibration', 'distillation share', OK,
               f'{100 * proposal["measured"]:.1f} % now; weights x{proposal["factor"]:.4g} give '
               f'{100 * target:.0f} %')
    if write:
        from mmkd_plugins.utils.safe_output import atomic_write
        with atomic_write(write, 'w') as f:
            f.write(config_text(proposal, config))
        proposal['written'] = write
    return report


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    check_outputs(args)
    work_dir = tempfile.mkdtemp(prefix='mmkd_doctor_')
    try:
        if args.calibrate is not None:
            report = run_calibration(args.config, args.calibrate, args.cfg_options, args.batches,
                                     args.unsafe_load, work_dir, args.write)
        else:
            report = run_doctor(args.config, args.cfg_options, args.batches, args.unsafe_load,
                                work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f'mmkd-doctor {args.config} ({args.batches} batches on '
          f'{report.meta.get("device", "?")})')
    print(report.table())
    proposal = report.meta.get('calibration')
    if proposal:
        from .calibrate import diff_lines
        print(f'\nCalibration to {100 * proposal["target"]:.0f} % (now '
              f'{100 * proposal["measured"]:.1f} %), config diff:')
        for line in diff_lines(proposal):
            print('  ' + line)
        print('as --cfg-options: ' + ' '.join(proposal['cfg_options']))
        if proposal.get('written'):
            print(f'written: {proposal["written"]}')
    if args.out:
        report.dump(args.out)
        print(f'report written to {args.out}')
    return 1 if report.failed else 0


if __name__ == '__main__':
    sys.exit(main())
