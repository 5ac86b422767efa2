"""Datasets; each method's in its own file."""
from .digits import DigitsDataset  # noqa: F401
from .multilabel_hashing import (COCOHashing, Flickr25kHashing, MultiLabelHashingDataset,  # noqa: F401
                                 NUSWIDEHashing, VOC2007Hashing, VOC2012Hashing)
