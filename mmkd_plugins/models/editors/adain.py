"""AdaIN arbitrary style transfer with optional contrastive encoder refinement.

:class:`AdaINStyleTransfer` is an mmengine ``BaseModel`` laid out like an mmagic editor
(``forward(inputs, data_samples, mode)`` with ``'loss'`` / ``'predict'`` / ``'tensor'``):

* encoder ``f`` = normalised VGG19 up to relu4_1 (:class:`VGG19Encoder`), decoder ``g`` its
  mirror (:class:`AdaINDecoder`);
* ``t = AdaIN(f(c), f(s))``, result ``g(t)``;
* ``L = content_weight * MSE(phi_4(g(t)), t) + style_weight * sum_l [MSE(mu) + MSE(sigma)]``
  with ``phi`` the loss network (the encoder with its weights held constant by default);
* at test time ``g(alpha * t + (1 - alpha) * f(c))``.

**Contrastive refinement** (arXiv 2205.12135) is switched on by giving
``style_contrastive_loss`` and/or ``content_contrastive_loss``. Then the encoder is trainable (put
it in its own optimizer parameter group with ``paramwise_cfg.custom_keys={'encoder.': ...}``) and
training runs in two phases, counted by the model itself (``train_iter`` buffer, saved in
checkpoints so resuming keeps the phase):

1. ``iter < refine_iters`` -- *refinement*: the encoder and the projection heads are updated by the
   contrastive losses only (anchors are the stylised results, detached from the decoder by
   default); the decoder keeps learning the AdaIN loss with the moving encoder;
2. ``iter >= refine_iters`` -- *decoder training*: the refined encoder is frozen and the decoder is
   trained / fine-tuned with the AdaIN loss alone.

A frozen copy of the initial encoder (``plain_encoder``) is kept so that evaluation reports
metrics in both the plain and the refined encoder's space.
"""
import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.registry import MODELS
from mmengine.structures import BaseDataElement
from torch import Tensor

from .adain_ops import (adain_content_loss, adain_style_loss, adaptive_instance_norm,
                        blend_features, calc_mean_std)
from .vgg_encoder import VGG_LAYERS

__all__ = ['AdaINStyleTransfer', 'StyleTransferDataPreprocessor']


def _stack(images: Union[Tensor, Sequence[Tensor]], name: str) -> Tensor:
    if isinstance(images, Tensor):
        batch = images if images.dim() == 4 else images.unsqueeze(0)
    else:
        images = list(images)
        if not images:
            raise ValueError(f'empty batch of {name} images')
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) != 1:
            raise ValueError(f'{name} images of one batch must share a size to be stacked, got '
                             f'{sorted(shapes)}; crop them in the pipeline or use batch_size=1')
        batch = torch.stack(images)
    if batch.dim() != 4 or batch.size(1) != 3:
        raise ValueError(f'{name} images must be (3, H, W) RGB, got batch shape '
                         f'{tuple(batch.shape)}')
    return batch


