"""Build the official HyP2 FLICKR25K split as the project's list files.

Inputs (from the official HyP2 repository, JerryXu0129/HyP2-Loss): ``img.txt`` (one image file name a
line), ``targets.txt`` (the 38 multi-hot labels of each image, same order) and the fixed permutation
file ``flickr.txt`` (a JSON list of image indices). Query = the first 1000 indices of the permutation,
train = the next 4000, database = the rest. Writes ``test.txt`` (query), ``train.txt`` and
``database.txt`` (format: ``mmkd_plugins/datasets/multilabel_hashing.py``), the files the
``configs/hyp2/*flickr25k*`` configs read from ``data/flickr25k/`` (images under
``data/flickr25k/mirflickr/``).

Usage::

    python tools/hyp2_make_flickr25k_split.py --root data/flickr25k --perm path/to/flickr.txt [--force]

Refuses (one line, naming the file and line): input files that are missing or malformed (labels other
than 0/1, a different number of labels on a line, row counts that differ, a permutation that is not one
of 0..N-1), no image at all, a split that would be empty, list files that already exist (``--force``
replaces them) or that are one of the inputs. The list files are written atomically.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)
from mmkd_plugins.utils.safe_output import add_force_argument, check_output_files  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Build the official HyP2 FLICKR25K split')
    parser.add_argument('--root', default='data/flickr25k',
                        help='folder with img.txt and targets.txt (default: data/flickr25k)')
    parser.add_argument('--img-txt', help='image list (default: ROOT/img.txt)')
    parser.add_argument('--targets-txt', help='label rows (default: ROOT/targets.txt)')
    parser.add_argument('--perm', help='the fixed permutation, a JSON list (default: '
                        'ROOT/flickr.txt; the official file is flickr.txt in the HyP2 repository)')
    parser.add_argument('--out-dir', help='where the list files go (default: ROOT)')
    parser.add_argument('--num-query', type=int, default=1000)
    parser.add_argument('--num-train', type=int, default=4000)
    add_force_argument(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmkd_plugins.datasets.multilabel_hashing import flickr25k_hashing_lists

    out_dir = args.out_dir or args.root
    inputs = dict(img_txt=args.img_txt or osp.join(args.root, 'img.txt'),
                  targets_txt=args.targets_txt or osp.join(args.root, 'targets.txt'),
                  perm_file=args.perm or osp.join(args.root, 'flickr.txt'))
    check_output_files([osp.join(out_dir, n) for n in ('test.txt', 'train.txt', 'database.txt')],
                       inputs.values(), args.force)
    counts = flickr25k_hashing_lists(**inputs, out_dir=out_dir, num_query=args.num_query,
                                     num_train=args.num_train)
    print(f'{out_dir}: test.txt {counts["query"]} queries, train.txt {counts["train"]} images, '
          f'database.txt {counts["database"]} images')
    return 0


if __name__ == '__main__':
    run_main(main)
