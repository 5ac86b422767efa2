"""Normalised VGG19 encoder up to relu4_1, as AdaIN uses it.

The encoder maps an RGB image in ``[0, 1]`` to the features at relu1_1, relu2_1, relu3_1 and
relu4_1 (strides 1, 2, 4, 8). It is built from four slices::

    preprocess (1x1 conv, RGB [0, 1] -> normalised)
    slice1: conv1_1 relu                                   -> relu1_1  (64 ch)
    slice2: conv1_2 relu pool conv2_1 relu                  -> relu2_1  (128 ch)
    slice3: conv2_2 relu pool conv3_1 relu                  -> relu3_1  (256 ch)
    slice4: conv3_2 relu conv3_3 relu conv3_4 relu pool conv4_1 relu -> relu4_1 (512 ch)

``preprocess`` is initialised to ImageNet normalisation ``(x - mean) / std``, so torchvision's VGG19
weights work unchanged; AdaIN's ``vgg_normalised.pth`` carries its own 1x1 input conv, which then
replaces it. ``width`` scales every channel count (e.g. 0.125 for fast tests). Weights are only ever
read from a local ``checkpoint`` file: nothing is downloaded.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

__all__ = ['VGG19Encoder', 'VGG_LAYERS', 'load_vgg19_state_dict']

#: Output layers in order of depth.
VGG_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1')

# (name, in_channels, out_channels) of the convolutions up to conv4_1 at width 1.
_CONVS = (('conv1_1', 3, 64), ('conv1_2', 64, 64), ('conv2_1', 64, 128), ('conv2_2', 128, 128),
          ('conv3_1', 128, 256), ('conv3_2', 256, 256), ('conv3_3', 256, 256),
          ('conv3_4', 256, 256), ('conv4_1', 256, 512))
# Index of each conv inside torchvision's ``vgg19().features``.
_TORCHVISION_IDX = dict(conv1_1=0, conv1_2=2, conv2_1=5, conv2_2=7, conv3_1=10, conv3_2=12,
                        conv3_3=14, conv3_4=16, conv4_1=19)
# Index of each conv inside AdaIN's ``vgg_normalised.pth`` (an nn.Sequential whose first module
# is the 1x1 input conv and that uses explicit reflection-padding modules).
_ADAIN_IDX = dict(preprocess=0, conv1_1=2, conv1_2=5, conv2_1=9, conv2_2=12, conv3_1=16,
                  conv3_2=19, conv3_3=22, conv3_4=25, conv4_1=29)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _detect_and_convert(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Map a VGG19 state dict of a known layout onto this encoder's parameter names."""
    if 'conv1_1.weight' in state:  # this module's own layout
        return state
    if 'features.0.weight' in state:
        table, prefix = _TORCHVISION_IDX, 'features.'
    elif '0.weight' in state and tuple(state['0.weight'].shape) == (3, 3, 1, 1):
        table, prefix = _ADAIN_IDX, ''
    else:
        raise KeyError('unrecognised VGG19 checkpoint layout: expected torchvision keys '
                       "('features.0.weight', ...), AdaIN vgg_normalised keys ('0.weight' of a "
                       "3x3x1x1 conv, ...) or this encoder's keys ('conv1_1.weight', ...); got "
                       f'{sorted(state)[:6]} ... (for a training checkpoint pass '
                       "checkpoint_prefix='encoder.')")
    out = {}
    for name, idx in table.items():
        for kind in ('weight', 'bias'):
            key = f'{prefix}{idx}.{kind}'
            if key not in state:
                raise KeyError(f'VGG19 checkpoint lacks "{key}" (needed for {name}.{kind})')
            out[f'{name}.{kind}'] = state[key]
    return out


