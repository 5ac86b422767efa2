/*
 * Native Hamming k-NN kernels of mmkd_plugins.evaluation.metrics.hamming_search (CPU).
 *
 * Two GIL-free passes over packed codes (uint8, numpy.packbits order; popcount does not care about
 * the bit order):
 *
 *   distances(q_codes, db_codes, nbytes, levels, k, dist_out, hist_out)
 *       dist_out[i * n + j] = popcount(q_i XOR x_j)                      (uint8, q x n)
 *       hist_out[i * levels + d] = #{j : dist_out[i * n + j] == d}       (int64, q x levels)
 *       exact for every d up to the row's k-th smallest distance (larger ones are partial counts)
 *   select(dist, n, hist, levels, k, col_offset, idx_out, dist_out)
 *       per row i: the k items j of smallest (distance, j) - a counting selection: the threshold
 *       distance t from the histogram, one scan in index order keeping the items below t and the
 *       first (k - #below) at t, each written at its distance bucket's next slot, so the output
 *       is sorted by (distance, index) without a comparison sort.
 *       idx_out[i * k + r] = j + col_offset (int64), dist_out[i * k + r] = its distance (uint8).
 *
 * Distances are at most 8 * nbytes <= 255 bits (the Python side only calls it then). Buffers come
 * through the buffer protocol (C-contiguous numpy arrays); sizes are checked here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define TILE 2048 /* database items per tile: 2048 x nbytes stays in L1/L2 for the query loop */

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* popcount(a XOR b) over NB bytes; NB is a compile-time constant in the specialised kernels. */
#define HAMMING_BODY(a, b, NB, POP64, POP32, out)                           \
    do {                                                                    \
        unsigned acc_ = 0;                                                  \
        int o_ = 0;                                                         \
        for (; o_ + 8 <= (NB); o_ += 8)                                     \
            acc_ += POP64(load64((a) + o_) ^ load64((b) + o_));             \
        for (; o_ + 4 <= (NB); o_ += 4)                                     \
            acc_ += POP32(load32((a) + o_) ^ load32((b) + o_));             \
        for (; o_ < (NB); o_++)                                             \
            acc_ += POP32((uint32_t)((a)[o_] ^ (b)[o_]));                   \
        (out) = acc_;                                                       \
    } while (0)

#define POP64_BUILTIN(x) ((unsigned)__builtin_popcountll(x))
#define POP32_BUILTIN(x) ((unsigned)__builtin_popcount(x))

/* The smallest distance t with #{d <= t} >= k in the (partial) histogram h, or levels - 1. */
static inline unsigned kth_bound(const int64_t *h, int levels, Py_ssize_t k) {
    int64_t cum = 0;
    for (int d = 0; d < levels; d++) {
        cum += h[d];
        if (cum >= k)
            return (unsigned)d;
    }
    return (unsigned)(levels - 1);
}

/* One kernel: rows q[0..nq) against database items x[0..n), in tiles of the database, four queries
 * at a time (one load of an item's words for four XOR + popcounts). Every distance is stored; the
 * histogram only counts distances <= the query's running bound b (the k-th smallest distance so
 * far, updated after every tile): b only decreases and the final k-th distance t is <= b at every
 * step, so the counts of every distance <= t are exact, while most items (d > b) skip the
 * read-modify-write of a counter. */
