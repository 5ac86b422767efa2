import pytest
import torch
import torch.nn.functional as F

from mmkd_plugins.models.connectors import MGDConnector, mgd_random_mask
from mmkd_plugins.models.losses import MGDLoss, mgd_loss


def test_mgd_loss_matches_direct_sum():
    torch.manual_seed(0)
    g, t = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    expected = 0.0
    for n in range(3):
        for c in range(4):
            for h in range(5):
                for w in range(6):
                    expected += (g[n, c, h, w] - t[n, c, h, w]).item() ** 2
    expected = 2e-5 * expected / 3
    assert torch.allclose(mgd_loss(g, t, 2e-5), torch.tensor(expected), rtol=1e-5)
    assert torch.allclose(MGDLoss(alpha_mgd=2e-5)(g, t), torch.tensor(expected), rtol=1e-5)


def test_mgd_loss_gradient_and_teacher_detached():
    g = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    loss = mgd_loss(g, t, 0.5)
    loss.backward()
    # d/dg [a * sum (g - t)^2 / N] = 2a (g - t) / N
    assert torch.allclose(g.grad, (2 * 0.5 * (g - t) / 2).float().double(), atol=1e-6)
    assert t.grad is None  # teacher feature is a target only


def test_mgd_loss_shape_mismatch_is_clear():
    with pytest.raises(ValueError, match='differ'):
        mgd_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 2, 2), 1.0)


@pytest.mark.parametrize('mask_type,shape', [('spatial', (64, 1, 8, 8)), ('channel', (64, 16, 1, 1))])
def test_random_mask_shape_and_ratio(mask_type, shape):
    torch.manual_seed(0)
    mask = mgd_random_mask(torch.zeros(64, 16, 8, 8), 0.65, mask_type)
    assert mask.shape == shape
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert abs((mask == 0).float().mean().item() - 0.65) < 0.03


def test_connector_equals_manual_composition():
    torch.manual_seed(0)
    conn = MGDConnector(student_channels=6, teacher_channels=8, lambda_mgd=0.5, mask_type='spatial')
    s = torch.randn(2, 6, 5, 5)
    torch.manual_seed(123)
    out = conn(s)
    torch.manual_seed(123)
    aligned = F.conv2d(s, conn.align.weight, conn.align.bias)
    mask = (torch.rand(2, 1, 5, 5) >= 0.5).float()
    x = F.conv2d(aligned * mask, conn.generation[0].weight, conn.generation[0].bias, padding=1)
    x = F.conv2d(F.relu(x), conn.generation[2].weight, conn.generation[2].bias, padding=1)
    assert torch.allclose(out, x, atol=1e-6)


def test_connector_without_align_when_channels_match_and_gradcheck():
    conn = MGDConnector(4, 4, lambda_mgd=0.0).double()
    assert isinstance(conn.align, torch.nn.Identity)
    s = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: conn(x), (s, ))


def test_connector_errors():
    with pytest.raises(ValueError, match='student feature'):
        MGDConnector(4, 8)(torch.zeros(1, 5, 3, 3))
    with pytest.raises(ValueError, match='mask_type'):
        MGDConnector(4, 8, mask_type='pixel')
    with pytest.raises(ValueError, match='lambda_mgd'):
        MGDConnector(4, 8, lambda_mgd=1.5)


def test_connector_follows_half_features_outside_autocast():
    conn = MGDConnector(4, 8)
    out = conn(torch.randn(1, 4, 3, 3).half())
    assert out.dtype == torch.float32


def test_connector_under_cpu_autocast_bf16():
    conn = MGDConnector(4, 8)
    t = torch.randn(2, 8, 3, 3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = conn(torch.randn(2, 4, 3, 3))
        loss = mgd_loss(out, t, 1.0)
    assert out.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert conn.generation[0].weight.grad is not None
