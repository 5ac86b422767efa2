"""mmkd-wire on upstream model pairs that differ: probe, pair, write, and train the written config.

Every model is the upstream config's, built with random weights (nothing downloaded). The written
configs train through mmengine's Runner on tiny drawn data (2 iterations); the teacher checkpoint
is a random-weights file saved here, and the students' ``Pretrained`` backbones load local
stand-in files put in a temporary torch hub cache (the configs keep their URLs).
"""
import copy
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmpretrain')

from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmkd_plugins.distillers.teacher import load_model_config  # noqa: E402
from mmkd_plugins.wiring import PAPER_WEIGHTS, WiringError, depth_pairs  # noqa: E402
from mmkd_plugins.wiring.cli import main as wire_main  # noqa: E402
from mmkd_plugins.wiring.cli import wire  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.test_e2e.test_mgd_det_seg_e2e import data  # noqa: E402,F401  (tiny COCO + Cityscapes)
from tests.test_e2e.test_mgd_det_seg_e2e import tiny_data  # noqa: E402

RETINA = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'
FCOS = 'mmdet::fcos/fcos_r101-caffe_fpn_gn-head-1x_coco.py'
PSP18 = 'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py'
UPER50 = 'mmseg::upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py'
RESNET50 = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
MOBILENET = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
DEIT_TINY = 'mmpretrain::deit/deit-tiny_4xb256_in1k.py'
DEIT3_SMALL = 'mmpretrain::deit3/deit3-small-p16_64xb64_in1k.py'


# ---------------------------------------------------------------------------- local stand-ins
def _pretrained_refs(node, owner=None):
    """(module config, checkpoint) of every ``Pretrained`` init_cfg / mmseg ``pretrained=``."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            yield node, init['checkpoint']
        if isinstance(node.get('pretrained'), str) and isinstance(node.get('backbone'), dict):
            yield node['backbone'], node['pretrained']
        for value in node.values():
            yield from _pretrained_refs(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _pretrained_refs(value)


def stand_in_pretrained(model_cfg: dict, scope: str, torch_home) -> list:
    """Write a random-weights file for every pretrained URL of ``model_cfg`` into the torch hub
    cache ``torch_home`` (where mmengine's loader finds it without downloading); the file holds
    the weights of the module that names it, so it loads with no missing key."""
    from mmengine.runner.checkpoint import get_external_models, get_torchvision_models
    written = []
    for module_cfg, ckpt in _pretrained_refs(model_cfg):
        if ckpt.startswith('torchvision://'):
            url = get_torchvision_models()[ckpt[len('torchvision://'):]]
        elif ckpt.startswith('open-mmlab://'):
            url = get_external_models()[ckpt[len('open-mmlab://'):]]
        else:
            url = ckpt
        path = osp.join(str(torch_home), 'hub', 'checkpoints', osp.basename(url))
        cfg = copy.deepcopy(module_cfg)
        cfg.pop('init_cfg', None)
        cfg.pop('pretrained', None)
        module = MODELS.build(ConfigDict(cfg, _scope_=scope))
        os.makedirs(osp.dirname(path), exist_ok=True)
        torch.save(module.state_dict(), path)
        written.append(path)
    return written


def teacher_checkpoint(config: str, path: str) -> str:
    cfg = load_model_config(config)
    cfg.pop('init_cfg', None)
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(cfg))
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def train_written(cfg: Config, work_dir: str, scope: str, torch_home, monkeypatch):
    """Train a written config 2 iterations; the student's pretrained files are local stand-ins."""
    monkeypatch.setenv('TORCH_HOME', str(torch_home))
    stand_in_pretrained(cfg.model.student.to_dict(), scope, torch_home)
    cfg.work_dir = work_dir
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):  # training is what is checked here
        cfg[key] = None
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    cfg.visualizer.name = f'visualizer_wire_{id(cfg)}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def tiny_cls_data(cfg: Config, root: str, size: int) -> None:
    """An image folder of 2 classes x 2 images instead of ImageNet; no validation."""
    import cv2
    rng = np.random.default_rng(0)
    for k in range(2):
        d = osp.join(root, f'class_{k}')
        os.makedirs(d, exist_ok=True)
        for i in range(2):
            cv2.imwrite(osp.join(d, f'{i}.png'), rng.integers(0, 255, (size, size, 3),
                                                               dtype=np.uint8))
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=root,
                     pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.param_scheduler = []  # the 100-300 epoch schedules (warm-up, cosine from epoch 20) do not fit 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)


