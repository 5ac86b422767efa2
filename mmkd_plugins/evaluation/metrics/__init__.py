"""Registered modules of this kind; each method in its own file."""
from .hashing import HashingMAP, hashing_map, hashing_retrieval_metrics  # noqa: F401
