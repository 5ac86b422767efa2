"""AlexNetConv: torchvision AlexNet ``features`` with an init_cfg (the HyP2 AlexNet backbone)."""
import pytest
import torch

from mmkd_plugins.models.backbones import AlexNetConv


def test_loads_torchvision_layout_and_matches_mmpretrain_alexnet(tmp_path):
    torchvision = pytest.importorskip('torchvision')
    net = torchvision.models.alexnet(weights=None)
    torch.save(net.state_dict(), tmp_path / 'alexnet.pth')
    model = AlexNetConv(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'alexnet.pth')))
    model.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k  # every conv loaded by name
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = model(x)
        assert isinstance(out, tuple) and out[0].shape == (1, 256, 6, 6)
        torch.testing.assert_close(out[0], net.features(x))
    mmpretrain = pytest.importorskip('mmpretrain.models')
    ref = mmpretrain.AlexNet(num_classes=-1)
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ref(x)[0], out[0])
