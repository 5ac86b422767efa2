"""Small builders shared by the tests (tiny classifiers, teacher checkpoints, 2-process runs)."""
import copy
import os
import os.path as osp
import subprocess
import sys

import torch
from mmengine.registry import MODELS


def tiny_classifier_cfg(width: int = 4, num_classes: int = 10, depth: int = 18) -> dict:
    """A CIFAR-style mmpretrain ResNet classifier; last stage has 8 * width channels."""
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='mmpretrain.ResNet_CIFAR', depth=depth, stem_channels=width,
                      base_channels=width),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=num_classes, in_channels=8 * width,
                  loss=dict(type='mmpretrain.CrossEntropyLoss', loss_weight=1.0)),
        data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor', num_classes=num_classes,
                               mean=[127.5] * 3, std=[127.5] * 3))


def save_random_weights(cfg: dict, path: str, seed: int = 0) -> torch.nn.Module:
    """Build ``cfg`` with seeded random weights and save them as an mmengine-style checkpoint."""
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return model


def cls_batch(n: int = 4, size: int = 16, num_classes: int = 10, seed: int = 0):
    """A preprocessed mmpretrain batch: (inputs (n, 3, size, size), data_samples with gt_label)."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 3, size, size, generator=g)
    samples = [DataSample().set_gt_label(int(i) % num_classes) for i in range(n)]
    return inputs, samples


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (two test runs may share a machine)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def train_with_two_processes(config: str, work_dir, cfg_options, master_port: int,
                             timeout: int) -> subprocess.CompletedProcess:
    """Run ``tools/train.py CONFIG --launcher pytorch`` in 2 processes (``torch.distributed.run``).

    ``config`` is relative to the repository; ``cfg_options`` go to ``--cfg-options``;
    ``master_port=0`` takes a free port. Returns the finished process (stdout/stderr captured); the
    caller checks its return code.
    """
    from tests.conftest import REPO
    master_port = master_port or free_port()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           f'--master_port={master_port}', osp.join(REPO, 'tools/train.py'),
           osp.join(REPO, config), '--launcher', 'pytorch', '--work-dir', str(work_dir),
           '--cfg-options', *cfg_options]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
