"""mmkd_plugins: OpenMMLab 2.x extension plugins.

Importing the package registers every module into mmengine's root registries (``MODELS``, ``HOOKS``,
``METRICS``, ``DATASETS``, ``TRANSFORMS``), so configs of mmpretrain, mmdet, mmseg and mmagic find them
by name after ``custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)``.
Only torch and mmengine are needed to import it; heavier dependencies are imported where used.
"""
from . import datasets, distillers, engine, evaluation, models  # noqa: F401  (registration)
from .utils import register_local_checkpoint_loader
from .version import __version__

# mmengine 0.10 + torch >= 2.6: let --resume / load_from read mmengine's own local checkpoints
register_local_checkpoint_loader()

__all__ = ['__version__']
