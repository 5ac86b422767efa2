"""Backward-compatible representation losses: BCT, RACT, UniBCT and the BiCT transformation loss.

Notation: ``new`` = embeddings of the model being trained (phi_new), ``old`` = embeddings of the frozen old
model (phi_old) on the same images, ``labels`` = integer class ids. Whenever a new embedding is compared with
an old-space quantity it first goes through :func:`match_dim` (truncate / zero-pad to the old dimension),
as BCT prescribes for models of different widths.

* BCT (Shen et al., CVPR 2020), influence loss through the frozen old classifier (W_old, b_old):
      L = CE( W_old match(new_i) + b_old , y_i )
  rows of classes the old classifier does not know are synthesised as the mean old feature of the class.
* RACT (Zhang et al., ICLR 2022), per anchor i with n, o L2-normalised and o detached:
      l_i = -log( e^{n_i.o_i/tau} / (e^{n_i.o_i/tau} + sum_{j: y_j != y_i} e^{n_i.o_j/tau}
                                                       + sum_{j: y_j != y_i} e^{n_i.n_j/tau}) )
  optionally only the top-k hardest (largest) negative logits are kept.
* UniBCT (Zhang et al., 2022): cosine-softmax classification of the new embedding against the old class
  prototypes after structural refinement (:func:`~mmkd_plugins.models.compatible.refine_prototypes`):
      L = CE( s * (cos(match(new_i), p'_c) - m [c = y_i]) , y_i )
* BiCT transformation psi (old -> new space): L = || psi(old) - new ||^2 (mean), or 1 - cos.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist
from mmengine.registry import MODELS

from ..compatible.prototypes import ClassMeanBank, refine_prototypes

__all__ = [
    'match_dim', 'hard_labels', 'bct_influence_loss', 'ract_loss', 'unibct_loss', 'bict_transform_loss',
    'gather_with_grad', 'BCTLoss', 'RACTLoss', 'UniBCTLoss', 'BiCTTransformLoss'
]


# ----------------------------------------------------------------------------------------------- helpers
def match_dim(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Truncate or zero-pad the last dimension of ``x`` (..., D) to ``dim``."""
    cur = x.shape[-1]
    if cur == dim:
        return x
    if cur > dim:
        return x[..., :dim]
    return F.pad(x, (0, dim - cur))


def hard_labels(labels: torch.Tensor) -> torch.Tensor:
    """Integer class ids (N,) from hard labels (N,) or soft / one-hot labels (N, C) (argmax)."""
    if labels.dim() == 2:
        return labels.argmax(dim=1)
    if labels.dim() != 1:
        raise ValueError(f'labels must be (N,) class ids or (N, C) scores, got shape {tuple(labels.shape)}')
    return labels.long()


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == 'mean':
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == 'sum':
        return loss.sum()
    if reduction == 'none':
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_2d(name: str, x: torch.Tensor, n: Optional[int] = None) -> None:
    if x.dim() != 2:
        raise ValueError(f'{name} must be a (N, D) embedding matrix, got shape {tuple(x.shape)}')
    if n is not None and x.shape[0] != n:
        raise ValueError(f'{name} has {x.shape[0]} rows but the batch has {n} samples')


