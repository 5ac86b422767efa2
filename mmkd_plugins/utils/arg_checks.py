"""Checks of constructor arguments that come from configs (a typo there must be a clear error, not a
string-formatting or shape error deep inside torch)."""
import numbers

__all__ = ['check_positive_int']


def check_positive_int(value, name: str, owner: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else a ValueError naming ``owner`` and ``name``.

    ``owner`` is the class (``'MGDConnector'``); the message shows the value and its type, e.g.
    ``MGDConnector: student_channels must be a positive integer (a channel count), got 'abc' (str)``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f'{owner}: {name} must be a positive integer (a channel count), got {value!r} '
                         f'({type(value).__name__})')
    return int(value)
