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
