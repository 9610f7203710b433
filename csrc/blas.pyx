"""The GEMM route shared by the kernel modules (see _blas.pxd).

fastnn.backends.cpu locates NumPy's own OpenBLAS and calls set_gemm() once at import; until then,
or when it finds none, every product runs in the built-in loops of _blas.pxd.
"""

from libc.stdint cimport uintptr_t
from cython cimport floating

from _blas cimport (GemmRoute, gemm, sgemm32_t, sgemm64_t, dgemm32_t, dgemm64_t)
from _types cimport ptr2, cptr2

# The one route; modules that cimport _blas.pxd read it through route_address().
cdef GemmRoute _route
_route.sgemm32 = NULL
_route.sgemm64 = NULL
_route.dgemm32 = NULL
_route.dgemm64 = NULL
# Products with m*n*k at or below this run in the built-in loop even when BLAS is installed.
# 0: OpenBLAS's small-matrix kernels (AVX-512 where available) beat the portable loop already at
# 16x4x16 (0.15 us against 0.35 us), so BLAS always wins once installed. set_small_gemm() tunes it.
_route.small_mnk = 0.0


def set_gemm(uintptr_t sgemm, uintptr_t dgemm, bint ilp64):
    """Install the addresses of cblas_sgemm and cblas_dgemm (0 removes them: built-in loops).

    ``ilp64``: the integer arguments are 64-bit (scipy_cblas_sgemm64_ and the like)."""
    _route.sgemm32 = NULL
    _route.sgemm64 = NULL
    _route.dgemm32 = NULL
    _route.dgemm64 = NULL
    if ilp64:
        _route.sgemm64 = <sgemm64_t>sgemm
        _route.dgemm64 = <dgemm64_t>dgemm
    else:
        _route.sgemm32 = <sgemm32_t>sgemm
        _route.dgemm32 = <dgemm32_t>dgemm


def has_gemm():
    """True when BLAS entry points are installed for both float32 and float64."""
    return ((_route.sgemm32 != NULL or _route.sgemm64 != NULL)
            and (_route.dgemm32 != NULL or _route.dgemm64 != NULL))


def set_small_gemm(double mnk):
    """Products with m*n*k <= mnk run in the built-in loop; returns the previous threshold."""
    old = _route.small_mnk
    _route.small_mnk = mnk
    return old


def route_address():
    """Address of the GemmRoute, read once by each module that cimports _blas.pxd."""
    return <uintptr_t>&_route


def matmul(const floating[:, ::1] a not None, const floating[:, ::1] b not None,
         floating[:, ::1] c not None, bint trans_a=False, bint trans_b=False,
         double alpha=1.0, double beta=0.0):
    """c = alpha op(a) @ op(b) + beta c in place (a test and benchmark hook; shapes are checked)."""
    cdef Py_ssize_t m = a.shape[1] if trans_a else a.shape[0]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    cdef Py_ssize_t kb = b.shape[1] if trans_b else b.shape[0]
    cdef Py_ssize_t n = b.shape[0] if trans_b else b.shape[1]
    if kb != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError(f"matmul: shapes do not match: op(a) is ({m}, {k}), op(b) ({kb}, {n}), "
                         f"c ({c.shape[0]}, {c.shape[1]}).")
    with nogil:
        gemm(&_route, trans_a, trans_b, m, n, k, <floating>alpha, cptr2(a), a.shape[1],
             cptr2(b), b.shape[1], <floating>beta, ptr2(c), c.shape[1])
