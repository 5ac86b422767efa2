"""Datasets; each method's in its own file."""
from .digits import DigitsDataset  # noqa: F401
from .multilabel_hashing import (COCOHashing, Flickr25kHashing, MultiLabelHashingDataset,  # noqa: F401
                                 NUSWIDEHashing, VOC2007Hashing, VOC2012Hashing)
from .vos import StaticVOSDataset, VOSDataset  # noqa: F401
from .vos_static import StaticPasteDataset  # noqa: F401
from .compatible_splits import CompatibleSplitDataset  # noqa: F401
from .unpaired_style import UnpairedStyleDataset  # noqa: F401
from .realy import REALYDataset  # noqa: F401