# ---------------------------------------------------------------------------- detection
def test_retinanet_from_fcos_r101_neck_by_stride(tmp_path, data, monkeypatch):  # noqa: F811
    out = str(tmp_path / 'mgd_fcos_retina.py')
    log = []
    wire(RETINA, FCOS, 'mgd', input_size=(128, 128), out=out, log=log.append)
    cfg = Config.fromfile(out)
    m = cfg.model
    assert m.type == 'SingleTeacherDistiller' and m.teacher == FCOS
    assert m.teacher_forward == 'extract_feat'
    # FCOS (caffe style: BGR, mean 102.98.., std 1) preprocesses the raw batch itself
    assert m.teacher_data_preprocessor == 'teacher'
    # five FPN levels, strides 8..128 on both sides, 256 channels each
    assert [m.student_taps[f'fpn{i}'] for i in range(5)] == [dict(module='neck', idx=i)
                                                             for i in range(5)]
    assert dict(m.teacher_taps) == dict(m.student_taps)
    w = PAPER_WEIGHTS[('mgd', 'det')]
    for i in range(5):
        conn = m.connectors[f'mgd{i}']
        assert (conn.student_channels, conn.teacher_channels) == (256, 256)
        assert conn.lambda_mgd == w['lambda_mgd'] and conn.mask_type == 'spatial'
        loss = m.distill_losses[f'loss_mgd_fpn{i}']
        assert loss.alpha_mgd == w['alpha_mgd']
        assert loss.inputs == dict(preds_S=f'mgd{i}(student.fpn{i})', preds_T=f'teacher.fpn{i}')
    text = '\n'.join(log)
    for stride in (8, 16, 32, 64, 128):
        assert f'stride {stride}' in text
    # the student config is inherited, not copied
    assert open(out).read().count('_base_ = ') == 1 and RETINA in open(out).read()

    # the written config trains (2 iterations on tiny drawn COCO data)
    cfg.model.teacher_ckpt = teacher_checkpoint(FCOS, str(tmp_path / 'fcos.pth'))
    tiny_data(cfg, 'retinanet', data)
    runner = train_written(cfg, str(tmp_path / 'work'), 'mmdet', tmp_path / 'torch_home',
                           monkeypatch)
    logs = runner.message_hub.log_scalars
    assert all(math.isfinite(logs[f'train/distill.loss_mgd_fpn{i}'].current()) for i in range(5))


# ---------------------------------------------------------------------------- segmentation
def test_pspnet_r18_from_upernet_r50_resamples_stride(tmp_path, data, monkeypatch):  # noqa: F811
    out = str(tmp_path / 'mgd_uper_psp.py')
    wire(PSP18, UPER50, 'mgd', input_size=(64, 128), out=out, log=lambda *a: None)
    m = Config.fromfile(out).model
    # R18-d8 ends at stride 8 (512 ch), UperNet's R50 at stride 32 (2048 ch): x4 resample
    assert m.student_taps.feat == dict(module='backbone', idx=3)
    assert m.teacher_taps.feat == dict(module='backbone', idx=3)
    assert (m.connectors.mgd.student_channels, m.connectors.mgd.teacher_channels) == (512, 2048)
    assert m.connectors.rs_feat == dict(type='FeatureResample', scale_factor=4.0)
    assert m.distill_losses.loss_mgd.inputs.preds_T == 'rs_feat(teacher.feat)'
    w = PAPER_WEIGHTS[('mgd', 'seg')]
    assert m.distill_losses.loss_mgd.alpha_mgd == w['alpha_mgd']
    assert m.connectors.mgd.lambda_mgd == w['lambda_mgd']
    assert 'teacher_data_preprocessor' not in m  # both use the same Cityscapes preprocessing

    cfg = Config.fromfile(out)
    cfg.model.teacher_ckpt = teacher_checkpoint(UPER50, str(tmp_path / 'uper.pth'))
    cfg.model.student.data_preprocessor.size = (64, 128)
    tiny_data(cfg, 'pspnet', data)
    runner = train_written(cfg, str(tmp_path / 'work'), 'mmseg', tmp_path / 'torch_home',
                           monkeypatch)
    assert math.isfinite(runner.message_hub.log_scalars['train/distill.loss_mgd'].current())


