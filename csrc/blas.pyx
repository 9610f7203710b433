"""The GEMM route shared by the kernel modules (see _blas.pxd).

fastnn.backends.cpu locates NumPy's own OpenBLAS and calls set_gemm() once at import; until then,
or when it finds none, every product runs in the built-in loops of _blas.pxd.
"""

from libc.stdint cimport uintptr_t
from cython cimport floating

from _blas cimport (GemmRoute, gemm, solo_enter, solo_exit, sgemm32_t, sgemm64_t, dgemm32_t, dgemm64_t, set_threads_t,
                    get_threads_t, set_callback_t, N_BUCKETS)
from _pool cimport fnn_pool_api

import fastnn._ext.pool as _poolmod
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
_route.solo_off = __import__("os").environ.get("FASTNN_SOLO", "1") == "0"   # for comparisons; "split": no callback
_route.set_callback = NULL
_route.callback = NULL
_route.callback_threads = 0
_route.set_spin = NULL
_route.callback_off = __import__("os").environ.get("FASTNN_SOLO", "1") == "split"
_route.solo_split = 0


# OpenBLAS's threaded jobs on fastnn's pool (OpenBLAS >= 0.3.28: openblas_set_threads_callback_function).
# OpenBLAS cuts a product into numjobs jobs that wait for each other (a job packs its share of B,
# then the others use it), so the jobs must run at the same time: on the pool's parts when
# try_parallel can give them, else (called from inside one of the pool's own tasks, or no workers)
# on threads started for this call alone.
cdef extern from *:
    """
    #include "fnn_pool.h"
    typedef void (*fnn_ob_dojob)(int thread_num, void* jobdata, int dojob_data);
    typedef struct { fnn_ob_dojob dojob; char* data; size_t elsize; int dojob_data; int top; } fnn_ob_jobs;
    static const fnn_pool_api* fnn_ob_pool = 0;
    static int fnn_ob_max = 0;   /* OpenBLAS's MAX_THREADS: the size of its per-thread slots */
    /* Job ``part`` runs as OpenBLAS "thread" top - part: the slots (buffer, status word) of its
       own workers are the low ones, which a job there would keep awake (a status word set while
       the job runs stops the worker from sleeping), so the pool's jobs take the top quarter of
       the slots and jobs on threads started for one call the quarter below */
    static void fnn_ob_part(void* arg, int part, int parts) {
        fnn_ob_jobs* j = (fnn_ob_jobs*)arg;
        (void)parts;
        j->dojob(j->top >= 0 ? j->top - part : part, j->data + (size_t)part * j->elsize, j->dojob_data);
    }
    #if !defined(_WIN32)
    #include <pthread.h>
    typedef struct { fnn_ob_jobs* jobs; int part; } fnn_ob_one;
    static void* fnn_ob_thread(void* p) {
        fnn_ob_one* o = (fnn_ob_one*)p;
        fnn_ob_part(o->jobs, o->part, 0);
        return 0;
    }
    static int fnn_ob_spawned = 0;   /* calls that needed threads of their own (for the tests) */
    /* one such call at a time: they share the slots below the pool's (two parts of one pool task
       may both call OpenBLAS; their jobs do not need the pool, so waiting here cannot deadlock) */
    static pthread_mutex_t fnn_ob_spawn_lock = PTHREAD_MUTEX_INITIALIZER;
    static void fnn_ob_callback(int sync, fnn_ob_dojob dojob, int numjobs, size_t elsize, void* jobdata,
                                int dojob_data) {
        fnn_ob_jobs j;
        pthread_t t[64];
        fnn_ob_one o[64];
        int i, made = 1;
        (void)sync;
        j.dojob = dojob; j.data = (char*)jobdata; j.elsize = elsize; j.dojob_data = dojob_data;
        if (numjobs <= 0) return;
        j.top = numjobs <= fnn_ob_max / 4 ? fnn_ob_max - 1 : -1;   /* -1: slots 0 .. numjobs-1 */
        if (numjobs == 1) { fnn_ob_part(&j, 0, 1); return; }
        if (fnn_ob_pool != 0 && numjobs <= 64 && fnn_ob_pool->try_parallel(fnn_ob_part, &j, numjobs)) return;
        if (j.top >= 0) j.top = fnn_ob_max - 1 - fnn_ob_max / 4;
        pthread_mutex_lock(&fnn_ob_spawn_lock);
        __atomic_add_fetch(&fnn_ob_spawned, 1, __ATOMIC_RELAXED);
        for (i = 1; i < numjobs && i < 64; i++) {
            o[i].jobs = &j;
            o[i].part = i;
            if (pthread_create(&t[i], 0, fnn_ob_thread, &o[i]) != 0) break;
            made++;
        }
        for (i = made; i < numjobs; i++) fnn_ob_part(&j, i, numjobs);  /* not reached unless threads ran out */
        fnn_ob_part(&j, 0, numjobs);
        for (i = 1; i < made; i++) pthread_join(t[i], 0);
        pthread_mutex_unlock(&fnn_ob_spawn_lock);
    }
    static void* fnn_ob_callback_address(void) { return (void*)fnn_ob_callback; }
    static int fnn_ob_spawns(void) { return __atomic_load_n(&fnn_ob_spawned, __ATOMIC_RELAXED); }
    #else
    static void* fnn_ob_callback_address(void) { return 0; }
    static int fnn_ob_spawns(void) { return 0; }
    #endif
    #if defined(_WIN32)
    #define FNN_OB_CONCURRENT 0   /* the pool runs parts in turn there: a span would serialize */
    #else
    #define FNN_OB_CONCURRENT 1
    #endif
    """
    const fnn_pool_api* fnn_ob_pool
    int fnn_ob_max
    void* fnn_ob_callback_address() noexcept nogil
    int fnn_ob_spawns() noexcept nogil
    const int FNN_OB_CONCURRENT

