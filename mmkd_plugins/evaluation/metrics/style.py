"""Style-transfer metrics: content loss, style (mean/std) loss and a style-distance check.

All are computed in the feature space of each encoder the model reports (``plain`` = the initial
VGG, ``refined`` = the contrastively refined encoder, plus any extra evaluation encoders), from the
``eval_feats`` that :class:`AdaINStyleTransfer` attaches to its predictions.

* content loss: ``MSE(phi_4(result), phi_4(content))`` at relu4_1 (per image, then averaged);
* style loss: ``sum_l MSE(mu_l(result), mu_l(style)) + MSE(sigma_l(result), sigma_l(style))``;
* style-distance check (the failure the paper points out: in VGG space, two images in the same
  style but of different contents can lie further apart than two images of the same content in
  different styles). With ``d`` the Euclidean distance between style descriptors
  ``[mu_l, sigma_l]_l`` of the stylised results:

  - ``same_style_dist`` -- mean ``d`` over pairs with the same style and different contents;
  - ``diff_style_dist`` -- mean ``d`` over pairs with different styles;
  - ``style_triplet_acc`` -- over triplets (anchor ``i``; ``j``: same style, other content;
    ``k``: same content, other style) the fraction with ``d_ij < d_ik`` (ties count 1/2).
    1 means style dominates the space as it should, below 0.5 means content dominates.
"""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.registry import METRICS
from torch import Tensor

__all__ = [
    'feature_content_loss', 'stats_style_loss', 'stats_descriptor', 'style_distance_check',
    'StyleTransferMetric'
]

_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1')


def feature_content_loss(result_feat: Tensor, content_feat: Tensor) -> float:
    """``mean((phi(result) - phi(content))^2)`` over all elements of two equal-shape maps."""
    if result_feat.shape != content_feat.shape:
        raise ValueError('content loss needs equal feature shapes, got '
                         f'{tuple(result_feat.shape)} and {tuple(content_feat.shape)}')
    return float(((result_feat.double() - content_feat.double())**2).mean())


def stats_style_loss(result_stats: Dict[str, Tensor], style_stats: Dict[str, Tensor],
                     layers: Sequence[str] = _LAYERS) -> float:
    """``sum_l mean((mu_r - mu_s)^2) + mean((sigma_r - sigma_s)^2)``.

    Args:
        result_stats / style_stats: layer -> ``(2, C)`` (row 0 channel means, row 1 stds).
        layers: layers summed over.
    """
    total = 0.0
    for la in layers:
        if la not in result_stats or la not in style_stats:
            raise KeyError(f'statistics of layer {la!r} missing (have {sorted(result_stats)})')
        r, s = result_stats[la].double(), style_stats[la].double()
        if r.shape != s.shape or r.dim() != 2 or r.size(0) != 2:
            raise ValueError(f'layer {la}: statistics must both be (2, C), got '
                             f'{tuple(r.shape)} and {tuple(s.shape)}')
        total += float(((r[0] - s[0])**2).mean() + ((r[1] - s[1])**2).mean())
    return total


def stats_descriptor(stats: Dict[str, Tensor], layers: Sequence[str] = _LAYERS) -> np.ndarray:
    """Style descriptor ``[mu_l, sigma_l for l in layers]`` as a float64 vector."""
    missing = [la for la in layers if la not in stats]
    if missing:
        raise KeyError(f'statistics of layer(s) {missing} missing (have {sorted(stats)})')
    return np.concatenate([stats[la].double().reshape(-1).numpy() for la in layers])


