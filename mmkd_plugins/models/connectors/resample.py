"""Spatial resampling of features whose stride or token grid differs by design.

A teacher run at another input size (e.g. a DeiT III teacher at 384 px beside a student at 224 px)
or with another output stride (a stride-32 backbone beside a dilated stride-8 one) gives features
on another grid than the student's. :class:`FeatureResample` (registered, parameter-free) maps them
onto the student's grid so that a loss can compare them position by position:

* CNN maps ``(B, C, H, W)``: bilinear interpolation (``align_corners=False``) to ``size`` or by
  ``scale_factor``: :math:`y = \\mathrm{interp}(x)`, output ``(B, C, H', W')``.
* ViT tokens ``(B, P + L, C)`` with ``P`` prefix (cls / distillation) tokens: the ``L = H x W``
  patch tokens are put back on their grid, interpolated (bicubic by default, as ViT position
  embeddings are resized upstream) to ``H' x W'`` and flattened again; the ``P`` prefix tokens are
  kept unchanged in front: output ``(B, P + H' W', C)``.

It is used as a connector on the teacher side of a loss input (``'up(teacher.feat)'``); it has no
weights, so nothing of it is trained or saved.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor

__all__ = ['resample_map', 'resample_tokens', 'FeatureResample']

Size = Union[int, Sequence[int]]


def _pair(value: Size, what: str) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f'{what} must be an int or (H, W), got {value!r}')
    return int(value[0]), int(value[1])


def _out_size(h: int, w: int, size: Optional[Size], scale_factor: Optional[float]) -> Tuple[int, int]:
    if size is not None:
        return _pair(size, 'size')
    return max(1, int(round(h * scale_factor))), max(1, int(round(w * scale_factor)))


def _interp(x: Tensor, size: Tuple[int, int], mode: str) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    extra = dict(align_corners=False) if mode in ('bilinear', 'bicubic') else {}
    # interpolate in float32 at least (bicubic / bilinear have no half kernels on every device)
    dtype = torch.promote_types(x.dtype, torch.float32)
    return F.interpolate(x.to(dtype), size=size, mode=mode, **extra).to(x.dtype)


def resample_map(x: Tensor, size: Optional[Size] = None, scale_factor: Optional[float] = None,
                 mode: str = 'bilinear') -> Tensor:
    """(B, C, H, W) -> (B, C, H', W') by interpolation (``mode`` of ``F.interpolate``)."""
    if x.dim() != 4:
        raise ValueError(f'resample_map expects a (B, C, H, W) map, got shape {tuple(x.shape)}')
    return _interp(x, _out_size(x.size(2), x.size(3), size, scale_factor), mode)


def resample_tokens(x: Tensor, size: Optional[Size] = None, scale_factor: Optional[float] = None,
                    num_prefix_tokens: int = 1, in_grid: Optional[Size] = None,
                    mode: str = 'bicubic') -> Tensor:
    """(B, P + H*W, C) ViT tokens -> (B, P + H'*W', C); the P prefix tokens are kept.

    Args:
        x: block output with ``num_prefix_tokens`` leading cls / distillation tokens.
        size / scale_factor: the output grid (H', W'), or a factor on the input grid.
        num_prefix_tokens: P (DeiT / DeiT III: 1; distilled DeiT: 2).
        in_grid: the input grid (H, W); default square.
        mode: interpolation mode on the grid.
    """
    if x.dim() != 3:
        raise ValueError(f'resample_tokens expects (B, P + L, C) tokens, got shape {tuple(x.shape)}')
    prefix, patches = x[:, :num_prefix_tokens], x[:, num_prefix_tokens:]
    n = patches.size(1)
    if in_grid is not None:
        h, w = _pair(in_grid, 'in_grid')
    else:
        h = w = math.isqrt(n)
    if h * w != n:
        raise ValueError(f'resample_tokens: {n} patch tokens (after {num_prefix_tokens} prefix '
                         f'tokens) do not form a {h}x{w} grid; give in_grid=(H, W) or check '
                         'num_prefix_tokens')
    b, _, c = patches.shape
    grid = patches.transpose(1, 2).reshape(b, c, h, w)
    out = _interp(grid, _out_size(h, w, size, scale_factor), mode)
    return torch.cat([prefix, out.flatten(2).transpose(1, 2)], dim=1)


@MODELS.register_module()
class FeatureResample(nn.Module):
    """Resample a feature (or each feature of a tuple / list) onto another grid; no weights.

    Args:
        size: output (H, W) (an int means square).
        scale_factor: output = round(input x scale_factor) per side; exactly one of ``size`` /
            ``scale_factor``. E.g. a stride-32 teacher map beside a stride-8 student: 4.0.
        tokens: inputs are ViT tokens (B, P + L, C) instead of maps (B, C, H, W).
        num_prefix_tokens: P, kept unchanged (tokens only).
        in_grid: input token grid when not square (tokens only).
        mode: interpolation mode; default bilinear for maps, bicubic for tokens.
    """

    def __init__(self, size: Optional[Size] = None, scale_factor: Optional[float] = None,
                 tokens: bool = False, num_prefix_tokens: int = 1, in_grid: Optional[Size] = None,
                 mode: Optional[str] = None) -> None:
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError('FeatureResample needs exactly one of size=(H, W) or scale_factor, '
                             f'got size={size!r}, scale_factor={scale_factor!r}')
        if scale_factor is not None and not scale_factor > 0:
            raise ValueError(f'FeatureResample: scale_factor must be > 0, got {scale_factor}')
        self.size = None if size is None else _pair(size, 'size')
        self.scale_factor = scale_factor
        self.tokens = tokens
        self.num_prefix_tokens = num_prefix_tokens
        self.in_grid = in_grid
        self.mode = mode or ('bicubic' if tokens else 'bilinear')

    def _one(self, x: Tensor) -> Tensor:
        if self.tokens:
            return resample_tokens(x, self.size, self.scale_factor, self.num_prefix_tokens,
                                   self.in_grid, self.mode)
        return resample_map(x, self.size, self.scale_factor, self.mode)

    def forward(self, x):
        if isinstance(x, (tuple, list)):
            return type(x)(self._one(v) for v in x)
        return self._one(x)

    def extra_repr(self) -> str:
        target = f'size={self.size}' if self.size is not None else f'scale_factor={self.scale_factor}'
        return f'{target}, tokens={self.tokens}, mode={self.mode}'
