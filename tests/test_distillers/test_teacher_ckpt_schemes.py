"""teacher_ckpt accepts every scheme of mmengine's CheckpointLoader; loading stays strict and safe.

The URL path is exercised with a checkpoint served by the test itself on 127.0.0.1 (random port);
the torch hub cache is pointed at tmp_path, so nothing touches the user's cache or any other host.
"""
import pytest
import torch
from mmengine.registry import MODELS
from mmengine.runner.checkpoint import CheckpointLoader

from mmkd_plugins.distillers import build_frozen_teacher
from mmkd_plugins.utils import UNSAFE_ENV, UnsafeCheckpointError
from tests.test_utils._toy import MarkerPayload, no_proxy_env, serve_directory

TEACHER = dict(type='ToyLoadNet', width=3)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A directory served over HTTP on 127.0.0.1, holding a good teacher checkpoint."""
    monkeypatch.delenv(UNSAFE_ENV, raising=False)
    no_proxy_env(monkeypatch, tmp_path / 'torch_home')
    root = tmp_path / 'www'
    root.mkdir()
    torch.manual_seed(1)
    ref = MODELS.build(TEACHER)
    torch.save(dict(state_dict=ref.state_dict(), meta=dict(epoch=3)), root / 'teacher-abc.pth')
    with serve_directory(root) as (base, requests):
        yield root, base, requests, ref


def test_https_scheme_goes_to_our_guarded_loader():
    loader = CheckpointLoader._get_checkpoint_loader('https://example.org/x.pth')
    assert loader.__name__ == 'load_from_http' and getattr(loader, '_mmkd_safe', False)
    for prefix in ('open-mmlab://x', 'torchvision://resnet50', 's3://b/x.pth', 'x.pth'):
        assert getattr(CheckpointLoader._get_checkpoint_loader(prefix), '_mmkd_safe', False)


def test_teacher_from_url_is_downloaded_once_into_the_hub_cache(served, tmp_path):
    root, base, requests, ref = served
    url = f'{base}/teacher-abc.pth'
    teacher = build_frozen_teacher(TEACHER, url)
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in ref.state_dict().items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    cached = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'teacher-abc.pth'
    assert cached.is_file() and requests == ['/teacher-abc.pth']
    build_frozen_teacher(TEACHER, url)  # second build reads the cache
    assert requests == ['/teacher-abc.pth']


def test_distiller_with_url_teacher(served):
    root, base, requests, ref = served
    model = MODELS.build(dict(type='SingleTeacherDistiller', student=dict(type='ToyLoadNet', width=3),
                              teacher=TEACHER, teacher_ckpt=f'{base}/teacher-abc.pth',
                              teacher_forward='tensor'))
    assert torch.equal(model.teacher.fc.weight, ref.fc.weight)


def test_url_teacher_keys_are_checked_strictly(served):
    root, base, _, _ = served
    torch.save(dict(state_dict=MODELS.build(dict(type='ToyLoadNet', width=2)).state_dict()),
               root / 'wrong.pth')
    with pytest.raises(ValueError, match='shape mismatches .*bn.weight'):
        build_frozen_teacher(TEACHER, f'{base}/wrong.pth')


def test_url_errors_are_clear(served):
    _, base, _, _ = served
    with pytest.raises(OSError, match='download failed.*teacher_ckpt=PATH'):
        build_frozen_teacher(TEACHER, f'{base}/missing.pth')
    with pytest.raises(FileNotFoundError, match='teacher checkpoint not found.*URL'):
        build_frozen_teacher(TEACHER, 'checkpoints/not_there.pth')
    with pytest.raises(ValueError, match='unknown model name'):
        build_frozen_teacher(TEACHER, 'open-mmlab://no_such_model_name')


def test_code_in_a_served_checkpoint_does_not_run(served, tmp_path):
    root, base, _, ref = served
    marker = tmp_path / 'code_ran.txt'
    torch.save(dict(state_dict=ref.state_dict(), meta=MarkerPayload(str(marker))), root / 'evil.pth')
    with pytest.raises(UnsafeCheckpointError, match=r'builtins\.exec.*teacher_unsafe_load'):
        build_frozen_teacher(TEACHER, f'{base}/evil.pth')
    assert not marker.exists()
    # mmengine's own http loader alone would unpickle fully (weights_only=False): ours does not
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(f'{base}/evil.pth')
    assert not marker.exists()
    # explicit opt-in on the distiller
    model = MODELS.build(dict(type='SingleTeacherDistiller', student=dict(type='ToyLoadNet', width=3),
                              teacher=TEACHER, teacher_ckpt=f'{base}/evil.pth',
                              teacher_forward='tensor', teacher_unsafe_load=True))
    assert marker.exists() and torch.equal(model.teacher.fc.weight, ref.fc.weight)

