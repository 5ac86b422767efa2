"""AdaINStyleTransfer: losses vs. direct re-computation, phases, prediction, registry scopes."""
import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS
from mmengine.structures import BaseDataElement

from mmkd_plugins.models.editors import AdaINStyleTransfer

TINY = dict(type='AdaINStyleTransfer', encoder=dict(type='VGG19Encoder', width=0.125))
CONTRAST = dict(
    style_contrastive_loss=dict(type='StyleContrastiveLoss', hidden_dim=16, out_dim=8),
    content_contrastive_loss=dict(type='ContentContrastiveLoss', hidden_dim=16, out_dim=8,
                                  pool_size=2))


def build(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(TINY, **kwargs))


def batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(content=torch.rand(n, 3, size, size, generator=g),
                style=torch.rand(n, 3, size, size, generator=g))


def samples(content_ids, style_ids):
    return [BaseDataElement(metainfo=dict(content_id=c, style_id=s))
            for c, s in zip(content_ids, style_ids)]


def mean_std(x):
    flat = x.flatten(2)
    return flat.mean(2), (flat.var(2, unbiased=False) + 1e-5).sqrt()


def test_baseline_losses_match_direct_computation():
    model = build(style_weight=10.0, content_weight=2.0)
    model.train()
    inputs = batch()
    losses = model(inputs, mode='loss')
    assert set(losses) == {'loss_content', 'loss_style'}
    enc, dec = model.encoder, model.decoder
    with torch.no_grad():
        fc = enc(inputs['content'])['relu4_1']
        fs = enc(inputs['style'])
        cm, cs = mean_std(fc)
        sm, ss = mean_std(fs['relu4_1'])
        t = (fc - cm[..., None, None]) / cs[..., None, None] * ss[..., None, None] + \
            sm[..., None, None]
        g = dec(t)
        fg = enc(g)
        content = ((fg['relu4_1'] - t)**2).mean()
        style = 0
        for la in ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1'):
            gm, gs = mean_std(fg[la])
            tm, ts = mean_std(fs[la])
            style = style + ((gm - tm)**2).mean() + ((gs - ts)**2).mean()
    assert torch.allclose(losses['loss_content'], 2.0 * content, rtol=1e-5)
    assert torch.allclose(losses['loss_style'], 10.0 * style, rtol=1e-5)


def test_baseline_trains_decoder_only():
    model = build()
    model.train()
    losses = model(batch(), mode='loss')
    sum(losses.values()).backward()
    assert all(not p.requires_grad and p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert model.plain_encoder is None and not model.refining
    assert int(model.train_iter) == 1


def test_refinement_phases_and_gradient_routing():
    model = build(refine_iters=1, **CONTRAST)
    model.train()
    assert model.in_refine_phase
    inputs, ds = batch(3), samples([0, 1, 2], [5, 5, 6])
    losses = model(inputs, ds, mode='loss')
    assert set(losses) == {'loss_content', 'loss_style', 'loss_style_contrast',
                           'loss_content_contrast', 'refine_phase'}
    assert float(losses['refine_phase']) == 1.0

    # the AdaIN loss alone does not reach the encoder (encoder_grad_from_transfer=False)
    (losses['loss_content'] + losses['loss_style']).backward(retain_graph=True)
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    model.zero_grad()
    # the contrastive losses reach encoder and heads, not the decoder (detach_stylized=True)
    (losses['loss_style_contrast'] + losses['loss_content_contrast']).backward()
    assert model.encoder.conv1_1.weight.grad.abs().sum() > 0
    assert model.style_contrast.head.mlp[0].weight.grad is not None
    assert model.content_contrast.head.mlp[0].weight.grad is not None
    assert all(p.grad is None for p in model.decoder.parameters())
    assert all(p.grad is None for p in model.plain_encoder.parameters())

    # second iteration: decoder phase, the encoder and heads get nothing
    assert not model.in_refine_phase
    model.zero_grad()
    losses = model(inputs, ds, mode='loss')
    assert float(losses['refine_phase']) == 0.0
    assert float(losses['loss_style_contrast']) == 0.0
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    # the phase counter is a buffer: saved and restored with the checkpoint
    assert model.state_dict()['train_iter'] == 2


def test_contrastive_ids_from_data_samples_change_the_loss():
    model = build(**CONTRAST)
    model.train()
    inputs = batch(2)
    same = model(inputs, samples([0, 1], [3, 3]), mode='loss')['loss_style_contrast']
    diff = model(inputs, samples([0, 1], [3, 4]), mode='loss')['loss_style_contrast']
    assert not torch.allclose(same, diff)


def test_transfer_gradient_option_and_plain_loss_network():
    model = build(encoder_grad_from_transfer=True, **CONTRAST)
    model.train()
    losses = model(batch(), mode='loss')
    (losses['loss_content'] + losses['loss_style']).backward()
    assert model.encoder.conv4_1.weight.grad.abs().sum() > 0

    plain = build(loss_network='plain')
    plain.train()
    out = plain(batch(), mode='loss')
    base = build()
    base.train()
    # an untouched plain copy equals the encoder, so the two loss networks agree
    ref = base(batch(), mode='loss')
    assert torch.allclose(out['loss_content'], ref['loss_content'], rtol=1e-5)
    assert torch.allclose(out['loss_style'], ref['loss_style'], rtol=1e-5)


def test_encoder_param_group_lr_mult():
    model = build(**CONTRAST)
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4),
        paramwise_cfg=dict(custom_keys={'encoder.': dict(lr_mult=0.1)})))
    lrs = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            lrs[id(p)] = group['lr']
    assert lrs[id(model.encoder.conv1_1.weight)] == pytest.approx(1e-5)
    assert lrs[id(model.decoder.to_rgb.weight)] == pytest.approx(1e-4)
    assert lrs[id(model.style_contrast.head.mlp[0].weight)] == pytest.approx(1e-4)


