"""Evaluate a distiller's frozen teacher with the run's own (upstream) evaluator.

Shared by :class:`DistillValLoop` (the teacher's metric logged during training) and ``mmkd-doctor``
(the teacher's metric on the first validation batches against ``teacher_expected``).
"""
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn


def teacher_input_preprocessor(distiller: nn.Module, spec: Any = None) -> nn.Module:
    """The data preprocessor the distiller feeds its teacher with.

    ``spec`` is the config's ``teacher_data_preprocessor`` (``None``: the student's, as the
    distiller does by default; ``'teacher'``: the teacher config's own; a dict: that config). A
    preprocessor module the distiller holds as ``teacher_data_preprocessor`` wins over ``spec``.
    """
    slots = getattr(distiller, 'teacher_slots', None)  # SingleTeacherDistiller's built teachers
    if isinstance(slots, dict) and len(slots) == 1:
        slot = next(iter(slots.values()))
        return slot.preprocessor if slot.preprocessor is not None else distiller.data_preprocessor
    own = getattr(distiller, 'teacher_data_preprocessor', None)
    if isinstance(own, nn.Module):
        return own
    if spec is None and isinstance(own, (str, dict)):
        spec = own
    if spec is None:
        return distiller.data_preprocessor
    if spec == 'teacher':
        return distiller.teacher.data_preprocessor
    if isinstance(spec, dict):
        from mmengine.registry import MODELS
        return MODELS.build(dict(spec))
    raise ValueError('teacher_data_preprocessor must be None, "teacher" or a data preprocessor '
                     f'config dict, got {spec!r}')


def _batches(dataloader: Iterable, max_batches: Optional[int]):
    for idx, batch in enumerate(dataloader):
        if max_batches is not None and idx >= max_batches:
            return
        yield batch


class NoTeacherMetric(ValueError):
    """The run's evaluator has no metric that scores one model's predictions."""


def one_model_metrics(evaluator) -> list:
    """The evaluator's metrics that score a single model's predictions: a metric with
    ``scores_one_model = False`` (``HotRefreshMetric``: a compatible pair's joint new / old
    embeddings) is left out when a teacher is scored alone."""
    return [m for m in getattr(evaluator, 'metrics', None) or []
            if getattr(m, 'scores_one_model', True)]


@torch.no_grad()
def evaluate_teacher(teacher: nn.Module, preprocessor: nn.Module, dataloader: Iterable,
                     evaluator, max_batches: Optional[int] = None) -> Tuple[Dict[str, Any], int]:
    """Run ``teacher`` in predict mode over ``dataloader`` and score it with ``evaluator``.

    The evaluator's accumulated results are consumed (``evaluate`` resets them), so call this
    between, not during, other uses of the same evaluator. Metrics that score a pair's joint
    predictions (:func:`one_model_metrics`) are left out; :class:`NoTeacherMetric` when none is
    left. Returns ``(metrics, samples seen)``.
    """
    every = getattr(evaluator, 'metrics', None)
    kept = one_model_metrics(evaluator)
    if every and not kept:
        raise NoTeacherMetric(
            'no metric of the evaluator scores one model alone (' + ', '.join(
                type(m).__name__ for m in every) + ' score the distiller\'s joint predictions)')
    was_training = teacher.training
    teacher.eval()
    seen = 0
    if every:
        evaluator.metrics = kept
    try:
        for batch in _batches(dataloader, max_batches):
            data = preprocessor(batch, False)
            outputs = teacher(**data, mode='predict')
            evaluator.process(data_samples=outputs, data_batch=batch)
            seen += len(outputs)
        if seen == 0:
            raise ValueError('evaluate_teacher: the dataloader gave no batch')
        return evaluator.evaluate(seen), seen
    finally:
        teacher.train(was_training)
        if every:
            evaluator.metrics = every


def prefixed(metrics: Dict[str, Any], prefix: str = 'teacher/') -> Dict[str, Any]:
    """``{'accuracy/top1': 98.2}`` -> ``{'teacher/accuracy/top1': 98.2}``."""
    return {f'{prefix}{k}': v for k, v in metrics.items()}


def teachers_of(distiller: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``[(name, teacher module)]``: ``('teacher', ...)`` for a single teacher, one entry per
    teacher when the distiller holds several (a ``teachers`` mapping), ``[]`` without teacher."""
    many = getattr(distiller, 'teachers', None)  # SingleTeacherDistiller: '' = the single teacher
    if isinstance(many, dict) or isinstance(many, nn.ModuleDict):
        return [(str(k) or 'teacher', v) for k, v in many.items() if isinstance(v, nn.Module)]
    single = getattr(distiller, 'teacher', None)
    return [('teacher', single)] if isinstance(single, nn.Module) else []
