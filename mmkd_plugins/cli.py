"""Console entry points ``mmkd-train``, ``mmkd-test`` and ``mmkd-doctor`` (installed by ``pip install``).

They run this package's ``tools/train.py`` / ``tools/test.py`` (``mmkd_plugins/.mim/tools`` when
installed, ``tools/`` in a checkout) with the same arguments, from any directory; configs may inherit
ours with ``_base_ = 'mmkd_plugins::...'``.
"""
import os.path as osp
import runpy
import sys
from typing import List, Optional

_PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def tool_path(name: str) -> str:
    """Path of ``tools/<name>`` of this package; FileNotFoundError names where it looked."""
    candidates = [osp.join(_PACKAGE_DIR, '.mim', 'tools', name),
                  osp.join(osp.dirname(_PACKAGE_DIR), 'tools', name)]
    for path in candidates:
        if osp.isfile(path):
            return path
    raise FileNotFoundError(f'mmkd_plugins tool {name} not found (looked for {candidates})')


def _console(func, argv: Optional[List[str]], prog: str):
    """As a console command (``argv`` None): through ``run_main`` (one error line, ``--debug`` for the
    traceback, the exit status); called with a list: ``func(argv)``'s result, exceptions raised."""
    if argv is None:
        from .utils.cli_errors import run_main
        run_main(func, None, prog)
    return func(argv)


def _run(name: str, argv: Optional[List[str]]):
    path = tool_path(name)
    if osp.dirname(path) not in sys.path:
        sys.path.insert(0, osp.dirname(path))
    return runpy.run_path(path)['main'](argv)


def train(argv: Optional[List[str]] = None):
    """``mmkd-train CONFIG [options]``: tools/train.py."""
    return _console(lambda a: _run('train.py', a), argv, 'mmkd-train')


def test(argv: Optional[List[str]] = None):
    """``mmkd-test CONFIG CHECKPOINT [options]``: tools/test.py."""
    return _console(lambda a: _run('test.py', a), argv, 'mmkd-test')


def doctor(argv: Optional[List[str]] = None):
    """``mmkd-doctor CONFIG [options]``: check a distillation set-up (mmkd_plugins.doctor)."""
    from mmkd_plugins.doctor.main import main
    return _console(main, argv, 'mmkd-doctor')
