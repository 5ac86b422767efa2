"""End-to-end MGD for detection and segmentation through mmengine's Runner (CPU, tiny).

Every config of ``configs/mgd/`` (det + seg) is loaded as users load it; only sizes are shrunk:
the student and the teacher keep their upstream types (ResNet-18 vs ResNeXt / ResNet-50 with the
upstream DCN settings, FPN, the same heads) with a few channels, the teacher gets a random-weights
checkpoint saved here, and the data are tiny drawn datasets (COCO layout with boxes + polygons,
Cityscapes layout with label maps). Each family trains 2 iterations with MGD, evaluates with the
upstream metric (CocoMetric / IoUMetric), and its exported student checkpoint is loaded into the
plain upstream config, whose predictions must equal the distiller's. ``mim train mmdet
configs/mgd_retinanet.py`` runs in a subprocess with the same shrinking given as --cfg-options.
"""
import collections
import copy
import glob
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmkd_plugins.distillers.taps import find_module  # noqa: E402
from mmkd_plugins.distillers.teacher import load_model_config, resolve_config_path  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.data_makers.tiny_det_seg import (COCO_CLASSES, make_tiny_cityscapes,  # noqa: E402
                                            make_tiny_coco)

sys.path.insert(0, osp.join(REPO, 'tools'))
import convert_kd_ckpt_to_student  # noqa: E402

