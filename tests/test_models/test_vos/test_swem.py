"""SWEM model: losses vs. direct formulas, soft aggregation, training through the Runner, inference."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import MODELS
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement

from mmkd_plugins.datasets.vos import synthesize_moving_shapes
from mmkd_plugins.models.vos.losses import (VOSBootstrappedCELoss, VOSIoULoss, bootstrapped_cross_entropy,
                                            soft_iou_loss, softmax_iou_loss, top_p_schedule)
from mmkd_plugins.models.vos.networks import CBAM, soft_aggregate
from tests.test_models.test_vos.vos_helpers import single_thread, tiny_runner_cfg, tiny_swem_cfg


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()


# ---------------------------------------------------------------- losses
def test_top_p_schedule():
    assert top_p_schedule(0, 20000, 70000) == 1.0
    assert top_p_schedule(20000, 20000, 70000) == 1.0
    assert top_p_schedule(45000, 20000, 70000) == pytest.approx(0.65)
    assert top_p_schedule(70000, 20000, 70000) == pytest.approx(0.3)
    assert top_p_schedule(10 ** 6, 20000, 70000) == pytest.approx(0.3)


def _ce_per_pixel(logits, target):
    """Direct -log softmax(logits)_y, (B, H*W) lists of floats."""
    out = []
    for b in range(logits.shape[0]):
        row = []
        for i in range(logits.shape[2]):
            for j in range(logits.shape[3]):
                lse = torch.log(torch.exp(logits[b, :, i, j]).sum())
                row.append(float(lse - logits[b, target[b, i, j], i, j]))
        out.append(row)
    return out


def test_bootstrapped_ce_matches_direct():
    """Official default: the top-p hardest pixels of each clip (and frame), mean over clips and
    pixels; option top_p_over='batch': the top-p hardest pixels of the whole batch."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 5))
    target[1] = 0  # an easy clip: pooled over the batch it would lose pixels to the other clip
    logits[1, 0] += 3.0
    rows = _ce_per_pixel(logits, target)
    pooled = sorted(rows[0] + rows[1], reverse=True)
    for p in (1.0, 0.5, 0.13):
        k = max(1, int(p * 20))
        per_clip = np.mean([np.mean(sorted(r, reverse=True)[:k]) for r in rows])
        assert float(bootstrapped_cross_entropy(logits, target, p)) == pytest.approx(per_clip)
        kb = max(1, int(p * 40))
        assert float(bootstrapped_cross_entropy(logits, target, p, per_clip=False)) == pytest.approx(
            np.mean(pooled[:kb]))
    # the two selections differ when one clip is much harder than the other
    assert float(bootstrapped_cross_entropy(logits, target, 0.5)) != pytest.approx(
        float(bootstrapped_cross_entropy(logits, target, 0.5, per_clip=False)))
    loss = VOSBootstrappedCELoss(start_iter=10, end_iter=20, p_end=0.5, loss_weight=2.0)
    assert loss.top_p_over == 'clip_frame'
    assert float(loss(logits, target, iteration=30)) == pytest.approx(
        2 * np.mean([np.mean(sorted(r, reverse=True)[:10]) for r in rows]))
    batch = VOSBootstrappedCELoss(start_iter=10, end_iter=20, p_end=0.5, top_p_over='batch')
    assert float(batch(logits, target, iteration=30)) == pytest.approx(np.mean(pooled[:20]))
    with pytest.raises(ValueError, match='top_p_over'):
        VOSBootstrappedCELoss(top_p_over='video')
    with pytest.raises(ValueError, match='top_p'):
        bootstrapped_cross_entropy(logits, target, 0.0)
    with pytest.raises(ValueError, match='target'):
        bootstrapped_cross_entropy(logits, target[0])


def _direct_iou(p, g, eps, numerator_eps):
    p, g = p.flatten().tolist(), g.flatten().tolist()
    inter = sum(min(a, b) for a, b in zip(p, g))
    union = sum(max(a, b) for a, b in zip(p, g))
    return (inter + (eps if numerator_eps else 0)) / (union + eps)


