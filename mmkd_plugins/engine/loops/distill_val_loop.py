"""A validation loop that also scores the distiller's teacher and logs ``teacher/<metric>``."""
from typing import Any, Dict, Optional

from mmengine.model import is_model_wrapper
from mmengine.registry import LOOPS
from mmengine.runner import ValLoop

from .teacher_eval import evaluate_teacher, prefixed, teacher_input_preprocessor, teachers_of

_MODES = ('once', 'always', 'never')


@LOOPS.register_module()
class DistillValLoop(ValLoop):
    """mmengine's ``ValLoop`` plus the teacher's own metric, beside the student's.

    With ``evaluate_teacher='once'`` the frozen teacher is scored by the same (upstream) evaluator
    on the same validation data at the first validation, before the student; its metrics are added
    to every validation's result as ``teacher/<metric>`` (so the logger, ``scalars.json`` and the
    visualiser backends show e.g. ``teacher/accuracy/top1`` next to ``accuracy/top1``).
    ``'always'`` re-scores it at every validation (a teacher is frozen: only useful when its
    inputs change), ``'never'`` is the plain ``ValLoop``. Several teachers log
    ``teacher.<name>/<metric>``. The teacher gets the inputs it gets in training (the student's
    data preprocessor unless the distiller has one for the teacher).

    Config::

        val_cfg = dict(type='DistillValLoop', evaluate_teacher='once')

    Args:
        evaluate_teacher: 'once' | 'always' | 'never'.
        teacher_max_batches: score the teacher on the first N batches only (``None``: all).
        Other arguments: those of ``ValLoop``.
    """

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False,
                 evaluate_teacher: str = 'once', teacher_max_batches: Optional[int] = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        if evaluate_teacher not in _MODES:
            raise ValueError(f'DistillValLoop: evaluate_teacher must be one of {_MODES}, got '
                             f'{evaluate_teacher!r}')
        self.evaluate_teacher = evaluate_teacher
        self.teacher_max_batches = teacher_max_batches
        self.teacher_metrics: Optional[Dict[str, Any]] = None

    def _model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def score_teachers(self) -> Dict[str, Any]:
        """Every teacher's metrics, prefixed ``teacher/`` (or ``teacher.<name>/``)."""
        model = self._model()
        teachers = teachers_of(model)
        if not teachers:
            raise ValueError('DistillValLoop(evaluate_teacher=...) needs a model with a teacher '
                             f'(got {type(model).__name__}); use the plain ValLoop')
        spec = getattr(getattr(self.runner, 'cfg', None), 'model', {}) or {}
        spec = spec.get('teacher_data_preprocessor') if hasattr(spec, 'get') else None
        out = {}
        for name, teacher in teachers:
            if len(teachers) == 1:
                preprocessor = teacher_input_preprocessor(model, spec)
            else:
                slot = (getattr(model, 'teacher_slots', None) or {}).get(name)
                own = slot.preprocessor if slot is not None else None
                preprocessor = own if own is not None else model.data_preprocessor
            metrics, _ = evaluate_teacher(teacher, preprocessor, self.dataloader, self.evaluator,
                                          self.teacher_max_batches)
            out.update(prefixed(metrics, 'teacher/' if len(teachers) == 1 else f'teacher.{name}/'))
        return out

    def run(self) -> dict:
        """Score the teacher (when due), then validate the student; both metrics are returned and
        logged together."""
        if self.evaluate_teacher == 'never':
            return super().run()
        if self.evaluate_teacher == 'always' or self.teacher_metrics is None:
            # before the student's pass: the evaluator holds no student results yet
            self.teacher_metrics = self.score_teachers()
        original = self.evaluator.evaluate

        def evaluate_with_teacher(size: int) -> dict:
            metrics = original(size)
            metrics.update(self.teacher_metrics)
            return metrics

        self.evaluator.evaluate = evaluate_with_teacher
        try:
            return super().run()
        finally:
            del self.evaluator.evaluate  # back to the class method
