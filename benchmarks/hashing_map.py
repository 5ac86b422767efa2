"""Benchmark: hashing mAP@K evaluation, packed-bit popcount ranking (ours) vs. a float-matrix +
argsort implementation in the style of the public deep-hashing reference code.

Ours: ``mmkd_plugins.evaluation.metrics.hashing.hashing_retrieval_metrics`` (XOR + popcount on 64-bit
words, top-K selection with unique (distance, index) keys, chunks of queries).
Reference style: per query, Hamming distances from a float inner product of +-1 codes
(``0.5 * (K - B q)``), a full ``argsort`` of the database, relevance from a float label product, AP
from the sorted top K. ``kind='stable'`` is used so both give identical numbers (the public code uses
numpy's default quicksort, which orders ties arbitrarily).

Timing: the reference loop is timed on a subset of the queries and scaled linearly to all queries
(its cost per query is constant); ours is timed on all queries. The two alternate for a few rounds
and the fastest round of each is kept. Memory: peak resident memory added by
each method, measured in a fresh process (``/proc/self/clear_refs`` + ``VmHWM``). Linux only.

    python benchmarks/hashing_map.py                      # 1e4 queries x 1e5 database, 64 bits
    python benchmarks/hashing_map.py --queries 1000 --database 10000 --ref-queries 200
"""
import argparse
import multiprocessing as mp
import os
import os.path as osp
import platform
import time

import numpy as np
import torch


def make_data(num_q: int, num_db: int, bits: int, classes: int, seed: int = 0):
    """Random codes correlated with random multi-hot labels (codes = noisy sum of class codes)."""
    rng = np.random.default_rng(seed)
    class_codes = rng.standard_normal((classes, bits))

    def sample(n):
        labels = rng.random((n, classes)) < 2.0 / classes
        labels[np.arange(n), rng.integers(0, classes, n)] = True  # at least one label
        real = labels.astype(np.float64) @ class_codes + 1.5 * rng.standard_normal((n, bits))
        return real >= 0, labels

    q_bits, q_lab = sample(num_q)
    db_bits, db_lab = sample(num_db)
    return q_bits, db_bits, q_lab, db_lab


def reference_map(q_bits, db_bits, q_lab, db_lab, topk):
    """Float matrix + argsort, one query at a time (the public reference code's structure)."""
    qs = np.where(q_bits, 1.0, -1.0).astype(np.float32)
    ds = np.where(db_bits, 1.0, -1.0).astype(np.float32)
    ql = q_lab.astype(np.float32)
    dl = db_lab.astype(np.float32)
    bits = qs.shape[1]
    aps = np.zeros(len(qs))
    for i in range(len(qs)):
        gnd = (dl @ ql[i]) > 0
        ham = 0.5 * (bits - ds @ qs[i])
        ind = np.argsort(ham, kind='stable')
        tgnd = gnd[ind[:topk]]
        tsum = int(tgnd.sum())
        if tsum == 0:
            continue
        count = np.arange(1, tsum + 1)
        tindex = np.flatnonzero(tgnd) + 1.0
        aps[i] = np.mean(count / tindex)
    return aps


def ours_map(q_bits, db_bits, q_lab, db_lab, topk):
    from mmkd_plugins.evaluation.metrics.hashing import hashing_retrieval_metrics, pack_bits
    qc = pack_bits(torch.from_numpy(q_bits))
    dc = pack_bits(torch.from_numpy(db_bits))
    res = hashing_retrieval_metrics(qc, dc, torch.from_numpy(q_lab), torch.from_numpy(db_lab),
                                    topk=topk, hamming_radius=None)
    return res[f'AP@{topk}'].numpy()


def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return -1


def _worker(method, args, n_queries, queue):
    torch.set_num_threads(args.threads)
    q_bits, db_bits, q_lab, db_lab = make_data(args.queries, args.database, args.bits, args.classes)
    q_bits, q_lab = q_bits[:n_queries], q_lab[:n_queries]
    fn = ours_map if method == 'ours' else reference_map
    fn(q_bits[:8], db_bits, q_lab[:8], db_lab, args.topk)  # warm-up
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak RSS
    except OSError:
        pass
    base = _rss_kib('VmRSS')
    t0 = time.perf_counter()
    aps = fn(q_bits, db_bits, q_lab, db_lab, args.topk)
    seconds = time.perf_counter() - t0
    queue.put(dict(seconds=seconds, peak_extra_mib=(_rss_kib('VmHWM') - base) / 1024, aps=aps))


