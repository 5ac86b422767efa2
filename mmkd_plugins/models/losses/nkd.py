"""NKD (Normalized Knowledge Distillation) and teacher-free tf-NKD (arXiv 2208.10139).

The math lives in two pure functions, :func:`nkd_loss` and :func:`tf_nkd_loss`; the registered
modules are thin wrappers:

* :class:`NKDLoss` -- distillation from a teacher's logits (used through a distiller);
* :class:`TfNKDLoss` -- the teacher-free variant on the student's own logits;
* :class:`TaskLossWithTfNKD` -- a classification loss for mmpretrain heads that returns
  ``task loss (e.g. CE) + tf-NKD``, so a plain ``ImageClassifier`` gets tf-NKD by changing
  ``model.head.loss`` only (no distiller, no teacher).

Neither NKD loss contains the task cross-entropy: it stays the head's.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor

__all__ = ['nkd_loss', 'tf_nkd_loss', 'TF_NKD_BATCH_MEANS', 'NKDLoss', 'TfNKDLoss',
           'TaskLossWithTfNKD']

_REDUCTIONS = ('none', 'mean', 'sum')


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == 'mean':
        return per_sample.mean()
    if reduction == 'sum':
        return per_sample.sum()
    return per_sample


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}')


def _check_logits(logits: Tensor, name: str) -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f'{name} must be a (N, C) tensor of class logits, got {shape}')


def _hard_labels(target: Tensor, num_samples: int, num_classes: int) -> Tensor:
    """Class indices (N,) from hard labels (N,) / (N, 1) or soft labels (N, C) (argmax)."""
    if not isinstance(target, Tensor):
        raise TypeError(f'target must be a tensor, got {type(target).__name__}')
    if target.dim() == 2 and target.size(1) == num_classes and target.is_floating_point():
        labels = target.argmax(dim=1)
    elif target.dim() == 1 or (target.dim() == 2 and target.size(1) == 1):
        if target.is_floating_point():
            raise ValueError('hard-label target must hold integer class indices, got dtype '
                             f'{target.dtype}; soft labels must be shaped (N, C)')
        labels = target.reshape(-1)
    else:
        raise ValueError(f'target must be class indices (N,) or soft labels (N, C={num_classes}),'
                         f' got shape {tuple(target.shape)}')
    if labels.numel() != num_samples:
        raise ValueError(f'target has {labels.numel()} samples but the logits have '
                         f'{num_samples}')
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f'target class indices must lie in [0, {num_classes - 1}], got range '
                         f'[{int(labels.min())}, {int(labels.max())}]')
    return labels.long()


def nkd_loss(student_logits: Tensor,
             teacher_logits: Tensor,
             target: Tensor,
             tau: float = 1.0,
             gamma: float = 1.5,
             reduction: str = 'mean') -> Tensor:
    r"""Normalized KD loss ``L_t + L_nt`` (without the task CE).

    With :math:`p = \mathrm{softmax}(z_s)`, :math:`q = \mathrm{softmax}(z_t)` and the ground-truth
    class :math:`t` (argmax of soft labels under mixup/cutmix):

    .. math::
        L_t = -\,\mathrm{sg}(q_t) \log p_t, \qquad
        L_{nt} = -\gamma \tau^2 \sum_{i \ne t} \hat q_i \log \hat p_i,

    where :math:`\hat p = \mathrm{softmax}(z_s^{\setminus t}/\tau)` and
    :math:`\hat q = \mathrm{softmax}(z_t^{\setminus t}/\tau)` are taken over the ``C - 1``
    non-target classes (column ``t`` removed). The teacher gets no gradient.

    Args:
        student_logits: (N, C) student logits.
        teacher_logits: (N, C) teacher logits.
        target: (N,) class indices, or (N, C) soft labels (then ``t = argmax``).
        tau: temperature of the non-target part.
        gamma: weight of the non-target part.
        reduction: ``'mean'`` over samples (the paper), ``'sum'`` or ``'none'`` (shape (N,)).

    Returns:
        Scalar (or (N,) with ``reduction='none'``) ``L_t + L_nt``.
    """
    _check_reduction(reduction)
    _check_logits(student_logits, 'student_logits')
    _check_logits(teacher_logits, 'teacher_logits')
    if student_logits.shape != teacher_logits.shape:
        raise ValueError('NKD needs student and teacher logits of the same shape (N, C), got '
                         f'student {tuple(student_logits.shape)} and teacher '
                         f'{tuple(teacher_logits.shape)}')
    n, c = student_logits.shape
    if c < 2:
        raise ValueError(f'NKD needs at least 2 classes, got C={c}')
    labels = _hard_labels(target, n, c)
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)

    idx = labels.view(n, 1)
    log_p = F.log_softmax(student_logits, dim=1)
    q = F.softmax(teacher_logits, dim=1)
    loss_t = -q.gather(1, idx).squeeze(1) * log_p.gather(1, idx).squeeze(1)

    keep = torch.ones_like(student_logits, dtype=torch.bool).scatter_(1, idx, False)
    zs_nt = student_logits[keep].view(n, c - 1)
    zt_nt = teacher_logits[keep].view(n, c - 1)
    log_p_nt = F.log_softmax(zs_nt / tau, dim=1)
    q_nt = F.softmax(zt_nt / tau, dim=1)
    loss_nt = -gamma * tau**2 * (q_nt * log_p_nt).sum(dim=1)
    return _reduce(loss_t + loss_nt, reduction)


def _top_labels(target: Tensor, num_samples: int, num_classes: int) -> Tuple[Tensor, Tensor]:
    """Label indices (N, K) and values (N, K): K=1 for hard labels, top-2 of soft labels.

    The top 2 come from a stable descending sort, so ties (e.g. the zeros of an un-mixed sample)
    resolve to the lowest class index, on every device (the official code's ``torch.sort`` is not
    guaranteed stable).
    """
    if isinstance(target, Tensor) and target.dim() == 2 and target.size(1) == num_classes \
            and target.is_floating_point():
        if target.size(0) != num_samples:
            raise ValueError(f'target has {target.size(0)} samples but the logits have '
                             f'{num_samples}')
        if num_classes < 2:
            raise ValueError('tf-NKD with soft labels needs at least 2 classes')
        values, labels = torch.sort(target, dim=1, descending=True, stable=True)
        return labels[:, :2], values[:, :2]
    labels = _hard_labels(target, num_samples, num_classes).view(-1, 1)
    return labels, torch.ones(labels.shape, dtype=torch.float32, device=labels.device)


TF_NKD_BATCH_MEANS = ('all', 'labelled')


def _check_batch_mean(batch_mean: str) -> None:
    if batch_mean not in TF_NKD_BATCH_MEANS:
        raise ValueError(f'batch_mean must be one of {TF_NKD_BATCH_MEANS}, got {batch_mean!r}')


def tf_nkd_loss(student_logits: Tensor,
                target: Tensor,
                reduction: str = 'mean',
                batch_mean: str = 'all') -> Tensor:
    r"""Teacher-free NKD loss (without the task CE).

    With :math:`y = \mathrm{softmax}(z_s)`, labels :math:`t_k` with values :math:`v_k` (``K = 1``,
    ``v = 1`` for hard labels; the top-2 entries of mixup/cutmix soft labels):

    .. math::
        w_{n,k} = \mathrm{sg}\big(y_{n,t_k} + v_{n,k} - \bar y_k\big),\quad
        w_{n,k} = 0 \text{ where } v_{n,k} = 0, \qquad
        L = -\frac{1}{N} \sum_n \sum_k w_{n,k} \log y_{n, t_k}.

    The batch mean :math:`\bar y_k` of :math:`y_{n,t_k}` is, for each k:

    * ``batch_mean='all'`` (default, the official code): over all N samples,
      :math:`\bar y_k = \frac{1}{N}\sum_n y_{n,t_k}`, including samples whose :math:`v_{n,k} = 0`
      (their own weight is then zeroed);
    * ``batch_mean='labelled'``: over the samples whose :math:`v_{n,k} \ne 0` only. A sample without
      a second label (e.g. mixup of an image with itself) has no meaningful :math:`t_2` (``topk``
      breaks the tie among zeros arbitrarily), so here it does not shift the mean of the others.

    With hard labels (all :math:`v = 1`) both are the plain batch mean.

    Args:
        student_logits: (N, C) logits.
        target: (N,) class indices or (N, C) soft labels.
        reduction: ``'mean'`` over samples (the paper), ``'sum'`` or ``'none'`` (shape (N,)).
        batch_mean: ``'all'`` (official) or ``'labelled'``; see above.

    Returns:
        Scalar (or (N,) with ``reduction='none'``).
    """
    _check_reduction(reduction)
    _check_batch_mean(batch_mean)
    _check_logits(student_logits, 'student_logits')
    n, c = student_logits.shape
    labels, values = _top_labels(target, n, c)
    values = values.to(student_logits.dtype)
    log_y = F.log_softmax(student_logits, dim=1).gather(1, labels)  # (N, K)
    with torch.no_grad():
        y = log_y.exp()
        valid = (values != 0).to(y.dtype)
        if batch_mean == 'all':
            mean_y = y.mean(dim=0, keepdim=True)
        else:
            mean_y = (y * valid).sum(dim=0, keepdim=True) / valid.sum(dim=0,
                                                                     keepdim=True).clamp(min=1)
        w = (y + values - mean_y) * valid
    return _reduce(-(w * log_y).sum(dim=1), reduction)


@MODELS.register_module()
class NKDLoss(nn.Module):
    """Normalized KD loss on logits (registered as ``'NKDLoss'``); see :func:`nkd_loss`.

    Args:
        tau: temperature of the non-target part (ImageNet CNNs/DeiT 1.0, CIFAR-100 3.0).
        gamma: weight of the non-target part (ImageNet CNNs 1.5, DeiT 1.0, CIFAR-100 3.5).
        loss_weight: multiplies the whole loss.
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'``.
    """

    def __init__(self,
                 tau: float = 1.0,
                 gamma: float = 1.5,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        _check_reduction(reduction)
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        self.tau = tau
        self.gamma = gamma
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, target: Tensor) -> Tensor:
        """Args: student/teacher logits (N, C); target (N,) indices or (N, C) soft labels."""
        return self.loss_weight * nkd_loss(student_logits, teacher_logits, target, self.tau,
                                           self.gamma, self.reduction)

    def extra_repr(self) -> str:
        return f'tau={self.tau}, gamma={self.gamma}, loss_weight={self.loss_weight}'


@MODELS.register_module()
class TfNKDLoss(nn.Module):
    """Teacher-free NKD loss (registered as ``'TfNKDLoss'``); see :func:`tf_nkd_loss`.

    Args:
        loss_weight: multiplies the loss (the method itself has no hyper-parameter).
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'``.
        batch_mean: over which samples the batch mean of ``y_t`` is taken with soft labels:
            ``'all'`` (default, the official code) or ``'labelled'`` (only samples whose label
            value is non-zero); see :func:`tf_nkd_loss`.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean',
                 batch_mean: str = 'all') -> None:
        super().__init__()
        _check_reduction(reduction)
        _check_batch_mean(batch_mean)
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.batch_mean = batch_mean

    def forward(self, student_logits: Tensor, target: Tensor) -> Tensor:
        """Args: student logits (N, C); target (N,) indices or (N, C) soft labels."""
        return self.loss_weight * tf_nkd_loss(student_logits, target, self.reduction,
                                              self.batch_mean)

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}, batch_mean={self.batch_mean!r}'


