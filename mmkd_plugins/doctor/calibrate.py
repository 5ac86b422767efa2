"""Loss-weight calibration: scale every distillation term's weight by one factor ``c`` so that the
distillation terms carry a target share of the student's gradient.

With ``S_D`` the summed mean gradient norms of the distillation terms and ``S_T`` those of the
other (task) terms (see :mod:`.grad_share`), a weight ``w -> c w`` scales ``S_D`` by ``c``, so

    share(c) = c S_D / (S_T + c S_D) = target   <=>   c = target S_T / ((1 - target) S_D).

One factor keeps the ratios between the distillation terms (the method's own balance) unchanged.
"""
import inspect
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

# which constructor argument weights which term of a loss (when it is not ``loss_weight``)
WEIGHT_ARGS = {
    'MGDLoss': 'alpha_mgd',
    'ViTKDLoss': {'loss_vitkd_low': 'alpha_vitkd', 'loss_vitkd_gen': 'beta_vitkd'},
}


def _default(loss_type: str, arg: str) -> Optional[float]:
    from mmengine.registry import MODELS
    cls = MODELS.get(loss_type) if isinstance(loss_type, str) else None
    if cls is not None and not inspect.isclass(cls) and hasattr(cls, 'resolve'):
        cls = cls.resolve()  # a lazy registry entry of mmkd_plugins
    if cls is None:
        return None
    param = inspect.signature(cls.__init__).parameters.get(arg)
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return float(param.default)


def weight_of(term: str, losses_cfg: Dict[str, Any]) -> Optional[Tuple[str, str, float]]:
    """``(loss name, argument, current value)`` weighting the term ``distill.<loss>[.<sub>]``."""
    parts = term.split('.')
    if len(parts) < 2 or parts[0] != 'distill' or parts[1] not in losses_cfg:
        return None
    loss_name, sub = parts[1], (parts[2] if len(parts) > 2 else None)
    cfg = dict(losses_cfg[loss_name])
    arg = WEIGHT_ARGS.get(cfg.get('type'), 'loss_weight')
    if isinstance(arg, dict):
        arg = arg.get(sub)
        if arg is None:
            return None
    value = cfg.get(arg)
    if value is None:
        value = _default(cfg.get('type'), arg)
    if value is None:
        return None
    return loss_name, arg, float(value)


def scale_factor(summary: Dict[str, Dict[str, float]], target: float) -> float:
    if not 0.0 < target < 1.0:
        raise ValueError(f'the target share must be in (0, 1), got {target}')
    s_d = sum(v['grad_norm'] for v in summary.values() if v['distill'])
    s_t = sum(v['grad_norm'] for v in summary.values() if not v['distill'])
    if s_d <= 0:
        raise ValueError('the distillation terms have no gradient on the student: nothing to scale')
    if s_t <= 0:
        raise ValueError('no task loss with a gradient on the student: the share of the '
                         'distillation terms is 100 % whatever their weights')
    return target * s_t / ((1.0 - target) * s_d)


def propose(summary: Dict[str, Dict[str, float]], losses_cfg: Dict[str, Any], target: float
            ) -> Dict[str, Any]:
    """The proposal: factor, per-argument old / new weights, and terms without a known weight."""
    factor = scale_factor(summary, target)
    changes: Dict[Tuple[str, str], Dict[str, float]] = {}
    unknown = []
    for term, s in summary.items():
        if not s['distill']:
            continue
        found = weight_of(term, losses_cfg)
        if found is None:
            unknown.append(term)
            continue
        loss_name, arg, value = found
        changes[(loss_name, arg)] = dict(old=value, new=value * factor)
    current = sum(v['share'] for v in summary.values() if v['distill'])
    return dict(target=target, measured=current, factor=factor,
                changes=[dict(loss=k[0], arg=k[1], **v) for k, v in changes.items()],
                unknown=unknown)


def cfg_options(proposal: Dict[str, Any]) -> List[str]:
    """``--cfg-options`` items applying the proposal."""
    return [f'model.distill_losses.{c["loss"]}.{c["arg"]}={c["new"]:.6g}'
            for c in proposal['changes']]


def config_text(proposal: Dict[str, Any], base_config: str) -> str:
    """A config that inherits ``base_config`` and changes only the weights."""
    lines = [f'# Loss weights calibrated by mmkd-doctor --calibrate {proposal["target"]:g}: the '
             f'distillation terms carried {100 * proposal["measured"]:.1f} % of the student\'s',
             f'# gradient; every distillation weight is scaled by {proposal["factor"]:.4g} to give '
             f'{100 * proposal["target"]:.0f} %.',
             f'_base_ = [{osp.abspath(base_config)!r}]' if '::' not in base_config
             else f'_base_ = [{base_config!r}]']
    by_loss: Dict[str, List[str]] = {}
    for c in proposal['changes']:
        by_loss.setdefault(c['loss'], []).append(
            f'{c["arg"]}={c["new"]:.6g}')  # was c["old"]
    items = ',\n        '.join(f'{loss}=dict({", ".join(args)})' for loss, args in by_loss.items())
    lines.append(f'model = dict(\n    distill_losses=dict(\n        {items}))')
    return '\n'.join(lines) + '\n'


def diff_lines(proposal: Dict[str, Any]) -> List[str]:
    """``model.distill_losses.x.arg: old -> new`` lines for the console."""
    out = [f'model.distill_losses.{c["loss"]}.{c["arg"]}: {c["old"]:.6g} -> {c["new"]:.6g}'
           for c in proposal['changes']]
    out += [f'{t}: no known weight argument; scale it by {proposal["factor"]:.4g} by hand'
            for t in proposal['unknown']]
    return out
