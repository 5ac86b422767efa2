import os.path as osp
import sys

import pytest
import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mmkd_plugins  # noqa: E402,F401  (registers everything)

# tiny models: one intra-op thread is faster than two on a 2-core machine
torch.set_num_threads(1)


@pytest.fixture
def repo_root():
    return REPO


@pytest.fixture(autouse=True)
def _forget_default_scopes_of_the_test():
    """Drop the ``DefaultScope`` instances a test created once it ends.

    A Runner names its DefaultScope after its experiment, by default the start time to the second, and
    ``DefaultScope.get_instance`` returns an existing instance of that name: a test whose Runner starts
    in the same second as the previous test's would silently get that test's scope (e.g. 'mmengine'
    instead of 'mmpretrain', then 'ClsDataPreprocessor is not in the mmengine::model registry'). One
    Runner per process, as in training, never meets this; a test session does.
    """
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    for name in [n for n in DefaultScope._instance_dict if n not in before]:
        del DefaultScope._instance_dict[name]
