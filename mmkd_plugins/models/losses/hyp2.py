"""HyP2 loss: hybrid proxy-pair loss for multi-label deep hashing (Xu et al., arXiv 2208.06866).

Notation (one batch): ``h`` (N, K) real-valued hash-layer outputs, ``y`` (N, C) multi-hot labels,
``P`` (C, K) learnable proxies, ``zeta`` the margin, ``beta`` the pair-term weight.
``h^ = h / ||h||``, ``p^ = p / ||p||``, ``s_ic = h^_i . p^_c``.

    L_pos  = sum_{y_ic = 1} (1 - s_ic)              / #{y_ic = 1}
    L_neg  = sum_{y_ic = 0} [s_ic - zeta]_+          / #{y_ic = 0}
    L_pair = sum_{(i, j) in M} beta [h^_i . h^_j - zeta]_+ / |M|
             M = ordered pairs of samples that both have MORE THAN ONE label and share none
             (y_i . y_j = 0); L_pair = 0 when M is empty.
    L      = L_pos + L_neg + L_pair

A term whose index set is empty (e.g. ``L_pos`` for a batch of all-zero labels) is 0.
"""
import functools
import operator
import os.path as osp
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor, nn

MARGIN_TABLE_FILE = osp.join(osp.dirname(osp.abspath(__file__)), 'data', 'hyp2_margin_table.txt')


def read_margin_table(path: str = MARGIN_TABLE_FILE) -> Dict[int, List[float]]:
    """Decode the compact margin table -> ``{K: [zeta of column 1, ..., zeta of column K]}``.

    The file (written by ``tools/hyp2_margin_table.py`` from the authors' ``codetable.xlsx``) holds,
    per code length K, the integer minimum Hamming distances ``d_j`` of ``2**j`` codes, run-length
    coded (``d*n`` = n times d). The authors' value is ``1 - 2 d_j / K`` written with 16 significant
    digits, so ``float('%.16g' % (1 - 2 * d / K))`` gives back each of their values exactly.
    """
    table: Dict[int, List[float]] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            try:
                head, body = line.split(':', 1)
                k = int(head)
                dists: List[int] = []
                for run in body.split():
                    d, _, n = run.partition('*')
                    dists.extend([int(d)] * (int(n) if n else 1))
            except ValueError as exc:
                raise ValueError(f'{path}:{lineno}: malformed margin-table line ({exc})') from None
            if len(dists) != k or any(not 0 <= d <= k for d in dists):
                raise ValueError(f'{path}:{lineno}: row K={k} must hold K distances in [0, K]')
            table[k] = [float('%.16g' % (1 - 2 * d / k)) for d in dists]
    return table


@functools.lru_cache(maxsize=1)
def _margin_table() -> Dict[int, List[float]]:
    return read_margin_table(MARGIN_TABLE_FILE)


def hyp2_margin(hash_bits: int, num_classes: int) -> float:
    """Margin ``zeta`` of HyP2 for ``hash_bits`` (K) and ``num_classes`` (C): the authors' table.

    The official code reads ``codetable.xlsx`` at row K, column ``j = ceil(log2 C)``. The value is the
    largest pairwise cosine ``1 - 2d/K`` of ``2**j`` binary codes of length K with the largest
    achievable minimum Hamming distance d (so it is negative for few classes, e.g. -1/3 for K = 12,
    C = 3 or 4). The table covers K = 1..256 and every j = 1..K (2 <= C <= 2**K); the values are
    returned exactly as the authors' sheet stores them.

    ``j`` is computed exactly as ``(C - 1).bit_length()``. The official ``math.ceil(math.log(C, 2))``
    gives the same column for every C below 2**29; it differs only at some exact powers of two from
    2**29 on, where floating-point rounding moves it one column up.

    Raises:
        ValueError: for K outside 1..256, C < 2 (column 0 is not a margin), or C > 2**K (the table has
            no value: K bits cannot give C distinct codes). Pass ``margin=...`` explicitly then.
    """
    try:  # Python or numpy integers
        hash_bits, num_classes = operator.index(hash_bits), operator.index(num_classes)
    except TypeError:
        raise TypeError(f'hyp2_margin: hash_bits and num_classes must be integers, got '
                        f'{hash_bits!r}, {num_classes!r}') from None
    table = _margin_table()
    if hash_bits not in table:
        raise ValueError(f'hyp2_margin: no official margin for hash_bits={hash_bits} (the table '
                         f'covers {min(table)}..{max(table)} bits); pass margin=... explicitly')
    if num_classes < 2:
        raise ValueError(f'hyp2_margin: no official margin for num_classes={num_classes} (the table '
                         'starts at 2 classes); pass margin=... explicitly')
    column = (num_classes - 1).bit_length()  # ceil(log2 C), exact for every integer C >= 2
    row = table[hash_bits]
    if column > len(row):
        raise ValueError(f'hyp2_margin: no official margin for num_classes={num_classes} with '
                         f'hash_bits={hash_bits} (column ceil(log2 C) = {column} > K: fewer than C '
                         'distinct codes); pass margin=... explicitly')
    return row[column - 1]