fnn_ob_pool = <const fnn_pool_api*><uintptr_t>_poolmod.api_address()
_route.set_spin = fnn_ob_pool.set_spin
if not FNN_OB_CONCURRENT:
    _route.solo_off = 1


def set_threads_callback(uintptr_t setter, int max_threads):
    """Install OpenBLAS's ``openblas_set_threads_callback_function`` (0: none, e.g. an OpenBLAS
    older than 0.3.28) and its MAX_THREADS (from its config; below 16: not used): solo spans then
    hand OpenBLAS's jobs to fastnn's pool through it, for pools of up to MAX_THREADS / 4."""
    if _route.solo_depth > 0:
        raise RuntimeError("set_threads_callback: a solo span is open.")
    usable = setter != 0 and max_threads >= 16
    _route.set_callback = <set_callback_t>setter if usable else NULL
    _route.callback = fnn_ob_callback_address() if usable else NULL
    global fnn_ob_max
    fnn_ob_max = max_threads if usable else 0
    _route.callback_threads = max_threads // 4 if usable else 0


def set_solo_callback(bint enabled):
    """Let solo spans use the callback (the default, where OpenBLAS has it) or not (OpenBLAS held
    at one thread and the products split by fastnn); returns the previous setting. For tests and
    comparisons (FASTNN_SOLO=split at import does the same)."""
    if _route.solo_depth > 0:
        raise RuntimeError("set_solo_callback: a solo span is open.")
    old = not _route.callback_off
    _route.callback_off = 0 if enabled else 1
    return old


def solo_mode():
    """How a solo span would run now: 'callback' (OpenBLAS's jobs on fastnn's pool), 'split'
    (OpenBLAS on one thread, products split by fastnn) or 'off'."""
    if _route.solo_off or _route.set_threads == NULL or _route.get_threads == NULL:
        return "off"
    if _route.set_callback != NULL and _route.callback != NULL and not _route.callback_off:
        return "callback"
    return "split"


ctypedef struct _InTask:
    Py_ssize_t m, n, k
    const double* a
    const double* b
    double* c


cdef void _in_task_part(void* arg, int part, int parts) noexcept nogil:
    cdef _InTask* t = <_InTask*>arg
    if part == 0:
        gemm(&_route, False, False, t.m, t.n, t.k, <double>1, t.a, t.k, t.b, t.n, <double>0, t.c, t.n)


def _product_in_pool_task(const double[:, ::1] a not None, const double[:, ::1] b not None,
                          double[:, ::1] c not None):
    """c = a @ b computed by part 0 of a two-part task on fastnn's pool (a test hook: an OpenBLAS
    product whose jobs cannot have the pool, which the caller's own task holds)."""
    if a.shape[1] != b.shape[0] or c.shape[0] != a.shape[0] or c.shape[1] != b.shape[1]:
        raise ValueError("_product_in_pool_task: shapes do not match.")
    cdef _InTask t
    t.m, t.n, t.k, t.a, t.b, t.c = a.shape[0], b.shape[1], a.shape[1], &a[0, 0], &b[0, 0], &c[0, 0]
    with nogil:
        fnn_ob_pool.parallel(_in_task_part, &t, 2)


def callback_spawns():
    """OpenBLAS calls whose jobs ran on threads started for them (the pool was taken by the
    caller's own task), since the module loaded."""
    return fnn_ob_spawns()


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
    """Let large training chains run in solo spans (the default where the pool's parts run at
    once, not on Windows; FASTNN_SOLO=0 at import turns them off) or not; returns the previous
    setting. For tests and comparisons."""
    old = not _route.solo_off
    _route.solo_off = 0 if (enabled and FNN_OB_CONCURRENT) else 1
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