#define DIST_ONE(QP, XJ, NB, OUT) HAMMING_BODY(QP, XJ, NB, POP64_BUILTIN, POP32_BUILTIN, OUT)
#define DEFINE_KERNEL(NAME, ATTR, NB_EXPR)                                                     \
    ATTR static void NAME(const uint8_t *restrict q, Py_ssize_t nq, const uint8_t *restrict x, \
                          Py_ssize_t n, int nbytes, int levels, Py_ssize_t k,                  \
                          uint8_t *restrict dist, int64_t *restrict hist,                      \
                          unsigned *restrict bound) {                                          \
        const int NB = (NB_EXPR);                                                              \
        (void)nbytes;                                                                          \
        for (Py_ssize_t js = 0; js < n; js += TILE) {                                          \
            Py_ssize_t je = js + TILE < n ? js + TILE : n;                                     \
            Py_ssize_t i = 0;                                                                  \
            for (; i + 4 <= nq; i += 4) {                                                      \
                const uint8_t *q0 = q + i * NB, *q1 = q0 + NB, *q2 = q1 + NB, *q3 = q2 + NB;    \
                uint8_t *r0 = dist + i * n, *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;          \
                int64_t *g0 = hist + i * levels, *g1 = g0 + levels;                            \
                int64_t *g2 = g1 + levels, *g3 = g2 + levels;                                  \
                const unsigned b0 = bound[i], b1 = bound[i + 1];                               \
                const unsigned b2 = bound[i + 2], b3 = bound[i + 3];                           \
                for (Py_ssize_t j = js; j < je; j++) {                                         \
                    const uint8_t *xj = x + j * NB;                                            \
                    unsigned d0, d1, d2, d3;                                                   \
                    DIST_ONE(q0, xj, NB, d0);                                                  \
                    DIST_ONE(q1, xj, NB, d1);                                                  \
                    DIST_ONE(q2, xj, NB, d2);                                                  \
                    DIST_ONE(q3, xj, NB, d3);                                                  \
                    r0[j] = (uint8_t)d0;                                                       \
                    r1[j] = (uint8_t)d1;                                                       \
                    r2[j] = (uint8_t)d2;                                                       \
                    r3[j] = (uint8_t)d3;                                                       \
                    if (d0 <= b0) g0[d0]++;                                                    \
                    if (d1 <= b1) g1[d1]++;                                                    \
                    if (d2 <= b2) g2[d2]++;                                                    \
                    if (d3 <= b3) g3[d3]++;                                                    \
                }                                                                              \
            }                                                                                  \
            for (; i < nq; i++) {                                                              \
                const uint8_t *qi = q + i * NB;                                                \
                uint8_t *drow = dist + i * n;                                                  \
                int64_t *g = hist + i * levels;                                                \
                const unsigned b = bound[i];                                                   \
                for (Py_ssize_t j = js; j < je; j++) {                                         \
                    unsigned d;                                                                \
                    DIST_ONE(qi, x + j * NB, NB, d);                                           \
                    drow[j] = (uint8_t)d;                                                      \
                    if (d <= b) g[d]++;                                                        \
                }                                                                              \
            }                                                                                  \
            for (i = 0; i < nq; i++)                                                           \
                bound[i] = kth_bound(hist + i * levels, levels, k);                            \
        }                                                                                      \
    }

typedef void (*kernel_fn)(const uint8_t *, Py_ssize_t, const uint8_t *, Py_ssize_t, int, int,
                          Py_ssize_t, uint8_t *, int64_t *, unsigned *);

/* Specialisations for the common code lengths (16..256 bits) and a generic one; on x86-64 each
 * also in a popcnt-instruction variant picked at import when the CPU has it. */
