"""Small wrappers over torch APIs that changed after torch 2.1 (the tested floor, see README)."""
import torch


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``'cpu'``, ``'cuda'``, ...).

    ``torch.is_autocast_enabled(device_type)`` exists from torch 2.4; torch 2.1 has
    ``is_autocast_enabled()`` (CUDA only) and ``is_autocast_cpu_enabled()``.
    """
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()
