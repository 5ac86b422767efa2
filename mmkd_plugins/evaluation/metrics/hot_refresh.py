"""Hot-refresh evaluation of a model upgrade (RACT) and the cross-model compatibility table (BCT).

Queries are embedded by the NEW model. The gallery starts as OLD embeddings and is backfilled: a fraction f
of the items (in a backfill order, see ``mmkd_plugins.engine.hooks.backfill``) is re-embedded by the new
model. A query's score against a gallery item is the cosine similarity in the item's space:

    s(q, g) = cos(q_new, g_new)                 if g is backfilled
            = cos(match(q_new, D_old), g_old)   otherwise (BCT truncate / zero-pad convention)
            = cos(q_new, psi(g_old))            when old rows are upgraded by BiCT's psi instead

Ranking: decreasing score, ties in gallery order; a query's own item is excluded (leave-one-out) when the
query set is the gallery. ``AP = (1/R) sum_k rel_k P@k`` over the full ranking (R = number of relevant
items); with ``topk=K``: the sum runs to K and R becomes min(R, K). top-1 = the first item is relevant.
Queries without a relevant gallery item are left out of every number.
NFR(f) = fraction of queries correct at top-1 under the old system (old query, old gallery) and wrong under
the mixed system at f. Compatibility criterion (BCT): mAP(new, old) > mAP(old, old).
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.registry import METRICS

# the module, not its names: engine.hooks.backfill imports models, which import this package
# (import cycle when mmkd_plugins.engine is imported first)
from mmkd_plugins.engine.hooks import backfill as _backfill
from mmkd_plugins.models.losses.compatible import match_dim
from mmkd_plugins.utils.safe_output import RunOutputs


def cosine_scores(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(Q, G) cosine similarities; the query is truncated / zero-padded to the gallery's dimension."""
    if query.dim() != 2 or gallery.dim() != 2:
        raise ValueError(f'query and gallery must be (N, D), got {tuple(query.shape)} and '
                         f'{tuple(gallery.shape)}')
    q = F.normalize(match_dim(query.double(), gallery.shape[1]), dim=1)
    return q @ F.normalize(gallery.double(), dim=1).t()


