"""Save and restore random-number-generator states with checkpoints, for exact resumes."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Stores the python, numpy and torch (CPU and CUDA) RNG states in ``checkpoint['meta']`` and
    restores them on resume.

    mmengine re-seeds on resume, so anything random after the first iteration (MGD's random masks,
    ViTKD's token masks, dropout) would otherwise differ from an uninterrupted run. With this hook a
    run stopped at iteration k and resumed ends with the same weights as one that never stopped
    (given deterministic data loading, e.g. ``num_workers=0`` or workers seeded per iteration).
    """

    priority = 'VERY_LOW'  # restore after everything else has touched the RNGs on resume

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(),
                     torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault('meta', {})['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('meta', {}).get('rng_state')
        if state is None:
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
