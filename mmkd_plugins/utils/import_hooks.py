"""Run a callback just before / just after a named module executes, without importing it now.

A :class:`ModuleHookFinder` sits first on :data:`sys.meta_path`. For a module it was told about, it
asks the other finders for the module's spec and wraps the loader: ``before(name)`` runs right before
the module's code, ``after(module)`` right after it (the module is in :data:`sys.modules`, its
parent package may still be initialising). Every other import is left to the other finders
untouched, so the cost is one dict lookup per import.
"""
import sys
import threading
from importlib.abc import MetaPathFinder
from typing import Callable, Dict, List

_lock = threading.RLock()


class _HookedLoader:
    """Delegates everything to ``loader``; wraps ``exec_module`` with the callbacks."""

    def __init__(self, loader, finder: 'ModuleHookFinder', name: str):
        self._loader, self._finder, self._name = loader, finder, name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        for fn in self._finder.before.get(self._name, ()):
            fn(self._name)
        self._loader.exec_module(module)
        for fn in self._finder.after.pop(self._name, ()):  # once: the module now exists
            fn(module)

    def __getattr__(self, attr):  # get_source, get_filename, is_package, get_resource_reader, ...
        return getattr(self._loader, attr)


class ModuleHookFinder(MetaPathFinder):
    """The meta-path finder; use :func:`before_import` / :func:`after_import`."""

    def __init__(self):
        self.before: Dict[str, List[Callable]] = {}
        self.after: Dict[str, List[Callable]] = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.before and fullname not in self.after:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module') \
                        and not isinstance(spec.loader, _HookedLoader):
                    spec.loader = _HookedLoader(spec.loader, self, fullname)
                return spec
        return None


def _finder() -> ModuleHookFinder:
    with _lock:
        for finder in sys.meta_path:
            if isinstance(finder, ModuleHookFinder):
                return finder
        finder = ModuleHookFinder()
        sys.meta_path.insert(0, finder)
        return finder


def before_import(name: str, fn: Callable[[str], None]) -> None:
    """Call ``fn(name)`` each time module ``name`` is about to execute (first import, reload)."""
    with _lock:
        _finder().before.setdefault(name, []).append(fn)


def after_import(name: str, fn: Callable) -> None:
    """Call ``fn(module)`` once module ``name`` has executed: now if it is already imported."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _finder().after.setdefault(name, []).append(fn)
            return
    fn(module)
