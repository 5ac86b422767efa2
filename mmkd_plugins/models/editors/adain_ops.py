"""AdaIN math as pure functions (tensors in, tensor out).

Huang & Belongie, "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization"
(ICCV 2017). Shapes: feature maps are ``(N, C, H, W)``; statistics are taken over ``H, W`` per
sample and channel.

* :func:`calc_mean_std` -- ``mu = mean_hw(x)``, ``sigma = sqrt(var_hw(x) + eps)`` (biased variance).
* :func:`adaptive_instance_norm` -- ``AdaIN(x, y) = sigma_y * (x - mu_x) / sigma_x + mu_y``.
* :func:`blend_features` -- test-time content/style trade-off ``alpha * t + (1 - alpha) * f_c``.
* :func:`adain_content_loss` -- ``MSE(phi_4(g(t)), t)``.
* :func:`adain_style_loss` -- ``sum_l MSE(mu(phi_l(g(t))), mu(phi_l(s))) +
  MSE(sigma(phi_l(g(t))), sigma(phi_l(s)))``.
"""
from typing import Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'calc_mean_std', 'adaptive_instance_norm', 'blend_features', 'adain_content_loss',
    'adain_style_loss'
]


def _check_4d(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f'{name} must be a (N, C, H, W) feature map, got {shape}')


def calc_mean_std(feat: Tensor, eps: float = 1e-5) -> Tuple[Tensor, Tensor]:
    r"""Per-sample, per-channel mean and standard deviation over the spatial dimensions.

    .. math::
        \mu_{nc} = \frac{1}{HW}\sum_{h,w} x_{nchw}, \qquad
        \sigma_{nc} = \sqrt{\frac{1}{HW}\sum_{h,w}(x_{nchw} - \mu_{nc})^2 + \epsilon}

    The variance is the biased (population) one, as instance normalisation uses.

    Args:
        feat: ``(N, C, H, W)`` feature map.
        eps: added to the variance before the square root (1e-5 as in AdaIN).

    Returns:
        ``(mean, std)``, each ``(N, C, 1, 1)`` so they broadcast against ``feat``.
    """
    _check_4d(feat, 'feat')
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    mean = flat.mean(dim=2)
    var = flat.var(dim=2, unbiased=False)
    std = (var + eps).sqrt()
    return mean.reshape(n, c, 1, 1), std.reshape(n, c, 1, 1)


def adaptive_instance_norm(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    r"""AdaIN: give the content features the channel-wise statistics of the style features.

    .. math:: \mathrm{AdaIN}(x, y) = \sigma(y)\,\frac{x - \mu(x)}{\sigma(x)} + \mu(y)

    Args:
        content: ``(N, C, H, W)`` content features.
        style: ``(N, C, H', W')`` style features (spatial size may differ).
        eps: variance epsilon of :func:`calc_mean_std`.

    Returns:
        ``(N, C, H, W)`` features whose per-channel mean equals ``mu(style)`` and whose
        ``sqrt(var + eps)`` equals ``sigma(style) * sigma_biased(content) / sigma(content)``
        (i.e. ``sigma(style)`` up to the ``eps`` term).
    """
    _check_4d(content, 'content')
    _check_4d(style, 'style')
    if content.shape[:2] != style.shape[:2]:
        raise ValueError('AdaIN needs content and style features with the same batch size and '
                         f'channels, got {tuple(content.shape)} and {tuple(style.shape)}')
    c_mean, c_std = calc_mean_std(content, eps)
    s_mean, s_std = calc_mean_std(style, eps)
    return (content - c_mean) / c_std * s_std + s_mean


def blend_features(stylized: Tensor, content: Tensor, alpha: float) -> Tensor:
    r"""Content/style trade-off at test time: :math:`\alpha\,t + (1-\alpha)\,f_c`.

    Args:
        stylized: ``(N, C, H, W)`` AdaIN output ``t``.
        content: ``(N, C, H, W)`` content features ``f_c``.
        alpha: in ``[0, 1]``; 1 is full stylisation, 0 reconstructs the content.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f'alpha must lie in [0, 1], got {alpha}')
    if stylized.shape != content.shape:
        raise ValueError(f'cannot blend features of shapes {tuple(stylized.shape)} and '
                         f'{tuple(content.shape)}')
    return alpha * stylized + (1.0 - alpha) * content


def adain_content_loss(output_feat: Tensor, target: Tensor) -> Tensor:
    r"""AdaIN content loss :math:`\|\phi_4(g(t)) - t\|_2^2` averaged over all elements (MSE).

    Args:
        output_feat: ``(N, C, H, W)`` relu4_1 features of the decoded image.
        target: ``(N, C, H, W)`` AdaIN target ``t`` (treated as a constant by the caller).
    """
    _check_4d(output_feat, 'output_feat')
    _check_4d(target, 'target')
    if output_feat.shape != target.shape:
        raise ValueError('content loss needs features of equal shape, got '
                         f'{tuple(output_feat.shape)} and {tuple(target.shape)}')
    return F.mse_loss(output_feat, target)


def adain_style_loss(output_feats: Sequence[Tensor],
                     style_feats: Sequence[Tensor],
                     eps: float = 1e-5) -> Tensor:
    r"""AdaIN style loss: match channel means and standard deviations layer by layer.

    .. math::
        L_s = \sum_{l} \mathrm{MSE}(\mu(\phi_l(g(t))), \mu(\phi_l(s)))
              + \mathrm{MSE}(\sigma(\phi_l(g(t))), \sigma(\phi_l(s)))

    where each MSE averages over ``N x C_l`` entries.

    Args:
        output_feats: features of the decoded image, one ``(N, C_l, H_l, W_l)`` per layer
            (relu1_1 ... relu4_1 in AdaIN).
        style_feats: the style image's features at the same layers.
        eps: variance epsilon of :func:`calc_mean_std`.
    """
    if len(output_feats) != len(style_feats) or len(output_feats) == 0:
        raise ValueError('style loss needs the same (non-zero) number of output and style '
                         f'layers, got {len(output_feats)} and {len(style_feats)}')
    loss = output_feats[0].new_zeros(())
    for i, (out, sty) in enumerate(zip(output_feats, style_feats)):
        if out.shape[:2] != sty.shape[:2]:
            raise ValueError(f'style layer {i}: batch/channels differ, {tuple(out.shape)} vs '
                             f'{tuple(sty.shape)}')
        o_mean, o_std = calc_mean_std(out, eps)
        s_mean, s_std = calc_mean_std(sty, eps)
        loss = loss + F.mse_loss(o_mean, s_mean) + F.mse_loss(o_std, s_std)
    return loss
