"""UniBCT: recompute the structurally refined old prototypes with the current new model at set epochs.

At the start of each epoch in ``epochs`` (0-based, as ``runner.epoch``; reference: 10 and 20 of 25), the
whole training set is embedded by the frozen old model (teacher) and the current new model (student),
without shuffling, and :func:`~mmkd_plugins.models.compatible.structural_prototypes` (per class:
E = column softmax of f f^T / T without self edges, O' = (1 - lambda)(I - lambda E)^-1 O, p_c = mean O')
gives the prototypes P of every :class:`~mmkd_plugins.models.losses.UniBCTLoss` of the model. The term
is 0 until the first refresh, so the reference's "compatibility term from epoch 10" is ``epochs=(10, 20)``.

Under DDP the classes are shared out between ranks (class c on rank c mod world_size): each rank embeds
only the samples of its classes and computes their prototypes, then the (C, D_old) results are summed
over ranks. Per-class work only; nothing of size C x C.
"""
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmkd_plugins.models.compatible.embed import embed_batch, subset_loader
from mmkd_plugins.models.compatible.prototypes import EDGE_SOFTMAX, structural_prototypes


def _unibct_losses(model) -> List:
    from mmkd_plugins.models.losses.compatible import UniBCTLoss
    model = getattr(model, 'module', model)
    return [m for m in model.modules() if isinstance(m, UniBCTLoss)]


@torch.no_grad()
def embed_old_and_new(model, loader) -> dict:
    """Old (teacher) and new (student) embeddings and labels of every item of ``loader``.

    ``model`` is a :class:`~mmkd_plugins.models.compatible.CompatibleDistiller` (or a DDP wrapper of one);
    both models run in eval mode, the student's training mode is restored afterwards.
    """
    from mmkd_plugins.models.compatible.embed import _labels_and_indices
    distiller = getattr(model, 'module', model)
    student, teacher = distiller.student, distiller.teacher
    was_training = student.training
    student.eval()
    teacher.eval()
    olds, news, labels = [], [], []
    try:
        for batch in loader:
            data = distiller.data_preprocessor(batch, False)
            new, _ = embed_batch(student, data['inputs'], with_logits=False)
            old, _ = embed_batch(teacher, data['inputs'], with_logits=False)
            lab, _ = _labels_and_indices(data['data_samples'], 0)
            if lab is None:
                raise ValueError('UniBCTPrototypeHook: training samples without gt_label')
            olds.append(old.float())
            news.append(new.float())
            labels.append(lab.to(old.device))
    finally:
        student.train(was_training)
    if not olds:
        return dict(old=None, new=None, labels=None)
    return dict(old=torch.cat(olds), new=torch.cat(news), labels=torch.cat(labels))


@HOOKS.register_module()
class UniBCTPrototypeHook(Hook):
    """Set the UniBCT prototypes from the current new model at the start of the given epochs.

    Args:
        epochs: 0-based epochs at whose start the prototypes are (re)computed (reference: (10, 20) of 25;
            the term is off before the first).
        lam: lambda of the propagation (0.9).
        temperature: T of the edge softmax (0.05).
        edge_softmax: 'column' (paper / reference) or 'row'.
        batch_size: batch size of the embedding pass (default: the train dataloader's).
        num_workers: loader processes of the embedding pass.

    The pass runs over the training dataset with its own pipeline, unshuffled (as the reference, which
    embeds its training loader without shuffling).
    """

    priority = 'NORMAL'

    def __init__(self,
                 epochs: Sequence[int] = (10, 20),
                 lam: float = 0.9,
                 temperature: float = 0.05,
                 edge_softmax: str = 'column',
                 batch_size: Optional[int] = None,
                 num_workers: int = 0) -> None:
        if not epochs or any(int(e) < 0 for e in epochs):
            raise ValueError(f'UniBCTPrototypeHook: epochs must be a non-empty list of epochs >= 0, got '
                             f'{epochs!r}')
        if edge_softmax not in EDGE_SOFTMAX:
            raise ValueError(f'UniBCTPrototypeHook: edge_softmax must be one of {EDGE_SOFTMAX}, '
                             f'got {edge_softmax!r}')
        self.epochs = sorted(int(e) for e in epochs)
        self.lam, self.temperature, self.edge_softmax = lam, temperature, edge_softmax
        self.batch_size, self.num_workers = batch_size, num_workers

    def before_train(self, runner) -> None:
        if not _unibct_losses(runner.model):
            raise ValueError('UniBCTPrototypeHook: the model has no UniBCTLoss')

    def before_train_epoch(self, runner) -> None:
        if runner.epoch in self.epochs:
            self.refresh(runner.model, runner.train_dataloader)
            runner.logger.info(f'UniBCTPrototypeHook: prototypes recomputed with the new model at the start '
                               f'of epoch {runner.epoch + 1}')

    def refresh(self, model, dataloader) -> torch.Tensor:
        """Compute the prototypes over ``dataloader.dataset`` and set them in every UniBCTLoss."""
        from mmkd_plugins.datasets.compatible_splits import dataset_labels
        losses = _unibct_losses(model)
        if not losses:
            raise ValueError('UniBCTPrototypeHook: the model has no UniBCTLoss')
        num_classes = losses[0].num_classes
        labels = dataset_labels(dataloader.dataset)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f'UniBCTPrototypeHook: training labels outside [0, {num_classes})')
        rank, world = dist.get_rank(), dist.get_world_size()
        mine = np.nonzero(labels % world == rank)[0]
        emb = embed_old_and_new(model, subset_loader(dataloader, mine.tolist(), self.batch_size,
                                                        self.num_workers))
        device = next(getattr(model, 'module', model).parameters()).device
        if emb['old'] is not None:
            protos, valid = structural_prototypes(emb['old'], emb['new'], emb['labels'], num_classes,
                                                  self.lam, self.temperature, self.edge_softmax)
            dim = torch.tensor([protos.shape[1]], device=device)
        else:
            protos, valid, dim = None, None, torch.zeros(1, dtype=torch.long, device=device)
        if world > 1:
            dist.all_reduce(dim, op='max')   # ranks without classes still take part
            if protos is None:
                protos = torch.zeros(num_classes, int(dim), device=device)
                valid = torch.zeros(num_classes, dtype=torch.bool, device=device)
            protos, counts = protos.to(device), valid.to(device).float()
            dist.all_reduce(protos)
            dist.all_reduce(counts)
            valid = counts > 0
        if protos is None:
            raise ValueError('UniBCTPrototypeHook: the training set is empty')
        for loss in losses:
            loss.set_prototypes(protos, valid)
        return protos
