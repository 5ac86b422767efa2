"""Build a model from its config (no weights loaded, nothing downloaded) and probe one batch.

``probe`` runs a synthetic batch (random uint8 images at the config's input size, as a dataloader
gives them) through the model's own data preprocessor and records, with forward hooks, the
candidate features a distillation method can tap: FPN levels (``neck``), backbone stages
(``backbone``), ViT blocks (``backbone.layers.<i>`` and the final norm) and classification logits.
Each candidate carries its shape and stride (input side / feature side) so that
:mod:`mmkd_plugins.wiring.pairing` can pair student and teacher features.
"""
import copy
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict

from ..distillers.teacher import load_model_config, resolve_config_path


class WiringError(ValueError):
    """A pairing that cannot be wired; the message says why in one line."""


@dataclass
class Candidate:
    """One tappable feature of a probed model."""
    module: str                  # module path
    idx: Optional[int]           # element of a tuple output (FPN level / backbone stage)
    shape: Tuple[int, ...]       # of one probed batch
    kind: str                    # 'map' (B, C, H, W) | 'tokens' (B, P + L, C) | 'logits' (B, K)
    stride: Optional[float] = None   # input side / feature side (maps, tokens)
    channels: int = 0
    prefix_tokens: int = 0
    grid: Optional[Tuple[int, int]] = None

    @property
    def label(self) -> str:
        return self.module + (f'[{self.idx}]' if self.idx is not None else '')

    def tap(self) -> Any:
        return self.module if self.idx is None else dict(module=self.module, idx=self.idx)


@dataclass
class Probe:
    """What probing one model found."""
    config: str
    task: str                    # 'det' | 'seg' | 'cls'
    model_type: str
    backbone_type: str
    input_size: Tuple[int, int]
    two_stage: bool = False
    neck: List[Candidate] = field(default_factory=list)
    backbone: List[Candidate] = field(default_factory=list)
    vit_blocks: List[Candidate] = field(default_factory=list)
    vit_final: Optional[Candidate] = None
    logits: Optional[Candidate] = None
    preprocessor: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_vit(self) -> bool:
        return bool(self.vit_blocks) and self.vit_final is not None

    def describe(self) -> str:
        return f'{self.model_type} ({self.task}, backbone {self.backbone_type})'


def _find_input_size(node: Any) -> Optional[Tuple[int, int]]:
    """First input size named by a pipeline transform (crop / resize), as (H, W)."""
    if isinstance(node, dict):
        kind = node.get('type', '')
        for key in ('crop_size', 'scale', 'img_scale'):
            if key in node and isinstance(kind, str) and any(
                    w in kind for w in ('Crop', 'Resize', 'ResizeEdge')):
                value = node[key]
                if isinstance(value, int):
                    return value, value
                if isinstance(value, (list, tuple)) and len(value) == 2 and all(
                        isinstance(v, int) for v in value):
                    w, h = value  # mmcv / mmdet / mmseg scales are (w, h)
                    return (h, w) if 'Crop' not in kind else (value[0], value[1])
        for key in ('pipeline', 'dataset', 'datasets', 'transforms'):
            if key in node:
                found = _find_input_size(node[key])
                if found:
                    return found
    elif isinstance(node, (list, tuple)):
        for item in node:
            found = _find_input_size(item)
            if found:
                return found
    return None


def config_input_size(cfg: Config) -> Optional[Tuple[int, int]]:
    """The training input size a config's pipeline produces (crop or resize target), (H, W)."""
    for key in ('train_pipeline', 'train_dataloader'):
        if key in cfg:
            found = _find_input_size(cfg[key])
            if found:
                return found
    return None


def build_model(config: str) -> Tuple[nn.Module, dict, Config]:
    """The model of ``config`` (``'pkg::path'`` or a file), built with random weights.

    ``init_weights`` is not called, so no ``Pretrained`` init_cfg is loaded or downloaded.
    """
    from mmengine.registry import MODELS
    file_cfg = Config.fromfile(resolve_config_path(config))
    model_cfg = load_model_config(file_cfg)
    model = MODELS.build(ConfigDict(copy.deepcopy(model_cfg)))
    model.eval()
    return model, model_cfg, file_cfg


def _task(model: nn.Module) -> str:
    root = type(model).__module__.split('.')[0]
    return {'mmdet': 'det', 'mmseg': 'seg', 'mmpretrain': 'cls'}.get(root, root)


def synthetic_batch(size: Tuple[int, int], n: int = 2, seed: int = 0) -> Dict[str, Any]:
    """A raw batch as a dataloader gives it: ``inputs`` = list of uint8 (3, H, W) tensors."""
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8)
                        for _ in range(n)], data_samples=None)


def _preprocess(model: nn.Module, raw: Dict[str, Any]) -> torch.Tensor:
    data = model.data_preprocessor(dict(raw), False)
    return data['inputs']


