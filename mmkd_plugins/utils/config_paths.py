"""Configs of mmkd_plugins for downstream repositories: ``_base_ = 'mmkd_plugins::<rel path>'``.

mmengine resolves ``'<package>::<path>'`` only for the OpenMMLab packages it knows by name
(``mmengine.config.utils.MODULE2PACKAGE``) and tags every dict of such a base with that package's
``_scope_``. Importing ``mmkd_plugins`` teaches :class:`mmengine.config.Config` one more prefix:
``'mmkd_plugins::mgd/x.py'`` is the file ``mgd/x.py`` under :func:`configs_root` (the installed
``mmkd_plugins/.mim/configs`` or, in a checkout, ``configs/``), loaded with no extra scope, exactly
as if the downstream config named the file by its path: our configs already carry their own
``default_scope`` and ``_scope_`` keys from the upstream bases they inherit.

This works in every program that imports ``mmkd_plugins`` before loading the config
(``tools/train.py``, ``tools/test.py``, ``mmkd-train`` / ``mmkd-test``, Python code). Upstream
training scripts (``mim train mmdet ...``) load the config before its ``custom_imports``; for them
use the path form through mmengine's environment-variable substitution::

    _base_ = ['{{$MMKD_PLUGINS_CONFIGS:}}/mgd/mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py']

with ``export MMKD_PLUGINS_CONFIGS=$(python -m mmkd_plugins configs-dir)``.
"""
import os
import os.path as osp
from typing import Optional, Tuple

PREFIX = 'mmkd_plugins::'
CONFIGS_ENV = 'MMKD_PLUGINS_CONFIGS'
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def configs_root() -> str:
    """The folder of mmkd_plugins' configs: ``.mim/configs`` when installed, else ``configs/``."""
    for root in (osp.join(_PACKAGE_DIR, '.mim', 'configs'),
                 osp.join(osp.dirname(_PACKAGE_DIR), 'configs')):
        if osp.isdir(root):
            return osp.realpath(root)
    raise FileNotFoundError(f'mmkd_plugins configs not found: neither {_PACKAGE_DIR}/.mim/configs '
                            '(created by `pip install`) nor a configs/ folder next to the package')


def resolve_config(path: str) -> str:
    """``'mmkd_plugins::mgd/x.py'`` -> absolute path of that config; FileNotFoundError names it."""
    if not path.startswith(PREFIX):
        raise ValueError(f'not an mmkd_plugins config name: {path!r} (expected {PREFIX}<path>)')
    rel = path[len(PREFIX):].lstrip('/')
    full = osp.join(configs_root(), rel)
    if not osp.isfile(full):
        raise FileNotFoundError(f'{path}: mmkd_plugins has no config "{rel}" (looked for {full})')
    return full


def install_config_prefix() -> None:
    """Let ``Config.fromfile`` resolve ``'mmkd_plugins::...'`` bases (idempotent)."""
    from mmengine.config import Config
    current = Config.__dict__['_get_cfg_path'].__func__
    if getattr(current, '_mmkd_prefix', False):
        return

    def _get_cfg_path(cfg_path: str, filename: str) -> Tuple[str, Optional[str]]:
        if cfg_path.startswith(PREFIX):
            return resolve_config(cfg_path), None  # no scope: as if named by its path
        return current(cfg_path, filename)

    _get_cfg_path._mmkd_prefix = True
    _get_cfg_path.__doc__ = current.__doc__
    Config._get_cfg_path = staticmethod(_get_cfg_path)


def export_configs_env() -> str:
    """Set ``MMKD_PLUGINS_CONFIGS`` (if unset) for configs that use the path form; returns it."""
    return os.environ.setdefault(CONFIGS_ENV, configs_root())
