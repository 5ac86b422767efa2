"""A few real training steps (weights and optimizer state restored afterwards): each loss term's
value and share of the student's gradient; then the same step under autocast."""
import copy
import math
from typing import Dict, Iterable, List

import torch
import torch.nn as nn

from .grad_share import ShareMeter, loss_terms, measure_batch, student_params
from .report import FAIL, OK, SKIP, WARN, Row, row

CHECK = 'loss terms'
CHECK_AMP = 'autocast'
LOW, HIGH = 0.01, 0.90
#: extra forwards of the first batch for a distillation term whose gradient was zero on the steps
REDRAWS = 5


class restored:
    """Context manager: the model's and the optimizer's state are put back on exit."""

    def __init__(self, model: nn.Module, optim_wrapper=None) -> None:
        self.model, self.optim_wrapper = model, optim_wrapper

    def __enter__(self):
        self.model_state = copy.deepcopy(self.model.state_dict())
        self.optim_state = (copy.deepcopy(self.optim_wrapper.state_dict())
                            if self.optim_wrapper is not None else None)
        return self

    def __exit__(self, *exc):
        self.model.load_state_dict(self.model_state)
        if self.optim_wrapper is not None:
            self.optim_wrapper.load_state_dict(self.optim_state)
        self.model.zero_grad(set_to_none=True)
        return False


def train_steps(model: nn.Module, optim_wrapper, batches: Iterable[dict]) -> ShareMeter:
    """Real steps (forward, per-term gradients, ``optim_wrapper.update_params``); the caller
    restores the weights."""
    meter = ShareMeter()
    model.train()
    params = student_params(model)
    for batch in batches:
        terms, values, norms = measure_batch(model, batch, params, optim_wrapper)
        meter.add(values, norms)
        total = sum(terms.values())
        if isinstance(total, torch.Tensor) and total.requires_grad:
            optim_wrapper.update_params(total)
    return meter


def redrawn_grad_norms(model: nn.Module, batch: dict, keys: List[str]) -> Dict[str, float]:
    """The largest gradient norm of each term in ``keys`` over :data:`REDRAWS` more forwards of
    ``batch`` (no optimizer step). A term with a random part (MGD's mask) can have no gradient in
    one draw when the mask blanks a whole small map (e.g. RetinaNet's 2x2 P7 on a tiny image); a
    detached or frozen path has none in any draw."""
    best = {k: 0.0 for k in keys}
    params = student_params(model)
    for _ in range(REDRAWS):
        _, _, norms = measure_batch(model, batch, params)
        model.zero_grad(set_to_none=True)
        for k in keys:
            best[k] = max(best[k], norms.get(k, 0.0))
        if all(v > 0 for v in best.values()):
            break
    return best


def _distill_losses(model: nn.Module) -> Dict[str, nn.Module]:
    """The model's ``distill_losses`` (empty when it has none)."""
    losses = getattr(model, 'distill_losses', None)
    return dict(losses.items()) if isinstance(losses, nn.ModuleDict) else {}


def inactive_terms(model: nn.Module) -> Dict[str, str]:
    """``{'distill.<name>': loss type}`` of the distillation losses that are off at this point of
    their schedule: a loss module whose ``active`` property is False (``UniBCTLoss`` before
    ``UniBCTPrototypeHook`` first sets its prototypes) returns a zero term by design."""
    return {f'distill.{name}': type(loss).__name__ for name, loss in _distill_losses(model).items()
            if getattr(loss, 'active', True) is False}


def unhooked_terms(model: nn.Module, hooks=()) -> Dict[str, str]:
    """``{'distill.<name>': hook type}`` of the losses switched on by a hook (their
    ``activated_by``) when no hook of that type is registered: such a term stays 0 for ever."""
    registered = {type(h).__name__ for h in hooks}
    return {f'distill.{name}': loss.activated_by for name, loss in _distill_losses(model).items()
            if getattr(loss, 'activated_by', None) and loss.activated_by not in registered}


