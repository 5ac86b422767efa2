import pytest
import torch
import torch.nn as nn

from mmkd_plugins.distillers import FeatureTaps, TapError, find_module


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 1))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        f = self.backbone(x)
        return self.head(f.mean((2, 3))), (f, f * 2)


def test_unknown_path_lists_closest_paths():
    with pytest.raises(TapError, match=r'no module "backbone\.3".*backbone\.0'):
        find_module(Net(), 'backbone.3', 'student')
    with pytest.raises(TapError, match=r'"bakbone".*backbone'):
        FeatureTaps(Net(), dict(f='bakbone'), 'student')


def test_taps_record_outputs_inputs_and_idx():
    net = Net()
    taps = FeatureTaps(net, dict(feat='backbone.2', head_in=dict(module='head', source='input'),
                                 relu=dict(module='backbone.1')))
    x = torch.randn(2, 3, 5, 5)
    logits, _ = net(x)
    feat = net.backbone(x)
    assert torch.allclose(taps['feat'], feat)
    assert torch.allclose(taps['head_in'], feat.mean((2, 3)))
    assert taps['relu'].shape == (2, 4, 5, 5)


def test_idx_on_tuple_outputs():
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = Net()

        def forward(self, x):
            return self.net(x)
    w = Wrap()
    taps = FeatureTaps(w, dict(second=dict(module='net', idx=1)))
    w(torch.randn(1, 3, 4, 4))
    assert isinstance(taps['second'], tuple) and len(taps['second']) == 2
    bad = FeatureTaps(w, dict(x=dict(module='net.head', idx=0)))
    with pytest.raises(TapError, match='not a tuple'):
        w(torch.randn(1, 3, 4, 4))
    bad.remove()


def test_tap_not_fired_and_bad_spec():
    net = Net()
    taps = FeatureTaps(net, dict(feat='backbone'))
    with pytest.raises(TapError, match='did not fire'):
        taps['feat']
    with pytest.raises(TapError, match='no tap named'):
        taps['other']
    with pytest.raises(TapError, match='source'):
        FeatureTaps(net, dict(f=dict(module='backbone', source='grad')))
    with pytest.raises(TapError, match='unknown keys'):
        FeatureTaps(net, dict(f=dict(module='backbone', index=0)))


def test_on_complete_called_once_when_all_fired():
    calls = []
    net = Net()
    FeatureTaps(net, dict(a='backbone.0', b='backbone.2'), on_complete=lambda: calls.append(1))
    net(torch.randn(1, 3, 4, 4))
    assert calls == [1]
