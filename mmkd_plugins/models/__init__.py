"""Models: losses, connectors (student->teacher adapters), heads, VOS and style-transfer models."""
from . import connectors, editors, heads, losses, vos  # noqa: F401
