"""Building a frozen teacher from a config (any OpenMMLab scope) and a checkpoint (path or URL)."""
import contextlib
import copy
import os.path as osp
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODELS

from ..utils import require
from ..utils.checkpoint_files import check_checkpoint_file
from ..utils.config_paths import PREFIX as CONFIG_PREFIX
from ..utils.config_paths import resolve_config
from ..utils.safe_load import unsafe_load


def resolve_config_path(path: str) -> str:
    """``'mmdet::retinanet/x.py'`` -> the file inside the installed package's ``.mim/configs``.

    ``'mmkd_plugins::demo/x.py'`` -> this project's config. Plain paths are returned unchanged.
    Nothing is installed or downloaded.
    """
    if path.startswith(CONFIG_PREFIX):
        return resolve_config(path)
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file not found: {path}')
        return path
    package, rel = path.split('::', 1)
    module = require(package, f'the config {path}')
    full = osp.join(osp.dirname(module.__file__), '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise FileNotFoundError(f'{path}: {package} has no config "{rel}" (looked for {full})')
    return full


def with_scope_of_type(model_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Give a model dict whose type names its repo (``'mmpretrain.ImageClassifier'``) that repo as
    ``_scope_`` (unless it has one), and return it.

    mmengine looks the *type* up in the named repo, but the parts the model builds itself (an
    ``ImageClassifier`` without a ``data_preprocessor`` type builds ``'ClsDataPreprocessor'``) are
    looked up in the run's default scope; with ``_scope_`` they are looked up in the model's own repo,
    as for a model read from a config file. The run's scope (a detection run with a classification
    teacher) then cannot change what the model is built from.
    """
    model_type = model_cfg.get('type')
    if isinstance(model_type, str) and '.' in model_type and '_scope_' not in model_cfg:
        model_cfg['_scope_'] = model_type.split('.', 1)[0]
    return model_cfg


def load_model_config(cfg: Union[str, dict, Config]) -> Dict[str, Any]:
    """Return a model config dict from a config file path (``'mmdet::...'`` allowed) or a model dict.

    For a file, the file's top-level ``data_preprocessor`` is merged into the model (as mmengine's
    Runner does) and its ``default_scope`` is recorded as ``_scope_`` so that the model is built in the
    registry of its own repo, whatever the scope of the run. A model dict gets the same from the scope
    of its type (see :func:`with_scope_of_type`).
    """
    if isinstance(cfg, (dict, ConfigDict)) and not isinstance(cfg, Config):
        return with_scope_of_type(copy.deepcopy(dict(cfg)))
    file_cfg = cfg if isinstance(cfg, Config) else Config.fromfile(resolve_config_path(cfg))
    if 'model' not in file_cfg:
        raise KeyError(f'config {cfg!r} has no "model" field')
    model = copy.deepcopy(file_cfg.model.to_dict() if hasattr(file_cfg.model, 'to_dict')
                          else dict(file_cfg.model))
    if file_cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', copy.deepcopy(dict(file_cfg.data_preprocessor)))
    if file_cfg.get('default_scope') is not None:
        model.setdefault('_scope_', file_cfg.default_scope)
    return model


def _is_remote(filename: str) -> bool:
    return '://' in filename


def read_checkpoint(filename: str, unsafe: Optional[bool] = None) -> Any:
    """Read a teacher checkpoint through mmengine's ``CheckpointLoader``.

    Every scheme mmengine accepts works: a local path, ``http(s)://`` (downloaded once into the torch
    hub cache, ``$TORCH_HOME/hub/checkpoints``), ``open-mmlab://``, ``torchvision://``, ``s3://``
    and the other registered backends. Loading is weights-only with the allowlist of mmengine
    checkpoints (:mod:`mmkd_plugins.utils.safe_load`) unless ``unsafe`` (or ``MMKD_UNSAFE_LOAD=1``)
    opts into full unpickling.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if not isinstance(filename, str) or not filename:
        raise FileNotFoundError(f'teacher checkpoint not found: {filename!r} (teacher_ckpt must be a '
                                'local path or a URL that mmengine\'s CheckpointLoader accepts)')
    if not _is_remote(filename) and not osp.isfile(osp.expanduser(filename)):
        raise FileNotFoundError(f'teacher checkpoint not found: {filename!r} (a local path; a URL '
                                '(http(s)://, open-mmlab://, torchvision://, ...) is downloaded '
                                'into the torch hub cache instead)')
    if not _is_remote(filename):  # empty / truncated / not a checkpoint: say so before unpickling
        check_checkpoint_file(osp.expanduser(filename))
    with unsafe_load(unsafe) if unsafe is not None else contextlib.nullcontext():
        try:
            return CheckpointLoader.load_checkpoint(filename, map_location='cpu')
        except KeyError as err:  # open-mmlab:// or torchvision:// name that mmengine does not know
            raise ValueError(f'teacher checkpoint {filename}: unknown model name {err} for this '
                             'scheme in mmengine\'s model lists') from err
        except OSError as err:
            if not _is_remote(filename):
                raise
            raise OSError(f'teacher checkpoint {filename}: download failed ({err}). Download it '
                          'by hand and set model.teacher_ckpt=PATH, or check the URL / network.'
                          ) from err