def _check_inputs(hash_outputs: Tensor, labels: Tensor, proxies: Tensor) -> None:
    if hash_outputs.dim() != 2:
        raise ValueError(f'HyP2: hash_outputs must be (N, K), got shape {tuple(hash_outputs.shape)}')
    if labels.dim() != 2:
        raise ValueError(f'HyP2: labels must be multi-hot (N, C), got shape {tuple(labels.shape)}')
    if proxies.dim() != 2:
        raise ValueError(f'HyP2: proxies must be (C, K), got shape {tuple(proxies.shape)}')
    n, k = hash_outputs.shape
    if labels.shape[0] != n:
        raise ValueError(f'HyP2: batch size mismatch: hash_outputs has {n} rows, labels has '
                         f'{labels.shape[0]}')
    if proxies.shape[1] != k:
        raise ValueError(f'HyP2: hash bit mismatch: hash_outputs has K={k}, proxies have '
                         f'K={proxies.shape[1]}')
    if labels.shape[1] != proxies.shape[0]:
        raise ValueError(f'HyP2: class number mismatch: labels have C={labels.shape[1]}, proxies have '
                         f'C={proxies.shape[0]}')
    if labels.numel() and bool(((labels != 0) & (labels != 1)).any()):
        raise ValueError('HyP2: labels must be multi-hot with values in {0, 1}')


def hyp2_loss_terms(hash_outputs: Tensor,
                    labels: Tensor,
                    proxies: Tensor,
                    margin: float,
                    beta: float = 0.5) -> Dict[str, Tensor]:
    """The three HyP2 terms (see the module docstring for the formulas).

    Args:
        hash_outputs: (N, K) real-valued hash-layer outputs (no tanh).
        labels: (N, C) multi-hot labels in {0, 1} (any dtype).
        proxies: (C, K) class proxies.
        margin: ``zeta``.
        beta: weight of the pair term.

    Returns:
        dict with scalar tensors ``pos``, ``neg`` and ``pair`` (``pair`` already multiplied by beta).
    """
    _check_inputs(hash_outputs, labels, proxies)
    h = F.normalize(hash_outputs, p=2, dim=1)
    p = F.normalize(proxies, p=2, dim=1)
    y = labels.to(torch.bool)
    sim = h @ p.t()  # (N, C)
    zero = sim.sum() * 0  # keeps dtype/device and the graph

    num_pos = int(y.sum())
    num_neg = y.numel() - num_pos
    pos = (1 - sim)[y].sum() / num_pos if num_pos else zero
    neg = F.relu(sim - margin)[~y].sum() / num_neg if num_neg else zero

    multi = y.sum(dim=1) > 1
    pair = zero
    if beta != 0 and int(multi.sum()) > 1:
        y_m = y[multi].to(sim.dtype)
        disjoint = (y_m @ y_m.t()) == 0  # (M, M); the diagonal is never disjoint
        num_pairs = int(disjoint.sum())
        if num_pairs:
            h_m = h[multi]
            pair = beta * F.relu(h_m @ h_m.t() - margin)[disjoint].sum() / num_pairs
    return dict(pos=pos, neg=neg, pair=pair)


def hyp2_loss(hash_outputs: Tensor,
              labels: Tensor,
              proxies: Tensor,
              margin: float,
              beta: float = 0.5) -> Tensor:
    """HyP2 loss ``L = L_pos + L_neg + L_pair`` (scalar). Arguments as :func:`hyp2_loss_terms`."""
    terms = hyp2_loss_terms(hash_outputs, labels, proxies, margin, beta)
    return terms['pos'] + terms['neg'] + terms['pair']


@MODELS.register_module()
class HyP2Loss(nn.Module):
    """Hybrid proxy-pair loss (HyP2) with learnable class proxies.

    The proxies are a parameter of this module, so they are optimised with the model; give them their
    own learning rate with ``paramwise_cfg=dict(custom_keys={'proxies': dict(lr_mult=...)})``.

    Args:
        num_classes: number of classes C.
        hash_bits: code length K.
        beta: weight of the pair term (0.5 in the paper).
        margin: ``zeta``; None takes it from the official (K, C) table (:func:`hyp2_margin`).
        loss_weight: multiplier of the total loss.

    The loss is a mean over index sets of the whole batch, so there is no ``reduction`` option.
    """

    def __init__(self,
                 num_classes: int,
                 hash_bits: int,
                 beta: float = 0.5,
                 margin: Optional[float] = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if num_classes < 1 or hash_bits < 1:
            raise ValueError(f'HyP2Loss: num_classes and hash_bits must be >= 1, got {num_classes}, '
                             f'{hash_bits}')
        self.num_classes = num_classes
        self.hash_bits = hash_bits
        self.beta = float(beta)
        self.margin = float(hyp2_margin(hash_bits, num_classes) if margin is None else margin)
        self.loss_weight = float(loss_weight)
        self.proxies = nn.Parameter(torch.empty(num_classes, hash_bits))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out) initialisation of the proxies, as in the paper."""
        nn.init.kaiming_normal_(self.proxies, mode='fan_out')

    def terms(self, hash_outputs: Tensor, multi_hot_labels: Tensor) -> Dict[str, Tensor]:
        """Unweighted ``pos``, ``neg`` and ``pair`` terms (for logging and analysis)."""
        return hyp2_loss_terms(hash_outputs, multi_hot_labels, self.proxies, self.margin, self.beta)

    def forward(self, hash_outputs: Tensor, multi_hot_labels: Tensor) -> Tensor:
        """Args: hash_outputs (N, K) real outputs; multi_hot_labels (N, C). Returns a scalar."""
        loss = hyp2_loss(hash_outputs, multi_hot_labels, self.proxies, self.margin, self.beta)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, hash_bits={self.hash_bits}, beta={self.beta}, '
                f'margin={self.margin:.4f}, loss_weight={self.loss_weight}')
