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

Two mechanisms, one behaviour (same allowlist, same refusals, same error text):

- ``'native'`` (torch >= 2.5): ``torch.load(weights_only=True)`` inside
  :func:`torch.serialization.safe_globals`.
- ``'restricted-unpickler'`` (torch 2.0-2.4, which lack ``safe_globals`` and
  ``get_unsafe_globals_in_checkpoint``): ``torch.load(weights_only=False,
  pickle_module=<restricted>)``, where the restricted pickle module's ``Unpickler.find_class``
  resolves only torch's own weights-only globals (tensor / storage rebuilds, dtypes, layouts,
  ``OrderedDict``, ...) plus the allowlist above, and raises :class:`UnsafeCheckpointError` for any
  other global at the moment the unpickler meets it, before anything can call it (the approach of
  the Python docs' "Restricting Globals"). torch's own ``find_class`` wrapper still maps storage
  types first.

:data:`MECHANISM` holds the one in use; :func:`checkpoint_globals` lists the globals a checkpoint
references on every torch (a ``pickletools`` scan, no unpickling).
"""
import _compat_pickle
import codecs
import contextlib
import contextvars
import functools
import importlib
import io
import os
import os.path as osp
import pickle
import pickletools
import re
import threading
import types
import zipfile
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

UNSAFE_ENV = 'MMKD_UNSAFE_LOAD'
_TRUE = ('1', 'true', 'yes', 'y', 'on')
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')

_unsafe_override: contextvars.ContextVar = contextvars.ContextVar('mmkd_unsafe_load', default=None)
_source: contextvars.ContextVar = contextvars.ContextVar('mmkd_checkpoint_source', default=None)
_patch_lock = threading.RLock()

#: ``'native'`` where torch has :func:`torch.serialization.safe_globals` (torch >= 2.5), else
#: ``'restricted-unpickler'`` (see the module doc). Tests switch it to check both on one torch.
#: ``MMKD_SAFE_LOAD_MECHANISM=restricted-unpickler`` forces the fallback on any torch (for tests).
MECHANISMS = ('native', 'restricted-unpickler')
MECHANISM = os.environ.get('MMKD_SAFE_LOAD_MECHANISM') or (
    'native' if hasattr(torch.serialization, 'safe_globals') else 'restricted-unpickler')
if MECHANISM not in MECHANISMS or (MECHANISM == 'native'
                                   and not hasattr(torch.serialization, 'safe_globals')):
    raise ValueError(f'MMKD_SAFE_LOAD_MECHANISM={MECHANISM!r}: use one of {MECHANISMS} '
                     "('native' needs torch >= 2.5)")

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


def _global_name(g: Any) -> str:
    return g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'


def _allowlist_names() -> set:
    return {_global_name(g) for g in checkpoint_safe_globals()}


def _torch_weights_only_globals() -> Dict[str, Any]:
    """What torch's own weights-only unpickler resolves (tensors, storages, dtypes, OrderedDict...)."""
    from torch import _weights_only_unpickler as wou
    allowed = dict(wou._get_allowed_globals())
    user = getattr(wou, '_get_user_allowed_globals', None)  # torch >= 2.4: add_safe_globals
    if user is not None:
        allowed.update(user())
    # what torch 2.14's own set adds beyond torch 2.1's, so that both mechanisms accept the same
    # files on every torch: plain python types, torch.device, every dtype and qscheme
    import collections
    for obj in (collections.OrderedDict, collections.Counter, set, complex, bytearray):
        allowed.setdefault(f'{obj.__module__}.{obj.__qualname__}', obj)
    allowed.setdefault('_codecs.encode', codecs.encode)  # how protocol 2 pickles bytes
    allowed.setdefault('torch.device', torch.device)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), (torch.dtype, torch.qscheme)):
            allowed.setdefault(f'torch.{name}', getattr(torch, name))
    return allowed