def test_softmax_iou_matches_official_direct():
    """Default: soft IoU of each valid softmax channel, background included, averaged per clip and
    then over the clips (official mask_iou_loss); an empty channel has IoU 0 (eps in the union
    only). Padding objects are left out."""
    torch.manual_seed(4)
    prob = torch.softmax(torch.randn(2, 3, 4, 4, dtype=torch.float64), 1)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[1][labels[1] == 2] = 1  # clip 1 has one object; its channel 2 is padding
    valid = torch.tensor([[True, True], [True, False]])
    per_clip = []
    for b, channels in ((0, (0, 1, 2)), (1, (0, 1))):
        per_clip.append(np.mean([_direct_iou(prob[b, c], (labels[b] == c).double(), 1e-6, False)
                                 for c in channels]))
    expected = 1 - np.mean(per_clip)
    assert float(softmax_iou_loss(prob, labels, valid)) == pytest.approx(expected, rel=1e-12)
    assert float(VOSIoULoss(loss_weight=3.0)(prob, labels, valid)) == pytest.approx(3 * expected)
    # no valid mask: every channel of every clip
    all_ch = 1 - np.mean([np.mean([_direct_iou(prob[b, c], (labels[b] == c).double(), 1e-6, False)
                                   for c in range(3)]) for b in range(2)])
    assert float(softmax_iou_loss(prob, labels)) == pytest.approx(all_ch, rel=1e-12)
    # perfect one-hot prediction: 0; a valid but empty object channel gives IoU 0 -> loss 1/2
    onehot = torch.nn.functional.one_hot(labels[:1], 3).permute(0, 3, 1, 2).double()
    assert float(softmax_iou_loss(onehot, labels[:1])) == pytest.approx(0.0, abs=1e-6)
    bg = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    bg[:, 0] = 1
    assert float(softmax_iou_loss(bg, torch.zeros(1, 3, 3, dtype=torch.long))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='valid'):
        softmax_iou_loss(prob, labels, valid[:, :1])
    with pytest.raises(ValueError, match='labels'):
        softmax_iou_loss(prob, labels[0])
    with pytest.raises(ValueError, match='channels'):
        VOSIoULoss(channels='all')


def test_objects_iou_option_matches_direct():
    """channels='objects' (the earlier default here): object channels only, eps in numerator and
    denominator, mean over the valid objects of the batch."""
    torch.manual_seed(5)
    prob = torch.softmax(torch.randn(2, 3, 4, 4, dtype=torch.float64), 1)
    labels = torch.randint(0, 3, (2, 4, 4))
    valid = torch.tensor([[True, True], [True, False]])
    ious = [_direct_iou(prob[b, o + 1], (labels[b] == o + 1).double(), 1e-6, True)
            for b, o in ((0, 0), (0, 1), (1, 0))]
    loss = VOSIoULoss(loss_weight=2.0, channels='objects')
    assert float(loss(prob, labels, valid)) == pytest.approx(2 * (1 - np.mean(ious)), rel=1e-12)
    assert float(loss(prob, labels, valid)) != pytest.approx(float(VOSIoULoss(loss_weight=2.0)(
        prob, labels, valid)))


def test_soft_iou_matches_direct_and_edge_cases():
    torch.manual_seed(1)
    prob = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    gt = (torch.rand(2, 2, 3, 3) > 0.5).double()
    gt[1, 1] = 0
    ious = []
    for b in range(2):
        for o in range(2):
            p, g = prob[b, o].flatten(), gt[b, o].flatten()
            ious.append((float((p * g).sum()) + 1e-6) / (float((p + g - p * g).sum()) + 1e-6))
    assert float(soft_iou_loss(prob, gt)) == pytest.approx(1 - np.mean(ious))
    valid = torch.tensor([[True, True], [True, False]])
    assert float(soft_iou_loss(prob, gt, valid)) == pytest.approx(1 - np.mean(ious[:3]))
    # perfect / empty predictions
    assert float(soft_iou_loss(gt, gt)) == pytest.approx(0.0, abs=1e-9)
    assert float(soft_iou_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))) == pytest.approx(0)
    with pytest.raises(ValueError, match='same shape'):
        soft_iou_loss(prob, gt[:, :1])


