"""Kernels on flat parameter/gradient buffers (n,): the optimizer updates (SGD, Adagrad, Adadelta,
RMSprop, Adam/AdamW, Adamax, NAdam, RAdam), norms, scaling, clipping, penalty.

All arrays are 1-D, C-contiguous, one floating dtype; updates are in place and the per-element
math runs in that dtype, so the float32 loops vectorize and stream at memory bandwidth. Each
update is one pass that reads every buffer once and writes the parameter and its state once,
split over fastnn's shared pool by spans of elements when the buffers are large (see "the
updates, over the pool" below); scalars that depend only on the step (bias corrections) arrive
precomputed from Python. The
updates run with subnormals flushed to zero (x86: MXCSR FTZ and DAZ, restored afterwards): with
exact-zero gradients (dead ReLU units, constant inputs) Adam's first moment decays below the
smallest normal float within ~800 updates, and subnormal arithmetic made the whole update 13x
slower; the results differ from IEEE arithmetic only below 1.2e-38 (float32). Sums
are accumulated in double, in sixteen independent partial sums (gcc may then vectorize them
without reassociating, which -O3 alone would not do). Shapes are checked before the loops only
so that a wrong call cannot touch memory out of bounds; fastnn.backends.cpu explains the error.
"""

from libc.math cimport fabs, sqrt, sqrtf
from cython cimport floating

from libc.stdint cimport uintptr_t

from _blas cimport GemmRoute, pool_parts
from _pool cimport fnn_pool_api, fnn_share
from _types cimport ptr1, cptr1

import fastnn._ext.blas as _blas
import fastnn._ext.pool as _poolmod

cdef GemmRoute* _route = <GemmRoute*><uintptr_t>_blas.route_address()
cdef const fnn_pool_api* _pool = <const fnn_pool_api*><uintptr_t>_poolmod.api_address()

cdef extern from *:
    """
    /* Flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) for the duration of an update:
       state that decays geometrically under zero gradients (Adam's m, momentum buffers) would
       otherwise sink into subnormal floats, where every operation takes a microcode assist. */
    #if defined(__SSE2__) || defined(_M_X64)
    #include <xmmintrin.h>
    static inline unsigned int fnn_flush_subnormals(void) {
        unsigned int old = _mm_getcsr();
        _mm_setcsr(old | 0x8040u);
        return old;
    }
    static inline void fnn_restore_fpu(unsigned int old) { _mm_setcsr(old); }
    #else
    static inline unsigned int fnn_flush_subnormals(void) { return 0u; }
    static inline void fnn_restore_fpu(unsigned int old) { (void)old; }
    #endif
    """
    unsigned int _flush_subnormals "fnn_flush_subnormals"() noexcept nogil
    void _restore_fpu "fnn_restore_fpu"(unsigned int old) noexcept nogil


cdef inline floating _sqrt(floating x) noexcept nogil:
    # sqrtf for float: sqrt would convert to double and back in every lane
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline bint _fits(floating[::1] a, Py_ssize_t n) noexcept:
    """True when the state buffer ``a`` is given and has n elements."""
    return a is not None and a.shape[0] == n


# ------------------------------------------------------------------ the updates, over the pool
# Each update is one elementwise pass: its def checks the arrays and fills an Upd (pointers and
# the scalars, computed in double as before), and the pass runs over contiguous spans of the
# buffers, split over the shared pool (csrc/fnn_pool.h) when the buffers are large enough: the
# update is memory-bound, and two cores stream more than one. Each element is computed by the
# same expression whatever the split: the same bits on any thread count. FTZ/DAZ is set in
# each thread that runs a span (MXCSR is per thread).

cdef enum:
    UPDATE_SPLIT = 65536       # elements from which an update is split over the pool
    UPDATE_ALIGN = 1024        # spans start at multiples of 1024 elements (whole cache lines)

ctypedef struct Upd


ctypedef void (*span_fn)(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil


ctypedef struct Upd:
    span_fn span               # the update's loop over elements [i0, i1), in the arrays' dtype
    void* p
    const void* g
    void* s0
    void* s1
    void* s2
    double c[10]
    int f0
    int f1
    Py_ssize_t n
    bint dbl


cdef void _part(void* arg, int part, int parts) noexcept nogil:
    """Part ``part`` of an update: its span of the elements, with subnormals flushed."""
    cdef Upd* u = <Upd*>arg
    cdef Py_ssize_t i0, i1
    cdef unsigned int fpu = _flush_subnormals()
    fnn_share(u.n, UPDATE_ALIGN, part, parts, &i0, &i1)
    if i1 > i0:
        u.span(u, i0, i1)
    _restore_fpu(fpu)


cdef void _run(Upd* u, span_fn span) noexcept nogil:
    """``span`` over all of u's elements, split over the pool (the BLAS pool's size:
    fnn.set_num_threads) for large buffers, else in the caller alone."""
    cdef int parts = pool_parts(_route)
    if parts > 1 and (u.n < UPDATE_SPLIT or not _pool.ready(parts)):
        parts = 1
    u.span = span
    _pool.parallel(_part, u, max(parts, 1))


cdef inline void _moments(floating* pm, floating* pv, Py_ssize_t i, floating d, floating b1, floating c1,
                          floating b2, floating c2, floating* m, floating* v) noexcept nogil:
    """Adam's moments of element i, stored and returned: m = b1 m + c1 d, v = b2 v + c2 d^2
    (Adam, AdamW, NAdam and RAdam's rectified steps; inlined into their loops)."""
    m[0] = b1 * pm[i] + c1 * d
    v[0] = b2 * pv[i] + c2 * d * d
    pm[i] = m[0]
    pv[i] = v[0]


# --- SGD: c = lr, momentum, 1 - dampening, weight_decay; f0 nesterov, f1 first_step
cdef inline void _sgd_loop(floating* pp, const floating* pg, floating* pb, Upd* u, Py_ssize_t i0,
                           Py_ssize_t i1) noexcept nogil:
    cdef floating flr = u.c[0], mom = u.c[1], keep = u.c[2], wd = u.c[3]
    cdef floating d, b
    cdef Py_ssize_t i
    if u.c[1] == 0.0:
        if u.c[3] == 0.0:
            for i in range(i0, i1):
                pp[i] = pp[i] - flr * pg[i]
        else:
            for i in range(i0, i1):
                pp[i] = pp[i] - flr * (pg[i] + wd * pp[i])
    elif u.f1:                                        # buf is uninitialised: never read it
        if u.f0:
            for i in range(i0, i1):
                d = pg[i] + wd * pp[i]
                pb[i] = d
                pp[i] = pp[i] - flr * (d + mom * d)
        else:
            for i in range(i0, i1):
                d = pg[i] + wd * pp[i]
                pb[i] = d
                pp[i] = pp[i] - flr * d
    elif u.f0:
        for i in range(i0, i1):
            d = pg[i] + wd * pp[i]
            b = mom * pb[i] + keep * d
            pb[i] = b
            pp[i] = pp[i] - flr * (d + mom * b)
    else:
        for i in range(i0, i1):
            d = pg[i] + wd * pp[i]
            b = mom * pb[i] + keep * d
            pb[i] = b
            pp[i] = pp[i] - flr * b


cdef void _sgd_span(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if u.dbl:
        _sgd_loop(<double*>u.p, <const double*>u.g, <double*>u.s0, u, i0, i1)
    else:
        _sgd_loop(<float*>u.p, <const float*>u.g, <float*>u.s0, u, i0, i1)


def sgd_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] buf,
               double lr, double momentum, double dampening, bint nesterov, double weight_decay,
               bint first_step):
    """PyTorch's SGD in place: d = g + wd p; with momentum, buf = d on the first step, else
    momentum buf + (1 - dampening) d; d = d + momentum buf (Nesterov) or buf; p -= lr d."""
    cdef Py_ssize_t n = p.shape[0]
    if g.shape[0] != n or (momentum != 0.0 and (buf is None or buf.shape[0] != n)):
        raise ValueError("sgd_update: shapes do not match.")
    if n == 0:
        return
    cdef Upd u
    u.p, u.g, u.s0, u.n, u.dbl = ptr1(p), cptr1(g), ptr1(buf) if momentum != 0.0 else NULL, n, floating is double
    u.c[0], u.c[1], u.c[2], u.c[3], u.f0, u.f1 = lr, momentum, 1.0 - dampening, weight_decay, nesterov, first_step
    with nogil:
        _run(&u, _sgd_span)