MGD = osp.join(REPO, 'configs', 'mgd')
FAMILIES = {  # family: (distillation config, the student's upstream config, distilled levels)
    'retinanet': ('mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py',
                  'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py', 5),
    'reppoints': ('mgd_reppoints-x101-dconv_reppoints-r50_fpn-gn_head-gn_2x_coco.py',
                  'mmdet::reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py', 5),
    'faster_rcnn': ('mgd_cascade-mask-rcnn-x101-dconv_faster-rcnn-r50_fpn_2x_coco.py',
                    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py', 4),
    'mask_rcnn': ('mgd_cascade-mask-rcnn-x101-dconv_mask-rcnn-r50_fpn_2x_coco.py',
                  'mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py', 4),
    'solo': ('mgd_solo-r101_solo-r50_fpn_1x_coco.py', 'mmdet::solo/solo_r50_fpn_1x_coco.py', 4),
    # segmentation: the student's recipe is the authors' R18-D8 512x512 one (configs/mgd/_base_/)
    'pspnet': ('mgd_pspnet-r101_pspnet-r18-d8_8xb2-40k_cityscapes-512x512.py',
               osp.join(MGD, '_base_', 'pspnet_r18-d8_8xb2-40k_cityscapes-512x512.py'), 1),
    'deeplabv3': ('mgd_pspnet-r101_deeplabv3-r18-d8_8xb2-40k_cityscapes-512x512.py',
                  osp.join(MGD, '_base_', 'deeplabv3_r18-d8_8xb2-40k_cityscapes-512x512.py'), 1),
    'pspnet_mgd-only': ('mgd_pspnet-r101_pspnet-r18-d8_8xb2-40k_cityscapes-512x512_mgd-only.py',
                        osp.join(MGD, '_base_', 'pspnet_r18-d8_8xb2-40k_cityscapes-512x512.py'), 1),
}
SEG = ('pspnet', 'deeplabv3', 'pspnet_mgd-only')
CWD = ('pspnet', 'deeplabv3')  # + channel-wise distillation of the decode heads' logits
METRICS = {'retinanet': ['coco/bbox_mAP'], 'reppoints': ['coco/bbox_mAP'],
           'faster_rcnn': ['coco/bbox_mAP'], 'mask_rcnn': ['coco/bbox_mAP', 'coco/segm_mAP'],
           'solo': ['coco/segm_mAP'], 'pspnet': ['mIoU'], 'deeplabv3': ['mIoU'],
           'pspnet_mgd-only': ['mIoU']}

# tiny sizes. Detection: student ResNet-18 (width 8) and teacher ResNe(X)t-50 (width 2, x4
# expansion) both give C2-C5 = 8/16/32/64 channels, as R50 and X101 both give 256..2048, so the
# teacher's FPN and head fit the student (init_student). Segmentation: R18 (32 ch) vs R50 (128 ch).
FPN_IN, FPN_OUT = [8, 16, 32, 64], 16
HEAD_SIZES = dict(in_channels=FPN_OUT, feat_channels=FPN_OUT, point_feat_channels=FPN_OUT,
                  conv_out_channels=FPN_OUT, out_channels=FPN_OUT, fc_out_channels=32,
                  stacked_convs=1, num_classes=len(COCO_CLASSES))
SEG_STUDENT_CH, SEG_TEACHER_CH = 32, 128
# input sizes: mmcv's deformable conv refuses inputs smaller than its kernel (padding ignored), so
# the DCN teachers (stride-32 stage) need >= 96 px and the RepPoints head (DCN on P7, stride 128)
# needs >= 384 px; the drawn 64 px images are resized up by the pipelines.
DET_SCALE = dict(reppoints=384, faster_rcnn=128, mask_rcnn=128)


# ---------------------------------------------------------------------------- shrinking configs
def _gn_groups(node):
    if isinstance(node, dict) and node.get('type') == 'GN':
        node['num_groups'] = 4


def _shrink_heads(node):
    """Channel / class counts of every head in place (upstream structure kept)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in HEAD_SIZES and isinstance(value, int) and not isinstance(value, bool):
                node[key] = HEAD_SIZES[key]
            elif key == 'norm_cfg':
                _gn_groups(value)
            else:
                _shrink_heads(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _shrink_heads(value)


def tiny_detector(model: dict, role: str) -> dict:
    """Shrink an upstream mmdet model config; ``role`` is 'student' (R-18) or 'teacher' (-50)."""
    model = copy.deepcopy(model)
    bb = model['backbone']
    bb.update(init_cfg=None, stem_channels=8, norm_cfg=dict(type='BN', requires_grad=True))
    if role == 'student':
        assert bb['type'] == 'ResNet' and bb['depth'] == 50, bb
        bb.update(depth=18, base_channels=8)
    else:
        assert bb['depth'] == 101, bb
        bb.update(depth=50, base_channels=2)
        if bb['type'] == 'ResNeXt':
            bb.update(groups=2, base_width=4)
    model['neck'].update(in_channels=FPN_IN, out_channels=FPN_OUT)
    _gn_groups(model['neck'].get('norm_cfg'))
    for key in model:
        if key.endswith('head'):
            _shrink_heads(model[key])
    # keep every detection of the random tiny model, so that CocoMetric has something to score
    test_cfg = model.get('test_cfg') or {}
    for cfg in [test_cfg] + [v for v in test_cfg.values() if isinstance(v, dict)]:
        for key in ('score_thr', 'filter_thr', 'mask_thr'):
            if key in cfg:
                cfg[key] = 0.0
    return model


def tiny_segmentor(model: dict, role: str) -> dict:
    """Shrink an upstream mmseg EncoderDecoder: R-18 student (32 ch) or R-50 teacher (128 ch)."""
    model = copy.deepcopy(model)
    bn = dict(type='BN', requires_grad=True)
    model['pretrained'] = None
    depth, last = (18, SEG_STUDENT_CH) if role == 'student' else (50, SEG_TEACHER_CH)
    model['backbone'].update(depth=depth, base_channels=4, stem_channels=8, norm_cfg=bn,
                             init_cfg=None)
    model['decode_head'].update(in_channels=last, channels=16, norm_cfg=bn)
    model['auxiliary_head'].update(in_channels=last // 2, channels=8, norm_cfg=bn)
    if model.get('data_preprocessor') is not None and 'size' in model['data_preprocessor']:
        model['data_preprocessor']['size'] = (64, 128)
    return model


def _resize_to(pipeline, scale):
    for t in pipeline:
        if t['type'] in ('Resize', 'RandomResize', 'RandomChoiceResize'):
            t['scale'] = scale
        if t['type'] == 'RandomCrop':
            t['crop_size'] = (64, 128)


def tiny_data(cfg: Config, family: str, data: dict) -> None:
    seg = family in SEG
    root = data['cityscapes' if seg else 'coco']
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[split]
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = root
        side = DET_SCALE.get(family, 64)
        _resize_to(loader.dataset.pipeline, (128, 64) if seg else (side, side))
        if not seg:
            loader.dataset.metainfo = dict(classes=COCO_CLASSES)
    if seg:
        cfg.train_cfg.update(max_iters=2, val_interval=2)
        cfg.default_hooks.checkpoint.update(interval=2)
    else:
        cfg.train_cfg.update(max_epochs=1, val_interval=1)
        cfg.default_hooks.checkpoint.update(interval=1)
        for key in ('val_evaluator', 'test_evaluator'):
            cfg[key].ann_file = osp.join(root, 'annotations', 'instances_val2017.json')
    cfg.default_hooks.logger.interval = 1
    # upstream visualizers are named 'visualizer': a later Runner in this process would get the
    # earlier Runner's instance (and write its scalars into the earlier work_dir)
    cfg.visualizer.name = f'visualizer_{family}_{id(cfg)}'


def save_random_weights(model_cfg: dict, path: str, seed: int) -> None:
    torch.manual_seed(seed)
    model = MODELS.build(ConfigDict(copy.deepcopy(model_cfg)))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)


def tiny_teacher(family: str, cfg: Config, out_dir: str):
    """The config's own teacher (resolved from its mmdet:: / mmseg:: file), shrunk, + checkpoint."""
    teacher = load_model_config(cfg.model.teacher)
    teacher = (tiny_segmentor if family in SEG else tiny_detector)(teacher, 'teacher')
    teacher.pop('data_preprocessor', None)  # the distiller uses the student's preprocessor
    ckpt = osp.join(out_dir, f'{family}_teacher.pth')
    save_random_weights(teacher, ckpt, seed=1)
    return teacher, ckpt


def tiny_distill_cfg(family: str, data: dict, work_dir: str) -> Config:
    cfg = Config.fromfile(osp.join(MGD, FAMILIES[family][0]))
    shrink = tiny_segmentor if family in SEG else tiny_detector
    cfg.model.student = shrink(cfg.model.student.to_dict(), 'student')
    cfg.model.teacher, cfg.model.teacher_ckpt = tiny_teacher(family, cfg, work_dir)
    for conn in cfg.model.connectors.values():
        if family in SEG:
            conn.update(student_channels=SEG_STUDENT_CH, teacher_channels=SEG_TEACHER_CH)
        else:
            conn.update(student_channels=FPN_OUT, teacher_channels=FPN_OUT)
    tiny_data(cfg, family, data)
    cfg.work_dir = work_dir
    return cfg


# ---------------------------------------------------------------------------- fixtures / helpers
@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('mgd_det_seg_data')
    make_tiny_coco(str(root / 'coco'), num_train=4, num_val=2, size=64)
    make_tiny_cityscapes(str(root / 'cityscapes'), num_train=2, num_val=2, size=(64, 128))
    return dict(coco=str(root / 'coco'), cityscapes=str(root / 'cityscapes'))


class InitStudentProbe(Hook):
    """Before the first iteration (after init_weights): does the student hold the teacher's
    weights in the probed modules?"""

    def __init__(self, pairs):
        self.pairs = pairs
        self.equal = {}

    def before_train(self, runner):
        model = runner.model
        for s_path, t_path in self.pairs.items():
            s = find_module(model.student, s_path).state_dict()
            t = find_module(model.teacher, t_path).state_dict()
            self.equal[s_path] = s.keys() == t.keys() and all(torch.equal(s[k], t[k]) for k in s)


def read_scalars(work_dir):
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert len(files) == 1, files
    merged = collections.defaultdict(list)
    with open(files[0]) as f:
        for line in f:
            for k, v in json.loads(line).items():
                merged[k].append(v)
    return merged


def _tensors(obj):
    """Every tensor in a model output (nested tuples / lists / data samples), in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if hasattr(obj, 'keys') and hasattr(obj, 'get'):  # InstanceData / PixelData / DataSample
        return [t for k in sorted(obj.keys()) for t in _tensors(obj.get(k))]
    return []


def _plain_student(family: str) -> dict:
    """The student's plain upstream config (not the distillation config), shrunk the same way."""
    up = Config.fromfile(resolve_config_path(FAMILIES[family][1]))
    model = up.model.to_dict()
    if up.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', up.data_preprocessor.to_dict())
    return (tiny_segmentor if family in SEG else tiny_detector)(model, 'student')


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize('family', list(FAMILIES))
def test_mgd_family_trains_evaluates_and_exports(family, data, tmp_path):
    cfg = tiny_distill_cfg(family, data, str(tmp_path))
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert type(model).__name__ == 'SingleTeacherDistiller'

    # the teacher: count which of its parts run (pre-hooks: the taps stop it inside the last one)
    calls = collections.Counter()
    for name, child in model.teacher.named_children():
        child.register_forward_pre_hook(lambda m, a, name=name: calls.update([name]))
    if family in SEG:  # mmseg calls decode_head.forward directly: watch the heads' classifiers
        for head in ('decode_head', 'auxiliary_head'):
            getattr(model.teacher, head).conv_seg.register_forward_pre_hook(
                lambda m, a, head=head: calls.update([f'{head}.conv_seg']))
    # families without init_student: probe a module of equal shapes in student and teacher (the
    # FPN; segmentation: the decode head's classifier) to see that nothing was copied
    probe_default = {'decode_head.conv_seg': 'decode_head.conv_seg'} if family in SEG else {
        'neck': 'neck'}
    init_pairs = dict(cfg.model.get('init_student') or {}) or probe_default
    probe = InitStudentProbe(init_pairs)
    runner.register_hook(probe)
    runner.train()

    # 2 training iterations, MGD losses on every distilled level, then the upstream metric
    scalars = read_scalars(str(tmp_path))
    assert max(scalars['iter']) == 2
    levels = FAMILIES[family][2]
    names = (['distill.loss_mgd'] if family in SEG else
             [f'distill.loss_mgd_fpn{i}' for i in range(levels)])
    if family in CWD:
        names.append('distill.loss_cwd')
    for name in names:
        values = scalars[name]
        assert len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values), (name, values)
    assert not any(k.startswith('distill.') and k not in names for k in scalars)
    for metric in METRICS[family]:
        assert metric in scalars and all(0 <= v <= 100 for v in scalars[metric]), (metric, scalars)

    # teacher: extract_feat only (segmentation with the logit term: + its decode head), stopped
    # after the last tapped module; never the auxiliary head, detection heads or losses
    expected = {'backbone': 2} if family in SEG else {'backbone': 2, 'neck': 2}
    if family in CWD:
        expected['decode_head.conv_seg'] = 2
    assert dict(calls) == expected, calls

    # init_student copied the teacher's neck + head where the config asks for it (else: not)
    if cfg.model.get('init_student'):
        assert probe.equal and all(probe.equal.values()), probe.equal
    else:
        assert probe.equal == {k: False for k in probe_default}

    # export: the student checkpoint loads into the plain upstream config ...
    ckpt = osp.join(str(tmp_path), 'iter_2.pth' if family in SEG else 'epoch_1.pth')
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    assert not any(k.startswith('teacher') for k in state)
    out = osp.join(str(tmp_path), 'student.pth')
    convert_kd_ckpt_to_student.main([ckpt, out])
    plain_cfg = _plain_student(family)
    distilled_student = cfg.model.student.to_dict()
    distilled_student.pop('_scope_', None)  # added by the registry when the Runner built it
    # (a plain config that inherits an upstream one through a local base carries its scope)
    assert {k: v for k, v in plain_cfg.items() if k != '_scope_'} == distilled_student
    plain = MODELS.build(ConfigDict(plain_cfg))
    missing, unexpected = plain.load_state_dict(
        torch.load(out, map_location='cpu', weights_only=False)['state_dict'], strict=True)
    assert not missing and not unexpected

    # ... and predicts exactly what the distiller predicts (predict and tensor modes)
    model.eval()
    plain.eval()
    batch = next(iter(runner.build_dataloader(cfg.val_dataloader)))
    with torch.no_grad():
        pred_d = model.test_step(copy.deepcopy(batch))
        pred_p = plain.test_step(copy.deepcopy(batch))
        inputs = model.data_preprocessor(copy.deepcopy(batch), False)
        raw_d = model(**inputs, mode='tensor')
        raw_p = plain(**plain.data_preprocessor(copy.deepcopy(batch), False), mode='tensor')
    for a, b in ((pred_d, pred_p), (raw_d, raw_p)):
        ta, tb = _tensors(a), _tensors(b)
        assert len(ta) == len(tb) and any(t.numel() > 0 for t in ta)
        assert all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ta, tb))


