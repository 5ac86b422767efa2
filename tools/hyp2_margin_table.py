"""Encode the HyP2 authors' margin table (codetable.xlsx, as CSV) into the package's compact file.

The authors' sheet holds, for K hash bits (row K) and column j = ceil(log2 C), the margin zeta: the
largest pairwise cosine of 2**j binary codes of length K with the largest achievable minimum Hamming
distance d, i.e. zeta = 1 - 2 d / K. Every value of the table is that number written with 16
significant digits, so the table is stored exactly as the integers d (run-length coded, one line per
K); :func:`mmkd_plugins.models.losses.hyp2.hyp2_margin` decodes it. This tool writes the file and
checks that decoding gives back every value of the CSV bit for bit.

CSV layout (``/work/shared/specs/hyp2_margin_table.csv``): ``#`` comment lines, a header
``K,j1,...,j256``, then one row per K with the value of column j in field j (empty where the sheet has
none).

Usage::

    python tools/hyp2_margin_table.py path/to/hyp2_margin_table.csv            # write + check
    python tools/hyp2_margin_table.py path/to/hyp2_margin_table.csv --check    # check only

A malformed CSV is one error naming the file and row; an existing ``--out`` with other content is only
replaced with ``--force`` (atomically), and never when it is the CSV itself.
"""
import argparse
import csv
import itertools
import os.path as osp
import sys
from typing import Dict, List

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402
from mmkd_plugins.utils.safe_output import add_force_argument, atomic_write, check_output  # noqa: E402

HEADER = """\
# HyP2 margin table of the authors (codetable.xlsx, JerryXu0129/HyP2-Loss), exact compact encoding.
# Written by tools/hyp2_margin_table.py from the table as CSV; do not edit by hand.
# One line per code length K: "K: d_1 d_2 ... d_K" with runs written "d*n" (n times d). d_j is the
# minimum Hamming distance behind column j = ceil(log2 C) (2**j codes of K bits); the margin is
# zeta = float('%.16g' % (1 - 2 * d_j / K)), which is every value of the authors' table exactly.
# Columns j > K do not exist (K bits give at most 2**K distinct codes).
"""


def read_table_csv(path: str) -> Dict[int, List[str]]:
    """``{K: [text of column 1, ..., text of column j_max]}`` (trailing empty cells dropped)."""
    with open(path, newline='') as f:
        rows = list(csv.reader(line for line in f if not line.startswith('#')))
    header, body = rows[0], rows[1:]
    if header[0] != 'K' or any(h != f'j{i}' for i, h in enumerate(header[1:], 1)):
        raise ValueError(f'{path}: expected a header "K,j1,j2,...", got {header[:4]}...')
    table = {}
    for row in body:
        k = int(row[0])
        cells = row[1:]
        while cells and cells[-1] == '':
            cells.pop()
        if '' in cells:
            raise ValueError(f'{path}: row K={k} has a gap at column {cells.index("") + 1}')
        table[k] = cells
    return table


def min_distances(k: int, cells: List[str]) -> List[int]:
    """The integer minimum distances d_j of one row; raises if a value is not 1 - 2 d / K."""
    out = []
    for j, text in enumerate(cells, 1):
        value = float(text)
        d = round((1 - value) * k / 2)
        if float('%.16g' % (1 - 2 * d / k)) != value:
            raise ValueError(f'K={k}, column {j}: {text} is not 1 - 2d/K (16 digits) for an '
                             'integer d; the compact encoding cannot hold it')
        out.append(d)
    return out


def encode(table: Dict[int, List[str]]) -> str:
    lines = [HEADER.rstrip('\n')]
    for k in sorted(table):
        runs = []
        for d, group in itertools.groupby(min_distances(k, table[k])):
            n = len(list(group))
            runs.append(f'{d}*{n}' if n > 1 else str(d))
        lines.append(f'{k}: ' + ' '.join(runs))
    return '\n'.join(lines) + '\n'


def check(table: Dict[int, List[str]], encoded_file: str) -> int:
    """Decode ``encoded_file`` with the package's reader and compare every cell; returns #cells."""
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))
    from mmkd_plugins.models.losses.hyp2 import read_margin_table

    decoded = read_margin_table(encoded_file)
    if sorted(decoded) != sorted(table):
        raise AssertionError(f'rows differ: {sorted(set(decoded) ^ set(table))}')
    cells = 0
    for k, texts in table.items():
        if len(decoded[k]) != len(texts):
            raise AssertionError(f'K={k}: {len(decoded[k])} columns decoded, {len(texts)} in CSV')
        for j, (text, value) in enumerate(zip(texts, decoded[k]), 1):
            if value != float(text):
                raise AssertionError(f'K={k}, column {j}: decoded {value!r}, CSV {text}')
            cells += 1
    return cells


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('csv', help="the authors' margin table as CSV")
    parser.add_argument('--out', default=osp.join(
        osp.dirname(__file__), '..', 'mmkd_plugins', 'models', 'losses', 'data',
        'hyp2_margin_table.txt'), help='compact file to write (default: the package data file)')
    parser.add_argument('--check', action='store_true', help='only check --out against the CSV')
    add_force_argument(parser)
    args = parser.parse_args(argv)
    table = read_table_csv(args.csv)
    if not args.check:
        text = encode(table)
        current = open(args.out).read() if osp.isfile(args.out) else None
        if current != text:
            check_output(args.out, [args.csv], args.force, '--out')
            with atomic_write(args.out, 'w') as f:
                f.write(text)
    cells = check(table, args.out)
    print(f'{args.out}: {len(table)} rows (K = {min(table)}..{max(table)}), {cells} values '
          'identical to the CSV')
    return 0


if __name__ == '__main__':
    run_main(main)
