from .config_paths import (CONFIGS_ENV, configs_root, export_configs_env, install_config_prefix,
                           resolve_config)
from .imports import require
from .safe_load import (UNSAFE_ENV, UnsafeCheckpointError, checkpoint_policy,
                        checkpoint_safe_globals, install_safe_checkpoint_loading,
                        load_local_checkpoint, set_unsafe_load, torch_load, unsafe_load,
                        unsafe_load_enabled)

__all__ = [
    'CONFIGS_ENV', 'configs_root', 'export_configs_env', 'install_config_prefix', 'resolve_config',
    'require', 'UNSAFE_ENV', 'UnsafeCheckpointError', 'checkpoint_policy', 'checkpoint_safe_globals',
    'install_safe_checkpoint_loading', 'load_local_checkpoint', 'set_unsafe_load', 'torch_load',
    'unsafe_load', 'unsafe_load_enabled'
]
