"""Benchmark: hashing mAP@K evaluation, ours vs. FAISS ``IndexBinaryFlat`` (exact Hamming search).

Ours: ``mmkd_plugins.evaluation.metrics.hashing.hashing_retrieval_metrics`` (default backend: the C
kernels, XOR + popcount distances and a histogram selection of the top K; ``hamming_search.py``),
AP@K per query; also with ``backend='gemm'`` (float32 GEMM of +-1 codes: the path of CUDA tensors and
of machines without the C extension).
FAISS (``pip install -r requirements/benchmarks.txt``): ``IndexBinaryFlat(bits).search(queries, K)``
plus the same AP@K computed with numpy from its ranking (chunks of 1000 queries). Both rank by
(distance, database index), so the per-query APs must be identical; the script checks it.
Floors: our XOR + popcount distance pass alone (the same blocks and threads, no selection, no AP)
and FAISS ``search(k=1)`` (its XOR + popcount scan with a trivial heap).

Every (rows, threads) runs in a fresh process that times ours, FAISS and the floors one after the
other, for a few rounds (the order alternates between rounds); the fastest round of each is kept. ``--threads``
lists the thread counts (torch / BLAS / OpenMP / FAISS). Memory: peak resident memory added by each
method (``/proc/self/clear_refs`` + ``VmHWM``; Linux only).

    python benchmarks/hashing_map.py                     # main row + scaling rows, 1 and all threads
    python benchmarks/hashing_map.py --rows 10000x100000x64 --threads 1
"""
import argparse
import multiprocessing as mp
import os
import os.path as osp
import platform
import subprocess
import tempfile
import time

import numpy as np

DEFAULT_ROWS = ('10000x100000x64', '10000x100000x32', '10000x100000x128',
                '1000x1000000x32', '1000x1000000x64', '1000x1000000x128')


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


def ap_from_ranking(ranking: np.ndarray, q_lab: np.ndarray, db_lab: np.ndarray) -> np.ndarray:
    """AP over the given (Q, K) rankings (relevant = a shared label), numpy, chunks of 1000 queries."""
    ql, dl = np.packbits(q_lab, axis=1), np.packbits(db_lab, axis=1)
    k = ranking.shape[1]
    ranks = np.arange(1, k + 1, dtype=np.float64)
    out = np.zeros(len(ranking))
    for s in range(0, len(ranking), 1000):
        rel = (dl[ranking[s:s + 1000]] & ql[s:s + 1000, None]).any(axis=-1)
        hits = np.cumsum(rel, axis=1)
        n_rel = hits[:, -1]
        out[s:s + 1000] = np.where(n_rel > 0, (rel * hits / ranks).sum(1) / np.maximum(n_rel, 1), 0)
    return out


def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return -1


def _measure(fn):
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak RSS
    except OSError:
        pass
    base = _rss_kib('VmRSS')
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, (_rss_kib('VmHWM') - base) / 1024, result


