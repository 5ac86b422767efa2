"""Hamming-ranking retrieval metrics for deep hashing: mAP@K, precision@K, P/R within a Hamming radius.

Codes are stored packed, 8 bits a byte, most significant bit first (``numpy.packbits`` order); bit 1
stands for +1 and bit 0 for -1. The ranking is exact and comes from
:mod:`~mmkd_plugins.evaluation.metrics.hamming_search`: on CPU (codes up to 248 bits) C kernels
compute XOR + popcount distances and select the top K with a histogram of the distances (a
threshold distance, then only the items at or below it, already in rank order); elsewhere Hamming
distances come from a float32 GEMM of the +-1 codes, d = (L - <b_q, b_x>) / 2, with a counting
selection. Both work in blocks of queries and database spans, so memory stays bounded
(``max_chunk_bytes``) for any number of queries and database size; on CPU the blocks run in
``torch.get_num_threads()`` threads. ``popcount64`` / ``hamming_distance`` (XOR + popcount on 64-bit
words in torch) remain as helpers.

Definitions (per query q; the database is ranked by Hamming distance, ties broken by database
index, i.e. a stable sort; ``rel_j`` = the j-th ranked item shares at least one label with q):

    R       = min(K, database size)
    AP@K    = sum_{j <= R} rel_j P@j / sum_{j <= R} rel_j,   P@j = (1/j) sum_{i <= j} rel_i
              (0 when no relevant item is in the top R)
    P@K     = sum_{j <= R} rel_j / R
    P(r)    = #relevant with distance <= r / #items with distance <= r   (0 when none is retrieved)
    Rec(r)  = #relevant with distance <= r / #relevant in the database   (0 when none is relevant)

Every reported number is the mean over queries.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.registry import METRICS
from torch import Tensor

from .hamming_search import BACKENDS, check_packed_codes, hamming_knn_blocks

_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(bits: Tensor) -> Tensor:
    """Pack a (..., K) boolean tensor to (..., ceil(K / 8)) uint8, MSB first (numpy.packbits order)."""
    bits = bits.to(torch.bool)
    if bits.device.type == 'cpu' and bits.dim() >= 1:  # numpy's packbits: same order, ~10x faster
        return torch.from_numpy(np.packbits(bits.contiguous().numpy(), axis=-1))
    k = bits.shape[-1]
    pad = (-k) % 8
    if pad:
        bits = torch.cat([bits, bits.new_zeros(*bits.shape[:-1], pad)], dim=-1)
    grouped = bits.reshape(*bits.shape[:-1], -1, 8).to(torch.uint8)
    return (grouped * _BIT_WEIGHTS.to(bits.device)).sum(dim=-1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, num_bits: int) -> Tensor:
    """Inverse of :func:`pack_bits`: (..., B) uint8 -> (..., num_bits) bool."""
    if packed.dtype != torch.uint8:
        raise TypeError(f'unpack_bits: expected uint8 packed codes, got {packed.dtype}')
    if num_bits > packed.shape[-1] * 8:
        raise ValueError(f'unpack_bits: {packed.shape[-1]} bytes hold at most {packed.shape[-1] * 8} '
                         f'bits, asked for {num_bits}')
    weights = _BIT_WEIGHTS.to(packed.device)
    bits = (packed.unsqueeze(-1) & weights) != 0
    return bits.reshape(*packed.shape[:-1], -1)[..., :num_bits]


def binarize(hash_outputs: Tensor) -> Tensor:
    """Codes ``sign(h)`` as bits: True (+1) where h >= 0, False (-1) elsewhere."""
    return hash_outputs >= 0


def _to_words(packed: Tensor) -> Tensor:
    """(N, B) uint8 -> (N, ceil(B / 8)) int64 words (zero padded; popcount is order-independent)."""
    pad = (-packed.shape[-1]) % 8
    if pad:
        out = packed.new_zeros(packed.shape[0], packed.shape[1] + pad)
        out[:, :packed.shape[1]] = packed
        packed = out
    return packed.contiguous().view(torch.int64)


_M1 = 0x5555555555555555
_M2 = 0x3333333333333333
_M4 = 0x0F0F0F0F0F0F0F0F
_H01 = 0x0101010101010101


def popcount64(x: Tensor) -> Tensor:
    """Number of set bits of every int64 element (SWAR bit counting, vectorised, 2 temporaries).

    Arithmetic right shifts copy the sign bit, but every mask has a zero top bit; the final multiply
    wraps modulo 2**64 and its top byte (the count, <= 64) is non-negative.
    """
    t = x >> 1
    t &= _M1
    torch.sub(x, t, out=t)  # 2-bit counts
    u = t >> 2
    u &= _M2
    t &= _M2
    t += u  # 4-bit counts
    torch.bitwise_right_shift(t, 4, out=u)
    t += u
    t &= _M4  # 8-bit counts
    t *= _H01
    t >>= 56
    return t


def hamming_distance(query_words: Tensor, db_words: Tensor) -> Tensor:
    """(Q, W) x (N, W) int64 words -> (Q, N) int64 Hamming distances."""
    dist = popcount64(query_words[:, None, 0] ^ db_words[None, :, 0])
    for w in range(1, query_words.shape[1]):
        dist += popcount64(query_words[:, None, w] ^ db_words[None, :, w])
    return dist


def _shares_label(query_words: Tensor, db_words: Tensor) -> Tensor:
    """(Q, 1 or R, W) & (Q or 1, R, W) packed labels -> (Q, R) bool: any common label."""
    return ((query_words & db_words) != 0).any(dim=-1)


def _relevant_counts(q_labels: Tensor, patterns: Tensor, pattern_counts: Tensor, tile: int) -> Tensor:
    """(q, C) float32 labels x (U, C) distinct database label rows (``pattern_counts`` items each)
    -> (q,) float64 number of database items sharing a label with each query (an exact GEMM)."""
    total = torch.zeros(q_labels.shape[0], dtype=torch.float64, device=q_labels.device)
    for s in range(0, patterns.shape[0], tile):
        shared = torch.mm(q_labels, patterns[s:s + tile].t()) > 0  # (q, u)
        total += (shared.to(torch.float64) * pattern_counts[s:s + tile]).sum(dim=1)
    return total


def hashing_retrieval_metrics(query_codes: Tensor,
                              db_codes: Tensor,
                              query_labels: Tensor,
                              db_labels: Tensor,
                              topk: Union[int, Sequence[int]] = 1000,
                              hamming_radius: Optional[int] = 2,
                              chunk_size: Optional[int] = None,
                              max_chunk_bytes: int = 32 * 2**20,
                              backend: str = 'auto') -> Dict[str, Tensor]:
    """Per-query Hamming-ranking retrieval metrics (see the module docstring for the definitions).

    The ranking is :func:`~mmkd_plugins.evaluation.metrics.hamming_search.hamming_knn_blocks`
    (exact; on CPU XOR + popcount C kernels with a histogram selection of the top R, elsewhere a
    float32 GEMM of +-1 codes with a counting selection).

    Args:
        query_codes: (Q, B) uint8 packed codes (:func:`pack_bits`).
        db_codes: (N, B) uint8 packed codes.
        query_labels: (Q, C) multi-hot labels (bool or {0, 1}).
        db_labels: (N, C) multi-hot labels.
        topk: K, or several.
        hamming_radius: r for precision/recall within radius r; None skips them.
        chunk_size: queries per chunk; None derives it from ``max_chunk_bytes`` (at most 256).
        max_chunk_bytes: approximate memory of one chunk's temporaries (32 MiB by default).
        backend: the search backend of :func:`hamming_knn_blocks`: ``'auto'`` (the native C
            kernels for CPU codes of <= 248 bits when built, else the GEMM path), ``'native'``,
            ``'gemm'``; the rankings are identical.

    Returns:
        dict of (Q,) float64 tensors: ``AP@K`` and ``P@K`` for every K, ``P_r`` and ``R_r``
        (``r`` = the radius).
    """
    topks = [topk] if isinstance(topk, int) else list(topk)
    if not topks or any(int(k) < 1 for k in topks):
        raise ValueError(f'hashing metrics: topk must be positive integers, got {topk}')
    if hamming_radius is not None and int(hamming_radius) < 0:
        raise ValueError(f'hashing metrics: hamming_radius must be >= 0 or None, got {hamming_radius}')
    check_packed_codes(query_codes, db_codes, 'hashing metrics')
    for name, lab, codes in (('query', query_labels, query_codes), ('database', db_labels, db_codes)):
        if lab.dim() != 2 or lab.shape[0] != codes.shape[0]:
            raise ValueError(f'hashing metrics: {name} labels must be (n, C) with n = {codes.shape[0]}, '
                             f'got {tuple(lab.shape)}')
    if query_labels.shape[1] != db_labels.shape[1]:
        raise ValueError(f'hashing metrics: class number mismatch: queries have {query_labels.shape[1]}'
                         f' classes, database {db_labels.shape[1]}')
    num_q, num_db = query_codes.shape[0], db_codes.shape[0]
    if num_db == 0:
        raise ValueError('hashing metrics: the database is empty')

    device = db_codes.device
    query_codes = query_codes.to(device)
    ql_words = _to_words(pack_bits(query_labels.bool().to(device)))
    dbl_words = _to_words(pack_bits(db_labels.bool().to(device)))
    max_r = min(max(topks), num_db)
    ranks = torch.arange(1, max_r + 1, dtype=torch.float64, device=device)

    keys_out = [f'{m}@{k}' for k in topks for m in ('AP', 'P')]
    if hamming_radius is not None:
        keys_out += [f'P_{hamming_radius}', f'R_{hamming_radius}']
        patterns, pattern_counts = torch.unique(db_labels.bool().to(device), dim=0, return_counts=True)
        patterns = patterns.float()
        pattern_counts = pattern_counts.to(torch.float64)
        q_labels_f = query_labels.bool().to(device).float()
        pattern_tile = max(1, int(max_chunk_bytes) // (16 * max(1, min(num_q, 256))))
    out = {key: torch.zeros(num_q, dtype=torch.float64, device=device) for key in keys_out}
    for block in hamming_knn_blocks(query_codes, db_codes, max_r, radius=hamming_radius,
                                    chunk_size=chunk_size, max_chunk_bytes=max_chunk_bytes,
                                    backend=backend):
        start, end = block.start, block.end
        rel = _shares_label(ql_words[start:end, None], dbl_words[block.indices])  # (q, R)
        rel_f = rel.to(torch.float64)
        hits = rel_f.cumsum(dim=1)
        prec_at_j = hits / ranks
        for k in topks:
            r = min(int(k), num_db)
            n_rel = hits[:, r - 1]
            ap = (prec_at_j[:, :r] * rel_f[:, :r]).sum(dim=1) / n_rel.clamp(min=1)
            out[f'AP@{k}'][start:end] = torch.where(n_rel > 0, ap, torch.zeros_like(ap))
            out[f'P@{k}'][start:end] = n_rel / r
        if hamming_radius is not None:
            q = end - start
            rr, rc = block.radius_rows, block.radius_cols
            rel_pairs = _shares_label(ql_words[start + rr], dbl_words[rc])
            n_ret = torch.bincount(rr, minlength=q).to(torch.float64)
            n_rel_ret = torch.bincount(rr[rel_pairs], minlength=q).to(torch.float64)
            n_rel_all = _relevant_counts(q_labels_f[start:end], patterns, pattern_counts, pattern_tile)
            out[f'P_{hamming_radius}'][start:end] = torch.where(
                n_ret > 0, n_rel_ret / n_ret.clamp(min=1), torch.zeros_like(n_ret))
            out[f'R_{hamming_radius}'][start:end] = torch.where(
                n_rel_all > 0, n_rel_ret / n_rel_all.clamp(min=1), torch.zeros_like(n_ret))
    return out


def hashing_map(query_codes: Tensor, db_codes: Tensor, query_labels: Tensor, db_labels: Tensor,
                topk: int = 1000, **kwargs) -> float:
    """Mean AP@topk over queries (see :func:`hashing_retrieval_metrics`)."""
    per_query = hashing_retrieval_metrics(query_codes, db_codes, query_labels, db_labels, topk=topk,
                                          hamming_radius=None, **kwargs)
    return float(per_query[f'AP@{topk}'].mean())


@METRICS.register_module()
class HashingMAP(BaseMetric):
    """Hamming-ranking retrieval metric for deep hashing (mAP@K, P@K, P/R within a Hamming radius).

    Query/database design: the evaluation dataset holds both the queries and the database, and every
    sample carries a split flag (``split_key``, ``'query'`` or ``'database'``) in its metainfo; the
    multi-label hashing datasets of this package set it when built with
    ``split=['query', 'database']`` (``PackInputs`` must list the key in ``meta_keys``). One val/test
    loop therefore encodes both sets, and this metric separates them. Samples whose split is neither
    are ignored.

    Every prediction needs packed codes (``code_key``, as written by ``HashHead.predict``) and labels:
    ``gt_score`` (multi-hot) when present, else ``gt_label`` (class indices; ``num_classes`` or the
    dataset's ``classes`` give C).

    Args:
        topk: K of mAP@K and precision@K (an int or a sequence).
        hamming_radius: radius of the precision/recall numbers (2 in the literature); None skips them.
        num_classes: C for ``gt_label`` indices; None uses ``dataset_meta['classes']``.
        split_key: the metainfo key of the split flag.
        query_split / database_split: the flag values.
        code_key: the data-sample field with packed codes.
        chunk_size / max_chunk_bytes / backend: see :func:`hashing_retrieval_metrics`.
        collect_device / prefix: as in :class:`mmengine.evaluator.BaseMetric`.

    Reported keys: ``mAP@K``, ``precision@K``, ``precision_r{r}``, ``recall_r{r}`` (means over queries).
    """
    default_prefix: Optional[str] = 'hashing'

    def __init__(self,
                 topk: Union[int, Sequence[int]] = 1000,
                 hamming_radius: Optional[int] = 2,
                 num_classes: Optional[int] = None,
                 split_key: str = 'split',
                 query_split: str = 'query',
                 database_split: str = 'database',
                 code_key: str = 'pred_hash_bits',
                 chunk_size: Optional[int] = None,
                 max_chunk_bytes: int = 32 * 2**20,
                 backend: str = 'auto',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = [topk] if isinstance(topk, int) else list(topk)
        if not self.topk or any(int(k) < 1 for k in self.topk):
            raise ValueError(f'HashingMAP: topk must be positive integers, got {topk}')
        self.hamming_radius = hamming_radius
        self.num_classes = num_classes
        self.split_key = split_key
        self.query_split = query_split
        self.database_split = database_split
        self.code_key = code_key
        self.chunk_size = chunk_size
        self.max_chunk_bytes = max_chunk_bytes
        if backend not in BACKENDS:
            raise ValueError(f'HashingMAP: backend must be one of {BACKENDS}, got {backend!r}')
        self.backend = backend

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if self.code_key not in sample:
                raise KeyError(f'HashingMAP: the prediction has no "{self.code_key}" field (use HashHead '
                               'or set code_key)')
            if self.split_key not in sample:
                raise KeyError(f'HashingMAP: the sample has no "{self.split_key}" flag; build the '
                               "dataset with split=['query', 'database'] and add "
                               f"'{self.split_key}' to PackInputs' meta_keys")
            split = sample[self.split_key]
            if split not in (self.query_split, self.database_split):
                continue
            if 'gt_score' in sample:
                label = torch.as_tensor(sample['gt_score']).detach().cpu().ne(0)
            elif 'gt_label' in sample:
                label = torch.as_tensor(sample['gt_label']).detach().cpu().long().reshape(-1)
            else:
                raise KeyError('HashingMAP: the sample has neither "gt_score" nor "gt_label"')
            codes = torch.as_tensor(sample[self.code_key]).detach().cpu()
            self.results.append(dict(query=split == self.query_split, codes=codes, label=label))

    def _multi_hot(self, labels: List[Tensor]) -> Tensor:
        if all(lab.dtype == torch.bool for lab in labels):
            return torch.stack(labels)
        num_classes = self.num_classes
        if num_classes is None and self.dataset_meta and self.dataset_meta.get('classes'):
            num_classes = len(self.dataset_meta['classes'])
        if num_classes is None:
            raise ValueError('HashingMAP: gt_label holds class indices; set num_classes or provide '
                             "dataset_meta['classes'] (or give gt_score)")
        out = torch.zeros(len(labels), num_classes, dtype=torch.bool)
        for i, lab in enumerate(labels):
            if lab.dtype == torch.bool:
                out[i] = lab
            elif lab.numel():
                if int(lab.max()) >= num_classes or int(lab.min()) < 0:
                    raise ValueError(f'HashingMAP: label index out of range [0, {num_classes})')
                out[i, lab] = True
        return out

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        queries = [r for r in results if r['query']]
        database = [r for r in results if not r['query']]
        if not queries or not database:
            raise ValueError(f'HashingMAP: need both query and database samples, got {len(queries)} '
                             f'queries and {len(database)} database items (check the split flags)')
        labels = self._multi_hot([r['label'] for r in queries + database])
        codes = torch.stack([r['codes'] for r in queries + database])
        nq = len(queries)
        per_query = hashing_retrieval_metrics(
            codes[:nq], codes[nq:], labels[:nq], labels[nq:], topk=self.topk,
            hamming_radius=self.hamming_radius, chunk_size=self.chunk_size,
            max_chunk_bytes=self.max_chunk_bytes, backend=self.backend)
        metrics: Dict[str, float] = {}
        for k in self.topk:
            metrics[f'mAP@{k}'] = float(per_query[f'AP@{k}'].mean())
            metrics[f'precision@{k}'] = float(per_query[f'P@{k}'].mean())
        if self.hamming_radius is not None:
            r = self.hamming_radius
            metrics[f'precision_r{r}'] = float(per_query[f'P_{r}'].mean())
            metrics[f'recall_r{r}'] = float(per_query[f'R_{r}'].mean())
        MMLogger.get_current_instance().info(
            f'HashingMAP: {nq} queries, {len(database)} database items')
        return metrics