def load_vgg19_state_dict(checkpoint: str, prefix: Optional[str] = None) -> Dict[str, Tensor]:
    """Read a local VGG19 checkpoint and return it in :class:`VGG19Encoder`'s parameter names.

    Args:
        checkpoint: path of a ``.pth`` file: torchvision's ``vgg19-*.pth``, AdaIN's
            ``vgg_normalised.pth``, a :class:`VGG19Encoder` state dict, or a full training
            checkpoint (``{'state_dict': ...}``) together with ``prefix``.
        prefix: keep only keys starting with it and strip it, e.g. ``'encoder.'`` to take the
            (refined) encoder out of an :class:`AdaINStyleTransfer` checkpoint.

    Loaded weights-only (the allowlist of mmkd_plugins.utils.safe_load); MMKD_UNSAFE_LOAD=1 opts into
    full unpickling for a file you trust.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'VGG19 checkpoint "{checkpoint}" not found. Nothing is downloaded at run time: put '
            'torchvision\'s vgg19 weights (e.g. vgg19-dcbb9e9d.pth) or AdaIN\'s '
            'vgg_normalised.pth there, or set encoder.checkpoint=None for random init.')
    from mmkd_plugins.utils.safe_load import load_local_checkpoint  # weights-only + allowlist
    state = load_local_checkpoint(checkpoint, map_location='cpu')
    if isinstance(state, dict) and 'state_dict' in state:
        state = state['state_dict']
    if not isinstance(state, dict):
        raise TypeError(f'{checkpoint} does not hold a state dict (got {type(state).__name__})')
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise KeyError(f'no key of {checkpoint} starts with prefix "{prefix}"')
    return _detect_and_convert(state)


@MODELS.register_module()
class VGG19Encoder(BaseModule):
    """VGG19 up to relu4_1 returning the four AdaIN feature layers.

    Args:
        width: channel multiplier (1.0 = VGG19); pretrained weights need 1.0.
        checkpoint: local path of VGG19 weights (see :func:`load_vgg19_state_dict`); ``None``
            keeps the random initialisation (tests).
        checkpoint_prefix: key prefix to select inside ``checkpoint`` (e.g. ``'encoder.'``).
        padding_mode: ``'reflect'`` (AdaIN's normalised VGG) or ``'zeros'`` (torchvision).
        init_cfg: mmengine init config (weights are normally given by ``checkpoint``).

    Input: ``(N, 3, H, W)`` RGB in ``[0, 1]``, ``H, W >= 16``. Output: dict layer -> features,
    ``relu{k}_1`` of shape ``(N, C_k, H / 2^(k-1), W / 2^(k-1))`` (floor division).
    """

    def __init__(self,
                 width: float = 1.0,
                 checkpoint: Optional[str] = None,
                 checkpoint_prefix: Optional[str] = None,
                 padding_mode: str = 'reflect',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if width <= 0:
            raise ValueError(f'width must be positive, got {width}')
        if padding_mode not in ('reflect', 'zeros'):
            raise ValueError(f"padding_mode must be 'reflect' or 'zeros', got {padding_mode!r}")
        self.width = float(width)
        self.padding_mode = padding_mode
        self.preprocess = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            std = torch.tensor(_IMAGENET_STD)
            self.preprocess.weight.copy_(torch.diag(1.0 / std).reshape(3, 3, 1, 1))
            self.preprocess.bias.copy_(-torch.tensor(_IMAGENET_MEAN) / std)
        self._channels = {}
        for name, cin, cout in _CONVS:
            cin = 3 if cin == 3 else self._scale(cin)
            setattr(self, name, nn.Conv2d(cin, self._scale(cout), 3, padding=1,
                                          padding_mode=padding_mode))
        for layer, conv in zip(VGG_LAYERS, ('conv1_1', 'conv2_1', 'conv3_1', 'conv4_1')):
            self._channels[layer] = getattr(self, conv).out_channels
        # random init that keeps activations O(1) through the ReLUs (PyTorch's default shrinks
        # them layer by layer, leaving relu4_1 near zero); replaced by ``checkpoint`` weights
        for name, _, _ in _CONVS:
            conv = getattr(self, name)
            nn.init.kaiming_normal_(conv.weight, mode='fan_in', nonlinearity='relu')
            nn.init.zeros_(conv.bias)
        self.checkpoint = checkpoint
        if checkpoint is not None:
            self.load_weights(checkpoint, checkpoint_prefix)

    def _scale(self, channels: int) -> int:
        return max(1, int(round(channels * self.width)))

    def out_channels(self, layer: str) -> int:
        """Number of channels of ``layer`` (one of :data:`VGG_LAYERS`)."""
        if layer not in self._channels:
            raise KeyError(f'unknown VGG layer {layer!r}; choose from {VGG_LAYERS}')
        return self._channels[layer]

    def load_weights(self, checkpoint: str, prefix: Optional[str] = None) -> None:
        """Load weights from a local file (see :func:`load_vgg19_state_dict`)."""
        state = load_vgg19_state_dict(checkpoint, prefix)
        own = self.state_dict()
        for key, value in state.items():
            if key in own and own[key].shape != value.shape:
                raise ValueError(f'{checkpoint}: "{key}" has shape {tuple(value.shape)} but the '
                                 f'encoder (width={self.width}) expects {tuple(own[key].shape)}; '
                                 'pretrained VGG weights need width=1.0')
        # the torchvision layout has no input conv: keep the ImageNet normalisation then
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith('preprocess.')]
        if missing or unexpected:
            raise KeyError(f'{checkpoint}: missing keys {missing}, unexpected keys {unexpected}')

    def _relu_conv(self, name: str, x: Tensor) -> Tensor:
        return F.relu(getattr(self, name)(x))

    def forward(self, x: Tensor,
                layers: Optional[Union[str, Sequence[str]]] = None) -> Dict[str, Tensor]:
        """Features at ``layers`` (default all of :data:`VGG_LAYERS`); stops at the deepest one."""
        if layers is None:
            layers = VGG_LAYERS
        elif isinstance(layers, str):
            layers = (layers, )
        bad = [la for la in layers if la not in VGG_LAYERS]
        if bad:
            raise KeyError(f'unknown VGG layer(s) {bad}; choose from {VGG_LAYERS}')
        if not isinstance(x, Tensor) or x.dim() != 4 or x.size(1) != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f'VGG19Encoder expects (N, 3, H, W) RGB images, got {shape}')
        if min(x.shape[-2:]) < 16:
            raise ValueError('VGG19Encoder needs images of at least 16x16 pixels (relu4_1 is at '
                             f'stride 8), got {tuple(x.shape[-2:])}')
        deepest = max(VGG_LAYERS.index(la) for la in layers)
        feats: Dict[str, Tensor] = {}
        h = self.preprocess(x)
        h = self._relu_conv('conv1_1', h)
        feats['relu1_1'] = h
        if deepest >= 1:
            h = F.max_pool2d(self._relu_conv('conv1_2', h), 2)
            h = self._relu_conv('conv2_1', h)
            feats['relu2_1'] = h
        if deepest >= 2:
            h = F.max_pool2d(self._relu_conv('conv2_2', h), 2)
            h = self._relu_conv('conv3_1', h)
            feats['relu3_1'] = h
        if deepest >= 3:
            for name in ('conv3_2', 'conv3_3', 'conv3_4'):
                h = self._relu_conv(name, h)
            h = self._relu_conv('conv4_1', F.max_pool2d(h, 2))
            feats['relu4_1'] = h
        return {la: feats[la] for la in layers}

    @property
    def layer_channels(self) -> List[int]:
        """Channels of relu1_1 .. relu4_1."""
        return [self._channels[la] for la in VGG_LAYERS]
