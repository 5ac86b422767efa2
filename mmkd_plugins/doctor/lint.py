"""Config lint: mmcv-1.x keys that mmengine ignores, unknown distiller arguments, loss inputs that
nothing produces. Reads the config only (nothing is built)."""
import difflib
import inspect
import re
from typing import Any, Dict, List, Optional

from .report import FAIL, OK, WARN, Row, row

CHECK = 'lint'

# top-level keys of mmcv-1.x configs that mmengine's Runner never reads: the setting is silently lost
MMCV1_KEYS = {
    'optimizer': 'optim_wrapper=dict(optimizer=...)',
    'optimizer_config': 'optim_wrapper=dict(clip_grad=...) / AmpOptimWrapper',
    'lr_config': 'param_scheduler=[...]',
    'momentum_config': 'param_scheduler=[...] (momentum schedulers)',
    'runner': 'train_cfg=dict(by_epoch=..., max_epochs / max_iters=...)',
    'total_epochs': 'train_cfg=dict(max_epochs=...)',
    'evaluation': 'val_cfg / val_evaluator / train_cfg.val_interval',
    'checkpoint_config': 'default_hooks.checkpoint',
    'log_config': 'default_hooks.logger (+ visualizer)',
    'workflow': 'train_cfg / val_cfg',
    'data': 'train_dataloader / val_dataloader / test_dataloader',
    'dist_params': 'env_cfg.dist_cfg',
    'fp16': 'optim_wrapper=dict(type="AmpOptimWrapper") or --amp',
    'resume_from': 'resume=True + load_from',
    'gpu_ids': 'the launcher (tools/dist_train.sh)',
    'custom_hooks_config': 'custom_hooks',
}

# teacher.<tap>, teacher.<name>.<tap> (several teachers), student.<tap>, optionally inside conn(...)
_SOURCE = re.compile(r'^\s*(?:(?P<conn>\w+)\(\s*)?(?P<side>student|teacher)'
                     r'(?:\.(?P<name>\w+))?\.(?P<tap>\w+)(?(conn)\s*\))\s*$')
SPECIAL_SOURCES = ('gt_labels', 'data_samples')