def test_predict_and_alpha():
    model = build(**CONTRAST)
    model.eval()
    inputs = batch(2, 32)
    out = model(inputs, samples([0, 1], [0, 1]), mode='predict')
    assert len(out) == 2
    img = out[0].pred_img
    assert img.shape == (3, 32, 32) and img.min() >= 0 and img.max() <= 1
    feats = out[1].eval_feats
    assert list(feats) == ['plain', 'refined']
    assert feats['plain']['result_relu4_1'].shape == (64, 4, 4)
    assert feats['plain']['content_relu4_1'].shape == (64, 4, 4)
    assert feats['refined']['style_stats']['relu2_1'].shape == (2, 16)
    # style statistics of sample 1 are those of style image 1
    m, s = mean_std(model.plain_encoder(inputs['style'][1:], 'relu3_1')['relu3_1'])
    assert torch.allclose(feats['plain']['style_stats']['relu3_1'], torch.stack([m[0], s[0]]),
                          atol=1e-6)
    # alpha = 0 decodes the content features; tensor mode gives the same as stylize
    with torch.no_grad():
        recon = model.decoder(model.encoder(inputs['content'], 'relu4_1')['relu4_1'])
    assert torch.allclose(model.stylize(inputs['content'], inputs['style'], alpha=0.0),
                          recon.clamp(0, 1), atol=1e-6)
    assert torch.allclose(model(inputs, mode='tensor'), model.stylize(**inputs))
    # baseline: one encoder; no features when disabled
    base = build(with_eval_feats=False)
    ds = base(inputs, mode='predict')
    assert 'eval_feats' not in ds[0] and ds[0].pred_img.shape == (3, 32, 32)
    assert list(build().eval_encoders()) == ['plain']


def test_extra_eval_encoder(tmp_path):
    src = build(**CONTRAST)
    path = tmp_path / 'refined.pth'
    torch.save({'state_dict': src.state_dict()}, path)
    model = build(eval_encoders=dict(refined=dict(
        type='VGG19Encoder', width=0.125, checkpoint=str(path), checkpoint_prefix='encoder.')))
    assert list(model.eval_encoders()) == ['plain', 'refined']
    assert not any(p.requires_grad for p in model.extra_eval_encoders.parameters())
    out = model(batch(1), mode='predict')
    assert set(out[0].eval_feats) == {'plain', 'refined'}


def test_stylize_any_size_and_style_broadcast():
    model = build()
    content = torch.rand(2, 3, 37, 50)
    out = model.stylize(content, torch.rand(1, 3, 20, 24))
    assert out.shape == (2, 3, 37, 50)
    with pytest.raises(ValueError, match='style batch'):
        model.stylize(content, torch.rand(3, 3, 20, 20))
    with pytest.raises(ValueError, match='at least 16x16'):
        model.stylize(torch.rand(1, 3, 12, 40), torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match=r'content must be \(N, 3, H, W\)'):
        model.stylize(torch.rand(3, 37, 50), torch.rand(1, 3, 20, 20))


