"""Class prototypes of the old embedding space: UniBCT's structural refinement and a running class-mean bank.

UniBCT (arXiv 2203.01583, Eq. 9-10), WITHIN each class c, over its n training samples: the nodes are the
old-model embeddings O = [o_1..o_n] (n, D_old), the edges come from the NEW model's embeddings
F = [f_1..f_n] (n, D_new) of the same samples:

    A   = F F^T / T,   A_ii = -inf (no self edge)                 (n, n), T = 0.05
    E   = softmax of A over each column  (E_ij = e^{A_ij} / sum_k e^{A_kj}; columns sum to 1)
    O'  = (1 - lambda) (I - lambda E)^{-1} O                      (n, D_old), lambda = 0.9
    p_c = mean of the rows of O'                                  (D_old,)

A class with a single sample has no edge: p_c = o_1. The work is per class (an n x n solve each); no
C x C matrix is ever formed, so it scales to any number of classes.

Note (exact algebra): with the column softmax E is column-stochastic, 1^T E = 1^T, hence
1^T (I - lambda E)^{-1} = 1^T / (1 - lambda) and p_c = mean(O' rows) = mean(O rows): the prototype equals
the plain class mean of the old embeddings whatever the new model (up to rounding). The per-sample
refined embeddings O' do depend on the new model. ``edge_softmax='row'`` (E row-stochastic) is the
variant under which the new model's structure moves the prototype itself.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine import dist

EDGE_SOFTMAX = ('column', 'row')


def refine_class_samples(old: torch.Tensor,
                         new: torch.Tensor,
                         lam: float = 0.9,
                         temperature: float = 0.05,
                         edge_softmax: str = 'column') -> torch.Tensor:
    """Structurally refined old embeddings O' (n, D_old) of ONE class (see module docstring).

    Args:
        old: (n, D_old) old-model embeddings of the class's samples (the nodes).
        new: (n, D_new) new-model embeddings of the same samples (the edges).
        lam: propagation weight lambda in [0, 1).
        temperature: T of the edge softmax.
        edge_softmax: 'column' (the paper / reference: each column of E sums to 1) or 'row'.
    """
    if old.dim() != 2 or new.dim() != 2 or old.shape[0] != new.shape[0]:
        raise ValueError('refine_class_samples: old (n, D_old) and new (n, D_new) must have the same n, got '
                         f'{tuple(old.shape)} and {tuple(new.shape)}')
    if not 0.0 <= lam < 1.0:
        raise ValueError(f'refine_class_samples: lambda must be in [0, 1), got {lam}')
    if temperature <= 0:
        raise ValueError(f'refine_class_samples: temperature must be > 0, got {temperature}')
    if edge_softmax not in EDGE_SOFTMAX:
        raise ValueError(f'refine_class_samples: edge_softmax must be one of {EDGE_SOFTMAX}, '
                         f'got {edge_softmax!r}')
    n = old.shape[0]
    if n == 1:
        return old.clone()
    new = new.to(old.dtype)
    eye = torch.eye(n, dtype=old.dtype, device=old.device)
    aff = (new @ new.t() / temperature).masked_fill(eye.bool(), float('-inf'))
    edges = torch.softmax(aff, dim=0 if edge_softmax == 'column' else 1)
    return (1.0 - lam) * torch.linalg.solve(eye - lam * edges, old)


def structural_prototypes(old: torch.Tensor,
                          new: torch.Tensor,
                          labels: torch.Tensor,
                          num_classes: int,
                          lam: float = 0.9,
                          temperature: float = 0.05,
                          edge_softmax: str = 'column',
                          classes: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """UniBCT prototypes p_c = mean(O'_c) of every class present in ``labels``, one class at a time.

    Args:
        old: (N, D_old) old-model embeddings of the training samples; new: (N, D_new) new-model ones.
        labels: (N,) class ids in [0, num_classes).
        num_classes: C.
        lam, temperature, edge_softmax: see :func:`refine_class_samples`.
        classes: optional (K,) class ids to compute (others stay invalid), e.g. this rank's share.

    Returns:
        ``(prototypes (C, D_old), valid (C,) bool)``; rows of classes without a sample are zero / invalid.
    """
    if old.dim() != 2 or new.dim() != 2 or labels.dim() != 1 or not (
            old.shape[0] == new.shape[0] == labels.shape[0]):
        raise ValueError('structural_prototypes: expected old (N, D_old), new (N, D_new), labels (N,), got '
                         f'{tuple(old.shape)}, {tuple(new.shape)}, {tuple(labels.shape)}')
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f'structural_prototypes: labels must lie in [0, {num_classes}), got '
                         f'[{int(labels.min())}, {int(labels.max())}]')
    protos = old.new_zeros(num_classes, old.shape[1])
    valid = torch.zeros(num_classes, dtype=torch.bool, device=old.device)
    order = torch.argsort(labels, stable=True)
    present, counts = torch.unique_consecutive(labels[order], return_counts=True)
    wanted = None if classes is None else set(int(c) for c in classes)
    start = 0
    for cls, cnt in zip(present.tolist(), counts.tolist()):
        idx = order[start:start + cnt]
        start += cnt
        if wanted is not None and cls not in wanted:
            continue
        protos[cls] = refine_class_samples(old[idx], new[idx], lam, temperature, edge_softmax).mean(0)
        valid[cls] = True
    return protos, valid


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
