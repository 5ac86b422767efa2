from .imports import require

__all__ = ['require']
