"""Row gathers for minibatches: out[r] = x[idx[r]] (np.take along axis 0, a memcpy per row).

x and out are C-contiguous float32, float64 or int64 (labels), 1-D or 2-D; idx is int64 and,
as in np.take, may count from the end when negative. The indices are checked before anything is
written; a bad one raises IndexError (the adapter then lets np.take word the error).
"""

from libc.stdint cimport int64_t
from libc.string cimport memcpy

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
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1], b = idx.shape[0], r, bad
    cdef int64_t k
    if out.shape[0] != b or out.shape[1] != m:
        raise ValueError("take_rows: shapes do not match.")
    if b == 0 or m == 0:
        return
    cdef const int64_t* pi = &idx[0]
    cdef const elem_t* px = &x[0, 0] if n > 0 else NULL
    cdef elem_t* po = &out[0, 0]
    cdef size_t row_bytes = m * sizeof(elem_t)
    with nogil:
        bad = _check_indices(pi, b, n)
        if bad < 0:
            for r in range(b):
                k = pi[r]
                if k < 0:
                    k += n
                memcpy(po + r * m, px + k * m, row_bytes)
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
