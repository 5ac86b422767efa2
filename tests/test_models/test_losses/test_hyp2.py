import csv
import importlib.util
import math
import os

import numpy as np
import pytest
import torch

from mmkd_plugins.models.losses.hyp2 import (MARGIN_TABLE_FILE, HyP2Loss, hyp2_loss, hyp2_loss_terms,
                                             hyp2_margin, read_margin_table)


def _reference_terms(h, y, p, zeta, beta):
    """Direct re-computation of the paper's three terms with Python loops (float64)."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    n, c = y.shape
    hn = [h[i] / math.sqrt(sum(v * v for v in h[i])) for i in range(n)]
    pn = [p[k] / math.sqrt(sum(v * v for v in p[k])) for k in range(c)]
    pos_sum = neg_sum = 0.0
    pos_cnt = neg_cnt = 0
    for i in range(n):
        for k in range(c):
            s = sum(a * b for a, b in zip(hn[i], pn[k]))
            if y[i, k] == 1:
                pos_sum += 1 - s
                pos_cnt += 1
            else:
                neg_sum += max(s - zeta, 0.0)
                neg_cnt += 1
    pair_sum, pair_cnt = 0.0, 0
    for i in range(n):
        for j in range(n):
            if y[i].sum() > 1 and y[j].sum() > 1 and int((y[i] * y[j]).sum()) == 0:
                s = sum(a * b for a, b in zip(hn[i], hn[j]))
                pair_sum += beta * max(s - zeta, 0.0)
                pair_cnt += 1
    return (pos_sum / pos_cnt if pos_cnt else 0.0, neg_sum / neg_cnt if neg_cnt else 0.0,
            pair_sum / pair_cnt if pair_cnt else 0.0)


def _check(h, y, p, zeta, beta=0.5):
    terms = hyp2_loss_terms(h, y, p, zeta, beta)
    ref = _reference_terms(h, y.numpy(), p.detach(), zeta, beta)
    got = (float(terms['pos']), float(terms['neg']), float(terms['pair']))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(hyp2_loss(h, y, p, zeta, beta)), sum(ref), rtol=1e-9, atol=1e-12)
    return got


def test_terms_match_direct_computation_random():
    g = torch.Generator().manual_seed(0)
    for trial in range(4):
        n, c, k = 9, 6, 12
        h = torch.randn(n, k, generator=g, dtype=torch.float64)
        p = torch.randn(c, k, generator=g, dtype=torch.float64)
        y = (torch.rand(n, c, generator=g) < 0.35).long()
        y[0] = torch.tensor([1, 1, 0, 0, 0, 0])  # make sure a disjoint multi-label pair exists
        y[1] = torch.tensor([0, 0, 1, 1, 0, 0])
        pos, neg, pair = _check(h, y, p, zeta=0.1 * trial)
        assert pair > 0 or trial > 0  # with zeta = 0 random codes give a positive pair term


def test_pair_term_zero_without_multilabel_pairs():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 8, generator=g, dtype=torch.float64)
    p = torch.randn(4, 8, generator=g, dtype=torch.float64)
    single = torch.eye(4, dtype=torch.long)[[0, 1, 2, 3, 0]]  # one label each: no pair term
    assert _check(h, single, p, 0.0)[2] == 0.0
    overlapping = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 1, 1]])
    assert _check(h, overlapping, p, 0.0)[2] == 0.0  # every multi-label pair shares a label
    one_multi = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 0]])
    assert _check(h, one_multi, p, 0.0)[2] == 0.0  # a single multi-label sample has no partner


def test_pair_term_counts_ordered_pairs():
    # two multi-label samples with disjoint labels, identical codes: each ordered pair gives beta*(1-z)
    h = torch.tensor([[1.0, 2.0, 0.5], [1.0, 2.0, 0.5], [0.3, -1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]])
    p = torch.randn(4, 3, dtype=torch.float64)
    pair = _check(h, y, p, 0.25, beta=0.5)[2]
    assert pair == pytest.approx(0.5 * (1 - 0.25))


def test_all_zero_and_all_one_labels():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(4, 8, generator=g, dtype=torch.float64)
    p = torch.randn(3, 8, generator=g, dtype=torch.float64)
    pos, neg, pair = _check(h, torch.zeros(4, 3, dtype=torch.long), p, 0.0)
    assert pos == 0.0 and pair == 0.0 and neg > 0
    pos, neg, pair = _check(h, torch.ones(4, 3, dtype=torch.long), p, 0.0)
    assert neg == 0.0 and pos > 0
    # the all-zero loss is finite and differentiable
    hh = h.clone().requires_grad_()
    hyp2_loss(hh, torch.zeros(4, 3), p, 0.0).backward()
    assert torch.isfinite(hh.grad).all()


def test_gradcheck():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1],
                      [0, 0, 0, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: hyp2_loss(a, y, b, 0.05, 0.5), (h, p))


def test_margin_table_matches_official():
    official = {  # spec table, rounded to 3 decimals
        5: [.333, 0, 0, 0, .056, 0, 0],
        6: [.333, .25, .167, 0, .111, 0, 0],
        7: [.333, .25, .167, .125, .111, .083, 0],
    }
    bits = [12, 16, 24, 32, 36, 48, 64]
    classes_for_column = {5: (17, 20, 24, 32), 6: (33, 38, 64), 7: (65, 80, 128)}
    for col, row in official.items():
        for c in classes_for_column[col]:
            for k, z in zip(bits, row):
                assert round(hyp2_margin(k, c), 3) == pytest.approx(z), (k, c)
    # an interpretation check: zeta = (K - 2d)/K for an integer minimum distance d
    for k in bits:
        for c in (20, 40, 100):
            d = (k - hyp2_margin(k, c) * k) / 2
            assert d == pytest.approx(round(d))
    assert HyP2Loss(num_classes=20, hash_bits=12).margin == pytest.approx(1 / 3)
    assert HyP2Loss(num_classes=80, hash_bits=48).margin == pytest.approx(1 / 12)
    assert HyP2Loss(num_classes=80, hash_bits=48, margin=0.3).margin == 0.3


# rows of the authors' table (hyp2_margin_table.csv), copied as text: K -> values of columns 1..n
_CSV_ROWS = {
    12: ['-1', '-0.3333333333333333', '0', '0', '0.3333333333333334', '0.3333333333333334',
         '0.3333333333333334', '0.5', '0.6666666666666667', '0.6666666666666667',
         '0.6666666666666667', '0.8333333333333334'],
    16: ['-1', '-0.25', '0', '0', '0', '0.25', '0.25', '0.375', '0.5', '0.5', '0.5', '0.75', '0.75',
         '0.75', '0.75', '0.875'],
    36: ['-1', '-0.3333333333333333', '-0.1111111111111112', '0', '0.05555555555555558',
         '0.1111111111111112', '0.1111111111111112', '0.1111111111111112'],
    64: ['-1', '-0.3125', '-0.125', '-0.03125', '0', '0', '0', '0.09375', '0.125'],
}


def _classes_in_column(j):
    """Class counts C with ceil(log2 C) = j: the smallest and the largest."""
    return (2**(j - 1) + 1, 2**j) if j > 1 else (2, )


def test_margin_hard_coded_rows_of_the_authors_table():
    for k, texts in _CSV_ROWS.items():
        for j, text in enumerate(texts, 1):
            for c in _classes_in_column(j):
                assert hyp2_margin(k, c) == float(text), (k, c, text)
    # the cases the earlier code got wrong: C <= 16 gave 0, 129 <= C <= 256 raised, other K raised
    assert hyp2_margin(64, 16) == -0.03125
    assert hyp2_margin(12, 3) == -0.3333333333333333
    assert hyp2_margin(16, 2) == -1.0
    assert hyp2_margin(64, 200) == 0.09375 and hyp2_margin(64, 129) == 0.09375
    assert hyp2_margin(64, 257) == 0.125
    assert hyp2_margin(12, 256) == 0.5
    assert hyp2_margin(256, 2**256) == 0.9921875
    assert hyp2_margin(256, 100) == 0.0
    assert hyp2_margin(10, 20) == 0.2  # K = 10, column 5
    assert HyP2Loss(num_classes=4, hash_bits=16).margin == -0.25


def test_margin_errors():
    with pytest.raises(ValueError, match='hash_bits=257'):
        hyp2_margin(257, 20)
    with pytest.raises(ValueError, match='hash_bits=0'):
        hyp2_margin(0, 20)
    with pytest.raises(ValueError, match='num_classes=1 '):
        hyp2_margin(12, 1)
    with pytest.raises(ValueError, match='num_classes=8193 with hash_bits=12'):
        hyp2_margin(12, 2**13 + 1)  # column 14 > K = 12: the sheet's cell is empty
    assert hyp2_margin(12, 2**12) == 0.8333333333333334  # the last column of the row
    with pytest.raises(TypeError, match='integers'):
        hyp2_margin(12.0, 20)
    assert hyp2_margin(np.int64(12), np.int32(20)) == hyp2_margin(12, 20)
    with pytest.raises(ValueError, match='num_classes=1 '):
        HyP2Loss(num_classes=1, hash_bits=12)
    assert HyP2Loss(num_classes=1, hash_bits=12, margin=0.0).margin == 0.0


SPEC_CSV = '/work/shared/specs/hyp2_margin_table.csv'


@pytest.mark.skipif(not os.path.isfile(SPEC_CSV), reason="the authors' table (spec CSV) is absent")
def test_margin_every_cell_of_the_authors_table():
    """Every (K, column) of the authors' table, at both ends of the column's class range, equals the
    CSV value exactly; empty cells (column > K) raise."""
    with open(SPEC_CSV, newline='') as f:
        rows = list(csv.reader(line for line in f if not line.startswith('#')))
    assert rows[0][0] == 'K'
    cells = 0
    for row in rows[1:]:
        k = int(row[0])
        for j, text in enumerate(row[1:], 1):
            for c in _classes_in_column(j):
                if text == '':
                    with pytest.raises(ValueError, match='no official margin'):
                        hyp2_margin(k, c)
                else:
                    assert hyp2_margin(k, c) == float(text), (k, j, c, text)
            cells += text != ''
    assert len(rows) - 1 == 256 and cells == 256 * 257 // 2


@pytest.mark.skipif(not os.path.isfile(SPEC_CSV), reason="the authors' table (spec CSV) is absent")
def test_margin_table_file_is_the_tools_encoding_of_the_csv(tmp_path):
    """tools/hyp2_margin_table.py re-encodes the CSV into exactly the shipped package file."""
    tool = _load_tool('hyp2_margin_table')
    out = tmp_path / 'table.txt'
    assert tool.main([SPEC_CSV, '--out', str(out)]) == 0
    with open(MARGIN_TABLE_FILE) as f:
        assert out.read_text() == f.read()


def test_margin_table_reader_errors(tmp_path):
    bad = tmp_path / 'bad.txt'
    bad.write_text('# comment\n3: 3 2\n')
    with pytest.raises(ValueError, match='K=3 must hold K distances'):
        read_margin_table(str(bad))
    bad.write_text('3: 3 x 1\n')
    with pytest.raises(ValueError, match='malformed'):
        read_margin_table(str(bad))
    good = tmp_path / 'good.txt'
    good.write_text('4: 4 2*2 1\n')
    assert read_margin_table(str(good)) == {4: [-1.0, 0.0, 0.0, 0.5]}


def _load_tool(name):
    path = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tools', name + '.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_module_proxies_init_forward_and_weight():
    torch.manual_seed(0)
    loss = HyP2Loss(num_classes=200, hash_bits=64, margin=0.0)
    assert loss.proxies.shape == (200, 64) and loss.proxies.requires_grad
    # kaiming_normal_(fan_out): fan_out of a (C, K) tensor is C -> std = sqrt(2 / C)
    assert float(loss.proxies.detach().std()) == pytest.approx(math.sqrt(2 / 200), rel=0.05)

    small = HyP2Loss(num_classes=4, hash_bits=16, beta=0.5, loss_weight=2.0).double()
    h = torch.randn(5, 16, dtype=torch.float64)
    y = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    assert small.margin == -0.25  # authors' table: K = 16, C = 4
    expected = sum(_reference_terms(h, y.numpy(), small.proxies.detach(), -0.25, 0.5))
    assert float(small(h, y).detach()) == pytest.approx(2 * expected, rel=1e-9)
    terms = small.terms(h, y)
    assert set(terms) == {'pos', 'neg', 'pair'}
    out = small(h, y)
    out.backward()
    assert small.proxies.grad is not None and small.proxies.grad.abs().sum() > 0


def test_errors():
    loss = HyP2Loss(num_classes=4, hash_bits=16)
    with pytest.raises(ValueError, match='hash bit mismatch'):
        loss(torch.randn(3, 12), torch.zeros(3, 4))
    with pytest.raises(ValueError, match='class number mismatch'):
        loss(torch.randn(3, 16), torch.zeros(3, 5))
    with pytest.raises(ValueError, match='batch size mismatch'):
        loss(torch.randn(3, 16), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r'values in \{0, 1\}'):
        loss(torch.randn(3, 16), torch.full((3, 4), 2.0))
    with pytest.raises(ValueError, match=r'multi-hot \(N, C\)'):
        loss(torch.randn(3, 16), torch.zeros(3))


def test_proxies_get_own_lr_via_paramwise_cfg():
    from mmengine.optim import build_optim_wrapper
    from mmkd_plugins.models.heads.hash_head import HashHead

    head = HashHead(hash_bits=16, in_channels=8, num_classes=4, init_cfg=None)
    wrapper = build_optim_wrapper(head, dict(
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
        paramwise_cfg=dict(custom_keys={'loss_module.proxies': dict(lr_mult=2.0)})))
    lrs = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            lrs[id(param)] = group['lr']
    assert lrs[id(head.loss_module.proxies)] == pytest.approx(0.02)
    assert lrs[id(head.hash_layer.weight)] == pytest.approx(0.01)


def test_margin_table_is_package_data():
    """setup.py ships the table file with the package (a pattern of package_data matches it)."""
    import ast
    import fnmatch

    import mmkd_plugins
    root = os.path.dirname(mmkd_plugins.__file__)
    setup_py = os.path.join(root, '..', 'setup.py')
    if not os.path.isfile(setup_py):
        pytest.skip('not a source checkout')
    tree = ast.parse(open(setup_py).read())
    patterns = [ast.literal_eval(kw.value)['mmkd_plugins'] for node in ast.walk(tree)
                if isinstance(node, ast.Call) for kw in node.keywords if kw.arg == 'package_data']
    assert patterns, 'setup.py has no package_data'
    rel = os.path.relpath(MARGIN_TABLE_FILE, root)
    assert any(fnmatch.fnmatch(rel, pat) for pat in patterns[0]), (rel, patterns[0])
    assert os.path.isfile(MARGIN_TABLE_FILE)
