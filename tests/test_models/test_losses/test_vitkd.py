"""ViTKD loss: loop re-computation, masked-only generation, prefix tokens, grid errors, grads."""
import pytest
import torch

from mmkd_plugins.models.connectors import random_token_mask
from mmkd_plugins.models.losses import (ViTKDLoss, vit_patch_tokens, vitkd_generation_loss,
                                        vitkd_mimic_loss)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def ref_sq_sum(a, b, token_ok=None):
    """sum over (n, l, d) of (a - b)^2 with loops, optionally only where token_ok[n][l]."""
    total = 0.0
    for n in range(len(a)):
        for l in range(len(a[n])):
            if token_ok is not None and not token_ok[n][l]:
                continue
            total += sum((x - y)**2 for x, y in zip(a[n][l], b[n][l]))
    return total


def test_mimic_loss_matches_loops(gen):
    s = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    t = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    ref = 3e-5 * ref_sq_sum(s.tolist(), t.tolist()) / 3
    assert abs(vitkd_mimic_loss(s, t).item() - ref) < 1e-15
    assert abs(vitkd_mimic_loss(s, t, alpha=2.0).item() - ref / 3e-5 * 2.0) < 1e-9


def test_generation_loss_only_masked_tokens(gen):
    g = torch.randn(2, 9, 4, generator=gen, dtype=torch.float64)
    t = torch.randn(2, 9, 4, generator=gen, dtype=torch.float64)
    mask = random_token_mask(2, 9, 0.5, generator=gen)
    ref = 3e-6 / 0.5 * ref_sq_sum(g.tolist(), t.tolist(), mask.tolist()) / 2
    got = vitkd_generation_loss(g, t, mask, beta=3e-6, lambda_vitkd=0.5)
    assert abs(got.item() - ref) < 1e-15
    t2 = t.clone()
    t2[~mask] += 100.0  # unmasked teacher tokens do not matter
    assert torch.allclose(vitkd_generation_loss(g, t2, mask), vitkd_generation_loss(g, t, mask))


def test_pure_losses_gradcheck(gen):
    s = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    assert torch.autograd.gradcheck(lambda x: vitkd_mimic_loss(x, t, 1.0), (s, ))
    assert torch.autograd.gradcheck(lambda x: vitkd_generation_loss(x, t, mask, 1.0, 0.5), (s, ))
    vitkd_generation_loss(s, t, mask).backward()
    assert t.grad is None  # the teacher is a constant
    # gradient vanishes on unmasked tokens
    assert (s.grad[~mask] == 0).all() and (s.grad[mask] != 0).any()


def test_vit_patch_tokens():
    x = torch.arange(2 * 5 * 3.).view(2, 5, 3)
    tok, grid = vit_patch_tokens(x, 1)
    assert grid is None and torch.equal(tok, x[:, 1:])
    fmap = torch.randn(2, 3, 2, 2)
    tok, grid = vit_patch_tokens(fmap, 1)
    assert grid == (2, 2) and torch.equal(tok[:, 1], fmap[:, :, 0, 1])
    with pytest.raises(ValueError, match='num_prefix_tokens'):
        vit_patch_tokens(torch.randn(1, 1, 3), 1)
    with pytest.raises(TypeError, match='idx'):
        vit_patch_tokens((x, ), 1)


def _inputs(gen, b=2, side=4, ds=6, dt=8, prefix=1):
    num = side * side + prefix

    def r(d):
        return torch.randn(b, num, d, generator=gen, dtype=torch.float64)

    return dict(student_high=r(ds), teacher_high=r(dt), student_low_0=r(ds),
                teacher_low_0=r(dt), student_low_1=r(ds), teacher_low_1=r(dt))


