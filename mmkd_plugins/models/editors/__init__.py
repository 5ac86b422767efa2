"""Registered modules of this kind; each method in its own file."""
from .adain import AdaINStyleTransfer, StyleTransferDataPreprocessor  # noqa: F401
from .adain_decoder import AdaINDecoder  # noqa: F401
from .vgg_encoder import VGG19Encoder  # noqa: F401
