"""Every distillation config under ``configs/`` passes mmkd-doctor in the tiny shrunk set-up of the
end-to-end tests.

The configs are found, not listed: every ``configs/**/*.py`` (not ``_base_/`` folders, not
``recipes.py``) whose own text or local ``_base_`` files give a model a ``teacher=`` /
``teachers=`` (upstream ``mmdet::`` / ``mmseg::`` / ``mmpretrain::`` bases define no distiller) is a
candidate; each candidate must load to a distiller with a teacher and pass the doctor, unless
``EXCLUDED`` names it with a reason. ``test_discovery_finds_every_distiller_config`` checks the
discovery against the configs that declare ``teacher_expected`` and the inheriting variants.

Shrinking (one 1-batch doctor run per config, data drawn once per module):

* detection / segmentation (``configs/mgd/`` det + seg, ``configs/mgd_retinanet.py``): the tiny
  models of ``tests/test_e2e/test_mgd_det_seg_e2e.py`` (upstream types, a few channels; the teacher
  keeps its own config's data preprocessor, which the doctor compares), drawn COCO / Cityscapes data
  at the sizes the e2e tests need (RetinaNet 256 px: MGD masks 65 % of a level's positions, and on
  the 1x1 P6 / P7 maps of a smaller image a whole level can be blank on every draw). The detection
  students keep a ``Pretrained`` backbone init, pointed at a local stand-in file.
* CNN classification on ImageNet / CIFAR-100 (MGD, NKD, compatible training): the architectures as
  configured, on a drawn image folder at 32 px (CIFAR's size; ImageNet networks give a 1x1 last
  stage there).
* ViTKD (+ NKD): the ViTs keep their type, depth-independent taps and 224 px / 16 px patches (the
  14x14 token grid ViTKD's generation works on) with each arch's heads and widths / 16 (DeiT-Ti 12,
  DeiT-S 24, DeiT-B 48, DeiT III-L 64 dims, 4 dims a head) and 3 blocks; ``ViTKDLoss`` dims follow.
* the digits configs (``configs/demo``, ``configs/compatible/digits_*``): unchanged, on their own
  drawn digits data.

Every teacher checkpoint is a local stand-in file with random weights (one file per distinct shrunk
teacher), so ``teacher_expected`` (the official teacher's number) is set to None: a random stand-in
cannot reach it (that FAIL is tested in ``test_doctor_digits.py``). Teachers shared by several
configs (the PSPNet-R101 of the four segmentation configs, ...) are loaded and saved once.
"""
import ast
import copy
import functools
import glob
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmpretrain')
cv2 = pytest.importorskip('cv2')

from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

from mmkd_plugins.distillers.single_teacher import SingleTeacherDistiller  # noqa: E402
from mmkd_plugins.distillers.teacher import load_model_config  # noqa: E402
from mmkd_plugins.doctor.main import run_doctor  # noqa: E402
from mmkd_plugins.doctor.report import FAIL, OK, SKIP  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.data_makers.tiny_det_seg import make_tiny_cityscapes, make_tiny_coco  # noqa: E402
from tests.test_e2e import test_mgd_det_seg_e2e as e2e  # noqa: E402

CONFIGS = osp.join(REPO, 'configs')
#: distiller configs found by the discovery that are not run, with the reason
EXCLUDED = {
    'configs/compatible/_compatible_base.py':
        'the shared base of the digits compatible-training configs: no distillation loss and no '
        'teacher checkpoint of its own (each configs/compatible/digits_*.py adds them, and each '
        'of those is run)',
}
# a model given a teacher: `teacher=` / `teachers=` (dict call) or a 'teacher' / 'teachers' key
_TEACHER_KEY = re.compile(r"\bteachers?\s*=(?!=)|['\"]teachers?['\"]\s*:")
DET_FAMILY = {'RetinaNet': 'retinanet', 'RepPointsDetector': 'reppoints',
              'FasterRCNN': 'faster_rcnn', 'MaskRCNN': 'mask_rcnn', 'SOLO': 'solo'}
VIT_BACKBONES = ('VisionTransformer', 'DeiT3')
JOINT_METRICS = ('HotRefreshMetric', 'FaceVerificationMetric')  # score a pair, not one model
REPLACED_DATASETS = ('ImageNet', 'CIFAR100', 'CIFAR10')  # -> the drawn image folder
CLS_SIZE, VIT_SIZE, VIT_SHRINK, VIT_LAYERS = 32, 224, 16, 3