def _flatten_emb(x: torch.Tensor) -> torch.Tensor:
    """Accept (N, D), (N, D, 1, 1) or a tuple from a neck/backbone (last element)."""
    if isinstance(x, (tuple, list)):
        x = x[-1]
    if x.dim() == 4:
        x = x.mean(dim=(2, 3))
    return x


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N_r, ...) from all DDP ranks in rank order; the local slice keeps its gradient.

    Ranks may hold different N_r (padded for the collective, trimmed after). Without an initialised
    process group (or with one rank) this returns ``x`` unchanged.
    """
    if dist.get_world_size() <= 1:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [int(s) for s in dist.all_gather(n)]
    pad = max(sizes) - x.shape[0]
    xp = torch.cat([x.detach(), x.new_zeros((pad, ) + tuple(x.shape[1:]))]) if pad else x.detach()
    parts = [p[:s] for p, s in zip(dist.all_gather(xp.contiguous()), sizes)]
    parts[dist.get_rank()] = x
    return torch.cat(parts)


# ------------------------------------------------------------------------------------------------- BCT
def bct_influence_loss(new: torch.Tensor,
                       labels: torch.Tensor,
                       old_weight: torch.Tensor,
                       old_bias: Optional[torch.Tensor] = None,
                       valid: Optional[torch.Tensor] = None,
                       reduction: str = 'mean') -> torch.Tensor:
    """BCT influence loss: cross-entropy of the new embedding through the frozen old classifier.

    Args:
        new: (N, D_new) new embeddings (truncated / zero-padded to D_old).
        labels: (N,) class ids indexing rows of ``old_weight``.
        old_weight: (C, D_old) old classifier weight, new-class rows already synthesised.
        old_bias: optional (C,) bias (0 for synthesised rows).
        valid: optional (N,) bool: samples that take part (others contribute nothing).
        reduction: 'mean' (over valid samples), 'sum' or 'none' ((N,), 0 for invalid samples).

    Returns:
        scalar (or (N,)) loss ``CE(W_old match(new) + b_old, y)``.
    """
    _check_2d('new', new)
    if old_weight.dim() != 2:
        raise ValueError(f'old_weight must be (C, D_old), got shape {tuple(old_weight.shape)}')
    labels = hard_labels(labels)
    if labels.shape[0] != new.shape[0]:
        raise ValueError(f'labels have {labels.shape[0]} entries but new has {new.shape[0]} rows')
    if valid is None:
        valid = torch.ones_like(labels, dtype=torch.bool)
    if valid.any() and int(labels[valid].max()) >= old_weight.shape[0]:
        raise ValueError(f'label {int(labels[valid].max())} has no row in the old classifier '
                         f'({old_weight.shape[0]} rows)')
    logits = F.linear(match_dim(new, old_weight.shape[1]), old_weight, old_bias)
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    loss = F.cross_entropy(logits, safe, reduction='none') * valid.to(logits.dtype)
    if reduction == 'mean':
        return loss.sum() / valid.sum().clamp(min=1)
    return _reduce(loss, reduction)


@MODELS.register_module()
class BCTLoss(nn.Module):
    """BCT influence loss through the frozen old classifier (Shen et al., CVPR 2020).

    The old classifier is either bound once (``bind_old_classifier``, done by
    :class:`~mmkd_plugins.models.compatible.CompatibleDistiller` from its ``old_classifier`` module path)
    or passed to ``forward`` as ``old_weight`` / ``old_bias``. Samples of classes the old classifier does
    not know (label >= number of old rows) use a synthesised row, the running mean of the old features of
    that class (needs ``old`` and ``num_classes``), with bias 0.

    Args:
        num_classes: total number of classes of the new training set (needed to synthesise new-class rows).
        synthesize_new_classes: synthesise rows for new classes; if False their samples are skipped.
        normalize_synthesized: L2-normalise synthesised rows and rescale them to the mean norm of the old
            rows (the raw class mean is the default, as in the paper).
        loss_weight: the lambda of ``L_new + lambda * L_influence``.
        reduction: 'mean' | 'sum' | 'none'.
    """

    def __init__(self,
                 num_classes: Optional[int] = None,
                 synthesize_new_classes: bool = True,
                 normalize_synthesized: bool = False,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        self.num_classes = num_classes
        self.synthesize_new_classes = synthesize_new_classes
        self.normalize_synthesized = normalize_synthesized
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.bank = ClassMeanBank(num_classes) if (num_classes and synthesize_new_classes) else None
        self._old_classifier: Tuple[nn.Module, ...] = ()  # tuple: not a submodule (frozen, not saved)

    def bind_old_classifier(self, module: nn.Module) -> None:
        """Use ``module`` (an ``nn.Linear``-like module with ``weight`` and optional ``bias``) as the old
        classifier. It is kept outside this module's parameters and state dict."""
        if not isinstance(getattr(module, 'weight', None), torch.Tensor) or module.weight.dim() != 2:
            raise TypeError('BCTLoss: the old classifier must have a 2-D weight, got '
                            f'{type(module).__name__}')
        self._old_classifier = (module, )

    def full_old_weight(self, old_weight: torch.Tensor, old_bias: Optional[torch.Tensor],
                        old: Optional[torch.Tensor], labels: torch.Tensor
                        ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """Old weight/bias extended with synthesised new-class rows, and the per-sample valid mask."""
        num_old = old_weight.shape[0]
        is_old = labels < num_old
        if bool(is_old.all()) or not self.synthesize_new_classes:
            return old_weight, old_bias, is_old
        if self.bank is None:
            raise ValueError(f'BCTLoss: label {int(labels.max())} is not an old class (the old classifier '
                             f'has {num_old} rows); set num_classes to synthesise new-class rows from '
                             'old-feature means, or synthesize_new_classes=False to skip such samples')
        if old is None:
            raise ValueError('BCTLoss: new-class rows are synthesised from old features: pass `old` '
                             "(e.g. inputs=dict(old='teacher.emb'))")
        old = _flatten_emb(old)
        _check_2d('old', old, labels.shape[0])
        if old.shape[1] != old_weight.shape[1]:
            raise ValueError(f'BCTLoss: old features have dim {old.shape[1]} but the old classifier '
                             f'expects {old_weight.shape[1]}')
        if self.num_classes < num_old:
            raise ValueError(f'BCTLoss: num_classes={self.num_classes} is smaller than the old classifier '
                             f'({num_old} rows)')
        self.bank.update(old.detach(), labels)
        means, seen = self.bank.means()
        synth = means[num_old:].to(old_weight)
        if self.normalize_synthesized:
            synth = F.normalize(synth, dim=1) * old_weight.norm(dim=1).mean()
        weight = torch.cat([old_weight, synth])
        bias = None if old_bias is None else torch.cat([old_bias, old_bias.new_zeros(synth.shape[0])])
        return weight, bias, seen[labels]

    def forward(self,
                new: torch.Tensor,
                labels: torch.Tensor,
                old: Optional[torch.Tensor] = None,
                old_weight: Optional[torch.Tensor] = None,
                old_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Args: new (N, D_new) embeddings, labels (N,) or (N, C), old (N, D_old) old-model features (only
        needed for new classes), old_weight/old_bias to override the bound classifier."""
        new = _flatten_emb(new)
        labels = hard_labels(labels)
        if old_weight is None:
            if not self._old_classifier:
                raise ValueError('BCTLoss: no old classifier: pass old_weight or call bind_old_classifier '
                                 '(CompatibleDistiller does it from its `old_classifier` argument)')
            fc = self._old_classifier[0]
            old_weight, old_bias = fc.weight, getattr(fc, 'bias', None)
        weight, bias, valid = self.full_old_weight(old_weight.detach(),
                                                   None if old_bias is None else old_bias.detach(), old,
                                                   labels)
        return self.loss_weight * bct_influence_loss(new, labels, weight, bias, valid, self.reduction)


# ------------------------------------------------------------------------------------------------ RACT
def ract_loss(new: torch.Tensor,
              old: torch.Tensor,
              labels: torch.Tensor,
              tau: float = 0.01,
              topk: Optional[int] = None,
              new_new: bool = True,
              bank_new: Optional[torch.Tensor] = None,
              bank_old: Optional[torch.Tensor] = None,
              bank_labels: Optional[torch.Tensor] = None,
              reduction: str = 'mean') -> torch.Tensor:
    """RACT contrastive compatibility loss (see module docstring), one term per anchor.

    Args:
        new: (N, D) anchors' new embeddings; ``old``: (N, D_old) their old embeddings (the positives);
            ``new`` is truncated / zero-padded to D_old. Both are L2-normalised here; ``old`` is detached.
        labels: (N,) class ids.
        tau: temperature.
        topk: keep only the k largest negative logits per anchor (None: all negatives).
        new_new: include the new-to-new negatives (False: the "contra" variant).
        bank_new, bank_old, bank_labels: the candidate negatives (M, .), e.g. gathered over DDP ranks;
            default to the local batch. Negatives are all bank entries whose label differs from y_i.
        reduction: 'mean' | 'sum' | 'none'.
    """
    _check_2d('new', new)
    _check_2d('old', old, new.shape[0])
    labels = hard_labels(labels)
    if labels.shape[0] != new.shape[0]:
        raise ValueError(f'labels have {labels.shape[0]} entries but new has {new.shape[0]} rows')
    if tau <= 0:
        raise ValueError(f'tau must be > 0, got {tau}')
    if bank_new is None:
        bank_new, bank_old, bank_labels = new, old, labels
    elif bank_old is None or bank_labels is None:
        raise ValueError('bank_new, bank_old and bank_labels must be given together')
    dim = old.shape[1]
    n = F.normalize(match_dim(new, dim), dim=1)
    o = F.normalize(old.detach(), dim=1)
    bn = F.normalize(match_dim(bank_new, dim), dim=1)
    bo = F.normalize(bank_old.detach(), dim=1)
    pos = (n * o).sum(1, keepdim=True) / tau                      # (N, 1)
    neg_mask = labels[:, None] != hard_labels(bank_labels)[None, :]   # (N, M)
    negs = [(n @ bo.t() / tau).masked_fill(~neg_mask, float('-inf'))]
    if new_new:
        negs.append((n @ bn.t() / tau).masked_fill(~neg_mask, float('-inf')))
    neg = torch.cat(negs, dim=1)
    if topk is not None:
        if topk < 1:
            raise ValueError(f'topk must be >= 1 or None, got {topk}')
        neg = neg.topk(min(topk, neg.shape[1]), dim=1).values
    loss = torch.logsumexp(torch.cat([pos, neg], dim=1), dim=1) - pos[:, 0]
    return _reduce(loss, reduction)


@MODELS.register_module()
class RACTLoss(nn.Module):
    """RACT loss (hot-refresh backward-compatible training).

    Under DDP the new embeddings (with gradient on the local slice), old embeddings and labels of all ranks
    are gathered as the negative bank; without ``torch.distributed`` (or with ``gather=False``) the local
    batch is the bank.

    Args:
        tau: temperature (0.01 in the paper).
        topk: number of hardest negatives kept (None = all; the paper's option uses 10).
        new_new: keep the new-to-new negative term.
        gather: gather the bank across ranks when distributed.
        loss_weight, reduction: as usual.
    """

    def __init__(self,
                 tau: float = 0.01,
                 topk: Optional[int] = None,
                 new_new: bool = True,
                 gather: bool = True,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        self.tau, self.topk, self.new_new, self.gather = tau, topk, new_new, gather
        self.loss_weight, self.reduction = loss_weight, reduction

    def forward(self, new: torch.Tensor, old: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        new, old, labels = _flatten_emb(new), _flatten_emb(old), hard_labels(labels)
        bank = {}
        if self.gather and dist.get_world_size() > 1:
            bank = dict(bank_new=gather_with_grad(new), bank_old=gather_with_grad(old.detach()),
                        bank_labels=gather_with_grad(labels))
        return self.loss_weight * ract_loss(new, old, labels, self.tau, self.topk, self.new_new,
                                            reduction=self.reduction, **bank)


# ---------------------------------------------------------------------------------------------- UniBCT
def unibct_loss(new: torch.Tensor,
                prototypes: torch.Tensor,
                labels: torch.Tensor,
                scale: float = 30.0,
                margin: float = 0.0,
                valid: Optional[torch.Tensor] = None,
                reduction: str = 'mean') -> torch.Tensor:
    """Cosine-softmax compatibility loss against (refined) old prototypes.

    Args:
        new: (N, D) new embeddings (truncated / zero-padded to D_old, then L2-normalised).
        prototypes: (C, D_old) old-space class prototypes (normalised here).
        labels: (N,) class ids.
        scale: s; margin: m subtracted from the target cosine (CosFace-style; 0 = plain normalised softmax).
        valid: optional (C,) bool: classes with a prototype; others are removed from the softmax and their
            samples skipped.
        reduction: 'mean' (over used samples) | 'sum' | 'none'.

    Returns:
        ``CE(s * (cos(n_i, p_c) - m [c = y_i]), y_i)``.
    """
    _check_2d('new', new)
    _check_2d('prototypes', prototypes)
    labels = hard_labels(labels)
    if labels.shape[0] != new.shape[0]:
        raise ValueError(f'labels have {labels.shape[0]} entries but new has {new.shape[0]} rows')
    num_cls = prototypes.shape[0]
    if labels.numel() and int(labels.max()) >= num_cls:
        raise ValueError(f'label {int(labels.max())} has no prototype ({num_cls} prototypes)')
    if valid is None:
        valid = torch.ones(num_cls, dtype=torch.bool, device=prototypes.device)
    n = F.normalize(match_dim(new, prototypes.shape[1]), dim=1)
    cos = n @ F.normalize(prototypes, dim=1).t()
    cos = cos - margin * F.one_hot(labels, num_cls).to(cos.dtype)
    logits = (scale * cos).masked_fill(~valid[None, :], float('-inf'))
    used = valid[labels]
    safe = torch.where(used, labels, torch.zeros_like(labels))
    loss = torch.zeros_like(cos[:, 0])
    if used.any():
        loss = torch.where(used, F.cross_entropy(logits.masked_fill(~used[:, None], 0.0), safe,
                                                 reduction='none'), loss)
    if reduction == 'mean':
        return loss.sum() / used.sum().clamp(min=1)
    return _reduce(loss, reduction)


@MODELS.register_module()
class UniBCTLoss(nn.Module):
    """UniBCT compatibility loss against structurally refined old prototypes.

    Prototypes are the per-class means of the old model's embeddings on the NEW training data, either
    accumulated online from the batches (``old`` input) or loaded from ``prototype_file`` (a file written
    by ``tools/extract_embeddings.py`` with the old model; class means are computed from it). Each forward
    refines the current prototypes with :func:`refine_prototypes` and applies :func:`unibct_loss`.

    Args:
        num_classes: classes of the new training set.
        scale, margin: see :func:`unibct_loss`.
        refine: kwargs of :func:`refine_prototypes` (``k``, ``temperature``, ``num_iters``, ``alpha``);
            None disables the refinement (plain old class means, i.e. the BCT-with-prototypes baseline).
        prototype_file: optional embedding file to take fixed prototypes from (no online update then).
        loss_weight, reduction: as usual.
    """

    def __init__(self,
                 num_classes: int,
                 scale: float = 30.0,
                 margin: float = 0.0,
                 refine: Optional[dict] = dict(k=10, temperature=0.1, num_iters=1, alpha=0.0),
                 prototype_file: Optional[str] = None,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        self.scale, self.margin = scale, margin
        self.refine = dict(refine) if refine is not None else None
        self.loss_weight, self.reduction = loss_weight, reduction
        self.bank = ClassMeanBank(num_classes)
        self.fixed = prototype_file is not None
        if prototype_file is not None:
            from ..compatible.embedding_io import class_means_from_file
            self.bank.set_means(class_means_from_file(prototype_file, num_classes))

    def prototypes(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Current (refined) prototypes (C, D_old) and their valid mask (C,)."""
        means, valid = self.bank.means()
        if self.refine is not None and valid.any():
            means = refine_prototypes(means, valid=valid, **self.refine)
        return means, valid

    def forward(self, new: torch.Tensor, labels: torch.Tensor, old: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        new, labels = _flatten_emb(new), hard_labels(labels)
        if not self.fixed:
            if old is None:
                raise ValueError("UniBCTLoss: pass the old embeddings (inputs=dict(old='teacher.emb')) or "
                                 'give prototype_file')
            old = _flatten_emb(old)
            _check_2d('old', old, labels.shape[0])
            self.bank.update(old.detach(), labels)
        protos, valid = self.prototypes()
        return self.loss_weight * unibct_loss(new, protos.detach().to(new.dtype), labels, self.scale,
                                              self.margin, valid, self.reduction)


# ------------------------------------------------------------------------------------------------ BiCT
def bict_transform_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = 'mse') -> torch.Tensor:
    """Loss of the forward transformation psi(old) -> new space.

    'mse': mean over samples of ``||pred - target||^2 / D`` (i.e. ``F.mse_loss``);
    'cosine': mean of ``1 - cos(pred, target)``. ``target`` is detached.
    """
    _check_2d('pred', pred)
    _check_2d('target', target, pred.shape[0])
    if pred.shape[1] != target.shape[1]:
        raise ValueError(f'BiCT transformation output dim {pred.shape[1]} != new embedding dim '
                         f'{target.shape[1]}')
    target = target.detach()
    if kind == 'mse':
        return F.mse_loss(pred, target)
    if kind == 'cosine':
        return (1 - F.cosine_similarity(pred, target, dim=1)).mean()
    raise ValueError(f"kind must be 'mse' or 'cosine', got {kind!r}")


@MODELS.register_module()
class BiCTTransformLoss(nn.Module):
    """Training loss of the BiCT forward-compatible transformation: ``loss_weight * bict_transform_loss``."""

    def __init__(self, kind: str = 'mse', loss_weight: float = 1.0) -> None:
        super().__init__()
        self.kind, self.loss_weight = kind, loss_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * bict_transform_loss(_flatten_emb(pred), _flatten_emb(target), self.kind)
