"""Registered modules of this kind; each method in its own file."""
from .hash_head import HashHead  # noqa: F401
