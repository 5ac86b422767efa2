"""Turn a distiller checkpoint into a checkpoint of the plain student.

    python tools/convert_kd_ckpt_to_student.py work_dirs/x/iter_1000.pth student.pth

Keeps the ``student.`` weights (prefix removed) and drops connectors, the optimizer and the rest, so
the result loads into the plain upstream student config with no missing or unexpected keys.
"""
import argparse
import os.path as osp
import sys
from typing import Dict

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.distillers import read_state_dict  # noqa: E402
from mmkd_plugins.utils import load_local_checkpoint  # noqa: E402


def student_state_dict(state: Dict[str, torch.Tensor], prefix: str = 'student.') -> Dict[str, torch.Tensor]:
    """The student's weights of a distiller state dict, without the prefix."""
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f'no "{prefix}" keys in the checkpoint: is it a distiller checkpoint?')
    return out


def convert(src: str, dst: str, prefix: str = 'student.') -> Dict[str, torch.Tensor]:
    student = student_state_dict(read_state_dict(src), prefix)
    meta = {}
    ckpt = load_local_checkpoint(src, map_location="cpu")
    if isinstance(ckpt, dict) and isinstance(ckpt.get('meta'), dict):
        meta = {k: v for k, v in ckpt['meta'].items() if k in ('epoch', 'iter', 'dataset_meta', 'seed')}
    meta['converted_from'] = osp.basename(src)
    torch.save(dict(state_dict=student, meta=meta), dst)
    return student


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='distiller checkpoint')
    parser.add_argument('dst', help='output student checkpoint')
    parser.add_argument('--prefix', default='student.', help='prefix of the student weights')
    args = parser.parse_args(argv)
    state = convert(args.src, args.dst, args.prefix)
    print(f'wrote {len(state)} student tensors to {args.dst}')


if __name__ == '__main__':
    main()
