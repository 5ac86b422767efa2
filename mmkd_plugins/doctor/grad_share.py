"""Each loss term's value and its share of the student's gradient (one backward per term).

For the loss terms ``L_k`` of a training step (the keys mmengine sums: names containing ``loss``;
a list value is the sum of its means) and the student's parameters ``theta``:

    g_k = dL_k / d theta,    share_k = ||g_k|| / sum_j ||g_j||

(connectors and the teacher are not the student: their parameters are excluded). Over several
batches the norms are averaged first: ``share_k = mean ||g_k|| / sum_j mean ||g_j||``. A loss
weight ``w`` multiplies ``g_k`` by ``w``, which is what :mod:`.calibrate` inverts.
"""
import contextlib
import math
from typing import Dict, Iterable, List, Optional

import torch
import torch.nn as nn


def loss_terms(losses: Dict[str, object]) -> Dict[str, torch.Tensor]:
    """The scalar terms mmengine's ``parse_losses`` sums, by key."""
    terms = {}
    for key, value in losses.items():
        if 'loss' not in key:
            continue
        if isinstance(value, torch.Tensor):
            terms[key] = value.mean()
        elif isinstance(value, (list, tuple)) and value:
            terms[key] = sum(v.mean() for v in value)
    return terms


def is_distill(key: str) -> bool:
    return key.startswith('distill.')


def student_params(model: nn.Module) -> List[nn.Parameter]:
    student = model.student if isinstance(getattr(model, 'student', None), nn.Module) else model
    return [p for p in student.parameters() if p.requires_grad]


def term_grad_norms(terms: Dict[str, torch.Tensor], params: List[nn.Parameter]
                    ) -> Dict[str, float]:
    """``||dL_k / d params||`` for every term (0 for a term with no path to the parameters)."""
    norms = {}
    for key, term in terms.items():
        if not term.requires_grad:
            norms[key] = 0.0
            continue
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        sq = sum((g.detach().float().pow(2).sum() for g in grads if g is not None),
                 torch.zeros(()))
        norms[key] = math.sqrt(float(sq))
    return norms


class ShareMeter:
    """Accumulates per-term values and gradient norms over batches."""

    def __init__(self) -> None:
        self.values: Dict[str, List[float]] = {}
        self.norms: Dict[str, List[float]] = {}

    def add(self, values: Dict[str, float], norms: Dict[str, float]) -> None:
        for k, v in values.items():
            self.values.setdefault(k, []).append(v)
        for k, v in norms.items():
            self.norms.setdefault(k, []).append(v)

    @staticmethod
    def _mean(xs: List[float]) -> float:
        return sum(xs) / len(xs) if xs else float('nan')

    def summary(self) -> Dict[str, Dict[str, float]]:
        """``{term: dict(value, grad_norm, share, distill, finite)}`` (means over batches)."""
        mean_norm = {k: self._mean(v) for k, v in self.norms.items()}
        finite = [v for v in mean_norm.values() if math.isfinite(v)]
        total = sum(finite)
        out = {}
        for k in self.values:
            n = mean_norm.get(k, 0.0)
            ok = all(math.isfinite(x) for x in self.values[k] + self.norms.get(k, []))
            out[k] = dict(value=self._mean(self.values[k]), grad_norm=n,
                          share=(n / total if total > 0 and math.isfinite(n) else float('nan')),
                          distill=is_distill(k), finite=ok)
        return out

    def distill_share(self) -> float:
        s = self.summary()
        return sum(v['share'] for k, v in s.items() if v['distill'])


def measure_batch(model: nn.Module, batch: dict, params: Optional[List[nn.Parameter]] = None,
                  optim_wrapper=None):
    """Forward ``batch`` in loss mode; return ``(terms, values, grad norms)``.

    The graph is kept (``terms`` can still be summed and back-propagated by the caller).
    """
    params = params if params is not None else student_params(model)
    ctx = optim_wrapper.optim_context(model) if optim_wrapper is not None else contextlib.nullcontext()
    with ctx:
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
    terms = loss_terms(losses)
    values = {k: float(v.detach().float()) for k, v in terms.items()}
    norms = term_grad_norms(terms, params)
    return terms, values, norms


def measure_shares(model: nn.Module, batches: Iterable[dict]) -> ShareMeter:
    """Per-term shares over ``batches`` without changing any weight (no optimizer step)."""
    meter = ShareMeter()
    model.train()
    params = student_params(model)
    for batch in batches:
        _, values, norms = measure_batch(model, batch, params)
        meter.add(values, norms)
        model.zero_grad(set_to_none=True)
    return meter