def test_loss_gradcheck():
    torch.manual_seed(2)
    logits = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[0, 1], [2, 1]]])
    assert torch.autograd.gradcheck(lambda x: bootstrapped_cross_entropy(x, target, 0.5), (logits, ))
    prob = torch.rand(1, 2, 2, 2, dtype=torch.float64).requires_grad_()
    gt = (torch.rand(1, 2, 2, 2) > 0.5).double()
    assert torch.autograd.gradcheck(lambda p: soft_iou_loss(p, gt), (prob, ))
    logits = torch.randn(1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[[0, 1, 2], [2, 1, 0], [0, 0, 1]]])
    assert torch.autograd.gradcheck(lambda x: softmax_iou_loss(torch.softmax(x, 1), labels),
                                    (logits, ))


# ---------------------------------------------------------------- network pieces
def test_soft_aggregate_matches_direct():
    torch.manual_seed(3)
    prob = torch.rand(1, 2, 2, 2, dtype=torch.float64)
    logits = soft_aggregate(prob)
    for i in range(2):
        for j in range(2):
            p = [float((1 - prob[0, 0, i, j]) * (1 - prob[0, 1, i, j])), float(prob[0, 0, i, j]),
                 float(prob[0, 1, i, j])]
            p = np.clip(p, 1e-7, 1 - 1e-7)
            np.testing.assert_allclose(logits[0, :, i, j].numpy(), np.log(p / (1 - p)))
    masked = torch.softmax(soft_aggregate(prob, torch.tensor([[True, False]])), 1)
    assert torch.all(masked[:, 2] < 1e-6)  # a padding object never wins
    torch.testing.assert_close(torch.softmax(logits, 1).sum(1), torch.ones(1, 2, 2, dtype=torch.float64))


def test_cbam_shape():
    assert CBAM(32)(torch.randn(2, 32, 5, 5)).shape == (2, 32, 5, 5)


# ---------------------------------------------------------------- model
def _batch(model, b=2, t=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 255, (b, t, 3, size, size), dtype=torch.uint8, generator=g)
    samples = []
    for i in range(b):
        lab = torch.zeros(t, size, size, dtype=torch.long)
        lab[:, 8:30, 8:30] = 1
        if i == 0:
            lab[:, 36:60, 30:60] = 2
        samples.append(BaseDataElement(gt_masks=lab, metainfo=dict(num_objects=2 if i == 0 else 1)))
    return model.data_preprocessor(dict(inputs=list(frames), data_samples=samples), True)


@pytest.mark.parametrize('memory', ['SWEMMemory', 'GrowingMemory'])
def test_swem_loss_backward(memory):
    torch.manual_seed(0)
    model = MODELS.build(tiny_swem_cfg(memory))
    data = _batch(model)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_ce', 'loss_iou'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name in ('key_encoder', 'value_encoder', 'key_proj', 'fusion', 'decoder'):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    logits = model(**data, mode='tensor')
    assert len(logits) == 2 and logits[0].shape == (2, 3, 64, 64)


def test_frame_reduction_mean_is_official_and_sum_an_option():
    """Official: the losses average over the predicted frames; 'sum' gives (T-1) times that."""
    torch.manual_seed(0)
    cfg = tiny_swem_cfg()
    mean_model = MODELS.build(cfg)
    sum_model = MODELS.build(dict(cfg, frame_reduction='sum'))
    sum_model.load_state_dict(mean_model.state_dict())
    assert mean_model.frame_reduction == 'mean'
    for model in (mean_model, sum_model):
        model.memory.init_seed = 0
    data = _batch(mean_model, t=3)
    torch.manual_seed(1)
    mean_losses = mean_model(**data, mode='loss')
    torch.manual_seed(1)
    sum_losses = sum_model(**data, mode='loss')
    for k in mean_losses:
        torch.testing.assert_close(sum_losses[k], 2 * mean_losses[k])
    with pytest.raises(ValueError, match='frame_reduction'):
        MODELS.build(dict(cfg, frame_reduction='max'))


