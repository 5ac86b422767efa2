import numpy as np
import pytest
import torch

from mmkd_plugins.evaluation.metrics.hashing import (HashingMAP, hamming_distance, hashing_map,
                                                     hashing_retrieval_metrics, pack_bits,
                                                     popcount64, unpack_bits)


def _brute_force(q_bits, db_bits, q_lab, db_lab, topk, radius):
    """Float-matrix reference: Hamming from +-1 inner products, stable argsort, explicit loops."""
    qs = np.where(q_bits, 1.0, -1.0)
    ds = np.where(db_bits, 1.0, -1.0)
    k_bits = q_bits.shape[1]
    out = {f'AP@{k}': [] for k in topk}
    out.update({f'P@{k}': [] for k in topk})
    out['P_r'], out['R_r'] = [], []
    for i in range(len(qs)):
        ham = 0.5 * (k_bits - ds @ qs[i])
        order = np.argsort(ham, kind='stable')
        rel = np.array([bool((q_lab[i] & db_lab[j]).any()) for j in order])
        for k in topk:
            r = min(k, len(db_bits))
            hits, ap_sum = 0, 0.0
            for j in range(r):
                if rel[j]:
                    hits += 1
                    ap_sum += hits / (j + 1)
            out[f'AP@{k}'].append(ap_sum / hits if hits else 0.0)
            out[f'P@{k}'].append(hits / r)
        within = ham <= radius
        rel_all = np.array([bool((q_lab[i] & db_lab[j]).any()) for j in range(len(db_bits))])
        n_ret, n_rel = within.sum(), rel_all.sum()
        n_both = (within & rel_all).sum()
        out['P_r'].append(n_both / n_ret if n_ret else 0.0)
        out['R_r'].append(n_both / n_rel if n_rel else 0.0)
    return {k: np.array(v) for k, v in out.items()}


def _random_case(seed, nq, ndb, bits, classes, p_label=0.3):
    rng = np.random.default_rng(seed)
    q_bits = rng.random((nq, bits)) < 0.5
    db_bits = rng.random((ndb, bits)) < 0.5
    q_lab = rng.random((nq, classes)) < p_label
    db_lab = rng.random((ndb, classes)) < p_label
    return q_bits, db_bits, q_lab, db_lab


def test_pack_unpack_and_numpy_order():
    rng = np.random.default_rng(0)
    for bits in (1, 7, 8, 12, 64, 70):
        b = rng.random((5, bits)) < 0.5
        packed = pack_bits(torch.from_numpy(b))
        np.testing.assert_array_equal(packed.numpy(), np.packbits(b, axis=1))
        np.testing.assert_array_equal(unpack_bits(packed, bits).numpy(), b)
    with pytest.raises(TypeError, match='uint8'):
        unpack_bits(torch.zeros(2, 2, dtype=torch.int32), 8)


def test_popcount_and_hamming():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(-2**63, 2**63 - 1, size=200, dtype=np.int64))
    x[:3] = torch.tensor([0, -1, -2**63])
    expected = [bin(int(v) & (2**64 - 1)).count('1') for v in x]
    assert popcount64(x).tolist() == expected
    q, db, _, _ = _random_case(2, 6, 9, 100, 3)
    from mmkd_plugins.evaluation.metrics.hashing import _to_words
    dist = hamming_distance(_to_words(pack_bits(torch.from_numpy(q))),
                            _to_words(pack_bits(torch.from_numpy(db))))
    brute = np.array([[int((q[i] != db[j]).sum()) for j in range(9)] for i in range(6)])
    np.testing.assert_array_equal(dist.numpy(), brute)


@pytest.mark.parametrize('seed,bits,topk', [(0, 6, (1, 5, 17, 40)), (1, 12, (10,)), (2, 70, (3, 25))])
def test_metrics_match_brute_force(seed, bits, topk):
    # 6 bits -> many ties (stable order matters); 70 bits -> two 64-bit words; topk 40 > database
    q, db, ql, dbl = _random_case(seed, 23, 31, bits, 5)
    ql[0] = False  # a query with no label: relevant to nothing -> counts 0
    _assert_metrics_match_brute_force(q, db, ql, dbl, topk)


