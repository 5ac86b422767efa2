"""Registered modules of this kind; each method in its own file."""
from .mgd import MGDConnector, mgd_random_mask  # noqa: F401
from .vitkd import ViTKDGenerationConnector, ViTKDMimicConnector, random_token_mask  # noqa: F401
from .resample import FeatureResample, resample_map, resample_tokens  # noqa: F401