def run(method, args, n_queries):
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(method, args, n_queries, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--queries', type=int, default=10000)
    parser.add_argument('--database', type=int, default=100000)
    parser.add_argument('--bits', type=int, default=64)
    parser.add_argument('--classes', type=int, default=21)
    parser.add_argument('--topk', type=int, default=1000)
    parser.add_argument('--ref-queries', type=int, default=500,
                        help='queries timed for the reference loop (scaled to --queries)')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=2, help='alternating repetitions (min is kept)')
    parser.add_argument('--out', default=osp.join(osp.dirname(__file__), 'results', 'hashing_map.md'))
    args = parser.parse_args()
    for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(args.threads)  # inherited by the spawned workers (numpy BLAS)

    n_ref = min(args.ref_queries, args.queries)
    ours_runs, ref_runs = [], []
    for _ in range(args.rounds):  # alternate, keep the fastest round (the machine is shared)
        ours_runs.append(run('ours', args, args.queries))
        ref_runs.append(run('reference', args, n_ref))
    ours = min(ours_runs, key=lambda r: r['seconds'])
    ref = min(ref_runs, key=lambda r: r['seconds'])
    ours['peak_extra_mib'] = max(r['peak_extra_mib'] for r in ours_runs)
    ref['peak_extra_mib'] = max(r['peak_extra_mib'] for r in ref_runs)
    ref_total = ref['seconds'] * args.queries / n_ref
    max_diff = float(np.abs(ours['aps'][:n_ref] - ref['aps']).max())
    lines = [
        '# Hashing mAP@K evaluation: packed bits + popcount (ours) vs. float matrix + argsort',
        '',
        f'Command: `python benchmarks/hashing_map.py --queries {args.queries} --database '
        f'{args.database} --bits {args.bits} --topk {args.topk} --ref-queries {args.ref_queries} '
        f'--threads {args.threads} --rounds {args.rounds}`',
        '',
        f'CPU only (no GPU in this session): {platform.processor() or platform.machine()}, '
        f'{args.threads} torch/BLAS thread(s) requested, machine shared with other jobs, '
        f'torch {torch.__version__}, numpy {np.__version__}.',
        f'Data: {args.queries} queries x {args.database} database items, {args.bits} bits, '
        f'{args.classes} classes, mAP@{args.topk}; codes correlated with the labels.',
        '',
        f'Times are the fastest of {args.rounds} alternating rounds, each in a fresh process.',
        '',
        '| method | time (s) | per query (ms) | extra peak memory (MiB) |',
        '|---|---|---|---|',
        f'| ours (popcount, chunked top-K) | {ours["seconds"]:.2f} | '
        f'{1000 * ours["seconds"] / args.queries:.3f} | {ours["peak_extra_mib"]:.0f} |',
        f'| float matrix + argsort (reference style) | {ref_total:.2f} (timed on {n_ref} queries, '
        f'scaled) | {1000 * ref["seconds"] / n_ref:.3f} | {ref["peak_extra_mib"]:.0f} |',
        '',
        f'**Speed-up (reference / ours): {ref_total / ours["seconds"]:.1f}x.** mAP@{args.topk} '
        f'(ours, all queries) = {ours["aps"].mean():.4f}; largest per-query AP difference on the '
        f'{n_ref} shared queries: {max_diff:.2e}.',
        '',
        'Memory: the reference loop keeps one query row at a time; a fully vectorised float version '
        f'would need the {args.queries} x {args.database} float32 distance matrix '
        f'({args.queries * args.database * 4 / 2**20:.0f} MiB) plus its argsort indices '
        f'({args.queries * args.database * 8 / 2**20:.0f} MiB). Ours stays under the chunk budget '
        '(max_chunk_bytes, 32 MiB by default) whatever the number of queries.',
    ]
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
