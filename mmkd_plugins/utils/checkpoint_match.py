"""Does a checkpoint's state dict fit a model? One error naming counts and a few keys, never a silent
partial load.

``load_state_dict(strict=False)`` (mmengine's default for ``load_from``) loads whatever keys happen to
match and leaves the rest at their random initialisation, so evaluating a checkpoint of another model
prints metrics of random weights. :func:`check_state_dict_matches` compares key sets and shapes first:

- a distiller checkpoint (weights under ``student.``) given for a plain model is always refused, with the
  conversion command;
- a checkpoint sharing no key with the model is always refused;
- otherwise, when ``strict``, any missing, unexpected or mis-shaped key is refused (callers expose
  ``--non-strict`` to load the overlap anyway).
"""
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ['CheckpointMismatchError', 'compare_state_dicts', 'is_distiller_state',
           'check_state_dict_matches', 'CONVERT_COMMAND']

CONVERT_COMMAND = 'python tools/convert_kd_ckpt_to_student.py'
DISTILLER_PREFIXES = ('student.', 'connectors.', 'distill_losses.')


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model it is loaded into."""


def compare_state_dicts(model_state: Mapping, ckpt_state: Mapping) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, mis-shaped) keys of ``ckpt_state`` relative to ``model_state``.

    Mis-shaped entries read ``'key: checkpoint (a, b) vs model (c, d)'``.
    """
    missing = [k for k in model_state if k not in ckpt_state]
    unexpected = [k for k in ckpt_state if k not in model_state]
    mis_shaped = [f'{k}: checkpoint {tuple(ckpt_state[k].shape)} vs model {tuple(v.shape)}'
                  for k, v in model_state.items()
                  if k in ckpt_state and hasattr(ckpt_state[k], 'shape') and hasattr(v, 'shape')
                  and tuple(ckpt_state[k].shape) != tuple(v.shape)]
    return missing, unexpected, mis_shaped


def is_distiller_state(ckpt_keys: Iterable[str], model_keys: Iterable[str]) -> bool:
    """True when the checkpoint holds a distiller's ``student.`` weights and the model is not a
    distiller."""
    return (any(k.startswith('student.') for k in ckpt_keys)
            and not any(k.startswith('student.') for k in model_keys))


def _few(keys: Sequence[str], n: int = 3) -> str:
    shown = ', '.join(keys[:n])
    return shown + (f', ... ({len(keys) - n} more)' if len(keys) > n else '')


NON_STRICT_HINT = 'Pass --non-strict to load the matching weights anyway'


def check_state_dict_matches(model_state: Mapping, ckpt_state: Mapping, filename: str,
                             strict: bool = True, what: str = 'model',
                             hint: Optional[str] = NON_STRICT_HINT) -> None:
    """Raise :class:`CheckpointMismatchError` (one line) when ``ckpt_state`` does not fit the model.

    Args:
        model_state: the model's ``state_dict()`` (or any mapping key -> tensor).
        ckpt_state: the checkpoint's weights (``module.`` prefixes already removed).
        filename: the checkpoint, as the user named it.
        strict: refuse any missing / unexpected / mis-shaped key (else only the two cases that are
            never right: a distiller checkpoint, and no key in common).
        what: what the model is, for the message (``'model'``, ``'student'``, ...).
        hint: appended to the strict-mode error (how to opt out), or ``None``.
    """
    if is_distiller_state(ckpt_state, model_state):
        raise CheckpointMismatchError(
            f'{filename}: this is a distillation checkpoint (its {what} weights are under "student."); '
            f'convert it first: {CONVERT_COMMAND} {filename} OUT.pth')
    missing, unexpected, mis_shaped = compare_state_dicts(model_state, ckpt_state)
    if len(missing) == len(model_state) and model_state:
        raise CheckpointMismatchError(
            f'{filename}: not a checkpoint of this {what}: none of its {len(ckpt_state)} keys is one of '
            f"the {what}'s {len(model_state)} (checkpoint keys: {_few(list(ckpt_state))}; {what} keys: "
            f'{_few(list(model_state))})')
    if strict and (missing or unexpected or mis_shaped):
        parts = [f'{len(v)} {name} ({_few(v)})' for name, v in
                 (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', mis_shaped))
                 if v]
        raise CheckpointMismatchError(
            f'{filename} does not match the {what}: ' + '; '.join(parts) + (f'. {hint}' if hint else ''))