@MODELS.register_module()
class TaskLossWithTfNKD(nn.Module):
    """``task_loss(cls_score, target) + tf_nkd_weight * tf-NKD`` for an mmpretrain head.

    mmpretrain heads (``LinearClsHead``, ``VisionTransformerClsHead``, ...) call one loss module as
    ``loss_module(cls_score, target, avg_factor=..., **kwargs)`` where ``target`` is the stacked
    ``gt_score`` (soft labels under mixup/cutmix) or the concatenated ``gt_label``. This module
    keeps the head's own loss (``task_loss``, built from its config, e.g. ``CrossEntropyLoss`` or
    ``LabelSmoothLoss``) and adds tf-NKD, so any classifier config gains tf-NKD with::

        model = dict(head=dict(loss=dict(
            _delete_=True, type='TaskLossWithTfNKD',
            task_loss=dict(type='CrossEntropyLoss', loss_weight=1.0))))

    The head logs the sum as ``loss``; the two parts are kept in :attr:`last_losses` (detached) for
    inspection.

    Args:
        task_loss: config (built in mmpretrain's registry) or module of the head's task loss.
        tf_nkd_weight: weight of the tf-NKD term.
        batch_mean: ``'all'`` (default, official) or ``'labelled'``; see :func:`tf_nkd_loss`.
    """

    def __init__(self,
                 task_loss: Union[dict, nn.Module] = dict(type='CrossEntropyLoss',
                                                          loss_weight=1.0),
                 tf_nkd_weight: float = 1.0,
                 batch_mean: str = 'all') -> None:
        super().__init__()
        if isinstance(task_loss, nn.Module):
            self.task_loss = task_loss
        elif isinstance(task_loss, dict):
            from mmkd_plugins.utils import require
            require('mmpretrain', 'TaskLossWithTfNKD (builds the mmpretrain task loss)')
            from mmpretrain.registry import MODELS as PRETRAIN_MODELS
            # build in mmpretrain's scope whatever the run's default scope is (an mmdet or
            # mmengine scope would otherwise pick another 'CrossEntropyLoss' or none)
            task_loss = dict(task_loss)
            task_loss.setdefault('_scope_', 'mmpretrain')
            self.task_loss = PRETRAIN_MODELS.build(task_loss)
        else:
            raise TypeError('task_loss must be a loss config dict or an nn.Module, got '
                            f'{type(task_loss).__name__}')
        self.tf_nkd = TfNKDLoss(loss_weight=tf_nkd_weight, batch_mean=batch_mean)
        self.last_losses: dict = {}

    def forward(self,
                cls_score: Tensor,
                target: Tensor,
                avg_factor: Optional[float] = None,
                **kwargs) -> Tensor:
        """Task loss (called like the head calls its loss) plus tf-NKD on ``cls_score``."""
        task = self.task_loss(cls_score, target, avg_factor=avg_factor, **kwargs)
        tf = self.tf_nkd(cls_score, target)
        self.last_losses = dict(task=task.detach(), tf_nkd=tf.detach())
        return task + tf
