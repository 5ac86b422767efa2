"""Pair student and teacher features for a distillation method (pure functions on probes).

* FPN levels (``--where neck``): each student level with the teacher level of the same stride.
* Backbone stages (``--where backbone``, CNNs): the last stage of each (the deepest features, as
  the MGD paper distils for classification and segmentation); where their strides differ (e.g. a
  dilated stride-8 student and a stride-32 teacher) the teacher's map is resampled to the
  student's stride.
* ViT blocks (ViTKD): student block ``i`` of ``Ds`` with teacher block
  ``round((i + 1) * Dt / Ds) - 1`` (same depth fraction), the final norms together; a token-grid
  difference is resampled on the teacher side.
* Logits (NKD): the last Linear whose output is the model's logits; class counts must agree.
"""
import math
from dataclasses import dataclass
from typing import List, Optional

from .probe import Candidate, Probe, WiringError


@dataclass
class Pair:
    """A student feature, the teacher feature it learns from, and how the teacher's is resampled."""
    name: str
    student: Candidate
    teacher: Candidate
    scale: Optional[float] = None           # maps: teacher -> student scale factor
    grid: Optional[tuple] = None            # tokens: the student's grid when the teacher's differs

    @property
    def resampled(self) -> bool:
        return self.scale is not None or self.grid is not None


def _map_pair(name: str, s: Candidate, t: Candidate) -> Pair:
    scale = None
    if not math.isclose(s.stride, t.stride, rel_tol=1e-6):
        scale = t.stride / s.stride
    return Pair(name, s, t, scale=scale)


def pair_neck(student: Probe, teacher: Probe) -> List[Pair]:
    """FPN levels by stride (levels without a partner are left out)."""
    if not student.neck or not teacher.neck:
        who = 'student' if not student.neck else 'teacher'
        p = student if who == 'student' else teacher
        raise WiringError(f'--where neck: the {who} {p.describe()} has no neck with feature maps')
    by_stride = {round(t.stride, 6): t for t in teacher.neck}
    pairs = [Pair(f'fpn{i}', s, by_stride[round(s.stride, 6)])
             for i, s in enumerate(student.neck) if round(s.stride, 6) in by_stride]
    if not pairs:
        raise WiringError('--where neck: no FPN level of the student '
                          f'(strides {[s.stride for s in student.neck]}) has a teacher level of '
                          f'the same stride (teacher strides {[t.stride for t in teacher.neck]})')
    return pairs


def pair_backbone(student: Probe, teacher: Probe) -> List[Pair]:
    """The last backbone stage of each; the teacher's resampled where the strides differ."""
    if student.is_vit or teacher.is_vit:
        vit = 'student' if student.is_vit else 'teacher'
        raise WiringError(f'--where backbone with MGD needs CNN feature maps, but the {vit} is a '
                          'ViT; use --method vitkd for ViT pairs')
    if not student.backbone or not teacher.backbone:
        who = 'student' if not student.backbone else 'teacher'
        raise WiringError(f'--where backbone: the {who} backbone gives no feature maps')
    return [_map_pair('feat', student.backbone[-1], teacher.backbone[-1])]


def depth_pairs(num_student: int, num_teacher: int, num_low: int = 2) -> List[tuple]:
    """(student block, teacher block) for the first ``num_low`` student blocks, same depth
    fraction: teacher = round((i + 1) * Dt / Ds) - 1."""
    return [(i, max(0, int(round((i + 1) * num_teacher / num_student)) - 1))
            for i in range(min(num_low, num_student))]


def pair_vit(student: Probe, teacher: Probe, num_low: int = 2) -> List[Pair]:
    for role, p in (('student', student), ('teacher', teacher)):
        if not p.is_vit:
            raise WiringError(f'ViTKD needs ViT blocks in both models, but the {role} '
                              f'{p.describe()} has none')
    pairs = []
    for k, (i, j) in enumerate(depth_pairs(len(student.vit_blocks), len(teacher.vit_blocks),
                                           num_low)):
        pairs.append(Pair(f'low{k}', student.vit_blocks[i], teacher.vit_blocks[j]))
    pairs.append(Pair('high', student.vit_final, teacher.vit_final))
    for p in pairs:
        if p.student.grid is None or p.teacher.grid is None:
            raise WiringError(f'ViTKD: {p.student.label} / {p.teacher.label} tokens do not form a '
                              'square grid')
        if p.student.grid != p.teacher.grid:
            p.grid = p.student.grid
    return pairs


def pair_logits(student: Probe, teacher: Probe) -> List[Pair]:
    for role, p in (('student', student), ('teacher', teacher)):
        if p.task != 'cls' or p.logits is None:
            raise WiringError(f'NKD distils classification logits, but the {role} '
                              f'{p.describe()} gives none')
    s, t = student.logits, teacher.logits
    if s.channels != t.channels:
        raise WiringError(f'NKD: the student has {s.channels} classes and the teacher '
                          f'{t.channels}; logits can only be paired for the same classes')
    return [Pair('logits', s, t)]
