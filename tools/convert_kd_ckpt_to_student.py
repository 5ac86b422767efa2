"""Turn a distiller checkpoint into a checkpoint of the plain student.

    python tools/convert_kd_ckpt_to_student.py work_dirs/x/iter_1000.pth student.pth [--force]

Keeps the ``student.`` weights (prefix removed) and drops connectors, the optimizer and the rest, so
the result loads into the plain upstream student config with no missing or unexpected keys.

Refuses: an output that is the input (the distiller checkpoint with its resume state would be lost),
an existing output unless ``--force``, and an input that is not a torch checkpoint or holds no
``student.`` weights. The output is written atomically (temporary file, then rename).
"""
import argparse
import os.path as osp
import sys
from typing import Dict

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

import torch  # noqa: E402

from mmkd_plugins.distillers import read_state_dict  # noqa: E402
from mmkd_plugins.utils import load_local_checkpoint  # noqa: E402
from mmkd_plugins.utils.checkpoint_files import check_checkpoint_file  # noqa: E402
from mmkd_plugins.utils.safe_output import add_force_argument, atomic_torch_save, check_output  # noqa: E402


def student_state_dict(state: Dict[str, torch.Tensor], prefix: str = 'student.',
                       src: str = 'the checkpoint') -> Dict[str, torch.Tensor]:
    """The student's weights of a distiller state dict, without the prefix."""
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f'{src}: no "{prefix}" keys among its {len(state)} weights: not a distiller '
                         'checkpoint (a plain model checkpoint needs no conversion)')
    return out


def convert(src: str, dst: str, prefix: str = 'student.', force: bool = False) -> Dict[str, torch.Tensor]:
    check_output(dst, [src], force, 'output')
    check_checkpoint_file(src)
    student = student_state_dict(read_state_dict(src), prefix, src)
    meta = {}
    ckpt = load_local_checkpoint(src, map_location="cpu")
    if isinstance(ckpt, dict) and isinstance(ckpt.get('meta'), dict):
        meta = {k: v for k, v in ckpt['meta'].items() if k in ('epoch', 'iter', 'dataset_meta', 'seed')}
    meta['converted_from'] = osp.basename(src)
    atomic_torch_save(dict(state_dict=student, meta=meta), dst)
    return student


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='distiller checkpoint')
    parser.add_argument('dst', help='output student checkpoint')
    parser.add_argument('--prefix', default='student.', help='prefix of the student weights')
    add_force_argument(parser)
    args = parser.parse_args(argv)
    state = convert(args.src, args.dst, args.prefix, args.force)
    print(f'wrote {len(state)} student tensors to {args.dst}')


if __name__ == '__main__':
    run_main(main)