#define DEFINE_SET(SUFFIX, ATTR)                                     \
    DEFINE_KERNEL(k2_##SUFFIX, ATTR, 2)                              \
    DEFINE_KERNEL(k4_##SUFFIX, ATTR, 4)                              \
    DEFINE_KERNEL(k8_##SUFFIX, ATTR, 8)                              \
    DEFINE_KERNEL(k12_##SUFFIX, ATTR, 12)                            \
    DEFINE_KERNEL(k16_##SUFFIX, ATTR, 16)                            \
    DEFINE_KERNEL(k24_##SUFFIX, ATTR, 24)                            \
    DEFINE_KERNEL(k32_##SUFFIX, ATTR, 32)                            \
    DEFINE_KERNEL(kn_##SUFFIX, ATTR, nbytes)                         \
    static kernel_fn pick_##SUFFIX(int nbytes) {                     \
        switch (nbytes) {                                            \
        case 2: return k2_##SUFFIX;                                  \
        case 4: return k4_##SUFFIX;                                  \
        case 8: return k8_##SUFFIX;                                  \
        case 12: return k12_##SUFFIX;                                \
        case 16: return k16_##SUFFIX;                                \
        case 24: return k24_##SUFFIX;                                \
        case 32: return k32_##SUFFIX;                                \
        default: return kn_##SUFFIX;                                 \
        }                                                            \
    }

DEFINE_SET(generic, )
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_POPCNT_VARIANT 1
DEFINE_SET(popcnt, __attribute__((target("popcnt"))))
#endif

static int use_popcnt = 0;

static kernel_fn pick_kernel(int nbytes) {
#ifdef HAVE_POPCNT_VARIANT
    if (use_popcnt)
        return pick_popcnt(nbytes);
#endif
    return pick_generic(nbytes);
}

static PyObject *py_distances(PyObject *self, PyObject *args) {
    Py_buffer qb, xb, db, hb;
    int nbytes, levels;
    Py_ssize_t k;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*iinw*w*", &qb, &xb, &nbytes, &levels, &k, &db, &hb))
        return NULL;
    PyObject *ret = NULL;
    if (nbytes < 1 || nbytes > 31 || levels != 8 * nbytes + 1) {
        PyErr_Format(PyExc_ValueError, "distances: need 1 <= nbytes <= 31 and levels = 8 nbytes + 1, "
                     "got nbytes=%d levels=%d", nbytes, levels);
        goto done;
    }
    if (qb.len % nbytes || xb.len % nbytes) {
        PyErr_SetString(PyExc_ValueError, "distances: code buffers are not whole rows of nbytes");
        goto done;
    }
    Py_ssize_t nq = qb.len / nbytes, n = xb.len / nbytes;
    if (k < 1 || k > n) {
        PyErr_Format(PyExc_ValueError, "distances: need 1 <= k <= n = %zd, got k = %zd", n, k);
        goto done;
    }
    if (db.len != nq * n || hb.len != nq * levels * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_Format(PyExc_ValueError, "distances: output sizes %zd / %zd bytes, expected %zd / %zd",
                     db.len, hb.len, nq * n, nq * levels * (Py_ssize_t)sizeof(int64_t));
        goto done;
    }
    kernel_fn fn = pick_kernel(nbytes);
    unsigned *bound = (unsigned *)malloc((size_t)(nq > 0 ? nq : 1) * sizeof(unsigned));
    if (!bound) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nq; i++)
        bound[i] = (unsigned)(levels - 1);
    memset(hb.buf, 0, (size_t)hb.len);
    fn((const uint8_t *)qb.buf, nq, (const uint8_t *)xb.buf, n, nbytes, levels, k,
       (uint8_t *)db.buf, (int64_t *)hb.buf, bound);
    Py_END_ALLOW_THREADS
    free(bound);
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&qb);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&db);
    PyBuffer_Release(&hb);
    return ret;
}

#if !defined(__SSE2__)
/* Does any byte of the 8 in w have a value < m (0 <= m <= 128)?  (exact, word-at-a-time) */
static inline int has_byte_below(uint64_t w, uint64_t m) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    return ((w - ones * m) & ~w & highs) != 0;
}
#endif

/* Item j (distance d) of a row scanned in index order: kept when below the k-th distance t, or at t
 * while the first ``at_t`` items there are taken; written at its distance bucket's next slot. */
static inline void keep_item(int d, int t, Py_ssize_t j, int64_t col_offset, Py_ssize_t *slot,
                             int64_t *idx, Py_ssize_t *at_t, Py_ssize_t *left) {
    if (d < t) {
        idx[slot[d]++] = j + col_offset;
        (*left)--;
    } else if (d == t && *at_t) {
        idx[slot[t]++] = j + col_offset;
        (*at_t)--;
        (*left)--;
    }
}

static void select_row(const uint8_t *row, Py_ssize_t n, const int64_t *hist, int levels,
                       Py_ssize_t k, int64_t col_offset, int64_t *idx, uint8_t *dout) {
    Py_ssize_t slot[256];
    Py_ssize_t below = 0; /* items with distance < t */
    int t = 0;
    while (t < levels - 1 && below + hist[t] < k) {
        below += hist[t];
        t++;
    }
    Py_ssize_t pos = 0;
    for (int d = 0; d < t; d++) {
        slot[d] = pos;
        for (int64_t c = 0; c < hist[d]; c++)
            dout[pos++] = (uint8_t)d;
    }
    slot[t] = pos;
    for (; pos < k; pos++)
        dout[pos] = (uint8_t)t;
    Py_ssize_t at_t = k - below; /* items taken at distance t: the first ones in index order */
    Py_ssize_t left = k;
    Py_ssize_t j = 0;
#if defined(__SSE2__)
    /* 16 distances at a time: a mask of those <= t (min(v, t) == v), then only the set bits */
    const __m128i tv = _mm_set1_epi8((char)t);
    for (; j + 16 <= n && left; j += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(row + j));
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, tv), v));
        while (mask && left) {
            Py_ssize_t jj = j + __builtin_ctz(mask);
            mask &= mask - 1;
            keep_item(row[jj], t, jj, col_offset, slot, idx, &at_t, &left);
        }
    }