def share_rows(summary, redrawn: Dict[str, float] = None,
               inactive: Dict[str, str] = None, unhooked: Dict[str, str] = None) -> List[Row]:
    redrawn, inactive, unhooked = redrawn or {}, inactive or {}, unhooked or {}
    has_task = any(not s['distill'] for s in summary.values())
    rows = []
    for key, s in summary.items():
        detail = (f'value {s["value"]:.4g}, gradient norm {s["grad_norm"]:.3g}, '
                  f'{100 * s["share"]:.1f} % of the student\'s gradient')
        data = dict(value=s['value'], grad_norm=s['grad_norm'], share=s['share'],
                    distill=s['distill'])
        if not s['finite']:
            rows.append(row(CHECK, key, FAIL, f'NaN/Inf: {detail}', **data))
        elif s['distill'] and s['grad_norm'] == 0 and key in inactive and key in unhooked:
            rows.append(row(CHECK, key, FAIL, f'{detail}: {inactive[key]} is off until '
                            f'{unhooked[key]} switches it on, and the config has no '
                            f'{unhooked[key]} in custom_hooks: it would never train the student',
                            inactive=True, **data))
        elif s['distill'] and s['grad_norm'] == 0 and key in inactive:
            rows.append(row(CHECK, key, SKIP, f'{detail}: {inactive[key]} is off at this point of '
                            'its schedule (its "active" is False, e.g. UniBCT before its first '
                            'prototype refresh): its gradient cannot be checked before it is on',
                            inactive=True, **data))
        elif s['distill'] and s['grad_norm'] == 0 and redrawn.get(key, 0) > 0:
            rows.append(row(CHECK, key, WARN, f'{detail} on the measured steps, but gradient norm '
                            f'{redrawn[key]:.3g} on a re-draw of the same batch: a random part of '
                            'the term (e.g. MGD\'s mask on a tiny map) blanked it once; not a '
                            'wiring error', redraw_grad_norm=redrawn[key], **data))
        elif s['distill'] and s['grad_norm'] == 0:
            rows.append(row(CHECK, key, FAIL, f'{detail}: a distillation term with NO gradient on '
                            'the student (detached input, or a frozen path)', **data))
        elif s['distill'] and s['share'] < LOW:
            rows.append(row(CHECK, key, WARN, f'{detail}: under {100 * LOW:.0f} %, it barely '
                            'trains the student (raise its weight; mmkd-doctor --calibrate)', **data))
        elif s['distill'] and s['share'] > HIGH and not has_task:
            rows.append(row(CHECK, key, OK, f'{detail} (the model has no task loss: the '
                            'distillation terms are its whole objective)', **data))
        elif s['distill'] and s['share'] > HIGH:
            rows.append(row(CHECK, key, WARN, f'{detail}: over {100 * HIGH:.0f} %, it drowns the '
                            'task loss (lower its weight; mmkd-doctor --calibrate)', **data))
        else:
            rows.append(row(CHECK, key, OK, detail, **data))
    if not rows:
        rows.append(row(CHECK, '-', FAIL, 'the model returned no loss term'))
    return rows


def check_steps(model: nn.Module, optim_wrapper, batches: List[dict], hooks=()) -> List[Row]:
    with restored(model, optim_wrapper):
        try:
            meter = train_steps(model, optim_wrapper, batches)
            summary = meter.summary()
            inactive = inactive_terms(model)
            dead = [k for k, s in summary.items()
                    if s['distill'] and s['finite'] and s['grad_norm'] == 0 and k not in inactive]
            redrawn = redrawn_grad_norms(model, batches[0], dead) if dead else {}
        except Exception as err:  # noqa: BLE001 - reported
            return [row(CHECK, 'training step', FAIL, f'{type(err).__name__}: {err}')]
    return share_rows(summary, redrawn, inactive, unhooked_terms(model, hooks))


def check_autocast(model: nn.Module, batch: dict) -> List[Row]:
    """Forward + backward of one batch under autocast (bf16 on CPU, fp16 on CUDA); NaN/Inf FAIL.

    An autocast error on CPU is a WARN (CPU bf16 kernels are not what a GPU run uses); on a GPU it
    is a FAIL.
    """
    params = student_params(model)
    device = params[0].device if params else torch.device('cpu')
    dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    label = f'{device.type} {str(dtype).replace("torch.", "")}'
    with restored(model):
        model.train()
        try:
            with torch.autocast(device_type=device.type, dtype=dtype):
                data = model.data_preprocessor(batch, True)
                losses = model(**data, mode='loss')
            terms = loss_terms(losses)
            total = sum(t.float() for t in terms.values())
            total.backward()
        except Exception as err:  # noqa: BLE001
            status = WARN if device.type == 'cpu' else FAIL
            return [row(CHECK_AMP, label, status, f'the step does not run under autocast: '
                        f'{type(err).__name__}: {str(err)[:300]}')]
        bad = [k for k, t in terms.items() if not math.isfinite(float(t.detach().float()))]
        bad_grads = [n for n, p in model.named_parameters()
                     if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad or bad_grads:
        return [row(CHECK_AMP, label, FAIL, f'NaN/Inf under autocast: terms {bad}, gradients of '
                    f'{bad_grads[:5]}', terms=bad, grads=bad_grads[:20])]
    shown = ', '.join(f'{k}={float(t.detach().float()):.4g}' for k, t in terms.items())
    return [row(CHECK_AMP, label, OK, f'finite losses and gradients: {shown}')]
