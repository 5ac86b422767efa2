"""Writing outputs without losing data: never over an input, never over an existing output unless
asked, and atomically.

Every tool that writes a file goes through this module:

- :func:`check_output` refuses an output path that is one of the tool's inputs (same file after
  ``realpath``, so links and ``./`` spellings are caught) and an output that already exists unless
  ``force`` (the tools' ``--force``);
- :func:`atomic_write` writes into a temporary file in the destination folder and ``os.replace``-s it
  onto the destination only when the write finished, so an interrupted run leaves the old file (or
  nothing) in place, never a truncated one; :func:`atomic_torch_save` is ``torch.save`` through it.
"""
import argparse
import contextlib
import os
import os.path as osp
import tempfile
from typing import IO, Iterable, Iterator, Optional

__all__ = ['OutputExistsError', 'OutputIsInputError', 'add_force_argument', 'check_output',
           'check_output_files', 'atomic_write', 'atomic_torch_save']


class OutputExistsError(FileExistsError):
    """The output exists and ``--force`` was not given."""


class OutputIsInputError(ValueError):
    """The output path is one of the inputs."""


def add_force_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--force', action='store_true',
                        help='replace existing output files (never allowed: writing over an input)')


def _same_file(a: str, b: str) -> bool:
    return osp.realpath(osp.expanduser(a)) == osp.realpath(osp.expanduser(b))


def check_output(path: str, inputs: Iterable[Optional[str]] = (), force: bool = False,
                 what: str = 'output') -> str:
    """Raise unless ``path`` may be written; returns ``path``.

    Args:
        path: the output file.
        inputs: the tool's input files (``None`` entries are ignored).
        force: allow replacing an existing output (never an input).
        what: how to name the output in messages (e.g. ``'--out'``).
    """
    for src in inputs:
        if src and '://' not in str(src) and _same_file(path, src):
            raise OutputIsInputError(f'{what} {path} is the input {src}: refusing to write over an input; '
                                     'choose another output path')
    if osp.isdir(path):
        raise OutputExistsError(f'{what} {path} is a folder; give a file name')
    if osp.lexists(path) and not force:
        raise OutputExistsError(f'{what} {path} already exists; pass --force to replace it')
    return path


def check_output_files(paths: Iterable[str], inputs: Iterable[Optional[str]] = (), force: bool = False,
                       what: str = 'output') -> None:
    """:func:`check_output` for several files, before any of them is written."""
    inputs = list(inputs)
    for path in paths:
        check_output(path, inputs, force, what)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb', **open_kwargs) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` (``os.replace``).

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if osp.exists(path):  # keep the destination's permissions
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    import torch
    with atomic_write(path, 'wb') as fh:
        torch.save(obj, fh)
