"""Safe checkpoint loading: ``weights_only`` unpickling with the allowlist of mmengine checkpoints.

A ``.pth`` file is a pickle: loading it fully (``torch.load(weights_only=False)``) can run any code
the file's author put in it. mmengine 0.10 loads local files with torch's default and remote files
(``http(s)://``, ``open-mmlab://``, ``torchvision://``) with ``weights_only=False``. Importing
``mmkd_plugins`` wraps every scheme registered in mmengine's ``CheckpointLoader`` (``--resume``,
``load_from``, ``init_cfg=dict(type='Pretrained')``, ``teacher_ckpt``) so that each ``torch.load``
made while the scheme loads runs with ``weights_only=True`` and, through
:func:`torch.serialization.safe_globals`, accepts exactly the non-tensor types that mmengine's own
checkpoints hold (found by saving Runner checkpoints with CheckpointHook, EMAHook, save_best and
:class:`RNGStateHook`, see ``tests/test_utils/test_safe_load.py``):

- ``mmengine.logging.HistoryBuffer`` (the message hub's scalars) and the four statistics methods
  it pickles as ``getattr(HistoryBuffer, 'min' | 'max' | 'current' | 'mean')`` (``builtins.getattr``
  is replaced by a getattr that allows only these four names on this one class);
- numpy arrays, dtypes and scalars (``ndarray``, ``dtype``, the ``numpy.dtypes`` classes,
  ``multiarray._reconstruct`` / ``scalar`` under both the numpy 1 and numpy 2 module names): the
  message hub's histories, numpy RNG state (``np.random.get_state()``), numpy metric values;
- python's random state, optimizer / scheduler states, ``OrderedDict`` / ``Counter`` /
  ``defaultdict`` are plain containers that torch's weights-only unpickler already accepts.

Anything else is refused with :class:`UnsafeCheckpointError`, which names the refused global and
how to opt in. Full unpickling is an explicit opt-in: the environment variable
``MMKD_UNSAFE_LOAD=1``, ``--unsafe-load`` / ``unsafe_load = True`` with ``tools/train.py`` and
``tools/test.py``, ``teacher_unsafe_load=True`` on the distiller, or :func:`unsafe_load` in code.

While a wrapped scheme runs, ``torch.load`` is temporarily replaced (under a lock) by a version that
applies this policy, because mmengine's loaders call ``torch.load`` themselves; it is restored on
exit.
"""
import contextlib
import contextvars
import functools
import importlib
import os
import os.path as osp
import pickle
import re
import threading
from typing import Any, Callable, Iterator, List, Optional

import torch

UNSAFE_ENV = 'MMKD_UNSAFE_LOAD'
_TRUE = ('1', 'true', 'yes', 'y', 'on')
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')

_unsafe_override: contextvars.ContextVar = contextvars.ContextVar('mmkd_unsafe_load', default=None)
_source: contextvars.ContextVar = contextvars.ContextVar('mmkd_checkpoint_source', default=None)
_patch_lock = threading.RLock()

OPT_IN_HELP = ('If you trust this file, opt in to full unpickling: set the environment variable '
               f'{UNSAFE_ENV}=1, or pass --unsafe-load to tools/train.py / tools/test.py (or set '
               '`unsafe_load = True` in the config), or, for a distillation teacher, set '
               'model.teacher_unsafe_load=True.')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a global outside the allowlist; it was not unpickled."""


def unsafe_load_enabled() -> bool:
    """True when full unpickling was opted into (:func:`unsafe_load` or ``MMKD_UNSAFE_LOAD``)."""
    override = _unsafe_override.get()
    if override is not None:
        return bool(override)
    return os.environ.get(UNSAFE_ENV, '').strip().lower() in _TRUE


@contextlib.contextmanager
def unsafe_load(enabled: bool = True) -> Iterator[None]:
    """Scoped opt-in (or, with ``enabled=False``, opt-out) of full unpickling."""
    token = _unsafe_override.set(bool(enabled))
    try:
        yield
    finally:
        _unsafe_override.reset(token)


def set_unsafe_load(enabled: bool) -> None:
    """Process-wide opt-in through ``MMKD_UNSAFE_LOAD`` (inherited by worker processes)."""
    if enabled:
        os.environ[UNSAFE_ENV] = '1'
    else:
        os.environ.pop(UNSAFE_ENV, None)


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as checkpoints use it: only HistoryBuffer's four statistics methods."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise UnsafeCheckpointError(f'refused getattr({obj!r}, {name!r}): checkpoints only pickle '
                                f'HistoryBuffer.{"/".join(_HISTORY_BUFFER_METHODS)} this way')


def checkpoint_safe_globals() -> List[Any]:
    """The allowlist passed to :func:`torch.serialization.safe_globals` (see the module doc)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    try:  # numpy 2 (``numpy.core`` is a deprecated alias there)
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:  # numpy 1
        multiarray = importlib.import_module('numpy.core.multiarray')
    allowed: List[Any] = [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
                          np.ndarray, np.dtype]
    for func in ('_reconstruct', 'scalar'):
        for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            allowed.append((getattr(multiarray, func), f'{mod}.{func}'))
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return allowed