# ---------------------------------------------------------------------------- discovery
def _local_bases(path: str):
    """The ``_base_`` files of a config that are in this checkout (not ``pkg::`` ones)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            value = ast.literal_eval(node.value)
            for base in [value] if isinstance(value, str) else value:
                if '::' in base:
                    continue
                base = base.replace('{{fileDirname}}', osp.dirname(path))
                yield osp.normpath(osp.join(osp.dirname(path), base))


@functools.lru_cache(maxsize=None)
def chain_text(path: str) -> str:
    """The text of a config and of its local ``_base_`` files, recursively."""
    with open(path) as f:
        text = f.read()
    return '\n'.join([text] + [chain_text(b) for b in _local_bases(path)])


def all_configs():
    for path in sorted(glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)):
        rel = osp.relpath(path, REPO)
        if '_base_' not in rel.split(osp.sep) and osp.basename(rel) != 'recipes.py':
            yield rel


def discover():
    """Configs whose model gets a teacher (in their own text or a local base)."""
    return [rel for rel in all_configs() if _TEACHER_KEY.search(chain_text(osp.join(REPO, rel)))]


FOUND = discover()
RUN = [rel for rel in FOUND if rel not in EXCLUDED]


def is_distiller(cfg) -> bool:
    model = cfg.get('model') or {}
    cls = MODELS.get(model.get('type'))
    if cls is not None and not isinstance(cls, type) and hasattr(cls, 'resolve'):
        cls = cls.resolve()  # a lazy registry entry of mmkd_plugins
    return (isinstance(cls, type) and issubclass(cls, SingleTeacherDistiller)
            and bool(model.get('teacher') or model.get('teachers')))


# ---------------------------------------------------------------------------- data / helpers
@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('doctor_paper_data')
    make_tiny_coco(str(root / 'coco'), num_train=2, num_val=2, size=64)
    make_tiny_cityscapes(str(root / 'cityscapes'), num_train=2, num_val=2, size=(64, 128))
    rng = np.random.default_rng(0)
    for k in range(2):
        (root / 'images' / f'class_{k}').mkdir(parents=True)
        img = rng.integers(0, 255, (CLS_SIZE, CLS_SIZE, 3), dtype=np.uint8)
        cv2.imwrite(str(root / 'images' / f'class_{k}' / '0.png'), img)
    return dict(coco=str(root / 'coco'), cityscapes=str(root / 'cityscapes'),
                images=str(root / 'images'), root=str(root))


@pytest.fixture(scope='module', autouse=True)
def plain_config_text():
    """mmengine formats every config it prints or dumps with yapf (the Runner logs the whole
    config): seconds of CPU a config, for a log nobody reads here. The unformatted text is the same
    Python; only its layout differs."""
    import mmengine.config.config as mm_config
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mm_config, 'FormatCode', lambda text, **kwargs: (text, False))
        yield


@functools.lru_cache(maxsize=None)
def _teacher_model(teacher: str) -> str:
    """The teacher's model config from its file (JSON: cached and copied per use)."""
    return json.dumps(load_model_config(teacher))


def teacher_model(teacher) -> dict:
    if isinstance(teacher, str):
        return json.loads(_teacher_model(teacher))
    return copy.deepcopy(teacher.to_dict() if hasattr(teacher, 'to_dict') else dict(teacher))


_CKPTS = {}


def random_ckpt(model_cfg: dict, scope: str, root: str) -> str:
    """A checkpoint file of ``model_cfg`` with seeded random weights (one per distinct model)."""
    key = json.dumps([model_cfg, scope], sort_keys=True, default=str)
    if key not in _CKPTS or not osp.exists(_CKPTS[key]):
        init_default_scope(scope)
        torch.manual_seed(1)
        model = MODELS.build(ConfigDict(copy.deepcopy(model_cfg)))
        model.init_weights()
        path = osp.join(root, f'teacher_{len(_CKPTS)}.pth')
        torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
        _CKPTS[key] = path
    return _CKPTS[key]


def _scope(cfg) -> str:
    return cfg.get('default_scope') or 'mmpretrain'


