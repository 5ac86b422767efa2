"""mmkd_plugins: OpenMMLab 2.x extension plugins.

Importing the package registers every module into mmengine's root registries (``MODELS``, ``HOOKS``,
``METRICS``, ``DATASETS``, ``TRANSFORMS``), so configs of mmpretrain, mmdet, mmseg and mmagic find them
by name after ``custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)``.
Only torch and mmengine are needed to import it; heavier dependencies (mmdet, mmseg, mmagic,
mmpretrain, scipy, ...) are imported where used. Our modules subclass ``mmengine.model`` classes, and
importing ``mmengine.model`` imports ``transformers`` when it is installed (mmengine registers its
Adafactor optimizer), which emits a FutureWarning about a deprecated torch API; that warning, not
ours to fix, is silenced for this import only.
"""
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message=r'.*_register_pytree_node.* is deprecated',
                            category=FutureWarning)
    from . import datasets, distillers, engine, evaluation, models  # noqa: F401  (registration)
from .utils import install_config_prefix, install_safe_checkpoint_loading
from .version import __version__

# every checkpoint scheme of mmengine (--resume, load_from, Pretrained, teacher_ckpt) loads weights-only
# with the allowlist of mmengine's own checkpoints; full unpickling is an explicit opt-in
install_safe_checkpoint_loading()
# downstream configs may inherit ours: _base_ = 'mmkd_plugins::mgd/...'
install_config_prefix()

__all__ = ['__version__']
