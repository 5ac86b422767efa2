"""GPU checks (pytest marker ``gpu``): skipped cleanly on a machine without CUDA.

``bash tools/verify_gpu.sh`` runs them on a CUDA machine and collects the figures they write to
``$MMKD_GPU_RESULTS`` (one JSON a test) into ``benchmarks/results/gpu_verification.md``.

- mmcv's compiled ops run on CUDA and match their CPU results;
- fp16 AMP: the digits MGD distiller trains through mmengine's ``AmpOptimWrapper`` (student and
  teacher features in float16 under autocast, a dynamic loss scaler, finite losses, weights move);
- NCCL DDP with 2 processes (needs 2 GPUs): ``tools/train.py --launcher pytorch``;
- SWEM (the real ResNet-50 config, random weights) inference at 480p through
  ``tools/vos_inference.py``, with its FPS;
- the distiller / hand-written step-time ratio of ``benchmarks/distill_step_time.py`` on GPU.
"""
import importlib.util
import json
import os
import os.path as osp

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import train_with_two_processes

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]

TINY = ['train_dataloader.dataset.max_samples=64', 'test_dataloader.dataset.max_samples=48',
        'val_dataloader.dataset.max_samples=48', 'train_dataloader.batch_size=16']


def record(name, **values):
    """Write the figures of one check to $MMKD_GPU_RESULTS/<name>.json (when set)."""
    out = os.environ.get('MMKD_GPU_RESULTS')
    if out:
        os.makedirs(out, exist_ok=True)
        values.setdefault('device', torch.cuda.get_device_name(0))
        with open(osp.join(out, f'{name}.json'), 'w') as f:
            json.dump(values, f, indent=2)