# ---------------------------------------------------------------------------- shrinking
def _det_seg(cfg, data, tmp_path, monkeypatch) -> dict:
    student = cfg.model.student.to_dict()
    seg = student['type'] == 'EncoderDecoder'
    if seg:
        family = 'pspnet'  # e2e.tiny_data only asks "segmentation?" of the family name
    else:
        assert student['type'] in DET_FAMILY, (
            f'no tiny set-up for the detector {student["type"]}: add it to DET_FAMILY (and '
            'tests/test_e2e/test_mgd_det_seg_e2e.py)')
        family = DET_FAMILY[student['type']]
    shrink = e2e.tiny_segmentor if seg else e2e.tiny_detector
    cfg.model.student = shrink(student, 'student')
    # the teacher keeps its own config's data preprocessor (the doctor compares it)
    teacher = shrink(teacher_model(cfg.model.teacher), 'teacher')
    cfg.model.teacher = teacher
    cfg.model.teacher_ckpt = random_ckpt(teacher, _scope(cfg), data['root'])
    channels = ((e2e.SEG_STUDENT_CH, e2e.SEG_TEACHER_CH) if seg else (e2e.FPN_OUT, e2e.FPN_OUT))
    for conn in (cfg.model.get('connectors') or {}).values():
        conn.update(student_channels=channels[0], teacher_channels=channels[1])
    monkeypatch.setitem(e2e.DET_SCALE, 'retinanet', 256)
    e2e.tiny_data(cfg, family, data)
    pretrained = (student['backbone'].get('init_cfg') or {}).get('type') == 'Pretrained'
    if pretrained:  # a Pretrained student backbone, from a local stand-in file
        init_default_scope(_scope(cfg))
        backbone = MODELS.build(ConfigDict(copy.deepcopy(cfg.model.student.backbone.to_dict())))
        stand_in = str(tmp_path / 'student_backbone.pth')
        torch.save(dict(state_dict=backbone.state_dict()), stand_in)
        cfg.model.student.backbone.init_cfg = dict(type='Pretrained', checkpoint=stand_in)
    return dict(pretrained_backbone=pretrained)


def _arch(backbone: dict) -> dict:
    arch = backbone['arch']
    if isinstance(arch, str):
        import mmpretrain.models.backbones as backbones
        arch = getattr(backbones, backbone['type']).arch_zoo[arch.lower()]
    return dict(arch)


def _tiny_vit(model: dict) -> int:
    """Shrink a ViT classifier in place (widths / 16, 3 blocks); returns its embedding dims."""
    bb = model['backbone']
    assert bb['type'] in VIT_BACKBONES and bb.get('patch_size', 16) == 16, bb
    arch = _arch(bb)
    dims = arch['embed_dims'] // VIT_SHRINK
    bb.update(arch=dict(embed_dims=dims, num_layers=VIT_LAYERS, num_heads=arch['num_heads'],
                        feedforward_channels=4 * dims), img_size=VIT_SIZE, init_cfg=None)
    model['head']['in_channels'] = dims
    if 'hidden_dim' in model['head']:
        model['head']['hidden_dim'] = None
    model.pop('init_cfg', None)
    return dims


def _cls(cfg, data, vit: bool) -> dict:
    teacher = teacher_model(cfg.model.teacher)
    teacher.pop('init_cfg', None)
    replaced = cfg.train_dataloader.dataset.get('type') in REPLACED_DATASETS
    if vit and replaced:  # (the digits ViTs are tiny already)
        dims = dict(student=_tiny_vit(cfg.model.student), teacher=_tiny_vit(teacher))
        for loss in cfg.model.distill_losses.values():
            if 'student_dims' in loss:
                loss.update(student_dims=dims['student'], teacher_dims=dims['teacher'])
    if cfg.model.get('student', {}).get('type') == 'BiCTTransformStudent':
        old = teacher_model(cfg.model.student.old_model)
        cfg.model.student.old_ckpt = random_ckpt(old, _scope(cfg), data['root'])
    cfg.model.teacher = teacher
    cfg.model.teacher_ckpt = random_ckpt(teacher, _scope(cfg), data['root'])
    if replaced:
        size = VIT_SIZE if vit else CLS_SIZE
        train = [dict(type='LoadImageFromFile'), dict(type='RandomResizedCrop', scale=size),
                 dict(type='PackInputs')]
        val = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(size, size)),
               dict(type='PackInputs')]
        for split, pipeline in (('train_dataloader', train), ('val_dataloader', val)):
            cfg[split].dataset = dict(type='CustomDataset', data_root=data['images'],
                                      pipeline=pipeline)
        cfg.train_dataloader.collate_fn = dict(type='default_collate')
        cfg.model.student.train_cfg = None  # mixup / cutmix need batches of the configured size
    for split in ('train_dataloader', 'val_dataloader'):
        cfg[split].update(batch_size=2, num_workers=0, persistent_workers=False)
    return {}


