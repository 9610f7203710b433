"""Dense layer kernels: out = f(x @ w + b) and its gradients.

x (n, n_in), w (n_in, n_out), b (n_out,), out/z/dy/dz/y (n, n_out), dw like w, db like b, dx like
x; all C-contiguous, one floating dtype. The adapter (fastnn.backends.cpu) allocates; the shape
checks here only keep a wrong call from touching memory out of bounds (it then raises and the
adapter explains). GEMMs go through the route of _blas.pxd; the elementwise work is one serial
pass over the output (forward) or over dz (backward).
"""

from libc.stdint cimport uint16_t, uintptr_t
from libc.stdlib cimport calloc, free
from cython cimport floating

from _activations cimport act_forward, act_backward, IDENTITY, GELU, SILU, N_ACTIVATIONS
from _blas cimport GemmRoute, blas_gemm, gemm, loop_gemm, pool_parts, solo_enter, solo_exit, CBLAS_NO_TRANS, CBLAS_TRANS
from _pool cimport fnn_barrier, fnn_barrier_init, fnn_barrier_wait, fnn_pool_api, fnn_share
from _types cimport ptr1, cptr1, ptr2, cptr2

import fastnn._ext.blas as _blas
import fastnn._ext.pool as _poolmod

cdef GemmRoute* _route = <GemmRoute*><uintptr_t>_blas.route_address()


# ------------------------------------------------------------------ bf16 products (fnn_bf16.h)
cdef extern from "fnn_bf16.h":
    int fnn_bf16_path() noexcept nogil
    void fnn_bf16_set_cap(int cap) noexcept nogil
    void* fnn_bf16_buffer(int which, size_t nbytes) noexcept nogil
    const int fnn_bf16_kept
    void fnn_bf16_round(const float* src, float* dst, Py_ssize_t n) noexcept nogil
    void fnn_bf16_pack_a(int trans, const float* a, Py_ssize_t lda, Py_ssize_t m, Py_ssize_t k,
                         uint16_t* dst, Py_ssize_t ib0, Py_ssize_t ib1) noexcept nogil
    void fnn_bf16_pack_b(int trans, const float* b, Py_ssize_t ldb, Py_ssize_t k, Py_ssize_t n,
                         uint16_t* dst, Py_ssize_t jb0, Py_ssize_t jb1) noexcept nogil
    void fnn_bf16_gemm_packed(int path, const uint16_t* ap, const uint16_t* bp, Py_ssize_t m, Py_ssize_t n,
                              Py_ssize_t k, float* c, Py_ssize_t ldc, Py_ssize_t ib0, Py_ssize_t ib1,
                              Py_ssize_t jb0, Py_ssize_t jb1) noexcept nogil

cdef const fnn_pool_api* _pool = <const fnn_pool_api*><uintptr_t>_poolmod.api_address()

cdef enum:
    BF16_SPLIT_MNK = 4194304       # m n k from which a bf16 product is split over the pool
    BF16_TILE_MNK = 32768          # ... and below which it runs on the portable path (same numbers)


ctypedef struct Bf16Task:          # one bf16 product, for the pool's parts
    int path
    bint ta, tb
    Py_ssize_t m, n, k, lda, ldb, ldc
    const float* a
    const float* b
    float* c
    uint16_t* pa
    uint16_t* pb
    bint by_columns                # the parts share the product by B tiles (else by A tiles)
    fnn_barrier barrier


cdef void _bf16_part(void* arg, int part, int parts) noexcept nogil:
    """Part ``part``: its share of A's and B's tiles packed, then (once every part has packed)
    its share of the outputs, by pairs of B tiles (columns) or of A tiles (rows)."""
    cdef Bf16Task* t = <Bf16Task*>arg
    cdef Py_ssize_t MB = (t.m + 15) // 16, NB = (t.n + 15) // 16, i0, i1, j0, j1
    fnn_share(MB, 1, part, parts, &i0, &i1)
    fnn_bf16_pack_a(t.ta, t.a, t.lda, t.m, t.k, t.pa, i0, i1)
    fnn_share(NB, 1, part, parts, &j0, &j1)
    fnn_bf16_pack_b(t.tb, t.b, t.ldb, t.k, t.n, t.pb, j0, j1)
    if parts > 1:
        fnn_barrier_wait(&t.barrier)
    i0, i1, j0, j1 = 0, MB, 0, NB
    if t.by_columns:
        fnn_share(NB, 2, part, parts, &j0, &j1)
    else:
        fnn_share(MB, 2, part, parts, &i0, &i1)
    if i1 > i0 and j1 > j0:
        fnn_bf16_gemm_packed(t.path, t.pa, t.pb, t.m, t.n, t.k, t.c, t.ldc, i0, i1, j0, j1)


