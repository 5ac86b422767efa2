"""Hash head for deep hashing with mmpretrain classifiers (``ImageClassifier(head=HashHead(...))``)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule, Sequential
from mmengine.registry import MODELS
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from mmkd_plugins.evaluation.metrics.hashing import binarize, pack_bits


def _new_data_sample() -> BaseDataElement:
    try:
        from mmpretrain.structures import DataSample
    except ImportError:  # the head works without mmpretrain (plain mmengine data elements)
        return BaseDataElement()
    return DataSample()


@MODELS.register_module()
class HashHead(BaseModule):
    """Hash layer ``Linear(in, K)`` (optionally after an MLP) with a hashing loss.

    Follows mmpretrain's head interface (``forward``, ``pre_logits``, ``loss``, ``predict``), so it
    plugs into ``mmpretrain.models.ImageClassifier``. There is no tanh: the loss sees the real outputs
    ``h`` and test-time codes are ``sign(h)`` (``h >= 0`` -> bit 1 = +1).

    Args:
        hash_bits: code length K.
        in_channels: channels of the last backbone/neck feature. A 4-D feature (N, C, H, W) is
            flattened, so ``in_channels`` is then C*H*W (e.g. 256*6*6 for an AlexNet without pooling).
        num_classes: C; needed to build multi-hot targets from ``gt_label`` indices and copied into the
            loss config when it lacks ``num_classes``.
        hidden_channels: widths of an optional MLP (Dropout-Linear-ReLU blocks) before the hash layer,
            e.g. ``(4096, 4096)`` reproduces AlexNet's fc6/fc7 with the last layer replaced.
        dropout: dropout probability of the MLP blocks.
        loss: config (or module) of the hashing loss, called as ``loss(h, multi_hot)``;
            ``hash_bits``/``num_classes`` are filled in when missing.
        mlp_init_cfg: initialisation of the MLP alone (applied after ``init_cfg``), e.g.
            ``dict(type='Pretrained', checkpoint='torchvision://alexnet', prefix='classifier.')``:
            with ``hidden_channels=(4096, 4096)`` and ``dropout > 0`` the MLP's layer indices match
            torchvision AlexNet's ``classifier`` (Linear layers at 1 and 4).
        init_cfg: initialisation config.

    ``predict`` writes, per sample, ``pred_hash_bits`` (uint8, ceil(K/8) bytes, numpy.packbits order)
    and ``pred_hash_real`` (float, K) for analysis.
    """

    def __init__(self,
                 hash_bits: int,
                 in_channels: int,
                 num_classes: Optional[int] = None,
                 hidden_channels: Sequence[int] = (),
                 dropout: float = 0.0,
                 loss: Union[dict, nn.Module] = dict(type='HyP2Loss'),
                 mlp_init_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = dict(
                     type='Normal', layer='Linear', std=0.01)) -> None:
        super().__init__(init_cfg=init_cfg)
        if hash_bits < 1 or in_channels < 1:
            raise ValueError(f'HashHead: hash_bits and in_channels must be >= 1, got {hash_bits}, '
                             f'{in_channels}')
        self.hash_bits = hash_bits
        self.in_channels = in_channels
        self.num_classes = num_classes
        layers: List[nn.Module] = []
        width = in_channels
        for hidden in hidden_channels:
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.mlp = Sequential(*layers, init_cfg=mlp_init_cfg)
        self.hash_layer = nn.Linear(width, hash_bits)

        if isinstance(loss, nn.Module):
            self.loss_module = loss
        else:
            loss = dict(loss)
            loss.setdefault('hash_bits', hash_bits)
            if num_classes is not None:
                loss.setdefault('num_classes', num_classes)
            self.loss_module = MODELS.build(loss)

    def pre_logits(self, feats: Union[Tensor, Tuple[Tensor, ...]]) -> Tensor:
        """The last feature, flattened to (N, in_channels), through the MLP."""
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if x.dim() > 2:
            x = x.flatten(1)
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f'HashHead: expected features of {self.in_channels} channels (after '
                             f'flattening), got shape {tuple(x.shape)}')
        return self.mlp(x)

    def forward(self, feats: Union[Tensor, Tuple[Tensor, ...]]) -> Tensor:
        """Real-valued hash outputs h, (N, K)."""
        return self.hash_layer(self.pre_logits(feats))

    def _multi_hot_targets(self, data_samples: Sequence[BaseDataElement], like: Tensor) -> Tensor:
        if len(data_samples) != like.shape[0]:
            raise ValueError(f'HashHead: {len(data_samples)} data samples for a batch of '
                             f'{like.shape[0]}')
        if all('gt_score' in ds for ds in data_samples):
            target = torch.stack([torch.as_tensor(ds.gt_score) for ds in data_samples])
            return target.to(like.device).ne(0).to(like.dtype)
        if self.num_classes is None:
            raise ValueError('HashHead: data samples carry gt_label indices only; set num_classes '
                             '(or give multi-hot gt_score)')
        target = like.new_zeros(len(data_samples), self.num_classes)
        for i, ds in enumerate(data_samples):
            if 'gt_label' not in ds:
                raise KeyError('HashHead: a data sample has neither gt_score nor gt_label')
            idx = torch.as_tensor(ds.gt_label, device=like.device).long().reshape(-1)
            if idx.numel() and (int(idx.max()) >= self.num_classes or int(idx.min()) < 0):
                raise ValueError(f'HashHead: label index out of range [0, {self.num_classes})')
            target[i, idx] = 1
        return target

    def loss(self, feats: Union[Tensor, Tuple[Tensor, ...]], data_samples: Sequence[BaseDataElement],
             **kwargs) -> dict:
        """Hashing loss of a batch: ``dict(loss=...)``."""
        h = self(feats)
        target = self._multi_hot_targets(data_samples, h)
        return dict(loss=self.loss_module(h, target))

    def predict(self,
                feats: Union[Tensor, Tuple[Tensor, ...]],
                data_samples: Optional[List[Optional[BaseDataElement]]] = None
                ) -> List[BaseDataElement]:
        """Binary codes (packed) and real outputs per sample."""
        h = self(feats).detach()
        packed = pack_bits(binarize(h)).cpu()
        if data_samples is None:
            data_samples = [None] * h.shape[0]
        out = []
        for ds, bits, real in zip(data_samples, packed, h):
            ds = _new_data_sample() if ds is None else ds
            ds.set_field(bits, 'pred_hash_bits')
            ds.set_field(real, 'pred_hash_real')
            out.append(ds)
        return out
