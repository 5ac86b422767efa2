"""A toy mmengine model / dataset / metric and an HTTP server on 127.0.0.1 for the loading tests."""
import contextlib
import http.server
import os
import threading

import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import METRICS, MODELS


@MODELS.register_module(force=True)
class ToyLoadNet(BaseModel):
    """Linear + BatchNorm; ``width`` changes the shapes (for strict-key checks)."""

    def __init__(self, width: int = 2, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.bn = nn.BatchNorm1d(width)
        self.fc = nn.Linear(width, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, (list, tuple)) else inputs
        y = self.fc(self.bn(x))
        if mode == 'loss':
            return dict(loss=y.pow(2).mean())
        return [y]


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n=8, width=2):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, width, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i])


@METRICS.register_module(force=True)
class ToyLoadMetric(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.append(float(torch.cat([d.reshape(-1) for d in data_samples]).mean()))

    def compute_metrics(self, results):
        return dict(score=float(sum(results)))


class MarkerPayload:
    """Unpickling this object writes ``path``: stands for any code a malicious checkpoint runs."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (exec, (f'open({self.path!r}, "w").write("pwned")',))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_directory(root):
    """Serve ``root`` on 127.0.0.1 at a random free port; yields (base_url, request_paths)."""
    requests = []

    class Handler(_QuietHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}', requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def no_proxy_env(monkeypatch, torch_home):
    """Point the torch hub cache at ``torch_home`` and keep 127.0.0.1 off any proxy."""
    monkeypatch.setenv('TORCH_HOME', str(torch_home))
    for var in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('NO_PROXY', '127.0.0.1,localhost')
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    os.makedirs(torch_home, exist_ok=True)
