"""Models: losses, connectors (student->teacher adapters), heads, VOS and style-transfer models."""
from . import backbones, connectors, editors, heads, losses, vos  # noqa: F401
from . import compatible  # noqa: F401
