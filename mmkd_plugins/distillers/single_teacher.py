"""SingleTeacherDistiller: any OpenMMLab student + a frozen teacher + feature taps + losses."""
import copy
import re
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from .taps import FeatureTaps, TapError, find_module
from .teacher import build_frozen_teacher

_SOURCE = re.compile(r'^\s*(?:(?P<conn>\w+)\(\s*)?(?P<side>student|teacher)\.(?P<tap>\w+)'
                     r'(?(conn)\s*\))\s*$')
_SPECIAL_SOURCES = ('gt_labels', 'data_samples')
_TEACHER_FORWARDS = ('tensor', 'extract_feat', 'backbone', 'none')


class _TeacherDone(Exception):
    """Raised from a teacher hook once every teacher tap has fired: the rest is not needed."""


def gather_gt_labels(data_samples: Optional[List[Any]]) -> torch.Tensor:
    """Targets of classification data samples.

    Returns the stacked soft labels ``gt_score`` (N, C) when every sample carries one (mixup /
    cutmix), else the hard labels ``gt_label`` concatenated to (N,).
    """
    if not data_samples:
        raise ValueError('a loss asks for "gt_labels" but the batch has no data samples')
    if all('gt_score' in ds for ds in data_samples):
        return torch.stack([ds.gt_score for ds in data_samples])
    if all('gt_label' in ds for ds in data_samples):
        return torch.cat([ds.gt_label.reshape(-1)[:1] for ds in data_samples])
    raise ValueError('a loss asks for "gt_labels" but the data samples carry neither gt_score nor '
                     f'gt_label (got {type(data_samples[0]).__name__})')