def shrink(cfg, data, tmp_path, monkeypatch) -> dict:
    """Shrink a loaded distiller config in place; returns facts the test checks afterwards."""
    student = cfg.model.get('student') or {}
    if _scope(cfg) in ('mmdet', 'mmseg'):
        facts = _det_seg(cfg, data, tmp_path, monkeypatch)
    else:
        backbone = student.get('backbone') or {}
        facts = _cls(cfg, data, vit=backbone.get('type') in VIT_BACKBONES)
    cfg.teacher_expected = None
    metrics = cfg.get('val_evaluator') or []
    metrics = [metrics] if isinstance(metrics, dict) else metrics
    facts['joint_metrics_only'] = bool(metrics) and all(
        m['type'] in JOINT_METRICS for m in metrics)
    if cfg.get('visualizer'):
        cfg.visualizer.name = f'visualizer_{id(cfg)}'
    return facts


# ---------------------------------------------------------------------------- tests
def test_discovery_finds_every_distiller_config():
    found = set(FOUND)
    # every config declaring its teacher's official number (the paper pairs) ...
    declared = {rel for rel in all_configs()
                if 'teacher_expected' in chain_text(osp.join(REPO, rel))}
    assert len(declared) >= 20 and declared <= found, sorted(declared - found)
    # ... and those inheriting their distiller from another config (no teacher in their own text)
    seg = 'configs/mgd/mgd_pspnet-r101_{}-r18-d8_8xb2-40k_cityscapes-512x512_mgd-only.py'
    inheriting = {'configs/mgd_retinanet.py', seg.format('pspnet'), seg.format('deeplabv3'),
                  'configs/vitkd/vitkd-nkd_deit3-small_deit-tiny_4xb256_in1k.py',
                  'configs/compatible/digits_bct.py', 'configs/compatible/digits_ract.py'}
    assert inheriting <= found, sorted(inheriting - found)
    # distillers beyond the paper pairs: SOLO, compatible training, the digits demos
    assert {'configs/mgd/mgd_solo-r101_solo-r50_fpn_1x_coco.py',
            'configs/compatible/bct_resnet50_resnet18-old_8xb32_in1k.py',
            'configs/demo/digits_vitkd.py'} <= found
    # plain models are not found (their teachers' own configs, the students' baselines)
    assert not {'configs/cifar100/resnet32x4_cifar100.py',
                'configs/demo/digits_teacher_resnet18.py',
                'configs/nkd/tf-nkd_resnet18_8xb32_in1k.py',
                'configs/swem/swem_r50_8xb1-150k_davis17-384.py'} & found
    # an exclusion names a found distiller config (no stale entry)
    for rel, reason in EXCLUDED.items():
        assert rel in found and len(reason) > 20
        assert is_distiller(Config.fromfile(osp.join(REPO, rel))), rel


@pytest.mark.parametrize('rel', RUN)
def test_distiller_config_passes_the_doctor(rel, data, tmp_path, monkeypatch):
    cfg = Config.fromfile(osp.join(REPO, rel))
    assert is_distiller(cfg), (
        f'{rel} gives a model a teacher in its text but does not load to a distiller with a '
        'teacher: fix the discovery (_TEACHER_KEY) or list it in EXCLUDED with the reason')
    facts = shrink(cfg, data, tmp_path, monkeypatch)
    path = str(tmp_path / osp.basename(rel))
    cfg.dump(path)
    report = run_doctor(path, batches=1)
    table = report.table()
    assert not [r for r in report.rows if r.status == FAIL], table
    by_check = {}
    for r in report.rows:
        by_check.setdefault(r.check, []).append(r)
    for check in ('teacher weights', 'taps', 'student init'):
        assert by_check.get(check) and all(r.status == OK for r in by_check[check]), table
    # the teacher's metric; SKIP only where every metric of the run scores the distiller's joint
    # predictions (the compatible-training metrics: HotRefreshMetric, FaceVerificationMetric)
    (metric,) = by_check['teacher metric']
    assert metric.status == OK or (metric.status == SKIP and 'scores one model' in metric.detail
                                   and facts['joint_metrics_only']), table
    # every distillation term trains the student (on the measured step, or, where MGD's random
    # mask blanked a tiny map, on a re-draw of the batch), unless its schedule has it off at the
    # first step (UniBCT before its first prototype refresh: a SKIP row)
    distill = [r for r in by_check['loss terms'] if r.item.startswith('distill.')]
    assert distill, table
    for r in distill:
        assert (r.data['grad_norm'] > 0 or r.data.get('redraw_grad_norm', 0) > 0
                or (r.status == SKIP and r.data.get('inactive'))), table
    assert any(r.status != SKIP for r in by_check['loss terms']), table
    if facts.get('pretrained_backbone'):
        (bb,) = [r for r in by_check['student init'] if r.item == 'backbone']
        assert bb.data['loaded'] == bb.data['tensors'], table