def ranking_metrics(scores: torch.Tensor,
                    q_labels: torch.Tensor,
                    g_labels: torch.Tensor,
                    exclude: Optional[torch.Tensor] = None,
                    topk: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Per-query AP, top-1 correctness and whether the query has any relevant item.

    Args:
        scores: (Q, G) similarities (higher = better).
        q_labels: (Q,), g_labels: (G,) class ids; relevant = same class.
        exclude: optional (Q, G) bool, entries removed from the ranking (e.g. the query itself).
        topk: AP@K (see module docstring); None = full ranking.

    Returns:
        dict(ap=(Q,) float64, top1=(Q,) bool, valid=(Q,) bool).
    """
    if scores.shape != (q_labels.shape[0], g_labels.shape[0]):
        raise ValueError(f'scores {tuple(scores.shape)} do not match {q_labels.shape[0]} queries x '
                         f'{g_labels.shape[0]} gallery items')
    rel = q_labels[:, None] == g_labels[None, :]
    scores = scores.double()
    if exclude is not None:
        rel = rel & ~exclude
        scores = scores.masked_fill(exclude, float('-inf'))
    order = torch.sort(-scores, dim=1, stable=True).indices
    rel_sorted = torch.gather(rel, 1, order).double()
    num_rel = rel.sum(1).double()
    if topk is not None:
        rel_sorted = rel_sorted[:, :topk]
        num_rel = num_rel.clamp(max=topk)
    ranks = torch.arange(1, rel_sorted.shape[1] + 1, dtype=torch.float64)
    prec = rel_sorted.cumsum(1) / ranks
    ap = (prec * rel_sorted).sum(1) / num_rel.clamp(min=1)
    return dict(ap=ap, top1=rel_sorted[:, 0] > 0, valid=rel.any(1))


def _mean(x: torch.Tensor, valid: torch.Tensor) -> float:
    return float(x.double()[valid].mean()) if valid.any() else float('nan')


def hot_refresh_curve(q_new: torch.Tensor,
                      g_old: torch.Tensor,
                      g_new: torch.Tensor,
                      q_labels: torch.Tensor,
                      g_labels: torch.Tensor,
                      order: Sequence[int],
                      fractions: Sequence[float],
                      q_old: Optional[torch.Tensor] = None,
                      g_bict: Optional[torch.Tensor] = None,
                      exclude: Optional[torch.Tensor] = None,
                      topk: Optional[int] = None,
                      chunk_size: int = 1024,
                      bict_objective: Optional[str] = None) -> Dict:
    """The hot-refresh curve and the cross-model table.

    Args:
        q_new: (Q, D_new) new query embeddings; q_old: (Q, D_old) old ones (for mAP(old, old) and NFR).
        g_old: (G, D_old), g_new: (G, D_new) gallery embeddings; g_bict: (G, D_new) psi(g_old), optional.
        q_labels, g_labels: class ids; order: backfill order (G,); fractions: f values in [0, 1].
        exclude: (Q, G) bool entries left out (leave-one-out); topk: AP@K.
        chunk_size: queries scored at once (memory ~ chunk_size x G doubles per score matrix).
        bict_objective: the objective psi was trained with ('new_classifier' / 'regression'); the BiCT
            entries are then named ``bict_<objective>`` instead of ``bict``.

    Returns:
        dict(table={'mAP(new,old)': ..., 'mAP(old,old)': ..., 'mAP(new,new)': ..., ['mAP(new,bict)'],
        'top1(...)': ..., 'compatible': bool}, curves={'old': [row, ...], ['bict': [...]]}) where a row is
        dict(f, mAP, top1, NFR) (NFR is nan without q_old). With ``bict_objective`` the BiCT name is
        ``bict_<objective>`` in both, and the result holds ``bict_objective``.
    """
    num_g = g_old.shape[0]
    order_t = torch.as_tensor(np.asarray(order), dtype=torch.long)
    if sorted(order_t.tolist()) != list(range(num_g)):
        raise ValueError(f'order must be a permutation of the {num_g} gallery items')
    for f in fractions:
        if not 0.0 <= float(f) <= 1.0:
            raise ValueError(f'fractions must lie in [0, 1], got {f}')
    masks = []
    for f in fractions:
        mask = torch.zeros(num_g, dtype=torch.bool)
        mask[order_t[:int(round(float(f) * num_g))]] = True
        masks.append(mask)
    kinds = ['old'] + (['bict'] if g_bict is not None else [])
    pair_names = ['new,old', 'new,new'] + (['new,bict'] if g_bict is not None else []) + (
        ['old,old'] if q_old is not None else [])
    pair_res: Dict[str, List] = {name: [] for name in pair_names}
    curve_res: Dict[str, List[List]] = {kind: [[] for _ in fractions] for kind in kinds}
    valid_parts = []
    for lo in range(0, q_new.shape[0], chunk_size):
        sl = slice(lo, lo + chunk_size)
        ql, ex = q_labels[sl], None if exclude is None else exclude[sl]
        scores = {'new,old': cosine_scores(q_new[sl], g_old), 'new,new': cosine_scores(q_new[sl], g_new)}
        if g_bict is not None:
            scores['new,bict'] = cosine_scores(q_new[sl], g_bict)
        if q_old is not None:
            scores['old,old'] = cosine_scores(q_old[sl], g_old)
        for name in pair_names:
            pair_res[name].append(ranking_metrics(scores[name], ql, g_labels, ex, topk))
        valid_parts.append(pair_res['new,old'][-1]['valid'])
        for kind in kinds:
            base = scores['new,old' if kind == 'old' else 'new,bict']
            for k, mask in enumerate(masks):
                curve_res[kind][k].append(
                    ranking_metrics(torch.where(mask[None, :], scores['new,new'], base), ql, g_labels, ex,
                                    topk))
    valid = torch.cat(valid_parts)

    def cat(parts, key):
        return torch.cat([p[key] for p in parts])

    table = {}
    for name in pair_names:
        table[f'mAP({name})'] = _mean(cat(pair_res[name], 'ap'), valid)
        table[f'top1({name})'] = _mean(cat(pair_res[name], 'top1'), valid)
    old_ok = cat(pair_res['old,old'], 'top1') if q_old is not None else None
    if q_old is not None:
        table['compatible'] = table['mAP(new,old)'] > table['mAP(old,old)']
    curves = {}
    for kind in kinds:
        rows = []
        for f, parts in zip(fractions, curve_res[kind]):
            top1 = cat(parts, 'top1')
            nfr = _mean(old_ok & ~top1, valid) if old_ok is not None else float('nan')
            rows.append(dict(f=float(f), mAP=_mean(cat(parts, 'ap'), valid), top1=_mean(top1, valid),
                             NFR=nfr))
        curves[kind] = rows
    if g_bict is not None and bict_objective:
        name = f'bict_{bict_objective}'
        table = {k.replace('bict', name): v for k, v in table.items()}
        curves = {(name if k == 'bict' else k): v for k, v in curves.items()}
        return dict(table=table, curves=curves, bict_objective=bict_objective)
    return dict(table=table, curves=curves)


def format_hot_refresh(result: Dict) -> str:
    """A plain-text table of :func:`hot_refresh_curve`'s result."""
    lines = ['cross-model retrieval (query model, gallery model):']
    for key, val in result['table'].items():
        lines.append(f'  {key:<16} {val if isinstance(val, bool) else f"{val:.4f}"}')
    for kind, rows in result['curves'].items():
        lines.append(f'hot-refresh, not-yet-backfilled rows = {kind}:')
        lines.append(f'  {"f":>5} {"mAP":>8} {"top1":>8} {"NFR":>8}')
        for r in rows:
            lines.append(f'  {r["f"]:>5.2f} {r["mAP"]:>8.4f} {r["top1"]:>8.4f} {r["NFR"]:>8.4f}')
    return '\n'.join(lines)


def plot_hot_refresh(result: Dict, path: str, title: str = 'hot-refresh model upgrade') -> str:
    """Plot mAP and NFR against the backfilled fraction f (PNG); returns ``path``."""
    from mmkd_plugins.utils import require
    matplotlib = require('matplotlib', 'the hot-refresh plot')
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for kind, rows in result['curves'].items():
        fs = [r['f'] for r in rows]
        ax1.plot(fs, [r['mAP'] for r in rows], marker='o', label=f'new query, {kind}+new gallery')
        ax2.plot(fs, [r['NFR'] for r in rows], marker='o', label=f'{kind}+new gallery')
    for key, style in (('mAP(old,old)', ':'), ('mAP(new,new)', '--')):
        if key in result['table']:
            ax1.axhline(result['table'][key], ls=style, color='grey', label=key)
    ax1.set(xlabel='backfilled fraction f', ylabel='mAP', title=title)
    ax2.set(xlabel='backfilled fraction f', ylabel='negative flip rate', title='NFR vs old system')
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    from mmkd_plugins.utils.safe_output import atomic_write
    ext = osp.splitext(path)[1].lstrip('.').lower() or 'png'
    try:
        with atomic_write(path, 'wb') as fh:   # an interrupted write leaves the old plot or none
            fig.savefig(fh, format=ext, dpi=100)
    finally:
        plt.close(fig)
    return path


@METRICS.register_module()
class HotRefreshMetric(BaseMetric):
    """Hot-refresh mAP / top-1 / NFR curve and cross-model mAP table from a compatible model's predictions.

    Each prediction (data sample) must carry ``new_emb`` and ``old_emb`` (the CompatibleDistiller's
    ``predict`` sets them), ``gt_label``, and optionally ``old_logits`` (uncertainty orders) and
    ``bict_emb`` (psi(old) gallery) with ``bict_objective`` (psi's training objective, which then names
    every BiCT key: ``mAP_new_bict_<objective>``, ``bict_<objective>_mAP@f...``). Every item is a query
    against all other items (leave-one-out) unless the samples carry a boolean ``is_query`` (then
    queries = is_query, gallery = the rest).

    Args:
        fractions: number of evenly spaced f in [0, 1] (int) or the list of f.
        order: backfill order ('random', 'entropy', 'least_confidence', 'margin', 'sequential').
        seed: seed of the random order.
        topk: AP@K (None: full ranking).
        num_queries: use only a seeded random subset of this many items as queries (the gallery stays
            complete); for large evaluation sets. None: every item is a query.
        plot_file: PNG path of the plot (needs matplotlib; skipped with a warning without it); relative
            paths are put next to the runner's log file (a fresh folder per run); None: no plot. An
            existing file that this metric did not write (e.g. an absolute path used by an earlier run)
            is refused unless ``overwrite``; the metric's own plot is refreshed at every evaluation.
        overwrite: replace an existing plot file this metric did not write.
        collect_device, prefix: see ``BaseMetric``.
    """
    default_prefix = 'hot_refresh'
    #: it scores a compatible pair's joint (new, old) predictions, never one model's: a teacher
    #: alone is scored without it (``mmkd_plugins.engine.loops.teacher_eval.evaluate_teacher``)
    scores_one_model = False

    def __init__(self,
                 fractions: Union[int, Sequence[float]] = 11,
                 order: str = 'random',
                 seed: int = 0,
                 topk: Optional[int] = None,
                 num_queries: Optional[int] = None,
                 plot_file: Optional[str] = 'hot_refresh.png',
                 overwrite: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self._outputs = RunOutputs('HotRefreshMetric', overwrite)
        if plot_file and osp.isabs(plot_file):   # relative ones go to the run's own log folder
            self._outputs.check(plot_file)
        if order not in _backfill.BACKFILL_ORDERS:
            raise ValueError(f'HotRefreshMetric: order must be one of {_backfill.BACKFILL_ORDERS}, '
                             f'got {order!r}')
        self.fractions = (list(np.linspace(0, 1, fractions)) if isinstance(fractions, int) else
                          [float(f) for f in fractions])
        if topk is not None and (not isinstance(topk, int) or topk < 1):
            raise ValueError(f'HotRefreshMetric: topk must be a positive int or None, got {topk!r}')
        self.order, self.seed, self.topk, self.plot_file = order, seed, topk, plot_file
        self.num_queries = num_queries
        self.last_result: Optional[Dict] = None
        self.last_plot: Optional[str] = None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            for key in ('new_emb', 'old_emb', 'gt_label'):
                if key not in ds:
                    raise KeyError(f'HotRefreshMetric: prediction without "{key}"; use a model whose predict '
                                   'returns new and old embeddings (type="CompatibleDistiller")')
            row = dict(new=torch.as_tensor(ds['new_emb']).float().cpu().reshape(-1),
                       old=torch.as_tensor(ds['old_emb']).float().cpu().reshape(-1),
                       label=int(torch.as_tensor(ds['gt_label']).reshape(-1)[0]),
                       is_query=bool(ds.get('is_query', True)))
            for key in ('old_logits', 'bict_emb'):
                if key in ds:
                    row[key] = torch.as_tensor(ds[key]).float().cpu().reshape(-1)
            if ds.get('bict_objective') is not None:
                row['bict_objective'] = str(ds['bict_objective'])
            self.results.append(row)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        new = torch.stack([r['new'] for r in results])
        old = torch.stack([r['old'] for r in results])
        labels = torch.tensor([r['label'] for r in results])
        isq = torch.tensor([r['is_query'] for r in results])
        if isq.all():   # leave-one-out
            q_idx, g_idx = torch.arange(len(results)), torch.arange(len(results))
        else:
            q_idx, g_idx = isq.nonzero()[:, 0], (~isq).nonzero()[:, 0]
        if self.num_queries is not None and self.num_queries < len(q_idx):
            rng = np.random.default_rng(self.seed)
            pick = np.sort(rng.choice(len(q_idx), self.num_queries, replace=False))
            q_idx = q_idx[torch.as_tensor(pick)]
        exclude = q_idx[:, None] == g_idx[None, :]   # a query never retrieves itself
        logits = (torch.stack([results[i]['old_logits'] for i in g_idx])
                  if all('old_logits' in r for r in results) else None)
        g_bict = (torch.stack([results[i]['bict_emb'] for i in g_idx])
                  if all('bict_emb' in r for r in results) else None)
        objectives = {r.get('bict_objective') for r in results} - {None}
        if len(objectives) > 1:
            raise ValueError(f'HotRefreshMetric: predictions mix BiCT objectives {sorted(objectives)}')
        order = _backfill.backfill_order(len(g_idx), self.order, logits, self.seed)
        res = hot_refresh_curve(new[q_idx], old[g_idx], new[g_idx], labels[q_idx], labels[g_idx], order,
                                self.fractions, q_old=old[q_idx], g_bict=g_bict,
                                exclude=exclude if exclude.any() else None, topk=self.topk,
                                bict_objective=objectives.pop() if objectives else None)
        self.last_result = res
        logger = MMLogger.get_current_instance()
        logger.info(f'hot-refresh evaluation ({self.order} backfill order, {len(q_idx)} queries, '
                    f'{len(g_idx)} gallery items)\n' + format_hot_refresh(res))
        if self.plot_file:
            path = self.plot_file
            log_file = getattr(logger, 'log_file', None)
            if not osp.isabs(path) and log_file:
                path = osp.join(osp.dirname(log_file), path)
            try:
                if osp.isabs(self.plot_file):   # a relative one is in this run's own log folder,
                    self._outputs.check(path)   # shared by its val and test metrics
                self.last_plot = plot_hot_refresh(res, path)
                self._outputs.add(path)
                logger.info(f'hot-refresh plot written to {self.last_plot}')
            except ImportError as err:   # the numbers do not need matplotlib
                logger.warning(f'hot-refresh plot skipped: {err}')
        out = {}
        for key, val in res['table'].items():   # BiCT keys carry the objective: mAP_new_bict_<objective>
            out[key.replace('(', '_').replace(',', '_').replace(')', '')] = float(val)
        for kind, rows in res['curves'].items():
            for r in rows:
                out[f'{kind}_mAP@f{r["f"]:.2f}'] = r['mAP']
                out[f'{kind}_NFR@f{r["f"]:.2f}'] = r['NFR']
        return out
