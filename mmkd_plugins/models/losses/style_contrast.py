"""Contrastive losses that refine a style-transfer encoder ("Improving the Latent Space of Image
Style Transfer", arXiv 2205.12135).

Only the paper's abstract is public; the open details are fixed here (and documented in
``configs/style/README.md``):

* **style embedding** -- a 2-layer MLP on the concatenated channel mean and standard deviation
  (or, optionally, the flattened Gram matrix) of the encoder's ``relu3_1`` features (any subset of
  relu1_1..relu4_1 may be given);
* **content embedding** -- a 2-layer MLP on ``relu4_1`` average-pooled to ``pool_size x
  pool_size`` (keeps the coarse spatial layout that defines content);
* both are L2-normalised and compared by InfoNCE with temperature ``tau = 0.2``.

Pairs (per batch element ``i`` with content image ``c_i``, style image ``s_i`` and stylised
result ``x_i = g(AdaIN(f(c_i), f(s_i)))``):

* :class:`StyleContrastiveLoss` -- anchor ``x_i``; positives: every style image of the batch with
  the same style id as ``s_i`` (``s_i`` itself at least); negatives: the content image ``c_i`` and
  every style image of a different style id;
* :class:`ContentContrastiveLoss` -- anchor ``x_i``; positives: every content image with the same
  content id as ``c_i``; negatives: every content image of a different content id and the pair's
  own style image ``s_i`` (against content leak from the style image; it also guarantees one
  negative at batch size 1).

The math lives in pure functions (:func:`info_nce`, :func:`mean_std_descriptor`,
:func:`gram_descriptor`, :func:`style_contrastive_loss`, :func:`content_contrastive_loss`); the
registered modules own the projection heads and call them.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from ..editors.adain_ops import calc_mean_std

__all__ = [
    'info_nce', 'mean_std_descriptor', 'gram_descriptor', 'style_contrastive_loss',
    'content_contrastive_loss', 'StyleProjectionHead', 'ContentProjectionHead',
    'StyleContrastiveLoss', 'ContentContrastiveLoss'
]

_REDUCTIONS = ('none', 'mean', 'sum')


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == 'mean':
        return per_sample.mean()
    if reduction == 'sum':
        return per_sample.sum()
    return per_sample


def info_nce(anchor: Tensor,
             candidates: Tensor,
             pos_mask: Tensor,
             neg_mask: Tensor,
             tau: float = 0.2,
             normalize: bool = True) -> Tensor:
    r"""InfoNCE with any number of positives and negatives per anchor.

    With similarities :math:`s_{ij} = \langle a_i, c_j\rangle / \tau` (cosine when ``normalize``),
    positives :math:`P_i` and negatives :math:`N_i`:

    .. math::
        L_i = \frac{1}{|P_i|}\sum_{p \in P_i}
              -\log\frac{e^{s_{ip}}}{e^{s_{ip}} + \sum_{n \in N_i} e^{s_{in}}}

    (each positive is contrasted with all negatives; with one positive this is the usual
    InfoNCE / MoCo loss). An anchor without negatives gives 0.

    Args:
        anchor: ``(N, D)`` anchor embeddings.
        candidates: ``(M, D)`` embeddings of positives and negatives.
        pos_mask: ``(N, M)`` bool, ``True`` where candidate ``j`` is a positive of anchor ``i``.
        neg_mask: ``(N, M)`` bool, ``True`` where candidate ``j`` is a negative of anchor ``i``.
        tau: temperature > 0.
        normalize: L2-normalise anchors and candidates first.

    Returns:
        ``(N,)`` per-anchor losses.
    """
    if anchor.dim() != 2 or candidates.dim() != 2 or anchor.size(1) != candidates.size(1):
        raise ValueError('info_nce needs (N, D) anchors and (M, D) candidates with the same D, '
                         f'got {tuple(anchor.shape)} and {tuple(candidates.shape)}')
    shape = (anchor.size(0), candidates.size(0))
    for name, mask in (('pos_mask', pos_mask), ('neg_mask', neg_mask)):
        if tuple(mask.shape) != shape or mask.dtype != torch.bool:
            raise ValueError(f'{name} must be a bool tensor of shape {shape}, got '
                             f'{mask.dtype} {tuple(mask.shape)}')
    if tau <= 0:
        raise ValueError(f'tau must be positive, got {tau}')
    if (pos_mask & neg_mask).any():
        raise ValueError('a candidate cannot be both a positive and a negative of one anchor')
    num_pos = pos_mask.sum(dim=1)
    if (num_pos == 0).any():
        raise ValueError('every anchor needs at least one positive; anchors without one: '
                         f'{torch.nonzero(num_pos == 0).flatten().tolist()}')
    if normalize:
        anchor = F.normalize(anchor, dim=1)
        candidates = F.normalize(candidates, dim=1)
    logits = anchor @ candidates.t() / tau  # (N, M)
    neg_logits = logits.masked_fill(~neg_mask, float('-inf'))
    neg_lse = torch.logsumexp(neg_logits, dim=1, keepdim=True)  # -inf where no negatives
    # -log(e^s / (e^s + sum_n e^s_n)) = logaddexp(s, lse_n) - s
    per_pair = torch.logaddexp(logits, neg_lse) - logits
    per_pair = per_pair.masked_fill(~pos_mask, 0.0)
    return per_pair.sum(dim=1) / num_pos.to(per_pair.dtype)


def mean_std_descriptor(feats: Sequence[Tensor], eps: float = 1e-5) -> Tensor:
    r"""Style descriptor: ``[mu(phi_l), sigma(phi_l)]`` over the layers, concatenated.

    Args:
        feats: one ``(N, C_l, H_l, W_l)`` feature map per layer.
        eps: variance epsilon (:func:`calc_mean_std`).

    Returns:
        ``(N, sum_l 2 C_l)``; for each layer the ``C_l`` means come first, then the ``C_l``
        standard deviations.
    """
    if len(feats) == 0:
        raise ValueError('mean_std_descriptor needs at least one feature map')
    parts = []
    for feat in feats:
        mean, std = calc_mean_std(feat, eps)
        parts += [mean.flatten(1), std.flatten(1)]
    return torch.cat(parts, dim=1)


def gram_descriptor(feats: Sequence[Tensor]) -> Tensor:
    r"""Style descriptor: flattened Gram matrices :math:`G = F F^\top / (HW)`, concatenated.

    Args:
        feats: one ``(N, C_l, H_l, W_l)`` feature map per layer.

    Returns:
        ``(N, sum_l C_l^2)``.
    """
    if len(feats) == 0:
        raise ValueError('gram_descriptor needs at least one feature map')
    parts = []
    for feat in feats:
        if feat.dim() != 4:
            raise ValueError(f'expected (N, C, H, W) features, got {tuple(feat.shape)}')
        n, c, h, w = feat.shape
        flat = feat.reshape(n, c, h * w)
        parts.append((flat @ flat.transpose(1, 2) / (h * w)).flatten(1))
    return torch.cat(parts, dim=1)


def _ids(ids: Optional[Tensor], n: int, device: torch.device, name: str) -> Tensor:
    if ids is None:
        return torch.arange(n, device=device)
    ids = torch.as_tensor(ids, device=device).reshape(-1)
    if ids.numel() != n:
        raise ValueError(f'{name} has {ids.numel()} entries but the batch has {n} samples')
    return ids


def _check_embeddings(**embs: Tensor) -> int:
    shapes = {k: tuple(v.shape) for k, v in embs.items()}
    first = next(iter(shapes.values()))
    if any(len(s) != 2 for s in shapes.values()) or len(set(shapes.values())) != 1:
        raise ValueError(f'embeddings must all be (N, D) with equal shapes, got {shapes}')
    return first[0]


def _grouped_info_nce(anchor: Tensor, group: Tensor, paired: Tensor, ids: Optional[Tensor],
                      tau: float, ids_name: str) -> Tensor:
    """InfoNCE over candidates ``[group_0..group_{N-1}, paired_0..paired_{N-1}]``.

    For anchor ``i`` the positives are the ``group`` entries with the same id as ``i``; the
    negatives are the ``group`` entries of another id and ``paired_i`` (the anchor's other input).
    """
    n = anchor.shape[0]
    ids = _ids(ids, n, anchor.device, ids_name)
    same = ids[:, None] == ids[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=anchor.device)
    pos = torch.cat([same, torch.zeros_like(eye)], dim=1)
    neg = torch.cat([~same, eye], dim=1)
    return info_nce(anchor, torch.cat([group, paired]), pos, neg, tau)


def style_contrastive_loss(anchor: Tensor,
                           style: Tensor,
                           content: Tensor,
                           style_ids: Optional[Tensor] = None,
                           tau: float = 0.2) -> Tensor:
    """Style InfoNCE: stylised result vs. its style image (+), its content and other styles (-).

    Candidates are ``[style_0..style_{N-1}, content_0..content_{N-1}]``; for anchor ``i`` the
    positives are the style images ``j`` with ``style_ids[j] == style_ids[i]``, the negatives the
    style images of another id and ``content_i``.

    Args:
        anchor: ``(N, D)`` style embeddings of the stylised results.
        style: ``(N, D)`` style embeddings of the style images.
        content: ``(N, D)`` style embeddings of the content images.
        style_ids: ``(N,)`` identities of the style images (default: all different).
        tau: temperature.

    Returns:
        ``(N,)`` per-sample losses.
    """
    _check_embeddings(anchor=anchor, style=style, content=content)
    return _grouped_info_nce(anchor, style, content, style_ids, tau, 'style_ids')


def content_contrastive_loss(anchor: Tensor,
                             content: Tensor,
                             style: Tensor,
                             content_ids: Optional[Tensor] = None,
                             tau: float = 0.2) -> Tensor:
    """Content InfoNCE: stylised result vs. its content image (+), other contents and its style (-).

    Candidates are ``[content_0..content_{N-1}, style_0..style_{N-1}]``; for anchor ``i`` the
    positives are the content images ``j`` with ``content_ids[j] == content_ids[i]``, the
    negatives the content images of another id and ``style_i``.

    Args:
        anchor: ``(N, D)`` content embeddings of the stylised results.
        content: ``(N, D)`` content embeddings of the content images.
        style: ``(N, D)`` content embeddings of the style images.
        content_ids: ``(N,)`` identities of the content images (default: all different).
        tau: temperature.

    Returns:
        ``(N,)`` per-sample losses.
    """
    _check_embeddings(anchor=anchor, content=content, style=style)
    return _grouped_info_nce(anchor, content, style, content_ids, tau, 'content_ids')


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


def _as_list(value: Union[int, str, Sequence], name: str) -> list:
    if isinstance(value, (int, str)):
        return [value]
    value = list(value)
    if not value:
        raise ValueError(f'{name} must not be empty')
    return value


@MODELS.register_module()
class StyleProjectionHead(BaseModule):
    """Style embedding: descriptor of several feature layers -> 2-layer MLP.

    Args:
        in_channels: channels of each input layer.
        descriptor: ``'mean_std'`` (:func:`mean_std_descriptor`) or ``'gram'``
            (:func:`gram_descriptor`, ``C^2`` inputs: large).
        hidden_dim: MLP hidden width.
        out_dim: embedding size.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 descriptor: str = 'mean_std',
                 hidden_dim: int = 512,
                 out_dim: int = 128,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = _as_list(in_channels, 'in_channels')
        if descriptor == 'mean_std':
            in_dim = sum(2 * c for c in self.in_channels)
        elif descriptor == 'gram':
            in_dim = sum(c * c for c in self.in_channels)
        else:
            raise ValueError(f"descriptor must be 'mean_std' or 'gram', got {descriptor!r}")
        self.descriptor = descriptor
        self.mlp = _mlp(in_dim, hidden_dim, out_dim)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """``feats``: one ``(N, C_l, H, W)`` per layer -> ``(N, out_dim)``."""
        chans = [f.size(1) for f in feats]
        if chans != self.in_channels:
            raise ValueError(f'StyleProjectionHead expects layers with {self.in_channels} '
                             f'channels, got {chans}')
        desc = (mean_std_descriptor(feats)
                if self.descriptor == 'mean_std' else gram_descriptor(feats))
        return self.mlp(desc)


@MODELS.register_module()
class ContentProjectionHead(BaseModule):
    """Content embedding: average-pool to ``pool_size x pool_size``, flatten, 2-layer MLP.

    Args:
        in_channels: channels of the input layer.
        pool_size: output size of the adaptive average pooling (1 = global pooling).
        hidden_dim: MLP hidden width.
        out_dim: embedding size.
    """

    def __init__(self,
                 in_channels: int,
                 pool_size: int = 4,
                 hidden_dim: int = 512,
                 out_dim: int = 128,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pool_size < 1:
            raise ValueError(f'pool_size must be >= 1, got {pool_size}')
        self.in_channels = int(in_channels)
        self.pool_size = int(pool_size)
        self.mlp = _mlp(self.in_channels * self.pool_size**2, hidden_dim, out_dim)

    def forward(self, feat: Tensor) -> Tensor:
        """``feat``: ``(N, C, H, W)`` -> ``(N, out_dim)``."""
        if feat.dim() != 4 or feat.size(1) != self.in_channels:
            raise ValueError(f'ContentProjectionHead expects (N, {self.in_channels}, H, W) '
                             f'features, got {tuple(feat.shape)}')
        pooled = F.adaptive_avg_pool2d(feat, self.pool_size)
        return self.mlp(pooled.flatten(1))


def _pick(feats: Dict[str, Tensor], layers: Sequence[str], name: str) -> list:
    missing = [la for la in layers if la not in feats]
    if missing:
        raise KeyError(f'{name} lacks layer(s) {missing}; it has {sorted(feats)}')
    return [feats[la] for la in layers]


class _ContrastiveBase(BaseModule):

    def __init__(self, tau: float, loss_weight: float, reduction: str,
                 init_cfg: Optional[dict]) -> None:
        super().__init__(init_cfg=init_cfg)
        if reduction not in _REDUCTIONS:
            raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}')
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        self.tau = float(tau)
        self.loss_weight = float(loss_weight)
        self.reduction = reduction


@MODELS.register_module()
class StyleContrastiveLoss(_ContrastiveBase):
    """Style contrastive loss with its own :class:`StyleProjectionHead`.

    Args:
        in_channels: channels of each of ``layers`` (the style-transfer model fills it in from its
            encoder when left ``None``).
        layers: encoder layers the style embedding is computed from.
        descriptor: ``'mean_std'`` or ``'gram'`` (see :class:`StyleProjectionHead`).
        hidden_dim / out_dim: projection MLP sizes.
        tau: InfoNCE temperature.
        loss_weight: multiplier of the loss.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` over the batch.
    """

    def __init__(self,
                 in_channels: Optional[Union[int, Sequence[int]]] = None,
                 layers: Union[str, Sequence[str]] = ('relu3_1', ),
                 descriptor: str = 'mean_std',
                 hidden_dim: int = 512,
                 out_dim: int = 128,
                 tau: float = 0.2,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(tau, loss_weight, reduction, init_cfg)
        self.layers = _as_list(layers, 'layers')
        if in_channels is None:
            raise ValueError('StyleContrastiveLoss needs in_channels (one per layer); '
                             'AdaINStyleTransfer fills it in from its encoder')
        in_channels = _as_list(in_channels, 'in_channels')
        if len(in_channels) != len(self.layers):
            raise ValueError(f'in_channels {in_channels} must give one entry per layer '
                             f'{self.layers}')
        self.head = StyleProjectionHead(in_channels, descriptor, hidden_dim, out_dim)

    def forward(self,
                stylized_feats: Dict[str, Tensor],
                style_feats: Dict[str, Tensor],
                content_feats: Dict[str, Tensor],
                style_ids: Optional[Tensor] = None) -> Tensor:
        """Loss from encoder feature dicts (layer name -> ``(N, C, H, W)``) of the three images."""
        anchor = self.head(_pick(stylized_feats, self.layers, 'stylized_feats'))
        pos = self.head(_pick(style_feats, self.layers, 'style_feats'))
        neg = self.head(_pick(content_feats, self.layers, 'content_feats'))
        loss = style_contrastive_loss(anchor, pos, neg, style_ids, self.tau)
        return self.loss_weight * _reduce(loss, self.reduction)


@MODELS.register_module()
class ContentContrastiveLoss(_ContrastiveBase):
    """Content contrastive loss with its own :class:`ContentProjectionHead`.

    Args:
        in_channels: channels of ``layer`` (filled in by the style-transfer model when ``None``).
        layer: encoder layer of the content embedding.
        pool_size: spatial size the features are average-pooled to.
        hidden_dim / out_dim: projection MLP sizes.
        tau: InfoNCE temperature.
        loss_weight: multiplier of the loss.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` over the batch.
    """

    def __init__(self,
                 in_channels: Optional[int] = None,
                 layer: str = 'relu4_1',
                 pool_size: int = 4,
                 hidden_dim: int = 512,
                 out_dim: int = 128,
                 tau: float = 0.2,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(tau, loss_weight, reduction, init_cfg)
        if in_channels is None:
            raise ValueError('ContentContrastiveLoss needs in_channels; AdaINStyleTransfer fills '
                             'it in from its encoder')
        if isinstance(in_channels, (list, tuple)):
            if len(in_channels) != 1:
                raise ValueError(f'ContentContrastiveLoss uses one layer, got in_channels '
                                 f'{in_channels}')
            in_channels = in_channels[0]
        self.layer = layer
        self.layers = [layer]
        self.head = ContentProjectionHead(in_channels, pool_size, hidden_dim, out_dim)

    def forward(self,
                stylized_feats: Dict[str, Tensor],
                content_feats: Dict[str, Tensor],
                style_feats: Dict[str, Tensor],
                content_ids: Optional[Tensor] = None) -> Tensor:
        """Loss from encoder feature dicts (layer name -> ``(N, C, H, W)``) of the three images."""
        anchor = self.head(_pick(stylized_feats, self.layers, 'stylized_feats')[0])
        pos = self.head(_pick(content_feats, self.layers, 'content_feats')[0])
        neg = self.head(_pick(style_feats, self.layers, 'style_feats')[0])
        loss = content_contrastive_loss(anchor, pos, neg, content_ids, self.tau)
        return self.loss_weight * _reduce(loss, self.reduction)
