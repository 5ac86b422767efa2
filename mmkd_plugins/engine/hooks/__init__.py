"""Training hooks."""
from .distill_schedule import StopDistillHook  # noqa: F401
from .rng_state import RNGStateHook  # noqa: F401
from .backfill import BackfillHook  # noqa: F401
from .vos_frame_skip import VOSFrameSkipHook  # noqa: F401
from .unibct_prototypes import UniBCTPrototypeHook  # noqa: F401
