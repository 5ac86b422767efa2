"""Taps and connectors on a real batch: each tap's shape and stride, each connector's in / out
shapes, and taps that never fire."""
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .report import FAIL, OK, SKIP, Row, row

CHECK_T = 'taps'
CHECK_C = 'connectors'


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return 'x'.join(str(s) for s in value.shape)
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(describe(v) for v in value[:6]) + (', ...' if len(value) > 6 else '') + ']'
    return type(value).__name__


def stride_of(value: Any, input_hw: Optional[Tuple[int, int]]) -> Optional[str]:
    """Input height / feature height (and width) for (N, C, H, W) features, else None."""
    if not isinstance(value, torch.Tensor) or value.dim() != 4 or input_hw is None:
        return None
    sh, sw = input_hw[0] / value.shape[-2], input_hw[1] / value.shape[-1]
    return f'{sh:g}' if sh == sw else f'{sh:g}x{sw:g}'


def _pick(value: Any, spec: Dict[str, Any]) -> Any:
    idx = spec.get('idx')
    if idx is not None and isinstance(value, (list, tuple)) and -len(value) <= idx < len(value):
        return value[idx]
    return value


class _Recorder:
    """Forward hooks (prepended, so they run before the distiller's own) recording values."""

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}
        self.handles = []

    def tap(self, key: str, module: nn.Module, source: str = 'output') -> None:
        if source == 'input':
            def pre(mod, args, key=key):
                self.values[key] = args[0] if len(args) == 1 else args
            self.handles.append(module.register_forward_pre_hook(pre, prepend=True))
        else:
            def post(mod, args, output, key=key):
                self.values[key] = output
            self.handles.append(module.register_forward_hook(post, prepend=True))

    def connector(self, key: str, module: nn.Module) -> None:
        def post(mod, args, output, key=key):
            self.values[key] = (args[0] if len(args) == 1 else args, output)
        self.handles.append(module.register_forward_hook(post))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _tap_sets(model: nn.Module):
    """``[(owner label, module the taps hook into, specs)]`` for student and teacher(s)."""
    out = []
    st = getattr(model, 'student_taps', None)
    if st is not None and hasattr(st, 'specs'):
        out.append(('student', model.student, st.specs))
    slots = getattr(model, 'teacher_slots', None)  # {name: TeacherSlot}; '' = the single teacher
    if isinstance(slots, dict):
        for name, slot in slots.items():
            out.append((f'teacher.{name}' if name else 'teacher', slot.model, slot.taps.specs))
        return out
    tt = getattr(model, 'teacher_taps', None)
    if tt is not None and hasattr(tt, 'specs') and getattr(model, 'teacher', None) is not None:
        out.append(('teacher', model.teacher, tt.specs))
    return out


def check_taps(model: nn.Module, batch: dict) -> List[Row]:
    """One loss-mode forward of ``batch`` with every tap and connector recorded."""
    from mmkd_plugins.distillers.taps import find_module
    sets = _tap_sets(model)
    connectors = getattr(model, 'connectors', None) or {}
    if not sets and not connectors:
        return [row(CHECK_T, '-', SKIP, 'no taps (not a distiller)')]
    rec = _Recorder()
    for owner, root, specs in sets:
        for name, spec in specs.items():
            rec.tap(f'{owner}.{name}', find_module(root, spec['module'], owner), spec['source'])
    for name, conn in connectors.items():
        rec.connector(f'connector.{name}', conn)
    error = None
    data = model.data_preprocessor(batch, True)
    inputs = data['inputs']
    input_hw = tuple(inputs.shape[-2:]) if isinstance(inputs, torch.Tensor) and inputs.dim() == 4 \
        else None
    model.train()
    try:
        model(**data, mode='loss')
    except Exception as err:  # noqa: BLE001 - reported below
        error = f'{type(err).__name__}: {err}'
    finally:
        rec.remove()
        model.zero_grad(set_to_none=True)
    rows = []
    for owner, _, specs in sets:
        for name, spec in specs.items():
            key = f'{owner}.{name}'
            where = f'{spec["source"]} of "{spec["module"]}"' + (
                f'[{spec["idx"]}]' if spec.get('idx') is not None else '')
            if key not in rec.values:
                rows.append(row(CHECK_T, key, FAIL, f'never fired: {where} is not called by the '
                                f'{owner} forward that runs' + (f' ({error})' if error else '')))
                continue
            value = _pick(rec.values[key], spec)
            stride = stride_of(value, input_hw)
            rows.append(row(CHECK_T, key, OK, f'{where}: {describe(value)}' +
                            (f', stride {stride}' if stride else ''),
                            shape=describe(value), stride=stride))
    for name in connectors:
        key = f'connector.{name}'
        if key not in rec.values:
            rows.append(row(CHECK_C, name, FAIL, 'never called in a training forward' +
                            (f' ({error})' if error else '')))
            continue
        x, y = rec.values[key]
        rows.append(row(CHECK_C, name, OK, f'{describe(x)} -> {describe(y)}',
                        input=describe(x), output=describe(y)))
    if error and all(r.status == OK for r in rows):
        rows.append(row(CHECK_T, 'forward', FAIL, f'the training forward failed: {error}'))
    return rows
