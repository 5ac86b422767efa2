"""Make mmengine 0.10 checkpoints resumable under torch >= 2.6.

torch 2.6 changed ``torch.load``'s default to ``weights_only=True``. mmengine 0.10.7 loads local
checkpoints with the default, and its own checkpoints hold non-tensor state (the message hub's
``HistoryBuffer``, numpy arrays, the RNG states of :class:`RNGStateHook`), so ``--resume`` and
``load_from`` fail with an ``UnpicklingError``. Registering a local-file loader through mmengine's
public ``CheckpointLoader.register_scheme`` restores the behaviour mmengine was written for: a
local file that the user names in the config or on the command line is trusted and fully loaded.
Remote schemes (http, open-mmlab://, ...) are left untouched.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def load_local_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint file fully (``weights_only=False``); FileNotFoundError names it."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    return torch.load(filename, map_location=map_location, weights_only=False)


def register_local_checkpoint_loader() -> None:
    """Install :func:`load_local_checkpoint` as mmengine's loader for local paths."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
