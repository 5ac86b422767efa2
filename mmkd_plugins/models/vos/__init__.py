"""Registered modules of this kind; each method in its own file."""
