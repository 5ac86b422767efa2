"""SWEM: video object segmentation with a fixed-size memory (Sequential Weighted EM, CVPR 2022).

Data format (see :mod:`mmkd_plugins.datasets.vos`): ``inputs`` are clips (B, T, 3, H, W) after
:class:`VOSDataPreprocessor`; each data sample is a ``BaseDataElement`` with ``gt_masks`` (T, H, W)
label maps (0 background, 1..K objects) and metainfo ``num_objects`` (training) or ``ori_shape``,
``init_frames`` (inference: frames whose annotation introduces objects; ``[0]`` for DAVIS).

Per frame: key encoder -> keys ``k`` (128 ch), query value ``qv`` (512 ch) and skips; the memory
(:class:`SWEMMemory` or the :class:`GrowingMemory` baseline) reads ``(r, S)``; GLU fusion of
``[r; qv; S]``; decoder -> per-object logits; soft aggregation over the objects; value encoder of
``[RGB, own mask, others]`` fused with the key feature -> values, memorised for the next frames.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from .memory import BaseVOSMemory
from .networks import (Decoder, GLUFusion, KeyEncoder, ValueEncoder, downsample_masks,
                       expand_to_objects, soft_aggregate)


@MODELS.register_module()
class SWEM(BaseModel):
    """The SWEM network (STCN-like encoders/decoder + a swappable memory).

    Args:
        key_backbone: config of the key backbone (outputs at strides 4, 8, 16; default
            ``mmpretrain.ResNet`` depth 50 cut after layer3).
        value_backbone: config of the value backbone, 5 input channels, last output at stride 16
            (default ``mmpretrain.ResNet`` depth 18 cut after layer3).
        key_channels: channels of the key backbone at strides (16, 8, 4).
        value_backbone_channels: channels of the value backbone's stride-16 output.
        key_dim: key channels after the projection (128).
        value_dim: value / query-value channels (512).
        decoder_channels: decoder width (256).
        memory: memory config (``SWEMMemory`` or ``GrowingMemory``); ``key_dim``/``value_dim`` are filled
            in for ``SWEMMemory``.
        loss_ce / loss_iou: loss configs.
        data_preprocessor: defaults to ``VOSDataPreprocessor``.
        value_extra_channel_init: init of the value backbone's first-conv input channels that a
            ``Pretrained`` RGB checkpoint lacks (the 2 mask channels): ``'orthogonal'`` (official) or
            ``'zeros'``; the RGB filters come from the checkpoint.
        frame_reduction: how the per-frame losses of a clip's predicted frames combine: ``'mean'``
            (official: the CE and IoU losses average over the frames) or ``'sum'``.

    Pretrained weights: the backbones' ``init_cfg`` is applied by :meth:`init_weights` (the Runner
    calls it before training); the encoders are ``BaseModule`` so that it reaches the backbones.
    """

    def __init__(self,
                 key_backbone: Optional[dict] = None,
                 value_backbone: Optional[dict] = None,
                 key_channels: Sequence[int] = (1024, 512, 256),
                 value_backbone_channels: int = 256,
                 key_dim: int = 128,
                 value_dim: int = 512,
                 decoder_channels: int = 256,
                 memory: Optional[dict] = None,
                 loss_ce: Optional[dict] = None,
                 loss_iou: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 value_extra_channel_init: str = 'orthogonal',
                 frame_reduction: str = 'mean',
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='VOSDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if frame_reduction not in ('mean', 'sum'):
            raise ValueError(f'SWEM: frame_reduction must be "mean" or "sum", got {frame_reduction!r}')
        self.frame_reduction = frame_reduction
        if key_backbone is None:
            key_backbone = dict(type='mmpretrain.ResNet', depth=50, num_stages=3, strides=(1, 2, 2),
                                dilations=(1, 1, 1), out_indices=(0, 1, 2), norm_eval=True)
        if value_backbone is None:
            value_backbone = dict(type='mmpretrain.ResNet', depth=18, in_channels=5, num_stages=3,
                                  strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2, ),
                                  norm_eval=True)
        if len(key_channels) != 3:
            raise ValueError(f'SWEM: key_channels must give 3 values (strides 16, 8, 4), got '
                             f'{key_channels}')
        c16, c8, c4 = key_channels
        self.key_encoder = KeyEncoder(key_backbone)
        self.value_encoder = ValueEncoder(value_backbone, value_backbone_channels, c16, value_dim,
                                          value_extra_channel_init)
        self.key_proj = nn.Conv2d(c16, key_dim, 3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)
        self.key_comp = nn.Conv2d(c16, value_dim, 3, padding=1)

        memory = copy.deepcopy(memory) if memory is not None else dict(type='SWEMMemory')
        if memory.get('type') in ('SWEMMemory', 'mmkd_plugins.SWEMMemory'):
            memory.setdefault('key_dim', key_dim)
            memory.setdefault('value_dim', value_dim)
        self.memory: BaseVOSMemory = MODELS.build(memory)
        if not isinstance(self.memory, BaseVOSMemory):
            raise TypeError(f'SWEM: memory must be a BaseVOSMemory, got {type(self.memory).__name__}')
        self.fusion = GLUFusion(2 * value_dim + 2 * self.memory.top_l, value_dim)
        self.decoder = Decoder(value_dim, (c8, c4), decoder_channels)

        self.loss_ce = MODELS.build(loss_ce or dict(type='VOSBootstrappedCELoss'))
        self.loss_iou = MODELS.build(loss_iou or dict(type='VOSIoULoss'))
        self._object_ids: List[int] = []

    # ------------------------------------------------------------------ building blocks
    def encode_key(self, frames: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(N, 3, H, W) -> key (N, Ck, h, w), query value (N, Cv, h, w), f16, f8, f4."""
        f16, f8, f4 = self.key_encoder(frames)
        return self.key_proj(f16), self.key_comp(f16), f16, f8, f4

    def encode_value(self, frame: Tensor, f16: Tensor, prob: Tensor) -> Tensor:
        """frame (B, 3, H, W), f16 (B, C, h, w), prob (B, O, H, W) -> values (B*O, Cv, h, w).

        The 'others' mask of an object is the sum of the other objects' probabilities (clipped to 1).
        """
        num_obj = prob.shape[1]
        own = prob.flatten(0, 1).unsqueeze(1)
        others = (prob.sum(dim=1, keepdim=True) - prob).clamp(0, 1).flatten(0, 1).unsqueeze(1)
        return self.value_encoder(expand_to_objects(frame, num_obj), expand_to_objects(f16, num_obj),
                                  own, others)

    def segment(self, key: Tensor, qv: Tensor, f8: Tensor, f4: Tensor, num_obj: int,
                out_size: Tuple[int, int], valid: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Read the memory and decode all objects of a frame (B frames, ``num_obj`` objects each).

        Returns aggregated logits (B, O+1, H, W) and their softmax probabilities.
        """
        readout, feat = self.memory.read(expand_to_objects(key, num_obj))
        context = self.fusion(torch.cat([readout, expand_to_objects(qv, num_obj), feat], dim=1))
        logits = self.decoder(context, expand_to_objects(f8, num_obj), expand_to_objects(f4, num_obj),
                              out_size)
        prob = torch.sigmoid(logits).view(-1, num_obj, *out_size)
        agg = soft_aggregate(prob, valid)
        return agg, torch.softmax(agg, dim=1)

    def _memory_masks(self, prob: Tensor, size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        """Aggregated probs (B, O+1, H, W) -> hard (argmax) and soft masks of the objects at ``size``."""
        num_obj = prob.shape[1] - 1
        hard = F.one_hot(prob.argmax(dim=1), num_obj + 1)[..., 1:].permute(0, 3, 1, 2)
        return downsample_masks(prob[:, 1:].flatten(0, 1).unsqueeze(1), size,
                                hard.flatten(0, 1).unsqueeze(1))

    # ------------------------------------------------------------------ mmengine API
    def forward(self, inputs: Union[Tensor, List[Tensor]], data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.loss(inputs, data_samples, return_logits=True)
        raise RuntimeError(f'SWEM: invalid mode "{mode}" (expected loss, predict or tensor)')

    def loss(self, inputs: Tensor, data_samples: List[BaseDataElement],
             return_logits: bool = False) -> Union[Dict[str, Tensor], List[Tensor]]:
        """Training on clips: frame 0 with its ground truth initialises the memory, frames 1..T-1 are
        predicted one after the other (each prediction is memorised before the next frame). The
        per-frame losses are averaged (``frame_reduction='mean'``, official) or summed over the
        predicted frames."""
        if not isinstance(inputs, Tensor) or inputs.dim() != 5:
            raise ValueError('SWEM.loss: training clips must be stacked into (B, T, 3, H, W); all clips '
                             'of a batch need the same size and length')
        b, t, _, h, w = inputs.shape
        if t < 2:
            raise ValueError(f'SWEM.loss: a training clip needs at least 2 frames, got {t}')
        labels = torch.stack([ds.gt_masks for ds in data_samples]).long().to(inputs.device)
        if labels.shape != (b, t, h, w):
            raise ValueError(f'SWEM.loss: gt_masks {tuple(labels.shape)} do not match the clips '
                             f'{(b, t, h, w)}')
        counts = [int(ds.metainfo.get('num_objects', int(ds.gt_masks.max()))) for ds in data_samples]
        num_obj = max(max(counts), 1)
        valid = torch.tensor([[o < c for o in range(num_obj)] for c in counts], device=inputs.device)
        obj_ids = torch.arange(1, num_obj + 1, device=inputs.device).view(1, 1, -1, 1, 1)
        onehot = (labels.unsqueeze(2) == obj_ids).float()  # B, T, O, H, W

        key, qv, f16, f8, f4 = (x.view(b, t, *x.shape[1:]) for x in self.encode_key(inputs.flatten(0, 1)))
        size = key.shape[-2:]
        self.memory.reset()
        value = self.encode_value(inputs[:, 0], f16[:, 0], onehot[:, 0])
        hard, soft = downsample_masks(onehot[:, 0].flatten(0, 1).unsqueeze(1), size)
        self.memory.add_objects(expand_to_objects(key[:, 0], num_obj), value, hard, soft)

        iteration = int(MessageHub.get_current_instance().get_info('iter', 0) or 0)
        losses = dict(loss_ce=inputs.new_zeros(()), loss_iou=inputs.new_zeros(()))
        all_logits = []
        for i in range(1, t):
            logits, prob = self.segment(key[:, i], qv[:, i], f8[:, i], f4[:, i], num_obj, (h, w), valid)
            all_logits.append(logits)
            if i < t - 1:
                value = self.encode_value(inputs[:, i], f16[:, i], prob[:, 1:])
                hard, soft = self._memory_masks(prob, size)
                self.memory.memorize(expand_to_objects(key[:, i], num_obj), value, hard, soft)
            losses['loss_ce'] = losses['loss_ce'] + self.loss_ce(logits, labels[:, i], iteration)
            losses['loss_iou'] = losses['loss_iou'] + self.loss_iou(prob, labels[:, i], valid)
        if self.frame_reduction == 'mean':
            losses = {k: v / (t - 1) for k, v in losses.items()}
        self.memory.reset()
        return all_logits if return_logits else losses

    # ------------------------------------------------------------------ streaming inference
    def start_video(self) -> None:
        """Forget the previous video (call before the first :meth:`step`)."""
        self.memory.reset()
        self._object_ids = []

    @property
    def object_ids(self) -> List[int]:
        """Label values of the tracked objects, in slot order."""
        return list(self._object_ids)

    @torch.no_grad()
    def step(self, frame: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """Segment one frame of the current video and memorise it.

        Args:
            frame: (3, H, W) normalised frame.
            labels: optional (H, W) annotation of this frame; objects whose label is not tracked yet
                are added (their annotation overrides the prediction), tracked ones are ignored.

        Returns:
            (O+1, H, W) probabilities, channel ``o+1`` is object ``self.object_ids[o]``.
        """
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise ValueError(f'SWEM.step: frame must be (3, H, W), got {tuple(frame.shape)}')
        h, w = frame.shape[-2:]
        frame = frame.unsqueeze(0)
        key, qv, f16, f8, f4 = self.encode_key(frame)
        n_old = len(self._object_ids)
        if n_old > 0:
            prob = self.segment(key, qv, f8, f4, n_old, (h, w))[1]
        else:
            prob = frame.new_ones(1, 1, h, w)
        new_ids: List[int] = []
        if labels is not None:
            if labels.shape != (h, w):
                raise ValueError(f'SWEM.step: labels {tuple(labels.shape)} must match the frame '
                                 f'{(h, w)}')
            present = [int(v) for v in torch.unique(labels).tolist() if v != 0]
            new_ids = [v for v in present if v not in self._object_ids]
        if new_ids:
            new = torch.stack([(labels == v) for v in new_ids]).to(prob.dtype).unsqueeze(0)
            prob = torch.cat([prob * (1 - new.amax(dim=1, keepdim=True)), new], dim=1)
        num_obj = prob.shape[1] - 1
        if num_obj == 0:
            return prob[0]
        value = self.encode_value(frame, f16, prob[:, 1:])
        hard, soft = self._memory_masks(prob, key.shape[-2:])
        if n_old > 0:
            self.memory.memorize(expand_to_objects(key, n_old), value[:n_old], hard[:n_old],
                                 soft[:n_old])
        if new_ids:
            n_new = len(new_ids)
            self.memory.add_objects(expand_to_objects(key, n_new), value[n_old:], hard[n_old:],
                                    soft[n_old:])
            self._object_ids.extend(new_ids)
        return prob[0]

    @torch.no_grad()
    def predict(self, inputs: Union[Tensor, List[Tensor]],
                data_samples: List[BaseDataElement]) -> List[BaseDataElement]:
        """Whole-video inference; sets ``pred_masks`` (T, H0, W0) uint8 label maps (original ids and
        ``ori_shape`` size) on each data sample."""
        if isinstance(inputs, Tensor):
            inputs = list(inputs)
        for clip, sample in zip(inputs, data_samples):
            sample.pred_masks = self.predict_video(clip, sample)
        return data_samples

    @torch.no_grad()
    def predict_video(self, clip: Tensor, sample: BaseDataElement, progress=None) -> Tensor:
        """One video: clip (T, 3, H, W) normalised; ``sample.gt_masks`` (T or more frames, H0, W0)
        gives the annotation of the frames in ``sample.metainfo['init_frames']`` (default ``[0]``).
        ``progress`` is an optional callable called after each frame."""
        t, _, h, w = clip.shape
        gt = sample.gt_masks
        ori_shape = tuple(sample.metainfo.get('ori_shape', gt.shape[-2:]))[:2]
        init_frames = set(int(i) for i in sample.metainfo.get('init_frames', [0]))
        self.start_video()
        preds = torch.zeros(t, *ori_shape, dtype=torch.uint8)
        for i in range(t):
            labels = None
            if i in init_frames:
                labels = F.interpolate(gt[i][None, None].float(), size=(h, w),
                                       mode='nearest')[0, 0].long().to(clip.device)
            prob = self.step(clip[i], labels)
            if prob.shape[0] > 1:
                prob = F.interpolate(prob[None], size=ori_shape, mode='bilinear',
                                     align_corners=False)[0]
                ids = torch.tensor([0] + self._object_ids, device=prob.device)
                preds[i] = ids[prob.argmax(dim=0)].to(torch.uint8).cpu()
            if progress is not None:
                progress()
        self.memory.reset()
        return preds