# --- Adagrad: c = lr, eps, weight_decay
cdef inline void _adagrad_loop(floating* pp, const floating* pg, floating* ps, Upd* u, Py_ssize_t i0,
                               Py_ssize_t i1) noexcept nogil:
    cdef floating flr = u.c[0], e = u.c[1], wd = u.c[2]
    cdef floating d, s
    cdef Py_ssize_t i
    for i in range(i0, i1):
        d = pg[i] + wd * pp[i]
        s = ps[i] + d * d
        ps[i] = s
        pp[i] = pp[i] - flr * d / (_sqrt(s) + e)


cdef void _adagrad_span(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if u.dbl:
        _adagrad_loop(<double*>u.p, <const double*>u.g, <double*>u.s0, u, i0, i1)
    else:
        _adagrad_loop(<float*>u.p, <const float*>u.g, <float*>u.s0, u, i0, i1)


def adagrad_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] state_sum not None,
                   double lr, double eps, double weight_decay):
    """Adagrad in place: d = g + wd p; state_sum += d^2; p -= lr d / (sqrt(state_sum) + eps)."""
    cdef Py_ssize_t n = p.shape[0]
    if g.shape[0] != n or not _fits(state_sum, n):
        raise ValueError("adagrad_update: shapes do not match.")
    if n == 0:
        return
    cdef Upd u
    u.p, u.g, u.s0, u.n, u.dbl = ptr1(p), cptr1(g), ptr1(state_sum), n, floating is double
    u.c[0], u.c[1], u.c[2] = lr, eps, weight_decay
    with nogil:
        _run(&u, _adagrad_span)


# --- Adadelta: c = lr, rho, 1 - rho, eps, weight_decay
cdef inline void _adadelta_loop(floating* pp, const floating* pg, floating* pv, floating* pu, Upd* u,
                                Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    cdef floating flr = u.c[0], r = u.c[1], c = u.c[2], e = u.c[3], wd = u.c[4]
    cdef floating d, v, w, delta
    cdef Py_ssize_t i
    for i in range(i0, i1):
        d = pg[i] + wd * pp[i]
        v = r * pv[i] + c * d * d
        w = pu[i]
        delta = _sqrt(w + e) / _sqrt(v + e) * d
        pv[i] = v
        pu[i] = r * w + c * delta * delta
        pp[i] = pp[i] - flr * delta


cdef void _adadelta_span(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if u.dbl:
        _adadelta_loop(<double*>u.p, <const double*>u.g, <double*>u.s0, <double*>u.s1, u, i0, i1)
    else:
        _adadelta_loop(<float*>u.p, <const float*>u.g, <float*>u.s0, <float*>u.s1, u, i0, i1)


def adadelta_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] square_avg not None,
                    floating[::1] acc_delta not None, double lr, double rho, double eps, double weight_decay):
    """Adadelta in place: d = g + wd p; v = rho v + (1 - rho) d^2; delta = sqrt(u + eps) / sqrt(v + eps) d;
    u = rho u + (1 - rho) delta^2; p -= lr delta (v: square_avg, u: acc_delta)."""
    cdef Py_ssize_t n = p.shape[0]
    if g.shape[0] != n or not _fits(square_avg, n) or not _fits(acc_delta, n):
        raise ValueError("adadelta_update: shapes do not match.")
    if n == 0:
        return
    cdef Upd u
    u.p, u.g, u.s0, u.s1, u.n, u.dbl = ptr1(p), cptr1(g), ptr1(square_avg), ptr1(acc_delta), n, floating is double
    u.c[0], u.c[1], u.c[2], u.c[3], u.c[4] = lr, rho, 1.0 - rho, eps, weight_decay
    with nogil:
        _run(&u, _adadelta_span)


