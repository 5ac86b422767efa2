"""ViTKD connector parts: mimicking Linear, random token mask, masked generator."""
import pytest
import torch
import torch.nn.functional as F

from mmkd_plugins.models.connectors import (ViTKDGenerationConnector, ViTKDMimicConnector,
                                            random_token_mask)
from mmkd_plugins.models.connectors.vitkd import tokens_to_grid


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_mimic_connector_is_per_token_linear(gen):
    conn = ViTKDMimicConnector(4, 6).double()
    x = torch.randn(2, 9, 4, generator=gen, dtype=torch.float64)
    out = conn(x)
    w, b = conn.align.weight, conn.align.bias
    for n in range(2):
        for l in range(9):
            for d in range(6):
                ref = sum(w[d, c].item() * x[n, l, c].item() for c in range(4)) + b[d].item()
                assert abs(out[n, l, d].item() - ref) < 1e-12
    with pytest.raises(ValueError, match='built for 4 input channels'):
        conn(torch.randn(2, 9, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r'\(B, L, C\)'):
        conn(torch.randn(2, 4, 3, 3, dtype=torch.float64))


@pytest.mark.parametrize('num_tokens,ratio', [(16, 0.5), (49, 0.5), (10, 0.25), (9, 0.0)])
def test_random_token_mask_counts(gen, num_tokens, ratio):
    mask = random_token_mask(7, num_tokens, ratio, generator=gen)
    assert mask.dtype == torch.bool and mask.shape == (7, num_tokens)
    keep = int(num_tokens * (1 - ratio))
    assert (mask.sum(1) == num_tokens - keep).all()


def test_random_token_mask_differs_between_samples(gen):
    mask = random_token_mask(8, 64, 0.5, generator=gen)
    assert len({tuple(row.tolist()) for row in mask}) > 1
    with pytest.raises(ValueError, match='mask ratio'):
        random_token_mask(1, 4, 1.0)


def test_tokens_to_grid():
    assert tokens_to_grid(196) == (14, 14)
    assert tokens_to_grid(12, (3, 4)) == (3, 4)
    with pytest.raises(ValueError, match='square grid'):
        tokens_to_grid(197)
    with pytest.raises(ValueError, match='does not match'):
        tokens_to_grid(12, (3, 3))


def _manual_generator(conn, x, mask):
    """Linear, token-by-token masking, reshape to a map, Conv-ReLU-Conv, back to tokens."""
    b, num, _ = x.shape
    side = int(num**0.5)
    lin = x @ conn.align.weight.t() + conn.align.bias
    rows = []
    for n in range(b):
        toks = [conn.mask_token[0, 0] if mask[n, l] else lin[n, l] for l in range(num)]
        rows.append(torch.stack(toks))
    feat = torch.stack(rows)  # (B, L, Dt)
    fmap = torch.zeros(b, conn.teacher_dims, side, side, dtype=x.dtype)
    for l in range(num):
        fmap[:, :, l // side, l % side] = feat[:, l]
    c1, c2 = conn.generation[0], conn.generation[2]
    y = F.conv2d(F.relu(F.conv2d(fmap, c1.weight, c1.bias, padding=1)), c2.weight, c2.bias,
                 padding=1)
    return torch.stack([y[:, :, l // side, l % side] for l in range(num)], dim=1)


def test_generation_connector_matches_manual(gen):
    conn = ViTKDGenerationConnector(3, 5, lambda_vitkd=0.5).double()
    assert torch.count_nonzero(conn.mask_token) == 0  # zeros at init
    with torch.no_grad():
        conn.mask_token.normal_(generator=gen)
    x = torch.randn(2, 16, 3, generator=gen, dtype=torch.float64)
    mask = random_token_mask(2, 16, 0.5, generator=gen)
    out = conn(x, mask=mask)
    assert out.shape == (2, 16, 5)
    assert torch.allclose(out, _manual_generator(conn, x, mask), atol=1e-12)
    out2, used = conn(x, return_mask=True)
    assert used.shape == (2, 16) and (used.sum(1) == 8).all()
    assert torch.allclose(out2, _manual_generator(conn, x, used), atol=1e-12)


def test_generation_connector_gradcheck(gen):
    conn = ViTKDGenerationConnector(2, 3, lambda_vitkd=0.5).double()
    x = torch.randn(1, 4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, False, True]])
    assert torch.autograd.gradcheck(lambda t: conn(t, mask=mask), (x, ))
    conn(x, mask=mask).sum().backward()
    assert conn.mask_token.grad is not None and conn.mask_token.grad.abs().sum() > 0


def test_generation_connector_errors():
    with pytest.raises(ValueError, match='lambda_vitkd'):
        ViTKDGenerationConnector(2, 3, lambda_vitkd=1.0)
    conn = ViTKDGenerationConnector(2, 3)
    with pytest.raises(ValueError, match='square grid'):
        conn(torch.randn(1, 5, 2))
    with pytest.raises(ValueError, match='mask must be shaped'):
        conn(torch.randn(1, 4, 2), mask=torch.zeros(1, 5, dtype=torch.bool))
    assert conn(torch.randn(1, 6, 2), grid=(2, 3)).shape == (1, 6, 3)
