"""Recognise files that are not torch checkpoints before unpickling them.

``torch.load`` on an empty file, a text file, a truncated archive or a plain pickle fails deep inside
its unpickler (``EOFError``, ``IndexError``, ``invalid load key``) with no file name, and sometimes with
advice to pass ``weights_only=False``, which is the wrong fix. :func:`describe_unreadable_checkpoint`
looks at the file's bytes only (nothing is unpickled) and says what is wrong with it:

- a torch checkpoint is either a zip archive holding ``<name>/data.pkl`` (the default since torch 1.6)
  or, in the legacy format, a pickle stream whose first object is torch's magic number
  ``0x1950a86a20f9469cfc6c``;
- anything else (missing, a folder, empty, a zip without ``data.pkl``, a zip cut short, a pickle
  without the magic number, text, ...) gets a one-line reason.

URLs (``scheme://...``) and open file objects are left to the loader. :func:`check_checkpoint_file` is the
call for loaders: it raises :class:`CheckpointFileError` (a ``ValueError``; :class:`CheckpointNotFoundError`,
also a ``FileNotFoundError``, for a missing path) with one line naming the file and the reason.
"""
import io
import os
import os.path as osp
import pickle
import zipfile
from typing import Optional

__all__ = ['CheckpointFileError', 'CheckpointNotFoundError', 'describe_unreadable_checkpoint',
           'check_checkpoint_file']

# torch/serialization.py: MAGIC_NUMBER, the first pickled object of a legacy-format checkpoint
TORCH_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
NOT_FOUND = 'does not exist'


class CheckpointFileError(ValueError):
    """A checkpoint path that is not a readable torch checkpoint; the message names file and reason."""

    def __init__(self, path: str, reason: str, what: str = 'checkpoint') -> None:
        self.path, self.reason = path, reason
        super().__init__(f'{what} not found: {path}' if reason == NOT_FOUND else f'{what} {path}: {reason}')


class CheckpointNotFoundError(CheckpointFileError, FileNotFoundError):
    """The checkpoint path does not exist."""


class _NoGlobals(pickle.Unpickler):
    """Reads plain values only; any class or function reference is refused (nothing can run)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f'global {module}.{name}')


def _first_pickled_value(head: bytes):
    return _NoGlobals(io.BytesIO(head)).load()


def _describe_start(head: bytes) -> str:
    text = head[:24]
    if text and all(32 <= b < 127 or b in (9, 10, 13) for b in text):
        shown = text.decode('ascii').splitlines()[0] if text.strip() else ''
        return f'is a text file (starts with {shown!r}), not a torch checkpoint'
    return f'is not a torch checkpoint (neither a zip archive nor a pickle; starts with {head[:8]!r})'


def describe_unreadable_checkpoint(path: str) -> Optional[str]:
    """``None`` when ``path`` looks like a torch checkpoint, else why it is not one (one line).

    Only the file's bytes are read: the zip directory, or the first pickled object of a legacy file
    (with an unpickler that refuses every global). URLs and file objects return ``None``.
    """
    if not isinstance(path, (str, os.PathLike)):  # an open file / buffer: left to the loader
        return None
    path = os.fspath(path)
    if '://' in path:
        return None
    path = osp.expanduser(path)
    if not osp.exists(path):
        return NOT_FOUND
    if osp.isdir(path):
        return 'is a folder, not a checkpoint file'
    try:
        size = osp.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(4096)
    except OSError as err:
        return f'cannot be read ({err.strerror or err})'
    if size == 0:
        return 'is empty (0 bytes): not a checkpoint (an interrupted save or download?)'
    if head.startswith(b'PK'):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            return (f'is a damaged or truncated zip archive ({size} bytes): not a complete torch '
                    'checkpoint (an interrupted save or download?)')
        if any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
            return None
        return f'is a zip archive without data.pkl ({len(names)} entries): not a torch checkpoint'
    if head[:1] == b'\x80':  # pickle protocol >= 2
        try:
            first = _first_pickled_value(head)
        except Exception:  # noqa: BLE001  (truncated, or a global: not torch's legacy header)
            first = None
        if first == TORCH_LEGACY_MAGIC:
            return None
        return ('is a pickle file but not a torch checkpoint (no torch magic number; written with '
                'pickle.dump instead of torch.save?)')
    return _describe_start(head)


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> str:
    """Raise :class:`CheckpointFileError` unless ``path`` looks like a torch checkpoint (or is a URL).

    Returns ``path`` unchanged.
    """
    reason = describe_unreadable_checkpoint(path)
    if reason is not None:
        error = CheckpointNotFoundError if reason == NOT_FOUND else CheckpointFileError
        raise error(os.fspath(path) if isinstance(path, os.PathLike) else path, reason, what)
    return path