def read_state_dict(filename: str, unsafe: Optional[bool] = None) -> Dict[str, torch.Tensor]:
    """Read the weights of a teacher checkpoint (mmengine format or a bare state dict).

    ``filename`` is a local path or any URL scheme of mmengine (see :func:`read_checkpoint`).
    ``module.`` prefixes (DataParallel) are removed. Raises FileNotFoundError naming a missing file.
    """
    ckpt = read_checkpoint(filename, unsafe)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'{filename}: not a checkpoint (expected a dict with "state_dict")')
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}


def load_weights_strictly(model: nn.Module, filename: str, what: str = 'teacher',
                          unsafe: Optional[bool] = None) -> None:
    """Load ``filename`` (path or URL) into ``model``; any missing / unexpected / mis-shaped key is
    an error."""
    from ..utils.checkpoint_match import compare_state_dicts
    state = read_state_dict(filename, unsafe)
    missing, unexpected, mis_shaped = compare_state_dicts(model.state_dict(), state)
    if missing or unexpected or mis_shaped:
        def show(keys):
            return f'{keys[:10]}' + (f' ... (+{len(keys) - 10})' if len(keys) > 10 else '')
        hint = ''
        if any(k.startswith('student.') for k in unexpected):
            hint = (' The file looks like a distiller checkpoint: convert it first: '
                    f'python tools/convert_kd_ckpt_to_student.py {filename} OUT.pth')
        raise ValueError(f'{what} checkpoint {filename} does not match the {what} config: '
                         f'missing keys {show(missing)}, unexpected keys {show(unexpected)}, '
                         f'shape mismatches {show(mis_shaped)}.{hint}')
    model.load_state_dict(state, strict=True)


def build_frozen_teacher(cfg: Union[str, dict, Config], ckpt: Optional[str],
                         allow_random: bool = False, unsafe_load: bool = False) -> nn.Module:
    """Build the teacher, load its checkpoint, freeze it and put it in eval mode.

    Args:
        cfg: config file path (``'mmpretrain::resnet/resnet34_8xb32_in1k.py'`` style allowed) or a
            model config dict.
        ckpt: checkpoint of the teacher: a local file or any URL scheme of mmengine's
            ``CheckpointLoader`` (``https://...`` is cached in the torch hub cache).
        allow_random: accept ``ckpt=None`` (random teacher; only for tests and smoke runs).
        unsafe_load: fully unpickle ``ckpt`` (only for files you trust); by default it is loaded
            weights-only with the allowlist of mmengine checkpoints (``MMKD_UNSAFE_LOAD=1`` also
            opts in).
    """
    model_cfg = load_model_config(cfg)
    # A teacher is never initialised from the network: its weights come from ``ckpt``.
    model_cfg.pop('init_cfg', None)
    # ConfigDict: some models read nested configs by attribute (mmdet two-stage: train_cfg.rpn)
    teacher = MODELS.build(ConfigDict(model_cfg))
    if ckpt is not None:
        load_weights_strictly(teacher, ckpt, 'teacher', unsafe=True if unsafe_load else None)
    elif not allow_random:
        raise ValueError('teacher_ckpt is required (a checkpoint file or URL of the teacher); pass '
                         'allow_random_teacher=True only for smoke tests')
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher
