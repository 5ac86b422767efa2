"""Every MGD detection / segmentation config (configs/mgd/*.py, not cls/) builds at full size.

Each config is loaded as users load it, the distiller is built with the real student and teacher
(pretrained inits removed, the teacher checkpoint replaced by random weights; reading any
checkpoint fails the test), the paper's settings are checked against the spec table, connector
channels against the built models, and one training forward at full width runs on a small
random batch (MGD losses finite, the teacher stopped after its last tap). The Cityscapes configs
add the channel-wise divergence of the decode heads' logits (the authors' recipe; the teacher runs
its decode head for it), except the ``_mgd-only`` variants.
"""
import copy
import glob
import os.path as osp
import re

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
MGD = osp.join(REPO, 'configs', 'mgd')
CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(MGD, '*.py'))
                 if osp.basename(p) != 'recipes.py')  # the recipe record, not a config

# name -> (levels, alpha_mgd, lambda_mgd, init_student, student channels, teacher channels,
#          teacher type, input side for the forward check)
EXPECTED = {
    'mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py':
        (5, 2e-5, 0.65, dict(neck='neck', bbox_head='bbox_head'), 256, 256, 'RetinaNet', 64),
    'mgd_reppoints-x101-dconv_reppoints-r50_fpn-gn_head-gn_2x_coco.py':
        (5, 2e-5, 0.65, dict(neck='neck', bbox_head='bbox_head'), 256, 256, 'RepPointsDetector',
         384),
    'mgd_cascade-mask-rcnn-x101-dconv_faster-rcnn-r50_fpn_2x_coco.py':
        (4, 5e-7, 0.45, {}, 256, 256, 'CascadeRCNN', 96),
    'mgd_cascade-mask-rcnn-x101-dconv_mask-rcnn-r50_fpn_2x_coco.py':
        (4, 5e-7, 0.45, {}, 256, 256, 'CascadeRCNN', 96),
    'mgd_solo-r101_solo-r50_fpn_1x_coco.py':
        (4, 2e-5, 0.65, dict(neck='neck', mask_head='mask_head'), 256, 256, 'SOLO', 64),
}
for _student in ('pspnet', 'deeplabv3'):
    for _variant in ('', '_mgd-only'):
        EXPECTED[f'mgd_pspnet-r101_{_student}-r18-d8_8xb2-40k_cityscapes-512x512{_variant}.py'] = (
            1, 2e-5, 0.75, {}, 512, 2048, 'EncoderDecoder', 64)
SCHEDULES = {'mgd_solo-r101_solo-r50_fpn_1x_coco.py': (12, [8, 11])}  # others: 2x, (24, [16, 22])


def test_config_list_complete():
    assert sorted(EXPECTED) == CONFIGS
    assert osp.isfile(osp.join(MGD, 'README.md'))
    readme = open(osp.join(MGD, 'README.md')).read()
    for name in CONFIGS:
        assert name in readme, f'{name} is not in configs/mgd/README.md'
    assert 'cls/' in readme


def test_entry_config_is_the_retinanet_config():
    entry = Config.fromfile(osp.join(REPO, 'configs', 'mgd_retinanet.py'))
    full = Config.fromfile(osp.join(MGD, 'mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py'))
    assert entry.model.to_dict() == full.model.to_dict()
    assert entry.default_scope == 'mmdet' and 'mmkd_plugins' in entry.custom_imports['imports']


@pytest.fixture
def no_checkpoint_loading(monkeypatch):
    """Any attempt to read a checkpoint (disk or URL) raises."""
    import mmengine.runner.checkpoint as ckpt_mod

    def refuse(*args, **kwargs):
        raise AssertionError(f'a config build tried to load a checkpoint: {args[:1]}')

    monkeypatch.setattr(torch, 'load', refuse)
    monkeypatch.setattr(ckpt_mod.CheckpointLoader, 'load_checkpoint', refuse)
    monkeypatch.setattr(ckpt_mod, 'load_checkpoint', refuse)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', refuse)


def _chain_text(path):
    """The text of a config and of its local base files (``./...``), config first."""
    text = open(path).read()
    m = re.search(r"^_base_ = (\[.*?\]|'[^']*')", text, re.S | re.M)
    bases = eval(m.group(1)) if m else []  # a literal list / string of file names
    bases = [bases] if isinstance(bases, str) else bases
    for base in bases:
        if base.startswith('./'):
            text += _chain_text(osp.join(osp.dirname(path), base))
    return text


def _strip_pretrained(cfg):
    if isinstance(cfg, dict):
        return {k: (None if k == 'init_cfg' and 'Pretrained' in repr(v) else _strip_pretrained(v))
                for k, v in cfg.items() if k != 'pretrained'}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_strip_pretrained(v) for v in cfg)
    return cfg


def _det_batch(model, side, with_mask):
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(batch_size=1, image_shapes=[(3, side, side)], num_items=[2],
                            num_classes=80, with_mask=with_mask)
    return model.data_preprocessor(packed, True)


def _seg_batch(model, h, w):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):  # 2 images: PSPNet's 1x1 pooling branch has BatchNorm
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, h, w)))
        samples.append(sample)
    packed = dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for _ in samples],
                  data_samples=samples)
    # the inherited preprocessor pads to the 512x1024 crop; shrink it for a cheap forward
    model.data_preprocessor.size = (h, w)
    return model.data_preprocessor(packed, True)


@pytest.mark.parametrize('name', CONFIGS)
def test_mgd_config_builds_and_runs(name, no_checkpoint_loading):
    levels, alpha, lam, init_student, c_s, c_t, teacher_type, side = EXPECTED[name]
    path = osp.join(MGD, name)
    text = _chain_text(path)  # the config, then its local bases
    cfg = Config.fromfile(path)
    seg = 'cityscapes' in name

    # upstream inheritance, plugin import, documented teacher checkpoint
    assert re.search(r"_base_ = \['mm(det|seg)::", text), 'must inherit an upstream config'
    assert 'mmkd_plugins' in cfg.custom_imports['imports']
    ckpt = cfg.model.teacher_ckpt
    if 'solo' in name:  # no official SOLO-R101 checkpoint: self-trained, a local path
        assert ckpt.startswith('checkpoints/') and ckpt.endswith('.pth')
    else:  # the official model-zoo URL, fetched once into the torch hub cache
        assert ckpt.startswith('https://download.openmmlab.com/mm') and ckpt.endswith('.pth')
        assert osp.basename(ckpt).replace('%2B', '+') in text.replace('%2B', '+').split(
            'teacher_ckpt=')[0], 'the comment must name the file for offline use'
    assert cfg.model.teacher.startswith('mmseg::' if seg else 'mmdet::')
    cwd = seg and not name.endswith('_mgd-only.py')  # + logit distillation: the teacher's decode head
    assert cfg.model.teacher_forward == ('tensor' if cwd else 'extract_feat')

    # the paper's settings
    m = cfg.model
    assert len(m.student_taps) == len(m.teacher_taps) == levels + cwd
    assert len(m.connectors) == levels
    assert len(m.distill_losses) == levels + cwd
    if cwd:
        assert m.student_taps.logits == m.teacher_taps.logits == 'decode_head.conv_seg'
        loss = m.distill_losses.loss_cwd
        assert (loss.type, loss.tau, loss.loss_weight) == ('ChannelWiseDivergenceLoss', 4.0, 3.0)
        assert dict(loss.inputs) == dict(preds_S='student.logits', preds_T='teacher.logits')
    for key, loss in m.distill_losses.items():
        if key == 'loss_cwd':
            continue
        assert loss.type == 'MGDLoss' and loss.alpha_mgd == alpha
        assert re.fullmatch(r'(\w+)\(student\.(\w+)\)', loss.inputs.preds_S)
    for conn in m.connectors.values():
        assert conn.type == 'MGDConnector' and conn.lambda_mgd == lam
        assert conn.get('mask_type', 'spatial') == 'spatial'
        assert (conn.student_channels, conn.teacher_channels) == (c_s, c_t)
    taps = [(t.module, t.idx) for t in m.student_taps.values() if not isinstance(t, str)]
    assert taps == ([('backbone', -1)] if seg else [('neck', i) for i in range(levels)])
    assert [(t.module, t.idx) for t in m.teacher_taps.values() if not isinstance(t, str)] == taps
    assert dict(m.get('init_student') or {}) == init_student
    if seg:
        assert cfg.train_cfg.max_iters == 40000 and cfg.param_scheduler[-1].end == 40000
        # the authors' cityscapes_512x512 data: 512x512 crops of images resized at 0.5-2.0 x 2048x1024
        crop = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop'][0]
        assert tuple(crop.crop_size) == (512, 512) and crop.cat_max_ratio == 0.75
        assert tuple(m.student.data_preprocessor.size) == (512, 512)
    else:
        epochs, milestones = SCHEDULES.get(name, (24, [16, 22]))
        assert cfg.train_cfg.max_epochs == epochs
        assert cfg.param_scheduler[-1].milestones == milestones
        assert cfg.optim_wrapper.clip_grad.max_norm == 35

    # build at full size: pretrained inits removed, random teacher
    init_default_scope(cfg.default_scope)
    model_cfg = _strip_pretrained(copy.deepcopy(cfg.model.to_dict()))
    model_cfg.update(teacher_ckpt=None, allow_random_teacher=True)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    assert type(model).__name__ == 'SingleTeacherDistiller'
    assert type(model.teacher).__name__ == teacher_type
    assert not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    if seg:
        assert model.student.backbone.feat_dim == c_s and model.teacher.backbone.feat_dim == c_t
    else:
        assert model.student.neck.out_channels == c_s and model.teacher.neck.out_channels == c_t
    if init_student:
        model.init_weights()  # copies the teacher's modules (student init_cfgs stripped above)
        for s_path, t_path in init_student.items():
            s_state = getattr(model.student, s_path).state_dict()
            t_state = getattr(model.teacher, t_path).state_dict()
            assert all(torch.equal(s_state[k], t_state[k]) for k in t_state)

    # one training forward on a small random batch, at full width
    calls = []
    for child_name, child in model.teacher.named_children():
        child.register_forward_pre_hook(lambda mod, a, n=child_name: calls.append(n))
    if seg:  # mmseg calls decode_head.forward directly: watch its classifier
        model.teacher.decode_head.conv_seg.register_forward_pre_hook(
            lambda mod, a: calls.append('decode_head.conv_seg'))
    model.train()
    if seg:
        data = _seg_batch(model, side, 2 * side)
    else:
        with_mask = '_mask-rcnn-r50' in name or 'solo' in name
        data = _det_batch(model, side, with_mask)
    losses = model(**data, mode='loss')
    distill = {k: v for k, v in losses.items() if k.startswith('distill.')}
    assert len(distill) == levels + cwd
    assert all(torch.isfinite(v) and v > 0 for v in distill.values())
    # the teacher: backbone (+ neck), and its decode head only for the logit term; never the
    # auxiliary head, the detection heads or any loss
    if seg:
        assert calls == (['backbone', 'decode_head.conv_seg'] if cwd else ['backbone'])
    else:
        assert calls == ['backbone', 'neck']


def test_retinanet_teacher_is_mmdets_multiscale_3x_checkpoint():
    """The authors' RetinaNet teacher: mmdet's multi-scale 3x X101-64x4d; config and URL as listed
    in mmdet's own model index (metafile)."""
    import mmdet
    metafile = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'retinanet', 'metafile.yml')
    if not osp.isfile(metafile):
        pytest.skip(f'mmdet installed without its model index ({metafile})')
    yaml = pytest.importorskip('yaml')
    with open(metafile) as f:
        models = {m['Name']: m for m in yaml.safe_load(f)['Models']}
    entry = models['retinanet_x101-64x4d_fpn_ms-640-800-3x_coco']
    assert entry['Metadata']['Epochs'] == 36
    cfg = Config.fromfile(osp.join(MGD, 'mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py'))
    assert cfg.model.teacher == 'mmdet::' + entry['Config'][len('configs/'):]
    assert cfg.model.teacher_ckpt == entry['Weights']
    assert 'mstrain_3x' in cfg.model.teacher_ckpt