def restricted_globals() -> Dict[str, Any]:
    """The globals the restricted unpickler resolves: torch's weights-only set plus the allowlist."""
    allowed = _torch_weights_only_globals()
    for g in checkpoint_safe_globals():
        allowed[_global_name(g)] = g[0] if isinstance(g, tuple) else g
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` resolves only :func:`restricted_globals`; anything else is refused."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._allowed = restricted_globals()

    def find_class(self, module: str, name: str) -> Any:
        full = _python3_name(module, name)
        if full in self._allowed:
            return self._allowed[full]
        raise UnsafeCheckpointError(f'unsupported GLOBAL {full}')


def _python3_name(module: str, name: str) -> str:
    """``module.name`` with the Python 2 names of protocol <= 2 pickles mapped as pickle does."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f'{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}'


def _restricted_load(file: Any, **kwargs) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


#: A pickle module for ``torch.load(..., pickle_module=...)`` (torch reads ``Unpickler``, ``load``
#: and ``__name__`` from it).
restricted_pickle = types.ModuleType('mmkd_restricted_pickle')
restricted_pickle.Unpickler = _RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError


def checkpoint_globals(f: Any) -> List[str]:
    """Every global (``module.name``) a checkpoint's pickle references, found without unpickling.

    Works on every torch (``torch.serialization.get_unsafe_globals_in_checkpoint`` is torch >= 2.5):
    scans the ``data.pkl`` of a zip-format file or, for the legacy format, the pickles of the file
    with :mod:`pickletools`. ``f`` is a path or a seekable binary file object.
    """
    if isinstance(f, (str, os.PathLike)):
        with open(f, 'rb') as fh:
            return checkpoint_globals(fh)
    start = f.tell()
    try:
        if zipfile.is_zipfile(f):
            f.seek(start)
            with zipfile.ZipFile(f) as archive:
                pkl = [n for n in archive.namelist() if n.endswith('data.pkl')]
                if not pkl:
                    raise ValueError('not a torch checkpoint: the zip archive has no data.pkl')
                return _pickle_globals(io.BytesIO(archive.read(pkl[0])))
        f.seek(start)
        found: List[str] = []
        while True:  # legacy format: magic, protocol, sys info, then the object
            here = f.tell()
            if not f.read(1):
                break
            f.seek(here)
            try:
                found += [g for g in _pickle_globals(f) if g not in found]
            except Exception:  # noqa: BLE001  (the raw storage bytes after the pickles)
                break
        return found
    finally:
        f.seek(start)


def _pickle_globals(f: Any) -> List[str]:
    """Globals of the first pickle in ``f`` (GLOBAL / INST and STACK_GLOBAL with memoised strings)."""
    found: List[str] = []
    memo: Dict[int, Any] = {}
    recent: List[Any] = []  # the values pushed most recently (strings, or None for anything else)
    for op, arg, _ in pickletools.genops(f):
        if op.name in ('GLOBAL', 'INST'):
            name = _python3_name(*arg.split(' ', 1))
        elif op.name == 'STACK_GLOBAL':
            name = _python3_name(recent[-2], recent[-1]) \
                if len(recent) >= 2 and None not in recent[-2:] else '<dynamic STACK_GLOBAL>'
        else:
            name = None
            if op.name in ('MEMOIZE',):
                memo[len(memo)] = recent[-1] if recent else None
            elif op.name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
                memo[arg] = recent[-1] if recent else None
            elif op.name in ('GET', 'BINGET', 'LONG_BINGET'):
                recent.append(memo.get(arg))
            elif isinstance(arg, str) and ('UNICODE' in op.name or 'STRING' in op.name):
                recent.append(arg)
            elif op.stack_after:
                recent.append(None)
        if name is not None:
            recent.append(None)
            if name not in found:
                found.append(name)
        del recent[:-4]
    return found


def _refused_global(f: Any, message: str) -> str:
    """The dotted name of the global the weights-only unpickler refused."""
    if isinstance(f, (str, os.PathLike)):
        try:  # full names (``builtins.exec``), on every torch
            allowed = set(restricted_globals())
            unsafe = [g for g in checkpoint_globals(f) if g not in allowed]
            if unsafe:
                return ', '.join(sorted(unsafe))
        except Exception:  # noqa: BLE001  (unreadable: fall back to the unpickler's message)
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
    if isinstance(f, (str, os.PathLike)):  # empty / truncated / non-checkpoint: one named line
        from .checkpoint_files import check_checkpoint_file
        check_checkpoint_file(f)
    load = _real_torch_load()
    kwargs.pop('weights_only', None)
    if unsafe if unsafe is not None else unsafe_load_enabled():
        return load(f, map_location=map_location, weights_only=False, **kwargs)
    kwargs.pop('pickle_module', None)  # weights_only uses its own unpickler
    try:
        if MECHANISM == 'native':
            with torch.serialization.safe_globals(checkpoint_safe_globals()):
                return load(f, map_location=map_location, weights_only=True, **kwargs)
        return load(f, map_location=map_location, weights_only=False,
                    pickle_module=restricted_pickle, **kwargs)
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
