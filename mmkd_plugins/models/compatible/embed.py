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


def subset_loader(dataloader, indices: Sequence[int], batch_size: Optional[int] = None,
                  num_workers: int = 0):
    """A non-shuffled loader over ``dataloader.dataset[indices]`` with the same collate function
    (``num_workers`` loader processes).

    ``sample_idx`` in the items keeps referring to the full dataset, so rows stay identifiable.
    """
    from torch.utils.data import DataLoader, Subset
    return DataLoader(Subset(dataloader.dataset, list(int(i) for i in indices)),
                      batch_size=batch_size or dataloader.batch_size or 1,
                      shuffle=False,
                      num_workers=num_workers,
                      collate_fn=dataloader.collate_fn)


_DISTILLERS = ('CompatibleDistiller', 'SingleTeacherDistiller')


def load_config(config):
    """An mmengine Config from a path (or Config), with ``mmkd_plugins`` imported and the scope set."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmkd_plugins  # noqa: F401  (registration)
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return cfg


def build_embedding_model(config, checkpoint: Optional[str], device: str = 'cpu') -> nn.Module:
    """The embedding model of a config, weights from ``checkpoint``, in eval mode.

    For a distiller config (``CompatibleDistiller`` / ``SingleTeacherDistiller``) the student's config is
    used; a distiller checkpoint (keys ``student.*``) is read as the student's weights.
    """
    import copy

    from mmengine.registry import MODELS

    from mmkd_plugins.distillers.teacher import read_state_dict
    from mmkd_plugins.utils.checkpoint_files import check_checkpoint_file
    from mmkd_plugins.utils.checkpoint_match import DISTILLER_PREFIXES, check_state_dict_matches
    cfg = load_config(config)
    model_cfg = copy.deepcopy(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model))
    if model_cfg.get('type') in _DISTILLERS:
        model_cfg = model_cfg['student']
    if model_cfg.get('data_preprocessor') is None and cfg.get('data_preprocessor') is not None:
        model_cfg['data_preprocessor'] = copy.deepcopy(dict(cfg.data_preprocessor))
    model_cfg.pop('init_cfg', None)
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        check_checkpoint_file(checkpoint)
        state = read_state_dict(checkpoint)
        if state and all(k.startswith(DISTILLER_PREFIXES) for k in state):
            state = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
        check_state_dict_matches(model.state_dict(), state, checkpoint, strict=True, hint=None)
        model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def build_split_dataloader(config, split: str = 'test', batch_size: Optional[int] = None):
    """The config's ``<split>_dataloader`` (train / val / test), unshuffled."""
    import copy

    from mmengine.runner import Runner
    cfg = load_config(config)
    key = f'{split}_dataloader'
    if cfg.get(key) is None:
        raise KeyError(f'the config has no {key}')
    loader_cfg = copy.deepcopy(cfg[key].to_dict() if hasattr(cfg[key], 'to_dict') else dict(cfg[key]))
    loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
    if batch_size is not None:
        loader_cfg['batch_size'] = batch_size
    loader_cfg['num_workers'] = 0
    loader_cfg.pop('persistent_workers', None)
    return Runner.build_dataloader(loader_cfg)