# ---------------------------------------------------------------------------- classification
@pytest.mark.parametrize('method', ['mgd', 'nkd'])
def test_resnet50_to_mobilenet_v2(tmp_path, monkeypatch, method):
    out = str(tmp_path / f'{method}_r50_mbv2.py')
    wire(MOBILENET, RESNET50, method, input_size=(64, 64), out=out, log=lambda *a: None)
    m = Config.fromfile(out).model
    if method == 'mgd':
        assert m.student_taps.feat == dict(module='backbone', idx=0)  # out_indices=(7, )
        assert (m.connectors.mgd.student_channels, m.connectors.mgd.teacher_channels) == (
            1280, 2048)
        assert 'rs_feat' not in m.connectors  # both stride 32
        w = PAPER_WEIGHTS[('mgd', 'cls')]
        assert m.connectors.mgd.mask_type == 'channel' and m.connectors.mgd.lambda_mgd == w[
            'lambda_mgd']
        assert m.distill_losses.loss_mgd.alpha_mgd == w['alpha_mgd']
        loss_key = 'train/distill.loss_mgd'
    else:
        assert m.teacher_forward == 'tensor'
        assert m.student_taps.logits == 'head.fc' and m.teacher_taps.logits == 'head.fc'
        w = PAPER_WEIGHTS[('nkd', 'cls')]
        assert (m.distill_losses.loss_nkd.tau, m.distill_losses.loss_nkd.gamma) == (
            w['tau'], w['gamma'])
        loss_key = 'train/distill.loss_nkd'
    cfg = Config.fromfile(out)
    cfg.model.teacher_ckpt = teacher_checkpoint(RESNET50, str(tmp_path / 'r50.pth'))
    tiny_cls_data(cfg, str(tmp_path / 'images'), 64)
    runner = train_written(cfg, str(tmp_path / 'work'), 'mmpretrain', tmp_path / 'torch_home',
                           monkeypatch)
    assert math.isfinite(runner.message_hub.log_scalars[loss_key].current())


def test_written_config_passes_the_doctor(tmp_path, monkeypatch):
    """The config mmkd-wire writes (ResNet-50 -> MobileNetV2, NKD), with its teacher checkpoint and
    tiny data, passes every check of mmkd-doctor (exit status 0: no FAIL)."""
    from mmkd_plugins.doctor.main import run_doctor
    from mmkd_plugins.doctor.report import FAIL
    out = str(tmp_path / 'nkd_r50_mbv2.py')
    wire(MOBILENET, RESNET50, 'nkd', input_size=(64, 64), out=out, log=lambda *a: None)
    cfg = Config.fromfile(out)
    cfg.model.teacher_ckpt = teacher_checkpoint(RESNET50, str(tmp_path / 'r50.pth'))
    tiny_cls_data(cfg, str(tmp_path / 'images'), 64)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    checked = str(tmp_path / 'checked.py')
    cfg.dump(checked)
    report = run_doctor(checked, batches=1, work_dir=str(tmp_path / 'doctor'))
    assert not report.failed, [r for r in report.rows if r.status == FAIL]
    checks = {r.check for r in report.rows}
    assert {'lint', 'teacher weights', 'taps', 'loss terms'} <= checks, checks


