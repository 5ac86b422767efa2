"""One frozen teacher of a distiller: its model, taps, how far it runs and what inputs it sees.

A teacher either sees the student's preprocessed inputs (the default), or its own preprocessing of
the raw batch: ``data_preprocessor`` = a config dict, or ``'teacher'`` for the preprocessor of the
teacher's own config (its mean / std, channel order, padding). ``input_size`` then resizes the
teacher's inputs (bilinear) to the size it was trained at, e.g. 384 for a DeiT III-384 teacher of a
224 px student. When the student's preprocessor mixes the batch (Mixup / CutMix batch augments),
the same augments are replayed on the teacher's inputs with the random state the student used, so
the teacher sees the same mixing (same lambda, same permutation; a CutMix box at the same relative
place up to rounding).
"""
import random
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import MODELS

from .taps import FeatureTaps

TEACHER_FORWARDS = ('tensor', 'extract_feat', 'backbone', 'none')


class TeacherDone(Exception):
    """Raised from a teacher hook once every teacher tap has fired: the rest is not needed."""


def rng_state() -> Tuple[Any, Any, Any]:
    """The global random states batch augments draw from (python, numpy, torch CPU)."""
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def set_rng_state(state: Tuple[Any, Any, Any]) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


class RawBatchRecorder(nn.Module):
    """The distiller's ``data_preprocessor`` when a teacher preprocesses the raw batch itself.

    Calls the student's preprocessor (not registered here: its buffers stay under ``student.``) and,
    in training mode, keeps the raw batch and the random state from before the call, which the
    teachers' own preprocessing consumes (mmengine's ``train_step`` and its DDP wrapper both call
    ``model.data_preprocessor(data, True)`` right before the loss forward). Any other attribute is
    the student preprocessor's.
    """

    def __init__(self, student_preprocessor: nn.Module) -> None:
        super().__init__()
        self.__dict__['inner'] = student_preprocessor
        self.__dict__['last'] = None

    def forward(self, data: Any, training: bool = False) -> Any:
        if training:
            state = rng_state()
            out = self.inner(data, training)
            self.__dict__['last'] = (data, state, rng_state())
            return out
        return self.inner(data, training)

    def take(self) -> Optional[tuple]:
        """(raw batch, random state before, after) of the last training call, and forget it."""
        last, self.__dict__['last'] = self.__dict__['last'], None
        return last

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get('inner')
            if inner is None:  # during copy / unpickling, before __init__ ran
                raise
            return getattr(inner, name)


def _size2(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f'input_size must be an int or (H, W), got {size!r}')
    return int(size[0]), int(size[1])


