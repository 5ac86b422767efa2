"""The embedding file shared by the compatible-upgrade tools, hook and metric.

An embedding file is a ``torch.save``-d dict (``.pth``):

=================  ======================================================================================
``embeddings``     FloatTensor (N, D), one row per gallery / query item (not normalised)
``labels``         LongTensor (N,) class ids, or absent
``logits``         FloatTensor (N, C) classifier outputs of the model that made the embeddings, optional
                   (used by uncertainty-based backfilling: old-classifier posterior entropy)
``indices``        LongTensor (N,) index of each row in the dataset it was extracted from
``version``        LongTensor (N,) per row: 0 = old model, 1 = new model, 2 = old upgraded by BiCT
``meta``           dict of strings / numbers (model config, checkpoint, ...)
=================  ======================================================================================

Reading and writing validate the file: every row key has N rows, ``embeddings`` is (N, D) and finite (a NaN
or infinite row would be ranked as if it were an embedding); the errors name the file and the rows. Rows of
two files are matched by ``indices`` (:func:`align_rows`), and rows with the same index must carry the
same label: files of different splits share indices 0..N-1, so matching by index alone would pair
different images. Files are written atomically (temporary file, then rename).
"""
import os.path as osp
from typing import Dict, Optional

import torch

from mmkd_plugins.utils.safe_output import atomic_torch_save

VERSION_OLD, VERSION_NEW, VERSION_BICT = 0, 1, 2
VERSION_NAMES = {VERSION_OLD: 'old', VERSION_NEW: 'new', VERSION_BICT: 'bict'}
_ROW_KEYS = ('embeddings', 'labels', 'logits', 'indices', 'version')


def save_embeddings(path: str,
                    embeddings: torch.Tensor,
                    labels: Optional[torch.Tensor] = None,
                    logits: Optional[torch.Tensor] = None,
                    indices: Optional[torch.Tensor] = None,
                    version: Optional[torch.Tensor] = None,
                    meta: Optional[dict] = None) -> Dict:
    """Validate and write an embedding file; returns the saved dict."""
    if embeddings.dim() != 2:
        raise ValueError(f'embeddings must be (N, D), got shape {tuple(embeddings.shape)}')
    n = embeddings.shape[0]
    data = dict(embeddings=embeddings.detach().cpu().float(),
                indices=torch.arange(n) if indices is None else torch.as_tensor(indices).long().cpu(),
                version=(torch.zeros(n, dtype=torch.long)
                         if version is None else torch.as_tensor(version).long().cpu()),
                meta=dict(meta or {}))
    if labels is not None:
        data['labels'] = torch.as_tensor(labels).long().cpu()
    if logits is not None:
        data['logits'] = logits.detach().cpu().float()
    _validate(data, path)
    atomic_torch_save(data, path)
    return data


def _rows(mask: torch.Tensor) -> str:
    rows = torch.nonzero(mask).reshape(-1).tolist()
    return f'{len(rows)} rows ({", ".join(map(str, rows[:5]))}{", ..." if len(rows) > 5 else ""})'


def _validate(data: Dict, path: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get('embeddings'), torch.Tensor):
        raise ValueError(f'{path}: not an embedding file (a dict with an "embeddings" tensor expected)')
    emb = data['embeddings']
    if emb.dim() != 2:
        raise ValueError(f'{path}: "embeddings" must be (N, D), got shape {tuple(emb.shape)}')
    n = emb.shape[0]
    for key in _ROW_KEYS[1:]:
        if key in data and data[key] is not None and data[key].shape[0] != n:
            raise ValueError(f'{path}: "{key}" has {data[key].shape[0]} rows but "embeddings" has {n}')
    for key in ('embeddings', 'logits'):
        value = data.get(key)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            bad = ~torch.isfinite(value).reshape(n, -1).all(1)
            if bad.any():
                raise ValueError(f'{path}: "{key}" has NaN or infinite values in {_rows(bad)}')


def load_embeddings(path: str) -> Dict:
    """Read and validate an embedding file (missing ``indices`` / ``version`` are filled in)."""
    from mmkd_plugins.utils.checkpoint_files import check_checkpoint_file
    if not osp.isfile(path):
        raise FileNotFoundError(f'embedding file not found: {path}')
    check_checkpoint_file(path, 'embedding file')
    data = torch.load(path, map_location='cpu', weights_only=True)
    _validate(data, path)
    n = data['embeddings'].shape[0]
    data.setdefault('indices', torch.arange(n))
    data.setdefault('version', torch.zeros(n, dtype=torch.long))
    data.setdefault('meta', {})
    return data


def align_rows(ref: Dict, other: Dict, name: str = 'file') -> Dict:
    """``other`` with its rows reordered to ``ref``'s rows, matched by dataset index (``indices``).

    Raises KeyError naming ``name`` when ``other`` lacks one of ``ref``'s items, and ValueError when rows
    with the same index have different labels (the files come from different splits or datasets).
    """
    if torch.equal(ref['indices'], other['indices']):
        aligned = other
    else:
        pos = {int(i): k for k, i in enumerate(other['indices'])}
        missing = [int(i) for i in ref['indices'] if int(i) not in pos]
        if missing:
            raise KeyError(f'{name} lacks {len(missing)} of the reference items (dataset indices '
                           f'{missing[:5]}...)')
        sel = torch.tensor([pos[int(i)] for i in ref['indices']], dtype=torch.long)
        aligned = {k: (v[sel] if k in _ROW_KEYS and v is not None else v) for k, v in other.items()}
    if ref.get('labels') is not None and aligned.get('labels') is not None:
        differ = ref['labels'] != aligned['labels']
        if differ.any():
            first = int(torch.nonzero(differ)[0])
            raise ValueError(f'{name}: {int(differ.sum())} of {differ.numel()} items with the same dataset '
                             f'index have another label (index {int(ref["indices"][first])}: label '
                             f'{int(aligned["labels"][first])} vs {int(ref["labels"][first])}): the files '
                             'come from different splits or datasets')
    return aligned


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean embedding (C, D); rows of absent classes are zero."""
    sums = embeddings.new_zeros(num_classes, embeddings.shape[1]).index_add_(0, labels, embeddings)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).to(embeddings)
    return sums / counts[:, None]


def class_means_from_file(path: str, num_classes: int) -> torch.Tensor:
    """Class prototypes (C, D) from a labelled embedding file."""
    data = load_embeddings(path)
    if 'labels' not in data:
        raise ValueError(f'{path}: prototypes need labels, the file has none')
    if int(data['labels'].max()) >= num_classes:
        raise ValueError(f'{path}: label {int(data["labels"].max())} >= num_classes={num_classes}')
    return class_means(data['embeddings'], data['labels'], num_classes)
