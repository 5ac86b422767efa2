"""Exact k-nearest-neighbour search in Hamming space, ties broken by database index.

Codes are packed uint8 (``numpy.packbits`` order, 8 bits a byte); with L = 8 x bytes bits, u the 0/1
bits and b = 2u - 1 the +-1 code, for a query q and a database item x

    d(q, x) = (L - <b_q, b_x>) / 2 = (L + sum(b_q)) / 2 - <b_q, u_x>      (Hamming distance),

one float32 GEMM of the query rows [-b_q, i * (L + 1) + (L + sum(b_q)) / 2] with the database rows
[u_x, 1] gives the key i * (L + 1) + d(q_i, x) (query row i of the block, distance) directly. Every
partial sum is an integer or a half of magnitude below 2^23, so the keys are exact in float32.
Padding bits of :func:`pack_bits` codes are 0 in every code and add 0 to d.

Ranking (the project's tie rule): by distance, then by database index. The k nearest of a query are
found without a general top-k over the database (counting selection):

1. threshold: the distances to an evenly spaced sample of m database items give, per query, the
   kk-th sample item by (distance, index), (d_s, i_s), kk = k m / N plus three standard deviations;
   the candidates are the items with (distance, index) <= (d_s, i_s) (about 1.8 k of them for
   k = 1000 of 1e5 items). When k >= N every item is a candidate.
2. one pass over the database in tiles: GEMM, compare the keys with the per-query limit and keep
   the flat indices of the candidates (numpy ``flatnonzero`` on CPU); tiles in index order.
3. a stable counting sort of the candidates by (query, distance) - stable, so database order within
   a distance - keeps the first k of every query. When the buffered candidates exceed the memory
   budget the same sort runs early, and a query with k candidates then only accepts distances below
   its k-th (later items have larger indices, so they lose every tie).
4. a query with fewer than min(k, N) candidates (the sample was unrepresentative) is searched again
   with every item as candidate; the result is therefore exact whatever the sample says.

Native CPU kernels (the default on CPU when built; ``backend='native'``): the C extension
``_hamming_native`` (``csrc/hamming_native.c``, built by ``pip install -e .`` / ``tools/install.sh``;
optional) computes the distances with XOR + popcount on the packed codes, one pass per block of
queries over a database span writing uint8 distances and a per-query histogram of the L + 1
distance values; from the histogram the k-th distance t is known exactly, and one scan of the
distances in index order keeps the items below t and the first ones at t, each written at the next
slot of its distance bucket, so the result is already sorted by (distance, index) (a counting
selection and counting sort in one). No sample, no re-search. Codes up to 248 bits (31 bytes);
longer codes, CUDA tensors and machines without the extension take the GEMM path below
(``backend='gemm'``).

GEMM path memory: one (queries x tile) float32 block, its mask and candidate indices, the candidate buffer
(bounded by ``max_chunk_bytes``) and the 0/1 float32 database operand (cached when it fits
``max_chunk_bytes``, else unpacked tile by tile). Works on CPU and CUDA tensors (on CPU the unpacking
and the tile compare + extraction run in numpy, several times faster than torch's CPU kernels there,
and the query blocks run in parallel threads - or, with fewer blocks than threads, contiguous spans of
the database, merged by a stable sort; elsewhere everything is torch).
"""
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

try:  # optional C kernels, built by setup.py (``python setup.py build_ext --inplace``)
    from . import _hamming_native
except ImportError:  # pragma: no cover - depends on the build
    _hamming_native = None

# Worst-case bytes per (query, item) pair of a tile: float32 GEMM output, bool mask, and the int64
# flat index / column, float32 key and int16 key of an extracted candidate (when every item is one).
_PAIR_BYTES = 48
# Bytes per buffered candidate (int16..64 key, int64 column) and its sort temporaries.
_CAND_BYTES = 64
_DEFAULT_QUERIES = 256
_MIN_SAMPLE = 2048
_MAX_SAMPLE = 8192
# CPU tensors take numpy kernels for unpacking and extraction (several times faster than torch's CPU
# kernels there); False runs the torch code path (the one CUDA tensors take) on CPU too.
USE_NUMPY_ON_CPU = True
# Longest code the native kernels take (uint8 distances): 31 bytes = 248 bits.
NATIVE_MAX_BYTES = 31
BACKENDS = ('auto', 'native', 'gemm')