def test_model_errors():
    model = build()
    model.train()
    with pytest.raises(ValueError, match='divisible by 8'):
        model(batch(1, 36), mode='loss')
    with pytest.raises(ValueError, match='same shape'):
        model(dict(content=torch.rand(1, 3, 32, 32), style=torch.rand(1, 3, 40, 32)), mode='loss')
    with pytest.raises(KeyError, match='inputs=dict'):
        model(dict(content=torch.rand(1, 3, 32, 32)), mode='loss')
    with pytest.raises(ValueError, match="mode must be"):
        model(batch(1), mode='foo')
    with pytest.raises(ValueError, match='alpha must lie'):
        build(alpha=2.0)
    with pytest.raises(ValueError, match='loss_network'):
        build(loss_network='vgg16')
    with pytest.raises(ValueError, match='style_layers'):
        build(style_layers=('relu5_1', ))
    with pytest.raises(ValueError, match='same width'):
        build(decoder=dict(type='AdaINDecoder', width=0.25))


def test_data_preprocessor():
    model = build()
    data = dict(inputs=dict(content=[torch.full((3, 16, 16), 255, dtype=torch.uint8)] * 2,
                            style=[torch.zeros((3, 16, 16), dtype=torch.uint8)] * 2),
                data_samples=samples([0, 1], [0, 1]))
    out = model.data_preprocessor(data, True)
    assert out['inputs']['content'].shape == (2, 3, 16, 16)
    assert out['inputs']['content'].dtype == torch.float32
    assert torch.all(out['inputs']['content'] == 1) and torch.all(out['inputs']['style'] == 0)
    bad = copy.deepcopy(data)
    bad['inputs']['style'][1] = torch.zeros((3, 24, 16), dtype=torch.uint8)
    with pytest.raises(ValueError, match='must share a size'):
        model.data_preprocessor(bad)
    with pytest.raises(KeyError, match='inputs=dict\\(content=..., style=...\\)'):
        model.data_preprocessor(dict(inputs=torch.zeros(1, 3, 16, 16)))


def test_inverse_time_lr():
    from mmengine.registry import PARAM_SCHEDULERS
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = PARAM_SCHEDULERS.build(dict(type='InverseTimeLR', optimizer=opt, decay=0.5,
                                        by_epoch=False, begin=2))
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    expected = [1.0, 1.0, 1.0] + [1.0 / (1 + 0.5 * k) for k in (1, 2, 3)]
    assert lrs == pytest.approx(expected)
    with pytest.raises(ValueError, match='decay must be >= 0'):
        PARAM_SCHEDULERS.build(dict(type='InverseTimeLR', optimizer=opt, decay=-1))


def test_inverse_time_lr_converts_epoch_config_to_iterations():
    """convert_to_iter_based=True: decay / epoch_length per iteration, begin scaled."""
    from mmengine.registry import PARAM_SCHEDULERS
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    cls = PARAM_SCHEDULERS.get('InverseTimeLR')
    sched = cls.build_iter_from_epoch(optimizer=opt, decay=0.5, begin=1, by_epoch=True,
                                      epoch_length=4)
    assert not sched.by_epoch and sched.begin == 4 and sched.decay == pytest.approx(0.125)
    lrs = []
    for _ in range(13):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    # epoch e (iteration 4e) has the epoch-based value 1 / (1 + 0.5 (e - begin))
    assert lrs[:5] == pytest.approx([1.0] * 5)
    assert lrs[8] == pytest.approx(1 / (1 + 0.5 * 1)) and lrs[12] == pytest.approx(1 / (1 + 0.5 * 2))
    assert lrs[6] == pytest.approx(1 / (1 + 0.125 * 2))
    with pytest.raises(ValueError, match='epoch_length'):
        cls.build_iter_from_epoch(optimizer=opt, decay=0.5, epoch_length=0)
    with pytest.raises(ValueError, match='by_epoch=True'):
        cls.build_iter_from_epoch(optimizer=opt, decay=0.5, by_epoch=False, epoch_length=4)


def _mmagic_importable():
    try:
        import mmagic.models  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


@pytest.mark.skipif(not _mmagic_importable(),
                    reason='mmagic (with mmagic.models importable) is not installed; the model '
                    'is in mmengine\'s root registry and needs no mmagic')
def test_build_from_mmagic_scope():
    from mmengine.registry import DefaultScope
    from mmagic.registry import DATASETS as MMAGIC_DATASETS
    from mmagic.registry import METRICS as MMAGIC_METRICS
    from mmagic.registry import MODELS as MMAGIC_MODELS
    with DefaultScope.overwrite_default_scope('mmagic'):
        model = MMAGIC_MODELS.build(dict(TINY))
        assert isinstance(model, AdaINStyleTransfer)
        assert MMAGIC_METRICS.get('StyleTransferMetric') is not None
        assert MMAGIC_DATASETS.get('UnpairedStyleDataset') is not None


def test_build_from_mmengine_root_registry_by_name():
    model = MODELS.build(dict(TINY))
    assert isinstance(model, AdaINStyleTransfer)
