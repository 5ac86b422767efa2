"""ViTKD: mimicking for shallow ViT layers, masked generation for the deep layer (arXiv 2209.02432).

Pure functions :func:`vit_patch_tokens`, :func:`vitkd_mimic_loss` and
:func:`vitkd_generation_loss` hold the math; :class:`ViTKDLoss` (registered) owns the learnable
connector parts (one :class:`ViTKDMimicConnector` per shallow layer and one
:class:`ViTKDGenerationConnector`) and returns ``dict(loss_vitkd_low=..., loss_vitkd_gen=...)``.

Taps for mmpretrain ``VisionTransformer`` / ``DeiT3`` (see configs/vitkd/README.md): the outputs of
``backbone.layers.0`` and ``backbone.layers.1`` (shallow, ``(B, 1 + L, D)``) and of ``backbone.ln1``
(the last block after the final LayerNorm). The loss removes the ``num_prefix_tokens`` leading cls
(and distillation) tokens, so only the ``L`` patch tokens are distilled.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from torch import Tensor

from ..connectors.vitkd import (ViTKDGenerationConnector, ViTKDMimicConnector,
                                tokens_to_grid)

__all__ = ['vit_patch_tokens', 'vitkd_mimic_loss', 'vitkd_generation_loss', 'vitkd_taps',
           'ViTKDLoss']


def vitkd_taps(num_low_layers: int = 2, with_logits: bool = False) -> Dict[str, str]:
    """Distiller taps of an mmpretrain ``ImageClassifier`` with a ``VisionTransformer``/``DeiT3``.

    ``low<i>`` -> ``backbone.layers.<i>`` (block outputs), ``high`` -> ``backbone.ln1`` (last block
    after the final norm) and, with ``with_logits``, ``logits`` -> ``head.layers.head``
    (``VisionTransformerClsHead``). The same dict serves as ``student_taps`` and ``teacher_taps``.
    """
    taps = {f'low{i}': f'backbone.layers.{i}' for i in range(num_low_layers)}
    taps['high'] = 'backbone.ln1'
    if with_logits:
        taps['logits'] = 'head.layers.head'
    return taps


def vit_patch_tokens(x: Tensor,
                     num_prefix_tokens: int = 1,
                     name: str = 'feature') -> Tuple[Tensor, Optional[Tuple[int, int]]]:
    """Patch tokens (B, L, C) of a ViT feature, and its grid when the input is a feature map.

    Args:
        x: (B, P + L, C) block output with ``P = num_prefix_tokens`` leading cls/dist tokens, or a
            (B, C, H, W) feature map (already without prefix tokens; then the grid is (H, W)).
        num_prefix_tokens: number of leading tokens to drop from a (B, P + L, C) input.
        name: used in error messages.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f'ViTKD: {name} must be a tensor, got {type(x).__name__}; tap a single '
                        'block output (use idx=... for tuple outputs)')
    if x.dim() == 4:
        b, c, h, w = x.shape
        return x.flatten(2).transpose(1, 2), (h, w)
    if x.dim() != 3:
        raise ValueError(f'ViTKD: {name} must be tokens (B, L, C) or a map (B, C, H, W), got '
                         f'shape {tuple(x.shape)}')
    if x.size(1) <= num_prefix_tokens:
        raise ValueError(f'ViTKD: {name} has {x.size(1)} tokens, not more than '
                         f'num_prefix_tokens={num_prefix_tokens}')
    return x[:, num_prefix_tokens:], None


def _acc_dtype(x: Tensor) -> torch.dtype:
    """Accumulate in at least float32 (fp16/bf16 features under AMP), float64 stays float64."""
    return torch.promote_types(x.dtype, torch.float32)


def vitkd_mimic_loss(aligned_student: Tensor, teacher: Tensor, alpha: float = 3e-5) -> Tensor:
    r"""Shallow-layer mimicking: :math:`\alpha \sum (\mathrm{Lin}(s) - t)^2 / B`.

    Args:
        aligned_student: (B, L, Dt) student tokens after the per-layer Linear.
        teacher: (B, L, Dt) teacher tokens.
        alpha: loss weight (paper: 3e-5).
    """
    if aligned_student.shape != teacher.shape:
        raise ValueError('ViTKD mimicking needs matching shapes, got student '
                         f'{tuple(aligned_student.shape)} and teacher {tuple(teacher.shape)}')
    dtype = _acc_dtype(aligned_student)
    diff = aligned_student.to(dtype) - teacher.detach().to(dtype)
    return alpha * diff.pow(2).sum() / aligned_student.size(0)


