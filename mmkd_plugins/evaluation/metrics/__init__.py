"""Registered modules of this kind; each method in its own file."""
from .hashing import HashingMAP, hashing_map, hashing_retrieval_metrics  # noqa: F401
from .davis import DAVISMetric  # noqa: F401
from .hot_refresh import HotRefreshMetric  # noqa: F401
from .face_verification import FaceVerificationMetric  # noqa: F401
from .style import StyleTransferMetric  # noqa: F401
from .realy import REALYMetric  # noqa: F401