def _numpy_path(t: Tensor) -> bool:
    return USE_NUMPY_ON_CPU and t.device.type == 'cpu'


def unpack01(packed: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """(n, B) uint8 packed codes -> (n, 8B) float32 0/1 bits (MSB first); ``out`` may be a (n, 8B)
    view of a larger float32 buffer."""
    n, num_bytes = packed.shape
    if out is None:
        out = torch.empty(n, 8 * num_bytes, dtype=torch.float32, device=packed.device)
    if _numpy_path(packed):
        np.copyto(out.numpy(), np.unpackbits(packed.contiguous().numpy(), axis=1), casting='unsafe')
    else:
        shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
        out.copy_(((packed.unsqueeze(-1) >> shifts) & 1).view(n, -1))
    return out


def _small_int(max_value: int) -> torch.dtype:
    """The smallest signed integer dtype holding 0..max_value (stable sorts of small keys are faster)."""
    if max_value < 2**15:
        return torch.int16
    return torch.int32 if max_value < 2**31 else torch.int64


def _query_operand(codes: Tensor, num_bits: int, levels: int) -> Tensor:
    """(q, B) packed queries -> (q, L + 1) rows [-b_q, i * levels + (L + sum(b_q)) / 2], with
    b = 2u - 1 the +-1 codes of the 0/1 bits u.

    Against a database row [u_x, 1] the GEMM gives i * levels + (L + sum(b_q)) / 2 - <b_q, u_x>
    = i * levels + (L - <b_q, b_x>) / 2 = i * levels + d(q_i, x), the candidate key (row,
    distance), exact in float32 (integers and halves below 2^23).
    """
    q = codes.shape[0]
    out = torch.empty(q, num_bits + 1, dtype=torch.float32, device=codes.device)
    neg_b = unpack01(codes, out=out[:, :num_bits]).mul_(-2.0).add_(1.0)  # -b_q
    out[:, num_bits] = torch.arange(q, device=codes.device, dtype=torch.float32) * levels + \
        (num_bits - neg_b.sum(dim=1)) * 0.5
    return out


def _extract(keys_f: Tensor, key_max: Tensor, key_dtype: torch.dtype,
             mask_buf: Optional[np.ndarray]) -> Tuple[Tensor, Tensor]:
    """Entries of the (q, n) GEMM keys with key <= key_max[row], in row-major order: their integer
    keys (row * levels + distance) and columns (0..n-1)."""
    n = keys_f.shape[1]
    if _numpy_path(keys_f):
        # numpy: its compare and flatnonzero are several times faster than torch's CPU kernels
        arr = keys_f.numpy()
        mask = np.less_equal(arr, key_max.numpy()[:, None], out=mask_buf)
        flat = np.flatnonzero(mask)
        keys = arr.reshape(-1).take(flat).astype(np.int64 if key_dtype == torch.int64 else
                                                 np.int32 if key_dtype == torch.int32 else np.int16)
        return torch.from_numpy(keys), torch.from_numpy(flat % n)
    flat = (keys_f <= key_max[:, None]).view(-1).nonzero().squeeze(1)
    return keys_f.view(-1).index_select(0, flat).to(key_dtype), flat % n


class HammingBlock(NamedTuple):
    """Search result for queries ``start:end``.

    ``indices`` / ``distances``: (q, R) int64, R = min(k, N), the R nearest items in rank order.
    ``radius_rows`` / ``radius_cols``: every (query row within the block, item) pair with distance
    <= radius, in no particular order (empty when radius is None).
    """
    start: int
    end: int
    indices: Tensor
    distances: Tensor
    radius_rows: Tensor
    radius_cols: Tensor


class _Candidates:
    """Candidate buffer of one block of ``q`` queries.

    Keeps (key, column) pairs with key = row * levels + distance, appended in database order; the
    per-row distance limit ``limit`` (candidates need distance <= limit) only decreases.
    :meth:`select` keeps the first ``keep`` of every row by (distance, index).
    """

    def __init__(self, limit: Tensor, keep: int, num_levels: int, cap: int):
        self.q = limit.numel()
        self.limit = limit
        self.keep = keep
        self.levels = num_levels
        self.cap = cap
        self.key_dtype = _small_int(self.q * num_levels)
        self.keys: List[Tensor] = []
        self.cols: List[Tensor] = []
        self.size = 0

    def key_max(self, radius: Optional[int]) -> Tensor:
        """(q,) float32 largest key extracted: row * levels + max(limit, radius)."""
        lim = self.limit if radius is None else self.limit.clamp(min=radius)
        base = torch.arange(self.q, device=lim.device) * self.levels
        return (base + lim).to(torch.float32)

    def add(self, keys: Tensor, cols: Tensor, filter_limit: bool) -> None:
        """Append candidates (keys row * levels + distance, database columns) in database order."""
        if filter_limit:  # extracted with the radius limit: keep those within the row's limit
            rows = keys.long() // self.levels
            sel = keys.long() - rows * self.levels <= self.limit.index_select(0, rows)
            keys, cols = keys[sel], cols[sel]
        if not keys.numel():
            return
        self.keys.append(keys)
        self.cols.append(cols)
        self.size += keys.numel()
        if self.size > self.cap:
            self.select()

    def select(self) -> Tuple[Tensor, Tensor, Tensor]:
        """Keep, per row, the first ``keep`` candidates by (distance, index), sorted; tighten the
        limits of rows that have ``keep``. Returns (keys, cols, counts per row)."""
        dev = self.limit.device
        if not self.keys:
            empty = torch.zeros(0, dtype=torch.int64, device=dev)
            return empty.to(self.key_dtype), empty, torch.zeros(self.q, dtype=torch.int64, device=dev)
        keys = torch.cat(self.keys) if len(self.keys) > 1 else self.keys[0]
        cols = torch.cat(self.cols) if len(self.cols) > 1 else self.cols[0]
        # stable: within a (row, distance) key the database order of the appends is kept
        keys, order = torch.sort(keys, stable=True)
        cols = cols.index_select(0, order)
        bounds = torch.arange(self.q + 1, device=dev, dtype=torch.int64) * self.levels
        edges = torch.searchsorted(keys, bounds.to(keys.dtype))  # start of every row's keys
        starts, counts = edges[:-1], edges[1:] - edges[:-1]
        full = counts >= self.keep
        if bool(full.any()):
            # rows with keep candidates: the keep-th distance d_k; later items need distance < d_k
            kth = keys.index_select(0, (starts + self.keep - 1).clamp(max=keys.numel() - 1)).long()
            kth = kth - torch.arange(self.q, device=dev) * self.levels
            self.limit = torch.where(full, torch.minimum(self.limit, kth - 1), self.limit)
        if bool((counts > self.keep).any()):
            # the first keep of every row (ties at the keep-th distance: smallest indices)
            grid = torch.arange(self.keep, device=dev)
            pos = starts[:, None] + grid
            valid = grid < counts[:, None]
            pos = pos.masked_select(valid)
            keys, cols = keys.index_select(0, pos), cols.index_select(0, pos)
            counts = counts.clamp(max=self.keep)
        self.keys, self.cols, self.size = [keys], [cols], keys.numel()
        return keys, cols, counts


def _sample_threshold(dist_sample: Tensor, sample_idx: Tensor, keep: int,
                      num_db: int) -> Tuple[Tensor, Tensor]:
    """Per-query lexicographic (distance, index) limit from the (q, m) float32 sample distances.

    The kk-th sample item by (distance, index), (d_s, i_s), with kk = keep m / N plus about three
    standard deviations, bounds the candidates: distance < d_s, or distance == d_s and index <= i_s
    (about kk N / m >= keep items; exactly the keep-th item when the sample is the database).
    Returns (d_s, i_s), (q,) int64 each.
    """
    m = dist_sample.shape[1]
    if m >= num_db:
        kk = keep
    else:
        mu = keep * m / num_db
        kk = min(m, int(math.ceil(mu + 3.0 * math.sqrt(mu) + 2)))
    # key = distance * m + sample position, exact in float32 (< 2^24)
    key = dist_sample.mul_(m).add_(torch.arange(m, device=dist_sample.device, dtype=torch.float32))
    kth = key.topk(kk, dim=1, largest=False, sorted=False).values.max(dim=1).values.round().long()
    return kth // m, sample_idx.index_select(0, kth % m)


@contextmanager
def _torch_threads(n: int):
    """Temporarily set torch's intra-op thread count (restored on exit)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _Searcher:
    """The per-call state of :func:`hamming_knn_blocks` (sizes, cached operands)."""

    def __init__(self, query_codes: Tensor, db_codes: Tensor, k: int, radius: Optional[int],
                 chunk_size: Optional[int], budget: int):
        self.query_codes, self.db_codes = query_codes, db_codes
        self.num_db = db_codes.shape[0]
        self.device = db_codes.device
        self.num_bits = 8 * db_codes.shape[1]
        self.levels = self.num_bits + 1
        self.keep = min(int(k), self.num_db)
        self.radius = radius
        if chunk_size is None:
            per_query = _PAIR_BYTES * min(self.num_db, 2048) + _CAND_BYTES * self.keep
            chunk_size = max(1, min(_DEFAULT_QUERIES, budget // per_query))
        self.qb = max(1, int(chunk_size))
        self.nb = max(1, min(self.num_db, (budget - self.qb * _CAND_BYTES * self.keep)
                             // (_PAIR_BYTES * self.qb)))
        self.cap = max(2 * self.qb * self.keep, budget // _CAND_BYTES)
        self.db_aug = None  # [u_x, 1] rows of the whole database, when they fit the budget
        if self.num_db * (self.num_bits + 1) * 4 <= budget:
            self.db_aug = self._db_operand(slice(0, self.num_db))
        if self.keep < self.num_db:
            m = min(self.num_db, max(_MIN_SAMPLE, min(_MAX_SAMPLE, math.ceil(16 * self.num_db / self.keep))),
                    2**24 // self.levels)  # sample keys distance * m + position exact in float32
            self.sample_idx = torch.arange(m, device=self.device) * self.num_db // m
            self.sample_aug = self._db_operand(self.sample_idx)
        self.local = threading.local()
        self.span_pool, self.spans = None, []   # set by hamming_knn_blocks for database spans

    def _db_operand(self, idx, out: Optional[Tensor] = None) -> Tensor:
        """Database rows ``idx`` (a slice or an index tensor) -> (n, L + 1) [u_x, 1]."""
        codes = self.db_codes[idx]
        if out is None:
            out = torch.empty(codes.shape[0], self.num_bits + 1, device=self.device)
        unpack01(codes, out=out[:, :self.num_bits])
        out[:, self.num_bits] = 1.0
        return out

    def _buffers(self):
        """Per-thread reusable buffers: GEMM output, numpy mask, database tile."""
        loc = self.local
        if getattr(loc, 'gemm', None) is None:
            loc.gemm = torch.empty(self.qb * self.nb, device=self.device)
            loc.mask = np.empty(self.qb * self.nb, dtype=bool) if self.device.type == 'cpu' else None
            loc.tile = None if self.db_aug is not None else torch.empty(
                self.nb, self.num_bits + 1, device=self.device)
        return loc.gemm, loc.mask, loc.tile

    def search(self, q_codes: Tensor, lex: Optional[Tuple[Tensor, Tensor]], radius: Optional[int],
               span: Optional[Tuple[int, int]] = None):
        """Candidates of the (q, B) packed queries among database items ``span`` (default all):
        lexicographic limit ``lex`` (None: every item). With several ``span_pool`` threads the
        database is split into that many contiguous spans searched in parallel and merged."""
        if span is None and self.span_pool is not None:
            return self._search_spans(q_codes, lex, radius)
        span_start, span_end = (0, self.num_db) if span is None else span
        q = q_codes.shape[0]
        if lex is None:
            limit = torch.full((q,), self.num_bits, dtype=torch.int64, device=self.device)
        else:
            limit, lex_idx = lex
        cands = _Candidates(limit, self.keep, self.levels, self.cap)
        q_aug = _query_operand(q_codes, self.num_bits, self.levels)
        gemm_buf, mask_buf, tile_buf = self._buffers()
        r_keys, r_cols = [], []
        for js in range(span_start, span_end, self.nb):
            je = min(js + self.nb, span_end)
            n = je - js
            if lex is not None:  # past the sample item's index: its distance is excluded
                cands.limit = torch.where(lex_idx < js, torch.minimum(cands.limit, limit - 1),
                                          cands.limit)
            tile = self.db_aug[js:je] if tile_buf is None else self._db_operand(
                slice(js, je), tile_buf[:n])
            keys_f = torch.mm(q_aug, tile.t(), out=gemm_buf[:q * n].view(q, n))
            mbuf = None if mask_buf is None else mask_buf[:q * n].reshape(q, n)
            keys, cols = _extract(keys_f, cands.key_max(radius), cands.key_dtype, mbuf)
            if not keys.numel():
                continue
            if js:
                cols += js
            filter_limit = False
            if radius is not None:
                dist = keys % self.levels
                within = dist <= radius
                r_keys.append(keys[within])
                r_cols.append(cols[within])
                filter_limit = bool((cands.limit < radius).any())
            cands.add(keys, cols, filter_limit)
        keys, cols, counts = cands.select()
        return keys, cols, counts, r_keys, r_cols

    def _search_spans(self, q_codes: Tensor, lex: Optional[Tuple[Tensor, Tensor]],
                      radius: Optional[int]):
        """:meth:`search` over contiguous database spans in parallel threads, merged.

        Each span yields its own first ``keep`` per query by (distance, index); a stable sort of
        their union by (query, distance), spans in database order, keeps the tie rule, so the first
        ``keep`` of the union are those of the whole database.
        """
        parts = [f.result() for f in [self.span_pool.submit(self.search, q_codes, lex, radius, span)
                                      for span in self.spans]]
        q = q_codes.shape[0]
        limit = torch.full((q,), self.num_bits, dtype=torch.int64, device=self.device)
        merged = _Candidates(limit, self.keep, self.levels, cap=2**62)
        merged.keys, merged.cols = [p[0] for p in parts], [p[1] for p in parts]
        keys, cols, counts = merged.select()
        return (keys, cols, counts, [k for p in parts for k in p[3]],
                [c for p in parts for c in p[4]])

    def block(self, start: int) -> HammingBlock:
        end = min(start + self.qb, self.query_codes.shape[0])
        q, keep, levels, device = end - start, self.keep, self.levels, self.device
        q_codes = self.query_codes[start:end].to(device)
        lex = None
        if keep < self.num_db:
            q_aug = _query_operand(q_codes, self.num_bits, self.levels)
            q_aug[:, self.num_bits] -= torch.arange(q, device=device) * levels  # distances only
            lex = _sample_threshold(torch.mm(q_aug, self.sample_aug.t()), self.sample_idx, keep,
                                    self.num_db)
        keys, cols, counts, r_keys, r_cols = self.search(q_codes, lex, self.radius)
        keys = keys.long()
        short = counts < keep
        if bool(short.any()):
            # the sample's limit held fewer than R items: search these queries again over all
            ok = ~short.index_select(0, keys // levels)
            keys, cols = keys[ok], cols[ok]
            redo = short.nonzero().squeeze(1)
            k2, c2, _, _, _ = self.search(q_codes.index_select(0, redo), None, None)
            k2 = k2.long()
            keys = torch.cat([keys, redo.index_select(0, k2 // levels) * levels + k2 % levels])
            cols = torch.cat([cols, c2])
            keys, order = torch.sort(keys, stable=True)
            cols = cols.index_select(0, order)
        # every row now holds exactly R candidates, sorted by (row, distance, index)
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        r_keys = torch.cat(r_keys).long() if r_keys else empty
        r_cols = torch.cat(r_cols) if r_cols else empty
        return HammingBlock(start, end, cols.view(q, keep), (keys % levels).view(q, keep),
                            r_keys // levels, r_cols)


def check_packed_codes(query_codes: Tensor, db_codes: Tensor, who: str) -> None:
    """Both (n, bytes) uint8 packed codes of one length, else a ValueError prefixed ``who``."""
    for name, codes in (('query_codes', query_codes), ('db_codes', db_codes)):
        if codes.dtype != torch.uint8 or codes.dim() != 2:
            raise ValueError(f'{who}: {name} must be packed uint8 codes of shape (n, bytes), '
                             f'got {codes.dtype} {tuple(codes.shape)}')
    if query_codes.shape[1] != db_codes.shape[1]:
        raise ValueError(f'{who}: code length mismatch: queries have {query_codes.shape[1]} '
                         f'bytes, database {db_codes.shape[1]}')


def native_available() -> bool:
    """Whether the C kernels of :mod:`_hamming_native` were built and import."""
    return _hamming_native is not None


def _resolve_backend(backend: str, db_codes: Tensor) -> str:
    """'native' or 'gemm' for ``backend`` ('auto' picks native for CPU codes of <= 248 bits)."""
    if backend not in BACKENDS:
        raise ValueError(f'hamming_knn: backend must be one of {BACKENDS}, got {backend!r}')
    fits = db_codes.device.type == 'cpu' and db_codes.shape[1] <= NATIVE_MAX_BYTES
    if backend == 'auto':
        return 'native' if fits and native_available() else 'gemm'
    if backend == 'native':
        if not native_available():
            raise RuntimeError('hamming_knn: backend="native" but the C extension '
                               'mmkd_plugins.evaluation.metrics._hamming_native is not built; build it '
                               'with `python setup.py build_ext --inplace` (or `bash tools/install.sh`), '
                               'or use backend="auto" / "gemm"')
        if not fits:
            raise ValueError(f'hamming_knn: backend="native" takes CPU codes of at most '
                             f'{NATIVE_MAX_BYTES} bytes, got {db_codes.shape[1]} bytes on '
                             f'{db_codes.device}; use backend="auto" / "gemm"')
    return backend


def _blocks_in_threads(block, starts: List[int], threads: int) -> Iterator[HammingBlock]:
    """``block(start)`` for every start in ``threads`` threads, yielded in query order, with at
    most ``threads`` blocks in flight so that the memory stays bounded."""
    with ThreadPoolExecutor(threads) as pool:
        pending = [pool.submit(block, s) for s in starts[:threads]]
        for i in range(len(starts)):
            result = pending[i].result()
            if i + threads < len(starts):
                pending.append(pool.submit(block, starts[i + threads]))
            pending[i] = None
            yield result


def _native_blocks(query_codes: Tensor, db_codes: Tensor, k: int, radius: Optional[int],
                   chunk_size: Optional[int], budget: int, threads: int) -> Iterator[HammingBlock]:
    """:func:`hamming_knn_blocks` with the C kernels (CPU, <= 248 bits).

    Blocks of ``qb`` queries against database spans of ``span`` items, ``qb * span`` uint8
    distances within ``budget``; a span's first k per query come from the kernels already ranked,
    and the spans are merged in index order into the running first k by a stable sort of the
    distances (earlier spans win ties: the (distance, index) rule). Blocks run in ``threads``
    threads; with fewer blocks than threads every block's spans run in parallel.
    """
    x = db_codes.contiguous().numpy()
    queries = query_codes.to('cpu').contiguous().numpy()
    num_q, (num_db, nbytes) = queries.shape[0], x.shape
    levels = 8 * nbytes + 1
    keep = min(int(k), num_db)
    if chunk_size:
        qb = max(1, int(chunk_size))
        span = max(1, min(num_db, budget // qb))
    else:
        span = max(1, min(num_db, budget))  # one query row of uint8 distances within the budget
        max_qb = max(1, min(_DEFAULT_QUERIES, budget // (span + 17 * keep)))
        num_blocks = math.ceil(num_q / max_qb)
        if threads > 1 and num_q >= threads:  # a multiple of the threads: all threads get blocks
            num_blocks = threads * math.ceil(num_blocks / threads)
        qb = max(1, math.ceil(num_q / max(1, num_blocks)))
    starts = list(range(0, num_q, qb))
    spans = [(s, min(s + span, num_db)) for s in range(0, num_db, span)]
    if threads > 1 and len(starts) < threads and len(spans) < threads:
        # few queries: split the database into ``threads`` spans searched in parallel
        n = math.ceil(num_db / threads)
        spans = [(s, min(s + n, num_db)) for s in range(0, num_db, n)]
    local = threading.local()  # per-thread distance buffer, reused across blocks

    def search_span(q_codes: np.ndarray, lo: int, hi: int):
        q, n = q_codes.shape[0], hi - lo
        if getattr(local, 'dist', None) is None or local.dist.size < q * n:
            local.dist = np.empty(qb * max(hi_ - lo_ for lo_, hi_ in spans), dtype=np.uint8)
        dist = local.dist[:q * n].reshape(q, n)
        hist = np.empty((q, levels), dtype=np.int64)
        kk = min(keep, n)
        _hamming_native.distances(q_codes, x[lo:hi], nbytes, levels, kk, dist, hist)
        idx = np.empty((q, kk), dtype=np.int64)
        dd = np.empty((q, kk), dtype=np.uint8)
        _hamming_native.select(dist, n, hist, levels, kk, lo, idx, dd)
        pairs = None
        if radius is not None:
            rows, cols = np.nonzero(dist <= radius)
            pairs = (rows, cols + lo)
        return idx, dd, pairs

    def block(start: int, span_pool: Optional[ThreadPoolExecutor] = None) -> HammingBlock:
        end = min(start + qb, num_q)
        q_codes = queries[start:end]
        if span_pool is not None:
            parts = span_pool.map(lambda sp: search_span(q_codes, *sp), spans)
        else:
            parts = (search_span(q_codes, lo, hi) for lo, hi in spans)
        idx = dd = None
        pairs = []
        for p_idx, p_dd, p_pairs in parts:  # spans in index order
            if idx is None:
                idx, dd = p_idx, p_dd
            else:  # running first k + this span's, stable by distance: earlier items win ties
                idx = np.concatenate([idx, p_idx], axis=1)
                dd = np.concatenate([dd, p_dd], axis=1)
                order = np.argsort(dd, axis=1, kind='stable')[:, :keep]
                idx = np.take_along_axis(idx, order, axis=1)
                dd = np.take_along_axis(dd, order, axis=1)
            if p_pairs is not None:
                pairs.append(p_pairs)
        rr = rc = torch.zeros(0, dtype=torch.int64)
        if radius is not None:
            rr = torch.from_numpy(np.concatenate([p[0] for p in pairs]).astype(np.int64))
            rc = torch.from_numpy(np.concatenate([p[1] for p in pairs]).astype(np.int64))
        return HammingBlock(start, end, torch.from_numpy(idx), torch.from_numpy(dd.astype(np.int64)),
                            rr, rc)

    if threads <= 1 or (len(starts) <= 1 and len(spans) <= 1):
        for start in starts:
            yield block(start)
        return
    if len(starts) < threads:
        with ThreadPoolExecutor(min(threads, len(spans))) as pool:
            for start in starts:
                yield block(start, pool)
        return
    yield from _blocks_in_threads(block, starts, threads)


def hamming_knn_blocks(query_codes: Tensor,
                       db_codes: Tensor,
                       k: int,
                       radius: Optional[int] = None,
                       chunk_size: Optional[int] = None,
                       max_chunk_bytes: int = 32 * 2**20,
                       num_threads: Optional[int] = None,
                       backend: str = 'auto') -> Iterator[HammingBlock]:
    """Exact k nearest database items (Hamming distance, then index) of every query, by blocks.

    Args:
        query_codes: (Q, B) uint8 packed codes; db_codes: (N, B) uint8 (queries are moved to its
            device).
        k: neighbours per query (R = min(k, N) are returned).
        radius: also report every pair with distance <= radius (None: none).
        chunk_size: queries per block (None: up to 256, within ``max_chunk_bytes``).
        max_chunk_bytes: approximate memory budget of the temporaries (per thread).
        num_threads: CPU only: blocks searched in parallel, one torch thread each (None: torch's
            thread count; the count is restored afterwards); with fewer blocks than threads the
            database is split into that many spans searched in parallel instead. CUDA tensors use
            one stream.
        backend: ``'native'`` (C kernels: XOR + popcount, histogram selection; CPU, <= 248 bits),
            ``'gemm'`` (float32 GEMM + sampled threshold; any device and length) or ``'auto'``
            (native when it applies and is built, else gemm). Both give the same ranking.

    Yields:
        :class:`HammingBlock` per block of queries, in query order.
    """
    check_packed_codes(query_codes, db_codes, 'hamming_knn')
    if db_codes.shape[0] == 0:
        raise ValueError('hamming_knn: the database is empty')
    if int(k) < 1:
        raise ValueError(f'hamming_knn: k must be positive, got {k}')
    threads = torch.get_num_threads() if num_threads is None else int(num_threads)
    if _resolve_backend(backend, db_codes) == 'native':
        yield from _native_blocks(query_codes, db_codes, k, radius, chunk_size,
                                  max(int(max_chunk_bytes), 1), threads)
        return
    searcher = _Searcher(query_codes, db_codes, k, radius, chunk_size, max(int(max_chunk_bytes), 1))
    starts = list(range(0, query_codes.shape[0], searcher.qb))
    cpu_threads = db_codes.device.type == 'cpu' and threads > 1
    if cpu_threads and len(starts) < threads:
        # fewer query blocks than threads (few queries, large database): split the database into
        # ``threads`` contiguous spans (whole tiles) searched in parallel for every block
        tiles = math.ceil(searcher.num_db / searcher.nb)
        bounds = [min(searcher.num_db, (tiles * t // threads) * searcher.nb) for t in range(threads + 1)]
        searcher.spans = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        if len(searcher.spans) > 1:
            with _torch_threads(1), ThreadPoolExecutor(len(searcher.spans)) as pool:
                searcher.span_pool = pool
                for start in starts:
                    yield searcher.block(start)
            return
    if not cpu_threads or len(starts) <= 1:
        for start in starts:
            yield searcher.block(start)
        return
    # CPU: whole blocks in parallel threads (torch and numpy release the GIL), at most ``threads``
    # blocks in flight so the memory stays bounded.
    with _torch_threads(1):
        yield from _blocks_in_threads(searcher.block, starts, threads)


def hamming_knn(query_codes: Tensor, db_codes: Tensor, k: int, **kwargs) -> Tuple[Tensor, Tensor]:
    """(distances, indices), both (Q, min(k, N)) int64, of :func:`hamming_knn_blocks` in one piece."""
    blocks = list(hamming_knn_blocks(query_codes, db_codes, k, **kwargs))
    if not blocks:
        keep = min(int(k), db_codes.shape[0])
        empty = torch.zeros(0, keep, dtype=torch.int64, device=db_codes.device)
        return empty, empty.clone()
    return (torch.cat([b.distances for b in blocks]), torch.cat([b.indices for b in blocks]))
