"""VGG19 encoder (to relu4_1) and the mirrored AdaIN decoder."""
import pytest
import torch
import torch.nn as nn

from mmkd_plugins.models.editors import AdaINDecoder, VGG19Encoder
from mmkd_plugins.models.editors.vgg_encoder import load_vgg19_state_dict

# (out channels, 'M' = max pool) of VGG19 up to conv4_1, as in the VGG paper (configuration E)
VGG19_TO_CONV4_1 = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512]


def reference_vgg_features():
    """VGG19 'features' to relu4_1, numbered like torchvision's (conv, relu, ..., pool)."""
    layers, cin = [], 3
    for v in VGG19_TO_CONV4_1:
        if v == 'M':
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers)


def test_output_layers_and_shapes():
    enc = VGG19Encoder(width=0.25)
    x = torch.rand(2, 3, 32, 40)
    feats = enc(x)
    assert list(feats) == ['relu1_1', 'relu2_1', 'relu3_1', 'relu4_1']
    expect = dict(relu1_1=(16, 32, 40), relu2_1=(32, 16, 20), relu3_1=(64, 8, 10),
                  relu4_1=(128, 4, 5))
    for la, shape in expect.items():
        assert feats[la].shape == (2, ) + shape
        assert enc.out_channels(la) == shape[0]
        assert (feats[la] >= 0).all()
    assert list(enc(x, 'relu2_1')) == ['relu2_1']
    assert torch.allclose(enc(x, ['relu3_1'])['relu3_1'], feats['relu3_1'])
    # random init keeps the deep activations away from zero
    assert feats['relu4_1'].std() > 1e-2


def test_preprocess_is_imagenet_normalisation():
    enc = VGG19Encoder(width=0.125)
    x = torch.rand(1, 3, 4, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(enc.preprocess(x), (x - mean) / std, atol=1e-6)


def test_torchvision_checkpoint_reproduces_reference_network(tmp_path):
    torch.manual_seed(0)
    ref = reference_vgg_features()
    state = {f'features.{k}': v for k, v in ref.state_dict().items()}
    state['classifier.0.weight'] = torch.zeros(1)  # unrelated keys are ignored
    path = tmp_path / 'vgg19.pth'
    torch.save(state, path)
    enc = VGG19Encoder(checkpoint=str(path), padding_mode='zeros')
    x = torch.rand(1, 3, 24, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = ref((x - mean) / std)
        got = enc(x)
        assert torch.allclose(got['relu4_1'], expected, atol=1e-5)
        assert torch.allclose(got['relu1_1'], ref[:2]((x - mean) / std), atol=1e-5)


def test_adain_normalised_checkpoint_layout(tmp_path):
    """AdaIN's vgg_normalised.pth: module 0 is a 1x1 input conv, convs at 2, 5, 9, ..., 29."""
    torch.manual_seed(1)
    idx = dict(conv1_1=2, conv1_2=5, conv2_1=9, conv2_2=12, conv3_1=16, conv3_2=19, conv3_3=22,
               conv3_4=25, conv4_1=29)
    donor = VGG19Encoder(width=1.0)
    state = {'0.weight': torch.randn(3, 3, 1, 1), '0.bias': torch.randn(3)}
    for name, i in idx.items():
        conv = getattr(donor, name)
        state[f'{i}.weight'] = torch.randn_like(conv.weight)
        state[f'{i}.bias'] = torch.randn_like(conv.bias)
    state['31.weight'] = torch.randn(2)  # layers beyond relu4_1 are ignored
    path = tmp_path / 'vgg_normalised.pth'
    torch.save(state, path)
    enc = VGG19Encoder(checkpoint=str(path))
    assert torch.equal(enc.preprocess.weight, state['0.weight'])
    for name, i in idx.items():
        assert torch.equal(getattr(enc, name).weight, state[f'{i}.weight'])


def test_own_layout_with_prefix_from_training_checkpoint(tmp_path):
    src = VGG19Encoder(width=0.125)
    ckpt = {'meta': {}, 'state_dict': {f'encoder.{k}': v for k, v in src.state_dict().items()}}
    ckpt['state_dict']['decoder.x'] = torch.zeros(1)
    path = tmp_path / 'iter_1.pth'
    torch.save(ckpt, path)
    enc = VGG19Encoder(width=0.125, checkpoint=str(path), checkpoint_prefix='encoder.')
    for k, v in src.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v)
    with pytest.raises(KeyError, match='starts with prefix "refined."'):
        load_vgg19_state_dict(str(path), 'refined.')


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='Nothing is downloaded'):
        VGG19Encoder(checkpoint=str(tmp_path / 'missing.pth'))
    full = VGG19Encoder(width=1.0)
    path = tmp_path / 'full.pth'
    torch.save(full.state_dict(), path)
    with pytest.raises(ValueError, match='need width=1.0'):
        VGG19Encoder(width=0.5, checkpoint=str(path))
    bad = tmp_path / 'bad.pth'
    torch.save({'foo.weight': torch.zeros(1)}, bad)
    with pytest.raises(KeyError, match='unrecognised VGG19 checkpoint layout'):
        VGG19Encoder(checkpoint=str(bad))
    partial = tmp_path / 'partial.pth'
    torch.save({'features.0.weight': torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(KeyError, match='lacks "features.0.bias"'):
        VGG19Encoder(checkpoint=str(partial))


def test_input_errors():
    enc = VGG19Encoder(width=0.125)
    with pytest.raises(ValueError, match=r'expects \(N, 3, H, W\) RGB'):
        enc(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match='at least 16x16'):
        enc(torch.rand(1, 3, 8, 32))
    with pytest.raises(KeyError, match='unknown VGG layer'):
        enc(torch.rand(1, 3, 16, 16), 'relu5_1')
    with pytest.raises(ValueError, match='width must be positive'):
        VGG19Encoder(width=0)
    with pytest.raises(ValueError, match='padding_mode'):
        VGG19Encoder(padding_mode='circular')


def test_decoder_mirrors_encoder():
    enc, dec = VGG19Encoder(width=0.125), AdaINDecoder(width=0.125)
    x = torch.rand(2, 3, 40, 24)
    y = dec(enc(x, 'relu4_1')['relu4_1'])
    assert y.shape == x.shape
    convs = [m for m in dec.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 32, 32, 16, 16, 8, 8, 3]
    assert all(c.padding_mode == 'reflect' for c in convs)
    with pytest.raises(ValueError, match=r'expects \(N, 64, h, w\)'):
        dec(torch.rand(1, 32, 4, 4))