def _assert_metrics_match_brute_force(q, db, ql, dbl, topk):
    """Every metric (radius 2) equal to :func:`_brute_force`; query 0 has no label (AP = R = 0)."""
    got = hashing_retrieval_metrics(pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db)),
                                    torch.from_numpy(ql), torch.from_numpy(dbl), topk=topk,
                                    hamming_radius=2, chunk_size=4)
    ref = _brute_force(q, db, ql, dbl, topk, 2)
    for k in topk:
        np.testing.assert_allclose(got[f'AP@{k}'].numpy(), ref[f'AP@{k}'], atol=1e-12)
        np.testing.assert_allclose(got[f'P@{k}'].numpy(), ref[f'P@{k}'], atol=1e-12)
    np.testing.assert_allclose(got['P_2'].numpy(), ref['P_r'], atol=1e-12)
    np.testing.assert_allclose(got['R_2'].numpy(), ref['R_r'], atol=1e-12)
    assert float(got[f'AP@{topk[0]}'][0]) == 0.0 and float(got['R_2'][0]) == 0.0


def test_chunking_does_not_change_results():
    q, db, ql, dbl = _random_case(5, 40, 57, 16, 4)
    args = (pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db)), torch.from_numpy(ql),
            torch.from_numpy(dbl))
    full = hashing_retrieval_metrics(*args, topk=20, chunk_size=1000)
    for kwargs in (dict(chunk_size=1), dict(chunk_size=7), dict(max_chunk_bytes=1)):
        part = hashing_retrieval_metrics(*args, topk=20, **kwargs)
        for key in full:
            assert torch.equal(full[key], part[key]), (key, kwargs)


def test_ties_use_stable_database_order():
    # all database codes equal -> every distance ties; the ranking is the database order
    db = torch.zeros(4, 8, dtype=torch.bool)
    q = torch.zeros(1, 8, dtype=torch.bool)
    db_lab = torch.tensor([[0, 1], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    q_lab = torch.tensor([[1, 0]], dtype=torch.bool)
    # relevance in database order: 0 1 0 1 -> AP@4 = (1/2 + 2/4) / 2, AP@2 = (1/2) / 1
    res = hashing_retrieval_metrics(pack_bits(q), pack_bits(db), q_lab, db_lab, topk=(2, 4))
    assert float(res['AP@4']) == pytest.approx(0.5)
    assert float(res['AP@2']) == pytest.approx(0.5)
    assert float(res['P@4']) == pytest.approx(0.5)
    # a closer relevant item moves to the front
    db[3, 0] = True
    q[0, 0] = True
    res = hashing_retrieval_metrics(pack_bits(q), pack_bits(db), q_lab, db_lab, topk=4)
    assert float(res['AP@4']) == pytest.approx((1 + 2 / 3) / 2)


def test_zero_hit_queries_count_zero():
    q, db, _, _ = _random_case(3, 3, 10, 16, 2)
    ql = torch.tensor([[1, 0], [1, 0], [0, 0]], dtype=torch.bool)
    dbl = torch.tensor([[0, 1]] * 10, dtype=torch.bool)
    dbl[9] = torch.tensor([1, 0])
    m = hashing_map(pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db)), ql, dbl, topk=10)
    per = hashing_retrieval_metrics(pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db)),
                                    ql, dbl, topk=10)['AP@10']
    assert per[2] == 0.0 and per[0] > 0
    assert m == pytest.approx(float(per.mean()))  # the zero-hit query is in the mean


def test_input_errors():
    c = pack_bits(torch.zeros(3, 16, dtype=torch.bool))
    lab = torch.zeros(3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match='code length mismatch'):
        hashing_retrieval_metrics(c, pack_bits(torch.zeros(3, 8, dtype=torch.bool)), lab, lab)
    with pytest.raises(ValueError, match='packed uint8'):
        hashing_retrieval_metrics(c.float(), c, lab, lab)
    with pytest.raises(ValueError, match='class number mismatch'):
        hashing_retrieval_metrics(c, c, lab, torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match='topk'):
        hashing_retrieval_metrics(c, c, lab, lab, topk=0)