class TeacherSlot:
    """A built frozen teacher with its taps (not an ``nn.Module``: nothing of it is registered).

    Args:
        name: '' for the single ``teacher=`` of a distiller, else the key in ``teachers=``.
        model: the frozen teacher.
        taps: its tap specs.
        forward: ``'tensor' | 'extract_feat' | 'backbone' | 'none'``.
        stop_early: stop the forward once every tap fired.
        data_preprocessor: None (the student's inputs), ``'teacher'`` or a preprocessor config.
        model_cfg: the teacher's model config (for the scope and ``'teacher'``).
        input_size: resize the teacher's preprocessed inputs to (H, W) (needs its own
            preprocessor).
    """

    def __init__(self, name: str, model: nn.Module, taps: Optional[dict], forward: str,
                 stop_early: bool = True, data_preprocessor: Union[None, str, dict] = None,
                 model_cfg: Optional[dict] = None,
                 input_size: Union[None, int, Sequence[int]] = None) -> None:
        label = f'teacher "{name}"' if name else 'teacher'
        if forward not in TEACHER_FORWARDS:
            raise ValueError(f'{label}: forward must be one of {TEACHER_FORWARDS}, got {forward!r}')
        self.name, self.label = name, label
        self.model = model
        self.forward = forward
        self.stop_early = stop_early
        self.running = False
        self.taps = FeatureTaps(model, taps, label.replace('"', ''), on_complete=self._complete)
        self.preprocessor = self._build_preprocessor(data_preprocessor, model_cfg or {})
        if input_size is not None and self.preprocessor is None:
            raise ValueError(f'{label}: input_size={input_size!r} needs the teacher\'s own '
                             "data_preprocessor (a config dict or 'teacher')")
        self.input_size = None if input_size is None else _size2(input_size)

    def _build_preprocessor(self, spec, model_cfg: dict) -> Optional[nn.Module]:
        if spec is None:
            return None
        if isinstance(spec, str):
            if spec != 'teacher':
                raise ValueError(f"{self.label}: data_preprocessor must be None, a config dict or "
                                 f"'teacher', got {spec!r}")
            if not model_cfg.get('data_preprocessor'):
                raise ValueError(f"{self.label}: data_preprocessor='teacher' but the teacher's "
                                 'config has no data_preprocessor')
            pre = self.model.data_preprocessor
        elif isinstance(spec, nn.Module):
            pre = spec
        else:
            cfg = dict(spec)
            if '_scope_' not in cfg and model_cfg.get('_scope_'):
                cfg['_scope_'] = model_cfg['_scope_']
            pre = MODELS.build(ConfigDict(cfg))
        # the teacher's own batch augments never run: the student's are replayed instead
        if getattr(pre, 'batch_augments', None) is not None:
            pre.batch_augments = None
        return pre

    def _complete(self) -> None:
        if self.stop_early and self.running:
            raise TeacherDone()

    # ------------------------------------------------------------------ inputs
    def own_inputs(self, raw: Optional[tuple], student_preprocessor: nn.Module) -> Tuple[Any, Any]:
        """Inputs and data samples of this teacher from the raw batch (its own preprocessing).

        Args:
            raw: ``(data, rng_state_before, rng_state_after)`` from :class:`RawBatchRecorder`.
            student_preprocessor: whose batch augments are replayed (same random state).
        """
        if raw is None:
            raise RuntimeError(
                f'{self.label} has its own data_preprocessor and needs the raw batch, but none was '
                'recorded: train through train_step (mmengine Runner), or call '
                'distiller.data_preprocessor(data, True) right before the loss forward')
        data, before, after = raw
        pre = self.preprocessor
        device = next(iter(self.model.parameters()), torch.empty(0)).device
        if hasattr(pre, '_device'):
            pre._device = device
        # data samples are copied: preprocessors write batch_input_shape / pad_shape into them
        samples = data.get('data_samples') if isinstance(data, dict) else None
        copied = dict(data)
        if samples is not None:
            copied['data_samples'] = [s.clone() if hasattr(s, 'clone') else s for s in samples]
        out = pre(copied, True)
        inputs, samples = out['inputs'], out.get('data_samples')
        if self.input_size is not None and tuple(inputs.shape[-2:]) != self.input_size:
            inputs = F.interpolate(inputs.float(), size=self.input_size, mode='bilinear',
                                   align_corners=False).to(inputs.dtype)
        augments = getattr(student_preprocessor, 'batch_augments', None)
        if augments is not None:
            set_rng_state(before)
            try:
                inputs = _replay(augments, inputs,
                                 _augment_targets(samples, inputs, student_preprocessor))
            finally:
                set_rng_state(after)
        return inputs, samples

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def run(self, inputs: Any, data_samples=None) -> Any:
        """Run the teacher as far as ``forward`` says (and no further than its last tap)."""
        model = self.model
        if model.training:
            model.eval()
        self.taps.clear()
        self.running = True
        try:
            if self.forward == 'tensor':
                return model(inputs, data_samples, mode='tensor')
            if self.forward == 'extract_feat':
                return model.extract_feat(inputs)
            if self.forward == 'backbone':
                return model.backbone(inputs)
        except TeacherDone:
            return None
        finally:
            self.running = False
        return None

    def apply(self, fn) -> None:
        """Apply a ``Module._apply`` function (``.to()``, ``.half()``) to the model and preprocessor."""
        self.model._apply(fn)
        if self.preprocessor is not None and self.preprocessor is not getattr(
                self.model, 'data_preprocessor', None):
            self.preprocessor._apply(fn)


def augment_list(augments: Any) -> list:
    """The individual batch augments of a preprocessor's ``batch_augments`` (None: none)."""
    if augments is None:
        return []
    if isinstance(augments, (list, tuple, nn.ModuleList)):
        return list(augments)
    return list(getattr(augments, 'augments', None) or [augments])


def _replay(augments: Any, inputs: torch.Tensor, targets: Any) -> torch.Tensor:
    """Apply the student's batch augments to the teacher's inputs (the mixed targets are dropped).

    mmpretrain keeps one callable (``RandomBatchAugment``), mmdet / mmseg a list applied in turn.
    """
    if isinstance(augments, (list, tuple, nn.ModuleList)):
        for aug in augments:
            inputs, targets = aug(inputs, targets)
        return inputs
    return augments(inputs, targets)[0]


def _augment_targets(samples, inputs, student_preprocessor):
    """What the student's batch augments take as their second argument.

    mmpretrain's ``RandomBatchAugment(inputs, batch_score)`` mixes (N, C) scores; the teacher's
    mixed scores are discarded and only the random draws matter, so (N, 1) zeros stand in. Other
    toolboxes' batch augments (mmdet, mmseg) take the data samples.
    """
    if type(student_preprocessor).__module__.startswith('mmpretrain'):
        return inputs.new_zeros(inputs.size(0), 1)
    return samples

