"""Backward-compatible representation losses: BCT, RACT, UniBCT and the BiCT transformation loss.

Notation: ``new`` = embeddings of the model being trained (phi_new), ``old`` = embeddings of the frozen old
model (phi_old) on the same images, ``labels`` = integer class ids. Whenever a new embedding is compared with
an old-space quantity it first goes through :func:`match_dim` (truncate / zero-pad to the old dimension),
as BCT prescribes for models of different widths.

* BCT (Shen et al., CVPR 2020), influence loss through the frozen old classifier (W_old, b_old):
      L = CE( W_old match(new_i) + b_old , y_i )
  rows of classes the old classifier does not know are synthesised as the class mean of the L2-normalised
  old features (openBCT).
* RACT (Zhang et al., ICLR 2022), per anchor i with n, o L2-normalised and o detached:
      l_i = -log( e^{n_i.o_i/tau} / (e^{n_i.o_i/tau} + sum_{j: y_j != y_i} e^{n_i.o_j/tau}
                                                       + sum_{j: y_j != y_i} e^{n_i.n_j/tau}) )
  by default (official code) only the k hardest negatives of EACH term are kept (k = 10 new-old and
  k = 10 new-new); ``topk_mode='union'`` instead keeps the k largest of the pooled negatives, a different
  loss. The new-new negatives n_j are constants (detached), as in the official code.
* UniBCT (Zhang et al., 2022): classification of the normalised new embedding against the fixed old class
  prototypes P after structural refinement (:func:`~mmkd_plugins.models.compatible.structural_prototypes`,
  refreshed by :class:`~mmkd_plugins.engine.hooks.UniBCTPrototypeHook`):
      L = CE( normalise(match(new_i)) . P^T , y_i )
* BiCT transformation psi (old -> new space), two named objectives: 'new_classifier' (default)
      L = CE( W_new psi(old_i) + b_new , y_i )       (new model's classifier frozen)
  and 'regression' L = || psi(old) - new ||^2 (mean), or 1 - cos.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist
from mmengine.registry import MODELS

from ..compatible.prototypes import ClassMeanBank

__all__ = [
    'match_dim', 'hard_labels', 'bct_influence_loss', 'ract_loss', 'unibct_loss', 'bict_transform_loss',
    'bict_classifier_loss',
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
    not know (label >= number of old rows) use a synthesised row with bias 0: the running mean over the
    class's samples of the L2-normalised old features, mean_i normalise(phi_old(x_i)) (openBCT's pseudo
    classifier: its old model returns normalised features). Needs ``old`` and ``num_classes``.

    Under DDP the per-batch sums of the synthesised rows are all-reduced: every rank enters that collective
    on every call (with zero rows when its batch has no new-class sample), so ranks never wait on each
    other.

    Args:
        num_classes: total number of classes of the new training set (needed to synthesise new-class rows).
        synthesize_new_classes: synthesise rows for new classes; if False their samples are skipped.
        normalize_old_features: average L2-normalised old features (openBCT, default); False averages the
            raw features (deviation, kept as an option).
        normalize_synthesized: L2-normalise synthesised rows and rescale them to the mean norm of the old
            rows (deviation, off by default).
        synthesized_file: optional embedding file (``tools/extract_embeddings.py`` with the OLD model on the
            NEW training set, labelled): the rows are then fixed class means computed once from it, as
            openBCT's separate pseudo-classifier pass, instead of running means over the training batches.
        loss_weight: the lambda of ``L_new + lambda * L_influence``.
        reduction: 'mean' | 'sum' | 'none'.
    """

    def __init__(self,
                 num_classes: Optional[int] = None,
                 synthesize_new_classes: bool = True,
                 normalize_old_features: bool = True,
                 normalize_synthesized: bool = False,
                 synthesized_file: Optional[str] = None,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        self.num_classes = num_classes
        self.synthesize_new_classes = synthesize_new_classes
        self.normalize_old_features = normalize_old_features
        self.normalize_synthesized = normalize_synthesized
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.bank = ClassMeanBank(num_classes) if (num_classes and synthesize_new_classes) else None
        self.fixed = synthesized_file is not None
        if self.fixed:
            if self.bank is None:
                raise ValueError('BCTLoss: synthesized_file needs num_classes and synthesize_new_classes')
            from ..compatible.embedding_io import class_means, load_embeddings
            data = load_embeddings(synthesized_file)
            if 'labels' not in data:
                raise ValueError(f'{synthesized_file}: synthesised rows need labels, the file has none')
            emb = data['embeddings'].float()
            if normalize_old_features:
                emb = F.normalize(emb, dim=1)
            self.bank.set_means(class_means(emb, data['labels'].long(), num_classes))
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
        """Old weight/bias extended with synthesised new-class rows, and the per-sample valid mask.

        When synthesising, the class-mean bank is updated (a collective under DDP) on every call, also
        when this batch holds old classes only.
        """
        num_old = old_weight.shape[0]
        is_old = labels < num_old
        if not self.synthesize_new_classes:
            return old_weight, old_bias, is_old
        if self.bank is None:
            if bool(is_old.all()):
                return old_weight, old_bias, is_old
            raise ValueError(f'BCTLoss: label {int(labels.max())} is not an old class (the old classifier '
                             f'has {num_old} rows); set num_classes to synthesise new-class rows from '
                             'old-feature means, or synthesize_new_classes=False to skip such samples')
        if self.num_classes < num_old:
            raise ValueError(f'BCTLoss: num_classes={self.num_classes} is smaller than the old classifier '
                             f'({num_old} rows)')
        if self.fixed:   # rows from synthesized_file: no update, no collective
            means, seen = self.bank.means()
            if means.shape[1] != old_weight.shape[1]:
                raise ValueError(f'BCTLoss: synthesized_file has {means.shape[1]}-d embeddings but the old '
                                 f'classifier expects {old_weight.shape[1]}')
        elif old is None:
            if not bool(is_old.all()):
                raise ValueError('BCTLoss: new-class rows are synthesised from old features: pass `old` '
                                 "(e.g. inputs=dict(old='teacher.emb'))")
            new_feats = old_weight.new_zeros((0, old_weight.shape[1]))
        else:
            old = _flatten_emb(old)
            _check_2d('old', old, labels.shape[0])
            if old.shape[1] != old_weight.shape[1]:
                raise ValueError(f'BCTLoss: old features have dim {old.shape[1]} but the old classifier '
                                 f'expects {old_weight.shape[1]}')
            new_feats = old.detach()[~is_old]
            if self.normalize_old_features:
                new_feats = F.normalize(new_feats, dim=1)
        if not self.fixed:
            # always entered (zero rows allowed): the bank all-reduces its batch sums under DDP
            self.bank.update(new_feats.float(), labels[~is_old])
            means, seen = self.bank.means()
        synth = means[num_old:].to(old_weight)
        if self.normalize_synthesized:
            synth = F.normalize(synth, dim=1) * old_weight.norm(dim=1).mean()
        weight = torch.cat([old_weight, synth])
        bias = None if old_bias is None else torch.cat([old_bias, old_bias.new_zeros(synth.shape[0])])
        return weight, bias, is_old | seen[labels]

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
RACT_TOPK_MODES = ('per_term', 'union')


def ract_loss(new: torch.Tensor,
              old: torch.Tensor,
              labels: torch.Tensor,
              tau: float = 0.01,
              topk: Optional[int] = 10,
              new_new: bool = True,
              bank_new: Optional[torch.Tensor] = None,
              bank_old: Optional[torch.Tensor] = None,
              bank_labels: Optional[torch.Tensor] = None,
              topk_mode: str = 'per_term',
              detach_new_negatives: bool = True,
              reduction: str = 'mean') -> torch.Tensor:
    """RACT contrastive compatibility loss (see module docstring), one term per anchor.

    Args:
        new: (N, D) anchors' new embeddings; ``old``: (N, D_old) their old embeddings (the positives);
            ``new`` is truncated / zero-padded to D_old. Both are L2-normalised here; ``old`` is detached.
        labels: (N,) class ids.
        tau: temperature.
        topk: number k of hardest (largest-logit) negatives kept (None: all negatives).
        topk_mode: 'per_term' (official): the k hardest new-old negatives AND the k hardest new-new
            negatives, up to 2k in all; 'union': the k hardest of the pooled new-old and new-new negatives
            (at most k). The two select different negatives and give different losses.
        new_new: include the new-to-new negatives (False: the "contra" variant).
        bank_new, bank_old, bank_labels: the candidate negatives (M, .), e.g. gathered over DDP ranks;
            default to the local batch. Negatives are all bank entries whose label differs from y_i.
        detach_new_negatives: treat the new-new negatives n_j as constants (official: its all_gather
            carries no gradient); False lets the gradient flow through them too.
        reduction: 'mean' | 'sum' | 'none'.
    """
    _check_2d('new', new)
    _check_2d('old', old, new.shape[0])
    labels = hard_labels(labels)
    if labels.shape[0] != new.shape[0]:
        raise ValueError(f'labels have {labels.shape[0]} entries but new has {new.shape[0]} rows')
    if tau <= 0:
        raise ValueError(f'tau must be > 0, got {tau}')
    if topk is not None and topk < 1:
        raise ValueError(f'topk must be >= 1 or None, got {topk}')
    if topk_mode not in RACT_TOPK_MODES:
        raise ValueError(f'topk_mode must be one of {RACT_TOPK_MODES}, got {topk_mode!r}')
    if bank_new is None:
        bank_new, bank_old, bank_labels = new, old, labels
    elif bank_old is None or bank_labels is None:
        raise ValueError('bank_new, bank_old and bank_labels must be given together')
    dim = old.shape[1]
    n = F.normalize(match_dim(new, dim), dim=1)
    o = F.normalize(old.detach(), dim=1)
    bn = F.normalize(match_dim(bank_new, dim), dim=1)
    if detach_new_negatives:
        bn = bn.detach()
    bo = F.normalize(bank_old.detach(), dim=1)
    pos = (n * o).sum(1, keepdim=True) / tau                      # (N, 1)
    neg_mask = labels[:, None] != hard_labels(bank_labels)[None, :]   # (N, M)
    negs = [(n @ bo.t() / tau).masked_fill(~neg_mask, float('-inf'))]
    if new_new:
        negs.append((n @ bn.t() / tau).masked_fill(~neg_mask, float('-inf')))
    if topk is not None and topk_mode == 'per_term':
        negs = [t.topk(min(topk, t.shape[1]), dim=1).values for t in negs]
    neg = torch.cat(negs, dim=1)
    if topk is not None and topk_mode == 'union':
        neg = neg.topk(min(topk, neg.shape[1]), dim=1).values
    loss = torch.logsumexp(torch.cat([pos, neg], dim=1), dim=1) - pos[:, 0]
    return _reduce(loss, reduction)


@MODELS.register_module()
class RACTLoss(nn.Module):
    """RACT loss (hot-refresh backward-compatible training).

    Under DDP the new embeddings, old embeddings and labels of all ranks are gathered as the negative bank;
    without ``torch.distributed`` (or with ``gather=False``) the local batch is the bank.

    Args:
        tau: temperature (0.01 in the paper and the official code).
        topk: number of hardest negatives kept per term (official: 10); None = all.
        topk_mode: 'per_term' (official: top-k of the new-old term and top-k of the new-new term) or
            'union' (top-k of the pooled negatives; a different loss, kept as an option).
        new_new: keep the new-to-new negative term.
        detach_new_negatives: new-new negatives as constants (official); False: gradient through them
            (the local slice only, when gathered).
        gather: gather the bank across ranks when distributed.
        loss_weight, reduction: as usual.
    """

    def __init__(self,
                 tau: float = 0.01,
                 topk: Optional[int] = 10,
                 topk_mode: str = 'per_term',
                 new_new: bool = True,
                 detach_new_negatives: bool = True,
                 gather: bool = True,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        if topk_mode not in RACT_TOPK_MODES:
            raise ValueError(f'RACTLoss: topk_mode must be one of {RACT_TOPK_MODES}, got {topk_mode!r}')
        self.tau, self.topk, self.topk_mode, self.new_new, self.gather = tau, topk, topk_mode, new_new, gather
        self.detach_new_negatives = detach_new_negatives
        self.loss_weight, self.reduction = loss_weight, reduction

    def forward(self, new: torch.Tensor, old: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        new, old, labels = _flatten_emb(new), _flatten_emb(old), hard_labels(labels)
        bank = {}
        if self.gather and dist.get_world_size() > 1:
            bank = dict(bank_new=gather_with_grad(new), bank_old=gather_with_grad(old.detach()),
                        bank_labels=gather_with_grad(labels))
        return self.loss_weight * ract_loss(new, old, labels, self.tau, self.topk, self.new_new,
                                            topk_mode=self.topk_mode,
                                            detach_new_negatives=self.detach_new_negatives,
                                            reduction=self.reduction, **bank)


# ---------------------------------------------------------------------------------------------- UniBCT
def unibct_loss(new: torch.Tensor,
                prototypes: torch.Tensor,
                labels: torch.Tensor,
                scale: float = 1.0,
                normalize_prototypes: bool = False,
                valid: Optional[torch.Tensor] = None,
                reduction: str = 'mean') -> torch.Tensor:
    """UniBCT compatibility term: cross-entropy over the logits normalise(f) . P.

    Args:
        new: (N, D) new embeddings (truncated / zero-padded to D_old, then L2-normalised).
        prototypes: (C, D_old) structurally refined old prototypes P, used as they are (the reference
            keeps them unnormalised); ``normalize_prototypes=True`` L2-normalises them (option).
        labels: (N,) class ids.
        scale: multiplies the logits (1 in the reference).
        valid: optional (C,) bool: classes with a prototype; others are removed from the softmax and their
            samples skipped.
        reduction: 'mean' (over used samples) | 'sum' | 'none'.

    Returns:
        ``CE(scale * normalise(match(f_i)) . P^T, y_i)``.
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
    protos = F.normalize(prototypes, dim=1) if normalize_prototypes else prototypes
    n = F.normalize(match_dim(new, prototypes.shape[1]), dim=1)
    logits = (scale * (n @ protos.t())).masked_fill(~valid[None, :], float('-inf'))
    used = valid[labels]
    safe = torch.where(used, labels, torch.zeros_like(labels))
    loss = torch.zeros_like(n[:, 0])
    if used.any():
        loss = torch.where(used, F.cross_entropy(logits.masked_fill(~used[:, None], 0.0), safe,
                                                 reduction='none'), loss)
    if reduction == 'mean':
        return loss.sum() / used.sum().clamp(min=1)
    return _reduce(loss, reduction)


@MODELS.register_module()
class UniBCTLoss(nn.Module):
    """UniBCT compatibility loss against fixed, structurally refined old prototypes.

    The prototypes P (C, D_old) are set from outside with :meth:`set_prototypes`, by
    :class:`~mmkd_plugins.engine.hooks.UniBCTPrototypeHook` at set epochs (reference: epochs 10 and 20 of
    25) from :func:`~mmkd_plugins.models.compatible.structural_prototypes` of the whole training set with
    the current new model. Until the first refresh the term is 0 (the reference switches it on at epoch
    10, the first refresh). P is a persistent buffer: it is saved with the checkpoint and restored on
    resume. Per-class work only: no C x C matrix.

    Args:
        num_classes: classes of the new training set (rows of P).
        scale, normalize_prototypes: see :func:`unibct_loss` (reference: 1.0, False).
        loss_weight: weight of the term (reference: 1).
        reduction: as usual.
    """

    def __init__(self,
                 num_classes: int,
                 scale: float = 1.0,
                 normalize_prototypes: bool = False,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'UniBCTLoss: num_classes must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.scale, self.normalize_prototypes = scale, normalize_prototypes
        self.loss_weight, self.reduction = loss_weight, reduction
        self.register_buffer('prototypes', torch.zeros(num_classes, 0))
        self.register_buffer('valid', torch.zeros(num_classes, dtype=torch.bool))

    #: the hook that switches the term on (mmkd-doctor fails a config with the loss but not the hook)
    activated_by = 'UniBCTPrototypeHook'

    @property
    def active(self) -> bool:
        """Whether prototypes have been set (the term is 0 before)."""
        return self.prototypes.shape[1] > 0 and bool(self.valid.any())

    @torch.no_grad()
    def set_prototypes(self, prototypes: torch.Tensor, valid: Optional[torch.Tensor] = None) -> None:
        """Replace P by ``prototypes`` (C, D_old); ``valid`` (C,) marks the classes that have one."""
        if prototypes.dim() != 2 or prototypes.shape[0] != self.num_classes:
            raise ValueError(f'UniBCTLoss.set_prototypes: expected ({self.num_classes}, D), '
                             f'got {tuple(prototypes.shape)}')
        if valid is None:
            valid = torch.ones(self.num_classes, dtype=torch.bool)
        if valid.shape != (self.num_classes, ):
            raise ValueError(f'UniBCTLoss.set_prototypes: valid must be ({self.num_classes},), '
                             f'got {tuple(valid.shape)}')
        self.prototypes = prototypes.detach().float().clone().to(self.valid.device)
        self.valid = valid.detach().bool().clone().to(self.valid.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + 'prototypes'
        if key in state_dict and state_dict[key].shape != self.prototypes.shape:
            self.prototypes = torch.zeros_like(state_dict[key], device=self.valid.device)  # (C, 0) -> (C, D)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, new: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        new, labels = _flatten_emb(new), hard_labels(labels)
        if not self.active:
            return new.sum() * 0.0   # no prototypes yet: the term is off (graph kept for DDP)
        return self.loss_weight * unibct_loss(new, self.prototypes.to(new.dtype), labels, self.scale,
                                              self.normalize_prototypes, self.valid, self.reduction)


# ------------------------------------------------------------------------------------------------ BiCT
BICT_OBJECTIVES = ('new_classifier', 'regression')


def bict_transform_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = 'mse') -> torch.Tensor:
    """Regression loss of the forward transformation psi(old) -> new space (objective 'regression').

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


def bict_classifier_loss(pred: torch.Tensor, labels: torch.Tensor, new_weight: torch.Tensor,
                         new_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Objective 'new_classifier': ``CE(W_new psi(o_i) + b_new, y_i)`` through the FROZEN new classifier
    (weight (C, D_new) and bias (C,) are detached), mean over samples: the forward mirror of BCT's
    influence loss."""
    _check_2d('pred', pred)
    labels = hard_labels(labels)
    if labels.shape[0] != pred.shape[0]:
        raise ValueError(f'labels have {labels.shape[0]} entries but pred has {pred.shape[0]} rows')
    if new_weight.dim() != 2 or new_weight.shape[1] != pred.shape[1]:
        raise ValueError(f'BiCT: the new classifier weight {tuple(new_weight.shape)} does not take '
                         f'{pred.shape[1]}-d transformed embeddings')
    if labels.numel() and int(labels.max()) >= new_weight.shape[0]:
        raise ValueError(f'label {int(labels.max())} has no row in the new classifier '
                         f'({new_weight.shape[0]} rows)')
    logits = F.linear(pred, new_weight.detach(), None if new_bias is None else new_bias.detach())
    return F.cross_entropy(logits, labels)


@MODELS.register_module()
class BiCTTransformLoss(nn.Module):
    """Training loss of the BiCT forward-compatible transformation psi, with a named objective.

    * ``objective='new_classifier'`` (default): ``CE(W_new psi(o), y) + regression_weight * R(psi(o), n)``
      with the backward-compatible new model's classifier frozen (bound by
      :class:`~mmkd_plugins.models.compatible.CompatibleDistiller` from ``new_classifier``, or passed as
      ``new_weight`` / ``new_bias``); ``regression_weight`` defaults to 0.
    * ``objective='regression'``: ``R(psi(o), n)`` alone (FCT without side information).

    R is :func:`bict_transform_loss` (``kind`` 'mse' or 'cosine'). Inputs: ``pred`` = psi(phi_old(x)),
    ``target`` = phi_new(x) (needed by the regression), ``labels`` (needed by 'new_classifier').

    Args:
        objective: 'new_classifier' or 'regression'; reported with every BiCT result.
        regression_weight: weight of R under 'new_classifier'.
        kind: regression form.
        loss_weight: overall weight.
    """

    def __init__(self,
                 objective: str = 'new_classifier',
                 regression_weight: float = 0.0,
                 kind: str = 'mse',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if objective not in BICT_OBJECTIVES:
            raise ValueError(f'BiCTTransformLoss: objective must be one of {BICT_OBJECTIVES}, '
                             f'got {objective!r}')
        if kind not in ('mse', 'cosine'):
            raise ValueError(f"BiCTTransformLoss: kind must be 'mse' or 'cosine', got {kind!r}")
        self.objective, self.regression_weight = objective, regression_weight
        self.kind, self.loss_weight = kind, loss_weight
        self._new_classifier: Tuple[nn.Module, ...] = ()  # not a submodule: frozen, not saved

    def bind_new_classifier(self, module: nn.Module) -> None:
        """Use ``module`` (``nn.Linear``-like: ``weight`` (C, D_new), optional ``bias``) as the frozen new
        classifier of the 'new_classifier' objective."""
        if not isinstance(getattr(module, 'weight', None), torch.Tensor) or module.weight.dim() != 2:
            raise TypeError('BiCTTransformLoss: the new classifier must have a 2-D weight, got '
                            f'{type(module).__name__}')
        self._new_classifier = (module, )

    def forward(self,
                pred: torch.Tensor,
                target: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None,
                new_weight: Optional[torch.Tensor] = None,
                new_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        pred = _flatten_emb(pred)
        use_reg = self.objective == 'regression' or self.regression_weight != 0
        if use_reg and target is None:
            raise ValueError("BiCTTransformLoss: the regression term needs `target` (the new model's "
                             "embedding, e.g. inputs=dict(target='teacher.emb'))")
        loss = pred.new_zeros(())
        if self.objective == 'new_classifier':
            if labels is None:
                raise ValueError("BiCTTransformLoss: objective 'new_classifier' needs `labels` "
                                 "(inputs=dict(labels='gt_labels'))")
            if new_weight is None:
                if not self._new_classifier:
                    raise ValueError("BiCTTransformLoss: objective 'new_classifier' needs the new model's "
                                     'classifier: set CompatibleDistiller(new_classifier=...) or pass '
                                     'new_weight')
                fc = self._new_classifier[0]
                new_weight, new_bias = fc.weight, getattr(fc, 'bias', None)
            loss = loss + bict_classifier_loss(pred, labels, new_weight, new_bias)
            if self.regression_weight != 0:
                loss = loss + self.regression_weight * bict_transform_loss(pred, _flatten_emb(target),
                                                                           self.kind)
        else:
            loss = loss + bict_transform_loss(pred, _flatten_emb(target), self.kind)
        return self.loss_weight * loss