def _samples(bits, labels, split, as_indices=False):
    out = []
    for b, lab in zip(bits, labels):
        s = dict(pred_hash_bits=pack_bits(torch.from_numpy(b)), split=split)
        if as_indices:
            s['gt_label'] = torch.from_numpy(np.flatnonzero(lab))
        else:
            s['gt_score'] = torch.from_numpy(lab.astype(np.float32))
        out.append(s)
    return out


@pytest.mark.parametrize('as_indices,backend', [(False, 'auto'), (True, 'auto'), (False, 'gemm')])
def test_metric_class(as_indices, backend):
    q, db, ql, dbl = _random_case(4, 12, 20, 12, 4)
    metric = HashingMAP(topk=(5, 10), hamming_radius=2, num_classes=4 if as_indices else None,
                        backend=backend)
    samples = _samples(db[:10], dbl[:10], 'database', as_indices) + _samples(q, ql, 'query', as_indices)
    samples += _samples(db[10:], dbl[10:], 'database', as_indices)
    samples += _samples(db[:2], dbl[:2], 'train', as_indices)  # ignored
    metric.process(None, samples[:15])
    metric.process(None, samples[15:])
    res = metric.compute_metrics(metric.results)
    ref = _brute_force(q, db, ql, dbl, (5, 10), 2)
    assert set(res) == {'mAP@5', 'mAP@10', 'precision@5', 'precision@10', 'precision_r2', 'recall_r2'}
    assert res['mAP@5'] == pytest.approx(ref['AP@5'].mean())
    assert res['mAP@10'] == pytest.approx(ref['AP@10'].mean())
    assert res['precision@10'] == pytest.approx(ref['P@10'].mean())
    assert res['precision_r2'] == pytest.approx(ref['P_r'].mean())
    assert res['recall_r2'] == pytest.approx(ref['R_r'].mean())


def test_metric_class_errors():
    metric = HashingMAP(topk=5)
    with pytest.raises(KeyError, match='split'):
        metric.process(None, [dict(pred_hash_bits=torch.zeros(1, dtype=torch.uint8),
                                   gt_score=torch.ones(2))])
    with pytest.raises(KeyError, match='pred_hash_bits'):
        metric.process(None, [dict(split='query', gt_score=torch.ones(2))])
    metric.process(None, [dict(pred_hash_bits=torch.zeros(1, dtype=torch.uint8), split='query',
                               gt_score=torch.ones(2))])
    with pytest.raises(ValueError, match='0 database items'):
        metric.compute_metrics(metric.results)
    metric = HashingMAP(topk=5)
    metric.process(None, [dict(pred_hash_bits=torch.zeros(1, dtype=torch.uint8), split=s,
                               gt_label=torch.tensor([0])) for s in ('query', 'database')])
    with pytest.raises(ValueError, match='num_classes'):
        metric.compute_metrics(metric.results)
    with pytest.raises(ValueError, match='topk'):
        HashingMAP(topk=[])
    with pytest.raises(ValueError, match="backend must be one of"):
        HashingMAP(backend='faiss')


# ---------------------------------------------------------------------------------------------
# Exact search (hamming_search.py): equality with a brute-force ranking on ties-heavy data


def _ties_heavy_case(seed, nq, ndb, bits, classes=3, pool=6):
    """Codes drawn from a small pool (many exact duplicates, few distinct distances)."""
    rng = np.random.default_rng(seed)
    pool_bits = rng.random((pool, bits)) < 0.5
    q_bits = pool_bits[rng.integers(0, pool, nq)]
    db_bits = pool_bits[rng.integers(0, pool, ndb)]
    q_lab = rng.random((nq, classes)) < 0.4
    db_lab = rng.random((ndb, classes)) < 0.4
    q_lab[0] = False  # relevant to nothing
    return q_bits, db_bits, q_lab, db_lab


def _brute_knn(q_bits, db_bits, k):
    """Full distance matrix + stable argsort: ranking by (distance, database index)."""
    dist = (q_bits[:, None, :] != db_bits[None, :, :]).sum(-1)
    order = np.argsort(dist, axis=1, kind='stable')[:, :min(k, db_bits.shape[0])]
    return np.take_along_axis(dist, order, axis=1), order


