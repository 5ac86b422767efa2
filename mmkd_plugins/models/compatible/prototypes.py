"""Class prototypes of the old model and their structural (graph) refinement (UniBCT).

UniBCT uses the old model's class centres as backward-compatibility targets. When the old model is weak on
the new training data (open-class / open-data splits) the centres are noisy and overlap; the structural
prototype refinement smooths each centre with its nearest neighbours on a kNN graph over the prototypes:

    P  = normalise(prototypes)                           (C, D)
    S  = P P^T                                            cosine similarity, (C, C)
    a_ij = softmax_j( S_ij / T )  over j in kNN(i)        (self included: S_ii = 1 is the largest)
    p_i' = normalise( alpha * p_i + (1 - alpha) * sum_j a_ij p_j )

repeated ``num_iters`` times on the same graph. Prototypes marked invalid (no sample seen yet) are neither
refined nor used as neighbours.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist


def knn_affinity(prototypes: torch.Tensor,
                 k: int = 10,
                 temperature: float = 0.1,
                 valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Row-stochastic kNN affinity over prototypes (softmax of cosine / T over the k nearest, self included).

    Args:
        prototypes: (C, D) class prototypes (any norm).
        k: neighbours per node, self included; clipped to the number of valid prototypes.
        temperature: softmax temperature T on the cosine similarities.
        valid: optional (C,) bool mask; invalid prototypes get no neighbours (zero row) and are no neighbour.

    Returns:
        (C, C) matrix A with a_ij = 0 outside kNN(i) and rows summing to 1 (0 for invalid rows).
    """
    if prototypes.dim() != 2:
        raise ValueError(f'knn_affinity: prototypes must be (C, D), got shape {tuple(prototypes.shape)}')
    if k < 1:
        raise ValueError(f'knn_affinity: k must be >= 1, got {k}')
    if temperature <= 0:
        raise ValueError(f'knn_affinity: temperature must be > 0, got {temperature}')
    num = prototypes.shape[0]
    if valid is None:
        valid = torch.ones(num, dtype=torch.bool, device=prototypes.device)
    p = F.normalize(prototypes, dim=1)
    sim = p @ p.t()
    sim = sim.masked_fill(~valid[None, :], float('-inf'))
    k_eff = max(1, min(k, int(valid.sum())))
    top_val, top_idx = sim.topk(k_eff, dim=1)
    logits = torch.full_like(sim, float('-inf')).scatter(1, top_idx, top_val / temperature)
    aff = torch.softmax(logits, dim=1)
    aff = torch.nan_to_num(aff, nan=0.0)  # rows with no valid entry
    return aff * valid[:, None].to(aff.dtype)


def refine_prototypes(prototypes: torch.Tensor,
                      k: int = 10,
                      temperature: float = 0.1,
                      num_iters: int = 1,
                      alpha: float = 0.0,
                      valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Structural prototype refinement: kNN-graph feature propagation (see module docstring).

    Args:
        prototypes: (C, D) old-model class prototypes.
        k, temperature, valid: see :func:`knn_affinity`.
        num_iters: propagation steps on the (fixed) graph built from the input prototypes.
        alpha: weight kept on the node's own prototype (0 = pure neighbourhood average, as in the spec).

    Returns:
        (C, D) L2-normalised refined prototypes; invalid rows are returned unchanged (normalised).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'refine_prototypes: alpha must be in [0, 1], got {alpha}')
    if num_iters < 0:
        raise ValueError(f'refine_prototypes: num_iters must be >= 0, got {num_iters}')
    aff = knn_affinity(prototypes, k=k, temperature=temperature, valid=valid)
    p = F.normalize(prototypes, dim=1)
    for _ in range(num_iters):
        prop = aff @ p
        if valid is not None:
            prop = torch.where(valid[:, None], prop, p)
        p = F.normalize(alpha * p + (1.0 - alpha) * prop, dim=1)
    return p


class ClassMeanBank(nn.Module):
    """Running per-class mean of (old-model) features: the class prototypes of BCT / UniBCT.

    The buffers are not persistent: the old model is frozen, so the means are rebuilt from the data after a
    resume. Under DDP, per-batch sums and counts are all-reduced so every rank holds the same bank.

    Args:
        num_classes: number of classes C.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'ClassMeanBank: num_classes must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.register_buffer('sums', torch.zeros(num_classes, 0), persistent=False)
        self.register_buffer('counts', torch.zeros(num_classes), persistent=False)

    @torch.no_grad()
    def update(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``feats`` (N, D) (detached), ``labels`` (N,) integer class ids in [0, C)."""
        if feats.dim() != 2 or labels.dim() != 1 or feats.shape[0] != labels.shape[0]:
            raise ValueError('ClassMeanBank.update: expected feats (N, D) and labels (N,), got '
                             f'{tuple(feats.shape)} and {tuple(labels.shape)}')
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f'ClassMeanBank.update: label out of range [0, {self.num_classes}): '
                             f'min {int(labels.min())}, max {int(labels.max())}')
        if self.sums.shape[1] != feats.shape[1]:
            if self.counts.sum() > 0:
                raise ValueError(f'ClassMeanBank.update: feature dim changed from {self.sums.shape[1]} '
                                 f'to {feats.shape[1]}')
            self.sums = feats.new_zeros(self.num_classes, feats.shape[1])
            self.counts = self.counts.to(feats)
        sums = feats.new_zeros(self.sums.shape).index_add_(0, labels, feats.detach().to(self.sums.dtype))
        counts = torch.bincount(labels, minlength=self.num_classes).to(self.counts)
        dist.all_reduce(sums)
        dist.all_reduce(counts)
        self.sums += sums
        self.counts += counts

    def means(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(means (C, D), valid (C,) bool)``; rows of unseen classes are zero and invalid."""
        valid = self.counts > 0
        return self.sums / self.counts.clamp(min=1)[:, None], valid

    def set_means(self, means: torch.Tensor) -> None:
        """Replace the bank by precomputed class means (C, D) (each counted once; zero rows = unseen)."""
        if means.dim() != 2 or means.shape[0] != self.num_classes:
            raise ValueError(f'ClassMeanBank.set_means: expected ({self.num_classes}, D), '
                             f'got {tuple(means.shape)}')
        self.sums = means.detach().clone().float()
        self.counts = (means.abs().sum(1) > 0).float()
