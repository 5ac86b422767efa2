"""ViTKD connector parts (arXiv 2209.02432): token mimicking and masked token generation.

* :class:`ViTKDMimicConnector` -- one ``Linear(Ds -> Dt)`` applied to every token (shallow
  layers).
* :class:`ViTKDGenerationConnector` -- ``Linear(Ds -> Dt)``, random token masking with a learnable
  mask token, reshape to a ``Dt x H x W`` map and ``Conv3x3-ReLU-Conv3x3`` (deep layer).

Both take patch tokens ``(B, L, Ds)`` (no cls token) and return ``(B, L, Dt)``. They are registered
as connectors and are the parameterised parts of :class:`~mmkd_plugins.models.losses.ViTKDLoss`,
which owns one instance per distilled layer (the generation loss needs the mask, so the generator
runs inside the loss).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from torch import Tensor

from ...utils.arg_checks import check_positive_int

__all__ = ['random_token_mask', 'tokens_to_grid', 'ViTKDMimicConnector',
           'ViTKDGenerationConnector']


def tokens_to_grid(num_tokens: int, grid: Optional[Tuple[int, int]] = None) -> Tuple[int, int]:
    """The (H, W) token grid of ``num_tokens`` patch tokens: ``grid`` if given, else square."""
    if grid is not None:
        h, w = int(grid[0]), int(grid[1])
        if h * w != num_tokens:
            raise ValueError(f'token grid {h}x{w} does not match {num_tokens} patch tokens')
        return h, w
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f'{num_tokens} patch tokens do not form a square grid; pass the grid '
                         'size explicitly (e.g. grid=(H, W)) or check that the cls/dist tokens '
                         'were removed (num_prefix_tokens)')
    return side, side


def random_token_mask(batch: int,
                      num_tokens: int,
                      mask_ratio: float,
                      device: Optional[torch.device] = None,
                      generator: Optional[torch.Generator] = None) -> Tensor:
    """Per-sample random token mask, ``True`` = masked.

    Each sample keeps ``int(num_tokens * (1 - mask_ratio))`` tokens: the ones with the smallest
    uniform noise (argsort of noise); the other tokens are masked.

    Returns:
        Bool tensor (batch, num_tokens).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f'mask ratio (lambda_vitkd) must be in [0, 1), got {mask_ratio}')
    num_keep = int(num_tokens * (1 - mask_ratio))
    noise = torch.rand(batch, num_tokens, device=device, generator=generator)
    rank = noise.argsort(dim=1).argsort(dim=1)  # rank of each token's noise within its sample
    return rank >= num_keep


def _check_tokens(x: Tensor, dims: int, what: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f'{what} expects patch tokens shaped (B, L, C), got {shape}')
    if x.size(-1) != dims:
        raise ValueError(f'{what} was built for {dims} input channels but the tokens have '
                         f'{x.size(-1)}')


@MODELS.register_module()
class ViTKDMimicConnector(nn.Module):
    """``Linear(student_dims -> teacher_dims)`` on every token: (B, L, Ds) -> (B, L, Dt)."""

    def __init__(self, student_dims: int, teacher_dims: int) -> None:
        super().__init__()
        self.student_dims = check_positive_int(student_dims, 'student_dims', type(self).__name__)
        self.teacher_dims = check_positive_int(teacher_dims, 'teacher_dims', type(self).__name__)
        self.align = nn.Linear(student_dims, teacher_dims)

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, self.student_dims, type(self).__name__)
        return self.align(x)


@MODELS.register_module()
class ViTKDGenerationConnector(nn.Module):
    """Masked generation of teacher tokens from student tokens.

    ``x = Linear(tokens)``; a random ``lambda_vitkd`` fraction of the tokens of each sample is
    replaced by a learnable mask token (zeros at init, ``Dt`` wide); the tokens are reshaped to a
    ``(B, Dt, H, W)`` map and passed through ``Conv3x3 -> ReLU -> Conv3x3`` (padding 1).

    Args:
        student_dims: student token width Ds.
        teacher_dims: teacher token width Dt.
        lambda_vitkd: fraction of masked tokens (paper: 0.5).
        grid: optional (H, W) token grid; default: square grid inferred from L.
    """

    def __init__(self,
                 student_dims: int,
                 teacher_dims: int,
                 lambda_vitkd: float = 0.5,
                 grid: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        if not 0.0 < lambda_vitkd < 1.0:
            raise ValueError(f'lambda_vitkd must be in (0, 1), got {lambda_vitkd}')
        self.student_dims = check_positive_int(student_dims, 'student_dims', type(self).__name__)
        self.teacher_dims = check_positive_int(teacher_dims, 'teacher_dims', type(self).__name__)
        self.lambda_vitkd = lambda_vitkd
        self.grid = tuple(grid) if grid is not None else None
        self.align = nn.Linear(student_dims, teacher_dims)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, teacher_dims))
        self.generation = nn.Sequential(
            nn.Conv2d(teacher_dims, teacher_dims, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(teacher_dims, teacher_dims, kernel_size=3, padding=1))

    def forward(self,
                x: Tensor,
                mask: Optional[Tensor] = None,
                return_mask: bool = False,
                grid: Optional[Tuple[int, int]] = None):
        """Generate (B, L, Dt) tokens from student tokens (B, L, Ds).

        Args:
            x: student patch tokens.
            mask: optional bool (B, L) mask (``True`` = masked); random when None.
            return_mask: also return the mask used.
            grid: (H, W) token grid; default: the constructor's ``grid`` or a square grid.
        """
        _check_tokens(x, self.student_dims, type(self).__name__)
        b, num_tokens, _ = x.shape
        h, w = tokens_to_grid(num_tokens, grid if grid is not None else self.grid)
        x = self.align(x)
        if mask is None:
            mask = random_token_mask(b, num_tokens, self.lambda_vitkd, device=x.device)
        elif mask.shape != (b, num_tokens):
            raise ValueError(f'mask must be shaped {(b, num_tokens)}, got {tuple(mask.shape)}')
        mask = mask.bool()
        x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype).expand_as(x), x)
        x = x.transpose(1, 2).reshape(b, self.teacher_dims, h, w)
        x = self.generation(x).flatten(2).transpose(1, 2)
        return (x, mask) if return_mask else x