@pytest.fixture(params=['native', 'numpy', 'torch'])
def cpu_path(request, monkeypatch):
    """Every CPU code path: the C kernels (default on CPU when built), and the GEMM path with numpy
    kernels or with the torch code CUDA tensors take."""
    from mmkd_plugins.evaluation.metrics import hamming_search
    if request.param == 'native':
        _require_native()
    else:
        monkeypatch.setattr(hamming_search, '_hamming_native', None)  # 'auto' -> the GEMM path
        monkeypatch.setattr(hamming_search, 'USE_NUMPY_ON_CPU', request.param == 'numpy')
    return request.param


@pytest.fixture(params=['numpy', 'torch'])
def gemm_cpu_path(request, monkeypatch):
    """The GEMM path's two CPU variants (the native kernels take no sample threshold)."""
    from mmkd_plugins.evaluation.metrics import hamming_search
    monkeypatch.setattr(hamming_search, '_hamming_native', None)
    monkeypatch.setattr(hamming_search, 'USE_NUMPY_ON_CPU', request.param == 'numpy')
    return request.param


@pytest.fixture
def gemm_path(monkeypatch):
    """The GEMM path on CPU (tests of its sample threshold and database spans)."""
    from mmkd_plugins.evaluation.metrics import hamming_search
    monkeypatch.setattr(hamming_search, '_hamming_native', None)


def _require_native():
    """The C kernels must be built wherever a C compiler is (tools/install.sh builds them)."""
    import shutil

    from mmkd_plugins.evaluation.metrics.hamming_search import native_available
    if not native_available():
        if shutil.which('cc') or shutil.which('gcc'):
            pytest.fail('the C extension mmkd_plugins.evaluation.metrics._hamming_native is not built '
                        'although a C compiler exists: run `python setup.py build_ext --inplace`')
        pytest.skip('no C compiler: the native Hamming kernels are not built')


@pytest.mark.parametrize('bits,k', [(4, 1), (4, 37), (8, 120), (8, 300), (8, 1000), (70, 9)])
def test_knn_matches_brute_force_ties(cpu_path, bits, k):
    from mmkd_plugins.evaluation.metrics.hamming_search import hamming_knn
    q, db, _, _ = _ties_heavy_case(bits + k, 23, 300, bits)
    ref_d, ref_i = _brute_knn(q, db, k)
    # the last: one block of queries, the database in 3 spans searched in parallel threads
    for kwargs in (dict(), dict(chunk_size=5, max_chunk_bytes=20000),
                   dict(chunk_size=23, max_chunk_bytes=60000, num_threads=3)):
        d, i = hamming_knn(pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db)), k, **kwargs)
        np.testing.assert_array_equal(d.numpy(), ref_d, err_msg=str(kwargs))
        np.testing.assert_array_equal(i.numpy(), ref_i, err_msg=str(kwargs))


@pytest.mark.parametrize('order', ['random', 'sample_close'])
def test_knn_sample_threshold_and_fallback(gemm_cpu_path, monkeypatch, order):
    """A sample smaller than the database (approximate limit) must still give the exact ranking,
    also when the sampled items are the nearest ones (the limit is then too tight -> re-search)."""
    from mmkd_plugins.evaluation.metrics import hamming_search
    monkeypatch.setattr(hamming_search, '_MIN_SAMPLE', 16)
    monkeypatch.setattr(hamming_search, '_MAX_SAMPLE', 16)
    rng = np.random.default_rng(7)
    ndb, bits, k = 400, 16, 30
    q = rng.random((9, bits)) < 0.5
    db = rng.random((ndb, bits)) < 0.5
    if order == 'sample_close':
        sample_idx = np.arange(16) * ndb // 16
        db[sample_idx] = q[0]  # distance 0 to query 0: its sample limit holds only 16 items
        # 100 more at distance 0, after the sample's limit index (the 7th sampled item, 150)
        db[np.setdiff1d(np.arange(ndb), sample_idx)[-100:]] = q[0]
    ref_d, ref_i = _brute_knn(q, db, k)
    calls = []
    search = hamming_search._Searcher.search

    def counting_search(self, q_codes, lex, radius, span=None):
        if span is None:
            calls.append(lex is None)
        return search(self, q_codes, lex, radius, span)

    monkeypatch.setattr(hamming_search._Searcher, 'search', counting_search)
    for kwargs in (dict(chunk_size=4), dict(chunk_size=9, num_threads=2)):  # 2: database spans
        calls.clear()
        d, i = hamming_search.hamming_knn(pack_bits(torch.from_numpy(q)),
                                          pack_bits(torch.from_numpy(db)), k,
                                          max_chunk_bytes=20000, **kwargs)  # small tiles
        np.testing.assert_array_equal(d.numpy(), ref_d, err_msg=str(kwargs))
        np.testing.assert_array_equal(i.numpy(), ref_i, err_msg=str(kwargs))
        assert (True in calls) == (order == 'sample_close')  # the re-search ran only when needed