def vitkd_generation_loss(generated: Tensor,
                          teacher: Tensor,
                          mask: Tensor,
                          beta: float = 3e-6,
                          lambda_vitkd: float = 0.5) -> Tensor:
    r"""Deep-layer generation loss on masked tokens only.

    .. math:: L_{gen} = \frac{\beta}{\lambda} \frac{1}{B}
              \sum_{b} \sum_{l:\,M_{bl}=1} \lVert G(x)_{bl} - t_{bl} \rVert^2

    Args:
        generated: (B, L, Dt) generator output.
        teacher: (B, L, Dt) teacher tokens (last block, after the final norm).
        mask: (B, L) bool, ``True`` where the token was masked.
        beta: loss weight (paper: 3e-6).
        lambda_vitkd: mask ratio used for the masking (paper: 0.5).
    """
    if generated.shape != teacher.shape or mask.shape != generated.shape[:2]:
        raise ValueError('ViTKD generation needs generated/teacher (B, L, D) and mask (B, L), got '
                         f'{tuple(generated.shape)}, {tuple(teacher.shape)}, {tuple(mask.shape)}')
    dtype = _acc_dtype(generated)
    diff = generated.to(dtype) - teacher.detach().to(dtype)
    per_token = diff.pow(2).sum(dim=-1)
    return beta / lambda_vitkd * (per_token * mask.to(per_token.dtype)).sum() / generated.size(0)