# --- RMSprop: c = lr, alpha, 1 - alpha, eps, weight_decay, momentum; f0 centered
cdef inline void _rmsprop_loop(floating* pp, const floating* pg, floating* pv, floating* pa, floating* pb, Upd* u,
                               Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    cdef floating flr = u.c[0], al = u.c[1], c = u.c[2], e = u.c[3], wd = u.c[4], mom = u.c[5]
    cdef floating d, v, a, b
    cdef Py_ssize_t i
    if not u.f0 and u.c[5] == 0.0:
        for i in range(i0, i1):
            d = pg[i] + wd * pp[i]
            v = al * pv[i] + c * d * d
            pv[i] = v
            pp[i] = pp[i] - flr * d / (_sqrt(v) + e)
    elif not u.f0:
        for i in range(i0, i1):
            d = pg[i] + wd * pp[i]
            v = al * pv[i] + c * d * d
            pv[i] = v
            b = mom * pb[i] + d / (_sqrt(v) + e)
            pb[i] = b
            pp[i] = pp[i] - flr * b
    elif u.c[5] == 0.0:
        for i in range(i0, i1):
            d = pg[i] + wd * pp[i]
            v = al * pv[i] + c * d * d
            a = al * pa[i] + c * d
            pv[i] = v
            pa[i] = a
            pp[i] = pp[i] - flr * d / (_sqrt(v - a * a) + e)
    else:
        for i in range(i0, i1):
            d = pg[i] + wd * pp[i]
            v = al * pv[i] + c * d * d
            a = al * pa[i] + c * d
            pv[i] = v
            pa[i] = a
            b = mom * pb[i] + d / (_sqrt(v - a * a) + e)
            pb[i] = b
            pp[i] = pp[i] - flr * b


cdef void _rmsprop_span(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if u.dbl:
        _rmsprop_loop(<double*>u.p, <const double*>u.g, <double*>u.s0, <double*>u.s1, <double*>u.s2, u, i0, i1)
    else:
        _rmsprop_loop(<float*>u.p, <const float*>u.g, <float*>u.s0, <float*>u.s1, <float*>u.s2, u, i0, i1)


def rmsprop_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] square_avg not None,
                   floating[::1] grad_avg, floating[::1] momentum_buffer, double lr, double alpha, double eps,
                   double weight_decay, double momentum, bint centered):
    """RMSprop in place: d = g + wd p; v = alpha v + (1 - alpha) d^2; centered: a = alpha a + (1 - alpha) d,
    denom = sqrt(v - a^2) + eps, else sqrt(v) + eps; momentum: b = momentum b + d / denom, p -= lr b;
    else p -= lr d / denom (v: square_avg, a: grad_avg, b: momentum_buffer)."""
    cdef Py_ssize_t n = p.shape[0]
    if (g.shape[0] != n or not _fits(square_avg, n) or (centered and not _fits(grad_avg, n))
            or (momentum != 0.0 and not _fits(momentum_buffer, n))):
        raise ValueError("rmsprop_update: shapes do not match.")
    if n == 0:
        return
    cdef Upd u
    u.p, u.g, u.s0, u.n, u.dbl = ptr1(p), cptr1(g), ptr1(square_avg), n, floating is double
    u.s1 = ptr1(grad_avg) if centered else NULL
    u.s2 = ptr1(momentum_buffer) if momentum != 0.0 else NULL
    u.c[0], u.c[1], u.c[2], u.c[3], u.c[4], u.c[5] = lr, alpha, 1.0 - alpha, eps, weight_decay, momentum
    u.f0 = centered
    with nogil:
        _run(&u, _rmsprop_span)


