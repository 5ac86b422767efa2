"""Compatible training on top of the generic distiller: the new model is the student, the old model the
frozen teacher (or, for BiCT's forward transformation, the new model is the frozen teacher).

Nothing here re-implements distillation: taps, loss-input routing, teacher freezing and checkpointing are
:class:`~mmkd_plugins.distillers.SingleTeacherDistiller`'s. This layer adds what compatibility needs:

* the old classifier (``old_classifier``, a module path in the old model) is bound to the losses that use
  it (``BCTLoss``), so the influence loss runs the new embedding through the frozen old classifier;
* ``predict`` returns, besides the student's predictions, the embeddings the retrieval metrics need:
  ``new_emb``, ``old_emb``, ``old_logits`` (and ``bict_emb`` when the old side is a BiCT student).
"""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from ...distillers import SingleTeacherDistiller, find_module
from ...distillers.teacher import build_frozen_teacher
from .embed import embed_batch


def _new_data_samples(n: int) -> List:
    from mmkd_plugins.utils import require
    return [require('mmpretrain.structures', 'compatible predictions').DataSample() for _ in range(n)]


def _attach(data_samples: List, **fields: Optional[torch.Tensor]) -> List:
    for name, value in fields.items():
        if value is None:
            continue
        for ds, row in zip(data_samples, value):
            ds.set_field(row.detach(), name)
    return data_samples


@MODELS.register_module()
class CompatibleDistiller(SingleTeacherDistiller):
    """Backward-compatible training (BCT, RACT, UniBCT) and BiCT transformation training by config.

    All arguments of :class:`SingleTeacherDistiller`, plus:

    Args:
        teacher_role: ``'old'`` (default): the teacher is the frozen old model and the student the new
            model. ``'new'``: the teacher is the frozen (backward-compatible) new model and the student a
            :class:`BiCTTransformStudent` (frozen old model + trainable transformation psi).
        old_classifier: module path of the old classifier in the old model (``'head.fc'`` for an
            mmpretrain ``LinearClsHead``), bound to every loss with ``bind_old_classifier`` (BCTLoss);
            None to bind nothing.
        new_classifier: with ``teacher_role='new'``: module path of the new model's classifier in the
            teacher, bound to every loss with ``bind_new_classifier`` (BiCT's 'new_classifier' objective).

    Example (BCT)::

        model = dict(type='CompatibleDistiller', student=new_model, teacher='old.py', teacher_ckpt='old.pth',
                     teacher_forward='extract_feat',
                     student_taps=dict(emb=dict(module='neck', idx=-1)),
                     teacher_taps=dict(emb=dict(module='neck', idx=-1)),
                     distill_losses=dict(loss_bct=dict(type='BCTLoss', num_classes=10, inputs=dict(
                         new='student.emb', old='teacher.emb', labels='gt_labels'))))
    """

    def __init__(self, *args, teacher_role: str = 'old', old_classifier: Optional[str] = 'head.fc',
                 new_classifier: Optional[str] = 'head.fc', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if teacher_role not in ('old', 'new'):
            raise ValueError("CompatibleDistiller: teacher_role must be 'old' or 'new', got "
                             f'{teacher_role!r}')
        if self.teacher is None:
            raise ValueError('CompatibleDistiller needs a teacher (the old model, or the new model for BiCT)')
        self.teacher_role = teacher_role
        if teacher_role == 'new' and not isinstance(self.student, BiCTTransformStudent):
            raise TypeError("CompatibleDistiller: teacher_role='new' trains a BiCT transformation: the "
                            f'student must be a BiCTTransformStudent, got {type(self.student).__name__}')
        self.old_classifier = old_classifier
        needs = [n for n, m in self.distill_losses.items() if hasattr(m, 'bind_old_classifier')]
        if needs:
            if old_classifier is None or teacher_role != 'old':
                raise ValueError(f'CompatibleDistiller: losses {needs} use the old classifier: set '
                                 "old_classifier (e.g. 'head.fc') with teacher_role='old'")
            fc = find_module(self.teacher, old_classifier, 'old model (teacher)')
            for name in needs:
                self.distill_losses[name].bind_old_classifier(fc)
        needs_new = [n for n, m in self.distill_losses.items() if hasattr(m, 'bind_new_classifier')]
        if needs_new and teacher_role == 'new' and new_classifier is not None:
            fc = find_module(self.teacher, new_classifier, 'new model (teacher)')
            for name in needs_new:
                self.distill_losses[name].bind_new_classifier(fc)
        objectives = sorted({m.objective for m in self.distill_losses.values() if hasattr(m, 'objective')})
        # the name of psi's training objective, attached to every BiCT prediction (None: unknown)
        self.bict_objective = '+'.join(objectives) if objectives else None

    @property
    def new_model(self) -> nn.Module:
        return self.student if self.teacher_role == 'old' else self.teacher

    @property
    def old_model(self) -> nn.Module:
        return self.teacher if self.teacher_role == 'old' else self.student.old_model

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples=None) -> List:
        """Student predictions with ``new_emb``, ``old_emb``, ``old_logits`` [, ``bict_emb``] attached."""
        if self.teacher_role == 'old':
            preds = self.student(inputs, data_samples, mode='predict')
            new_emb, _ = embed_batch(self.student, inputs, with_logits=False)
            old_emb, old_logits = embed_batch(self.teacher, inputs)
            return _attach(preds, new_emb=new_emb, old_emb=old_emb, old_logits=old_logits)
        preds = self.student(inputs, data_samples, mode='predict')  # old_emb, old_logits, bict_emb
        new_emb, _ = embed_batch(self.teacher, inputs, with_logits=False)
        if self.bict_objective is not None:
            for ds in preds:
                ds.set_field(self.bict_objective, 'bict_objective', field_type='metainfo')
        return _attach(preds, new_emb=new_emb)


