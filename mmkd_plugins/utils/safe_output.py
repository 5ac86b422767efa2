"""Writing outputs without losing data: never over an input, never over an existing output unless
asked, and atomically.

Every tool that writes a file goes through this module:

- :func:`check_output` refuses an output path that is one of the tool's inputs (same file after
  ``realpath``, so links and ``./`` spellings are caught) and an output that already exists unless
  ``force`` (the tools' ``--force``);
- :func:`atomic_write` writes into a temporary file in the destination folder and ``os.replace``-s it
  onto the destination only when the write finished, so an interrupted run leaves the old file (or
  nothing) in place, never a truncated one; :func:`atomic_torch_save` is ``torch.save`` through it;
- :class:`RunOutputs` is the same rule for a writer that lives through a run and writes the same files
  again (a metric evaluated at every validation): the files it wrote itself are refreshed, any other
  existing file is refused unless its ``overwrite`` option is set.
"""
import argparse
import contextlib
import os
import os.path as osp
import tempfile
from typing import IO, Iterable, Iterator, Optional

__all__ = ['OutputExistsError', 'OutputIsInputError', 'add_force_argument', 'check_output',
           'check_output_files', 'atomic_write', 'atomic_torch_save', 'RunOutputs']


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
                 what: str = 'output', replace_hint: str = 'pass --force') -> str:
    """Raise unless ``path`` may be written; returns ``path``.

    Args:
        path: the output file.
        inputs: the tool's input files (``None`` entries are ignored).
        force: allow replacing an existing output (never an input).
        what: how to name the output in messages (e.g. ``'--out'``).
        replace_hint: how the user allows the replacement (``'<hint> to replace it'``).
    """
    for src in inputs:
        if src and '://' not in str(src) and _same_file(path, src):
            raise OutputIsInputError(f'{what} {path} is the input {src}: refusing to write over an input; '
                                     'choose another output path')
    if osp.isdir(path):
        raise OutputExistsError(f'{what} {path} is a folder; give a file name')
    if osp.lexists(path) and not force:
        raise OutputExistsError(f'{what} {path} already exists; {replace_hint} to replace it')
    return path


def check_output_files(paths: Iterable[str], inputs: Iterable[Optional[str]] = (), force: bool = False,
                       what: str = 'output', replace_hint: str = 'pass --force') -> None:
    """:func:`check_output` for several files, before any of them is written."""
    inputs = list(inputs)
    for path in paths:
        check_output(path, inputs, force, what, replace_hint)


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


class RunOutputs:
    """The output files of a long-lived writer, such as a metric evaluated at every validation.

    :meth:`check` refuses a file that exists and that this object did not write (a file of an earlier
    run, or someone else's) unless ``overwrite``; the files it wrote itself are refreshed without a
    question (validation writes them again at every interval). :meth:`open` writes atomically.

    Args:
        owner: who writes, for messages (``'DAVISMetric'``).
        overwrite: replace existing files that this object did not write.
        option: the setting that allows it, for messages.
    """

    def __init__(self, owner: str, overwrite: bool = False, option: str = 'overwrite=True') -> None:
        self.owner, self.overwrite, self.option = owner, bool(overwrite), option
        self.written = set()

    def _key(self, path: str) -> str:
        return osp.realpath(osp.expanduser(path))

    def _in_config(self) -> str:
        return f'in a config: --cfg-options test_evaluator.{self.option} or val_evaluator.{self.option}'

    def add(self, path: str) -> None:
        """Count ``path`` as written by this object (for files written by another helper)."""
        self.written.add(self._key(path))

    def check(self, path: str) -> str:
        """Raise :class:`OutputExistsError` unless ``path`` may be written; returns ``path``."""
        if osp.isdir(path):
            raise OutputExistsError(f'{self.owner}: output {path} is a folder; give a file name')
        if osp.lexists(path) and not self.overwrite and self._key(path) not in self.written:
            raise OutputExistsError(
                f'{self.owner}: output {path} already exists (not written by this run); set '
                f'{self.owner}({self.option}) to replace it ({self._in_config()}), or choose another folder')
        return path

    def check_folder(self, folder: Optional[str], suffix: str = '') -> None:
        """Refuse, before a run writes anything, a folder that already holds files ending with
        ``suffix`` (unless ``overwrite``); for construction, when the file names are not known yet."""
        if folder and not self.overwrite and osp.isdir(folder):
            for dirpath, _, files in os.walk(folder):
                mine = [f for f in files if f.endswith(suffix) and not f.startswith('.')
                        and self._key(osp.join(dirpath, f)) not in self.written]
                if mine:
                    kind = f'{suffix} files' if suffix else 'files'
                    raise OutputExistsError(
                        f'{self.owner}: output folder {folder} already holds {kind} '
                        f'({osp.join(dirpath, sorted(mine)[0])}, ...); set {self.owner}({self.option}) '
                        f'to replace them ({self._in_config()}), or choose another folder')

    @contextlib.contextmanager
    def open(self, path: str, mode: str = 'wb', **open_kwargs) -> Iterator[IO]:
        """:meth:`check`, then :func:`atomic_write`; the file counts as this object's afterwards."""
        self.check(path)
        with atomic_write(path, mode, **open_kwargs) as fh:
            yield fh
        self.add(path)