# --- Adam/AdamW: c = lr / bc1, 1 / sqrt(bc2), beta1, 1 - beta1, beta2, 1 - beta2, eps, coupled wd,
# the decoupled shrink; f0 amsgrad
cdef inline void _adam_loop(floating* pp, const floating* pg, floating* pm, floating* pv, floating* pw, Upd* u,
                            Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    cdef floating step = u.c[0], inv_bc2 = u.c[1], b1 = u.c[2], c1 = u.c[3], b2 = u.c[4], c2 = u.c[5]
    cdef floating e = u.c[6], wd = u.c[7], shrink = u.c[8]
    cdef floating x, d, m, v
    cdef Py_ssize_t i
    if u.f0:
        for i in range(i0, i1):
            x = pp[i]
            d = pg[i] + wd * x
            _moments(pm, pv, i, d, b1, c1, b2, c2, &m, &v)
            v = pw[i] if pw[i] >= v else v            # NaN in v propagates, as torch.maximum
            pw[i] = v
            pp[i] = x * shrink - step * m / (_sqrt(v) * inv_bc2 + e)
    else:
        for i in range(i0, i1):
            x = pp[i]
            d = pg[i] + wd * x
            _moments(pm, pv, i, d, b1, c1, b2, c2, &m, &v)
            pp[i] = x * shrink - step * m / (_sqrt(v) * inv_bc2 + e)


cdef void _adam_span(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if u.dbl:
        _adam_loop(<double*>u.p, <const double*>u.g, <double*>u.s0, <double*>u.s1, <double*>u.s2, u, i0, i1)
    else:
        _adam_loop(<float*>u.p, <const float*>u.g, <float*>u.s0, <float*>u.s1, <float*>u.s2, u, i0, i1)


def adam_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] exp_avg not None,
                floating[::1] exp_avg_sq not None, floating[::1] max_exp_avg_sq, double lr, double beta1,
                double beta2, double eps, double weight_decay, bint amsgrad, bint decoupled_weight_decay,
                double bias_correction1, double bias_correction2):
    """Adam/AdamW in place: d = g + wd p (AdamW: d = g and p *= 1 - lr wd); m = b1 m + (1 - b1) d;
    v = b2 v + (1 - b2) d^2 (amsgrad: vmax = max(vmax, v), used for v);
    p -= lr / bc1 m / (sqrt(v) / sqrt(bc2) + eps)."""
    cdef Py_ssize_t n = p.shape[0]
    if (g.shape[0] != n or not _fits(exp_avg, n) or not _fits(exp_avg_sq, n)
            or (amsgrad and not _fits(max_exp_avg_sq, n))):
        raise ValueError("adam_update: shapes do not match.")
    if n == 0:
        return
    cdef Upd u
    u.p, u.g, u.s0, u.s1, u.n, u.dbl = ptr1(p), cptr1(g), ptr1(exp_avg), ptr1(exp_avg_sq), n, floating is double
    u.s2 = ptr1(max_exp_avg_sq) if amsgrad else NULL
    u.c[0], u.c[1] = lr / bias_correction1, 1.0 / sqrt(bias_correction2)
    u.c[2], u.c[3], u.c[4], u.c[5], u.c[6] = beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps
    # coupled decay enters d; decoupled decay scales p (one of the two is a no-op)
    u.c[7] = 0.0 if decoupled_weight_decay else weight_decay
    u.c[8] = 1.0 - lr * weight_decay if decoupled_weight_decay else 1.0
    u.f0 = amsgrad
    with nogil:
        _run(&u, _adam_span)


# --- Adamax: c = lr / bc1, beta1, 1 - beta1, beta2, eps, weight_decay
cdef inline void _adamax_loop(floating* pp, const floating* pg, floating* pm, floating* pu, Upd* u, Py_ssize_t i0,
                              Py_ssize_t i1) noexcept nogil:
    cdef floating step = u.c[0], b1 = u.c[1], c1 = u.c[2], b2 = u.c[3], e = u.c[4], wd = u.c[5]
    cdef floating x, d, m, w, a
    cdef Py_ssize_t i
    for i in range(i0, i1):
        x = pp[i]
        d = pg[i] + wd * x
        m = b1 * pm[i] + c1 * d
        w = b2 * pu[i]
        a = fabs(d) + e
        w = w if w >= a else a                         # NaN in d propagates
        pm[i] = m
        pu[i] = w
        pp[i] = x - step * m / w


cdef void _adamax_span(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if u.dbl:
        _adamax_loop(<double*>u.p, <const double*>u.g, <double*>u.s0, <double*>u.s1, u, i0, i1)
    else:
        _adamax_loop(<float*>u.p, <const float*>u.g, <float*>u.s0, <float*>u.s1, u, i0, i1)


def adamax_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] exp_avg not None,
                  floating[::1] exp_inf not None, double lr, double beta1, double beta2, double eps,
                  double weight_decay, double bias_correction1):
    """Adamax in place: d = g + wd p; m = b1 m + (1 - b1) d; u = max(b2 u, |d| + eps); p -= lr / bc1 m / u."""
    cdef Py_ssize_t n = p.shape[0]
    if g.shape[0] != n or not _fits(exp_avg, n) or not _fits(exp_inf, n):
        raise ValueError("adamax_update: shapes do not match.")
    if n == 0:
        return
    cdef Upd u
    u.p, u.g, u.s0, u.s1, u.n, u.dbl = ptr1(p), cptr1(g), ptr1(exp_avg), ptr1(exp_inf), n, floating is double
    u.c[0], u.c[1], u.c[2], u.c[3], u.c[4], u.c[5] = lr / bias_correction1, beta1, 1.0 - beta1, beta2, eps, weight_decay
    with nogil:
        _run(&u, _adamax_span)


