"""UniBCTPrototypeHook: prototypes from the current new model at set epochs, against a direct computation
(one process and two gloo ranks sharing the classes)."""
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from mmkd_plugins.engine.hooks import UniBCTPrototypeHook
from mmkd_plugins.models.losses.compatible import UniBCTLoss
from tests.helpers import run_two_ranks


class _Embedder(nn.Module):
    """extract_feat = linear map of the flattened input (an mmpretrain-like embedding model)."""

    def __init__(self, d_in, d_out, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(d_in, d_out)

    def extract_feat(self, x):
        return (self.fc(x), )


class _Distiller(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.student = _Embedder(6, 4, 0)      # new model
        self.teacher = _Embedder(6, 3, 1)      # old model
        self.distill_losses = nn.ModuleDict(dict(loss_unibct=UniBCTLoss(num_classes)))

    def data_preprocessor(self, batch, training):
        return dict(inputs=batch['inputs'], data_samples=batch['data_samples'])


class _Data(torch.utils.data.Dataset):
    def __init__(self, n=23, num_classes=5, seed=3):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (torch.arange(n) * 7) % num_classes

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=dict(gt_label=int(self.y[i]), sample_idx=i))

    def get_gt_labels(self):
        return self.y.numpy()


def _collate(items):
    return dict(inputs=torch.stack([it['inputs'] for it in items]),
                data_samples=[it['data_samples'] for it in items])


def _direct(model, data, num_classes=5, lam=0.9, t=0.05):
    """Eq. 9-10 per class with numpy, from the models' embeddings."""
    with torch.no_grad():
        new = model.student.fc(data.x).double().numpy()
        old = model.teacher.fc(data.x).double().numpy()
    protos = np.zeros((num_classes, old.shape[1]))
    for c in range(num_classes):
        idx = np.nonzero(data.y.numpy() == c)[0]
        o, f = old[idx], new[idx]
        n = len(idx)
        a = f @ f.T / t
        np.fill_diagonal(a, -np.inf)
        e = np.exp(a - a.max(0, keepdims=True))
        e = e / e.sum(0, keepdims=True)   # softmax over each column
        protos[c] = ((1 - lam) * np.linalg.inv(np.eye(n) - lam * e) @ o).mean(0)
    return protos


def _loader(data, batch_size=4):
    return DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=_collate)


def test_hook_sets_prototypes_at_the_given_epochs_only():
    torch.set_num_threads(1)
    model, data = _Distiller(), _Data()
    model.train()
    hook = UniBCTPrototypeHook(epochs=(2, 4))
    loss = model.distill_losses.loss_unibct
    runner = SimpleNamespace(model=model, train_dataloader=_loader(data), epoch=0,
                             logger=SimpleNamespace(info=lambda msg: None))
    hook.before_train(runner)
    for epoch in (0, 1):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        assert not loss.active   # term off before the first refresh (reference: on from epoch 10)
    runner.epoch = 2
    hook.before_train_epoch(runner)
    assert loss.active and loss.valid.all()
    assert np.allclose(loss.prototypes.double().numpy(), _direct(model, data), atol=1e-5)
    assert model.student.training and not model.teacher.training   # training mode restored
    # between refresh epochs nothing changes; at the next one the current student is used again
    first = loss.prototypes.clone()
    with torch.no_grad():
        model.student.fc.weight.mul_(3.0)
    runner.epoch = 3
    hook.before_train_epoch(runner)
    assert torch.equal(loss.prototypes, first)
    runner.epoch = 4
    hook.before_train_epoch(runner)
    assert np.allclose(loss.prototypes.double().numpy(), _direct(model, data), atol=1e-5)


def test_hook_row_variant_and_errors():
    torch.set_num_threads(1)
    model, data = _Distiller(), _Data()
    UniBCTPrototypeHook(epochs=(0, ), edge_softmax='row').refresh(model, _loader(data))
    loss = model.distill_losses.loss_unibct
    means = torch.stack([model.teacher.fc(data.x[data.y == c]).mean(0) for c in range(5)]).detach()
    assert not torch.allclose(loss.prototypes, means, atol=1e-3)   # row softmax moves the prototype
    with pytest.raises(ValueError, match='non-empty list'):
        UniBCTPrototypeHook(epochs=())
    with pytest.raises(ValueError, match='edge_softmax must be one of'):
        UniBCTPrototypeHook(edge_softmax='both')
    with pytest.raises(ValueError, match='has no UniBCTLoss'):
        UniBCTPrototypeHook().before_train(SimpleNamespace(model=nn.Linear(2, 2)))


def _hook_worker(rank, out):
    model, data = _Distiller(), _Data()
    UniBCTPrototypeHook(epochs=(0, )).refresh(model, _loader(data))
    loss = model.distill_losses.loss_unibct
    torch.save(dict(prototypes=loss.prototypes, valid=loss.valid), f'{out}.{rank}')


def test_hook_two_ranks_share_the_classes(tmp_path):
    """Each rank computes the prototypes of its classes (c mod 2); after the sum both hold all of them,
    equal to the direct computation."""
    out = str(tmp_path / 'res')
    run_two_ranks(_hook_worker, (out, ), tmp_path)
    ref = _direct(_Distiller(), _Data())
    for r in range(2):
        res = torch.load(f'{out}.{r}')
        assert res['valid'].all()
        assert np.allclose(res['prototypes'].double().numpy(), ref, atol=1e-5)
    assert math.isfinite(float(ref.sum()))
    assert not os.path.exists(f'{out}.2')