def _worker(path, threads, topk, rounds, with_gemm, queue):
    for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(threads)
    import faiss
    import torch

    from mmkd_plugins.evaluation.metrics import hamming_search
    from mmkd_plugins.evaluation.metrics.hashing import hashing_retrieval_metrics
    if not hamming_search.native_available():
        raise SystemExit('the C kernels are not built: python setup.py build_ext --inplace')
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    data = np.load(path)
    qc, dc, q_lab, db_lab = data['qc'], data['dc'], data['q_lab'], data['db_lab']
    bits = 8 * qc.shape[1]
    tq, td = torch.from_numpy(qc), torch.from_numpy(dc)
    tql, tdl = torch.from_numpy(q_lab), torch.from_numpy(db_lab)
    index = faiss.IndexBinaryFlat(bits)
    index.add(dc)

    def ours():
        return hashing_retrieval_metrics(tq, td, tql, tdl, topk=topk, hamming_radius=None,
                                         backend='native')[f'AP@{topk}'].numpy()

    def ours_gemm():
        return hashing_retrieval_metrics(tq, td, tql, tdl, topk=topk, hamming_radius=None,
                                         backend='gemm')[f'AP@{topk}'].numpy()

    def faiss_ap():
        _, ranking = index.search(qc, topk)
        return ap_from_ranking(ranking, q_lab, db_lab)

    def faiss_scan():
        return index.search(qc, 1)[1]

    def popcount_floor():
        # our distance pass alone: hamming_knn_blocks with the selection kernel replaced by a no-op
        native = hamming_search._hamming_native

        class NoSelect:
            distances = staticmethod(native.distances)

            @staticmethod
            def select(*args):
                return None

        hamming_search._hamming_native = NoSelect
        try:
            for _ in hamming_search.hamming_knn_blocks(tq, td, topk, backend='native'):
                pass
        finally:
            hamming_search._hamming_native = native

    methods = [('ours', ours), ('faiss', faiss_ap), ('popcount_floor', popcount_floor),
               ('faiss_scan', faiss_scan)] + ([('ours_gemm', ours_gemm)] if with_gemm else [])
    # warm-up (library initialisation, thread pools) on 50 queries
    hashing_retrieval_metrics(tq[:50], td, tql[:50], tdl, topk=topk, hamming_radius=None)
    index.search(qc[:50], topk)
    runs = []
    for r in range(rounds):  # the order alternates between rounds
        res = {}
        for name, fn in (methods[::-1] if r % 2 else methods):
            seconds, cpu, mib, out = _measure(fn)
            res[name] = dict(seconds=seconds, cpu=cpu, mib=mib)
            if name in ('ours', 'faiss', 'ours_gemm'):
                res[name]['aps'] = out
        runs.append(res)
    queue.put(runs)