@MODELS.register_module()
class BiCTTransformStudent(BaseModel):
    """The trainable side of BiCT's forward transformation: a frozen old model followed by psi.

    ``forward(mode='tensor')`` returns psi(phi_old(x)) (the tap ``'transformation'`` records it);
    ``mode='loss'`` has no loss of its own (the distiller adds ``BiCTTransformLoss``); ``mode='predict'``
    returns data samples with ``old_emb``, ``old_logits`` and ``bict_emb``.

    Args:
        old_model: config file or model dict of the old model.
        old_ckpt: its local checkpoint (required).
        transformation: config of the transformation (``BiCTTransformation``).
        data_preprocessor: a typed preprocessor config; default (or an untyped dict, as the Runner passes
            the config's top-level entry): the old model's.
    """

    def __init__(self,
                 old_model: Union[str, dict],
                 old_ckpt: Optional[str],
                 transformation: dict,
                 allow_random_old: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        old = build_frozen_teacher(old_model, old_ckpt, allow_random_old)
        if not isinstance(data_preprocessor, nn.Module) and not (data_preprocessor or {}).get('type'):
            data_preprocessor = old.data_preprocessor   # an untyped top-level config entry: the old one
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.old_model = old
        self.transformation = MODELS.build(transformation)

    def init_weights(self) -> None:
        """Initialise psi only: the old model keeps its checkpoint weights."""
        if hasattr(self.transformation, 'init_weights'):
            self.transformation.init_weights()

    def train(self, mode: bool = True):
        super().train(mode)
        self.old_model.eval()
        return self

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        with torch.no_grad():
            old_emb, old_logits = embed_batch(self.old_model, inputs, with_logits=(mode == 'predict'))
        upgraded = self.transformation(old_emb)
        if mode == 'tensor':
            return upgraded
        if mode == 'loss':
            return {}
        if mode == 'predict':
            preds = data_samples if data_samples is not None else _new_data_samples(inputs.shape[0])
            return _attach(list(preds), old_emb=old_emb, old_logits=old_logits, bict_emb=upgraded)
        raise ValueError(f'BiCTTransformStudent: unknown mode {mode!r}')