BF16_PATHS = ("portable", "avx512-bf16", "amx")


def bf16_path():
    """The bf16 product this CPU runs: 'amx', 'avx512-bf16' or 'portable' (rounded float32
    copies through the float32 GEMM); detected once (FASTNN_BF16_PATH=0/1/2 caps it)."""
    return BF16_PATHS[fnn_bf16_path()]


def set_bf16_path(name):
    """Cap the bf16 products at path ``name`` (one of BF16_PATHS, for tests and comparisons; the
    CPU's own limit still holds); returns the path that now runs."""
    fnn_bf16_set_cap(BF16_PATHS.index(name))
    return bf16_path()


cdef void _round_into(const float* a, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld, float* dst) noexcept nogil:
    """dst (rows x cols, contiguous) = a (row stride ld) rounded to bf16 values."""
    cdef Py_ssize_t i
    for i in range(rows):
        fnn_bf16_round(a + i * ld, dst + i * cols, cols)


cdef int _gemm_bf16(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
                    const float* b, Py_ssize_t ldb, float* c, Py_ssize_t ldc) noexcept nogil:
    """C (m, n) = op(A) @ op(B) with bf16 operands (round to nearest even) and float32 sums;
    0, or -1 when out of memory (C is then not written)."""
    cdef int path = fnn_bf16_path(), parts
    cdef Py_ssize_t MB = (m + 15) // 16, NB = (n + 15) // 16, KB = (k + 31) // 32
    cdef Bf16Task task
    cdef void* pa
    cdef void* pb
    if <double>m * n * k < BF16_TILE_MNK:   # tiny: setting up the tiles costs more than the product
        path = 0
    if path == 0:      # products of rounded values are exact in float32: the float32 GEMM sums them
        pa = fnn_bf16_buffer(0, m * k * sizeof(float))
        pb = fnn_bf16_buffer(1, k * n * sizeof(float))
        if pa != NULL and pb != NULL:
            _round_into(a, k if ta else m, m if ta else k, lda, <float*>pa)
            _round_into(b, n if tb else k, k if tb else n, ldb, <float*>pb)
            gemm(_route, ta, tb, m, n, k, 1, <float*>pa, m if ta else k, <float*>pb, k if tb else n, 0, c, ldc)
    else:
        pa = fnn_bf16_buffer(0, MB * KB * 512 * sizeof(uint16_t))
        pb = fnn_bf16_buffer(1, NB * KB * 512 * sizeof(uint16_t))
        if pa != NULL and pb != NULL:
            task.path, task.ta, task.tb, task.m, task.n, task.k = path, ta, tb, m, n, k
            task.a, task.lda, task.b, task.ldb, task.c, task.ldc = a, lda, b, ldb, c, ldc
            task.pa, task.pb, task.by_columns = <uint16_t*>pa, <uint16_t*>pb, NB >= MB
            # the parts: the BLAS pool's size (fnn.set_num_threads), for products large enough
            parts = pool_parts(_route)
            parts = <int>min(<Py_ssize_t>parts, (NB if NB >= MB else MB + 1) // 2)
            if parts > 1 and (<double>m * n * k < BF16_SPLIT_MNK or not _pool.ready(parts)):
                parts = 1
            fnn_barrier_init(&task.barrier, max(parts, 1))
            _pool.parallel(_bf16_part, &task, max(parts, 1))
    cdef int status = 0 if (pa != NULL and pb != NULL) else -1
    if not fnn_bf16_kept:
        free(pa)
        free(pb)
    return status


# ------------------------------------------------------------------ float products in solo spans
cdef enum:
    FLOAT_SPLIT_MNK = 1048576      # m n k from which a product in a solo span is shared over the pool
    SOLO_PARAMS = 65536            # parameters from which a model trains in solo spans: optim.pyx's
                                   # UPDATE_SPLIT, from which the update is shared over the pool


SOLO_WEIGHTS = SOLO_PARAMS        # for fastnn.backends.cpu (the Trainer's spans)


ctypedef struct FloatTask:         # one float product shared over the pool by columns or rows of C
    bint ta, tb, by_rows
    Py_ssize_t m, n, k, lda, ldb, ldc
    const void* a
    const void* b
    void* c


cdef inline void _float_part(floating* kind, FloatTask* t, int part, int parts) noexcept nogil:
    cdef Py_ssize_t r0, r1
    cdef const floating* a = <const floating*>t.a
    cdef const floating* b = <const floating*>t.b
    cdef floating* c = <floating*>t.c
    cdef int ta = CBLAS_TRANS if t.ta else CBLAS_NO_TRANS, tb = CBLAS_TRANS if t.tb else CBLAS_NO_TRANS
    if t.by_rows:      # rows r0 .. r1 of C: of op(A), rows (or columns when transposed) r0 .. r1
        fnn_share(t.m, 16, part, parts, &r0, &r1)
        if r1 > r0:
            a = a + (r0 if t.ta else r0 * t.lda)
            if not blas_gemm(_route, ta, tb, r1 - r0, t.n, t.k, <floating>1, a, t.lda, b, t.ldb, <floating>0,
                             c + r0 * t.ldc, t.ldc):
                loop_gemm(t.ta, t.tb, r1 - r0, t.n, t.k, <floating>1, a, t.lda, b, t.ldb, <floating>0,
                          c + r0 * t.ldc, t.ldc)
    else:              # columns r0 .. r1 of C: of op(B), columns (or rows when transposed) r0 .. r1
        fnn_share(t.n, 16, part, parts, &r0, &r1)
        if r1 > r0:
            b = b + (r0 * t.ldb if t.tb else r0)
            if not blas_gemm(_route, ta, tb, t.m, r1 - r0, t.k, <floating>1, a, t.lda, b, t.ldb, <floating>0,
                             c + r0, t.ldc):
                loop_gemm(t.ta, t.tb, t.m, r1 - r0, t.k, <floating>1, a, t.lda, b, t.ldb, <floating>0, c + r0,
                          t.ldc)


cdef void _float_part32(void* arg, int part, int parts) noexcept nogil:
    _float_part(<float*>NULL, <FloatTask*>arg, part, parts)


cdef void _float_part64(void* arg, int part, int parts) noexcept nogil:
    _float_part(<double*>NULL, <FloatTask*>arg, part, parts)


cdef inline bint _float_split(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                              Py_ssize_t lda, const floating* b, Py_ssize_t ldb, floating* c,
                              Py_ssize_t ldc) noexcept nogil:
    """In a solo span, C = op(A) @ op(B) shared over the pool by whole blocks of 16 columns of C
    (or rows, when C has more rows than columns), each part on single-threaded OpenBLAS; False
    (nothing done) outside a span, for small products, or without an OpenBLAS GEMM."""
    cdef FloatTask t
    cdef int parts
    if _route.solo_depth <= 0 or not _route.solo_split or <double>m * n * k < FLOAT_SPLIT_MNK:
        return False
    if floating is float:
        if _route.sgemm64 == NULL and _route.sgemm32 == NULL:
            return False
    else:
        if _route.dgemm64 == NULL and _route.dgemm32 == NULL:
            return False
    t.by_rows = m > n
    parts = <int>min(<Py_ssize_t>_route.solo_parts, ((m if t.by_rows else n) + 15) // 16)
    if parts < 2 or not _pool.ready(parts):
        return False
    t.ta, t.tb, t.m, t.n, t.k, t.lda, t.ldb, t.ldc = ta, tb, m, n, k, lda, ldb, ldc
    t.a, t.b, t.c = a, b, c
    if floating is float:
        _pool.parallel(_float_part32, &t, parts)
    else:
        _pool.parallel(_float_part64, &t, parts)
    return True


cdef inline int _product(bint bf16, bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                         const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb, floating* c,
                         Py_ssize_t ldc) noexcept nogil:
    """C = op(A) @ op(B): the float GEMM route, or with ``bf16`` (float32 only) the bf16 product;
    0, or -1 when out of memory."""
    if floating is float:
        if bf16:
            return _gemm_bf16(ta, tb, m, n, k, a, lda, b, ldb, c, ldc)
    if _float_split(ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
        return 0
    gemm(_route, ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
    return 0


cdef int _check_bf16(bint bf16, floating* kind) except -1:
    if floating is double:
        if bf16:
            raise ValueError("dense: bf16 products take float32 arrays; this model is float64.")
    return 0


cdef inline bint _is(const floating[:, ::1] a, Py_ssize_t n, Py_ssize_t m):
    """a is None or has shape (n, m)."""
    return a is None or (a.shape[0] == n and a.shape[1] == m)


cdef int _check_activation(int code, const floating[:, ::1] x, const floating[:, ::1] y) except -1:
    if code < 0 or code >= N_ACTIVATIONS:
        raise ValueError(f"dense: unknown activation code {code}.")
    if code == GELU or code == SILU:
        if x is None:
            raise ValueError("dense_backward: this activation needs z, the pre-activation; got None.")
    elif code != IDENTITY and y is None:
        raise ValueError("dense_backward: this activation needs y, the forward output; got None.")
    return 0


def forward(const floating[:, ::1] x not None, const floating[:, ::1] w not None,
            const floating[::1] b, int code, double alpha, floating[:, ::1] z,
            floating[:, ::1] out not None, bint bf16=False):
    """out = f(x @ w + b): GEMM into z (when given, it keeps x @ w + b) or out, then one pass
    adding b (may be None) and applying activation ``code``; with ``bf16`` (float32) the
    product takes bf16 operands (fnn_bf16.h)."""
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    if (w.shape[0] != n_in or out.shape[0] != n or out.shape[1] != n_out or not _is(z, n, n_out)
            or (b is not None and b.shape[0] != n_out) or code < 0 or code >= N_ACTIVATIONS):
        raise ValueError("dense_forward: shapes do not match.")
    cdef floating* buf = ptr2(z) if z is not None else ptr2(out)
    cdef const floating* bias = cptr1(b) if b is not None else NULL
    cdef floating* zdst = buf if (z is not None and bias != NULL) else NULL
    cdef int status
    _check_bf16(bf16, buf)
    with nogil:
        status = _product(bf16, False, False, n, n_out, n_in, cptr2(x), n_in, cptr2(w), n_out, buf, n_out)
        if status == 0:
            act_forward(code, <floating>alpha, buf, bias, zdst, ptr2(out), n, n_out)
    if status != 0:
        raise MemoryError("dense_forward: no memory for the bf16 operands.")


def bias_activation(const floating[::1] b, int code, double alpha, floating[:, ::1] z,
                    floating[:, ::1] out not None):
    """The pass of forward() alone, for a product already in z (when given) or out."""
    cdef Py_ssize_t n = out.shape[0], n_out = out.shape[1]
    if not _is(z, n, n_out) or (b is not None and b.shape[0] != n_out) or code < 0 or code >= N_ACTIVATIONS:
        raise ValueError("dense_forward: shapes do not match.")
    cdef floating* buf = ptr2(z) if z is not None else ptr2(out)
    cdef const floating* bias = cptr1(b) if b is not None else NULL
    cdef floating* zdst = buf if (z is not None and bias != NULL) else NULL
    with nogil:
        act_forward(code, <floating>alpha, buf, bias, zdst, ptr2(out), n, n_out)


cdef inline void _column_sums(const floating* a, floating* out, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i, j
    for j in range(m):
        out[j] = 0
    for i in range(n):
        for j in range(m):
            out[j] += a[i * m + j]


cdef const floating* _dz_pass(int code, floating alpha, const floating* dy, const floating* z,
                              const floating* y, floating* dz, floating* db,
                              Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """dz = dy * f'(.) and db = its column sums (db may be NULL); returns the pointer to dz, which
    for identity without a separate workspace is dy itself."""
    if code == IDENTITY and (dz == NULL or <const floating*>dz == dy):
        if db != NULL:
            _column_sums(dy, db, n, m)
        return dy
    act_backward(code, alpha, dy, z, y, dz, db, n, m)
    return dz


def backward(const floating[:, ::1] dy not None, const floating[:, ::1] x,
             const floating[:, ::1] w, const floating[:, ::1] y, const floating[:, ::1] z,
             int code, double alpha, floating[:, ::1] dw, floating[::1] db,
             floating[:, ::1] dx, floating[:, ::1] dz, bint bf16=False):
    """dz = dy * f'(z or y) (dz may alias dy; it may be None only for identity), db = dz.sum(0),
    dw = x.T @ dz, dx = dz @ w.T; dw, db and dx are skipped when None (x needs to be given only
    with dw, w only with dx); with ``bf16`` (float32) the products take bf16 operands."""
    cdef Py_ssize_t n = dy.shape[0], n_out = dy.shape[1]
    cdef Py_ssize_t n_in = x.shape[1] if x is not None else (w.shape[0] if w is not None else 0)
    _check_activation(code, z, y)
    if (not _is(y, n, n_out) or not _is(z, n, n_out) or not _is(dz, n, n_out)
            or not _is(x, n, n_in) or not _is(w, n_in, n_out) or not _is(dw, n_in, n_out)
            or not _is(dx, n, n_in) or (db is not None and db.shape[0] != n_out)
            or (dw is not None and x is None) or (dx is not None and w is None)
            or (dz is None and code != IDENTITY)):
        raise ValueError("dense_backward: shapes do not match.")
    cdef const floating* pdy = cptr2(dy)
    cdef const floating* py = cptr2(y) if y is not None else NULL
    cdef const floating* pz = cptr2(z) if z is not None else NULL
    cdef floating* pdz = ptr2(dz) if dz is not None else NULL
    cdef floating* pdb = ptr1(db) if db is not None else NULL
    cdef const floating* px = cptr2(x) if x is not None else NULL
    cdef const floating* pw = cptr2(w) if w is not None else NULL
    cdef floating* pdw = ptr2(dw) if dw is not None else NULL
    cdef floating* pdx = ptr2(dx) if dx is not None else NULL
    cdef const floating* d
    cdef int status = 0
    _check_bf16(bf16, pdb)
    with nogil:
        d = _dz_pass(code, <floating>alpha, pdy, pz, py, pdz, pdb, n, n_out)
        if pdw != NULL:
            status = _product(bf16, True, False, n_in, n_out, n, px, n_in, d, n_out, pdw, n_out)
        if pdx != NULL and status == 0:
            status = _product(bf16, False, True, n, n_in, n_out, d, n_out, pw, n_out, pdx, n_in)
    if status != 0:
        raise MemoryError("dense_backward: no memory for the bf16 operands.")


def backward_pass(const floating[:, ::1] dy not None, const floating[:, ::1] y,
                  const floating[:, ::1] z, int code, double alpha, floating[::1] db,
                  floating[:, ::1] dz):
    """The elementwise part of backward() alone, dz and db, for the NumPy GEMM route (for
    identity without dz, the gradient to multiply is dy itself)."""
    cdef Py_ssize_t n = dy.shape[0], n_out = dy.shape[1]
    _check_activation(code, z, y)
    if (not _is(y, n, n_out) or not _is(z, n, n_out) or not _is(dz, n, n_out)
            or (db is not None and db.shape[0] != n_out) or (dz is None and code != IDENTITY)):
        raise ValueError("dense_backward: shapes do not match.")
    cdef const floating* pdy = cptr2(dy)
    cdef const floating* py = cptr2(y) if y is not None else NULL
    cdef const floating* pz = cptr2(z) if z is not None else NULL
    cdef floating* pdz = ptr2(dz) if dz is not None else NULL
    cdef floating* pdb = ptr1(db) if db is not None else NULL
    with nogil:
        _dz_pass(code, <floating>alpha, pdy, pz, py, pdz, pdb, n, n_out)


# ------------------------------------------------------------------ a stack of Dense layers
cdef struct _Step:
    Py_ssize_t n_in, n_out
    int code
    double alpha
    void* w        # (n_in, n_out)
    void* b        # (n_out,) or NULL
    void* z        # (rows, n_out) pre-activation, or NULL (kept only for gelu/silu)
    void* y        # (rows, n_out) output; the next layer's input
    void* dw       # NULL: frozen (no dw, db)
    void* db       # NULL: frozen or no bias
    void* dx       # (rows, n_in), NULL: no dx (the lowest layer the backward reaches)


cdef int _chain_forward(floating* kind, const _Step* s, Py_ssize_t count, Py_ssize_t n,
                        const floating* x, bint bf16) noexcept nogil:
    cdef Py_ssize_t i
    cdef const floating* inp = x
    cdef floating* buf
    cdef floating* zdst
    for i in range(count):
        buf = <floating*>s[i].z if s[i].z != NULL else <floating*>s[i].y
        zdst = buf if (s[i].z != NULL and s[i].b != NULL) else NULL
        if _product(bf16, False, False, n, s[i].n_out, s[i].n_in, inp, s[i].n_in, <const floating*>s[i].w,
                    s[i].n_out, buf, s[i].n_out) != 0:
            return -1
        act_forward(s[i].code, <floating>s[i].alpha, buf, <const floating*>s[i].b, zdst, <floating*>s[i].y,
                    n, s[i].n_out)
        inp = <const floating*>s[i].y
    return 0


cdef int _chain_backward(floating* kind, const _Step* s, Py_ssize_t count, Py_ssize_t first, Py_ssize_t n,
                         const floating* x, floating* dy, bint bf16) noexcept nogil:
    cdef Py_ssize_t i
    cdef const floating* d
    cdef const floating* inp
    for i in range(count - 1, first - 1, -1):
        d = _dz_pass(s[i].code, <floating>s[i].alpha, dy, <const floating*>s[i].z, <const floating*>s[i].y,
                     dy, <floating*>s[i].db, n, s[i].n_out)
        inp = x if i == 0 else <const floating*>s[i - 1].y
        if s[i].dw != NULL and _product(bf16, True, False, s[i].n_in, s[i].n_out, n, inp, s[i].n_in, d,
                                        s[i].n_out, <floating*>s[i].dw, s[i].n_out) != 0:
            return -1
        if s[i].dx != NULL and _product(bf16, False, True, n, s[i].n_in, s[i].n_out, d, s[i].n_out,
                                        <const floating*>s[i].w, s[i].n_out, <floating*>s[i].dx,
                                        s[i].n_in) != 0:
            return -1
        dy = <floating*>s[i].dx
    return 0


cdef void* _address(a) except? NULL:
    """Data address of an array (None: NULL); the adapter has checked dtype and contiguity."""
    if a is None:
        return NULL
    return <void*><uintptr_t>a.__array_interface__["data"][0]


cdef class Chain:
    """Training forward and backward of a stack of Dense layers, one call each, no Python per
    layer: the same GEMMs and passes as forward() and backward() layer by layer (dz written over
    dy, as Dense does). Built by fastnn.backends.cpu.CpuBackend.dense_chain, which checks every
    array; the data pointers are taken here once and the arrays kept alive by this object.

    ``steps``: per layer (n_in, n_out, code, alpha, w, b, z, y, dw, db, dx) with arrays or None;
    ``first``: the lowest layer the backward reaches (its dx is None); ``rows``: the batch size.
    """

    cdef _Step* _steps
    cdef Py_ssize_t _count, _first
    cdef readonly Py_ssize_t rows
    cdef readonly bint is_double
    cdef readonly bint bf16         # the products take bf16 operands (float32 only)
    cdef readonly object out        # the last layer's output array
    cdef object _refs
    cdef object _x                  # the input of the last forward (its dW needs it)
    cdef const void* _xp
    cdef readonly bint solo         # runs in solo spans (large models: see SOLO_PARAMS)

    def __cinit__(self, Py_ssize_t rows, bint is_double, list steps, Py_ssize_t first, bint bf16=False):
        self._count = len(steps)
        if self._count < 1 or not 0 <= first < self._count:
            raise ValueError("Chain: no layers, or first out of range.")
        if bf16 and is_double:
            raise ValueError("Chain: bf16 products take float32 arrays; this chain is float64.")
        self.bf16 = bf16
        self._steps = <_Step*>calloc(self._count, sizeof(_Step))
        if self._steps == NULL:
            raise MemoryError()
        self.rows, self.is_double, self._first = rows, is_double, first
        self._refs = steps
        cdef Py_ssize_t i
        for i, st in enumerate(steps):
            n_in, n_out, code, alpha, w, b, z, y, dw, db, dx = st
            if code < 0 or code >= N_ACTIVATIONS:
                raise ValueError(f"Chain: unknown activation code {code}.")
            self._steps[i].n_in, self._steps[i].n_out = n_in, n_out
            self._steps[i].code, self._steps[i].alpha = code, alpha
            self._steps[i].w = _address(w)
            self._steps[i].b = _address(b)
            self._steps[i].z = _address(z)
            self._steps[i].y = _address(y)
            self._steps[i].dw = _address(dw)
            self._steps[i].db = _address(db)
            self._steps[i].dx = _address(dx)
        self.out = steps[self._count - 1][7]
        self.solo = sum(<double>st[0] * st[1] for st in steps) >= SOLO_PARAMS
        self._x = None
        self._xp = NULL

    def __dealloc__(self):
        free(self._steps)

    def forward32(self, const float[:, ::1] x not None):
        """Run every layer's forward on x (rows, n_in of the first layer); returns ``out``."""
        if x.shape[0] != self.rows or x.shape[1] != self._steps[0].n_in or self.is_double:
            raise ValueError("Chain.forward: x does not match the chain.")
        self._x, self._xp = x.base, cptr2(x)
        cdef int status
        cdef bint solo = self.solo and solo_enter(_route)
        try:
            with nogil:
                status = _chain_forward(<float*>NULL, self._steps, self._count, self.rows,
                                        <const float*>self._xp, self.bf16)
        finally:
            if solo:
                solo_exit(_route)
        if status != 0:
            raise MemoryError("Chain.forward: no memory for the bf16 operands.")
        return self.out

    def forward64(self, const double[:, ::1] x not None):
        """forward32 for float64."""
        if x.shape[0] != self.rows or x.shape[1] != self._steps[0].n_in or not self.is_double:
            raise ValueError("Chain.forward: x does not match the chain.")
        self._x, self._xp = x.base, cptr2(x)
        cdef bint solo = self.solo and solo_enter(_route)
        try:
            with nogil:
                _chain_forward(<double*>NULL, self._steps, self._count, self.rows, <const double*>self._xp, False)
        finally:
            if solo:
                solo_exit(_route)
        return self.out

    def backward32(self, float[:, ::1] dy not None):
        """Backpropagate dy (rows, n_out of the last layer), overwritten, through the layers down
        to ``first``, writing dw, db (trainable layers) and dx (above ``first``)."""
        if dy.shape[0] != self.rows or dy.shape[1] != self._steps[self._count - 1].n_out or self.is_double \
                or self._xp == NULL:
            raise ValueError("Chain.backward: dy does not match the chain, or no forward ran.")
        cdef int status
        cdef bint solo = self.solo and solo_enter(_route)
        try:
            with nogil:
                status = _chain_backward(<float*>NULL, self._steps, self._count, self._first, self.rows,
                                         <const float*>self._xp, ptr2(dy), self.bf16)
        finally:
            if solo:
                solo_exit(_route)
        if status != 0:
            raise MemoryError("Chain.backward: no memory for the bf16 operands.")

    def backward64(self, double[:, ::1] dy not None):
        """backward32 for float64."""
        if dy.shape[0] != self.rows or dy.shape[1] != self._steps[self._count - 1].n_out or not self.is_double \
                or self._xp == NULL:
            raise ValueError("Chain.backward: dy does not match the chain, or no forward ran.")
        cdef bint solo = self.solo and solo_enter(_route)
        try:
            with nogil:
                _chain_backward(<double*>NULL, self._steps, self._count, self._first, self.rows,
                                <const double*>self._xp, ptr2(dy), False)
        finally:
            if solo:
                solo_exit(_route)
