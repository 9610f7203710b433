"""Row gathers for minibatches: out[r] = x[idx[r]] (np.take along axis 0, a memcpy per row).

x and out are C-contiguous float32, float64 or int64 (labels), 1-D or 2-D; idx is int64 and,
as in np.take, may count from the end when negative. The indices are checked before anything is
written; a bad one raises IndexError (the adapter then lets np.take word the error). In a solo span
(_blas.pxd: a large model's training epoch), a gather of at least GATHER_SPLIT bytes is shared
over fastnn's pool by rows: random rows of a large table are DRAM latency-bound, and two cores
keep twice as many misses in flight (outside a span OpenBLAS's idle workers may be spinning on
the other core, and the split measured slower than one thread).
"""

from libc.stdint cimport int64_t, uintptr_t
from libc.string cimport memcpy

from _blas cimport GemmRoute, pool_parts
from _pool cimport fnn_pool_api, fnn_share

import fastnn._ext.blas as _blas
import fastnn._ext.pool as _poolmod

cdef GemmRoute* _route = <GemmRoute*><uintptr_t>_blas.route_address()
cdef const fnn_pool_api* _pool = <const fnn_pool_api*><uintptr_t>_poolmod.api_address()

cdef enum:
    GATHER_SPLIT = 65536       # bytes from which take_rows is shared over the pool


ctypedef struct Gather:
    const char* x
    const int64_t* idx
    char* out
    Py_ssize_t n, b
    size_t row_bytes


cdef void _gather_rows(void* arg, int part, int parts) noexcept nogil:
    """Part ``part``'s share of the rows (the indices are checked)."""
    cdef Gather* g = <Gather*>arg
    cdef Py_ssize_t r0, r1, r
    cdef int64_t k
    fnn_share(g.b, 8, part, parts, &r0, &r1)
    for r in range(r0, r1):
        k = g.idx[r]
        if k < 0:
            k += g.n
        memcpy(g.out + r * g.row_bytes, g.x + k * g.row_bytes, g.row_bytes)

ctypedef fused elem_t:
    float
    double
    int64_t


cdef Py_ssize_t _check_indices(const int64_t* idx, Py_ssize_t b, Py_ssize_t n) noexcept nogil:
    """Position of the first index outside [-n, n), or -1."""
    cdef Py_ssize_t r
    cdef int64_t k
    for r in range(b):
        k = idx[r]
        if k < -n or k >= n:
            return r
    return -1


def take_rows(const elem_t[:, ::1] x not None, const int64_t[::1] idx not None,
              elem_t[:, ::1] out not None):
    """out (b, m) = x[idx] for x (n, m) and idx (b,)."""
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1], b = idx.shape[0], bad
    if out.shape[0] != b or out.shape[1] != m:
        raise ValueError("take_rows: shapes do not match.")
    if b == 0 or m == 0:
        return
    cdef const int64_t* pi = &idx[0]
    cdef const elem_t* px = &x[0, 0] if n > 0 else NULL
    cdef elem_t* po = &out[0, 0]
    cdef Gather g
    cdef int parts
    g.x, g.idx, g.out, g.n, g.b, g.row_bytes = <const char*>px, pi, <char*>po, n, b, m * sizeof(elem_t)
    with nogil:
        bad = _check_indices(pi, b, n)
        if bad < 0:
            parts = pool_parts(_route) if (_route.solo_depth > 0 and b * g.row_bytes >= GATHER_SPLIT) else 1
            parts = <int>min(<Py_ssize_t>parts, (b + 7) // 8)
            if parts > 1 and not _pool.ready(parts):
                parts = 1
            _pool.parallel(_gather_rows, &g, max(parts, 1))
    if bad >= 0:
        raise IndexError(f"take_rows: index {idx[bad]} is out of bounds for {n} rows.")


def take(const elem_t[::1] x not None, const int64_t[::1] idx not None, elem_t[::1] out not None):
    """out (b,) = x[idx] for x (n,) and idx (b,)."""
    cdef Py_ssize_t n = x.shape[0], b = idx.shape[0], r, bad
    cdef int64_t k
    if out.shape[0] != b:
        raise ValueError("take_rows: shapes do not match.")
    if b == 0:
        return
    cdef const int64_t* pi = &idx[0]
    cdef const elem_t* px = &x[0] if n > 0 else NULL
    cdef elem_t* po = &out[0]
    with nogil:
        bad = _check_indices(pi, b, n)
        if bad < 0:
            for r in range(b):
                k = pi[r]
                po[r] = px[k + n if k < 0 else k]
    if bad >= 0:
        raise IndexError(f"take_rows: index {idx[bad]} is out of bounds for {n} rows.")