def _close(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f' (did you mean {", ".join(close)}?)' if close else ''


def lint_top_level(cfg) -> List[Row]:
    rows = []
    for key, new in MMCV1_KEYS.items():
        if key == 'optimizer' and 'optim_wrapper' in cfg:
            continue  # mmseg 1.x configs name the optimizer first, then use it in optim_wrapper
        if key in cfg:
            rows.append(row(CHECK, key, FAIL, f'mmcv-1.x key "{key}" is ignored by mmengine\'s '
                            f'Runner: its setting is silently lost; use {new}'))
    rows += _lint_expected(cfg)
    return rows


def _bad_expectation(expected: Any) -> bool:
    return not isinstance(expected, dict) or not {'metric', 'value'} <= set(expected) or bool(
        set(expected) - {'metric', 'value', 'tol'})


def _lint_expected(cfg) -> List[Row]:
    """``teacher_expected``: dict(metric, value, tol) for a single teacher; with several teachers
    (``model.teachers``) a dict of those keyed by teacher name (only known names)."""
    expected = cfg.get('teacher_expected')
    if expected is None:
        return []
    model = cfg.get('model')
    names = list((model.get('teachers') or {}) if isinstance(model, dict) else {})
    if not names:
        if _bad_expectation(expected):
            return [row(CHECK, 'teacher_expected', FAIL,
                        'teacher_expected must be dict(metric=..., value=..., tol=...) '
                        f'(tol optional), got {expected!r}')]
        return []
    if not isinstance(expected, dict):
        return [row(CHECK, 'teacher_expected', FAIL, 'with several teachers, teacher_expected '
                    f'must be dict(<teacher name>=dict(metric=..., value=..., tol=...)), got '
                    f'{expected!r}')]
    rows = []
    for name, entry in expected.items():
        if name not in names:
            rows.append(row(CHECK, 'teacher_expected', FAIL, f'teacher_expected names teacher '
                            f'"{name}", which model.teachers does not have{_close(name, names)}'))
        elif _bad_expectation(entry):
            rows.append(row(CHECK, 'teacher_expected', FAIL, f'teacher_expected["{name}"] must '
                            f'be dict(metric=..., value=..., tol=...) (tol optional), got '
                            f'{entry!r}'))
    return rows


def _distiller_class(model_type: Any):
    from mmengine.registry import MODELS
    try:
        from mmkd_plugins.distillers.single_teacher import SingleTeacherDistiller
    except ImportError:  # pragma: no cover - the package is always importable
        return None
    if inspect.isclass(model_type):
        cls = model_type
    else:
        cls = MODELS.get(model_type) if isinstance(model_type, str) else None
        if cls is not None and not inspect.isclass(cls) and hasattr(cls, 'resolve'):
            cls = cls.resolve()  # a lazy registry entry of mmkd_plugins
    if inspect.isclass(cls) and issubclass(cls, SingleTeacherDistiller):
        return cls
    return None


def _tap_names(taps: Optional[dict]) -> set:
    return set((taps or {}).keys())


def lint_distiller(model: Dict[str, Any]) -> List[Row]:
    """Unknown arguments of a distiller config and loss inputs that no tap / connector produces."""
    cls = _distiller_class(model.get('type'))
    if cls is None:
        return []
    rows = []
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    allowed = set(params) - {'self'}
    for key in model:
        if key in ('type', '_scope_', '_delete_') or key in allowed or takes_kwargs:
            continue
        rows.append(row(CHECK, f'model.{key}', FAIL, f'{cls.__name__} has no argument "{key}"'
                        f'{_close(key, allowed)}; building the model will fail'))
    student_taps = _tap_names(model.get('student_taps'))
    teacher_taps = _tap_names(model.get('teacher_taps'))
    teachers = {name: _tap_names((spec or {}).get('taps'))
                for name, spec in (model.get('teachers') or {}).items()}
    connectors = set((model.get('connectors') or {}).keys())
    used_taps, used_conns = set(), set()
    for loss_name, loss_cfg in (model.get('distill_losses') or {}).items():
        inputs = (loss_cfg or {}).get('inputs') or {}
        if not inputs:
            rows.append(row(CHECK, f'distill_losses.{loss_name}', FAIL,
                            'no inputs=dict(arg=source, ...): the loss gets nothing'))
        for arg, source in inputs.items():
            where = f'distill_losses.{loss_name}.inputs.{arg}'
            if source in SPECIAL_SOURCES:
                continue
            m = _SOURCE.match(str(source))
            if m is None:
                rows.append(row(CHECK, where, FAIL, f'cannot parse source {source!r}'))
                continue
            conn, side, name, tap = m.group('conn', 'side', 'name', 'tap')
            if side == 'student':
                declared, owner = student_taps, 'student_taps'
                if name is not None:
                    rows.append(row(CHECK, where, FAIL, f'{source!r}: student sources are '
                                    '"student.<tap>"'))
                    continue
            elif name is not None:
                if name not in teachers:
                    rows.append(row(CHECK, where, FAIL, f'{source!r}: no teacher "{name}" in '
                                    f'teachers{_close(name, teachers)}'))
                    continue
                declared, owner = teachers[name], f'teachers.{name}.taps'
            else:
                if model.get('teacher') is None:
                    rows.append(row(CHECK, where, FAIL, f'{source!r} but the config has no teacher'))
                    continue
                declared, owner = teacher_taps, 'teacher_taps'
            used_taps.add((side, name, tap))
            if tap not in declared:
                rows.append(row(CHECK, where, FAIL, f'{source!r}: nothing produces it: no tap '
                                f'"{tap}" in {owner} {sorted(declared)}{_close(tap, declared)}'))
            if conn is not None:
                used_conns.add(conn)
                if conn not in connectors:
                    rows.append(row(CHECK, where, FAIL, f'{source!r}: no connector "{conn}" in '
                                    f'connectors {sorted(connectors)}{_close(conn, connectors)}'))
    for tap in sorted(student_taps):
        if ('student', None, tap) not in used_taps:
            rows.append(row(CHECK, f'student_taps.{tap}', WARN, 'declared but no loss uses it'))
    for tap in sorted(teacher_taps):
        if ('teacher', None, tap) not in used_taps:
            rows.append(row(CHECK, f'teacher_taps.{tap}', WARN, 'declared but no loss uses it'))
    for conn in sorted(connectors - used_conns):
        rows.append(row(CHECK, f'connectors.{conn}', WARN,
                        'declared but no loss uses it: it is trained for nothing'))
    return rows


def lint_config(cfg) -> List[Row]:
    """All lint rows of a config; one OK row when there is nothing to say."""
    model = cfg.get('model')
    model = model.to_dict() if hasattr(model, 'to_dict') else dict(model or {})
    rows = lint_top_level(cfg) + lint_distiller(model)
    if not rows:
        rows.append(row(CHECK, 'config', OK, 'no mmcv-1.x keys, distiller arguments and loss '
                        'inputs consistent'))
    return rows
