from .checkpoint_compat import load_local_checkpoint, register_local_checkpoint_loader
from .imports import require

__all__ = ['require', 'load_local_checkpoint', 'register_local_checkpoint_loader']