@MODELS.register_module()
class ViTKDLoss(nn.Module):
    """ViTKD loss (registered as ``'ViTKDLoss'``): shallow mimicking + deep masked generation.

    ``forward`` inputs (tap names of the distiller config map to these keywords):

    * ``student_high`` / ``teacher_high``: last block after the final norm (``backbone.ln1``);
    * ``student_low_0`` / ``teacher_low_0``, ``student_low_1`` / ``teacher_low_1``, ... : the
      shallow blocks (``backbone.layers.0``, ``backbone.layers.1``), or the sequences
      ``student_low=[...]`` / ``teacher_low=[...]`` when called directly.

    Each input is (B, P + L, C) with ``P`` prefix tokens (stripped here) or a (B, C, H, W) map.
    Student and teacher must share the token grid (same image size and patch size).

    Args:
        student_dims: student embedding width Ds (DeiT-Tiny 192, -Small 384, -Base 768).
        teacher_dims: teacher embedding width Dt.
        alpha_vitkd: weight of the mimicking loss (paper: 3e-5).
        beta_vitkd: weight of the generation loss (paper: 3e-6).
        lambda_vitkd: masked token ratio of the generation (paper: 0.5).
        num_low_layers: number of shallow layers mimicked (paper: 2, blocks 0 and 1).
        student_prefix_tokens: cls/dist tokens leading the student tokens (DeiT: 1).
        teacher_prefix_tokens: cls/dist tokens leading the teacher tokens (DeiT III: 1).
        grid: optional (H, W) token grid for non-square inputs given as (B, L, C).
        loss_weight: multiplies both terms.
    """

    def __init__(self,
                 student_dims: int,
                 teacher_dims: int,
                 alpha_vitkd: float = 3e-5,
                 beta_vitkd: float = 3e-6,
                 lambda_vitkd: float = 0.5,
                 num_low_layers: int = 2,
                 student_prefix_tokens: int = 1,
                 teacher_prefix_tokens: int = 1,
                 grid: Optional[Tuple[int, int]] = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if num_low_layers < 0:
            raise ValueError(f'num_low_layers must be >= 0, got {num_low_layers}')
        self.student_dims = student_dims
        self.teacher_dims = teacher_dims
        self.alpha_vitkd = alpha_vitkd
        self.beta_vitkd = beta_vitkd
        self.lambda_vitkd = lambda_vitkd
        self.num_low_layers = num_low_layers
        self.student_prefix_tokens = student_prefix_tokens
        self.teacher_prefix_tokens = teacher_prefix_tokens
        self.grid = tuple(grid) if grid is not None else None
        self.loss_weight = loss_weight
        self.low_connectors = nn.ModuleList(
            ViTKDMimicConnector(student_dims, teacher_dims) for _ in range(num_low_layers))
        self.generator = ViTKDGenerationConnector(student_dims, teacher_dims, lambda_vitkd,
                                                  grid=self.grid)

    # ------------------------------------------------------------------ helpers
    def _pair(self, student: Tensor, teacher: Tensor, name: str) -> Tuple[Tensor, Tensor, tuple]:
        """Patch tokens of a student/teacher pair, checking the token grids and widths."""
        s, s_grid = vit_patch_tokens(student, self.student_prefix_tokens, f'student {name}')
        t, t_grid = vit_patch_tokens(teacher, self.teacher_prefix_tokens, f'teacher {name}')
        s_grid = s_grid or self._grid_of(s.size(1), f'student {name}')
        t_grid = t_grid or self._grid_of(t.size(1), f'teacher {name}')
        if tuple(s_grid) != tuple(t_grid):
            raise ValueError(
                f'ViTKD needs student and teacher on the same token grid, but the {name} feature '
                f'has a {s_grid[0]}x{s_grid[1]} grid ({s.size(1)} patch tokens) for the student '
                f'and {t_grid[0]}x{t_grid[1]} ({t.size(1)} patch tokens) for the teacher; use the '
                'same img_size and patch_size (e.g. 224 and 16) for both, and check '
                'student_prefix_tokens/teacher_prefix_tokens')
        if s.size(0) != t.size(0):
            raise ValueError(f'ViTKD: {name} batch sizes differ (student {s.size(0)}, teacher '
                             f'{t.size(0)})')
        if s.size(-1) != self.student_dims:
            raise ValueError(f'ViTKD: student {name} feature has {s.size(-1)} channels but '
                             f'ViTKDLoss(student_dims={self.student_dims})')
        if t.size(-1) != self.teacher_dims:
            raise ValueError(f'ViTKD: teacher {name} feature has {t.size(-1)} channels but '
                             f'ViTKDLoss(teacher_dims={self.teacher_dims})')
        return s, t, tuple(s_grid)

    def _grid_of(self, num_tokens: int, name: str) -> Tuple[int, int]:
        try:
            return tokens_to_grid(num_tokens, self.grid)
        except ValueError as err:
            raise ValueError(f'ViTKD: {name}: {err}') from None

    def _collect_low(self, side: str, seq: Optional[Sequence[Tensor]],
                     kwargs: dict) -> List[Tensor]:
        keys = [f'{side}_low_{i}' for i in range(self.num_low_layers)]
        if seq is not None:
            if isinstance(seq, Tensor):
                seq = [seq]
            items = list(seq)
        else:
            items = [kwargs.pop(k) for k in keys if k in kwargs]
        if len(items) != self.num_low_layers:
            raise ValueError(f'ViTKDLoss(num_low_layers={self.num_low_layers}) needs '
                             f'{self.num_low_layers} shallow {side} features ({", ".join(keys)} '
                             f'or {side}_low=[...]), got {len(items)}')
        return items

    # ------------------------------------------------------------------ forward
    def forward(self,
                student_high: Tensor,
                teacher_high: Tensor,
                student_low: Optional[Sequence[Tensor]] = None,
                teacher_low: Optional[Sequence[Tensor]] = None,
                mask: Optional[Tensor] = None,
                **low_taps: Tensor) -> Dict[str, Tensor]:
        """Return ``dict(loss_vitkd_low=..., loss_vitkd_gen=...)`` (no low term without layers).

        Args:
            student_high, teacher_high: deep-layer features.
            student_low, teacher_low: sequences of shallow features (or use the keywords
                ``student_low_<i>``/``teacher_low_<i>``).
            mask: optional (B, L) bool generation mask (``True`` = masked); random when None.
        """
        s_low = self._collect_low('student', student_low, low_taps)
        t_low = self._collect_low('teacher', teacher_low, low_taps)
        if low_taps:
            raise TypeError(f'ViTKDLoss got unexpected inputs {sorted(low_taps)}')
        losses = {}
        if self.num_low_layers:
            low = 0.
            for i, (s, t, conn) in enumerate(zip(s_low, t_low, self.low_connectors)):
                s, t, _ = self._pair(s, t, f'low_{i}')
                low = low + vitkd_mimic_loss(conn(s), t, self.alpha_vitkd)
            losses['loss_vitkd_low'] = self.loss_weight * low
        s, t, grid = self._pair(student_high, teacher_high, 'high')
        generated, used_mask = self.generator(s, mask=mask, return_mask=True, grid=grid)
        losses['loss_vitkd_gen'] = self.loss_weight * vitkd_generation_loss(
            generated, t, used_mask, self.beta_vitkd, self.lambda_vitkd)
        return losses