def test_empty_object_and_objectless_clips_train():
    """A clip with one (valid) empty object, as the official code trains after 5 draws without an
    object, gives finite losses whose gradient reaches the decoder (it learns 'no object here'); a
    clip without objects (num_objects 0: only padding, as an official static clip whose first frame
    lost its objects) gives losses of about 0 and no signal."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_swem_cfg())
    frames = torch.randint(0, 255, (2, 3, 3, 32, 32), dtype=torch.uint8)
    for counts in ((1, 1), (0, 0)):
        samples = [BaseDataElement(gt_masks=torch.zeros(3, 32, 32, dtype=torch.long),
                                   metainfo=dict(num_objects=c)) for c in counts]
        data = model.data_preprocessor(dict(inputs=list(frames), data_samples=samples), True)
        losses = model(**data, mode='loss')
        assert all(torch.isfinite(v) for v in losses.values()), (counts, losses)
        model.zero_grad()
        sum(losses.values()).backward()
        grads = [p.grad for p in model.decoder.parameters() if p.grad is not None]
        if counts[0]:
            assert any(g.abs().sum() > 0 for g in grads) and float(losses['loss_ce']) > 1e-3
        else:
            assert all(float(v) < 1e-5 for v in losses.values()), losses


def test_swem_input_errors():
    model = MODELS.build(tiny_swem_cfg())
    data = _batch(model)
    with pytest.raises(ValueError, match=r'\(B, T, 3, H, W\)'):
        model.loss(data['inputs'][0], data['data_samples'])
    with pytest.raises(ValueError, match='at least 2 frames'):
        model.loss(data['inputs'][:, :1], data['data_samples'])
    with pytest.raises(ValueError, match='3 values'):
        MODELS.build(dict(tiny_swem_cfg(), key_channels=(64, 32)))
    with pytest.raises(ValueError, match='frame must be'):
        model.step(torch.randn(4, 8, 8))
    with pytest.raises(RuntimeError, match='invalid mode'):
        model(**data, mode='nope')


def test_swem_inference_30_frames_and_new_objects(tmp_path):
    """Whole-video inference over a 30-frame clip; a second object appears at frame 10."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_swem_cfg()).eval()
    t = 30
    frames = torch.randint(0, 255, (t, 3, 64, 64), dtype=torch.uint8)
    gt = torch.zeros(t, 96, 96, dtype=torch.long)
    gt[0, 10:40, 10:40] = 3
    gt[10, 50:80, 50:80] = 5
    sample = BaseDataElement(gt_masks=gt, metainfo=dict(ori_shape=(96, 96), init_frames=[0, 10]))
    data = model.data_preprocessor(dict(inputs=[frames], data_samples=[sample]))
    calls = []
    torch.manual_seed(1)
    pred = model.predict_video(data['inputs'][0], sample, progress=lambda: calls.append(1))
    assert pred.shape == (t, 96, 96) and pred.dtype == torch.uint8 and len(calls) == t
    assert set(pred.unique().tolist()) <= {0, 3, 5}
    # annotated frames reproduce their annotation (nearest-resized round trip)
    assert (pred[0] == 3).sum() > 0.8 * (gt[0] == 3).sum()
    assert (pred[10] == 5).sum() > 0.8 * (gt[10] == 5).sum()
    assert not (pred[:10] == 5).any()  # object 5 does not exist before frame 10
    assert model.memory.num_slots == 0  # state released after the video
    torch.manual_seed(1)
    out = model(**data, mode='predict')
    torch.testing.assert_close(out[0].pred_masks, pred)  # deterministic for a fixed prior
    model.memory.init_seed = 7  # a seeded prior makes inference reproducible without the global RNG
    short = data['inputs'][0][:4]
    a = model.predict_video(short, sample)
    torch.manual_seed(123)
    torch.testing.assert_close(model.predict_video(short, sample), a)


