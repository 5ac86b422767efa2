"""Face verification: TAR @ FAR on pairs (the UniBCT / IJB-C protocol), also across models.

For a false-accept-rate target f over N_neg negative (different identity) pairs, the threshold is the
smallest one allowed: with negative scores sorted in decreasing order s_(0) >= s_(1) >= ..., and
k = floor(f * N_neg), a pair is accepted when its score is strictly greater than t = s_(k) (t = -inf when
k >= N_neg). Then FAR <= f and TAR = mean over positive pairs of [score > t] is the largest possible.
Cross-model verification scores a pair (i, j) as cos(match(new_i, D_old), old_j) (one side upgraded).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.registry import METRICS

from mmkd_plugins.models.losses.compatible import match_dim


def tar_at_far(scores: torch.Tensor, is_same: torch.Tensor, fars: Sequence[float]) -> Dict[float, float]:
    """TAR at each FAR target (see module docstring).

    Args:
        scores: (P,) pair similarities; is_same: (P,) bool, True for genuine pairs.
        fars: FAR targets in [0, 1].
    """
    scores = torch.as_tensor(scores).double().reshape(-1)
    is_same = torch.as_tensor(is_same).bool().reshape(-1)
    if scores.shape != is_same.shape:
        raise ValueError(f'scores ({scores.numel()}) and is_same ({is_same.numel()}) differ in length')
    pos, neg = scores[is_same], scores[~is_same]
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError(f'TAR@FAR needs genuine and impostor pairs, got {pos.numel()} genuine and '
                         f'{neg.numel()} impostor pairs')
    neg_sorted = torch.sort(neg, descending=True).values
    out = {}
    for far in fars:
        if not 0.0 <= far <= 1.0:
            raise ValueError(f'FAR targets must be in [0, 1], got {far}')
        k = int(np.floor(far * neg.numel() + 1e-9))
        thr = neg_sorted[k] if k < neg.numel() else torch.tensor(float('-inf'), dtype=torch.float64)
        out[far] = float((pos > thr).double().mean())
    return out


def all_pairs(labels: torch.Tensor, max_pairs: Optional[int] = None, seed: int = 0
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All unordered pairs i < j (or a seeded random subset of ``max_pairs``): (i, j, is_same)."""
    n = labels.shape[0]
    i, j = torch.triu_indices(n, n, offset=1)
    if max_pairs is not None and i.numel() > max_pairs:
        sel = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(i.numel(), max_pairs,
                                                                         replace=False)))
        i, j = i[sel], j[sel]
    return i, j, labels[i] == labels[j]


def pair_scores(a: torch.Tensor, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_j) per pair; ``a`` is truncated / zero-padded to b's dimension."""
    a = F.normalize(match_dim(a.double(), b.shape[1]), dim=1)
    b = F.normalize(b.double(), dim=1)
    return (a[i] * b[j]).sum(1)


@METRICS.register_module()
class FaceVerificationMetric(BaseMetric):
    """TAR@FAR over pairs of the evaluated items, for the model pairs (query side, template side).

    Predictions carry ``new_emb`` and/or ``old_emb`` and ``gt_label`` (identity). Pairs: every unordered
    pair of items, or a seeded subset of ``max_pairs``, or explicit ``pairs`` (list of (i, j) item
    positions in evaluation order; genuine iff same label).

    Args:
        fars: FAR targets.
        modes: which pairs of models to score: 'new-new', 'new-old' (cross-model: backward compatibility),
            'old-old'.
        max_pairs, seed, pairs: pair selection.
    """
    #: it scores the (new, old) embeddings of a compatible pair's predictions, never one model's:
    #: a teacher alone is scored without it (``teacher_eval.evaluate_teacher``)
    scores_one_model = False
    default_prefix = 'face_verif'

    def __init__(self,
                 fars: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
                 modes: Sequence[str] = ('new-new', 'new-old', 'old-old'),
                 max_pairs: Optional[int] = 200000,
                 seed: int = 0,
                 pairs: Optional[Sequence[Tuple[int, int]]] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        for m in modes:
            if m not in ('new-new', 'new-old', 'old-old'):
                raise ValueError(f"FaceVerificationMetric: mode must be 'new-new', 'new-old' or 'old-old', "
                                 f'got {m!r}')
        self.fars, self.modes = list(fars), list(modes)
        self.max_pairs, self.seed, self.pairs = max_pairs, seed, pairs

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            row = dict(label=int(torch.as_tensor(ds['gt_label']).reshape(-1)[0]))
            for key in ('new_emb', 'old_emb'):
                if key in ds:
                    row[key] = torch.as_tensor(ds[key]).float().cpu().reshape(-1)
            self.results.append(row)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        labels = torch.tensor([r['label'] for r in results])
        if self.pairs is not None:
            p = torch.as_tensor(self.pairs, dtype=torch.long)
            if p.dim() != 2 or p.shape[1] != 2 or int(p.max()) >= len(results):
                raise ValueError('FaceVerificationMetric: pairs must be (i, j) positions < '
                                 f'{len(results)}')
            i, j = p[:, 0], p[:, 1]
            same = labels[i] == labels[j]
        else:
            i, j, same = all_pairs(labels, self.max_pairs, self.seed)
        out, lines = {}, []
        for mode in self.modes:
            a_key, b_key = (f'{m}_emb' for m in mode.split('-'))
            if a_key not in results[0] or b_key not in results[0]:
                raise KeyError(f'FaceVerificationMetric: mode {mode} needs "{a_key}" and "{b_key}" in the '
                               'predictions')
            a = torch.stack([r[a_key] for r in results])
            b = torch.stack([r[b_key] for r in results])
            tars = tar_at_far(pair_scores(a, b, i, j), same, self.fars)
            for far, tar in tars.items():
                out[f'{mode}/TAR@FAR={far:g}'] = tar
            lines.append(f'  {mode:<8} ' + '  '.join(f'TAR@{far:g}={tar:.4f}' for far, tar in tars.items()))
        MMLogger.get_current_instance().info(
            f'face verification on {len(i)} pairs ({int(same.sum())} genuine):\n' + '\n'.join(lines))
        return out