@MODELS.register_module()
class SingleTeacherDistiller(BaseModel):
    """Distil a frozen teacher into a student, by config.

    Data flow of one training step::

        batch -> student's data_preprocessor -> teacher (no_grad, eval, up to its last tap)
              -> student forward in loss mode (its own task losses are kept)
              -> taps collect features -> connectors map student features
              -> each distillation loss gets its inputs by name -> ``distill.<loss name>`` keys

    ``predict`` and ``tensor`` modes are the student's, so upstream val/test loops and metrics work
    unchanged. The teacher is not a registered sub-module: it is never in ``state_dict()`` (so never
    in a checkpoint), never in ``parameters()`` (so never in the optimizer or DDP), and ``train()``
    never switches it out of eval mode. ``.to()`` / ``.cuda()`` / ``.half()`` still move it.

    Args:
        student: model config of the student (any registered model, usually the inherited
            upstream ``model``).
        teacher: teacher config file (``'mmdet::retinanet/...py'`` allowed) or model config dict.
            ``None`` for teacher-free training (then no loss may use ``teacher.*``).
        teacher_ckpt: checkpoint of the teacher (required when there is a teacher): a local file
            or any URL scheme of mmengine's ``CheckpointLoader`` (``https://``, ``open-mmlab://``,
            ``torchvision://``, ...; downloads are cached in ``$TORCH_HOME/hub/checkpoints``).
        teacher_forward: how far the teacher runs: ``'extract_feat'`` (backbone + neck of
            detectors / segmentors / classifiers), ``'backbone'``, ``'tensor'`` (the full forward
            without losses, e.g. to logits), or ``'none'``.
        teacher_stop_early: stop the teacher's forward as soon as every teacher tap has fired
            (correct when each tapped module runs once per forward; set False otherwise).
        student_taps / teacher_taps: ``{name: 'module.path' | dict(module, source, idx)}``.
        connectors: ``{name: cfg}`` of student-side adapters (trained with the student).
        distill_losses: ``{name: cfg}``; each cfg carries ``inputs=dict(arg=source)`` with sources
            ``'student.<tap>'``, ``'teacher.<tap>'``, ``'<connector>(student.<tap>)'``,
            ``'gt_labels'`` or ``'data_samples'``. Names must contain ``'loss'`` (mmengine only sums
            such keys).
        init_student: ``{student_module_path: teacher_module_path}`` copied from the teacher into the
            student by :meth:`init_weights` (e.g. ``dict(neck='neck', bbox_head='bbox_head')``).
        allow_random_teacher: accept ``teacher_ckpt=None`` (smoke tests only).
        teacher_unsafe_load: fully unpickle ``teacher_ckpt`` (only for a file you trust); by default
            it is loaded weights-only with the allowlist of mmengine checkpoints.
        data_preprocessor: merged into the student config when the student has none (the Runner
            passes the config's top-level ``data_preprocessor`` here); the distiller uses the
            student's data preprocessor.
    """

    _teacher_running = False

    def __init__(self,
                 student: Union[dict, nn.Module],
                 teacher: Union[str, dict, None] = None,
                 teacher_ckpt: Optional[str] = None,
                 teacher_forward: str = 'extract_feat',
                 teacher_stop_early: bool = True,
                 student_taps: Optional[dict] = None,
                 teacher_taps: Optional[dict] = None,
                 connectors: Optional[dict] = None,
                 distill_losses: Optional[dict] = None,
                 init_student: Optional[Dict[str, str]] = None,
                 allow_random_teacher: bool = False,
                 teacher_unsafe_load: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if isinstance(student, nn.Module):
            student_model = student
        else:
            student_cfg = copy.deepcopy(dict(student))
            if data_preprocessor is not None and student_cfg.get('data_preprocessor') is None:
                student_cfg['data_preprocessor'] = data_preprocessor
            student_model = MODELS.build(ConfigDict(student_cfg))  # attribute access, as in teacher.py
        super().__init__(init_cfg=init_cfg)
        self.student = student_model
        # one preprocessor, the student's: the Runner calls ``model.data_preprocessor``
        self.data_preprocessor = self.student.data_preprocessor

        if teacher_forward not in _TEACHER_FORWARDS:
            raise ValueError(f'teacher_forward must be one of {_TEACHER_FORWARDS}, got {teacher_forward!r}')
        self.teacher_forward = teacher_forward if teacher is not None else 'none'
        self.teacher_stop_early = teacher_stop_early
        self.__dict__['_teacher'] = (build_frozen_teacher(teacher, teacher_ckpt, allow_random_teacher,
                                                          teacher_unsafe_load)
                                     if teacher is not None else None)
        if self._teacher is None and teacher_taps:
            raise ValueError('teacher_taps are given but there is no teacher')

        self.student_taps = FeatureTaps(self.student, student_taps, 'student')
        self.student_taps.active = False  # switched on in loss() only
        self.teacher_taps = (FeatureTaps(self._teacher, teacher_taps, 'teacher',
                                         on_complete=self._teacher_complete)
                             if self._teacher is not None else None)

        self.connectors = nn.ModuleDict(
            {name: MODELS.build(cfg) for name, cfg in (connectors or {}).items()})
        self.distill_losses = nn.ModuleDict()
        self.loss_inputs: Dict[str, Dict[str, str]] = {}
        for name, cfg in (distill_losses or {}).items():
            if 'loss' not in name:
                raise ValueError(f'distill_losses key "{name}" must contain "loss": mmengine only '
                                 'sums log entries whose name contains "loss"')
            cfg = copy.deepcopy(dict(cfg))
            inputs = cfg.pop('inputs', None)
            if not inputs:
                raise ValueError(f'distill loss "{name}" needs inputs=dict(arg=source, ...)')
            for arg, source in inputs.items():
                self._check_source(name, arg, source)
            self.loss_inputs[name] = dict(inputs)
            self.distill_losses[name] = MODELS.build(cfg)
        self.init_student = dict(init_student or {})
        for s_path, t_path in self.init_student.items():
            find_module(self.student, s_path, 'student')
            if self._teacher is None:
                raise ValueError('init_student needs a teacher')
            find_module(self._teacher, t_path, 'teacher')
        self.distill_enabled = True

    # ------------------------------------------------------------------ teacher handling
    @property
    def teacher(self) -> Optional[nn.Module]:
        return self._teacher

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self._teacher is not None:
            self._teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if self._teacher is not None:
            self._teacher.eval()
        return self

    def _teacher_complete(self) -> None:
        if self.teacher_stop_early and self._teacher_running:
            raise _TeacherDone()

    def _check_source(self, loss: str, arg: str, source: str) -> None:
        if source in _SPECIAL_SOURCES:
            return
        m = _SOURCE.match(source)
        if m is None:
            raise ValueError(f'distill loss "{loss}", input "{arg}": cannot parse source {source!r}; '
                             'use "student.<tap>", "teacher.<tap>", "<connector>(student.<tap>)", '
                             f'or one of {_SPECIAL_SOURCES}')
        conn, side, tap = m.group('conn'), m.group('side'), m.group('tap')
        taps = self.student_taps.specs if side == 'student' else (
            self.teacher_taps.specs if self.teacher_taps is not None else {})
        if side == 'teacher' and self._teacher is None:
            raise ValueError(f'distill loss "{loss}" uses {source!r} but there is no teacher')
        if tap not in taps:
            raise TapError(f'distill loss "{loss}", input "{arg}": {side} has no tap "{tap}"; '
                           f'declared {side}_taps: {sorted(taps)}')
        if conn is not None and conn not in self.connectors:
            raise KeyError(f'distill loss "{loss}", input "{arg}": unknown connector "{conn}"; '
                           f'declared connectors: {sorted(self.connectors.keys())}')

    @torch.no_grad()
    def run_teacher(self, inputs: torch.Tensor, data_samples=None) -> Any:
        """Run the teacher as far as ``teacher_forward`` says (and no further than its last tap)."""
        teacher = self._teacher
        if teacher.training:
            teacher.eval()
        self.teacher_taps.clear()
        self._teacher_running = True
        try:
            if self.teacher_forward == 'tensor':
                return teacher(inputs, data_samples, mode='tensor')
            if self.teacher_forward == 'extract_feat':
                return teacher.extract_feat(inputs)
            if self.teacher_forward == 'backbone':
                return teacher.backbone(inputs)
        except _TeacherDone:
            return None
        finally:
            self._teacher_running = False
        return None

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    def loss(self, inputs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        distill = self.distill_enabled and len(self.distill_losses) > 0
        if distill and self._teacher is not None and self.teacher_forward != 'none':
            self.run_teacher(inputs, data_samples)
        self.student_taps.clear()
        self.student_taps.active = distill
        try:
            losses = self.student(inputs, data_samples, mode='loss')
            if distill:
                losses.update(self.compute_distill_losses(data_samples))
        finally:
            # recorded features are not kept past the step (nor recorded in predict mode)
            self.student_taps.active = False
            self.student_taps.clear()
            if self.teacher_taps is not None:
                self.teacher_taps.clear()
        return losses

    def _resolve(self, source: str, data_samples, cache: Dict[str, Any]) -> Any:
        if source in cache:
            return cache[source]
        if source == 'data_samples':
            value = data_samples
        elif source == 'gt_labels':
            value = gather_gt_labels(data_samples)
        else:
            m = _SOURCE.match(source)
            taps = self.student_taps if m.group('side') == 'student' else self.teacher_taps
            value = taps[m.group('tap')]
            if m.group('conn') is not None:
                value = self.connectors[m.group('conn')](value)
        cache[source] = value
        return value

    def compute_distill_losses(self, data_samples=None) -> Dict[str, torch.Tensor]:
        """Losses from the features recorded by the last teacher and student forwards."""
        cache: Dict[str, Any] = {}
        losses = {}
        for name, loss_module in self.distill_losses.items():
            kwargs = {arg: self._resolve(src, data_samples, cache)
                      for arg, src in self.loss_inputs[name].items()}
            value = loss_module(**kwargs)
            if isinstance(value, dict):
                for key, v in value.items():
                    losses[f'distill.{name}.{key}'] = v
            else:
                losses[f'distill.{name}'] = value
        return losses

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Initialise student and connectors, then copy ``init_student`` modules from the teacher."""
        if hasattr(self.student, 'init_weights'):
            self.student.init_weights()
        for connector in self.connectors.values():
            if hasattr(connector, 'init_weights'):
                connector.init_weights()
        for s_path, t_path in self.init_student.items():
            s_mod = find_module(self.student, s_path, 'student')
            t_mod = find_module(self._teacher, t_path, 'teacher')
            t_state = t_mod.state_dict()
            s_state = s_mod.state_dict()
            bad = sorted(set(t_state) ^ set(s_state)) + [
                k for k in t_state if k in s_state and t_state[k].shape != s_state[k].shape]
            if bad:
                raise ValueError(f'init_student: teacher "{t_path}" and student "{s_path}" differ in '
                                 f'parameters {bad[:10]}')
            s_mod.load_state_dict(t_state, strict=True)
