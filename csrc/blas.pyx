"""The GEMM route shared by the kernel modules (see _blas.pxd).

fastnn.backends.cpu locates NumPy's own OpenBLAS and calls set_gemm() once at import; until then,
or when it finds none, every product runs in the built-in loops of _blas.pxd.
"""

from libc.stdint cimport uintptr_t
from cython cimport floating

from _blas cimport (GemmRoute, gemm, solo_enter, solo_exit, sgemm32_t, sgemm64_t, dgemm32_t, dgemm64_t, set_threads_t,
                    get_threads_t, N_BUCKETS)
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
# The per-product thread choice (_blas.pxd, gemm): off until set_thread_control() installs
# OpenBLAS's thread functions. OpenBLAS itself runs products with m*n*k <= 4 * 65536 on one thread
# (interface/gemm.c, GEMM_MULTITHREAD_THRESHOLD 4) and splits larger ones over at most
# m*n*k / 262144 threads: only products it would split take part.
_route.set_threads = NULL
_route.get_threads = NULL
_route.adaptive = 0
_route.adapt_mnk = 2 * 262144.0
_route.solo_depth = 0
_route.solo_parts = 0
_route.solo_off = __import__("os").environ.get("FASTNN_SOLO", "1") == "0"   # for comparisons


def solo_begin():
    """Begin a solo span (fastnn's pool owns the cores: OpenBLAS on one thread, fastnn's products,
    updates and gathers shared over the pool); True when one began, and then solo_end() must
    follow. Spans nest; the outermost restores OpenBLAS's thread count."""
    return solo_enter(&_route)


def solo_end():
    """End the span of a solo_begin() that returned True."""
    if _route.solo_depth <= 0:
        raise RuntimeError("solo_end: no solo span is open.")
    solo_exit(&_route)


def set_solo(bint enabled):
    """Let large training chains run in solo spans (the default; FASTNN_SOLO=0 at import turns
    them off) or not; returns the previous setting. For tests and comparisons."""
    old = not _route.solo_off
    _route.solo_off = 0 if enabled else 1
    return old


def solo_threads(int n=0):
    """Inside a solo span (a training chain running, OpenBLAS held at one thread), the pool size
    to restore at its end: returned, and set to ``n`` when n > 0; 0 outside a span."""
    if _route.solo_depth <= 0:
        return 0
    if n > 0:
        _route.solo_parts = n
    return _route.solo_parts


def _reset_thread_stats():
    cdef int i
    for i in range(N_BUCKETS):
        _route.ns_per_mnk[i][0] = 0
        _route.ns_per_mnk[i][1] = 0
        _route.seen[i] = 0
        _route.since_retry[i] = 0
        _route.retry_left[i] = 0
        _route.retry_choice[i] = 0


_reset_thread_stats()


def set_thread_control(uintptr_t set_fn, uintptr_t get_fn, bint adaptive):
    """Install OpenBLAS's ``openblas_set_num_threads``/``get`` (0: none) and turn the adaptive
    per-product choice between one thread and the whole pool on or off; forgets what was
    measured. Returns the previous ``adaptive``."""
    old = bool(_route.adaptive)
    _route.set_threads = <set_threads_t>set_fn
    _route.get_threads = <get_threads_t>get_fn
    _route.adaptive = 1 if (adaptive and set_fn != 0 and get_fn != 0) else 0
    _reset_thread_stats()
    return old


def thread_stats():
    """What the adaptive choice has measured: {log2 bucket of m*n*k: (ns per m*n*k on one
    thread, on the pool, products seen)}, for the buckets seen (0.0: not measured yet)."""
    return {i: (_route.ns_per_mnk[i][0], _route.ns_per_mnk[i][1], _route.seen[i])
            for i in range(N_BUCKETS) if _route.seen[i]}


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
