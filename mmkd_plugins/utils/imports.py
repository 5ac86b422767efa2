"""Import helpers for optional dependencies."""
import importlib
from types import ModuleType

# import name -> pip requirement that provides it
_PIP_NAMES = {
    'mmdet': 'mmdet==3.3.0',
    'mmseg': 'mmsegmentation==1.2.2',
    'mmpretrain': 'mmpretrain==1.2.0',
    'mmagic': 'mmagic==1.2.0',
    'mmcv': 'mmcv==2.1.0 (with ops: bash tools/install.sh)',
    'scipy': 'scipy',
    'trimesh': 'trimesh',
    'sklearn': 'scikit-learn',
    'skimage': 'scikit-image',
    'matplotlib': 'matplotlib',
    'cv2': 'opencv-python',
}


def require(module: str, purpose: str = '') -> ModuleType:
    """Import ``module`` or raise an ImportError that names the package and how to install it.

    Args:
        module: import name, e.g. ``'mmdet'`` or ``'scipy.spatial'``.
        purpose: what needs it, added to the message (e.g. ``'MGD detection configs'``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split('.')[0]
        pip_name = _PIP_NAMES.get(top, top)
        need = f' (needed for {purpose})' if purpose else ''
        raise ImportError(f'mmkd_plugins: the optional dependency "{module}" is missing{need}. '
                          f'Install it with: pip install {pip_name}   (or: bash tools/install.sh)'
                          ) from err
