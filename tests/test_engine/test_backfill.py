"""Backfill orders, steps and gallery mixing."""
import math

import numpy as np
import pytest
import torch

from mmkd_plugins.engine.hooks.backfill import (BackfillHook, backfill_order, backfill_steps, mix_gallery,
                                                posterior_entropy)


def _entropy_direct(row):
    e = [math.exp(v - max(row)) for v in row]
    p = [v / sum(e) for v in e]
    return -sum(q * math.log(q) for q in p if q > 0)


def test_entropy_matches_direct():
    logits = torch.randn(6, 4)
    got = posterior_entropy(logits)
    assert np.allclose(got.numpy(), [_entropy_direct(r.tolist()) for r in logits], atol=1e-9)
    assert posterior_entropy(torch.zeros(1, 5)).item() == pytest.approx(math.log(5))


def test_uncertainty_orders():
    logits = torch.tensor([[9., 0., 0.],      # confident
                           [1., 1., 1.],      # uniform: most uncertain
                           [3., 2.9, -5.],    # two-way tie: small margin, medium entropy
                           [4., 0., 1.]])
    ent = [_entropy_direct(r.tolist()) for r in logits]
    assert backfill_order(4, 'entropy', logits).tolist() == list(np.argsort(-np.array(ent)))
    assert backfill_order(4, 'entropy', logits).tolist()[:2] == [1, 2]
    prob = torch.softmax(logits, 1)
    assert backfill_order(4, 'least_confidence', logits).tolist() == list(np.argsort(prob.max(1).values))
    top = prob.sort(1, descending=True).values
    assert backfill_order(4, 'margin', logits).tolist() == list(np.argsort(top[:, 0] - top[:, 1]))
    # ties keep the stored order
    assert backfill_order(3, 'entropy', torch.zeros(3, 2)).tolist() == [0, 1, 2]


def test_random_and_sequential_orders():
    a, b = backfill_order(50, 'random', seed=1), backfill_order(50, 'random', seed=1)
    assert np.array_equal(a, b) and sorted(a.tolist()) == list(range(50))
    assert not np.array_equal(a, backfill_order(50, 'random', seed=2))
    assert backfill_order(4, 'sequential').tolist() == [0, 1, 2, 3]


def test_order_errors():
    with pytest.raises(ValueError, match="needs the old classifier's logits"):
        backfill_order(3, 'entropy')
    with pytest.raises(ValueError, match='logits have 2 rows for a gallery of 3'):
        backfill_order(3, 'margin', torch.zeros(2, 4))
    with pytest.raises(ValueError, match='backfill order must be one of'):
        backfill_order(3, 'oldest')
    with pytest.raises(ValueError, match='order must be one of'):
        BackfillHook('g.pth', order='oldest')


def test_steps_and_mixing():
    order = np.array([4, 2, 0, 1, 3, 6, 5])
    steps = backfill_steps(order, 3)
    assert [s.tolist() for s in steps] == [[4, 2, 0], [1, 3], [6, 5]]
    assert np.array_equal(np.concatenate(steps), order)
    with pytest.raises(ValueError, match='num_steps must be >= 1'):
        backfill_steps(order, 0)
    old, new = torch.zeros(7, 2), torch.ones(7, 2)
    mixed = mix_gallery(old, new, order, 3 / 7)
    assert mixed[:, 0].tolist() == [1, 0, 1, 0, 1, 0, 0]
    assert torch.equal(mix_gallery(old, new, order, 0.0), old)
    assert torch.equal(mix_gallery(old, new, order, 1.0), new)
    with pytest.raises(ValueError, match='differ in shape'):
        mix_gallery(old, new[:, :1], order, 0.5)
