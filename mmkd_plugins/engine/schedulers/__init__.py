"""Parameter schedulers."""
from .inverse_time import InverseTimeLR, InverseTimeParamScheduler, inverse_time_factor  # noqa: F401
