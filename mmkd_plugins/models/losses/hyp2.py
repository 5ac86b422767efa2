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
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor, nn

# Official margin table: column c = ceil(log2 C) -> {K bits: zeta}. The official spreadsheet stores
# the rounded values (.333, .056, .167, .111, .083); they are the cosines (K - 2d) / K of binary
# codes with minimum Hamming distance d, so the exact fractions are used here.
_MARGIN_TABLE: Dict[int, Dict[int, float]] = {
    5: {12: 1 / 3, 16: 0.0, 24: 0.0, 32: 0.0, 36: 1 / 18, 48: 0.0, 64: 0.0},
    6: {12: 1 / 3, 16: 1 / 4, 24: 1 / 6, 32: 0.0, 36: 1 / 9, 48: 0.0, 64: 0.0},
    7: {12: 1 / 3, 16: 1 / 4, 24: 1 / 6, 32: 1 / 8, 36: 1 / 9, 48: 1 / 12, 64: 0.0},
}


def hyp2_margin(hash_bits: int, num_classes: int) -> float:
    """Margin ``zeta`` of HyP2 for ``hash_bits`` (K) and ``num_classes`` (C), from the official table.

    The table column is ``c = ceil(log2 C)``; ``zeta`` is (the rounded) smallest achievable maximum
    pairwise cosine among ``2**c`` binary codes of length K. Columns 5-7 (17..128 classes) are the
    official ones. For C <= 16 (c <= 4) this returns 0: 16 codes of length K >= 12 can be made pairwise
    orthogonal or better (Hadamard codes), so the same construction gives 0 (an extension, not in the
    official table).

    Raises:
        ValueError: for K not in {12, 16, 24, 32, 36, 48, 64}, or C > 128, or C < 1.
    """
    if num_classes < 1:
        raise ValueError(f'hyp2_margin: num_classes must be >= 1, got {num_classes}')
    known_bits = sorted(_MARGIN_TABLE[5])
    if hash_bits not in known_bits:
        raise ValueError(f'hyp2_margin: no official margin for hash_bits={hash_bits} (table has '
                         f'{known_bits}); pass margin=... explicitly')
    column = math.ceil(math.log2(num_classes)) if num_classes > 1 else 0
    if column > 7:
        raise ValueError(f'hyp2_margin: no official margin for num_classes={num_classes} (> 128); '
                         'pass margin=... explicitly')
    if column <= 4:
        return 0.0
    return _MARGIN_TABLE[column][hash_bits]


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
