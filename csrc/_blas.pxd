# Row-major GEMM for the kernel modules: C = alpha op(A) op(B) + beta C.
#
# The BLAS entry points are function pointers into NumPy's own, already loaded OpenBLAS (one copy,
# one thread pool); fastnn.backends.cpu finds them with ctypes and installs them with
# fastnn._ext.blas.set_gemm(). They live in a GemmRoute owned by blas.pyx; a module that cimports
# this file fetches its address once at import (see dense.pyx), so nothing here needs linking
# (a .pxd beside a .pyx is not found under the qualified name fastnn._ext.*, hence _blas.pxd).
# While no BLAS is installed every product runs in the portable loops below (correct, not fast).

from libc.stdint cimport int64_t
from cython cimport floating

ctypedef void (*sgemm32_t)(int order, int trans_a, int trans_b, int m, int n, int k,
                           float alpha, const float* a, int lda, const float* b, int ldb,
                           float beta, float* c, int ldc) noexcept nogil
ctypedef void (*sgemm64_t)(int order, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                           float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                           float beta, float* c, int64_t ldc) noexcept nogil
ctypedef void (*dgemm32_t)(int order, int trans_a, int trans_b, int m, int n, int k,
                           double alpha, const double* a, int lda, const double* b, int ldb,
                           double beta, double* c, int ldc) noexcept nogil
ctypedef void (*dgemm64_t)(int order, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                           double alpha, const double* a, int64_t lda, const double* b, int64_t ldb,
                           double beta, double* c, int64_t ldc) noexcept nogil

cdef enum:
    CBLAS_ROW_MAJOR = 101
    CBLAS_NO_TRANS = 111
    CBLAS_TRANS = 112

ctypedef void (*set_threads_t)(int n) noexcept nogil
ctypedef void (*set_callback_t)(void* callback) noexcept nogil
ctypedef void (*set_spin_t)(double ns) noexcept nogil
ctypedef int (*get_threads_t)() noexcept nogil

cdef enum:
    SOLO_SPIN_NS = 1000000     # inside a span, the pool's workers spin 1 ms before they sleep: the Python
                               # between a layer-by-layer model's products (BatchNorm, Dropout) would
                               # otherwise cost a wake-up per product (OpenBLAS's own spin ~0.1 s)
    N_BUCKETS = 64         # products are grouped by floor(log2(m*n*k)) for the thread choice
    EXPLORE_EVERY = 128    # the slower choice is retried after 128 x (its time / the faster's) products

ctypedef struct GemmRoute:
    sgemm32_t sgemm32      # exactly one of each 32/64 pair is set (or none: built-in loops)
    sgemm64_t sgemm64
    dgemm32_t dgemm32
    dgemm64_t dgemm64
    double small_mnk       # m*n*k at or below which the built-in loop is used
    # Per-product thread choice ("adaptive" policy; see choose_threads below). NULL / 0: off.
    set_threads_t set_threads
    get_threads_t get_threads
    int adaptive
    double adapt_mnk       # products with m*n*k above this take part (below it OpenBLAS uses 1 thread)
    double ns_per_mnk[N_BUCKETS][2]   # running mean of ns per m*n*k: [0] on 1 thread, [1] on the pool
    unsigned long long seen[N_BUCKETS]          # products seen
    unsigned long long since_retry[N_BUCKETS]   # products since the slower choice was last tried
    int retry_left[N_BUCKETS]                   # products still to run on retry_choice
    int retry_choice[N_BUCKETS]
    # "Solo" spans (solo_enter/solo_exit, with the GIL): while a large model trains, fastnn's own
    # pool runs the products (OpenBLAS's jobs through its threads callback, or, without one,
    # OpenBLAS held at one thread and the products split by dense.pyx), so the memory-bound passes
    # between them use both cores without OpenBLAS's idle workers spinning on them (DECISIONS.md).
    # solo_parts: the pool size at the outermost entry.
    int solo_depth
    int solo_parts
    int solo_off
    # OpenBLAS's openblas_set_threads_callback_function and fastnn's callback (blas.pyx), or NULL:
    # with both, a span hands OpenBLAS's threaded jobs to fastnn's pool (its workers get none and
    # sleep) instead of holding it at one thread; solo_split says which the open span does.
    set_callback_t set_callback
    void* callback
    int callback_threads       # the largest pool the callback serves (MAX_THREADS / 4)
    int callback_off
    int solo_split
    set_spin_t set_spin        # the pool's idle spin (fnn_pool.h), longer inside spans; NULL: none


