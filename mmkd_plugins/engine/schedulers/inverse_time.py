"""Inverse-time learning-rate decay used to train AdaIN: ``lr_k = lr_0 / (1 + decay * k)``.

mmengine has no such scheduler; this one is registered into mmengine's root ``PARAM_SCHEDULERS``
(``dict(type='InverseTimeLR', decay=5e-5, by_epoch=False)``).
"""
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS

__all__ = ['InverseTimeParamScheduler', 'InverseTimeLR', 'inverse_time_factor']


def inverse_time_factor(step: int, decay: float) -> float:
    """Multiplier of the initial value after ``step`` steps: ``1 / (1 + decay * step)``."""
    return 1.0 / (1.0 + decay * step)


@PARAM_SCHEDULERS.register_module()
class InverseTimeParamScheduler(_ParamScheduler):
    """Decay a parameter as ``v_k = v_0 / (1 + decay * k)``, ``k`` = steps since ``begin``
    (mmengine counts ``last_step`` inside ``[begin, end)`` only).

    Implemented in chainable form (``v_k = v_{k-1} (1 + decay (k-1)) / (1 + decay k)``) so it
    composes with other schedulers like mmengine's own.

    Args:
        optimizer: optimizer or optimizer wrapper.
        param_name: parameter to schedule, e.g. ``'lr'``.
        decay: decay rate per step (AdaIN: 5e-5 per iteration).
        begin / end / last_step / by_epoch / verbose: as in mmengine's schedulers.
    """

    def __init__(self,
                 optimizer,
                 param_name: str,
                 decay: float,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False) -> None:
        if decay < 0:
            raise ValueError(f'decay must be >= 0, got {decay}')
        self.decay = float(decay)
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, decay: float, begin: int = 0, end: int = INF,
                              by_epoch: bool = True, epoch_length: int = None, **kwargs):
        """An iteration-based instance of an epoch-based config (``convert_to_iter_based=True``).

        ``begin`` / ``end`` are scaled by ``epoch_length`` and the decay becomes
        ``decay / epoch_length`` per iteration, so ``v_i = v_0 / (1 + decay * i / epoch_length)``:
        at every epoch boundary the same value as the epoch-based schedule, smooth in between.
        """
        if not by_epoch:
            raise ValueError('build_iter_from_epoch converts epoch-based configs only '
                             '(by_epoch=True)')
        if epoch_length is None or epoch_length <= 0:
            raise ValueError(f'epoch_length must be a positive integer, got {epoch_length}')
        begin = int(begin * epoch_length)
        if end != INF:
            end = int(end * epoch_length)
        return cls(*args, decay=decay / epoch_length, begin=begin, end=end, by_epoch=False,
                   **kwargs)

    def _get_value(self) -> list:
        k = self.last_step  # steps taken inside [begin, end)
        if k <= 0:
            return [group[self.param_name] for group in self.optimizer.param_groups]
        ratio = inverse_time_factor(k, self.decay) / inverse_time_factor(k - 1, self.decay)
        return [group[self.param_name] * ratio for group in self.optimizer.param_groups]


@PARAM_SCHEDULERS.register_module()
class InverseTimeLR(LRSchedulerMixin, InverseTimeParamScheduler):
    """Learning-rate version of :class:`InverseTimeParamScheduler`."""
