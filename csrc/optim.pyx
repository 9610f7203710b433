"""Kernels on flat parameter/gradient buffers (n,): the optimizer updates (SGD, Adagrad, Adadelta,
RMSprop, Adam/AdamW, Adamax, NAdam, RAdam), norms, scaling, clipping, penalty.

All arrays are 1-D, C-contiguous, one floating dtype; updates are in place and the per-element
math runs in that dtype, so the float32 loops vectorize and stream at memory bandwidth. Each
update is one pass that reads every buffer once and writes the parameter and its state once;
scalars that depend only on the step (bias corrections) arrive precomputed from Python. The
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

from _types cimport ptr1, cptr1

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


def sgd_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] buf,
               double lr, double momentum, double dampening, bint nesterov, double weight_decay,
               bint first_step):
    """PyTorch's SGD in place: d = g + wd p; with momentum, buf = d on the first step, else
    momentum buf + (1 - dampening) d; d = d + momentum buf (Nesterov) or buf; p -= lr d."""
    cdef Py_ssize_t n = p.shape[0], i
    if g.shape[0] != n or (momentum != 0.0 and (buf is None or buf.shape[0] != n)):
        raise ValueError("sgd_update: shapes do not match.")
    if n == 0:
        return
    cdef floating* pp = ptr1(p)
    cdef const floating* pg = cptr1(g)
    cdef floating* pb = ptr1(buf) if momentum != 0.0 else NULL
    cdef floating flr = lr, mom = momentum, keep = 1.0 - dampening, wd = weight_decay
    cdef floating d, b
    cdef unsigned int fpu
    with nogil:
        fpu = _flush_subnormals()
        if momentum == 0.0:
            if weight_decay == 0.0:
                for i in range(n):
                    pp[i] = pp[i] - flr * pg[i]
            else:
                for i in range(n):
                    pp[i] = pp[i] - flr * (pg[i] + wd * pp[i])
        elif first_step:                                  # buf is uninitialised: never read it
            if nesterov:
                for i in range(n):
                    d = pg[i] + wd * pp[i]
                    pb[i] = d
                    pp[i] = pp[i] - flr * (d + mom * d)
            else:
                for i in range(n):
                    d = pg[i] + wd * pp[i]
                    pb[i] = d
                    pp[i] = pp[i] - flr * d
        elif nesterov:
            for i in range(n):
                d = pg[i] + wd * pp[i]
                b = mom * pb[i] + keep * d
                pb[i] = b
                pp[i] = pp[i] - flr * (d + mom * b)
        else:
            for i in range(n):
                d = pg[i] + wd * pp[i]
                b = mom * pb[i] + keep * d
                pb[i] = b
                pp[i] = pp[i] - flr * b
        _restore_fpu(fpu)


def adagrad_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] state_sum not None,
                   double lr, double eps, double weight_decay):
    """Adagrad in place: d = g + wd p; state_sum += d^2; p -= lr d / (sqrt(state_sum) + eps)."""
    cdef Py_ssize_t n = p.shape[0], i
    if g.shape[0] != n or not _fits(state_sum, n):
        raise ValueError("adagrad_update: shapes do not match.")
    if n == 0:
        return
    cdef floating* pp = ptr1(p)
    cdef const floating* pg = cptr1(g)
    cdef floating* ps = ptr1(state_sum)
    cdef floating flr = lr, e = eps, wd = weight_decay
    cdef floating d, s
    cdef unsigned int fpu
    with nogil:
        fpu = _flush_subnormals()
        for i in range(n):
            d = pg[i] + wd * pp[i]
            s = ps[i] + d * d
            ps[i] = s
            pp[i] = pp[i] - flr * d / (_sqrt(s) + e)
        _restore_fpu(fpu)


def adadelta_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] square_avg not None,
                    floating[::1] acc_delta not None, double lr, double rho, double eps, double weight_decay):
    """Adadelta in place: d = g + wd p; v = rho v + (1 - rho) d^2; delta = sqrt(u + eps) / sqrt(v + eps) d;
    u = rho u + (1 - rho) delta^2; p -= lr delta (v: square_avg, u: acc_delta)."""
    cdef Py_ssize_t n = p.shape[0], i
    if g.shape[0] != n or not _fits(square_avg, n) or not _fits(acc_delta, n):
        raise ValueError("adadelta_update: shapes do not match.")
    if n == 0:
        return
    cdef floating* pp = ptr1(p)
    cdef const floating* pg = cptr1(g)
    cdef floating* pv = ptr1(square_avg)
    cdef floating* pu = ptr1(acc_delta)
    cdef floating flr = lr, r = rho, c = 1.0 - rho, e = eps, wd = weight_decay
    cdef floating d, v, u, delta
    cdef unsigned int fpu
    with nogil:
        fpu = _flush_subnormals()
        for i in range(n):
            d = pg[i] + wd * pp[i]
            v = r * pv[i] + c * d * d
            u = pu[i]
            delta = _sqrt(u + e) / _sqrt(v + e) * d
            pv[i] = v
            pu[i] = r * u + c * delta * delta
            pp[i] = pp[i] - flr * delta
        _restore_fpu(fpu)


def rmsprop_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] square_avg not None,
                   floating[::1] grad_avg, floating[::1] momentum_buffer, double lr, double alpha, double eps,
                   double weight_decay, double momentum, bint centered):
    """RMSprop in place: d = g + wd p; v = alpha v + (1 - alpha) d^2; centered: a = alpha a + (1 - alpha) d,
    denom = sqrt(v - a^2) + eps, else sqrt(v) + eps; momentum: b = momentum b + d / denom, p -= lr b;
    else p -= lr d / denom (v: square_avg, a: grad_avg, b: momentum_buffer)."""
    cdef Py_ssize_t n = p.shape[0], i
    if (g.shape[0] != n or not _fits(square_avg, n) or (centered and not _fits(grad_avg, n))
            or (momentum != 0.0 and not _fits(momentum_buffer, n))):
        raise ValueError("rmsprop_update: shapes do not match.")
    if n == 0:
        return
    cdef floating* pp = ptr1(p)
    cdef const floating* pg = cptr1(g)
    cdef floating* pv = ptr1(square_avg)
    cdef floating* pa = ptr1(grad_avg) if centered else NULL
    cdef floating* pb = ptr1(momentum_buffer) if momentum != 0.0 else NULL
    cdef floating flr = lr, al = alpha, c = 1.0 - alpha, e = eps, wd = weight_decay, mom = momentum
    cdef floating d, v, a, b
    cdef unsigned int fpu
    with nogil:
        fpu = _flush_subnormals()
        if not centered and momentum == 0.0:
            for i in range(n):
                d = pg[i] + wd * pp[i]
                v = al * pv[i] + c * d * d
                pv[i] = v
                pp[i] = pp[i] - flr * d / (_sqrt(v) + e)
        elif not centered:
            for i in range(n):
                d = pg[i] + wd * pp[i]
                v = al * pv[i] + c * d * d
                pv[i] = v
                b = mom * pb[i] + d / (_sqrt(v) + e)
                pb[i] = b
                pp[i] = pp[i] - flr * b
        elif momentum == 0.0:
            for i in range(n):
                d = pg[i] + wd * pp[i]
                v = al * pv[i] + c * d * d
                a = al * pa[i] + c * d
                pv[i] = v
                pa[i] = a
                pp[i] = pp[i] - flr * d / (_sqrt(v - a * a) + e)
        else:
            for i in range(n):
                d = pg[i] + wd * pp[i]
                v = al * pv[i] + c * d * d
                a = al * pa[i] + c * d
                pv[i] = v
                pa[i] = a
                b = mom * pb[i] + d / (_sqrt(v - a * a) + e)
                pb[i] = b
                pp[i] = pp[i] - flr * b
        _restore_fpu(fpu)


def adam_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] exp_avg not None,
                floating[::1] exp_avg_sq not None, floating[::1] max_exp_avg_sq, double lr, double beta1,
                double beta2, double eps, double weight_decay, bint amsgrad, bint decoupled_weight_decay,
                double bias_correction1, double bias_correction2):
    """Adam/AdamW in place: d = g + wd p (AdamW: d = g and p *= 1 - lr wd); m = b1 m + (1 - b1) d;
    v = b2 v + (1 - b2) d^2 (amsgrad: vmax = max(vmax, v), used for v);
    p -= lr / bc1 m / (sqrt(v) / sqrt(bc2) + eps)."""
    cdef Py_ssize_t n = p.shape[0], i
    if (g.shape[0] != n or not _fits(exp_avg, n) or not _fits(exp_avg_sq, n)
            or (amsgrad and not _fits(max_exp_avg_sq, n))):
        raise ValueError("adam_update: shapes do not match.")
    if n == 0:
        return
    cdef floating* pp = ptr1(p)
    cdef const floating* pg = cptr1(g)
    cdef floating* pm = ptr1(exp_avg)
    cdef floating* pv = ptr1(exp_avg_sq)
    cdef floating* pw = ptr1(max_exp_avg_sq) if amsgrad else NULL
    cdef floating b1 = beta1, c1 = 1.0 - beta1, b2 = beta2, c2 = 1.0 - beta2, e = eps
    cdef floating step = lr / bias_correction1, inv_bc2 = 1.0 / sqrt(bias_correction2)
    # coupled decay enters d; decoupled decay scales p (one of the two is a no-op)
    cdef floating wd = 0.0 if decoupled_weight_decay else weight_decay
    cdef floating shrink = 1.0 - lr * weight_decay if decoupled_weight_decay else 1.0
    cdef floating x, d, m, v
    cdef unsigned int fpu
    with nogil:
        fpu = _flush_subnormals()
        if amsgrad:
            for i in range(n):
                x = pp[i]
                d = pg[i] + wd * x
                m = b1 * pm[i] + c1 * d
                v = b2 * pv[i] + c2 * d * d
                pm[i] = m
                pv[i] = v
                v = pw[i] if pw[i] >= v else v            # NaN in v propagates, as torch.maximum
                pw[i] = v
                pp[i] = x * shrink - step * m / (_sqrt(v) * inv_bc2 + e)
        else:
            for i in range(n):
                x = pp[i]
                d = pg[i] + wd * x
                m = b1 * pm[i] + c1 * d
                v = b2 * pv[i] + c2 * d * d
                pm[i] = m
                pv[i] = v
                pp[i] = x * shrink - step * m / (_sqrt(v) * inv_bc2 + e)
        _restore_fpu(fpu)


def adamax_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] exp_avg not None,
                  floating[::1] exp_inf not None, double lr, double beta1, double beta2, double eps,
                  double weight_decay, double bias_correction1):
    """Adamax in place: d = g + wd p; m = b1 m + (1 - b1) d; u = max(b2 u, |d| + eps); p -= lr / bc1 m / u."""
    cdef Py_ssize_t n = p.shape[0], i
    if g.shape[0] != n or not _fits(exp_avg, n) or not _fits(exp_inf, n):
        raise ValueError("adamax_update: shapes do not match.")
    if n == 0:
        return
    cdef floating* pp = ptr1(p)
    cdef const floating* pg = cptr1(g)
    cdef floating* pm = ptr1(exp_avg)
    cdef floating* pu = ptr1(exp_inf)
    cdef floating b1 = beta1, c1 = 1.0 - beta1, b2 = beta2, e = eps, wd = weight_decay
    cdef floating step = lr / bias_correction1
    cdef floating x, d, m, u, a
    cdef unsigned int fpu
    with nogil:
        fpu = _flush_subnormals()
        for i in range(n):
            x = pp[i]
            d = pg[i] + wd * x
            m = b1 * pm[i] + c1 * d
            u = b2 * pu[i]
            a = fabs(d) + e
            u = u if u >= a else a                         # NaN in d propagates
            pm[i] = m
            pu[i] = u
            pp[i] = x - step * m / u
        _restore_fpu(fpu)


def nadam_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] exp_avg not None,
                 floating[::1] exp_avg_sq not None, double lr, double beta1, double beta2, double eps,
                 double weight_decay, double mu, double mu_next, double mu_product, double bias_correction2):
    """NAdam in place: d = g + wd p; m, v as Adam; denom = sqrt(v / bc2) + eps;
    p -= lr (1 - mu) / (1 - mu_product) d / denom + lr mu_next / (1 - mu_product mu_next) m / denom."""
    cdef Py_ssize_t n = p.shape[0], i
    if g.shape[0] != n or not _fits(exp_avg, n) or not _fits(exp_avg_sq, n):
        raise ValueError("nadam_update: shapes do not match.")
    if n == 0:
        return
    cdef floating* pp = ptr1(p)
    cdef const floating* pg = cptr1(g)
    cdef floating* pm = ptr1(exp_avg)
    cdef floating* pv = ptr1(exp_avg_sq)
    cdef floating b1 = beta1, c1 = 1.0 - beta1, b2 = beta2, c2 = 1.0 - beta2, e = eps, wd = weight_decay
    cdef floating inv_bc2 = 1.0 / bias_correction2
    cdef floating cg = lr * (1.0 - mu) / (1.0 - mu_product)
    cdef floating cm = lr * mu_next / (1.0 - mu_product * mu_next)
    cdef floating x, d, m, v
    cdef unsigned int fpu
    with nogil:
        fpu = _flush_subnormals()
        for i in range(n):
            x = pp[i]
            d = pg[i] + wd * x
            m = b1 * pm[i] + c1 * d
            v = b2 * pv[i] + c2 * d * d
            pm[i] = m
            pv[i] = v
            pp[i] = x - (cg * d + cm * m) / (_sqrt(v * inv_bc2) + e)
        _restore_fpu(fpu)


def radam_update(floating[::1] p not None, const floating[::1] g not None, floating[::1] exp_avg not None,
                 floating[::1] exp_avg_sq not None, double lr, double beta1, double beta2, double eps,
                 double weight_decay, bint decoupled_weight_decay, double bias_correction1,
                 double bias_correction2, double rect):
    """RAdam in place: d = g + wd p (decoupled: d = g and p *= 1 - lr wd); m, v as Adam;
    rect > 0: p -= lr rect sqrt(bc2) / bc1 m / (sqrt(v) + eps); else p -= lr / bc1 m."""
    cdef Py_ssize_t n = p.shape[0], i
    if g.shape[0] != n or not _fits(exp_avg, n) or not _fits(exp_avg_sq, n):
        raise ValueError("radam_update: shapes do not match.")
    if n == 0:
        return
    cdef floating* pp = ptr1(p)
    cdef const floating* pg = cptr1(g)
    cdef floating* pm = ptr1(exp_avg)
    cdef floating* pv = ptr1(exp_avg_sq)
    cdef floating b1 = beta1, c1 = 1.0 - beta1, b2 = beta2, c2 = 1.0 - beta2, e = eps
    cdef floating wd = 0.0 if decoupled_weight_decay else weight_decay
    cdef floating shrink = 1.0 - lr * weight_decay if decoupled_weight_decay else 1.0
    cdef bint adaptive = rect > 0.0
    cdef floating step = lr * rect * sqrt(bias_correction2) / bias_correction1 if adaptive else lr / bias_correction1
    cdef floating x, d, m, v
    cdef unsigned int fpu
    with nogil:
        fpu = _flush_subnormals()
        if adaptive:
            for i in range(n):
                x = pp[i]
                d = pg[i] + wd * x
                m = b1 * pm[i] + c1 * d
                v = b2 * pv[i] + c2 * d * d
                pm[i] = m
                pv[i] = v
                pp[i] = x * shrink - step * m / (_sqrt(v) + e)
        else:
            for i in range(n):
                x = pp[i]
                d = pg[i] + wd * x
                m = b1 * pm[i] + c1 * d
                pm[i] = m
                pv[i] = b2 * pv[i] + c2 * d * d
                pp[i] = x * shrink - step * m
        _restore_fpu(fpu)


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
