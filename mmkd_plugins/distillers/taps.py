"""Feature taps: forward hooks that record a module's output (or input) by module path."""
import difflib
from typing import Any, Dict, List, Optional, Union

import torch.nn as nn

TapCfg = Union[str, Dict[str, Any]]


class TapError(KeyError):
    """A tap names a module path that does not exist, or its recorded value is unusable."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def normalize_tap(name: str, cfg: TapCfg) -> Dict[str, Any]:
    """Turn ``'backbone.layer4'`` or ``dict(module=..., source=..., idx=...)`` into a full dict."""
    if isinstance(cfg, str):
        cfg = dict(module=cfg)
    if not isinstance(cfg, dict) or 'module' not in cfg:
        raise TapError(f'tap "{name}": expected a module path string or a dict with a "module" key, '
                       f'got {cfg!r}')
    unknown = set(cfg) - {'module', 'source', 'idx'}
    if unknown:
        raise TapError(f'tap "{name}": unknown keys {sorted(unknown)}; allowed: module, source, idx')
    source = cfg.get('source', 'output')
    if source not in ('output', 'input'):
        raise TapError(f'tap "{name}": source must be "output" or "input", got {source!r}')
    return dict(module=cfg['module'], source=source, idx=cfg.get('idx'))


def find_module(model: nn.Module, path: str, owner: str = 'model') -> nn.Module:
    """Return ``model``'s submodule at ``path`` ('' is the model itself).

    Raises:
        TapError: naming the path and listing the closest existing module paths.
    """
    modules = dict(model.named_modules())
    if path in modules:
        return modules[path]
    # suggestions: close spellings, plus the children of the deepest existing prefix
    names = [n for n in modules if n]
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.5)
    prefix = path
    while prefix and prefix not in modules:
        prefix = prefix.rpartition('.')[0]
    children = [f'{prefix}.{c}' if prefix else c for c, _ in modules[prefix].named_children()]
    hint = list(dict.fromkeys(close + children[:10]))
    raise TapError(f'{owner} has no module "{path}". Closest existing paths: {hint}')


def _pick(value: Any, idx: Optional[int], name: str) -> Any:
    if idx is None:
        return value
    if not isinstance(value, (tuple, list)):
        raise TapError(f'tap "{name}" has idx={idx} but the recorded value is a '
                       f'{type(value).__name__}, not a tuple/list')
    if not -len(value) <= idx < len(value):
        raise TapError(f'tap "{name}": idx={idx} out of range for {len(value)} recorded values')
    return value[idx]


class FeatureTaps:
    """Records features of named modules during a forward pass.

    Args:
        model: the model to tap.
        taps: ``{name: 'module.path' | dict(module='module.path', source='output'|'input', idx=None)}``.
            ``source='input'`` records the first positional input of the module; ``idx`` picks one
            element when the recorded value is a tuple/list (e.g. one FPN level).
        owner: 'student' or 'teacher', used in error messages.
        on_complete: called once per pass when every tap has fired (used to stop the teacher early).

    After a forward, ``taps[name]`` is the recorded value of the last call of that module.
    """

    def __init__(self, model: nn.Module, taps: Optional[Dict[str, TapCfg]], owner: str = 'model',
                 on_complete=None) -> None:
        self.owner = owner
        self.specs = {name: normalize_tap(name, cfg) for name, cfg in (taps or {}).items()}
        self.on_complete = on_complete
        self.active = True  # when False the hooks record nothing (e.g. during predict)
        self._values: Dict[str, Any] = {}
        self._handles: List[Any] = []
        for name, spec in self.specs.items():
            module = find_module(model, spec['module'], owner)
            if spec['source'] == 'output':
                handle = module.register_forward_hook(self._output_hook(name))
            else:
                handle = module.register_forward_pre_hook(self._input_hook(name))
            self._handles.append(handle)

    def _record(self, name: str, value: Any) -> None:
        if not self.active:
            return
        first_time = len(self._values) < len(self.specs) and name not in self._values
        self._values[name] = _pick(value, self.specs[name]['idx'], name)
        if first_time and len(self._values) == len(self.specs) and self.on_complete is not None:
            self.on_complete()

    def _output_hook(self, name: str):
        def hook(module, args, output):
            self._record(name, output)
        return hook

    def _input_hook(self, name: str):
        def hook(module, args):
            self._record(name, args[0] if len(args) == 1 else args)
        return hook

    def clear(self) -> None:
        self._values = {}

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __getitem__(self, name: str) -> Any:
        if name not in self.specs:
            raise TapError(f'{self.owner} has no tap named "{name}"; declared taps: {sorted(self.specs)}')
        if name not in self._values:
            raise TapError(f'{self.owner} tap "{name}" (module "{self.specs[name]["module"]}") did not '
                           'fire in this forward pass: the module is not on the path that was run')
        return self._values[name]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