cdef extern from *:
    """
    #if defined(_WIN32)
    #include <windows.h>
    static double fastnn_now_ns(void) {
        LARGE_INTEGER f, c;
        QueryPerformanceFrequency(&f);
        QueryPerformanceCounter(&c);
        return (double)c.QuadPart * 1e9 / (double)f.QuadPart;
    }
    #else
    #include <time.h>
    static double fastnn_now_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
    }
    #endif
    """
    double fastnn_now_ns() noexcept nogil


cdef inline void loop_gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           floating alpha, const floating* a, Py_ssize_t lda,
                           const floating* b, Py_ssize_t ldb,
                           floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """The built-in GEMM: rank-1 updates along contiguous rows of C when B is not transposed,
    four independent dot products at a time when it is. m, n, k >= 1."""
    cdef Py_ssize_t i, j, p
    cdef floating aip, s0, s1, s2, s3
    cdef floating* cr
    cdef const floating* br
    cdef const floating* b0
    for i in range(m):                               # C = beta C (never read when beta == 0)
        cr = c + i * ldc
        if beta == 0:
            for j in range(n):
                cr[j] = 0
        elif beta != 1:
            for j in range(n):
                cr[j] = beta * cr[j]
    if not trans_b:
        for i in range(m):
            cr = c + i * ldc
            for p in range(k):
                aip = alpha * (a[p * lda + i] if trans_a else a[i * lda + p])
                br = b + p * ldb
                for j in range(n):
                    cr[j] += aip * br[j]
    else:
        for i in range(m):
            cr = c + i * ldc
            j = 0
            while j + 4 <= n:
                s0 = 0
                s1 = 0
                s2 = 0
                s3 = 0
                b0 = b + j * ldb
                for p in range(k):
                    aip = a[p * lda + i] if trans_a else a[i * lda + p]
                    s0 += aip * b0[p]
                    s1 += aip * b0[ldb + p]
                    s2 += aip * b0[2 * ldb + p]
                    s3 += aip * b0[3 * ldb + p]
                cr[j] += alpha * s0
                cr[j + 1] += alpha * s1
                cr[j + 2] += alpha * s2
                cr[j + 3] += alpha * s3
                j += 4
            while j < n:
                s0 = 0
                b0 = b + j * ldb
                for p in range(k):
                    s0 += (a[p * lda + i] if trans_a else a[i * lda + p]) * b0[p]
                cr[j] += alpha * s0
                j += 1


