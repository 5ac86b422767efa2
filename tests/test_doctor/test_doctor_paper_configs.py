"""The paper configs pass mmkd-doctor in the tiny shrunk set-up of the end-to-end tests.

One config per family (run time: the whole list of paper configs would repeat the same code paths
at several minutes of CPU): MGD detection (RetinaNet), MGD segmentation (PSPNet), MGD and NKD
classification (ResNet-34 -> 18), ViTKD + NKD (DeiT III-S -> DeiT-Ti). Shrinking is that of
``tests/test_e2e``: detection / segmentation models with a few channels and drawn datasets; the
classification pairs keep their architecture with a drawn image folder at 64 px (the ViTs at their
224 px token grid). Every teacher checkpoint is a local stand-in file with random weights, so
``teacher_expected`` (the official teacher's number) is set to None: a random stand-in cannot reach
it (that FAIL is tested in ``test_doctor_digits.py``). The RetinaNet student keeps a ``Pretrained``
backbone init, pointed at a local stand-in file.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
cv2 = pytest.importorskip('cv2')

from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

from mmkd_plugins.distillers.teacher import load_model_config  # noqa: E402
from mmkd_plugins.doctor.main import run_doctor  # noqa: E402
from mmkd_plugins.doctor.report import FAIL, OK  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.data_makers.tiny_det_seg import make_tiny_cityscapes, make_tiny_coco  # noqa: E402
from tests.test_e2e import test_mgd_det_seg_e2e as e2e  # noqa: E402

CLS = {
    'mgd_cls': 'configs/mgd/cls/mgd_resnet34_resnet18_8xb32_in1k.py',
    'nkd_cls': 'configs/nkd/nkd_resnet34_resnet18_8xb32_in1k.py',
    'vitkd_nkd': 'configs/vitkd/vitkd-nkd_deit3-small_deit-tiny_4xb256_in1k.py',
}
DET_SEG = ('retinanet', 'pspnet')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('doctor_paper_data')
    make_tiny_coco(str(root / 'coco'), num_train=4, num_val=2, size=64)
    make_tiny_cityscapes(str(root / 'cityscapes'), num_train=2, num_val=2, size=(64, 128))
    rng = np.random.default_rng(0)
    for k in range(3):
        (root / 'images' / f'class_{k}').mkdir(parents=True)
        for i in range(2):
            img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            cv2.imwrite(str(root / 'images' / f'class_{k}' / f'{i}.png'), img)
    return dict(coco=str(root / 'coco'), cityscapes=str(root / 'cityscapes'),
                images=str(root / 'images'))


def _save_random(model_cfg: dict, path: str, scope: str) -> None:
    init_default_scope(scope)
    torch.manual_seed(1)
    model = MODELS.build(ConfigDict(copy.deepcopy(model_cfg)))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)


def _det_seg_cfg(family, data, tmp_path) -> Config:
    cfg = e2e.tiny_distill_cfg(family, data, str(tmp_path))
    # the teacher keeps its own config's data preprocessor (the doctor compares it)
    teacher_file = Config.fromfile(e2e.MGD + '/' + e2e.FAMILIES[family][0]).model.teacher
    full = load_model_config(teacher_file)
    shrink = e2e.tiny_segmentor if family in e2e.SEG else e2e.tiny_detector
    cfg.model.teacher = shrink(full, 'teacher')
    if family not in e2e.SEG:  # a Pretrained student backbone, from a local stand-in file
        init_default_scope('mmdet')
        backbone = MODELS.build(ConfigDict(copy.deepcopy(cfg.model.student.backbone.to_dict())))
        stand_in = str(tmp_path / 'student_backbone.pth')
        torch.save(dict(state_dict=backbone.state_dict()), stand_in)
        cfg.model.student.backbone.init_cfg = dict(type='Pretrained', checkpoint=stand_in)
    return cfg


def _cls_cfg(name, data, tmp_path) -> Config:
    cfg = Config.fromfile(osp.join(REPO, CLS[name]))
    vit = name.startswith('vitkd')
    size = 224 if vit else 64
    teacher = load_model_config(cfg.model.teacher)
    teacher.pop('init_cfg', None)
    ckpt = str(tmp_path / 'teacher.pth')
    _save_random(teacher, ckpt, 'mmpretrain')
    cfg.model.teacher, cfg.model.teacher_ckpt = teacher, ckpt
    train = [dict(type='LoadImageFromFile'), dict(type='RandomResizedCrop', scale=size),
             dict(type='PackInputs')]
    val = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(size, size)),
           dict(type='PackInputs')]
    for split, pipeline in (('train_dataloader', train), ('val_dataloader', val)):
        cfg[split].update(batch_size=2, num_workers=0, persistent_workers=False)
        cfg[split].dataset = dict(type='CustomDataset', data_root=data['images'], pipeline=pipeline)
    cfg.train_dataloader.collate_fn = dict(type='default_collate')
    cfg.model.student.train_cfg = None  # mixup / cutmix need batches of the configured size
    cfg.visualizer.name = f'visualizer_{name}_{id(cfg)}'
    return cfg


@pytest.mark.parametrize('family', list(DET_SEG) + list(CLS))
def test_paper_config_passes_the_doctor(family, data, tmp_path, monkeypatch):
    # MGD masks 65 % of the positions of a detection level: on the 1x1 P6 / P7 maps of a 64 px
    # image a whole level can be masked for a batch, which leaves that term without gradient on the
    # student (the doctor rightly FAILs it); 256 px gives every level at least 2x2 positions
    monkeypatch.setitem(e2e.DET_SCALE, 'retinanet', 256)
    cfg = (_det_seg_cfg if family in DET_SEG else _cls_cfg)(family, data, tmp_path)
    cfg.teacher_expected = None
    path = str(tmp_path / f'{family}.py')
    cfg.dump(path)
    report = run_doctor(path, batches=1)
    fails = [(r.check, r.item, r.detail) for r in report.rows if r.status == FAIL]
    assert not fails, fails
    checks = {r.check for r in report.rows if r.status == OK}
    assert {'teacher weights', 'teacher metric', 'taps', 'loss terms', 'student init'} <= checks
    distill = [r for r in report.rows if r.check == 'loss terms' and r.item.startswith('distill.')]
    # every distillation term trains the student (on the measured steps, or, where MGD's random
    # mask blanked RetinaNet's 2x2 P7 of these tiny images, on a re-draw of the batch)
    assert distill and all(r.data['grad_norm'] > 0 or r.data.get('redraw_grad_norm', 0) > 0
                           for r in distill)
    if family == 'retinanet':
        (bb,) = [r for r in report.rows if r.check == 'student init' and r.item == 'backbone']
        assert bb.status == OK and bb.data['loaded'] == bb.data['tensors']
