"""Compiled inference: fastnn.inference's folded steps run as one call per predict.

A ``Chain`` holds the steps that fastnn.inference folds a model into (dense: y = f(x @ W + b);
affine: y = f(x * w + b) per feature; activation: y = f(x)), with pointers to their arrays:
W (n_in, n_out) C-contiguous, b (n_out,). ``Chain.run`` computes the whole stack for a block of
rows with the GIL released, into two ping-pong buffers the caller owns.

Two kinds of products (``Chain.kernels``):

- fastnn's own (float32, a CPU with AVX-512F, a chain packed with panels): csrc/fnn_gemm.h's
  kernels on W laid out once in panels of 32 columns, bias and ReLU in registers. More rows
  are split over the pool by runs of rows, each part taking its rows ROWS_BLOCK at a time
  through every step; one row's products of at least MIN_PANEL_SPLIT weights are split by
  panels, the parts meeting at a barrier between steps (one hand-off for the whole stack).
- OpenBLAS's (NumPy's own, installed by set_gemv and the blas module's route): one row
  through its gemv, more through its gemm (its own threads), then one pass adds the bias and
  applies the activation in place while the output is in cache. A one-row product of
  MIN_SPLIT to MAX_SPLIT weights is split by output columns over the pool, each part a gemv on
  its block, read from a contiguous copy made by ``Chain.pack`` for that many parts.

Activations other than a fused ReLU use csrc/_activations.pxd (the training kernels' formulas);
softmax, which needs whole rows, runs after the parts of a split product. The pool is the one
fastnn's kernels share (fastnn._ext.pool, csrc/fnn_pool.h: the caller runs part 0, workers
start at the first split product and sleep after 50 us idle, a forked child starts its own);
inference has its own thread count (set_threads). Where the parts would run in turn (Windows)
nothing that waits between parts is split (the pool's ready()).
Measurements: docs/DECISIONS.md and docs/deployment.md.
"""

from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cython cimport floating

from _activations cimport act_forward, IDENTITY, N_ACTIVATIONS, RELU, SOFTMAX
from _blas cimport GemmRoute, blas_gemm, loop_gemm, CBLAS_NO_TRANS, CBLAS_ROW_MAJOR, CBLAS_TRANS

from _pool cimport fnn_barrier, fnn_barrier_init, fnn_barrier_wait, fnn_pool_api, fnn_share

import fastnn._ext.blas as _blas
import fastnn._ext.pool as _poolmod