# --- NAdam: c = beta1, 1 - beta1, beta2, 1 - beta2, eps, weight_decay, 1 / bc2, cg, cm
cdef inline void _nadam_loop(floating* pp, const floating* pg, floating* pm, floating* pv, Upd* u, Py_ssize_t i0,
                             Py_ssize_t i1) noexcept nogil:
    cdef floating b1 = u.c[0], c1 = u.c[1], b2 = u.c[2], c2 = u.c[3], e = u.c[4], wd = u.c[5]
    cdef floating inv_bc2 = u.c[6], cg = u.c[7], cm = u.c[8]
    cdef floating x, d, m, v
    cdef Py_ssize_t i
    for i in range(i0, i1):
        x = pp[i]
        d = pg[i] + wd * x
        _moments(pm, pv, i, d, b1, c1, b2, c2, &m, &v)
        pp[i] = x - (cg * d + cm * m) / (_sqrt(v * inv_bc2) + e)


cdef void _nadam_span(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if u.dbl:
        _nadam_loop(<double*>u.p, <const double*>u.g, <double*>u.s0, <double*>u.s1, u, i0, i1)
    else:
        _nadam_loop(<float*>u.p, <const float*>u.g, <float*>u.s0, <float*>u.s1, u, i0, i1)


def nadam_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] exp_avg not None,
                 floating[::1] exp_avg_sq not None, double lr, double beta1, double beta2, double eps,
                 double weight_decay, double mu, double mu_next, double mu_product, double bias_correction2):
    """NAdam in place: d = g + wd p; m, v as Adam; denom = sqrt(v / bc2) + eps;
    p -= lr (1 - mu) / (1 - mu_product) d / denom + lr mu_next / (1 - mu_product mu_next) m / denom."""
    cdef Py_ssize_t n = p.shape[0]
    if g.shape[0] != n or not _fits(exp_avg, n) or not _fits(exp_avg_sq, n):
        raise ValueError("nadam_update: shapes do not match.")
    if n == 0:
        return
    cdef Upd u
    u.p, u.g, u.s0, u.s1, u.n, u.dbl = ptr1(p), cptr1(g), ptr1(exp_avg), ptr1(exp_avg_sq), n, floating is double
    u.c[0], u.c[1], u.c[2], u.c[3], u.c[4], u.c[5] = beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay
    u.c[6] = 1.0 / bias_correction2
    u.c[7] = lr * (1.0 - mu) / (1.0 - mu_product)
    u.c[8] = lr * mu_next / (1.0 - mu_product * mu_next)
    with nogil:
        _run(&u, _nadam_span)


# --- RAdam's unrectified steps (the rectified ones are Adam's loop with 1 / sqrt(bc2) = 1, which
# leaves sqrt(v) exact): c = step, 1 (unused), beta1, 1 - beta1, beta2, 1 - beta2, eps (unused),
# coupled wd, the decoupled shrink -- Adam's layout
cdef inline void _radam_loop(floating* pp, const floating* pg, floating* pm, floating* pv, Upd* u, Py_ssize_t i0,
                             Py_ssize_t i1) noexcept nogil:
    cdef floating step = u.c[0], b1 = u.c[2], c1 = u.c[3], b2 = u.c[4], c2 = u.c[5]
    cdef floating wd = u.c[7], shrink = u.c[8]
    cdef floating x, d, m, v
    cdef Py_ssize_t i
    for i in range(i0, i1):
        x = pp[i]
        d = pg[i] + wd * x
        _moments(pm, pv, i, d, b1, c1, b2, c2, &m, &v)
        pp[i] = x * shrink - step * m


