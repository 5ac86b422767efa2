"""Hooks that switch distillation off during training."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class StopDistillHook(Hook):
    """Turn the distillation losses off from ``stop_epoch`` (epoch-based) or ``stop_iter`` on.

    After that the student trains on its task losses only and the teacher is not run any more.
    Works through DDP wrappers.
    """

    def __init__(self, stop_epoch: Optional[int] = None, stop_iter: Optional[int] = None) -> None:
        if (stop_epoch is None) == (stop_iter is None):
            raise ValueError('StopDistillHook: give exactly one of stop_epoch or stop_iter')
        self.stop_epoch = stop_epoch
        self.stop_iter = stop_iter

    @staticmethod
    def _distiller(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'distill_enabled'):
            raise TypeError(f'StopDistillHook needs a distiller model, got {type(model).__name__}')
        return model

    def before_train_epoch(self, runner) -> None:
        if self.stop_epoch is not None and runner.epoch >= self.stop_epoch:
            self._distiller(runner).distill_enabled = False

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.stop_iter is not None and runner.iter >= self.stop_iter:
            self._distiller(runner).distill_enabled = False