def run_one(path, threads, topk, rounds, with_gemm):
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(path, threads, topk, rounds, with_gemm, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def cpu_model() -> str:
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith('Model name:'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', nargs='+', default=list(DEFAULT_ROWS),
                        help='QUERIESxDATABASExBITS (first row = the headline row)')
    parser.add_argument('--classes', type=int, default=21)
    parser.add_argument('--topk', type=int, default=1000)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, os.cpu_count() or 1])
    parser.add_argument('--rounds', type=int, default=2, help='repetitions (min is kept)')
    parser.add_argument('--no-gemm', action='store_true',
                        help="skip the backend='gemm' column (the slowest method)")
    parser.add_argument('--note', default='', help='machine state to record (e.g. "shared")')
    parser.add_argument('--out', default=osp.join(osp.dirname(__file__), 'results', 'hashing_map.md'))
    args = parser.parse_args()
    import faiss  # noqa: F401  (fail early: pip install -r requirements/benchmarks.txt)
    import torch

    load_start = os.getloadavg()
    t_start = time.time()
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in args.rows:
            nq, ndb, bits = (int(v) for v in row.split('x'))
            q_bits, db_bits, q_lab, db_lab = make_data(nq, ndb, bits, args.classes)
            path = osp.join(tmp, f'{row}.npz')
            np.savez(path, qc=np.packbits(q_bits, axis=1), dc=np.packbits(db_bits, axis=1),
                     q_lab=q_lab, db_lab=db_lab)
            del q_bits, db_bits
            for threads in args.threads:
                runs = run_one(path, threads, args.topk, args.rounds, not args.no_gemm)
                best = {m: min(r[m]['seconds'] for r in runs) for m in runs[0]}
                best_cpu = {m: min(r[m]['cpu'] for r in runs) for m in runs[0]}
                mib = {m: max(r[m]['mib'] for r in runs) for m in runs[0]}
                diff = max(float(np.abs(r[m]['aps'] - r['faiss']['aps']).max()) for r in runs
                           for m in ('ours', 'ours_gemm') if m in r)
                table.append(dict(nq=nq, ndb=ndb, bits=bits, threads=threads, best=best, mib=mib,
                                  cpu=best_cpu,
                                  diff=diff, map=float(runs[0]['ours']['aps'].mean()),
                                  map_faiss=float(runs[0]['faiss']['aps'].mean())))
                print(row, threads, {k: round(v, 3) for k, v in best.items()}, 'diff', diff,
                      flush=True)
    minutes = (time.time() - t_start) / 60
    load_end = os.getloadavg()

    import faiss
    lines = [
        '# Hashing mAP@K evaluation: ours vs. FAISS IndexBinaryFlat (exact), same run',
        '',
        f'Command: `python benchmarks/hashing_map.py --rows {" ".join(args.rows)} --topk {args.topk} '
        f'--threads {" ".join(map(str, args.threads))} --rounds {args.rounds}`'
        + (f' (run under `nice -n {os.nice(0)}`)' if os.nice(0) > 0 else ''),
        '',
        f'Machine: {cpu_model()}, {os.cpu_count()} cores, CPU only (no GPU: the CUDA path of '
        f'`hamming_search.py` is not measured). {args.note} Load average (1/5/15 min) '
        f'{load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f} at the start, '
        f'{load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f} at the end; '
        f'{time.strftime("%Y-%m-%d", time.gmtime())}, {minutes:.1f} min in all. torch '
        f'{torch.__version__}, numpy {np.__version__}, faiss-cpu {faiss.__version__}.',
        '',
        f'Data: codes correlated with {args.classes} random multi-label classes (`make_data`), '
        f'mAP@{args.topk}. Every (row, threads) is one fresh process timing all methods one '
        f'after the other, {args.rounds} rounds (order reversed every other round); times are '
        f'wall-clock seconds, the fastest round of each method; CPU seconds (process time, all '
        f'threads) in brackets. "ours" = `hashing_retrieval_metrics(..., hamming_radius=None)` '
        f'with the C kernels (the default on CPU); "ours, GEMM" = the same with `backend=\'gemm\'` '
        f'(the path of CUDA tensors and of machines without a C compiler); "FAISS" = '
        f'`IndexBinaryFlat.search(k={args.topk})` + the same AP in numpy. Ratio = ours / FAISS '
        f'(<= 1: ours is as fast or faster). Floors: our XOR + popcount distance pass alone (same '
        f'blocks and threads, no selection, no AP) and FAISS `search(k=1)` (its XOR + popcount '
        f'scan). "max |AP diff|": largest per-query difference between ours (both backends) and '
        f'FAISS.',
        '',
        '| queries x database, bits | threads | ours (s) | FAISS search + AP (s) | **ratio** '
        '(CPU-time ratio) | popcount pass alone (s) | ours / popcount pass | FAISS k=1 scan (s) | '
        'ours, GEMM (s) | mAP | max abs AP diff | extra peak MiB ours / FAISS |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for t in table:
        b, c = t['best'], t['cpu']
        gemm = f'{b["ours_gemm"]:.2f}' if 'ours_gemm' in b else '-'
        lines.append(
            f'| {t["nq"]} x {t["ndb"]}, {t["bits"]} | {t["threads"]} | {b["ours"]:.2f} '
            f'({c["ours"]:.2f}) | {b["faiss"]:.2f} ({c["faiss"]:.2f}) | **{b["ours"] / b["faiss"]:.2f}** '
            f'({c["ours"] / c["faiss"]:.2f}) | {b["popcount_floor"]:.2f} | '
            f'{b["ours"] / b["popcount_floor"]:.2f} | {b["faiss_scan"]:.2f} | {gemm} | '
            f'{t["map"]:.4f} | {t["diff"]:.1e} | {t["mib"]["ours"]:.0f} / {t["mib"]["faiss"]:.0f} |')
    lines += [
        '',
        'Memory: ours holds, per thread, one block of uint8 distances (queries x database span) '
        'within `max_chunk_bytes` (32 MiB) and the block\'s top-K (12 bytes a pair), whatever the '
        'number of queries; the codes are used packed as given. FAISS returns (queries x '
        f'{args.topk}) distances and labels (12 bytes a pair), so its memory grows with the number '
        'of queries.',
    ]
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
