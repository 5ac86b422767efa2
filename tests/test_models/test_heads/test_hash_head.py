import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from mmkd_plugins.models.heads.hash_head import HashHead
from mmkd_plugins.models.losses.hyp2 import HyP2Loss


def _samples(labels, as_score=True):
    out = []
    for row in labels:
        ds = BaseDataElement()
        if as_score:
            ds.gt_score = torch.tensor(row, dtype=torch.float32)
        else:
            ds.gt_label = torch.tensor(np.flatnonzero(row), dtype=torch.long)
        out.append(ds)
    return out


def test_forward_shapes_flatten_and_mlp():
    head = HashHead(hash_bits=12, in_channels=8 * 2 * 2, num_classes=4, hidden_channels=(16, 10),
                    dropout=0.5, init_cfg=None)
    head.init_weights()
    assert isinstance(head.loss_module, HyP2Loss)
    assert head.loss_module.hash_bits == 12 and head.loss_module.num_classes == 4
    assert head.loss_module.margin == -1 / 3  # authors' table: K = 12, 4 classes (column 2)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 16), (16, 10)]
    assert head.hash_layer.in_features == 10 and head.hash_layer.out_features == 12
    head.eval()
    feats = (torch.randn(3, 5), torch.randn(3, 8, 2, 2))  # the last feature is used
    assert head(feats).shape == (3, 12)
    assert head(torch.randn(3, 32)).shape == (3, 12)
    with pytest.raises(ValueError, match='expected features of 32 channels'):
        head((torch.randn(3, 8, 3, 3), ))


def test_margin_from_table_and_explicit():
    head = HashHead(hash_bits=24, in_channels=8, num_classes=80, init_cfg=None)
    assert head.loss_module.margin == pytest.approx(1 / 6)
    head = HashHead(hash_bits=24, in_channels=8, num_classes=80,
                    loss=dict(type='HyP2Loss', margin=0.2, beta=0.3), init_cfg=None)
    assert head.loss_module.margin == 0.2 and head.loss_module.beta == 0.3


@pytest.mark.parametrize('as_score', [True, False])
def test_loss_matches_loss_module(as_score):
    torch.manual_seed(0)
    head = HashHead(hash_bits=16, in_channels=6, num_classes=4, init_cfg=None)
    feats = (torch.randn(5, 6), )
    labels = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0]])
    losses = head.loss(feats, _samples(labels, as_score))
    assert set(losses) == {'loss'}
    h = head(feats)
    expected = head.loss_module(h, torch.tensor(labels, dtype=torch.float32))
    assert float(losses['loss'].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    losses['loss'].backward()
    assert head.loss_module.proxies.grad.abs().sum() > 0
    assert head.hash_layer.weight.grad.abs().sum() > 0


def test_loss_errors():
    head = HashHead(hash_bits=16, in_channels=6, loss=dict(type='HyP2Loss', num_classes=4),
                    init_cfg=None)
    with pytest.raises(ValueError, match='set num_classes'):
        head.loss((torch.randn(2, 6), ), _samples(np.eye(4)[:2], as_score=False))
    with pytest.raises(ValueError, match='2 data samples for a batch of 3'):
        head.loss((torch.randn(3, 6), ), _samples(np.eye(4)[:2]))
    head = HashHead(hash_bits=16, in_channels=6, num_classes=4, init_cfg=None)
    with pytest.raises(ValueError, match='out of range'):
        head.loss((torch.randn(1, 6), ), _samples(np.array([[0, 0, 0, 0, 1]]), as_score=False))


def test_predict_packs_sign_codes():
    torch.manual_seed(1)
    head = HashHead(hash_bits=12, in_channels=6, num_classes=3, init_cfg=None).eval()
    feats = (torch.randn(4, 6), )
    h = head(feats).detach()
    existing = _samples(np.eye(3)[[0, 1, 2, 0]])
    out = head.predict(feats, existing)
    assert out[0] is existing[0] and 'gt_score' in out[0]  # fields are added in place
    expected = np.packbits(h.numpy() >= 0, axis=1)
    got = np.stack([ds.pred_hash_bits.numpy() for ds in out])
    assert got.dtype == np.uint8 and got.shape == (4, 2)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(np.stack([ds.pred_hash_real.numpy() for ds in out]), h.numpy())
    fresh = head.predict(feats)
    assert len(fresh) == 4
    np.testing.assert_array_equal(np.stack([ds.pred_hash_bits.numpy() for ds in fresh]), expected)


def test_mlp_init_cfg_loads_alexnet_style_classifier(tmp_path):
    # a torchvision-AlexNet-like checkpoint: classifier.1 / classifier.4 are fc6 / fc7
    ckpt = {'classifier.1.weight': torch.randn(10, 12), 'classifier.1.bias': torch.randn(10),
            'classifier.4.weight': torch.randn(10, 10), 'classifier.4.bias': torch.randn(10),
            'features.0.weight': torch.randn(2, 3, 1, 1)}
    torch.save(ckpt, tmp_path / 'alexnet.pth')
    head = HashHead(hash_bits=12, in_channels=12, num_classes=3, hidden_channels=(10, 10), dropout=0.5,
                    mlp_init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'alexnet.pth'),
                                      prefix='classifier.'))
    head.init_weights()
    assert torch.equal(head.mlp[1].weight, ckpt['classifier.1.weight'])
    assert torch.equal(head.mlp[4].bias, ckpt['classifier.4.bias'])
    assert float(head.hash_layer.weight.detach().std()) == pytest.approx(0.01, rel=0.5)  # Normal init