cdef inline bint blas_gemm(const GemmRoute* route, int ta, int tb,
                           Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           floating alpha, const floating* a, Py_ssize_t lda,
                           const floating* b, Py_ssize_t ldb,
                           floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """The product through the installed BLAS; False (nothing done) when none fits."""
    if floating is float:
        if route.sgemm64 != NULL:
            route.sgemm64(CBLAS_ROW_MAJOR, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return True
        if route.sgemm32 != NULL and max(m, n, k, lda, ldb, ldc) <= 2147483647:
            route.sgemm32(CBLAS_ROW_MAJOR, ta, tb, <int>m, <int>n, <int>k, alpha, a, <int>lda,
                          b, <int>ldb, beta, c, <int>ldc)
            return True
    else:
        if route.dgemm64 != NULL:
            route.dgemm64(CBLAS_ROW_MAJOR, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return True
        if route.dgemm32 != NULL and max(m, n, k, lda, ldb, ldc) <= 2147483647:
            route.dgemm32(CBLAS_ROW_MAJOR, ta, tb, <int>m, <int>n, <int>k, alpha, a, <int>lda,
                          b, <int>ldb, beta, c, <int>ldc)
            return True
    return False


cdef inline int pool_parts(const GemmRoute* route) noexcept nogil:
    """The threads fastnn's parallel passes may use: the BLAS pool's size (fnn.set_num_threads),
    also inside a split solo span, where OpenBLAS itself runs on one."""
    if route.solo_depth > 0:
        return route.solo_parts
    return route.get_threads() if route.get_threads != NULL else 1


cdef inline bint solo_enter(GemmRoute* route) noexcept:
    """Begin a solo span (call with the GIL held, and solo_exit after); False (nothing done)
    where OpenBLAS's thread count cannot be set, the pool has one thread or spans are off."""
    if route.set_threads == NULL or route.get_threads == NULL or route.solo_off:
        return False
    if route.solo_depth == 0:
        route.solo_parts = route.get_threads()
        if route.solo_parts <= 1:
            return False
        route.solo_split = (route.set_callback == NULL or route.callback == NULL or route.callback_off
                            or route.solo_parts > route.callback_threads)
        if route.solo_split:
            route.set_threads(1)
        else:
            route.set_callback(route.callback)
        if route.set_spin != NULL:
            route.set_spin(SOLO_SPIN_NS)
    route.solo_depth += 1
    return True


cdef inline void solo_exit(GemmRoute* route) noexcept:
    """End the solo span begun by a solo_enter that returned True."""
    route.solo_depth -= 1
    if route.solo_depth == 0:
        if route.solo_split:
            route.set_threads(route.solo_parts)
        else:
            route.set_callback(NULL)
        if route.set_spin != NULL:
            route.set_spin(0)        # back to the pool's default


cdef inline int choose_threads(GemmRoute* route, int bucket) noexcept nogil:
    """0: run this product on one thread, 1: on the whole pool. The faster of the two by the
    running means of this size bucket (each is measured first). The slower one is tried again,
    twice in a row (the first may pay for waking OpenBLAS's sleeping worker), after
    EXPLORE_EVERY x (its mean / the faster's) products, so that retrying costs about
    2 / EXPLORE_EVERY of the time however slow it is, and a change of load is noticed within
    about EXPLORE_EVERY times the slower product's duration."""
    cdef double one = route.ns_per_mnk[bucket][0], pool = route.ns_per_mnk[bucket][1]
    route.seen[bucket] += 1
    if pool == 0:
        return 1
    if one == 0:
        return 0
    if route.retry_left[bucket] > 0:
        route.retry_left[bucket] -= 1
        return route.retry_choice[bucket]
    cdef int best = 0 if one < pool else 1
    cdef double ratio = (pool / one) if best == 0 else (one / pool)
    route.since_retry[bucket] += 1
    if route.since_retry[bucket] >= EXPLORE_EVERY * ratio:
        route.since_retry[bucket] = 0
        route.retry_choice[bucket] = 1 - best
        route.retry_left[bucket] = 1
        return 1 - best
    return best


cdef inline void record_time(GemmRoute* route, int bucket, int use_pool, double per) noexcept nogil:
    """Fold one product's ns per m*n*k into its running mean: a faster sample replaces the mean
    (a choice that became fast again is believed at once), a slower one moves it by a quarter."""
    cdef double old = route.ns_per_mnk[bucket][use_pool]
    if old == 0 or per < old:
        route.ns_per_mnk[bucket][use_pool] = per
    else:
        route.ns_per_mnk[bucket][use_pool] = old + 0.25 * (per - old)


cdef inline void gemm(GemmRoute* route, bint trans_a, bint trans_b,
                      Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      floating alpha, const floating* a, Py_ssize_t lda,
                      const floating* b, Py_ssize_t ldb,
                      floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C (m, n) = alpha op(A) op(B) + beta C for row-major A, B, C with leading dimensions
    lda, ldb, ldc; op(X) = X.T when trans_x. Any of m, n, k may be 0 (then a/b may be NULL).

    With the adaptive policy on and a pool of more than one thread, a product large enough for
    OpenBLAS to split runs on one thread or on the pool, whichever has been faster at its size
    (on a loaded machine a 2-thread product waits for its busiest core: 2-5x slower measured)."""
    cdef Py_ssize_t i, j
    cdef int ta = CBLAS_TRANS if trans_a else CBLAS_NO_TRANS
    cdef int tb = CBLAS_TRANS if trans_b else CBLAS_NO_TRANS
    cdef double mnk = <double>m * n * k, t0, per
    cdef int bucket, use_pool, pool
    cdef bint done
    if m <= 0 or n <= 0:
        return
    if k <= 0:                                       # BLAS would reject lda = 0: C = beta C here
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        return
    if mnk > route.small_mnk:
        if route.adaptive and mnk > route.adapt_mnk and route.get_threads != NULL and route.set_threads != NULL:
            pool = route.get_threads()
            if pool > 1:
                bucket = 0
                while bucket < N_BUCKETS - 1 and (<double>2) ** (bucket + 1) <= mnk:
                    bucket += 1
                use_pool = choose_threads(route, bucket)
                if not use_pool:
                    route.set_threads(1)
                t0 = fastnn_now_ns()
                done = blas_gemm(route, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
                per = (fastnn_now_ns() - t0) / mnk
                if not use_pool:
                    route.set_threads(pool)
                if done:
                    record_time(route, bucket, use_pool, per)
                    return
        if blas_gemm(route, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
            return
    loop_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