def _allowlist_names() -> set:
    return {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
            for g in checkpoint_safe_globals()}


def _refused_global(f: Any, message: str) -> str:
    """The dotted name of the global the weights-only unpickler refused."""
    if isinstance(f, (str, os.PathLike)):
        try:  # full names (``builtins.exec``); zip-format files only
            allowed = _allowlist_names()
            unsafe = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(f)
                      if g not in allowed]
            if unsafe:
                return ', '.join(sorted(unsafe))
        except Exception:  # noqa: BLE001  (legacy format: fall back to torch's message)
            pass
    for pattern in (r'GLOBAL (\S+) was not an allowed global', r'unsupported GLOBAL (\S+)',
                    r'unrecognized function (.+?)(?: which belongs|$)', r'refused (getattr\(.+?\))'):
        found = re.search(pattern, message, flags=re.MULTILINE)
        if found:
            return found.group(1).rstrip('.')
    return 'an unsupported pickle instruction'


def _real_torch_load() -> Callable:
    load = torch.load
    return getattr(load, '__wrapped__', load) if getattr(load, '_mmkd_policy', False) else load


def torch_load(f: Any, map_location: Any = None, *, unsafe: Optional[bool] = None,
               source: Optional[str] = None, **kwargs) -> Any:
    """``torch.load`` under the policy: weights-only with the allowlist unless opted in.

    Args:
        f: file name or file-like object.
        map_location: as for :func:`torch.load`.
        unsafe: ``True`` / ``False`` to decide here; ``None`` reads :func:`unsafe_load_enabled`.
        source: what to name in errors (the user-facing path or URL); defaults to ``f``.
    """
    load = _real_torch_load()
    kwargs.pop('weights_only', None)
    if unsafe if unsafe is not None else unsafe_load_enabled():
        return load(f, map_location=map_location, weights_only=False, **kwargs)
    kwargs.pop('pickle_module', None)  # weights_only uses its own unpickler
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return load(f, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        name = source or _source.get() or (f if isinstance(f, str) else 'checkpoint')
        found = re.search(r'WeightsUnpickler error: (.+)', str(err))
        lines = str(err).strip().splitlines()
        detail = found.group(1) if found else (lines[-1] if lines else '')
        refused = _refused_global(f, str(err))
        raise UnsafeCheckpointError(
            f'{name}: refused to unpickle `{refused}`: it is not one of the types mmengine '
            'checkpoints hold (tensors, numpy arrays / scalars, mmengine HistoryBuffer, RNG states, '
            'python containers), and unpickling it could run arbitrary code. ' + OPT_IN_HELP
            + (f' (torch: {detail[:300]})' if detail else '')) from err


@contextlib.contextmanager
def checkpoint_policy(source: Optional[str] = None) -> Iterator[None]:
    """Apply the policy to every ``torch.load`` in this block (mmengine's loaders call it)."""
    token = _source.set(source)
    with _patch_lock:
        previous = torch.load
        if getattr(previous, '_mmkd_policy', False):
            patched = None
        else:
            @functools.wraps(previous)
            def patched(f, map_location=None, pickle_module=None, *, weights_only=None, **kwargs):
                if pickle_module is not None:
                    kwargs['pickle_module'] = pickle_module
                return torch_load(f, map_location, **kwargs)

            patched._mmkd_policy = True
            torch.load = patched
        try:
            yield
        finally:
            if patched is not None:
                torch.load = previous
            _source.reset(token)


def _guard(loader: Callable) -> Callable:
    if getattr(loader, '_mmkd_safe', False):
        return loader

    @functools.wraps(loader)  # keeps __name__: mmengine logs "Loads checkpoint by <x> backend"
    def guarded(filename, map_location=None, *args, **kwargs):
        with checkpoint_policy(filename):
            return loader(filename, map_location, *args, **kwargs)

    guarded._mmkd_safe = True
    return guarded


def install_safe_checkpoint_loading() -> None:
    """Wrap every scheme currently registered in mmengine's ``CheckpointLoader`` (idempotent)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if not getattr(loader, '_mmkd_safe', False):
            CheckpointLoader.register_scheme(prefix, _guard(loader), force=True)


def load_local_checkpoint(filename: str, map_location: Any = None,
                          unsafe: Optional[bool] = None) -> Any:
    """Load a local checkpoint file under the policy; FileNotFoundError names it."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    return torch_load(filename, map_location, unsafe=unsafe, source=filename)
