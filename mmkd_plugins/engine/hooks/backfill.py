"""Backfilling a gallery after a model upgrade: which items to re-embed first, and in which steps.

RACT's uncertainty-based backfilling re-embeds first the gallery items whose OLD embeddings are the most
uncertain, measured by the entropy of the old classifier's posterior p = softmax(logits_old):

    H_i = - sum_c p_ic log p_ic          (items sorted by decreasing H)

Other orders: ``'least_confidence'`` (increasing max_c p_ic), ``'margin'`` (increasing p_(1) - p_(2)),
``'random'`` (seeded permutation), ``'sequential'`` (stored order). Ties keep the stored order.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmkd_plugins.models.compatible.embed import extract_embeddings, subset_loader
from mmkd_plugins.models.compatible.embedding_io import VERSION_NEW, load_embeddings, save_embeddings
from mmkd_plugins.models.losses.compatible import match_dim
from mmkd_plugins.utils.safe_output import atomic_write

BACKFILL_ORDERS = ('entropy', 'least_confidence', 'margin', 'random', 'sequential')


def posterior_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (N,) of softmax(logits (N, C)), natural log."""
    if logits.dim() != 2:
        raise ValueError(f'logits must be (N, C), got shape {tuple(logits.shape)}')
    logp = torch.log_softmax(logits.double(), dim=1)
    return -(logp.exp() * logp).sum(1)


def uncertainty_scores(logits: torch.Tensor, order: str) -> torch.Tensor:
    """Uncertainty (N,) (larger = re-embed earlier) for the logit-based orders."""
    if order == 'entropy':
        return posterior_entropy(logits)
    prob = torch.softmax(logits.double(), dim=1)
    if order == 'least_confidence':
        return -prob.max(1).values
    if order == 'margin':
        top = prob.topk(min(2, prob.shape[1]), dim=1).values
        return -(top[:, 0] - (top[:, 1] if top.shape[1] > 1 else 0))
    raise ValueError(f'unknown uncertainty order {order!r}')


def backfill_order(num_items: int,
                   order: str = 'entropy',
                   logits: Optional[torch.Tensor] = None,
                   seed: int = 0) -> np.ndarray:
    """Permutation (num_items,) of gallery rows in the order they are re-embedded.

    Args:
        num_items: gallery size N.
        order: one of :data:`BACKFILL_ORDERS`.
        logits: (N, C) OLD classifier logits of the gallery items (needed by the uncertainty orders).
        seed: seed of the 'random' order.
    """
    if order not in BACKFILL_ORDERS:
        raise ValueError(f'backfill order must be one of {BACKFILL_ORDERS}, got {order!r}')
    if order == 'sequential':
        return np.arange(num_items)
    if order == 'random':
        return np.random.default_rng(seed).permutation(num_items)
    if logits is None:
        raise ValueError(f"backfill order {order!r} needs the old classifier's logits of the gallery "
                         '(extract the old gallery with logits, e.g. tools/extract_embeddings.py keeps '
                         'them when the model has a head)')
    if logits.shape[0] != num_items:
        raise ValueError(f'logits have {logits.shape[0]} rows for a gallery of {num_items} items')
    score = uncertainty_scores(logits, order).cpu().numpy()
    return np.argsort(-score, kind='stable')


def backfill_steps(order: Sequence[int], num_steps: int) -> List[np.ndarray]:
    """Split an order into ``num_steps`` consecutive chunks of (almost) equal size."""
    if num_steps < 1:
        raise ValueError(f'num_steps must be >= 1, got {num_steps}')
    return [np.asarray(c) for c in np.array_split(np.asarray(order), num_steps)]


def mix_gallery(old: torch.Tensor, new: torch.Tensor, order: Sequence[int], fraction: float
                ) -> torch.Tensor:
    """Gallery (N, D) in which the first ``round(fraction * N)`` items of ``order`` take their ``new`` row.

    ``old`` and ``new`` must have the same width (compare in one space; pad/truncate before if needed).
    """
    if old.shape != new.shape:
        raise ValueError(f'old gallery {tuple(old.shape)} and new gallery {tuple(new.shape)} differ in shape')
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f'fraction must be in [0, 1], got {fraction}')
    num = int(round(fraction * old.shape[0]))
    mixed = old.clone()
    idx = torch.as_tensor(np.asarray(order)[:num], dtype=torch.long)
    mixed[idx] = new[idx]
    return mixed


def write_schedule(path: str, order: np.ndarray, steps: List[np.ndarray], gallery_indices: torch.Tensor,
                   strategy: str) -> Dict:
    """Write the backfill schedule (dataset indices to re-embed per step) as JSON; returns it."""
    sched = dict(order=strategy, num_items=int(len(order)),
                 steps=[[int(gallery_indices[i]) for i in step] for step in steps])
    with atomic_write(path, 'w') as f:
        json.dump(sched, f)
    return sched