#else
    if (t + 1 <= 128) {
        const uint64_t m = (uint64_t)(t + 1);
        for (; j + 8 <= n && left; j += 8) {
            if (!has_byte_below(load64(row + j), m))
                continue;
            for (Py_ssize_t jj = j; jj < j + 8; jj++)
                keep_item(row[jj], t, jj, col_offset, slot, idx, &at_t, &left);
        }
    }
#endif
    for (; j < n && left; j++)
        keep_item(row[j], t, j, col_offset, slot, idx, &at_t, &left);
}

static PyObject *py_select(PyObject *self, PyObject *args) {
    Py_buffer db, hb, ib, ob;
    Py_ssize_t n, k;
    int levels;
    long long col_offset;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ny*inLw*w*", &db, &n, &hb, &levels, &k, &col_offset, &ib, &ob))
        return NULL;
    PyObject *ret = NULL;
    if (n < 1 || k < 1 || k > n || levels < 2 || levels > 256 || db.len % n) {
        PyErr_Format(PyExc_ValueError, "select: need 1 <= k <= n, 2 <= levels <= 256 and whole rows, "
                     "got n=%zd k=%zd levels=%d (%zd bytes)", n, k, levels, db.len);
        goto done;
    }
    Py_ssize_t nq = db.len / n;
    if (hb.len != nq * levels * (Py_ssize_t)sizeof(int64_t) ||
        ib.len != nq * k * (Py_ssize_t)sizeof(int64_t) || ob.len != nq * k) {
        PyErr_SetString(PyExc_ValueError, "select: histogram or output sizes do not match the rows");
        goto done;
    }
    const int64_t *hist = (const int64_t *)hb.buf;
    for (Py_ssize_t i = 0; i < nq; i++) {
        int64_t total = 0;
        for (int d = 0; d < levels; d++)
            total += hist[i * levels + d];
        if (total < k || total > n) {
            PyErr_Format(PyExc_ValueError, "select: row %zd's histogram counts %lld items, need "
                         "k = %zd <= count <= n = %zd", i, (long long)total, k, n);
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nq; i++)
        select_row((const uint8_t *)db.buf + i * n, n, hist + i * levels, levels, k,
                   (int64_t)col_offset, (int64_t *)ib.buf + i * k, (uint8_t *)ob.buf + i * k);
    Py_END_ALLOW_THREADS
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&hb);
    PyBuffer_Release(&ib);
    PyBuffer_Release(&ob);
    return ret;
}

static PyObject *py_uses_popcnt(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(use_popcnt);
}

static PyMethodDef methods[] = {
    {"distances", py_distances, METH_VARARGS,
     "distances(q_codes, db_codes, nbytes, levels, k, dist_out, hist_out): uint8 Hamming distances "
     "(q x n) and per-row histograms (q x levels int64), exact up to each row's k-th distance."},
    {"select", py_select, METH_VARARGS,
     "select(dist, n, hist, levels, k, col_offset, idx_out, dist_out): per row the k items of "
     "smallest (distance, index), sorted (int64 indices + col_offset, uint8 distances)."},
    {"uses_popcnt", py_uses_popcnt, METH_NOARGS, "True when the popcnt-instruction kernels run."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hamming_native",
                                    "Native Hamming k-NN kernels (see hamming_search.py).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__hamming_native(void) {
#ifdef HAVE_POPCNT_VARIANT
    __builtin_cpu_init();
    use_popcnt = __builtin_cpu_supports("popcnt") ? 1 : 0;
#endif
    return PyModule_Create(&module);
}
