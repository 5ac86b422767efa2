"""Running an embedding model over a dataset (used by tools/extract_embeddings.py, tools/backfill.py and
:class:`~mmkd_plugins.engine.hooks.BackfillHook`).

An embedding model is an mmpretrain-style classifier: ``extract_feat(inputs)`` gives the embedding (the
last element when it is a tuple, global-average-pooled when it is a feature map) and ``head(feats)`` gives
the classifier logits. A distiller (anything with a ``student`` attribute) is embedded by its student.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn


def unwrap_student(model: nn.Module) -> nn.Module:
    """The embedding model inside DDP wrappers / distillers."""
    model = getattr(model, 'module', model)
    return getattr(model, 'student', model)


def embed_batch(model: nn.Module, inputs: torch.Tensor, with_logits: bool = True
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Embeddings (N, D) and (optionally) classifier logits (N, C) of preprocessed ``inputs``."""
    model = unwrap_student(model)
    if not hasattr(model, 'extract_feat'):
        raise TypeError(f'{type(model).__name__} has no extract_feat(): an mmpretrain-style classifier '
                        '(backbone + neck + head) is expected')
    feats = model.extract_feat(inputs)
    emb = feats[-1] if isinstance(feats, (tuple, list)) else feats
    if emb.dim() == 4:
        emb = emb.mean(dim=(2, 3))
    logits = None
    head = getattr(model, 'head', None)
    if with_logits and head is not None:
        out = head(feats)
        logits = out[-1] if isinstance(out, (tuple, list)) else out
    return emb, logits


def _labels_and_indices(data_samples: Sequence, start: int) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
    labels, indices = [], []
    for k, ds in enumerate(data_samples):
        gt = getattr(ds, 'gt_label', None) if not isinstance(ds, dict) else ds.get('gt_label')
        labels.append(None if gt is None else int(torch.as_tensor(gt).reshape(-1)[0]))
        meta = ds.metainfo if hasattr(ds, 'metainfo') else ds
        indices.append(int(meta.get('sample_idx', start + k)))
    lab = None if any(v is None for v in labels) else torch.tensor(labels, dtype=torch.long)
    return lab, torch.tensor(indices, dtype=torch.long)


@torch.no_grad()
def extract_embeddings(model: nn.Module,
                       dataloader,
                       with_logits: bool = True,
                       progress: bool = True) -> Dict[str, torch.Tensor]:
    """Embed every item of ``dataloader`` (batches as produced by an mmengine dataloader).

    Returns:
        dict with ``embeddings`` (N, D), ``indices`` (N,) (the dataset's ``sample_idx``), and
        ``labels`` (N,) / ``logits`` (N, C) when available.
    """
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(dataloader.dataset))
    embs, logits, labels, indices = [], [], [], []
    count = 0
    for batch in dataloader:
        data = model.data_preprocessor(batch, False)
        emb, logit = embed_batch(model, data['inputs'], with_logits)
        lab, idx = _labels_and_indices(data['data_samples'], count)
        embs.append(emb.float().cpu())
        indices.append(idx)
        if logit is not None:
            logits.append(logit.float().cpu())
        labels.append(lab)
        count += emb.shape[0]
        if bar is not None:
            for _ in range(emb.shape[0]):
                bar.update()
    if progress:
        print()
    model.train(was_training)
    out = dict(embeddings=torch.cat(embs), indices=torch.cat(indices))
    if logits:
        out['logits'] = torch.cat(logits)
    if all(lab is not None for lab in labels):
        out['labels'] = torch.cat(labels)
    return out


def subset_loader(dataloader, indices: Sequence[int], batch_size: Optional[int] = None):
    """A non-shuffled loader over ``dataloader.dataset[indices]`` with the same collate function.

    ``sample_idx`` in the items keeps referring to the full dataset, so rows stay identifiable.
    """
    from torch.utils.data import DataLoader, Subset
    return DataLoader(Subset(dataloader.dataset, list(int(i) for i in indices)),
                      batch_size=batch_size or dataloader.batch_size or 1,
                      shuffle=False,
                      num_workers=0,
                      collate_fn=dataloader.collate_fn)