@HOOKS.register_module()
class BackfillHook(Hook):
    """Backfill a stored old gallery with the trained new model, in steps, when training ends.

    It reads an OLD gallery embedding file (see ``mmkd_plugins.models.compatible.embedding_io``), orders
    its rows with :func:`backfill_order`, and re-embeds them with the current model (the student of a
    distiller) in ``num_steps`` steps from the dataset of ``runner.test_dataloader`` (or
    ``runner.val_dataloader``), the dataset the gallery was extracted from (rows are matched by
    ``indices`` = ``sample_idx``); under DDP rank 0 does it. After each step it writes ``<out_dir>/gallery_step{k}.pth``, a mixed
    gallery with a per-row ``version`` flag, and ``<out_dir>/schedule.json``.

    Args:
        gallery_file: the old gallery embedding file (with old-classifier ``logits`` for the uncertainty
            orders).
        order: one of 'entropy' (default), 'least_confidence', 'margin', 'random', 'sequential'.
        num_steps: number of backfill steps.
        seed: seed of the random order.
        out_dir: output folder (default ``<work_dir>/backfill``).
        dataloader: 'test' or 'val': whose dataset holds the gallery images.

    To backfill with a trained checkpoint outside training use ``tools/backfill.py run``.
    """

    priority = 'LOW'

    def __init__(self,
                 gallery_file: str,
                 order: str = 'entropy',
                 num_steps: int = 10,
                 seed: int = 0,
                 out_dir: Optional[str] = None,
                 dataloader: str = 'test') -> None:
        if order not in BACKFILL_ORDERS:
            raise ValueError(f'BackfillHook: order must be one of {BACKFILL_ORDERS}, got {order!r}')
        if dataloader not in ('test', 'val'):
            raise ValueError(f"BackfillHook: dataloader must be 'test' or 'val', got {dataloader!r}")
        self.gallery_file, self.order, self.num_steps = gallery_file, order, num_steps
        self.seed, self.out_dir, self.dataloader = seed, out_dir, dataloader
        self.files: List[str] = []

    @master_only   # one process embeds the whole gallery and writes the files
    def after_train(self, runner) -> None:
        loader = getattr(runner, f'{self.dataloader}_dataloader')
        out_dir = self.out_dir or osp.join(runner.work_dir, 'backfill')
        self.files = backfill_gallery(runner.model, loader, self.gallery_file, out_dir, self.order,
                                      self.num_steps, self.seed, progress=False)
        runner.logger.info(f'BackfillHook: {self.order} order, {self.num_steps} steps -> {out_dir}')


def backfill_gallery(model,
                     dataloader,
                     gallery_file: str,
                     out_dir: str,
                     order: str = 'entropy',
                     num_steps: int = 10,
                     seed: int = 0,
                     progress: bool = True) -> List[str]:
    """Re-embed an old gallery with ``model`` in ``num_steps`` ordered steps; returns the written files.

    Each step's file holds the whole gallery: re-embedded rows (``version`` = 1) and the rows still old
    (``version`` as stored). See :class:`BackfillHook`.
    """
    gallery = load_embeddings(gallery_file)
    n = gallery['embeddings'].shape[0]
    size = len(dataloader.dataset)
    if n and int(gallery['indices'].max()) >= size:
        raise ValueError(f'{gallery_file}: the gallery refers to dataset index {int(gallery["indices"].max())} '
                         f'but the dataset has {size} items: is it the dataset the gallery came from?')
    perm = backfill_order(n, order, gallery.get('logits'), seed)
    steps = backfill_steps(perm, num_steps)
    os.makedirs(out_dir, exist_ok=True)
    write_schedule(osp.join(out_dir, 'schedule.json'), perm, steps, gallery['indices'], order)
    emb, version = None, gallery['version'].clone()
    files = []
    for k, rows in enumerate(steps, 1):
        if len(rows):
            new = extract_embeddings(model, subset_loader(dataloader, gallery['indices'][rows].tolist()),
                                     with_logits=False, progress=progress)
            if not torch.equal(new['indices'], gallery['indices'][rows]):
                raise RuntimeError('backfill: the dataset does not return the gallery rows in order '
                                   '(sample_idx mismatch): is it the dataset the gallery came from?')
            if gallery.get('labels') is not None and new.get('labels') is not None:
                differ = new['labels'] != gallery['labels'][rows]
                if differ.any():
                    raise ValueError(f'{gallery_file}: {int(differ.sum())} of the {len(rows)} re-embedded items '
                                     'have another label in the dataset than in the gallery (first: index '
                                     f'{int(new["indices"][differ][0])}): the gallery was extracted from '
                                     'another split or dataset')
            if emb is None:
                emb = match_dim(gallery['embeddings'], new['embeddings'].shape[1]).clone()
            emb[torch.as_tensor(rows)] = new['embeddings']
            version[torch.as_tensor(rows)] = VERSION_NEW
        path = osp.join(out_dir, f'gallery_step{k}.pth')
        save_embeddings(path, emb if emb is not None else gallery['embeddings'], gallery.get('labels'),
                        indices=gallery['indices'], version=version,
                        meta=dict(gallery['meta'], backfill_order=order, step=k, num_steps=num_steps))
        files.append(path)
    return files