def _record(model: nn.Module, names: List[str]):
    values: Dict[str, Any] = {}
    modules = dict(model.named_modules())
    handles = []
    for name in names:
        if name in modules:
            handles.append(modules[name].register_forward_hook(
                lambda m, a, out, name=name: values.__setitem__(name, out)))
    return values, handles


def _map_candidate(module: str, idx: Optional[int], t: torch.Tensor, side: int) -> Candidate:
    return Candidate(module, idx, tuple(t.shape), 'map', stride=side / t.shape[-2],
                     channels=t.shape[1])


def _maps(module: str, value: Any, side: int) -> List[Candidate]:
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    out = []
    for i, t in enumerate(items):
        if isinstance(t, torch.Tensor) and t.dim() == 4:
            out.append(_map_candidate(module, i if isinstance(value, (tuple, list)) else None,
                                      t, side))
    return out


def _tokens(module: str, t: torch.Tensor, prefix: int, side: int) -> Candidate:
    n = t.shape[1] - prefix
    g = math.isqrt(max(n, 0))
    grid = (g, g) if g * g == n else None
    return Candidate(module, None, tuple(t.shape), 'tokens',
                     stride=(side / g) if grid else None, channels=t.shape[-1],
                     prefix_tokens=prefix, grid=grid)


def _vit_parts(model: nn.Module) -> Tuple[List[str], Optional[str], int]:
    """Block paths, final-norm path and prefix-token count of a ViT backbone (else [], None, 0)."""
    backbone = getattr(model, 'backbone', None)
    layers = getattr(backbone, 'layers', None)
    if backbone is None or not isinstance(layers, nn.ModuleList) or not hasattr(
            backbone, 'patch_embed') or not hasattr(backbone, 'pos_embed'):
        return [], None, 0
    blocks = [f'backbone.layers.{i}' for i in range(len(layers))]
    final = next((f'backbone.{n}' for n in ('ln1', 'norm', 'pre_norm')
                  if isinstance(getattr(backbone, n, None), nn.LayerNorm)), None)
    prefix = int(getattr(backbone, 'num_extra_tokens', 1))
    return blocks, final, prefix


@torch.no_grad()
def probe(config: str, input_size: Optional[Tuple[int, int]] = None, batch: int = 2) -> Probe:
    """Build ``config``'s model and record its candidate features on one synthetic batch."""
    model, model_cfg, file_cfg = build_model(config)
    size = tuple(input_size) if input_size else config_input_size(file_cfg)
    if not size:
        raise WiringError(f'{config}: cannot find the input size in its train pipeline; give '
                          '--input-size')
    task = _task(model)
    inputs = _preprocess(model, synthetic_batch(size, batch))
    side = inputs.shape[-2]
    result = Probe(config, task, type(model).__name__,
                   type(getattr(model, 'backbone', None)).__name__, (inputs.shape[-2],
                                                                     inputs.shape[-1]),
                   two_stage=hasattr(model, 'rpn_head'),
                   preprocessor=dict(model_cfg.get('data_preprocessor') or {}))
    blocks, final, prefix = _vit_parts(model)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    names = ['backbone', 'neck'] + blocks + ([final] if final else []) + linears
    values, handles = _record(model, names)
    calls: List[str] = []
    order = [m.register_forward_hook(lambda m, a, o, n=n: calls.append(n))
             for n, m in model.named_modules() if n in linears]
    try:
        if task == 'cls':
            logits = model(inputs, mode='tensor')
        elif hasattr(model, 'extract_feat'):
            model.extract_feat(inputs)
            logits = None
        else:
            model(inputs, mode='tensor')
            logits = None
    finally:
        for h in handles + order:
            h.remove()
    if 'neck' in values:
        result.neck = _maps('neck', values['neck'], side)
    if 'backbone' in values and not blocks:
        result.backbone = _maps('backbone', values['backbone'], side)
    result.vit_blocks = [_tokens(b, values[b], prefix, side) for b in blocks if b in values]
    if final and final in values:
        result.vit_final = _tokens(final, values[final], prefix, side)
    if isinstance(logits, torch.Tensor) and logits.dim() == 2:
        # the last Linear called whose output has the logits' shape
        for name in reversed(calls):
            out = values.get(name)
            if isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(logits.shape):
                result.logits = Candidate(name, None, tuple(out.shape), 'logits',
                                          channels=out.shape[-1])
                break
    return result


def candidate_table(p: Probe, role: str) -> List[str]:
    """Printable lines: every candidate with its shape and stride."""
    lines = [f'{role}: {p.config} -> {p.describe()}, input {p.input_size[0]}x{p.input_size[1]}']
    for c in p.neck + p.backbone + p.vit_blocks + ([p.vit_final] if p.vit_final else []) + (
            [p.logits] if p.logits else []):
        stride = f'stride {c.stride:g}' if c.stride else ''
        lines.append(f'  {c.label:<28} {c.kind:<7} {str(c.shape):<22} {stride}')
    return lines
