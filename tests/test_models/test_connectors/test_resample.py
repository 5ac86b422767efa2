"""FeatureResample: CNN maps (bilinear) and ViT tokens (grid interpolation, prefix tokens kept)."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

import mmkd_plugins.models.connectors  # noqa: F401  (registers FeatureResample)
from mmkd_plugins.models.connectors.resample import resample_map, resample_tokens


def test_map_bilinear_values_and_shapes():
    x = torch.randn(2, 5, 4, 6)
    up = MODELS.build(dict(type='FeatureResample', scale_factor=4.0))
    y = up(x)
    assert y.shape == (2, 5, 16, 24)
    assert torch.allclose(y, F.interpolate(x, size=(16, 24), mode='bilinear', align_corners=False))
    # bilinear (align_corners=False) upsampling of a map that is linear along W is exact in the
    # interior: the centres of output pixel j sit at (j + 0.5) / 4 - 0.5 input pixels
    ramp = torch.arange(6.).view(1, 1, 1, 6).expand(1, 1, 4, 6)
    out = resample_map(ramp, scale_factor=4.0)
    centres = (torch.arange(24.) + 0.5) / 4 - 0.5
    inner = (centres >= 0) & (centres <= 5)
    assert torch.allclose(out[0, 0, 0, inner], centres[inner], atol=1e-6)
    # a size target; tuples of maps are mapped one by one
    down = MODELS.build(dict(type='FeatureResample', size=(2, 3)))
    a, b = down((x, x * 2))
    assert a.shape == (2, 5, 2, 3) and torch.allclose(b, 2 * a, atol=1e-6)
    # the same size is returned unchanged
    assert MODELS.build(dict(type='FeatureResample', size=(4, 6)))(x) is x


def test_tokens_keep_prefix_and_interpolate_the_grid():
    b, c, p = 2, 8, 1
    grid = torch.randn(b, c, 6, 6)
    tokens = torch.cat([torch.randn(b, p, c), grid.flatten(2).transpose(1, 2)], dim=1)  # 1 + 36
    conn = MODELS.build(dict(type='FeatureResample', size=(4, 4), tokens=True,
                             num_prefix_tokens=p))
    out = conn(tokens)
    assert out.shape == (b, p + 16, c)
    assert torch.equal(out[:, :p], tokens[:, :p])          # cls token unchanged
    ref = F.interpolate(grid, size=(4, 4), mode='bicubic', align_corners=False)
    assert torch.allclose(out[:, p:], ref.flatten(2).transpose(1, 2), atol=1e-5)
    # two prefix tokens (distilled DeiT), non-square input grid, bilinear
    grid2 = torch.randn(b, c, 2, 4)
    t2 = torch.cat([torch.zeros(b, 2, c), grid2.flatten(2).transpose(1, 2)], dim=1)
    out2 = resample_tokens(t2, size=(4, 8), num_prefix_tokens=2, in_grid=(2, 4), mode='bilinear')
    ref2 = F.interpolate(grid2, size=(4, 8), mode='bilinear', align_corners=False)
    assert torch.allclose(out2[:, 2:].transpose(1, 2).reshape(b, c, 4, 8), ref2, atol=1e-6)
    # a constant grid stays constant (384 px / 16 = 24x24 tokens -> 224 px / 16 = 14x14)
    const = torch.full((1, 1 + 24 * 24, 3), 0.25)
    assert torch.allclose(resample_tokens(const, size=14), torch.full((1, 1 + 196, 3), 0.25),
                          atol=1e-6)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match='exactly one of size'):
        MODELS.build(dict(type='FeatureResample'))
    with pytest.raises(ValueError, match='exactly one of size'):
        MODELS.build(dict(type='FeatureResample', size=4, scale_factor=2.0))
    with pytest.raises(ValueError, match='do not form a 5x5 grid'):
        resample_tokens(torch.randn(1, 1 + 26, 4), size=3)
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        resample_map(torch.randn(2, 3, 4), size=2)
    assert list(MODELS.build(dict(type='FeatureResample', size=2)).parameters()) == []
