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


def _traced_rank(rank: int, worker, trace: str, hang_s: float, *args) -> None:
    """Body of one spawned rank: join the 2-rank gloo group (``file://`` rendezvous), call
    ``worker(rank, *args)``, leave the group. Progress goes to ``trace.<rank>``; a rank still running
    after ``hang_s`` seconds prints its Python stacks (to stderr, which pytest shows) and exits."""
    import datetime
    import faulthandler
    import time

    import torch.distributed as tdist

    def mark(word):
        with open(f'{trace}.{rank}', 'a') as log:
            log.write(f'{word} {time.time():.1f}\n')

    mark('started')
    faulthandler.dump_traceback_later(hang_s, exit=True)
    torch.set_num_threads(1)
    # the collective timeout turns a hang inside a collective into an error in the ranks too
    tdist.init_process_group('gloo', init_method=f'file://{trace}.rdzv', rank=rank, world_size=2,
                             timeout=datetime.timedelta(seconds=30))
    mark('joined')
    worker(rank, *args)
    mark('worked')
    tdist.barrier()
    mark('finished')
    faulthandler.cancel_dump_traceback_later()
    # no destroy_process_group: on torch 2.1 it can hang for ever in the rank that tears the gloo
    # group down after its peer has exited (seen: both ranks' work done, rank 1 stuck in destroy)
    os._exit(0)


def run_two_ranks(worker, args: tuple, tmp_path, timeout: float = 120) -> None:
    """Run ``worker(rank, *args)`` in 2 spawned processes that form a gloo group (``file://``
    rendezvous in ``tmp_path``, so no TCP port can be taken by someone else; gloo is told to use the
    loopback interface).

    A hang fails the test after ``timeout`` s instead of blocking the run, and says how far each rank
    got; a rank stuck past ``timeout - 15`` s prints its Python stacks (faulthandler) and exits.
    """
    import time

    import pytest
    trace = str(tmp_path / 'two_ranks')
    env_before = os.environ.get('GLOO_SOCKET_IFNAME')
    os.environ['GLOO_SOCKET_IFNAME'] = 'lo'   # inherited by the spawned ranks
    t0 = time.time()
    try:
        ctx = torch.multiprocessing.start_processes(
            _traced_rank, args=(worker, trace, max(timeout - 15, 5), *args), nprocs=2, join=False,
            start_method='spawn')
    finally:
        if env_before is None:
            os.environ.pop('GLOO_SOCKET_IFNAME', None)
        else:
            os.environ['GLOO_SOCKET_IFNAME'] = env_before

    def progress() -> str:
        said = []
        for rank in range(2):
            path = f'{trace}.{rank}'
            words = open(path).read().split() if osp.exists(path) else []
            said.append(f'rank {rank}: ' + (' '.join(
                f'{w} +{float(t) - t0:.1f}s' for w, t in zip(words[::2], words[1::2]))
                or 'never started'))
        return '; '.join(said)

    try:
        while True:
            try:
                if ctx.join(timeout=1):
                    return
            except Exception as exc:   # a rank raised or exited (faulthandler's dump exits it)
                pytest.fail(f'2-process gloo run failed: {exc}; {progress()}')
            if time.time() - t0 > timeout:
                pytest.fail(f'2-process gloo run did not finish within {timeout} s (hang); {progress()}')
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