cdef GemmRoute* _route = <GemmRoute*><uintptr_t>_blas.route_address()
cdef const fnn_pool_api* _pool = <const fnn_pool_api*><uintptr_t>_poolmod.api_address()
cdef int _threads = 1      # parts a split product runs in (set_threads)

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* no NaN or inf in a[:n]: an exponent of all ones, tested on the bits (an OR over integers
       vectorizes; a floating sum would not, without reassociation) */
    #define FNN_FINITE(T, U, EXP, NAME)                                                          \
    static int NAME(const T* a, Py_ssize_t n) {                                                \
        Py_ssize_t i;                                                                          \
        U bad = 0, v;                                                                          \
        for (i = 0; i < n; i++) {                                                              \
            memcpy(&v, a + i, sizeof v);                                                       \
            bad |= (U)((v & EXP) == EXP);                                                      \
        }                                                                                      \
        return bad == 0;                                                                       \
    }
    FNN_FINITE(float, uint32_t, 0x7f800000u, fnn_finite_f)
    FNN_FINITE(double, uint64_t, 0x7ff0000000000000ull, fnn_finite_d)

    """
    bint fnn_finite_f(const float* a, Py_ssize_t n) noexcept nogil
    bint fnn_finite_d(const double* a, Py_ssize_t n) noexcept nogil


cdef extern from "fnn_gemm.h":
    enum:
        FNN_NR
        FNN_MR
    Py_ssize_t fnn_panel_floats(Py_ssize_t k, Py_ssize_t n) noexcept nogil
    void fnn_pack_panels(const float* w, Py_ssize_t k, Py_ssize_t n, float* dst) noexcept nogil
    void* fnn_aligned_alloc(size_t nbytes) noexcept nogil
    void fnn_aligned_free(void* p) noexcept nogil
    int fnn_gemm_available() noexcept nogil
    void fnn_gemm_rows(const float* a, Py_ssize_t rows, Py_ssize_t k, Py_ssize_t lda, const float* w,
                       Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, const float* b, float* c, Py_ssize_t ldc,
                       int relu) noexcept nogil
    void fnn_gemv_panels(const float* x, Py_ssize_t k, const float* w, Py_ssize_t p0, Py_ssize_t p1,
                         Py_ssize_t n, const float* b, float* y, int relu) noexcept nogil


cdef enum:
    DENSE = 0
    AFFINE = 1
    ACTIVATION = 2

KINDS = {"dense": DENSE, "affine": AFFINE, "activation": ACTIVATION}


ctypedef struct StepC:
    int kind
    int code
    double alpha
    Py_ssize_t n_in
    Py_ssize_t n_out
    void* w
    void* b
    void* packed              # W cut into packed_parts column blocks, each contiguous (see Chain.pack)
    int packed_parts
    float* panels             # float32 W in panels of 32 columns for fastnn's own kernels (fnn_gemm.h)


cdef inline bint _finite(const floating* a, Py_ssize_t n) noexcept nogil:
    """No NaN or inf in a[:n]."""
    if floating is double:
        return fnn_finite_d(a, n)
    else:
        return fnn_finite_f(a, n)


ctypedef void (*sgemv32_t)(int order, int trans, int m, int n, float alpha, const float* a, int lda,
                           const float* x, int incx, float beta, float* y, int incy) noexcept nogil
ctypedef void (*sgemv64_t)(int order, int trans, int64_t m, int64_t n, float alpha, const float* a, int64_t lda,
                           const float* x, int64_t incx, float beta, float* y, int64_t incy) noexcept nogil
ctypedef void (*dgemv32_t)(int order, int trans, int m, int n, double alpha, const double* a, int lda,
                           const double* x, int incx, double beta, double* y, int incy) noexcept nogil
ctypedef void (*dgemv64_t)(int order, int trans, int64_t m, int64_t n, double alpha, const double* a,
                           int64_t lda, const double* x, int64_t incx, double beta, double* y,
                           int64_t incy) noexcept nogil

cdef sgemv32_t _sgemv32 = NULL      # OpenBLAS's gemv (set_gemv): one row's product, as NumPy's np.dot
cdef sgemv64_t _sgemv64 = NULL
cdef dgemv32_t _dgemv32 = NULL
cdef dgemv64_t _dgemv64 = NULL


def set_gemv(uintptr_t sgemv, uintptr_t dgemv, bint ilp64):
    """Install OpenBLAS's cblas_sgemv and cblas_dgemv (addresses; 64-bit integers when ``ilp64``)
    for one-row products; 0, 0 removes them (GEMM then)."""
    global _sgemv32, _sgemv64, _dgemv32, _dgemv64
    _sgemv32, _sgemv64, _dgemv32, _dgemv64 = NULL, NULL, NULL, NULL
    if ilp64:
        _sgemv64, _dgemv64 = <sgemv64_t>sgemv, <dgemv64_t>dgemv
    else:
        _sgemv32, _dgemv32 = <sgemv32_t>sgemv, <dgemv32_t>dgemv


cdef inline bint _gemv(const floating* x, const floating* w, floating* y, Py_ssize_t k, Py_ssize_t n,
                       Py_ssize_t ldw) noexcept nogil:
    """y (n,) = x (k,) @ w (k, n) row-major with row stride ldw, in OpenBLAS's gemv; False when
    none is installed or the sizes exceed the 32-bit integers of a 32-bit BLAS."""
    if floating is float:
        if _sgemv64 != NULL:
            _sgemv64(CBLAS_ROW_MAJOR, CBLAS_TRANS, k, n, 1, w, ldw, x, 1, 0, y, 1)
            return True
        if _sgemv32 != NULL and k < 2147483647 and ldw < 2147483647:
            _sgemv32(CBLAS_ROW_MAJOR, CBLAS_TRANS, <int>k, <int>n, 1, w, <int>ldw, x, 1, 0, y, 1)
            return True
    else:
        if _dgemv64 != NULL:
            _dgemv64(CBLAS_ROW_MAJOR, CBLAS_TRANS, k, n, 1, w, ldw, x, 1, 0, y, 1)
            return True
        if _dgemv32 != NULL and k < 2147483647 and ldw < 2147483647:
            _dgemv32(CBLAS_ROW_MAJOR, CBLAS_TRANS, <int>k, <int>n, 1, w, <int>ldw, x, 1, 0, y, 1)
            return True
    return False


cdef enum:
    MIN_SPLIT = 262144       # k * n from which one row's product is split by columns over the pool
    MAX_SPLIT = 4194304      # ... and up to which (beyond, OpenBLAS's gemv may use its own threads)
    COLUMN_ALIGN = 16        # parts start at multiples of 16 columns (whole cache lines)


ctypedef struct RowTask:      # one row's product y = f(x @ W + b), split by output columns
    const void* x
    const void* w
    const void* packed        # W's column blocks for packed_parts parts, or NULL
    int packed_parts
    void* y
    const void* b
    Py_ssize_t k
    Py_ssize_t n
    int code
    double alpha
    bint finish               # add b and apply the activation in each part
    bint double_


cdef inline void _columns(Py_ssize_t n, int part, int parts, Py_ssize_t* j0, Py_ssize_t* j1) noexcept nogil:
    """Columns [j0, j1) of part ``part`` of ``parts``, on COLUMN_ALIGN boundaries."""
    cdef Py_ssize_t size = (n + parts - 1) // parts
    size = (size + COLUMN_ALIGN - 1) // COLUMN_ALIGN * COLUMN_ALIGN
    j0[0] = min(n, part * size)
    j1[0] = min(n, j0[0] + size)


cdef void _row_part(void* arg, int part, int parts) noexcept nogil:
    """Part ``part`` of ``parts`` of a RowTask: its block of columns, read from its packed block
    (contiguous: 1.4-1.8x faster than the same block read with W's row stride) when W was
    packed for this many parts."""
    cdef RowTask* t = <RowTask*>arg
    cdef Py_ssize_t j0, j1
    _columns(t.n, part, parts, &j0, &j1)
    if j1 <= j0:
        return
    cdef bint packed = t.packed != NULL and t.packed_parts == parts
    cdef Py_ssize_t offset = t.k * j0 if packed else j0, ldw = j1 - j0 if packed else t.n
    cdef const void* w = t.packed if packed else t.w
    if t.double_:
        _gemv(<const double*>t.x, <const double*>w + offset, <double*>t.y + j0, t.k, j1 - j0, ldw)
        if t.finish:
            act_forward(t.code, <double>t.alpha, <double*>t.y + j0,
                        <const double*>t.b + j0 if t.b != NULL else <const double*>NULL, <double*>NULL,
                        <double*>t.y + j0, 1, j1 - j0)
    else:
        _gemv(<const float*>t.x, <const float*>w + offset, <float*>t.y + j0, t.k, j1 - j0, ldw)
        if t.finish:
            act_forward(t.code, <float>t.alpha, <float*>t.y + j0,
                        <const float*>t.b + j0 if t.b != NULL else <const float*>NULL, <float*>NULL,
                        <float*>t.y + j0, 1, j1 - j0)


cdef inline int _split_row(StepC* st, const floating* x, floating* y, bint finish, int threads) noexcept nogil:
    """One row's product (and, with ``finish``, its bias and activation) split by columns over
    the pool: 1 if done with finish, 0 if done without, -1 if not split (too small or too
    large, one thread, no gemv)."""
    cdef Py_ssize_t size = st.n_in * st.n_out
    cdef RowTask task
    cdef int parts
    if threads < 2 or size < MIN_SPLIT or size > MAX_SPLIT:
        return -1
    if (floating is float and _sgemv32 == NULL and _sgemv64 == NULL) or (
            floating is double and _dgemv32 == NULL and _dgemv64 == NULL):
        return -1
    parts = <int>min(<Py_ssize_t>threads, (st.n_out + COLUMN_ALIGN - 1) // COLUMN_ALIGN)
    if parts < 2:
        return -1
    task.x, task.w, task.y, task.b = x, st.w, y, st.b
    task.packed, task.packed_parts = st.packed, st.packed_parts
    task.k, task.n, task.code, task.alpha = st.n_in, st.n_out, st.code, st.alpha
    task.finish, task.double_ = finish, floating is double
    _pool.parallel(_row_part, &task, parts)
    return 1 if finish else 0


cdef inline void _product(const floating* x, const floating* w, floating* y, Py_ssize_t rows, Py_ssize_t k,
                          Py_ssize_t n) noexcept nogil:
    """y = x @ w in OpenBLAS with its own thread choice: one row in its gemv, which is faster than
    its gemm with one row (784 x 512 float32: 18 against 27 us here), more in its gemm; or in
    the route's built-in loop when no BLAS is installed."""
    if rows == 1 and _gemv(x, w, y, k, n, n):
        return
    if not blas_gemm(_route, CBLAS_NO_TRANS, CBLAS_NO_TRANS, rows, n, k, 1, x, k, w, n, 0, y, n):
        loop_gemm(False, False, rows, n, k, 1, x, k, w, n, 0, y, n)


cdef inline bint _finish(StepC* st, floating* y, Py_ssize_t rows, bint screen) noexcept nogil:
    """y = f(y + b) in place, one pass; with ``screen``, False (y left as y + b) when y + b holds
    NaN or inf."""
    cdef Py_ssize_t n = st.n_out
    cdef const floating* b = <const floating*>st.b
    if screen:
        if b != NULL:
            act_forward(0, <floating>0, y, b, <floating*>NULL, y, rows, n)  # code 0: identity
            b = NULL
        if not _finite(y, rows * n):
            return False
    act_forward(st.code, <floating>st.alpha, y, b, <floating*>NULL, y, rows, n)
    return True


cdef inline bint _affine(StepC* st, const floating* src, floating* dst, Py_ssize_t rows, bint screen) noexcept nogil:
    """An affine step over ``rows`` rows: dst = f(src * w + b) per feature (_finish: False when
    ``screen`` found NaN/inf)."""
    cdef Py_ssize_t i, j, n = st.n_out
    cdef const floating* w = <const floating*>st.w
    for i in range(rows):
        for j in range(n):
            dst[i * n + j] = src[i * n + j] * w[j]
    return _finish(st, dst, rows, screen)


# ------------------------------------------------ float32 on fastnn's own kernels (fnn_gemm.h)
cdef enum:
    ROWS_BLOCK = 192           # rows a part takes through the whole stack at a time (a multiple of FNN_MR)
    MIN_ROWS_WORK = 262144     # rows x multiply-adds from which a predict is split over the pool
    MIN_PANEL_SPLIT = 262144   # weights from which a step is split by panels (each part keeps its
                               # share of W in its own L2), below by rows


ctypedef struct ChainTask:     # the stack over rows of x, for the pool's parts
    StepC* steps
    Py_ssize_t n_steps
    const float* x
    float* out
    float* ping
    float* pong
    Py_ssize_t rows
    bint screen                # check the first step's pre-activation for NaN/inf
    fnn_barrier barrier
    char bad[64]               # per part: the screen found NaN/inf


cdef inline bint _panel_split(StepC* st, int parts) noexcept nogil:
    """Whether the parts share this step by panels (its weights are large) rather than by rows."""
    return parts > 1 and st.kind == DENSE and st.n_in * st.n_out >= MIN_PANEL_SPLIT and st.n_out > FNN_NR


cdef bint _dense_block(StepC* st, const float* src, float* dst, Py_ssize_t m, Py_ssize_t p0, Py_ssize_t p1,
                       bint screen) noexcept nogil:
    """dst[:m, panels p0..p1] = f(src[:m] @ W + b) (softmax left to the caller); False when
    ``screen`` found NaN/inf in the pre-activation (then the block is left unfinished)."""
    cdef Py_ssize_t n = st.n_out, j0 = p0 * FNN_NR, j1 = min(n, p1 * FNN_NR), i
    cdef bint fused = st.code == RELU and not screen      # ReLU in registers
    if m <= 0 or p1 <= p0:
        return True
    if m == 1:
        fnn_gemv_panels(src, st.n_in, st.panels, p0, p1, n, <const float*>st.b, dst, fused)
    else:
        fnn_gemm_rows(src, m, st.n_in, st.n_in, st.panels, p0, p1, n, <const float*>st.b, dst, n, fused)
    for i in range(m):
        if screen and not _finite(dst + i * n + j0, j1 - j0):
            return False
        if not fused and st.code != IDENTITY and st.code != SOFTMAX:
            act_forward(st.code, <float>st.alpha, dst + i * n + j0, <const float*>NULL, <float*>NULL,
                        dst + i * n + j0, 1, j1 - j0)
    return True


cdef void _chain_part(void* arg, int part, int parts) noexcept nogil:
    """Part ``part`` of a ChainTask. Rows: each part takes its own run of rows (whole FNN_MR
    blocks), ROWS_BLOCK at a time through every step (a block's step outputs stay in cache), with
    no wait on the others (sharing each block's steps, with a barrier between them, measured 9 %
    slower on the medium model). One row: the parts share each step, a dense step with large
    weights by panels (each part's share of W stays in its own L2), any other in part 0, and
    meet at a barrier before the next step."""
    cdef ChainTask* t = <ChainTask*>arg
    cdef Py_ssize_t c0 = 0, end = t.rows, m, s, n, r0, r1, p0, p1, panels
    cdef const float* src
    cdef float* dst
    cdef StepC* st
    cdef bint screen, by_panels
    if t.rows > 1:             # this part's rows, alone
        fnn_share(t.rows, FNN_MR, part, parts, &c0, &end)
        part, parts = 0, 1
    while c0 < end:
        m = min(<Py_ssize_t>ROWS_BLOCK, end - c0)
        src = t.x + c0 * t.steps[0].n_in
        for s in range(t.n_steps):
            st = &t.steps[s]
            n = st.n_out
            dst = (t.out if s == t.n_steps - 1 else (t.ping if s % 2 == 0 else t.pong)) + c0 * n
            screen = t.screen and s == 0
            by_panels = _panel_split(st, parts)
            panels = (n + FNN_NR - 1) // FNN_NR
            r0, r1, p0, p1 = 0, m, 0, panels
            if by_panels:
                fnn_share(panels, 1, part, parts, &p0, &p1)
            else:
                fnn_share(m, FNN_MR, part, parts, &r0, &r1)
            if st.kind == DENSE:
                if not _dense_block(st, src + r0 * st.n_in, dst + r0 * n, r1 - r0, p0, p1, screen):
                    t.bad[part] = 1
            elif st.kind == AFFINE:
                if not _affine(st, src + r0 * n, dst + r0 * n, r1 - r0, screen):
                    t.bad[part] = 1
            elif r1 > r0:
                act_forward(st.code, <float>st.alpha, src + r0 * n, <const float*>NULL, <float*>NULL,
                            dst + r0 * n, r1 - r0, n)
            if st.kind == DENSE and st.code == SOFTMAX:      # needs whole rows
                if by_panels:
                    fnn_barrier_wait(&t.barrier)
                    fnn_share(m, FNN_MR, part, parts, &r0, &r1)
                if r1 > r0:
                    act_forward(SOFTMAX, <float>0, dst + r0 * n, <const float*>NULL, <float*>NULL,
                                dst + r0 * n, r1 - r0, n)
            if parts > 1 and s < t.n_steps - 1:
                fnn_barrier_wait(&t.barrier)
            src = dst
        c0 += m


cdef bint _run_panels(StepC* steps, Py_ssize_t n_steps, const float* x, float* out, float* ping, float* pong,
                      Py_ssize_t rows, bint screen, int threads) noexcept nogil:
    """The stack over rows of x on fastnn's own kernels, split over the pool when it gains (one
    row: a step large enough to split by panels; more: enough work); False when the screen found
    NaN/inf."""
    cdef ChainTask task
    cdef Py_ssize_t s, work = 0
    cdef int parts = 1, p
    task.steps, task.n_steps, task.x, task.out, task.ping, task.pong = steps, n_steps, x, out, ping, pong
    task.rows, task.screen = rows, screen
    if threads > 1:
        for s in range(n_steps):
            work += steps[s].n_in * steps[s].n_out
            if rows == 1 and _panel_split(&steps[s], threads):
                parts = threads
        if rows > 1 and rows * work >= MIN_ROWS_WORK:
            parts = threads
        if parts > 1 and not _pool.ready(parts):
            parts = 1
    fnn_barrier_init(&task.barrier, parts)
    for p in range(parts):
        task.bad[p] = 0
    _pool.parallel(_chain_part, &task, parts)
    for p in range(parts):
        if task.bad[p]:
            return False
    return True


cdef class Chain:
    """The folded steps of one model, for ``run``. ``steps``: (kind, n_in, n_out, activation code,
    alpha, weight, bias) per step, kind in KINDS; weight (n_in, n_out) for dense and (n,) for
    affine, None for activation; bias (n_out,) or None; every array C-contiguous in ``dtype``
    (float32 or float64), finite, and not changed while the chain lives (it keeps them)."""

    cdef StepC* _steps
    cdef Py_ssize_t _n
    cdef bint _panels           # every dense step has its panels: float32 on fastnn's own kernels
    cdef object _keep
    cdef readonly object dtype
    cdef readonly Py_ssize_t n_features, n_outputs, width

    def __cinit__(self, steps, dtype):
        import numpy as np

        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"Chain: dtype must be float32 or float64; got {self.dtype}.")
        steps = list(steps)
        if not steps:
            raise ValueError("Chain: no steps.")
        self._steps = <StepC*>malloc(len(steps) * sizeof(StepC))
        if self._steps == NULL:
            raise MemoryError()
        self._n = len(steps)
        self._keep = []
        self.width = 0
        cdef Py_ssize_t k = 0, prev = -1
        cdef StepC* st
        for kind, n_in, n_out, code, alpha, weight, bias in steps:
            st = &self._steps[k]
            st.kind, st.n_in, st.n_out, st.code, st.alpha = KINDS[kind], n_in, n_out, code, alpha
            if not 0 <= code < N_ACTIVATIONS or n_in < 1 or n_out < 1 or (prev >= 0 and n_in != prev):
                raise ValueError(f"Chain: step {k} does not fit (kind {kind!r}, {n_in} -> {n_out}, code {code}).")
            if st.kind != DENSE and n_in != n_out:
                raise ValueError(f"Chain: step {k} ({kind}) must keep its width; got {n_in} -> {n_out}.")
            st.w = self._pointer(weight, (n_in, n_out) if st.kind == DENSE else (n_in,),
                                 required=st.kind != ACTIVATION, step=k)
            st.b = self._pointer(bias, (n_out,), required=False, step=k)
            st.packed, st.packed_parts, st.panels = NULL, 0, NULL
            if st.kind == ACTIVATION and (st.w != NULL or st.b != NULL):
                raise ValueError(f"Chain: step {k} (activation) takes no arrays.")
            self.width = max(self.width, n_out)
            prev = n_out
            k += 1
        self.n_features, self.n_outputs = self._steps[0].n_in, self._steps[self._n - 1].n_out

    cdef void* _pointer(self, a, shape, bint required, Py_ssize_t step) except? NULL:
        import numpy as np

        if a is None:
            if required:
                raise ValueError(f"Chain: step {step} needs its weight array.")
            return NULL
        if (not isinstance(a, np.ndarray) or a.dtype != self.dtype or a.shape != shape
                or not a.flags.c_contiguous):
            raise ValueError(f"Chain: step {step}: expected a C-contiguous {self.dtype} array of shape {shape}.")
        self._keep.append(a)
        return <void*><uintptr_t>a.ctypes.data

    def __dealloc__(self):
        cdef Py_ssize_t k
        if self._steps != NULL:
            for k in range(self._n):
                free(self._steps[k].packed)
                fnn_aligned_free(self._steps[k].panels)
            free(self._steps)

    def pack(self, int parts, bint panels=True):
        """Lay the weights out once for the products that read them (for weights that never
        change: a chain whose weights change in place must not be packed), before the first run;
        returns the bytes used. With ``panels``, a float32 chain on a CPU with AVX-512 has every
        dense weight copied into panels of 32 columns and runs on fastnn's own kernels
        (fnn_gemm.h; ``kernels`` says which run). Otherwise the weights that a one-row product
        splits into ``parts`` are copied into contiguous column blocks (part p's block at
        k * j0, k x (j1 - j0) row-major), read by runs split into that many parts."""
        cdef Py_ssize_t k, i, j0, j1, total = 0, item = self.dtype.itemsize, size
        cdef StepC* st
        cdef int p
        cdef char* dst
        for k in range(self._n):
            if self._steps[k].packed != NULL or self._steps[k].panels != NULL:
                raise RuntimeError("Chain.pack: the chain is packed already.")
        if panels and item == 4 and fnn_gemm_available():
            for k in range(self._n):
                st = &self._steps[k]
                if st.kind != DENSE:
                    continue
                size = fnn_panel_floats(st.n_in, st.n_out)
                st.panels = <float*>fnn_aligned_alloc(size * 4)
                if st.panels == NULL:
                    raise MemoryError()
                fnn_pack_panels(<const float*>st.w, st.n_in, st.n_out, st.panels)
                total += size * 4
            self._panels = True
            return total
        for k in range(self._n):
            st = &self._steps[k]
            size = st.n_in * st.n_out
            if st.kind != DENSE or parts < 2 or size < MIN_SPLIT or size > MAX_SPLIT:
                continue
            st.packed = malloc(size * item)
            if st.packed == NULL:
                raise MemoryError()
            st.packed_parts = parts
            for p in range(parts):
                _columns(st.n_out, p, parts, &j0, &j1)
                dst = <char*>st.packed + st.n_in * j0 * item
                for i in range(st.n_in):
                    memcpy(dst + i * (j1 - j0) * item, <char*>st.w + (i * st.n_out + j0) * item, (j1 - j0) * item)
            total += size * item
        return total

    @property
    def kernels(self):
        """'fastnn-avx512' (float32 panels on fastnn's own kernels) or 'openblas'."""
        return "fastnn-avx512" if self._panels else "openblas"

    def run(self, const floating[:, ::1] x not None, floating[:, ::1] out not None, floating[::1] buf not None,
            bint screen=False):
        """out = the chain applied to x (rows, n_features) -> (rows, n_outputs); ``buf`` holds at
        least scratch_size(rows) values. With ``screen``, returns False (out unfinished) when the
        first step's pre-activation holds NaN or inf; True otherwise."""
        cdef Py_ssize_t rows = x.shape[0]
        if x.shape[1] != self.n_features or out.shape[0] != rows or out.shape[1] != self.n_outputs:
            raise ValueError("Chain.run: x or out does not match the chain.")
        if x.itemsize != self.dtype.itemsize:
            raise TypeError(f"Chain.run: the chain computes in {self.dtype}.")
        if buf.shape[0] < self.scratch_size(rows):
            raise ValueError("Chain.run: buf is too small; see scratch_size.")
        if rows == 0:
            return True
        cdef floating* ping = &buf[0]
        cdef floating* pong = ping + rows * self.width
        cdef const floating* src = &x[0, 0]
        cdef floating* dst
        cdef const floating* w
        cdef StepC* st
        cdef Py_ssize_t s, n
        cdef bint ok = True
        cdef int split, threads = _threads
        if floating is float:
            if self._panels:
                with nogil:
                    ok = _run_panels(self._steps, self._n, src, &out[0, 0], ping, pong, rows, screen, threads)
                return ok
        with nogil:
            for s in range(self._n):
                st = &self._steps[s]
                dst = &out[0, 0] if s == self._n - 1 else (ping if s % 2 == 0 else pong)
                n, w = st.n_out, <const floating*>st.w
                if st.kind == DENSE:
                    split = -1
                    if rows == 1:
                        split = _split_row(st, src, dst, st.code != SOFTMAX and not (screen and s == 0), threads)
                    if split < 0:
                        _product(src, w, dst, rows, st.n_in, n)
                    if split != 1 and not _finish(st, dst, rows, screen and s == 0):
                        ok = False
                        break
                elif st.kind == AFFINE:
                    if not _affine(st, src, dst, rows, screen and s == 0):
                        ok = False
                        break
                else:
                    act_forward(st.code, <floating>st.alpha, src, <const floating*>NULL, <floating*>NULL, dst,
                                rows, n)
                src = dst
        return ok

    def scratch_size(self, Py_ssize_t rows):
        """Values ``run`` needs in ``buf`` for ``rows`` rows (two step outputs)."""
        return 2 * rows * self.width


def set_threads(int n):
    """Threads a split product runs in (the caller's included), 1 to 64; returns the value set.
    Workers already started stay, asleep, when it shrinks."""
    global _threads
    _threads = max(1, min(n, 64))
    return _threads


def get_threads():
    """Threads a split product runs in (the caller's included)."""
    return _threads


def panels_available():
    """Whether this CPU runs fastnn's own float32 kernels (AVX-512F, asked of the CPU)."""
    return bool(fnn_gemm_available())


def pool_workers():
    """Worker threads the shared pool (fastnn._ext.pool) has started in this process."""
    return _poolmod.workers()


def pool_sleeps():
    """Times a worker of the shared pool went to sleep (idle longer than the spin time)."""
    return _poolmod.sleeps()
