"""Registered modules of this kind; each method in its own file."""
from .data_preprocessor import VOSDataPreprocessor  # noqa: F401
from .losses import VOSBootstrappedCELoss, VOSIoULoss  # noqa: F401
from .memory import BaseVOSMemory, GrowingMemory, SWEMMemory  # noqa: F401
from .networks import VOSTinyBackbone  # noqa: F401
from .swem import SWEM  # noqa: F401