def test_swem_memory_state_is_flat_during_inference():
    torch.manual_seed(0)
    sizes = {}
    for memory in ('SWEMMemory', 'GrowingMemory'):
        model = MODELS.build(tiny_swem_cfg(memory)).eval()
        model.start_video()
        lab = torch.zeros(64, 64, dtype=torch.long)
        lab[5:20, 5:20] = 1
        frame = torch.randn(3, 64, 64)
        sz = []
        for i in range(12):
            model.step(frame, lab if i == 0 else None)
            sz.append(model.memory.state_numel())
        sizes[memory] = sz
    assert len(set(sizes['SWEMMemory'][1:])) == 1
    assert sizes['GrowingMemory'][-1] > sizes['GrowingMemory'][1]


def test_train_and_val_through_runner(tmp_path):
    root = str(tmp_path / 'davis')
    synthesize_moving_shapes(root, videos=('a', 'b'), num_frames=8, size=(64, 64), split='train')
    synthesize_moving_shapes(root, videos=('c', ), num_frames=6, size=(64, 64), split='val', seed=1)
    cfg = tiny_runner_cfg(root, str(tmp_path / 'work'), max_iters=3)
    runner = Runner(**cfg)
    runner.train()
    assert osp.isfile(osp.join(str(tmp_path / 'work'), 'iter_3.pth'))
    metrics = runner.val_loop.run()
    assert set(metrics) >= {'davis/J&F-Mean', 'davis/J-Mean', 'davis/F-Mean', 'davis/J-Recall',
                            'davis/F-Decay'}
    assert 0 <= metrics['davis/J&F-Mean'] <= 100
    # the frame-skip curriculum: 0 (iter 0) -> 5 (iter 1) -> 2 (iter 2, 40 % of the peak), in the
    # shared value that the DataLoader workers read
    assert runner.train_dataloader.dataset.cur_skip == 2


@pytest.mark.skipif(not __import__('importlib').util.find_spec('mmpretrain'),
                    reason='mmpretrain not installed')
def test_swem_with_mmpretrain_resnet18():
    cfg = copy.deepcopy(tiny_swem_cfg())
    cfg['key_backbone'] = dict(type='mmpretrain.ResNet', depth=18, num_stages=3, strides=(1, 2, 2),
                               dilations=(1, 1, 1), out_indices=(0, 1, 2), base_channels=8,
                               stem_channels=8)
    cfg['value_backbone'] = dict(type='mmpretrain.ResNet', depth=18, in_channels=5, num_stages=3,
                                 strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2, ),
                                 base_channels=8, stem_channels=8)
    cfg.update(key_channels=(32, 16, 8), value_backbone_channels=32)
    model = MODELS.build(cfg)
    losses = model(**_batch(model, b=1), mode='loss')
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_value_encoder_keeps_rgb_filters_of_a_3_channel_checkpoint(tmp_path):
    """A Pretrained RGB checkpoint for the 5-channel value backbone: the first conv's RGB filters
    come from the file, the 2 extra channels are initialised (orthogonal / zeros), everything else
    loads; init_weights() of the whole SWEM reaches the encoders."""
    from mmkd_plugins.models.vos.networks import load_extra_input_channels
    rgb = MODELS.build(dict(type='VOSTinyBackbone', in_channels=3, channels=(16, 16, 32)))
    for p in rgb.parameters():
        torch.nn.init.normal_(p)
    torch.save(rgb.state_dict(), tmp_path / 'rgb.pth')
    for extra in ('orthogonal', 'zeros'):
        cfg = copy.deepcopy(tiny_swem_cfg())
        cfg['value_backbone']['init_cfg'] = dict(type='Pretrained', checkpoint=str(tmp_path / 'rgb.pth'))
        cfg['value_extra_channel_init'] = extra
        model = MODELS.build(cfg)
        model.init_weights()
        state = model.value_encoder.backbone.state_dict()
        w = state['stem.0.weight']
        assert w.shape == (16, 5, 3, 3) and torch.equal(w[:, :3], rgb.state_dict()['stem.0.weight'])
        for k, v in rgb.state_dict().items():
            if k != 'stem.0.weight':
                assert torch.equal(state[k], v), k
        e = w[:, 3:].reshape(16, -1)  # (16, 18): orthogonal rows
        if extra == 'zeros':
            assert not e.any()
        else:
            torch.testing.assert_close(e @ e.T, torch.eye(16), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='extra_init'):
        load_extra_input_channels(rgb, {}, 'normal')
