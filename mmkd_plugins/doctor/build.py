"""Load a config the way ``tools/train.py`` does and build the Runner (model, data, evaluator)."""
import contextlib
import os.path as osp
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch.nn as nn


def load_config(config: str, cfg_options: Optional[Dict[str, Any]] = None,
                unsafe_load: bool = False):
    """The config with ``--cfg-options`` merged, as ``tools/train.py`` loads it."""
    from mmengine.config import Config

    import mmkd_plugins  # noqa: F401  (registers modules and the 'mmkd_plugins::' config prefix)
    from mmkd_plugins.utils import export_configs_env, set_unsafe_load
    export_configs_env()
    cfg = Config.fromfile(config)
    cfg.launcher = 'none'
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if unsafe_load or cfg.get('unsafe_load', False):
        cfg.unsafe_load = True
        set_unsafe_load(True)
    return cfg


def build_runner(cfg, work_dir: Optional[str] = None):
    """``Runner.from_cfg`` with a throw-away work_dir (nothing of the run's own work_dir is touched)."""
    from mmengine.runner import Runner
    cfg = cfg.copy()
    cfg.work_dir = work_dir or tempfile.mkdtemp(prefix='mmkd_doctor_')
    cfg.setdefault('log_level', 'WARNING')
    return Runner.from_cfg(cfg)


def unwrap(model: nn.Module) -> nn.Module:
    from mmengine.model import is_model_wrapper
    return model.module if is_model_wrapper(model) else model


class LoadRecorder:
    """Records every tensor mmengine's checkpoint code loads into a module.

    mmengine's ``Pretrained`` init, ``load_checkpoint`` and ``load_from`` all go through
    ``mmengine.runner.checkpoint.load_state_dict(module, state_dict)``; while recording, that
    function is wrapped and each call adds ``(module, [keys of the module's state dict that the file
    holds with the same shape], file keys)``.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[nn.Module, List[str], int]] = []

    @contextlib.contextmanager
    def record(self) -> Iterator['LoadRecorder']:
        import mmengine.runner.checkpoint as ckpt
        original = ckpt.load_state_dict

        def recording(module, state_dict, *args, **kwargs):
            target = unwrap(module)
            own = target.state_dict()
            keys = [k for k, v in state_dict.items() if k in own and hasattr(v, 'shape')
                    and tuple(v.shape) == tuple(own[k].shape)]
            self.calls.append((target, keys, len(state_dict)))
            return original(module, state_dict, *args, **kwargs)

        ckpt.load_state_dict = recording
        try:
            yield self
        finally:
            ckpt.load_state_dict = original

    def loaded_names(self, root: nn.Module) -> set:
        """Full state-dict names (relative to ``root``) of every tensor loaded into ``root``'s
        sub-modules."""
        paths = {id(m): name for name, m in root.named_modules()}
        names = set()
        for module, keys, _ in self.calls:
            if id(module) in paths:
                prefix = paths[id(module)]
                names.update(f'{prefix}.{k}' if prefix else k for k in keys)
            else:  # loaded into a parent of root (load_from into the distiller): strip the path
                for name, m in module.named_modules():
                    if m is root:
                        cut = f'{name}.' if name else ''
                        names.update(k[len(cut):] for k in keys if k.startswith(cut))
        return names


def config_label(config: str) -> str:
    return osp.relpath(config) if osp.exists(config) else config