cdef void _radam_span(Upd* u, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if u.dbl:
        _radam_loop(<double*>u.p, <const double*>u.g, <double*>u.s0, <double*>u.s1, u, i0, i1)
    else:
        _radam_loop(<float*>u.p, <const float*>u.g, <float*>u.s0, <float*>u.s1, u, i0, i1)


def radam_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] exp_avg not None,
                 floating[::1] exp_avg_sq not None, double lr, double beta1, double beta2, double eps,
                 double weight_decay, bint decoupled_weight_decay, double bias_correction1,
                 double bias_correction2, double rect):
    """RAdam in place: d = g + wd p (decoupled: d = g and p *= 1 - lr wd); m, v as Adam;
    rect > 0: p -= lr rect sqrt(bc2) / bc1 m / (sqrt(v) + eps); else p -= lr / bc1 m."""
    cdef Py_ssize_t n = p.shape[0]
    if g.shape[0] != n or not _fits(exp_avg, n) or not _fits(exp_avg_sq, n):
        raise ValueError("radam_update: shapes do not match.")
    if n == 0:
        return
    cdef Upd u
    cdef bint adaptive = rect > 0.0
    u.p, u.g, u.s0, u.s1, u.s2, u.n = ptr1(p), cptr1(g), ptr1(exp_avg), ptr1(exp_avg_sq), NULL, n
    u.dbl, u.f0 = floating is double, False        # f0: Adam's amsgrad, off
    u.c[0] = lr * rect * sqrt(bias_correction2) / bias_correction1 if adaptive else lr / bias_correction1
    u.c[1], u.c[2], u.c[3], u.c[4], u.c[5], u.c[6] = 1.0, beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps
    u.c[7] = 0.0 if decoupled_weight_decay else weight_decay
    u.c[8] = 1.0 - lr * weight_decay if decoupled_weight_decay else 1.0
    with nogil:
        _run(&u, _adam_span if adaptive else _radam_span)


cdef inline double _sum_squares(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef double s[16]
    cdef Py_ssize_t i = 0, j
    for j in range(16):
        s[j] = 0.0
    while i + 16 <= n:
        for j in range(16):
            s[j] += <double>x[i + j] * <double>x[i + j]
        i += 16
    while i < n:
        s[0] += <double>x[i] * <double>x[i]
        i += 1
    for j in range(8):
        s[j] += s[j + 8]
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


cdef inline double _sum_abs(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef double s[16]
    cdef Py_ssize_t i = 0, j
    for j in range(16):
        s[j] = 0.0
    while i + 16 <= n:
        for j in range(16):
            s[j] += fabs(<double>x[i + j])
        i += 16
    while i < n:
        s[0] += fabs(<double>x[i])
        i += 1
    for j in range(8):
        s[j] += s[j + 8]
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


def sum_squares(const floating[::1] x not None):
    """sum(x**2) in double, returned as a Python float."""
    cdef double s = 0.0
    cdef const floating* px = cptr1(x)
    if px == NULL:
        return 0.0
    with nogil:
        s = _sum_squares(px, x.shape[0])
    return s


def scale_(floating[::1] x not None, double factor):
    """x *= factor in place (the factor rounded to x's dtype first, as NumPy does)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating f = factor
    cdef floating* px = ptr1(x)
    with nogil:
        for i in range(n):
            px[i] = px[i] * f


def clip_(floating[::1] x not None, double value):
    """x = clip(x, -value, value) in place; NaN stays NaN."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating hi = value, lo = -value, v
    cdef floating* px = ptr1(x)
    with nogil:
        for i in range(n):
            v = px[i]
            v = lo if v < lo else v
            px[i] = hi if v > hi else v


def penalty(const floating[::1] w not None, floating[::1] g, double l1, double l2):
    """Return l1 sum|w| + l2 sum w^2 (double); when g is given, g += l1 sign(w) + 2 l2 w (in g's
    dtype, so that the float32 loop vectorizes)."""
    cdef Py_ssize_t i, n = w.shape[0]
    if g is not None and g.shape[0] != n:
        raise ValueError("penalty: shapes do not match.")
    cdef const floating* pw = cptr1(w)
    cdef floating* pg = ptr1(g) if g is not None else NULL
    cdef double total = 0.0
    cdef floating v, sgn, one = 1, zero = 0, fl1 = l1, fl2 = 2.0 * l2
    if pw == NULL:
        return 0.0
    with nogil:
        if pg != NULL and (l1 != 0.0 or l2 != 0.0):
            for i in range(n):
                v = pw[i]
                sgn = (one if v > zero else zero) - (one if v < zero else zero)  # branch-free
                sgn = v if v != v else sgn                                      # sign(NaN) = NaN
                pg[i] = pg[i] + (fl1 * sgn + fl2 * v)
        if l1 != 0.0:
            total += l1 * _sum_abs(pw, n)
        if l2 != 0.0:
            total += l2 * _sum_squares(pw, n)
    return total