def test_vitkd_loss_matches_loops(gen):
    loss = ViTKDLoss(6, 8, alpha_vitkd=3e-5, beta_vitkd=3e-6, lambda_vitkd=0.5).double()
    with torch.no_grad():
        loss.generator.mask_token.normal_(generator=gen)
    inp = _inputs(gen)
    mask = random_token_mask(2, 16, 0.5, generator=gen)
    out = loss(**inp, mask=mask)
    assert set(out) == {'loss_vitkd_low', 'loss_vitkd_gen'}
    # low: per-layer Linear then alpha * sum sq / B, on patch tokens only (cls token dropped)
    ref_low = 0.0
    for i in range(2):
        conn = loss.low_connectors[i].align
        s = inp[f'student_low_{i}'][:, 1:] @ conn.weight.t() + conn.bias
        ref_low += 3e-5 * ref_sq_sum(s.tolist(), inp[f'teacher_low_{i}'][:, 1:].tolist()) / 2
    assert abs(out['loss_vitkd_low'].item() - ref_low) < 1e-12
    # gen: generator output (checked in test_connectors) against teacher on masked tokens
    g = loss.generator(inp['student_high'][:, 1:], mask=mask)
    ref_gen = 3e-6 / 0.5 * ref_sq_sum(g.tolist(), inp['teacher_high'][:, 1:].tolist(),
                                      mask.tolist()) / 2
    assert abs(out['loss_vitkd_gen'].item() - ref_gen) < 1e-14
    # list inputs and loss_weight
    loss.loss_weight = 2.0
    out2 = loss(inp['student_high'], inp['teacher_high'],
                student_low=[inp['student_low_0'], inp['student_low_1']],
                teacher_low=[inp['teacher_low_0'], inp['teacher_low_1']], mask=mask)
    assert torch.allclose(out2['loss_vitkd_low'], 2 * out['loss_vitkd_low'])
    assert torch.allclose(out2['loss_vitkd_gen'], 2 * out['loss_vitkd_gen'])


def test_vitkd_loss_featmap_inputs_equal_token_inputs(gen):
    """(B, C, H, W) maps give the same loss as (B, 1 + L, C) tokens with the cls token."""
    loss = ViTKDLoss(6, 8, num_low_layers=1).double()
    inp = _inputs(gen)
    mask = random_token_mask(2, 16, 0.5, generator=gen)
    tok = loss(inp['student_high'], inp['teacher_high'], student_low_0=inp['student_low_0'],
               teacher_low_0=inp['teacher_low_0'], mask=mask)

    def fmap(x):
        return x[:, 1:].transpose(1, 2).reshape(2, -1, 4, 4)

    maps = loss(fmap(inp['student_high']), fmap(inp['teacher_high']),
                student_low_0=fmap(inp['student_low_0']),
                teacher_low_0=fmap(inp['teacher_low_0']), mask=mask)
    for k in tok:
        assert torch.allclose(tok[k], maps[k])


def test_vitkd_loss_gradients_reach_student_and_parameters(gen):
    loss = ViTKDLoss(6, 8).double()
    inp = _inputs(gen)
    for k in ('student_high', 'student_low_0', 'teacher_high'):
        inp[k].requires_grad_(True)
    out = loss(**inp)
    sum(out.values()).backward()
    assert inp['student_high'].grad[:, 1:].abs().sum() > 0
    assert inp['student_high'].grad[:, 0].abs().sum() == 0  # cls token not distilled
    assert inp['student_low_0'].grad.abs().sum() > 0
    assert inp['teacher_high'].grad is None
    for name, p in loss.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_vitkd_loss_gradcheck_student_high(gen):
    loss = ViTKDLoss(2, 3, num_low_layers=0, beta_vitkd=1.0).double()
    s = torch.randn(1, 5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(1, 5, 3, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[True, False, False, True]])
    assert torch.autograd.gradcheck(lambda x: loss(x, t, mask=mask)['loss_vitkd_gen'], (s, ))
    assert set(loss(s, t)) == {'loss_vitkd_gen'}


def test_vitkd_token_grid_mismatch_error(gen):
    loss = ViTKDLoss(6, 8)
    s = torch.randn(2, 1 + 196, 6)  # 224 / 16 -> 14x14
    t = torch.randn(2, 1 + 256, 8)  # 256 / 16 -> 16x16
    with pytest.raises(ValueError, match=r'same token grid.*14x14 grid \(196 patch tokens\).*'
                       r'16x16 \(256'):
        loss(s, t, student_low=[s, s], teacher_low=[t, t])
    with pytest.raises(ValueError, match='same token grid'):
        ViTKDLoss(6, 8, num_low_layers=0)(torch.randn(2, 6, 4, 4), torch.randn(2, 8, 2, 8))


