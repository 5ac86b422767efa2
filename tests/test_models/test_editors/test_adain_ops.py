"""AdaIN statistics and losses vs. direct numpy re-computation."""
import numpy as np
import pytest
import torch

from mmkd_plugins.models.editors.adain_ops import (adain_content_loss, adain_style_loss,
                                                   adaptive_instance_norm, blend_features,
                                                   calc_mean_std)


def np_mean_std(x, eps=1e-5):
    """Loop over samples and channels: population mean / sqrt(var + eps)."""
    n, c = x.shape[:2]
    mean, std = np.zeros((n, c)), np.zeros((n, c))
    for i in range(n):
        for j in range(c):
            v = x[i, j].ravel().astype(np.float64)
            mean[i, j] = v.sum() / v.size
            std[i, j] = np.sqrt(((v - mean[i, j])**2).sum() / v.size + eps)
    return mean, std


def test_calc_mean_std_matches_loop():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64) * 3 + 1
    mean, std = calc_mean_std(x)
    assert mean.shape == std.shape == (2, 3, 1, 1)
    m, s = np_mean_std(x.numpy())
    np.testing.assert_allclose(mean.flatten(1).numpy(), m, rtol=1e-12)
    np.testing.assert_allclose(std.flatten(1).numpy(), s, rtol=1e-12)


def test_calc_mean_std_constant_map_uses_eps():
    mean, std = calc_mean_std(torch.full((1, 2, 3, 3), 7.0, dtype=torch.float64), eps=1e-2)
    assert torch.allclose(mean, torch.full_like(mean, 7.0))
    assert torch.allclose(std, torch.full_like(std, 0.1))


def test_adain_gives_style_statistics():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64) * 2 - 1
    style = torch.randn(2, 4, 3, 7, generator=g, dtype=torch.float64) * 5 + 3
    out = adaptive_instance_norm(content, style)
    assert out.shape == content.shape
    o = out.numpy()
    s_mean, s_std = np_mean_std(style.numpy())
    c_mean, c_std = np_mean_std(content.numpy())
    # mean transferred exactly; biased std = sigma_s * sqrt(var_c) / sqrt(var_c + eps)
    o_mean = o.reshape(2, 4, -1).mean(-1)
    o_std_biased = o.reshape(2, 4, -1).std(-1)
    c_std_biased = content.numpy().reshape(2, 4, -1).std(-1)
    np.testing.assert_allclose(o_mean, s_mean, rtol=1e-10)
    np.testing.assert_allclose(o_std_biased, s_std * c_std_biased / c_std, rtol=1e-10)
    # element-wise formula sigma_y (x - mu_x) / sigma_x + mu_y
    expected = ((content.numpy() - c_mean[..., None, None]) / c_std[..., None, None] *
                s_std[..., None, None] + s_mean[..., None, None])
    np.testing.assert_allclose(o, expected, rtol=1e-10)


def test_adain_is_differentiable():
    content = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    style = torch.randn(1, 2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(adaptive_instance_norm, (content, style))


def test_adain_shape_errors():
    with pytest.raises(ValueError, match='same batch size and channels'):
        adaptive_instance_norm(torch.randn(1, 3, 4, 4), torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        adaptive_instance_norm(torch.randn(3, 4, 4), torch.randn(1, 3, 4, 4))


def test_blend_features():
    t, c = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    assert torch.equal(blend_features(t, c, 1.0), t)
    assert torch.equal(blend_features(t, c, 0.0), c)
    assert torch.allclose(blend_features(t, c, 0.3), 0.3 * t + 0.7 * c)
    with pytest.raises(ValueError, match='alpha must lie in'):
        blend_features(t, c, 1.5)
    with pytest.raises(ValueError, match='cannot blend'):
        blend_features(t, c[..., :2], 0.5)


def test_content_loss_matches_numpy():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    expected = ((a.numpy().astype(np.float64) - b.numpy())**2).sum() / a.numel()
    assert float(adain_content_loss(a, b)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match='equal shape'):
        adain_content_loss(a, b[:, :2])


def test_style_loss_matches_numpy():
    g = torch.Generator().manual_seed(1)
    outs = [torch.randn(2, c, s, s, generator=g, dtype=torch.float64) for c, s in ((3, 8), (5, 4))]
    stys = [torch.randn(2, c, s + 1, s, generator=g, dtype=torch.float64) * 2 + 1
            for c, s in ((3, 8), (5, 4))]
    expected = 0.0
    for o, s in zip(outs, stys):
        om, osd = np_mean_std(o.numpy())
        sm, ssd = np_mean_std(s.numpy())
        expected += ((om - sm)**2).mean() + ((osd - ssd)**2).mean()
    assert float(adain_style_loss(outs, stys)) == pytest.approx(expected, rel=1e-10)
    # zero when the statistics agree
    assert float(adain_style_loss(outs, [o * 1.0 for o in outs])) == 0.0


def test_style_loss_gradcheck_and_errors():
    out = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    sty = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda o: adain_style_loss([o], [sty]), (out, ))
    with pytest.raises(ValueError, match='same \\(non-zero\\) number'):
        adain_style_loss([out], [])
    with pytest.raises(ValueError, match='batch/channels differ'):
        adain_style_loss([out], [torch.randn(1, 3, 3, 3)])
