"""Frame-skip curriculum for VOS training clips."""
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...datasets.vos import VOSDataset


def _iter_datasets(ds):
    yield ds
    for attr in ('datasets', ):
        for sub in getattr(ds, attr, []) or []:
            yield from _iter_datasets(sub)
    if hasattr(ds, 'dataset'):
        yield from _iter_datasets(ds.dataset)


@HOOKS.register_module()
class VOSFrameSkipHook(Hook):
    """Frame-skip curriculum: sets ``max_skip`` of every :class:`VOSDataset` in the training data.

    ``max_skips[i]`` is used from ``milestones[i-1]`` on (``max_skips[0]`` from the start). Milestones
    <= 1 are fractions of ``max_iters``, larger ones are iterations. The default follows STCN/SWEM
    practice: 10 -> 15 at 10% -> 5 at 30% -> 5 at 80%. The value lives in shared memory, so running
    DataLoader workers see the change.
    """
    priority = 'NORMAL'

    def __init__(self, milestones: Sequence[float] = (0.1, 0.3, 0.8),
                 max_skips: Sequence[int] = (10, 15, 5, 5)) -> None:
        if len(max_skips) != len(milestones) + 1:
            raise ValueError('VOSFrameSkipHook: need len(max_skips) == len(milestones) + 1')
        self.milestones, self.max_skips = list(milestones), list(max_skips)

    def skip_at(self, iteration: int, max_iters: int) -> int:
        value = self.max_skips[0]
        for m, s in zip(self.milestones, self.max_skips[1:]):
            at = m * max_iters if m <= 1 else m
            if iteration >= at:
                value = s
        return value

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        value = self.skip_at(runner.iter, runner.max_iters)
        for ds in _iter_datasets(runner.train_dataloader.dataset):
            if isinstance(ds, VOSDataset) and ds.max_skip != value:
                ds.max_skip = value