def test_vitkd_loss_other_errors(gen):
    loss = ViTKDLoss(6, 8)
    inp = {k: v.float() for k, v in _inputs(gen).items()}
    with pytest.raises(ValueError, match='student_dims=6'):
        loss(**{**inp, 'student_high': torch.randn(2, 17, 5)})
    with pytest.raises(ValueError, match='teacher_dims=8'):
        loss(**{**inp, 'teacher_low_1': torch.randn(2, 17, 9)})
    with pytest.raises(ValueError, match='needs 2 shallow student features'):
        loss(inp['student_high'], inp['teacher_high'], student_low_0=inp['student_low_0'])
    with pytest.raises(TypeError, match='unexpected inputs'):
        loss(**inp, student_low_7=inp['student_low_0'])
    with pytest.raises(ValueError, match='square grid'):
        loss(**{**inp, 'student_high': torch.randn(2, 16, 6), 'teacher_high': torch.randn(2, 16,
                                                                                         8)})
    with pytest.raises(ValueError, match='batch sizes differ'):
        loss(**{**inp, 'teacher_high': torch.randn(3, 17, 8)})
    with pytest.raises(ValueError, match='num_low_layers'):
        ViTKDLoss(6, 8, num_low_layers=-1)


def test_vitkd_distilled_deit_prefix_tokens(gen):
    """Two prefix tokens (cls + dist) on the student, one on the teacher."""
    loss = ViTKDLoss(6, 8, num_low_layers=0, student_prefix_tokens=2, teacher_prefix_tokens=1)
    out = loss(torch.randn(2, 18, 6), torch.randn(2, 17, 8))
    assert out['loss_vitkd_gen'].ndim == 0


@pytest.mark.parametrize('backbone', ['VisionTransformer', 'DeiT3'])
def test_vitkd_taps_on_mmpretrain_vits(backbone):
    """The documented taps exist in mmpretrain ViT/DeiT3 classifiers and record (B, 1 + L, D)."""
    pytest.importorskip('mmpretrain')
    from mmengine.registry import MODELS, init_default_scope

    from mmkd_plugins.models.losses import vitkd_taps
    init_default_scope('mmpretrain')
    arch = dict(embed_dims=16, num_layers=3, num_heads=2, feedforward_channels=32)
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type=backbone, arch=arch, img_size=32, patch_size=8),
        head=dict(type='VisionTransformerClsHead', num_classes=5, in_channels=16)))
    taps = vitkd_taps(2, with_logits=True)
    assert taps == dict(low0='backbone.layers.0', low1='backbone.layers.1',
                        high='backbone.ln1', logits='head.layers.head')
    seen = {}
    for name, path in taps.items():
        model.get_submodule(path).register_forward_hook(
            lambda m, a, out, name=name: seen.__setitem__(name, out))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32), mode='tensor')
    for name in ('low0', 'low1', 'high'):
        assert seen[name].shape == (2, 1 + 16, 16), name
    assert seen['logits'].shape == (2, 5)
    loss = ViTKDLoss(16, 16)
    out = loss(seen['high'], seen['high'], student_low=[seen['low0'], seen['low1']],
               teacher_low=[seen['low0'], seen['low1']])
    assert torch.isfinite(out['loss_vitkd_gen'])


def test_low_precision_features_accumulate_in_float32(gen):
    """fp16/bf16 features (AMP) are summed in float32: no overflow of the squared-error sum."""
    s = (torch.randn(2, 16, 8, generator=gen) * 200).to(torch.float16)
    t = torch.zeros(2, 16, 8, dtype=torch.float16)
    loss = vitkd_mimic_loss(s, t, alpha=1.0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    ref = (s.float()**2).sum() / 2
    assert torch.allclose(loss, ref, rtol=1e-6)
    mask = torch.ones(2, 16, dtype=torch.bool)
    gen_loss = vitkd_generation_loss(s.to(torch.bfloat16), t.to(torch.bfloat16), mask, 1.0, 0.5)
    assert gen_loss.dtype == torch.float32 and torch.isfinite(gen_loss)
