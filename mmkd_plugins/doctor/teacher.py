"""Teacher checks: where its weights came from, that every tensor holds the file's value, and its
own metric on the first validation batches against the config's ``teacher_expected``."""
import math
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from .report import FAIL, OK, SKIP, WARN, Row, row

CHECK_W = 'teacher weights'
CHECK_M = 'teacher metric'


def teacher_specs(model_cfg: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """``{name: dict(config, ckpt, data_preprocessor, allow_random)}`` of the config's teachers."""
    if model_cfg.get('teachers'):
        return {name: dict(config=spec.get('config'), ckpt=spec.get('ckpt'),
                           data_preprocessor=spec.get('data_preprocessor'),
                           allow_random=model_cfg.get('allow_random_teacher', False))
                for name, spec in model_cfg['teachers'].items()}
    if model_cfg.get('teacher') is None:
        return {}
    return {'teacher': dict(config=model_cfg['teacher'], ckpt=model_cfg.get('teacher_ckpt'),
                            data_preprocessor=model_cfg.get('teacher_data_preprocessor'),
                            allow_random=model_cfg.get('allow_random_teacher', False))}


def check_teacher_weights(name: str, teacher: nn.Module, spec: Dict[str, Any],
                          unsafe: Optional[bool] = None) -> List[Row]:
    """FAIL when the teacher is random or any of its tensors differs from its checkpoint file."""
    ckpt = spec.get('ckpt')
    own = teacher.state_dict()
    if not ckpt:
        return [row(CHECK_W, name, FAIL, f'no checkpoint: the teacher has random weights '
                    f'(teacher_ckpt=None, allow_random_teacher={spec.get("allow_random")}); set '
                    'model.teacher_ckpt=PATH_OR_URL')]
    from mmkd_plugins.distillers.teacher import read_state_dict
    state = read_state_dict(ckpt, unsafe)
    missing = [k for k in own if k not in state]
    differ = [k for k, v in own.items() if k in state and not (
        hasattr(state[k], 'shape') and tuple(state[k].shape) == tuple(v.shape)
        and torch.equal(state[k].to(v.dtype).cpu(), v.detach().cpu()))]
    n_ok = len(own) - len(missing) - len(differ)
    detail = f'{n_ok}/{len(own)} tensors equal to {ckpt}'
    if missing or differ:
        return [row(CHECK_W, name, FAIL, f'{detail}; not loaded: {missing[:5]}, different from the '
                    f'file: {differ[:5]}', loaded=n_ok, total=len(own))]
    return [row(CHECK_W, name, OK, detail, loaded=n_ok, total=len(own), source=ckpt)]


def _plain(value):
    return value.to_dict() if hasattr(value, 'to_dict') else dict(value)


def _expected(cfg, name: str, several: bool) -> Optional[Dict[str, Any]]:
    """``teacher_expected`` of teacher ``name``: the dict itself for a single teacher; with
    several teachers, its entry ``name`` (``teacher_expected=dict(<name>=dict(metric, value,
    tol), ...)``; a teacher without entry has no expectation)."""
    expected = cfg.get('teacher_expected')
    if expected is None:
        return None
    expected = _plain(expected)
    if several:
        entry = expected.get(name)
        return None if entry is None else _plain(entry)
    return expected


def default_tol(value: float) -> float:
    """Tolerance when ``teacher_expected`` gives none: 5 % of the value (a few batches are a small
    sample), at least 1 point."""
    return max(1.0, 0.05 * abs(value))


def check_teacher_metric(name: str, metrics: Dict[str, Any], seen: int,
                         expected: Optional[Dict[str, Any]]) -> List[Row]:
    shown = ', '.join(f'{k}={v:.4g}' if isinstance(v, (int, float)) else f'{k}={v}'
                      for k, v in metrics.items())
    if expected is None:
        return [row(CHECK_M, name, OK, f'{shown} on {seen} validation samples (no teacher_expected '
                    'in the config: nothing to compare)', metrics=metrics, samples=seen)]
    key, value = expected['metric'], float(expected['value'])
    tol = float(expected.get('tol') or default_tol(value))
    if key not in metrics:
        return [row(CHECK_M, name, FAIL, f'teacher_expected names metric "{key}" but the '
                    f'evaluator gives {sorted(metrics)}', metrics=metrics)]
    got = float(metrics[key])
    data = dict(metrics=metrics, samples=seen, expected=value, tol=tol, measured=got)
    base = f'{key}={got:.4g} on {seen} validation samples, expected {value:.4g} +- {tol:.3g}'
    if not math.isfinite(got) or got < value - tol:
        return [row(CHECK_M, name, FAIL, f'{base}: the teacher is far below its official number '
                    '(random or wrong weights, or inputs preprocessed for another model)', **data)]
    if got > value + tol:
        return [row(CHECK_M, name, WARN, f'{base}: above the expectation (a few batches, or '
                    'another data split?)', **data)]
    return [row(CHECK_M, name, OK, base, **data)]


def run_teacher_checks(runner, model: nn.Module, cfg, batches: int) -> List[Row]:
    """Weights and metric rows of every teacher of a distiller (SKIP rows without teacher)."""
    from mmkd_plugins.engine.loops.teacher_eval import (NoTeacherMetric, evaluate_teacher,
                                                        teacher_input_preprocessor, teachers_of)
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    specs = teacher_specs(model_cfg)
    teachers = teachers_of(model)
    if not specs or not teachers:
        return [row(CHECK_W, '-', SKIP, 'no teacher in this config')]
    rows = []
    unsafe = True if model_cfg.get('teacher_unsafe_load') else None
    val_loader_cfg = cfg.get('val_dataloader')
    loader = evaluator = None
    if val_loader_cfg is not None and cfg.get('val_evaluator') is not None:
        loader = runner.build_dataloader(val_loader_cfg)
        evaluator = runner.build_evaluator(cfg.val_evaluator)
        if hasattr(loader.dataset, 'metainfo'):
            evaluator.dataset_meta = loader.dataset.metainfo
    for name, teacher in teachers:
        spec = specs.get(name, {})
        try:
            rows += check_teacher_weights(name, teacher, spec, unsafe)
        except Exception as err:  # noqa: BLE001 - reported, not raised
            rows.append(row(CHECK_W, name, FAIL, f'cannot read the checkpoint: {err}'))
        if loader is None:
            rows.append(row(CHECK_M, name, SKIP, 'no val_dataloader / val_evaluator'))
            continue
        try:
            if len(teachers) == 1:
                pre = teacher_input_preprocessor(model, spec.get('data_preprocessor'))
            else:
                dp = spec.get('data_preprocessor')
                pre = (teacher.data_preprocessor if dp == 'teacher' else
                       teacher_input_preprocessor(model, dp))
            metrics, seen = evaluate_teacher(teacher, pre, loader, evaluator, batches)
        except NoTeacherMetric as err:
            rows.append(row(CHECK_M, name, SKIP, f'{err}: nothing to score the teacher with'))
            continue
        except Exception as err:  # noqa: BLE001
            rows.append(row(CHECK_M, name, FAIL, f'evaluating the teacher failed: '
                            f'{type(err).__name__}: {err}'))
            continue
        expected = _expected(cfg, name, several=bool(model_cfg.get('teachers')))
        rows += check_teacher_metric(name, metrics, seen, expected)
    return rows