def test_few_queries_split_the_database_across_threads(gemm_path, monkeypatch):
    """One block of queries and 2 threads: the database is searched in 2 spans in parallel (one
    span per thread, tile-aligned, covering it once), merged into the exact ranking; the radius
    pairs of both spans are kept."""
    import threading

    from mmkd_plugins.evaluation.metrics import hamming_search
    q, db, _, _ = _ties_heavy_case(3, 6, 500, 8)
    ref_d, ref_i = _brute_knn(q, db, 40)
    spans, threads = [], set()
    search = hamming_search._Searcher.search

    def recording_search(self, q_codes, lex, radius, span=None):
        if span is not None:
            spans.append(span)
            threads.add(threading.get_ident())
        return search(self, q_codes, lex, radius, span)

    monkeypatch.setattr(hamming_search._Searcher, 'search', recording_search)
    blocks = list(hamming_search.hamming_knn_blocks(
        pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db)), 40, radius=2,
        chunk_size=6, max_chunk_bytes=40000, num_threads=2))
    assert len(blocks) == 1
    np.testing.assert_array_equal(blocks[0].distances.numpy(), ref_d)
    np.testing.assert_array_equal(blocks[0].indices.numpy(), ref_i)
    assert sorted(set(spans)) == [(0, spans[0][1]), (spans[0][1], 500)] and 0 < spans[0][1] < 500
    assert threading.get_ident() not in threads   # searched in the pool's threads
    dist = (q[:, None, :] != db[None, :, :]).sum(-1)
    got = sorted(zip(blocks[0].radius_rows.tolist(), blocks[0].radius_cols.tolist()))
    assert got == sorted(zip(*np.nonzero(dist <= 2)))


@pytest.mark.parametrize('bits,k', [(3, 7), (8, 64), (16, 500), (64, 40), (128, 33), (248, 12)])
def test_native_spans_threads_and_radius_match_brute_force(bits, k):
    """The C kernels on ties-heavy data: database spans merged (tiny memory budget), blocks and spans
    in threads, k >= N, the radius pairs of every span; lengths up to the 248-bit limit."""
    _require_native()
    from mmkd_plugins.evaluation.metrics.hamming_search import hamming_knn_blocks
    q, db, _, _ = _ties_heavy_case(bits * 7 + k, 19, 450, bits, pool=5)
    dist = (q[:, None, :] != db[None, :, :]).sum(-1)
    radius = int(np.median(dist))
    for k_ in (k, 450, 1000):
        ref_d, ref_i = _brute_knn(q, db, k_)
        for kwargs in (dict(), dict(max_chunk_bytes=100), dict(max_chunk_bytes=1000, num_threads=2),
                       dict(chunk_size=4, num_threads=3), dict(chunk_size=19, num_threads=2)):
            blocks = list(hamming_knn_blocks(pack_bits(torch.from_numpy(q)),
                                             pack_bits(torch.from_numpy(db)), k_, radius=radius,
                                             backend='native', **kwargs))
            assert [b.start for b in blocks] == sorted(b.start for b in blocks)
            d = torch.cat([b.distances for b in blocks]).numpy()
            i = torch.cat([b.indices for b in blocks]).numpy()
            np.testing.assert_array_equal(d, ref_d, err_msg=str((k_, kwargs)))
            np.testing.assert_array_equal(i, ref_i, err_msg=str((k_, kwargs)))
            pairs = sorted((b.start + r, c) for b in blocks
                           for r, c in zip(b.radius_rows.tolist(), b.radius_cols.tolist()))
            assert pairs == sorted(zip(*np.nonzero(dist <= radius))), (k_, kwargs)


