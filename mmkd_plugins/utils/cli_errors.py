"""The command-line tools' error handling: one line per input error, a traceback only on request.

Every tool in ``tools/`` ends with ``run_main(main)``:

- an exception raised by ``main`` is printed as ONE line, ``<tool>: error: <message>`` (newlines of the
  message folded), on stderr, and the process exits with status 1 (130 on Ctrl-C); the messages name
  the file (and line / key) themselves;
- ``--debug`` anywhere on the command line (it is removed before ``main`` parses its arguments) or the
  environment variable ``MMKD_DEBUG=1`` re-raises instead, with the full traceback;
- ``SystemExit`` (argparse usage errors, ``raise SystemExit('message')``) passes through unchanged.

Importing this module also installs :func:`install_warning_filters`, so a tool that imports it before
torch / mmengine does not print the third-party deprecation warnings listed in
:data:`QUIET_WARNINGS`, which a user of the tools cannot act on. Only those exact warnings are
silenced; every other warning is printed as usual.
"""
import os
import os.path as osp
import sys
import warnings
from typing import Any, Callable, List, NoReturn, Optional, Sequence

__all__ = ['DEBUG_ENV', 'QUIET_WARNINGS', 'install_warning_filters', 'debug_requested', 'error_line',
           'run_main']

DEBUG_ENV = 'MMKD_DEBUG'
_TRUE = ('1', 'true', 'yes', 'y', 'on')

# (category, message regex (matched at the start of the message), module regex of the warning's
# origin): third-party deprecation notices printed by every command, fixed only by their authors.
# transformers 4.36 (imported by mmengine's optimizer registry, and by mmpretrain / mmagic models) calls
# torch's private ``_register_pytree_node`` at import (transformers/utils/generic.py, lines 441 and 309),
# which torch >= 2.2 deprecates: two FutureWarnings before any output of any command, even --help.
QUIET_WARNINGS = (
    (FutureWarning, r'`torch\.utils\._pytree\._register_pytree_node` is deprecated',
     r'transformers\.utils\.generic'),
)


def install_warning_filters() -> None:
    """Ignore exactly the warnings of :data:`QUIET_WARNINGS` (idempotent)."""
    for category, message, module in QUIET_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)


def debug_requested(argv: Sequence[str] = ()) -> bool:
    """``--debug`` in ``argv`` or ``MMKD_DEBUG`` set to a true value."""
    return '--debug' in argv or os.environ.get(DEBUG_ENV, '').strip().lower() in _TRUE


def error_line(exc: BaseException) -> str:
    """The exception's message on one line (a ``KeyError``'s message without the repr quotes)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    text = ' '.join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(exc).__name__


def run_main(main: Callable[[Optional[List[str]]], Any], argv: Optional[Sequence[str]] = None,
             prog: Optional[str] = None) -> NoReturn:
    """Run ``main(argv)`` as a command: exit 0 on success, one error line and exit 1 on an exception.

    An integer returned by ``main`` is the exit status; anything else means 0.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != '--debug']
    prog = prog or osp.basename(sys.argv[0]) or 'mmkd_plugins'
    try:
        result = main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f'{prog}: interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001  (every error becomes one line unless --debug)
        if debug:
            raise
        print(f'{prog}: error: {error_line(exc)} (traceback: --debug or {DEBUG_ENV}=1)', file=sys.stderr)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)


install_warning_filters()
