"""Preprocessing check: the teacher's training-config data preprocessor and input size against the
student's (mean, std, channel order, padding, input size)."""
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .report import FAIL, OK, SKIP, Row, row

CHECK = 'preprocessing'


def _vector(module: nn.Module, name: str) -> Optional[Tuple[float, ...]]:
    if not getattr(module, '_enable_normalize', False):
        return None
    value = getattr(module, name, None)
    if isinstance(value, torch.Tensor):
        return tuple(round(float(x), 4) for x in value.flatten())
    return None


def _channel_order(module: nn.Module) -> str:
    for attr in ('_channel_conversion', 'channel_conversion', 'to_rgb', 'bgr_to_rgb'):
        if hasattr(module, attr):
            return 'bgr_to_rgb' if bool(getattr(module, attr)) else 'as loaded'
    return 'as loaded'


def preprocessor_summary(module: nn.Module) -> Dict[str, Any]:
    """What a built data preprocessor does to a batch (the fields users set in configs)."""
    size = getattr(module, 'size', None)
    return dict(type=type(module).__name__, mean=_vector(module, 'mean'),
                std=_vector(module, 'std'), channel_order=_channel_order(module),
                pad_size_divisor=getattr(module, 'pad_size_divisor',
                                         getattr(module, 'size_divisor', None)),
                size=tuple(size) if isinstance(size, (tuple, list)) else size)


def _size(value) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return value


def pipeline_input_size(cfg) -> Optional[Any]:
    """The image size the test pipeline of a config gives: the last crop or resize, else None."""
    loader = cfg.get('val_dataloader') or cfg.get('test_dataloader')
    pipeline = None
    if loader is not None:
        pipeline = (loader.get('dataset') or {}).get('pipeline')
    pipeline = pipeline or cfg.get('test_pipeline') or cfg.get('val_pipeline')
    size = None
    for t in pipeline or []:
        t = dict(t)
        kind = t.get('type', '')
        if kind in ('CenterCrop', 'RandomCrop') and 'crop_size' in t:
            size = ('crop', _size(t['crop_size']))
        elif kind in ('Resize', 'RandomResize') and 'scale' in t:
            size = ('resize', _size(t['scale']))
        elif kind == 'ResizeEdge' and 'scale' in t:
            size = (f'resize {t.get("edge", "short")} edge', _size(t['scale']))
    return size


def _teacher_file_config(teacher_cfg):
    """The teacher's training config (a Config) when the teacher is given as a file, else None."""
    if not isinstance(teacher_cfg, str):
        return None
    from mmengine.config import Config

    from mmkd_plugins.distillers.teacher import resolve_config_path
    return Config.fromfile(resolve_config_path(teacher_cfg))


def _declares_preprocessor(teacher_cfg, file_cfg) -> bool:
    if file_cfg is not None:
        return file_cfg.get('data_preprocessor') is not None or (
            file_cfg.get('model') or {}).get('data_preprocessor') is not None
    return isinstance(teacher_cfg, dict) and teacher_cfg.get('data_preprocessor') is not None


def compare(student: Dict[str, Any], teacher: Dict[str, Any]) -> List[str]:
    """Names of the fields that differ (sizes are compared only when both are known)."""
    diffs = []
    for key in ('mean', 'std', 'channel_order', 'pad_size_divisor', 'size', 'input_size'):
        s, t = student.get(key), teacher.get(key)
        if key in ('size', 'input_size') and (s is None or t is None):
            continue
        if s != t:
            diffs.append(f'{key}: student {s} vs teacher {t}')
    return diffs


def check_preprocessing(model: nn.Module, cfg, teachers: List[Tuple[str, nn.Module]],
                        specs: Dict[str, Dict[str, Any]]) -> List[Row]:
    if not teachers:
        return [row(CHECK, '-', SKIP, 'no teacher in this config')]
    student = preprocessor_summary(model.data_preprocessor)
    student['input_size'] = pipeline_input_size(cfg)
    rows = []
    for name, teacher in teachers:
        spec = specs.get(name, {})
        try:
            file_cfg = _teacher_file_config(spec.get('config'))
        except Exception as err:  # noqa: BLE001
            rows.append(row(CHECK, name, FAIL, f'cannot read the teacher config: {err}'))
            continue
        if spec.get('data_preprocessor') is not None:
            rows.append(row(CHECK, name, OK, 'the teacher has its own data preprocessor '
                            f'(teacher_data_preprocessor={spec["data_preprocessor"]!r}): inputs are '
                            'prepared for it, not compared', student=student))
            continue
        if not _declares_preprocessor(spec.get('config'), file_cfg):
            rows.append(row(CHECK, name, SKIP, 'the teacher config declares no data_preprocessor: '
                            'nothing to compare (it is fed the student\'s)', student=student))
            continue
        theirs = preprocessor_summary(teacher.data_preprocessor)
        theirs['input_size'] = pipeline_input_size(file_cfg) if file_cfg is not None else None
        diffs = compare(student, theirs)
        if diffs:
            rows.append(row(CHECK, name, FAIL, 'the teacher was trained with other inputs than the '
                            'student gives it: ' + '; '.join(diffs) + '. Give the teacher its own '
                            'preprocessing (model.teacher_data_preprocessor=\'teacher\') or align '
                            'the student\'s', student=student, teacher=theirs))
        else:
            rows.append(row(CHECK, name, OK, f'same mean/std ({student["mean"]}/{student["std"]}), '
                            f'channel order ({student["channel_order"]}), padding '
                            f'({student["pad_size_divisor"]}) and input size '
                            f'({student["input_size"]})', student=student, teacher=theirs))
    return rows