def test_deit_pair_of_other_widths_and_input_sizes(tmp_path, monkeypatch):
    """DeiT-Tiny (192) from DeiT III-S (384) that runs at its own, larger input size."""
    out = str(tmp_path / 'vitkd.py')
    wire(DEIT_TINY, DEIT3_SMALL, 'vitkd', input_size=(64, 64), teacher_input_size=(96, 96),
         out=out, log=lambda *a: None)
    m = Config.fromfile(out).model
    loss = m.distill_losses.loss_vitkd
    assert (loss.student_dims, loss.teacher_dims) == (192, 384)
    assert m.student_taps == dict(low0='backbone.layers.0', low1='backbone.layers.1',
                                  high='backbone.ln1')
    assert m.teacher_taps == m.student_taps  # 12 blocks each: the same depth fraction
    assert m.teacher_data_preprocessor == 'teacher' and m.teacher_input_size == [96, 96]
    # 96 px / 16 = 6x6 teacher tokens, resampled to the student's 4x4 grid, cls token kept
    for name in ('low0', 'low1', 'high'):
        assert m.connectors[f'rs_{name}'] == dict(type='FeatureResample', size=[4, 4],
                                                  tokens=True, num_prefix_tokens=1)
    assert loss.inputs.teacher_high == 'rs_high(teacher.high)'
    w = PAPER_WEIGHTS[('vitkd', 'cls')]
    assert (loss.alpha_vitkd, loss.beta_vitkd) == (w['alpha_vitkd'], w['beta_vitkd'])

    cfg = Config.fromfile(out)
    cfg.model.teacher_ckpt = teacher_checkpoint(DEIT3_SMALL, str(tmp_path / 'deit3.pth'))
    tiny_cls_data(cfg, str(tmp_path / 'images'), 64)
    runner = train_written(cfg, str(tmp_path / 'work'), 'mmpretrain', tmp_path / 'torch_home',
                           monkeypatch)
    logs = runner.message_hub.log_scalars
    assert math.isfinite(logs['train/distill.loss_vitkd.loss_vitkd_gen'].current())


def test_depth_fraction_pairs():
    assert depth_pairs(12, 12) == [(0, 0), (1, 1)]
    assert depth_pairs(12, 24) == [(0, 1), (1, 3)]
    assert depth_pairs(6, 3) == [(0, 0), (1, 0)]


# ---------------------------------------------------------------------------- errors, CLI
def test_impossible_pairing_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(WiringError, match=r'ViTKD needs ViT blocks in both models, but the '
                                          r'teacher RetinaNet \(det, backbone ResNet\) has none'):
        wire(DEIT_TINY, RETINA, 'vitkd', input_size=(64, 64), log=lambda *a: None)
    # through the command line: exit code 2, one line on stderr, no file written
    out = tmp_path / 'x.py'
    rc = wire_main(['--student', DEIT_TINY, '--teacher', RETINA, '--method', 'vitkd',
                    '--input-size', '64', '-o', str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and err.startswith('mmkd-wire: error: ViTKD needs ViT')
    with pytest.raises(WiringError, match='NKD distils classification logits'):
        wire(RETINA, RESNET50, 'nkd', input_size=(64, 64), log=lambda *a: None)


def test_paper_weights_are_the_paper_configs():
    for (method, _), w in PAPER_WEIGHTS.items():
        cfg = Config.fromfile(osp.join(REPO, 'configs', w['source'])).model
        losses = list(cfg.distill_losses.values())
        if method == 'mgd':
            conn = list(cfg.connectors.values())[0]
            assert losses[0].alpha_mgd == w['alpha_mgd']
            assert conn.lambda_mgd == w['lambda_mgd']
            assert conn.get('mask_type', 'spatial') == w['mask_type']
        elif method == 'vitkd':
            assert (losses[0].alpha_vitkd, losses[0].beta_vitkd, losses[0].lambda_vitkd) == (
                w['alpha_vitkd'], w['beta_vitkd'], w['lambda_vitkd'])
        else:
            assert (losses[0].tau, losses[0].gamma, losses[0].loss_weight) == (
                w['tau'], w['gamma'], w['loss_weight'])


def test_console_entry_point_and_tool(tmp_path):
    assert "mmkd-wire=mmkd_plugins.wiring.cli:main" in open(osp.join(REPO, 'setup.py')).read()
    out = tmp_path / 'nkd.py'
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'kd_wire.py'), '--student',
                           MOBILENET, '--teacher', RESNET50, '--method', 'nkd', '--input-size',
                           '32', '-o', str(out)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'head.fc' in proc.stdout and f'wrote {out}' in proc.stdout
    assert Config.fromfile(str(out)).model.distill_losses.loss_nkd.type == 'NKDLoss'
