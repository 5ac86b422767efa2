"""``mmkd-wire``: wire a distillation method between two upstream models and write its config.

    mmkd-wire --student mmdet::retinanet/retinanet_r50_fpn_2x_coco.py \\
              --teacher mmdet::atss/atss_r101_fpn_1x_coco.py --method mgd -o mgd_atss_retina.py

Builds both models with random weights (nothing is loaded or downloaded), runs one synthetic batch
through each model's data preprocessor, prints every candidate feature with its shape and stride,
pairs them, and writes a config that inherits the student's config.

Refuses (one line, exit 2): ``-o`` naming the student or teacher config, or an existing file without
``--force``; the config is written atomically.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Tuple

from ..utils.safe_output import OutputIsInputError
from .pairing import pair_backbone, pair_logits, pair_neck, pair_vit
from .probe import WiringError, candidate_table, config_input_size, probe
from .writer import write_config

DEFAULT_WHERE = dict(mgd=dict(det='neck', seg='backbone', cls='backbone'),
                     vitkd=dict(cls='backbone', det='backbone', seg='backbone'),
                     nkd=dict(cls='head', det='head', seg='head'))


def _size(text: Optional[str]) -> Optional[Tuple[int, int]]:
    if not text:
        return None
    parts = [int(v) for v in text.replace('x', ',').split(',') if v]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _config_file(config: str) -> str:
    """The file behind ``config`` (``pkg::path`` resolved where possible), to compare ``--out`` with."""
    from ..distillers.teacher import resolve_config_path
    try:
        return resolve_config_path(config)
    except Exception:  # noqa: BLE001  (not found: reported by the probe; nothing to protect)
        return config


def wire(student: str, teacher: str, method: str, where: Optional[str] = None,
         input_size: Optional[Tuple[int, int]] = None,
         teacher_input_size: Optional[Tuple[int, int]] = None, out: Optional[str] = None,
         teacher_ckpt: Optional[str] = None, log=print, force: bool = False) -> str:
    """Probe, pair and write; returns the config text (also written to ``out`` when given).

    ``out`` is refused before anything is built when it is the student or teacher config, or when it
    exists and ``force`` is not set (``--force``); it is written atomically.

    ``teacher_input_size``: the teacher's own input size; default: the student's size, or the
    size of the teacher config's pipeline when it differs from the student config's (then the
    teacher preprocesses and resizes the raw batch itself).
    """
    from mmengine.config import Config

    from ..distillers.teacher import resolve_config_path
    from ..utils.safe_output import atomic_write, check_output
    if method not in DEFAULT_WHERE:
        raise WiringError(f'--method must be one of {sorted(DEFAULT_WHERE)}, got {method!r}')
    if out:
        check_output(out, [_config_file(student), _config_file(teacher)], force, '--out')
    s = probe(student, input_size)
    if teacher_input_size is None and input_size is None:
        t_cfg_size = config_input_size(Config.fromfile(resolve_config_path(teacher)))
        if t_cfg_size and tuple(t_cfg_size) != tuple(s.input_size):
            teacher_input_size = t_cfg_size
    own_size = teacher_input_size if teacher_input_size and tuple(teacher_input_size) != tuple(
        s.input_size) else None
    t = probe(teacher, own_size or s.input_size)
    where = where or DEFAULT_WHERE[method].get(s.task, 'backbone')
    for line in candidate_table(s, 'student') + candidate_table(t, 'teacher'):
        log(line)
    if method == 'mgd':
        if where == 'head':
            raise WiringError('MGD distils feature maps: --where neck or backbone')
        pairs = pair_neck(s, t) if where == 'neck' else pair_backbone(s, t)
    elif method == 'vitkd':
        if where != 'backbone':
            raise WiringError('ViTKD distils ViT blocks: --where backbone')
        pairs = pair_vit(s, t)
    else:
        if where != 'head':
            raise WiringError('NKD distils logits: --where head')
        pairs = pair_logits(s, t)
    log('pairs:')
    for p in pairs:
        extra = (f' (teacher resampled x{p.scale:g})' if p.scale else
                 f' (teacher tokens resampled to {p.grid[0]}x{p.grid[1]})' if p.grid else '')
        log(f'  {p.name}: student {p.student.label} {p.student.shape} <- teacher '
            f'{p.teacher.label} {p.teacher.shape}{extra}')
    text = write_config(method, where, pairs, s, t, osp.dirname(out) if out else '.',
                        teacher_ckpt, own_size)
    if out:
        with atomic_write(out, 'w') as f:   # creates the folder
            f.write(text)
        log(f'wrote {out}')
    return text


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None:   # the console command: any other error is one line too (--debug: traceback)
        from ..utils.cli_errors import run_main
        run_main(main, sys.argv[1:], 'mmkd-wire')
    parser = argparse.ArgumentParser(prog='mmkd-wire', description=__doc__.splitlines()[0])
    parser.add_argument('--student', required=True, help="student config ('pkg::path' or file)")
    parser.add_argument('--teacher', required=True, help="teacher config ('pkg::path' or file)")
    parser.add_argument('--method', required=True, choices=sorted(DEFAULT_WHERE))
    parser.add_argument('--where', choices=('neck', 'backbone', 'head'),
                        help='what to distil (default: neck for detectors, backbone otherwise, '
                        'head for NKD)')
    parser.add_argument('--input-size', help='probe input size H[,W] (default: the student '
                        "config's train pipeline size)")
    parser.add_argument('--teacher-input-size', help="the teacher's own input size H[,W]")
    parser.add_argument('--teacher-ckpt', help='teacher checkpoint (path or URL) to write')
    parser.add_argument('-o', '--out', help='write the config here (else print it)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing --out file (never the student or teacher config)')
    args = parser.parse_args(argv)
    try:
        text = wire(args.student, args.teacher, args.method, args.where, _size(args.input_size),
                    _size(args.teacher_input_size), args.out, args.teacher_ckpt, force=args.force)
    except (WiringError, FileNotFoundError, FileExistsError, OutputIsInputError) as err:
        print(f'mmkd-wire: error: {err}', file=sys.stderr)
        return 2
    if not args.out:
        print(text)
    return 0
