"""Frame-skip curriculum for VOS training clips."""
import math
from typing import Optional, Sequence

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


def swem_skip(iteration: int, max_iters: int, max_skip: int, ramp_end: float = 0.1,
              decay: Sequence[float] = (0.8, 0.9), final_ratio: float = 0.4) -> int:
    """The official SWEM frame-skip schedule (``FrameSkipper`` of lmm077/SWEM) for one dataset.

    With ``s0 = int(ramp_end * max_iters)``, ``(s1, s2) = int(decay * max_iters)`` and
    ``final = max(1, floor(final_ratio * max_skip))``:

    * ``it <= s1``: ``min(floor(max_skip * it / s0), max_skip)`` (linear ramp 0 -> max_skip over the
      first 10 %, then flat);
    * ``it > s1``: ``max(max_skip - floor((max_skip - final) * (it - s1) / (s2 - s1)), final)``
      (linear decay to 40 % of the peak between 80 % and 90 %, then flat).
    """
    s0, s1, s2 = int(max_iters * ramp_end), int(max_iters * decay[0]), int(max_iters * decay[1])
    final = max(1, int(math.floor(max_skip * final_ratio + 1e-9)))
    if iteration <= s1:
        if s0 <= 0:
            return max_skip
        return int(min((max_skip * iteration) // s0, max_skip))
    if s2 <= s1:
        return min(final, max_skip)
    return int(max(max_skip - ((max_skip - final) * (iteration - s1)) // (s2 - s1), final))


@HOOKS.register_module()
class VOSFrameSkipHook(Hook):
    """Frame-skip curriculum: sets ``cur_skip`` of every :class:`VOSDataset` in the training data.

    ``policy='swem'`` (default, the official SWEM schedule): each dataset follows :func:`swem_skip`
    up to its own ``max_skip`` (official: DAVIS 25, YouTube-VOS 5): ramp up from 0 over the first
    ``ramp_end`` (10 %) of training, hold, and decay to ``final_ratio`` (40 %) of the peak between
    ``decay`` = 80 % and 90 %.

    ``policy='steps'``: one piecewise-constant value for all datasets; ``max_skips[i]`` is used from
    ``milestones[i-1]`` on (``max_skips[0]`` from the start); milestones <= 1 are fractions of
    ``max_iters``, larger ones are iterations (e.g. STCN's 10 -> 15 at 10 % -> 5 at 30 % -> 5 at 80 %).

    ``cur_skip`` is the number of frames that may be skipped between neighbouring clip frames (a gap
    of ``cur_skip + 1``). It lives in shared memory, so running DataLoader workers see the change.
    """
    priority = 'NORMAL'

    def __init__(self, policy: str = 'swem', ramp_end: float = 0.1,
                 decay: Sequence[float] = (0.8, 0.9), final_ratio: float = 0.4,
                 milestones: Optional[Sequence[float]] = None,
                 max_skips: Optional[Sequence[int]] = None) -> None:
        if policy not in ('swem', 'steps'):
            raise ValueError(f'VOSFrameSkipHook: policy must be "swem" or "steps", got {policy!r}')
        if policy == 'steps':
            if milestones is None or max_skips is None or len(max_skips) != len(milestones) + 1:
                raise ValueError('VOSFrameSkipHook(policy="steps"): need milestones and max_skips '
                                 'with len(max_skips) == len(milestones) + 1')
        elif milestones is not None or max_skips is not None:
            raise ValueError('VOSFrameSkipHook: milestones / max_skips belong to policy="steps"')
        if not 0 <= ramp_end <= decay[0] <= decay[1]:
            raise ValueError(f'VOSFrameSkipHook: need 0 <= ramp_end <= decay[0] <= decay[1], got '
                             f'{ramp_end}, {tuple(decay)}')
        self.policy, self.ramp_end, self.decay, self.final_ratio = (policy, ramp_end, tuple(decay),
                                                                    final_ratio)
        self.milestones = list(milestones or [])
        self.max_skips = list(max_skips or [])

    def skip_at(self, iteration: int, max_iters: int, max_skip: Optional[int] = None) -> int:
        """``cur_skip`` at ``iteration`` for a dataset whose peak is ``max_skip``."""
        if self.policy == 'swem':
            if max_skip is None:
                raise ValueError('VOSFrameSkipHook.skip_at: policy "swem" needs max_skip')
            return swem_skip(iteration, max_iters, max_skip, self.ramp_end, self.decay,
                             self.final_ratio)
        value = self.max_skips[0]
        for m, s in zip(self.milestones, self.max_skips[1:]):
            at = m * max_iters if m <= 1 else m
            if iteration >= at:
                value = s
        return value

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        for ds in _iter_datasets(runner.train_dataloader.dataset):
            if isinstance(ds, VOSDataset):
                value = self.skip_at(runner.iter, runner.max_iters, ds.max_skip)
                if ds.cur_skip != value:
                    ds.cur_skip = value