def style_distance_check(descriptors: np.ndarray, style_ids: Sequence[int],
                         content_ids: Sequence[int]) -> Dict[str, float]:
    """Compare same-style and different-style distances between stylised results.

    Args:
        descriptors: ``(N, D)`` style descriptors of the results.
        style_ids: ``(N,)`` style identity of each result.
        content_ids: ``(N,)`` content identity of each result.

    Returns:
        ``same_style_dist``, ``diff_style_dist``, ``style_triplet_acc`` (see the module
        docstring) and ``num_triplets``; a value with no pair / triplet to average is ``nan``.
    """
    desc = np.asarray(descriptors, dtype=np.float64)
    s = np.asarray(style_ids).reshape(-1)
    c = np.asarray(content_ids).reshape(-1)
    if desc.ndim != 2 or not len(desc) == len(s) == len(c):
        raise ValueError(f'need (N, D) descriptors and N ids, got {desc.shape}, {len(s)} style '
                         f'ids and {len(c)} content ids')
    dist = np.sqrt(((desc[:, None, :] - desc[None, :, :])**2).sum(-1))
    same_s = s[:, None] == s[None, :]
    same_c = c[:, None] == c[None, :]
    upper = np.triu(np.ones_like(same_s), k=1)
    pos = same_s & ~same_c  # same style, other content
    neg = ~same_s & same_c  # same content, other style
    out = dict(
        same_style_dist=float(dist[pos & upper].mean()) if (pos & upper).any() else float('nan'),
        diff_style_dist=float(dist[~same_s & upper].mean())
        if (~same_s & upper).any() else float('nan'))
    # triplets (i, j, k): j in pos[i], k in neg[i]
    d_pos = np.where(pos, dist, np.nan)[:, :, None]  # (N, N, 1)
    d_neg = np.where(neg, dist, np.nan)[:, None, :]  # (N, 1, N)
    valid = pos[:, :, None] & neg[:, None, :]
    num = int(valid.sum())
    if num:
        with np.errstate(invalid='ignore'):
            score = (d_pos < d_neg).astype(np.float64) + 0.5 * (d_pos == d_neg)
        out['style_triplet_acc'] = float(score[valid].mean())
    else:
        out['style_triplet_acc'] = float('nan')
    out['num_triplets'] = float(num)
    return out


@METRICS.register_module()
class StyleTransferMetric(BaseMetric):
    """Content / style losses and the style-distance check, per evaluation encoder.

    Reads ``eval_feats`` (see :meth:`AdaINStyleTransfer.predict`) and the ``content_id`` /
    ``style_id`` metainfo of the predictions. Keys: ``{prefix}/{encoder}/{name}``.

    Args:
        encoders: names of the encoders to report (default: every one in the predictions).
        style_layers: layers of the style loss.
        descriptor_layers: layers of the style descriptor of the distance check.
        collect_device / prefix: as in ``mmengine.evaluator.BaseMetric``.
    """
    default_prefix = 'style'

    def __init__(self,
                 encoders: Optional[Sequence[str]] = None,
                 style_layers: Sequence[str] = _LAYERS,
                 descriptor_layers: Sequence[str] = _LAYERS,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.encoders = list(encoders) if encoders is not None else None
        self.style_layers = tuple(style_layers)
        self.descriptor_layers = tuple(descriptor_layers)

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            if not isinstance(sample, dict):
                sample = sample.to_dict()
            feats = sample.get('eval_feats')
            if not feats:
                raise KeyError('StyleTransferMetric needs "eval_feats" in the predictions; build '
                               'the model with with_eval_feats=True')
            names = self.encoders if self.encoders is not None else list(feats)
            missing = [n for n in names if n not in feats]
            if missing:
                raise KeyError(f'no eval_feats for encoder(s) {missing}; the model reports '
                               f'{sorted(feats)}')
            res = dict(style_id=int(sample.get('style_id', -1)),
                       content_id=int(sample.get('content_id', -1)))
            for name in names:
                f = feats[name]
                res[name] = dict(
                    content_loss=feature_content_loss(f['result_relu4_1'], f['content_relu4_1']),
                    style_loss=stats_style_loss(f['result_stats'], f['style_stats'],
                                                self.style_layers),
                    descriptor=stats_descriptor(f['result_stats'], self.descriptor_layers))
            self.results.append(res)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        metrics: Dict[str, float] = {}
        if not results:
            return metrics
        names = [k for k in results[0] if k not in ('style_id', 'content_id')]
        style_ids = [r['style_id'] for r in results]
        content_ids = [r['content_id'] for r in results]
        per = defaultdict(list)
        for name in names:
            metrics[f'{name}/content_loss'] = float(np.mean([r[name]['content_loss']
                                                             for r in results]))
            metrics[f'{name}/style_loss'] = float(np.mean([r[name]['style_loss']
                                                           for r in results]))
            desc = np.stack([r[name]['descriptor'] for r in results])
            check = style_distance_check(desc, style_ids, content_ids)
            for key in ('same_style_dist', 'diff_style_dist', 'style_triplet_acc'):
                metrics[f'{name}/{key}'] = check[key]
            per['num_triplets'].append(check['num_triplets'])
        if per['num_triplets'] and per['num_triplets'][0] == 0:
            MMLogger.get_current_instance().warning(
                'StyleTransferMetric: no (same style, other content) / (same content, other '
                'style) triplets; evaluate on a content x style grid (test_mode=True) with at '
                'least 2 contents and 2 styles to get style_triplet_acc')
        return metrics
