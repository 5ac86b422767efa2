"""CIFAR ResNet / WRN / VGG and MobileNetV1 backbones: output shapes, sizes, out_indices, errors."""
import pytest
import torch

from mmkd_plugins.models.backbones import CifarResNet, CifarVGG, CifarWideResNet, MobileNetV1KD


def _params_with_fc(backbone, channels, num_classes=100):
    return sum(p.numel() for p in backbone.parameters()) + channels * num_classes + num_classes


# parameter counts of the benchmark networks (100-class linear head included), in millions
@pytest.mark.parametrize('backbone,channels,millions', [
    (lambda: CifarResNet(56), 64, 0.86),
    (lambda: CifarResNet(20), 64, 0.28),
    (lambda: CifarResNet(32, 32, (64, 128, 256)), 256, 7.43),
    (lambda: CifarResNet(8, 32, (64, 128, 256)), 256, 1.23),
    (lambda: CifarWideResNet(40, 2), 128, 2.26),
    (lambda: CifarWideResNet(16, 2), 128, 0.70),
    (lambda: CifarVGG(13), 512, 9.46),
    (lambda: CifarVGG(8), 512, 3.96),
])
def test_cifar_backbone_sizes(backbone, channels, millions):
    net = backbone()
    assert abs(_params_with_fc(net, channels) / 1e6 - millions) < 0.01
    out = net(torch.randn(2, 3, 32, 32))
    assert isinstance(out, tuple) and len(out) == 1
    side = 2 if isinstance(net, CifarVGG) else 8
    assert out[0].shape == (2, channels, side, side)


def test_out_indices_and_errors():
    outs = CifarResNet(8, out_indices=(0, 1, -1))(torch.randn(1, 3, 32, 32))
    assert [o.shape[1:] for o in outs] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    outs = CifarWideResNet(10, 1, out_indices=(1, 2))(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [32, 64]
    with pytest.raises(ValueError, match='6n \\+ 2'):
        CifarResNet(21)
    with pytest.raises(ValueError, match='6n \\+ 4'):
        CifarWideResNet(15)
    with pytest.raises(ValueError, match='depth must be one of'):
        CifarVGG(10)
    with pytest.raises(ValueError, match='out_indices'):
        CifarVGG(8, out_indices=(5, ))
    with pytest.raises(ValueError, match='3 entries'):
        CifarResNet(20, stage_channels=(16, 32))


def test_mobilenet_v1():
    net = MobileNetV1KD(out_indices=(3, 4))
    # 4.23M parameters with the 1000-class classifier (Howard et al. 2017: 4.2M)
    assert abs(_params_with_fc(net, 1024, 1000) / 1e6 - 4.23) < 0.01
    outs = net(torch.randn(1, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(512, 4, 4), (1024, 2, 2)]
    half = MobileNetV1KD(widen_factor=0.5)
    assert half(torch.randn(2, 3, 32, 32))[0].shape == (2, 512, 1, 1)
    with pytest.raises(ValueError, match='widen_factor'):
        MobileNetV1KD(widen_factor=0)