def load_tool(path, name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    """A checkpoint of the demo's CNN teacher (random init: these tests check mechanics, not accuracy)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/digits_teacher_resnet18.py'))
    torch.manual_seed(0)
    teacher = MODELS.build(dict(cfg.model, _scope_='mmpretrain'))
    path = tmp_path_factory.mktemp('teacher') / 'teacher.pth'
    torch.save(dict(state_dict=teacher.state_dict(), meta={}), path)
    return str(path)


def test_mmcv_ops_run_on_cuda_and_match_cpu():
    from mmcv.ops import nms, roi_align
    torch.manual_seed(0)
    xy = torch.rand(200, 2) * 100
    boxes = torch.cat([xy, xy + torch.rand(200, 2) * 50 + 1], 1)
    scores = torch.rand(200)
    _, keep_cpu = nms(boxes, scores, 0.5)
    _, keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert torch.equal(keep_cpu, keep_gpu.cpu())
    feat = torch.randn(2, 8, 32, 32)
    rois = torch.tensor([[0, 1., 1., 20., 20.], [1, 4., 2., 30., 25.]])
    a = roi_align(feat, rois, (7, 7), 1.0, 2, 'avg', True)
    b = roi_align(feat.cuda(), rois.cuda(), (7, 7), 1.0, 2, 'avg', True)
    torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)
    record('mmcv_cuda_ops', nms_boxes=200, kept=int(keep_gpu.numel()))


def test_fp16_amp_distiller_through_amp_optim_wrapper(teacher_ckpt, tmp_path):
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.optim import AmpOptimWrapper
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/digits_mgd.py'))
    cfg.merge_from_dict({'train_dataloader.dataset.max_samples': 64,
                         'test_dataloader.dataset.max_samples': 48,
                         'val_dataloader.dataset.max_samples': 48,
                         'train_dataloader.batch_size': 16})
    cfg.work_dir = str(tmp_path)
    cfg.model.teacher_ckpt = teacher_ckpt
    cfg.train_cfg.max_epochs = 2
    cfg.train_cfg.val_interval = 2
    cfg.optim_wrapper = dict(cfg.optim_wrapper, type='AmpOptimWrapper', dtype='float16',
                             loss_scale='dynamic')
    runner = Runner.from_cfg(cfg)
    model = runner.model
    dtypes = {'student': set(), 'teacher': set()}
    model.student.backbone.register_forward_hook(
        lambda m, a, out: dtypes['student'].add(out[-1].dtype) if m.training else None)
    model.teacher.backbone.register_forward_hook(lambda m, a, out: dtypes['teacher'].add(out[-1].dtype))
    losses = []

    class KeepLosses(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            losses.append({k: float(v) for k, v in outputs.items()})

    runner.register_hook(KeepLosses())
    before = {k: v.detach().clone() for k, v in model.student.state_dict().items()}
    runner.train()
    metrics = runner.test()
    assert isinstance(runner.optim_wrapper, AmpOptimWrapper)
    assert runner.optim_wrapper.cast_dtype == torch.float16
    assert dtypes['student'] == {torch.float16} and dtypes['teacher'] == {torch.float16}
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(list(d.values()))).all() for d in losses)
    assert any('distill' in k for k in losses[0])
    after = model.student.state_dict()
    assert any(not torch.equal(before[k], after[k].to(before[k].device)) for k in before
               if before[k].is_floating_point())
    assert next(model.student.parameters()).dtype == torch.float32  # master weights stay fp32
    record('amp_fp16', iterations=len(losses), loss_first=losses[0], loss_last=losses[-1],
           loss_scale=float(runner.optim_wrapper.loss_scaler.get_scale()),
           top1=float(metrics['accuracy/top1']))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='NCCL DDP needs 2 GPUs')
def test_nccl_ddp_two_processes(teacher_ckpt, tmp_path):
    proc = train_with_two_processes(
        'configs/demo/digits_mgd.py', tmp_path,
        [*TINY, 'train_cfg.max_epochs=1', f'model.teacher_ckpt={teacher_ckpt}',
         'default_hooks.checkpoint.interval=1', 'env_cfg.dist_cfg.backend=nccl'],
        master_port=29571, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=False, map_location='cpu')
    assert ckpt['meta']['iter'] == 2  # 64 samples, batch 16, 2 ranks
    assert any(k.startswith('student.') for k in ckpt['state_dict'])
    assert not any(k.startswith('module.') or k.startswith('teacher') for k in ckpt['state_dict'])
    record('ddp_nccl', processes=2, iterations=2)


def test_swem_inference_480p_fps(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import MODELS

    import mmkd_plugins  # noqa: F401
    from mmkd_plugins.datasets.vos import synthesize_moving_shapes
    root = str(tmp_path / 'davis')
    frames = 60
    synthesize_moving_shapes(root, videos=('clip0', 'clip1'), num_frames=frames, size=(480, 854),
                             split='val')
    config = osp.join(REPO, 'configs/swem/swem_r50_8xb1-150k_davis17-ytvos19-384.py')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)  # random weights: no download
    ckpt = tmp_path / 'swem_random.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    tool = load_tool('tools/vos_inference.py', 'vos_inference')
    opts = ['--cfg-options', f'test_dataloader.dataset.data_root={root}',
            'test_dataloader.dataset.test_short_side=480']
    warm = tool.main([config, str(ckpt), '--out-dir', str(tmp_path / 'warm'), '--device', 'cuda',
                      '--max-videos', '1', '--no-progress', *opts])
    res = tool.main([config, str(ckpt), '--out-dir', str(tmp_path / 'out'), '--device', 'cuda',
                     '--no-progress', *opts])
    assert res['frames'] == 2 * frames and res['fps'] > 0
    from PIL import Image
    with Image.open(tmp_path / 'out' / 'clip1' / f'{frames - 1:05d}.png') as im:
        assert im.size == (854, 480)
    record('swem_480p', frames=res['frames'], seconds=res['seconds'], fps=res['fps'],
           fps_first_run=warm['fps'], resolution='480x854', weights='random (same compute)',
           peak_memory_mib=torch.cuda.max_memory_allocated() / 2 ** 20)


def test_distill_step_time_on_gpu(tmp_path):
    bench = load_tool('benchmarks/distill_step_time.py', 'distill_step_time')
    out = tmp_path / 'distill_step_time_gpu.md'
    ratios = bench.main(['--device', 'cuda', '--batch', '32', '--size', '224', '--repeats', '10',
                         '--out', str(out)])
    assert set(ratios) == {'mgd', 'nkd', 'vitkd'}
    assert all(0.5 < r < 2.0 for r in ratios.values()), ratios
    assert 'GPU' in out.read_text()
    record('distill_step_time_gpu', ratios=ratios, table=out.read_text())