def test_native_kernels_direct():
    """The two C passes on their own: uint8 distances, a histogram exact up to the k-th distance,
    the (distance, index) selection with a column offset; size errors are clear ValueErrors."""
    _require_native()
    from mmkd_plugins.evaluation.metrics import _hamming_native as native
    rng = np.random.default_rng(5)
    for nbytes, k in ((1, 1), (2, 9), (5, 30), (8, 100), (31, 7)):
        q = rng.integers(0, 256, (6, nbytes), dtype=np.uint8)
        x = rng.integers(0, 256, (300, nbytes), dtype=np.uint8)
        x[::3] = x[0]  # duplicates: ties
        levels = 8 * nbytes + 1
        ref = np.unpackbits(q[:, None, :] ^ x[None, :, :], axis=-1).sum(-1).astype(np.int64)
        dist = np.empty((6, 300), np.uint8)
        hist = np.empty((6, levels), np.int64)
        native.distances(q, x, nbytes, levels, k, dist, hist)
        np.testing.assert_array_equal(dist, ref)
        for row in range(6):
            kth = np.sort(ref[row])[k - 1]
            full = np.bincount(ref[row], minlength=levels)
            np.testing.assert_array_equal(hist[row, :kth + 1], full[:kth + 1])
        idx = np.empty((6, k), np.int64)
        out_d = np.empty((6, k), np.uint8)
        native.select(dist, 300, hist, levels, k, 1000, idx, out_d)
        order = np.argsort(ref, axis=1, kind='stable')[:, :k]
        np.testing.assert_array_equal(idx, order + 1000)
        np.testing.assert_array_equal(out_d, np.take_along_axis(ref, order, axis=1))
    q = np.zeros((2, 4), np.uint8)
    x = np.zeros((10, 4), np.uint8)
    with pytest.raises(ValueError, match='output sizes'):
        native.distances(q, x, 4, 33, 3, np.empty(19, np.uint8), np.empty((2, 33), np.int64))
    with pytest.raises(ValueError, match='nbytes'):
        native.distances(q, x, 32, 257, 3, np.empty(20, np.uint8), np.empty((2, 257), np.int64))
    with pytest.raises(ValueError, match='k <= n'):
        native.distances(q, x, 4, 33, 11, np.empty(20, np.uint8), np.empty((2, 33), np.int64))
    with pytest.raises(ValueError, match='histogram counts'):  # a histogram that counts too few
        native.select(np.zeros(20, np.uint8), 10, np.zeros((2, 33), np.int64), 33, 3, 0,
                      np.empty(6, np.int64), np.empty(6, np.uint8))


def test_backend_choice_and_errors(monkeypatch):
    """'auto' takes the C kernels for CPU codes of <= 31 bytes, else the GEMM path; asking for
    'native' where it cannot run says why."""
    from mmkd_plugins.evaluation.metrics import hamming_search
    q, db, _, _ = _ties_heavy_case(2, 5, 60, 256)
    qc, dc = pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db))  # 32 bytes
    ref_d, ref_i = _brute_knn(q, db, 10)
    d, i = hamming_search.hamming_knn(qc, dc, 10)  # auto: 256 bits -> GEMM path
    np.testing.assert_array_equal(d.numpy(), ref_d)
    np.testing.assert_array_equal(i.numpy(), ref_i)
    with pytest.raises(ValueError, match='at most 31 bytes'):
        hamming_search.hamming_knn(qc, dc, 10, backend='native')
    with pytest.raises(ValueError, match='backend must be one of'):
        hamming_search.hamming_knn(qc, dc, 10, backend='faiss')
    with pytest.raises(ValueError, match='packed uint8 codes'):  # not silently reinterpreted bytes
        hamming_search.hamming_knn(qc.long(), dc, 10)
    with pytest.raises(ValueError, match='code length mismatch'):
        hamming_search.hamming_knn(qc[:, :4], dc, 10)
    d, i = hamming_search.hamming_knn(qc[:, :8], dc[:, :8], 10, backend='gemm')
    ref_d, ref_i = _brute_knn(q[:, :64], db[:, :64], 10)
    np.testing.assert_array_equal(d.numpy(), ref_d)
    np.testing.assert_array_equal(i.numpy(), ref_i)
    monkeypatch.setattr(hamming_search, '_hamming_native', None)
    with pytest.raises(RuntimeError, match='build_ext --inplace'):
        hamming_search.hamming_knn(qc[:, :8], dc[:, :8], 10, backend='native')
    d, i = hamming_search.hamming_knn(qc[:, :8], dc[:, :8], 10)  # auto without it: GEMM path
    np.testing.assert_array_equal(i.numpy(), ref_i)