def test_mim_train_mmdet_mgd_retinanet(data, tmp_path):
    """``mim train mmdet configs/mgd_retinanet.py`` (mmdet's own train.py) + --cfg-options."""
    if shutil.which('mim') is None:
        pytest.skip('mim (openmim) is not installed')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mgd_retinanet.py'))
    teacher, teacher_ckpt = tiny_teacher('retinanet', cfg, str(tmp_path))
    teacher_file = osp.join(str(tmp_path), 'tiny_retinanet_teacher.py')
    Config(dict(default_scope='mmdet', model=teacher)).dump(teacher_file)
    coco = data['coco']
    fpn = ','.join(str(c) for c in FPN_IN)
    opts = [
        f'model.teacher={teacher_file}', f'model.teacher_ckpt={teacher_ckpt}',
        'model.student.backbone.depth=18', 'model.student.backbone.base_channels=8',
        'model.student.backbone.stem_channels=8', 'model.student.backbone.init_cfg=None',
        f'model.student.neck.in_channels=[{fpn}]', f'model.student.neck.out_channels={FPN_OUT}',
        f'model.student.bbox_head.in_channels={FPN_OUT}',
        f'model.student.bbox_head.feat_channels={FPN_OUT}',
        'model.student.bbox_head.stacked_convs=1', 'model.student.bbox_head.num_classes=2',
        'model.student.test_cfg.score_thr=0.0',
        *[f'model.connectors.mgd{i}.{k}={FPN_OUT}' for i in range(5)
          for k in ('student_channels', 'teacher_channels')],
        'train_dataloader.dataset.pipeline.2.scale=(64,64)',
        'val_dataloader.dataset.pipeline.1.scale=(64,64)',
        'test_dataloader.dataset.pipeline.1.scale=(64,64)',
        f'val_evaluator.ann_file={coco}/annotations/instances_val2017.json',
        f'test_evaluator.ann_file={coco}/annotations/instances_val2017.json',
        'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
    ]
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{split}.dataset.data_root={coco}/', f'{split}.num_workers=0',
                 f'{split}.persistent_workers=False', f'{split}.batch_size=2',
                 f'{split}.dataset.metainfo.classes=[{",".join(COCO_CLASSES)}]']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    cmd = ['mim', 'train', 'mmdet', 'configs/mgd_retinanet.py', '--gpus', '0', '-y',
           '--work-dir', str(tmp_path / 'work'), '--cfg-options', *opts]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert 'mmdet/.mim/tools/train.py' in proc.stdout  # mmdet's own training script ran
    scalars = read_scalars(str(tmp_path / 'work'))
    for i in range(5):
        assert len(scalars[f'distill.loss_mgd_fpn{i}']) == 2
    assert 'coco/bbox_mAP' in scalars
    state = torch.load(tmp_path / 'work' / 'epoch_1.pth', weights_only=False)['state_dict']
    assert any(k.startswith('student.') for k in state)
    assert not any(k.startswith('teacher') for k in state)
