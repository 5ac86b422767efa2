"""Building blocks of the SWEM network (STCN-like): encoders, fusion, decoder, soft aggregation.

Backbones are built from config dicts through mmengine's ``MODELS`` registry, so the default
``mmpretrain.ResNet`` (imported lazily) can be swapped, e.g. for :class:`VOSTinyBackbone` in tests.
A backbone must return a tuple of feature maps; the key encoder uses the last three (strides 4, 8, 16),
the value encoder the last one (stride 16).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn


def build_backbone(cfg: dict) -> nn.Module:
    """Build a backbone from a config dict; ``mmpretrain.*`` types import mmpretrain first."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'backbone config must be a dict with a "type", got {cfg!r}')
    cfg = copy.deepcopy(cfg)
    btype = cfg['type']
    if isinstance(btype, str) and btype.startswith('mmpretrain.'):
        from mmkd_plugins.utils import require
        require('mmpretrain.models', 'SWEM ResNet backbones')
    return MODELS.build(cfg)


@MODELS.register_module()
class VOSTinyBackbone(BaseModule):
    """A small plain CNN with outputs at strides 4, 8 and 16 (for tests and CPU benchmarks).

    Args:
        in_channels: input channels (3 for the key encoder, 5 for the value encoder).
        channels: output channels at strides (4, 8, 16).
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (16, 32, 64),
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        c4, c8, c16 = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c4, 3, 2, 1), nn.BatchNorm2d(c4), nn.ReLU(True),
                                  nn.Conv2d(c4, c4, 3, 2, 1), nn.BatchNorm2d(c4), nn.ReLU(True))
        self.layer8 = nn.Sequential(nn.Conv2d(c4, c8, 3, 2, 1), nn.BatchNorm2d(c8), nn.ReLU(True))
        self.layer16 = nn.Sequential(nn.Conv2d(c8, c16, 3, 2, 1), nn.BatchNorm2d(c16), nn.ReLU(True))

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        f4 = self.stem(x)
        f8 = self.layer8(f4)
        return f4, f8, self.layer16(f8)


class ResBlock(nn.Module):
    """Pre-activation residual block: ``x' + conv(relu(conv(relu(x))))`` (1x1 shortcut if needed)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (nn.Identity() if in_channels == out_channels else
                         nn.Conv2d(in_channels, out_channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        return self.shortcut(x) + r


class CBAM(nn.Module):
    """Convolutional block attention: channel gate (avg+max pooled MLP) then spatial gate (7x7)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(True), nn.Linear(hidden, channels))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        x = x * torch.sigmoid(gate)[:, :, None, None]
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class FeatureFusionBlock(nn.Module):
    """Value/key fusion: ``ResBlock -> CBAM (residual) -> ResBlock``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block1 = ResBlock(in_channels, out_channels)
        self.attention = CBAM(out_channels)
        self.block2 = ResBlock(out_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block1(x)
        return self.block2(x + self.attention(x))


class GLUFusion(nn.Module):
    """Gated fusion ``conv3x3(u) * sigmoid(conv3x3(u))`` (orthogonal init, zero bias)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.feat = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.gate = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        for conv in (self.feat, self.gate):
            nn.init.orthogonal_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, u: Tensor) -> Tensor:
        return self.feat(u) * torch.sigmoid(self.gate(u))


def _pretrained_cfg(init_cfg) -> Optional[dict]:
    """The ``type='Pretrained'`` entry of an ``init_cfg`` (dict or list), or None."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    for cfg in cfgs:
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            return cfg
    return None


def read_pretrained_state(cfg: dict) -> Dict[str, Tensor]:
    """Read the state dict a ``Pretrained`` init_cfg points at, as mmengine's ``PretrainedInit`` does
    (``prefix`` selects and strips ``<prefix>.``; ``module.`` prefixes are removed)."""
    from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_with_prefix
    if cfg.get('prefix'):
        state = _load_checkpoint_with_prefix(cfg['prefix'], cfg['checkpoint'], map_location='cpu')
    else:
        ckpt = _load_checkpoint(cfg['checkpoint'], map_location='cpu')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}


@torch.no_grad()
def load_extra_input_channels(module: nn.Module, state: Dict[str, Tensor],
                              extra_init: str = 'orthogonal') -> List[str]:
    """Copy checkpoint conv filters that have FEWER input channels than the module's.

    For every 4-d parameter ``w`` (C_out, C_in, k, k) whose checkpoint tensor ``w0`` is
    (C_out, c, k, k) with ``c < C_in``: ``w[:, :c] = w0`` (e.g. the ImageNet RGB filters of a ResNet
    ``conv1``) and the ``C_in - c`` extra input channels are initialised on their own, as the official
    SWEM code does (``extra_init='orthogonal'``: ``nn.init.orthogonal_`` of a (C_out, C_in - c, k, k)
    tensor; ``'zeros'``: zeros). mmengine's loader skips such tensors (size mismatch), so this runs
    after it. Returns the names of the parameters filled.
    """
    if extra_init not in ('orthogonal', 'zeros'):
        raise ValueError(f'extra_init must be "orthogonal" or "zeros", got {extra_init!r}')
    filled = []
    for name, param in module.named_parameters():
        src = state.get(name)
        if src is None or param.dim() != 4 or src.dim() != 4:
            continue
        if (src.shape[0], *src.shape[2:]) != (param.shape[0], *param.shape[2:]) \
                or src.shape[1] >= param.shape[1]:
            continue
        c = src.shape[1]
        extra = torch.empty(param.shape[0], param.shape[1] - c, *param.shape[2:])
        if extra_init == 'orthogonal':
            nn.init.orthogonal_(extra)
        else:
            extra.zero_()
        param[:, :c] = src.to(param.dtype)
        param[:, c:] = extra.to(param.dtype)
        filled.append(name)
    return filled


class KeyEncoder(BaseModule):
    """Backbone -> (f16, f8, f4) of the query frame.

    A ``BaseModule``, so that ``init_weights()`` reaches the backbone and its ``init_cfg`` (e.g. the
    ImageNet ``Pretrained`` checkpoint) is applied.
    """

    def __init__(self, backbone: dict) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        feats = self.backbone(x)
        if not isinstance(feats, (tuple, list)) or len(feats) < 3:
            raise ValueError('SWEM key backbone must return at least 3 feature maps (strides 4, 8, 16); '
                             'for mmpretrain ResNet use num_stages=3, out_indices=(0, 1, 2)')
        f4, f8, f16 = feats[-3:]
        return f16, f8, f4


class ValueEncoder(BaseModule):
    """``[RGB, own mask, other objects' mask]`` (5 ch) -> backbone stride 16 -> fused with the key
    feature (``FeatureFusionBlock``) -> ``value_dim`` channels.

    ``init_weights()`` applies the backbone's ``init_cfg``; when that is a ``Pretrained`` RGB
    checkpoint, the first conv keeps the checkpoint's RGB filters and only its extra (mask) input
    channels are initialised (``extra_channel_init``), as in the official code (``mod_resnet``).
    """

    def __init__(self, backbone: dict, backbone_channels: int, key_channels: int,
                 value_dim: int, extra_channel_init: str = 'orthogonal') -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.fuser = FeatureFusionBlock(backbone_channels + key_channels, value_dim)
        self.extra_channel_init = extra_channel_init

    def init_weights(self) -> None:
        super().init_weights()
        cfg = _pretrained_cfg(getattr(self.backbone, 'init_cfg', None))
        if cfg is None:
            return
        from mmengine.logging import print_log
        filled = load_extra_input_channels(self.backbone, read_pretrained_state(cfg),
                                           self.extra_channel_init)
        if filled:
            print_log(f'SWEM value encoder: {filled} keep the first input channels of '
                      f'{cfg["checkpoint"]}; the extra channels are initialised '
                      f'({self.extra_channel_init})', logger='current')

    def forward(self, image: Tensor, key_f16: Tensor, mask: Tensor, others: Tensor) -> Tensor:
        """image (N, 3, H, W), key_f16 (N, Ck16, h, w), mask/others (N, 1, H, W) -> (N, Cv, h, w)."""
        feats = self.backbone(torch.cat([image, mask, others], dim=1))
        f16 = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if f16.shape[-2:] != key_f16.shape[-2:]:
            raise ValueError(f'SWEM value backbone output {tuple(f16.shape)} does not match the key '
                             f'feature {tuple(key_f16.shape)} (both must be at stride 16)')
        return self.fuser(torch.cat([f16, key_f16], dim=1))


class UpsampleBlock(nn.Module):
    """``ResBlock(conv3x3(skip) + upsample(x))``."""

    def __init__(self, skip_channels: int, up_channels: int, out_channels: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_channels, up_channels, 3, padding=1)
        self.block = ResBlock(up_channels, out_channels)

    def forward(self, skip: Tensor, x: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False)
        return self.block(self.skip_conv(skip) + x)


class Decoder(nn.Module):
    """``ResBlock(C) -> up + stride-8 skip -> up + stride-4 skip -> conv3x3 to 1 ch`` (logits)."""

    def __init__(self, in_channels: int, skip_channels: Sequence[int], mid_channels: int = 256) -> None:
        super().__init__()
        self.compress = ResBlock(in_channels, in_channels)
        self.up_16_8 = UpsampleBlock(skip_channels[0], in_channels, mid_channels)
        self.up_8_4 = UpsampleBlock(skip_channels[1], mid_channels, mid_channels)
        self.pred = nn.Conv2d(mid_channels, 1, 3, padding=1)

    def forward(self, context: Tensor, f8: Tensor, f4: Tensor, out_size: Tuple[int, int]) -> Tensor:
        x = self.up_16_8(f8, self.compress(context))
        x = self.up_8_4(f4, x)
        x = self.pred(F.relu(x))
        return F.interpolate(x, size=out_size, mode='bilinear', align_corners=False)


def soft_aggregate(prob: Tensor, valid: Tensor = None, eps: float = 1e-7) -> Tensor:
    """Soft aggregation of per-object probabilities into (O+1)-class logits.

    ``p_bg = prod_o (1 - p_o)``, ``p' = clamp([p_bg, p_1..p_O], eps, 1 - eps)``,
    ``logits = log(p' / (1 - p'))``; ``softmax(logits)`` over the O+1 classes gives the final masks.

    Args:
        prob: (B, O, H, W) per-object foreground probabilities.
        valid: optional (B, O) bool/float; invalid (padding) objects get probability 0.

    Returns:
        (B, O+1, H, W) logits, class 0 = background.
    """
    if valid is not None:
        prob = prob * valid.to(prob.dtype)[:, :, None, None]
    bg = torch.prod(1 - prob, dim=1, keepdim=True)
    p = torch.cat([bg, prob], dim=1).clamp(eps, 1 - eps)
    return torch.log(p / (1 - p))


def downsample_masks(soft: Tensor, size: Tuple[int, int],
                     hard: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Masks at stride 16 for the memory: hard by nearest, soft by bilinear interpolation.

    Args:
        soft: (N, 1, H, W) soft masks (probabilities).
        size: target (h, w).
        hard: optional (N, 1, H, W) hard masks (e.g. argmax of the aggregated prediction);
            ``soft > 0.5`` when omitted.
    """
    if hard is None:
        hard = (soft > 0.5).to(soft.dtype)
    hard = F.interpolate(hard.to(soft.dtype), size=size, mode='nearest')
    soft = F.interpolate(soft, size=size, mode='bilinear', align_corners=False)
    return hard, soft


def expand_to_objects(x: Tensor, num_objects: int) -> Tensor:
    """(B, ...) -> (B * O, ...) by repeating each item ``O`` times (a view where possible)."""
    return x.unsqueeze(1).expand(x.shape[0], num_objects, *x.shape[1:]).flatten(0, 1)


__all__: List[str] = ['build_backbone', 'read_pretrained_state', 'load_extra_input_channels',
                      'VOSTinyBackbone', 'ResBlock', 'CBAM', 'FeatureFusionBlock',
                      'GLUFusion', 'KeyEncoder', 'ValueEncoder', 'UpsampleBlock', 'Decoder',
                      'soft_aggregate', 'downsample_masks', 'expand_to_objects']