@MODELS.register_module()
class StyleTransferDataPreprocessor(BaseDataPreprocessor):
    """Stacks ``inputs = {'content': [...], 'style': [...]}`` (uint8 ``(3, H, W)`` RGB) into float
    ``(N, 3, H, W)`` batches in ``[0, 1]`` on the model's device.

    Args:
        scale: divisor applied to the pixel values (255 for uint8 images).
    """

    def __init__(self, scale: float = 255.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data.get('inputs')
        if not isinstance(inputs, dict) or not {'content', 'style'} <= set(inputs):
            raise KeyError('style-transfer batches need inputs=dict(content=..., style=...), got '
                           f'{type(inputs).__name__}'
                           f'{sorted(inputs) if isinstance(inputs, dict) else ""}')
        out = {k: _stack(inputs[k], k).float() / self.scale for k in ('content', 'style')}
        return dict(inputs=out, data_samples=data.get('data_samples'))


def _ids_from_samples(data_samples: Optional[List[BaseDataElement]], key: str,
                      device: torch.device) -> Optional[Tensor]:
    if not data_samples or any(key not in ds.metainfo for ds in data_samples):
        return None
    return torch.tensor([int(ds.metainfo[key]) for ds in data_samples], device=device)


@MODELS.register_module()
class AdaINStyleTransfer(BaseModel):
    """AdaIN style transfer (Huang & Belongie 2017) with optional contrastive encoder refinement.

    Args:
        encoder: config of the encoder (:class:`VGG19Encoder`; give ``checkpoint`` for weights).
        decoder: config of the decoder (:class:`AdaINDecoder`); its ``width`` defaults to the
            encoder's.
        content_weight: weight of the content loss (1 in AdaIN).
        style_weight: weight ``lambda`` of the style loss (10 in AdaIN).
        style_layers: layers of the style loss.
        alpha: test-time content/style trade-off in ``[0, 1]``.
        style_contrastive_loss: config of :class:`StyleContrastiveLoss` (``in_channels`` is filled
            in from the encoder); ``None`` disables it.
        content_contrastive_loss: config of :class:`ContentContrastiveLoss`; ``None`` disables it.
        refine_iters: length of the refinement phase in training iterations; ``None`` refines
            during the whole run. Ignored without contrastive losses.
        loss_network: ``'encoder'`` -- the AdaIN loss uses the (refined) encoder with its weights
            held constant, as AdaIN uses one VGG for both; ``'plain'`` -- it uses the frozen copy
            of the initial encoder (then the content target is AdaIN in that space too).
        detach_stylized: stop the contrastive losses' gradient at the stylised image, so that
            they shape the encoder (and heads) only, not the decoder.
        encoder_grad_from_transfer: let the AdaIN loss also update the encoder during refinement
            (off: the encoder is refined by the contrastive losses alone).
        eval_encoders: extra frozen encoders (name -> config) to evaluate results with, e.g. a
            refined encoder checkpoint for a baseline model.
        with_eval_feats: attach features for :class:`StyleTransferMetric` to predictions.
        data_preprocessor: defaults to :class:`StyleTransferDataPreprocessor`.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 encoder: dict = dict(type='VGG19Encoder'),
                 decoder: dict = dict(type='AdaINDecoder'),
                 content_weight: float = 1.0,
                 style_weight: float = 10.0,
                 style_layers: Sequence[str] = VGG_LAYERS,
                 alpha: float = 1.0,
                 style_contrastive_loss: Optional[dict] = None,
                 content_contrastive_loss: Optional[dict] = None,
                 refine_iters: Optional[int] = None,
                 loss_network: str = 'encoder',
                 detach_stylized: bool = True,
                 encoder_grad_from_transfer: bool = False,
                 eval_encoders: Optional[Dict[str, dict]] = None,
                 with_eval_feats: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='StyleTransferDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must lie in [0, 1], got {alpha}')
        if loss_network not in ('encoder', 'plain'):
            raise ValueError(f"loss_network must be 'encoder' or 'plain', got {loss_network!r}")
        bad = [la for la in style_layers if la not in VGG_LAYERS]
        if bad or not style_layers:
            raise ValueError(f'style_layers must be a non-empty subset of {VGG_LAYERS}, got '
                             f'{list(style_layers)}')
        if refine_iters is not None and refine_iters < 0:
            raise ValueError(f'refine_iters must be >= 0 or None, got {refine_iters}')

        self.encoder = MODELS.build(encoder)
        decoder = dict(decoder)
        if 'width' not in decoder and hasattr(self.encoder, 'width'):
            decoder['width'] = self.encoder.width
        self.decoder = MODELS.build(decoder)
        c4 = self.encoder.out_channels('relu4_1')
        if getattr(self.decoder, 'in_channels', c4) != c4:
            raise ValueError(f'decoder expects {self.decoder.in_channels} input channels but the '
                             f'encoder gives {c4} at relu4_1; use the same width for both')

        self.style_contrast = self._build_contrastive(style_contrastive_loss)
        self.content_contrast = self._build_contrastive(content_contrastive_loss)
        self.refining = self.style_contrast is not None or self.content_contrast is not None
        self.plain_encoder = None
        if self.refining or loss_network == 'plain':
            self.plain_encoder = copy.deepcopy(self.encoder)
            self.plain_encoder.requires_grad_(False)
        self.encoder.requires_grad_(self.refining)
        self.extra_eval_encoders = nn.ModuleDict(
            {name: MODELS.build(cfg) for name, cfg in (eval_encoders or {}).items()})
        self.extra_eval_encoders.requires_grad_(False)

        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.style_layers = list(style_layers)
        self.alpha = float(alpha)
        self.refine_iters = refine_iters
        self.loss_network = loss_network
        self.detach_stylized = detach_stylized
        self.encoder_grad_from_transfer = encoder_grad_from_transfer
        self.with_eval_feats = with_eval_feats
        self.register_buffer('train_iter', torch.zeros((), dtype=torch.long))

    def _build_contrastive(self, cfg: Optional[dict]) -> Optional[nn.Module]:
        if cfg is None:
            return None
        cfg = dict(cfg)
        if cfg.get('in_channels') is None:
            if 'layer' in cfg or cfg.get('type') == 'ContentContrastiveLoss':
                cfg['in_channels'] = self.encoder.out_channels(cfg.get('layer', 'relu4_1'))
            else:
                layers = cfg.get('layers', ('relu3_1', ))
                layers = [layers] if isinstance(layers, str) else list(layers)
                cfg['in_channels'] = [self.encoder.out_channels(la) for la in layers]
        return MODELS.build(cfg)

    # ------------------------------------------------------------------ helpers
    @property
    def in_refine_phase(self) -> bool:
        """Whether the next training iteration refines the encoder."""
        if not self.refining:
            return False
        return self.refine_iters is None or int(self.train_iter) < self.refine_iters

    def _loss_net(self, x: Tensor, layers: Sequence[str]) -> Dict[str, Tensor]:
        """Loss-network features with gradients w.r.t. ``x`` but never w.r.t. its weights."""
        if self.loss_network == 'plain':
            return self.plain_encoder(x, layers)
        params = {k: v.detach() for k, v in self.encoder.named_parameters()}
        return torch.func.functional_call(self.encoder, params, (x, ), dict(layers=layers))

    def _contrastive_layers(self) -> List[str]:
        layers = set()
        for loss in (self.style_contrast, self.content_contrast):
            if loss is not None:
                layers.update(loss.layers)
        return [la for la in VGG_LAYERS if la in layers]

    @staticmethod
    def _check_train_size(x: Tensor) -> None:
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError('training crops must have height and width divisible by 8 (the '
                             f'decoder upsamples relu4_1 by 8), got {h}x{w}')

    # ------------------------------------------------------------------ forward
    def forward(self,
                inputs: Dict[str, Tensor],
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        if not isinstance(inputs, dict) or not {'content', 'style'} <= set(inputs):
            raise KeyError('AdaINStyleTransfer needs inputs=dict(content=(N,3,H,W), '
                           'style=(N,3,H,W))')
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.stylize(inputs['content'], inputs['style'])
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, inputs: Dict[str, Tensor],
             data_samples: Optional[List[BaseDataElement]] = None) -> Dict[str, Tensor]:
        content, style = inputs['content'], inputs['style']
        if content.shape != style.shape:
            raise ValueError('training needs content and style batches of the same shape, got '
                             f'{tuple(content.shape)} and {tuple(style.shape)}')
        self._check_train_size(content)
        refine = self.in_refine_phase
        enc_layers = sorted(set(self.style_layers) | {'relu4_1'}
                            | set(self._contrastive_layers() if refine else ()),
                            key=VGG_LAYERS.index)
        with torch.set_grad_enabled(refine and torch.is_grad_enabled()):
            f_c = self.encoder(content, enc_layers)
            f_s = self.encoder(style, enc_layers)
        c4, s4 = f_c['relu4_1'], f_s['relu4_1']
        if not (refine and self.encoder_grad_from_transfer):
            c4, s4 = c4.detach(), s4.detach()
        t = adaptive_instance_norm(c4, s4)
        stylized = self.decoder(t)

        out_layers = sorted(set(self.style_layers) | {'relu4_1'}, key=VGG_LAYERS.index)
        if self.loss_network == 'plain':
            with torch.no_grad():
                p_c = self.plain_encoder(content, 'relu4_1')['relu4_1']
                p_s = self.plain_encoder(style, out_layers)
            target = adaptive_instance_norm(p_c, p_s['relu4_1'])
            style_targets = [p_s[la] for la in self.style_layers]
        else:
            target = t.detach()
            style_targets = [f_s[la].detach() for la in self.style_layers]
        f_g = self._loss_net(stylized, out_layers)
        losses = OrderedDict()
        losses['loss_content'] = self.content_weight * adain_content_loss(f_g['relu4_1'], target)
        losses['loss_style'] = self.style_weight * adain_style_loss(
            [f_g[la] for la in self.style_layers], style_targets)

        if refine:
            anchor_img = stylized.detach() if self.detach_stylized else stylized
            f_a = self.encoder(anchor_img, self._contrastive_layers())
            if self.style_contrast is not None:
                losses['loss_style_contrast'] = self.style_contrast(
                    f_a, f_s, f_c, _ids_from_samples(data_samples, 'style_id', content.device))
            if self.content_contrast is not None:
                losses['loss_content_contrast'] = self.content_contrast(
                    f_a, f_c, f_s, _ids_from_samples(data_samples, 'content_id',
                                                     content.device))
        if self.refining:
            # keep the keys in the second phase too (as zeros), so that logs do not repeat the
            # last refinement value
            for key, loss in (('loss_style_contrast', self.style_contrast),
                              ('loss_content_contrast', self.content_contrast)):
                if loss is not None and key not in losses:
                    losses[key] = content.new_zeros(())
            losses['refine_phase'] = content.new_tensor(float(refine))
        if self.training:
            self.train_iter += 1
        return losses

    @torch.no_grad()
    def stylize(self, content: Tensor, style: Tensor, alpha: Optional[float] = None) -> Tensor:
        """Stylise ``content`` ``(N, 3, H, W)`` with ``style`` ``(N or 1, 3, H', W')``.

        Images are RGB in ``[0, 1]``; any ``H, W >= 16`` works (the content is reflect-padded to a
        multiple of 8 and the result cropped back). Returns ``(N, 3, H, W)`` clamped to
        ``[0, 1]``.
        """
        alpha = self.alpha if alpha is None else float(alpha)
        for name, x in (('content', content), ('style', style)):
            if not isinstance(x, Tensor) or x.dim() != 4 or x.size(1) != 3:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f'{name} must be (N, 3, H, W) RGB, got {shape}')
        n = content.size(0)
        if style.size(0) not in (1, n):
            raise ValueError(f'style batch ({style.size(0)}) must be 1 or match the content '
                             f'batch ({n})')
        h, w = content.shape[-2:]
        if min(h, w) < 16 or min(style.shape[-2:]) < 16:
            raise ValueError('content and style images need at least 16x16 pixels, got '
                             f'{h}x{w} and {tuple(style.shape[-2:])}')
        pad_h, pad_w = (-h) % 8, (-w) % 8
        padded = F.pad(content, (0, pad_w, 0, pad_h), mode='reflect') if pad_h or pad_w \
            else content
        f_c = self.encoder(padded, 'relu4_1')['relu4_1']
        f_s = self.encoder(style, 'relu4_1')['relu4_1']
        if f_s.size(0) == 1 and n > 1:
            f_s = f_s.expand(n, -1, -1, -1)
        t = blend_features(adaptive_instance_norm(f_c, f_s), f_c, alpha)
        out = self.decoder(t)[..., :h, :w]
        return out.clamp(0.0, 1.0)

    def eval_encoders(self) -> 'OrderedDict[str, nn.Module]':
        """Encoders the predictions are evaluated with: ``plain`` (and ``refined``) + extras."""
        encs = OrderedDict()
        if self.refining:
            encs['plain'] = self.plain_encoder
            encs['refined'] = self.encoder
        else:
            encs['plain'] = self.encoder
        encs.update(self.extra_eval_encoders.items())
        return encs

    @torch.no_grad()
    def predict(self, inputs: Dict[str, Tensor],
                data_samples: Optional[List[BaseDataElement]] = None) -> List[BaseDataElement]:
        """Stylised images as ``pred_img`` ``(3, H, W)`` in ``[0, 1]`` (on CPU).

        With ``with_eval_feats``, each sample also gets ``eval_feats[name]`` for every encoder of
        :meth:`eval_encoders`: ``content_relu4_1`` / ``result_relu4_1`` feature maps and the
        channel ``(mean, std)`` of the result and style image at every VGG layer
        (``result_stats`` / ``style_stats``: layer -> ``(2, C)``).
        """
        content, style = inputs['content'], inputs['style']
        result = self.stylize(content, style)
        n = content.size(0)
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(n)]
        if len(data_samples) != n:
            raise ValueError(f'{len(data_samples)} data samples for a batch of {n} images')
        feats = {}
        if self.with_eval_feats:
            for name, enc in self.eval_encoders().items():
                f_r = enc(result)
                f_c = enc(content, 'relu4_1')['relu4_1']
                f_s = enc(style)
                feats[name] = (f_r, f_c, f_s)
        for i, ds in enumerate(data_samples):
            ds.pred_img = result[i].cpu()
            if feats:
                per = {}
                for name, (f_r, f_c, f_s) in feats.items():
                    per[name] = dict(
                        content_relu4_1=f_c[i].cpu(),
                        result_relu4_1=f_r['relu4_1'][i].cpu(),
                        result_stats={la: _stats(f_r[la][i:i + 1]) for la in VGG_LAYERS},
                        style_stats={
                            la: _stats(f_s[la][min(i, f_s[la].size(0) - 1):][:1])
                            for la in VGG_LAYERS
                        })
                ds.eval_feats = per
        return data_samples


def _stats(feat: Tensor) -> Tensor:
    mean, std = calc_mean_std(feat)
    return torch.stack([mean.flatten(), std.flatten()]).cpu()
