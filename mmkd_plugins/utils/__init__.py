"""Utilities. Light at import: the names of :mod:`.safe_load` (which imports torch) load on first use."""
import importlib

from .config_paths import (CONFIGS_ENV, configs_root, export_configs_env, install_config_prefix,
                           resolve_config)
from .imports import require

_LAZY = {
    name: 'safe_load'
    for name in ('UNSAFE_ENV', 'UnsafeCheckpointError', 'checkpoint_policy', 'checkpoint_safe_globals',
                 'install_safe_checkpoint_loading', 'load_local_checkpoint', 'set_unsafe_load',
                 'torch_load', 'unsafe_load', 'unsafe_load_enabled')
}

__all__ = [
    'CONFIGS_ENV', 'configs_root', 'export_configs_env', 'install_config_prefix', 'resolve_config',
    'require', 'UNSAFE_ENV', 'UnsafeCheckpointError', 'checkpoint_policy', 'checkpoint_safe_globals',
    'install_safe_checkpoint_loading', 'load_local_checkpoint', 'set_unsafe_load', 'torch_load',
    'unsafe_load', 'unsafe_load_enabled'
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