@pytest.mark.parametrize('bits,topk', [(4, (1, 40, 150)), (8, (2, 250, 400))])
def test_metrics_ties_heavy_match_brute_force(cpu_path, bits, topk):
    # duplicates -> ties at every distance; K between tie groups, K > database size (250 items)
    q, db, ql, dbl = _ties_heavy_case(bits, 12, 250, bits)
    old_threads = torch.get_num_threads()
    try:
        for threads in (1, 2):  # 2: blocks searched in parallel threads (CPU)
            torch.set_num_threads(threads)
            _assert_metrics_match_brute_force(q, db, ql, dbl, topk)
    finally:
        torch.set_num_threads(old_threads)


def test_radius_beyond_topk_limit():
    # radius 3 while the top-2 are at distance 0: the radius counts need items the top-K drops
    q, db, ql, dbl = _ties_heavy_case(11, 8, 120, 8, pool=4)
    got = hashing_retrieval_metrics(pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db)),
                                    torch.from_numpy(ql), torch.from_numpy(dbl), topk=2,
                                    hamming_radius=3, chunk_size=3, max_chunk_bytes=4000)
    ref = _brute_force(q, db, ql, dbl, (2,), 3)
    np.testing.assert_allclose(got['P_3'].numpy(), ref['P_r'], atol=1e-12)
    np.testing.assert_allclose(got['R_3'].numpy(), ref['R_r'], atol=1e-12)
    np.testing.assert_allclose(got['AP@2'].numpy(), ref['AP@2'], atol=1e-12)
    with pytest.raises(ValueError, match='hamming_radius'):
        hashing_retrieval_metrics(pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db)),
                                  torch.from_numpy(ql), torch.from_numpy(dbl), hamming_radius=-1)


@pytest.mark.parametrize('bits', [8, 32, 64])
def test_knn_equals_faiss(bits):
    """FAISS IndexBinaryFlat ranks by (distance, index) too: identical results (skipped without
    faiss; ``pip install -r requirements/benchmarks.txt``)."""
    faiss = pytest.importorskip('faiss')
    from mmkd_plugins.evaluation.metrics.hamming_search import hamming_knn
    q, db, _, _ = _ties_heavy_case(bits, 31, 1000, bits, pool=40)
    qc, dc = np.packbits(q, axis=1), np.packbits(db, axis=1)
    index = faiss.IndexBinaryFlat(bits)
    index.add(dc)
    ref_d, ref_i = index.search(qc, 200)
    d, i = hamming_knn(torch.from_numpy(qc), torch.from_numpy(dc), 200)
    np.testing.assert_array_equal(d.numpy(), ref_d)
    np.testing.assert_array_equal(i.numpy(), ref_i)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_knn_cuda_matches_cpu():
    from mmkd_plugins.evaluation.metrics.hamming_search import hamming_knn
    q, db, ql, dbl = _ties_heavy_case(3, 50, 5000, 32, pool=200)
    args = [pack_bits(torch.from_numpy(q)), pack_bits(torch.from_numpy(db))]
    d, i = hamming_knn(*args, 100)
    d2, i2 = hamming_knn(*[a.cuda() for a in args], 100)
    assert torch.equal(d, d2.cpu()) and torch.equal(i, i2.cpu())
    labels = [torch.from_numpy(ql), torch.from_numpy(dbl)]
    cpu = hashing_retrieval_metrics(*args, *labels, topk=100)
    gpu = hashing_retrieval_metrics(*[a.cuda() for a in args], *[t.cuda() for t in labels], topk=100)
    for key in cpu:
        assert torch.allclose(cpu[key], gpu[key].cpu(), atol=1e-12), key
