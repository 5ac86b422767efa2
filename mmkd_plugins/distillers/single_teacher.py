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
from .teacher import build_frozen_teacher, load_model_config, with_scope_of_type
from .teacher_slot import TEACHER_FORWARDS, RawBatchRecorder, TeacherSlot, augment_list

# student.<tap> | teacher.<tap> | teacher.<name>.<tap>, optionally inside <connector>( ... )
_SOURCE = re.compile(r'^\s*(?:(?P<conn>\w+)\(\s*)?(?P<side>student|teacher)\.'
                     r'(?:(?P<tname>\w+)\.)?(?P<tap>\w+)(?(conn)\s*\))\s*$')
_SPECIAL_SOURCES = ('gt_labels', 'data_samples')
_TEACHER_FORWARDS = TEACHER_FORWARDS
_TEACHER_KEYS = ('config', 'ckpt', 'forward', 'taps', 'data_preprocessor', 'input_size',
                 'unsafe_load', 'allow_random', 'stop_early')


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
    """Distil one or several frozen teachers into a student, by config.

    Data flow of one training step::

        raw batch -> student's data_preprocessor -> each teacher (no_grad, eval, up to its last tap;
              on the student's inputs, or on its own preprocessing of the raw batch)
              -> student forward in loss mode (its own task losses are kept)
              -> taps collect features -> connectors map features
              -> each distillation loss gets its inputs by name -> ``distill.<loss name>`` keys

    ``predict`` and ``tensor`` modes are the student's, so upstream val/test loops and metrics work
    unchanged. No teacher is a registered sub-module: none is ever in ``state_dict()`` (so never in
    a checkpoint), in ``parameters()`` (so never in the optimizer or DDP), and ``train()`` never
    switches one out of eval mode. ``.to()`` / ``.cuda()`` / ``.half()`` still move them.

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
        teacher_data_preprocessor: None (the teacher sees the student's preprocessed inputs), a
            preprocessor config, or ``'teacher'`` (the ``data_preprocessor`` of the teacher's own
            config): applied to the raw batch for the teacher (mean / std, channel order,
            padding of the teacher); the student's batch augments (Mixup / CutMix) are replayed
            on it with the same random draws.
        teacher_input_size: (H, W) or int: the teacher's preprocessed inputs are resized
            (bilinear) to it, e.g. 384 for a DeiT III-384 teacher (needs
            ``teacher_data_preprocessor``).
        teachers: several teachers, ``{name: dict(config=..., ckpt=..., forward='extract_feat',
            taps={...}, data_preprocessor=None, input_size=None, unsafe_load=False,
            allow_random=False, stop_early=True)}``; their features are ``teacher.<name>.<tap>``.
            Excludes ``teacher=`` / ``teacher_taps=``.
        connectors: ``{name: cfg}`` of adapters: trained with the student when used on student
            features; parameter-free ones (``FeatureResample``) also on teacher features.
        distill_losses: ``{name: cfg}``; each cfg carries ``inputs=dict(arg=source)`` with sources
            ``'student.<tap>'``, ``'teacher.<tap>'``, ``'teacher.<name>.<tap>'``,
            ``'<connector>(<one of those>)'``, ``'gt_labels'`` or ``'data_samples'``. Names must
            contain ``'loss'`` (mmengine only sums such keys).
        init_student: ``{student_module_path: teacher_module_path}`` copied from the teacher into the
            student by :meth:`init_weights` (e.g. ``dict(neck='neck', bbox_head='bbox_head')``);
            with several teachers the teacher path starts with the teacher's name (``'t1.neck'``).
        allow_random_teacher: accept ``teacher_ckpt=None`` (smoke tests only).
        teacher_unsafe_load: fully unpickle ``teacher_ckpt`` (only for a file you trust); by default
            it is loaded weights-only with the allowlist of mmengine checkpoints.
        data_preprocessor: merged into the student config when the student has none (the Runner
            passes the config's top-level ``data_preprocessor`` here); the distiller uses the
            student's data preprocessor.
    """

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
                 teacher_data_preprocessor: Union[None, str, dict] = None,
                 teacher_input_size: Union[None, int, tuple, list] = None,
                 teachers: Optional[Dict[str, dict]] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if isinstance(student, nn.Module):
            student_model = student
        else:
            student_cfg = with_scope_of_type(copy.deepcopy(dict(student)))
            if data_preprocessor is not None and student_cfg.get('data_preprocessor') is None:
                student_cfg['data_preprocessor'] = data_preprocessor
            student_model = MODELS.build(ConfigDict(student_cfg))  # attribute access, as in teacher.py
        super().__init__(init_cfg=init_cfg)
        self.student = student_model
        # one preprocessor, the student's: the Runner calls ``model.data_preprocessor``
        self.data_preprocessor = self.student.data_preprocessor

        if teacher_forward not in _TEACHER_FORWARDS:
            raise ValueError(f'teacher_forward must be one of {_TEACHER_FORWARDS}, got {teacher_forward!r}')
        self.__dict__['_slots'] = self._build_teachers(
            teacher, teacher_ckpt, teacher_forward, teacher_stop_early, teacher_taps,
            allow_random_teacher, teacher_unsafe_load, teacher_data_preprocessor,
            teacher_input_size, teachers)
        if any(slot.preprocessor is not None for slot in self._slots.values()):
            self._check_batch_augments()
            self.data_preprocessor = RawBatchRecorder(self.student.data_preprocessor)

        self.student_taps = FeatureTaps(self.student, student_taps, 'student')
        self.student_taps.active = False  # switched on in loss() only

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
            if not self._slots:
                raise ValueError('init_student needs a teacher')
            self._init_source(t_path)
        self.distill_enabled = True

    # ------------------------------------------------------------------ teacher handling
    @staticmethod
    def _build_teachers(teacher, ckpt, forward, stop_early, taps, allow_random, unsafe_load,
                        preprocessor, input_size, teachers) -> Dict[str, TeacherSlot]:
        if teachers:
            given = [k for k, v in dict(teacher=teacher, teacher_ckpt=ckpt, teacher_taps=taps,
                                        teacher_data_preprocessor=preprocessor,
                                        teacher_input_size=input_size).items() if v]
            if given:
                raise ValueError(f'give either teachers=dict(name=dict(...)) or the single-teacher '
                                 f'arguments, not both (also given: {given})')
            slots = {}
            for name, spec in teachers.items():
                if not re.fullmatch(r'[A-Za-z_]\w*', name):
                    raise ValueError(f'teachers: name {name!r} must be an identifier (it is used '
                                     'in sources "teacher.<name>.<tap>")')
                spec = dict(spec)
                unknown = sorted(set(spec) - set(_TEACHER_KEYS))
                if unknown or 'config' not in spec:
                    raise ValueError(f'teachers["{name}"]: needs "config"; unknown keys {unknown}; '
                                     f'allowed: {list(_TEACHER_KEYS)}')
                slots[name] = SingleTeacherDistiller._slot(
                    name, spec['config'], spec.get('ckpt'), spec.get('forward', 'extract_feat'),
                    spec.get('stop_early', True), spec.get('taps'), spec.get('allow_random', False),
                    spec.get('unsafe_load', False), spec.get('data_preprocessor'),
                    spec.get('input_size'))
            return slots
        if teacher is None:
            if taps:
                raise ValueError('teacher_taps are given but there is no teacher')
            if preprocessor is not None or input_size is not None:
                raise ValueError('teacher_data_preprocessor / teacher_input_size are given but '
                                 'there is no teacher')
            return {}
        return {'': SingleTeacherDistiller._slot('', teacher, ckpt, forward, stop_early, taps,
                                                 allow_random, unsafe_load, preprocessor,
                                                 input_size)}

    @staticmethod
    def _slot(name, cfg, ckpt, forward, stop_early, taps, allow_random, unsafe_load, preprocessor,
              input_size) -> TeacherSlot:
        model_cfg = load_model_config(cfg)
        model = build_frozen_teacher(model_cfg, ckpt, allow_random, unsafe_load)
        return TeacherSlot(name, model, taps, forward, stop_early, preprocessor, model_cfg,
                           input_size)

    def _check_batch_augments(self) -> None:
        augments = getattr(self.student.data_preprocessor, 'batch_augments', None)
        kinds = {type(a).__name__ for a in augment_list(augments)}
        stateful = kinds & {'BatchSyncRandomResize', 'BatchFixedSizePad'}
        if stateful:
            raise ValueError(f'a teacher with its own data_preprocessor cannot replay the student\'s '
                             f'batch augments {sorted(stateful)} (they resize / pad to the '
                             "student's size); give the teacher no data_preprocessor")

    @property
    def teachers(self) -> Dict[str, nn.Module]:
        """``{name: frozen teacher}`` ('' is the single ``teacher=``)."""
        return {name: slot.model for name, slot in self._slots.items()}

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The teacher (the only one); None without a teacher."""
        if len(self._slots) > 1:
            # not AttributeError: nn.Module.__getattr__ would hide the message
            raise RuntimeError(f'this distiller has several teachers {sorted(self._slots)}: use '
                               '.teachers[name]')
        return next(iter(self._slots.values())).model if self._slots else None

    @property
    def _teacher(self) -> Optional[nn.Module]:
        return self.teacher

    @property
    def teacher_taps(self) -> Optional[FeatureTaps]:
        """The taps of the only teacher (None without a teacher)."""
        if len(self._slots) > 1:
            raise RuntimeError('several teachers: use .teacher_slots[name].taps')
        return next(iter(self._slots.values())).taps if self._slots else None

    @property
    def teacher_stop_early(self) -> bool:
        """Whether the teachers stop after their last tap (settable; applies to every teacher)."""
        return all(slot.stop_early for slot in self._slots.values())

    @teacher_stop_early.setter
    def teacher_stop_early(self, value: bool) -> None:
        for slot in self.__dict__.get('_slots', {}).values():
            slot.stop_early = bool(value)

    @property
    def teacher_slots(self) -> Dict[str, TeacherSlot]:
        return dict(self._slots)

    @property
    def teacher_forward(self) -> str:
        if len(self._slots) == 1:
            return next(iter(self._slots.values())).forward
        return 'none' if not self._slots else 'several'

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for slot in self._slots.values():
            slot.apply(fn)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        for slot in self._slots.values():
            slot.model.eval()
        return self

    def _slot_of(self, tname: Optional[str], where: str) -> TeacherSlot:
        key = tname or ''
        if key not in self._slots:
            if not self._slots:
                raise ValueError(f'{where}: there is no teacher')
            if key == '':
                raise ValueError(f'{where}: several teachers {sorted(self._slots)}: name one, '
                                 '"teacher.<name>.<tap>"')
            raise KeyError(f'{where}: unknown teacher "{key}"; teachers: '
                           f'{sorted(n for n in self._slots if n)}')
        return self._slots[key]

    def _init_source(self, t_path: str) -> nn.Module:
        if '' in self._slots:
            return find_module(self._slots[''].model, t_path, 'teacher')
        tname, _, path = t_path.partition('.')
        slot = self._slot_of(tname, f'init_student "{t_path}"')
        return find_module(slot.model, path, slot.label)

    def _check_source(self, loss: str, arg: str, source: str) -> None:
        if source in _SPECIAL_SOURCES:
            return
        m = _SOURCE.match(source)
        if m is None:
            raise ValueError(f'distill loss "{loss}", input "{arg}": cannot parse source {source!r}; '
                             'use "student.<tap>", "teacher.<tap>", "teacher.<name>.<tap>", '
                             f'"<connector>(<source>)", or one of {_SPECIAL_SOURCES}')
        conn, side, tname, tap = m.group('conn'), m.group('side'), m.group('tname'), m.group('tap')
        where = f'distill loss "{loss}" input "{arg}" ({source!r})'
        if side == 'student':
            if tname is not None:
                raise ValueError(f'{where}: student sources are "student.<tap>"')
            taps, owner = self.student_taps.specs, 'student'
        else:
            slot = self._slot_of(tname, where)
            taps, owner = slot.taps.specs, slot.label
        if tap not in taps:
            raise TapError(f'distill loss "{loss}", input "{arg}": {owner} has no tap "{tap}"; '
                           f'declared taps: {sorted(taps)}')
        if conn is not None and conn not in self.connectors:
            raise KeyError(f'distill loss "{loss}", input "{arg}": unknown connector "{conn}"; '
                           f'declared connectors: {sorted(self.connectors.keys())}')
        if conn is not None and side == 'teacher' and any(
                p.requires_grad for p in self.connectors[conn].parameters()):
            raise ValueError(f'{where}: connector "{conn}" has trainable weights and would get no '
                             'gradient on teacher features; use it on a student source')

    def run_teacher(self, inputs: torch.Tensor, data_samples=None, name: str = '') -> Any:
        """Run a teacher as far as its ``forward`` says (and no further than its last tap)."""
        return self._slot_of(name, 'run_teacher').run(inputs, data_samples)

    def _run_teachers(self, inputs, data_samples) -> None:
        raw = self.data_preprocessor.take() if isinstance(
            self.data_preprocessor, RawBatchRecorder) else None
        for slot in self._slots.values():
            if slot.forward == 'none':
                continue
            if slot.preprocessor is None:
                slot.run(inputs, data_samples)
            else:
                slot.run(*slot.own_inputs(raw, self.student.data_preprocessor))

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    def loss(self, inputs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        distill = self.distill_enabled and len(self.distill_losses) > 0
        if distill:
            self._run_teachers(inputs, data_samples)
        elif isinstance(self.data_preprocessor, RawBatchRecorder):
            self.data_preprocessor.take()  # the raw batch is not kept past its step
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
            for slot in self._slots.values():
                slot.taps.clear()
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
            taps = (self.student_taps if m.group('side') == 'student'
                    else self._slots[m.group('tname') or ''].taps)
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
            t_mod = self._init_source(t_path)
            t_state = t_mod.state_dict()
            s_state = s_mod.state_dict()
            bad = sorted(set(t_state) ^ set(s_state)) + [
                k for k in t_state if k in s_state and t_state[k].shape != s_state[k].shape]
            if bad:
                raise ValueError(f'init_student: teacher "{t_path}" and student "{s_path}" differ in '
                                 f'parameters {bad[:10]}')
            s_mod.load_state_dict(t_state, strict=True)
