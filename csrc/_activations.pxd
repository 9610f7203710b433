# Elementwise and row-wise activation kernels, shared (inline) by activations.pyx and dense.pyx.
#
# Codes are the positions in fastnn.backends.base.ACTIVATIONS. Each activation is a tag type; the
# loops below are fused over (floating x tag), so every (dtype, activation) pair is compiled into
# its own branch-free loop and the switch on the code runs once per call, outside the loops
# (which lets gcc vectorize the cheap ones). Formulas and their numerically stable forms follow
# the NumPy reference; derivatives use the output y, except gelu and silu, which use the input x.
# Arrays are C-contiguous blocks of n rows by m columns; dst may alias any source.

from libc.math cimport exp, expf, expm1, expm1f, log1p, log1pf, tanh, tanhf, erfc, erfcf, log, logf
from cython cimport floating

cdef enum:
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    ELU = 5
    GELU = 6
    SOFTPLUS = 7
    SILU = 8
    SOFTMAX = 9
    N_ACTIVATIONS = 10

# One empty-ish struct per activation: used only as a compile-time tag for the fused loops.
cdef struct Identity:
    char _unused
cdef struct Sigmoid:
    char _unused
cdef struct Tanh:
    char _unused
cdef struct Relu:
    char _unused
cdef struct LeakyRelu:
    char _unused
cdef struct Elu:
    char _unused
cdef struct Gelu:
    char _unused
cdef struct Softplus:
    char _unused
cdef struct Silu:
    char _unused

ctypedef fused act_t:
    Identity
    Sigmoid
    Tanh
    Relu
    LeakyRelu
    Elu
    Gelu
    Softplus
    Silu


# ---------------------------------------------------------------- math in the array's precision
cdef inline floating f_exp(floating v) noexcept nogil:
    if floating is float:
        return expf(v)
    else:
        return exp(v)

cdef inline floating f_expm1(floating v) noexcept nogil:
    if floating is float:
        return expm1f(v)
    else:
        return expm1(v)

cdef inline floating f_log1p(floating v) noexcept nogil:
    if floating is float:
        return log1pf(v)
    else:
        return log1p(v)

cdef inline floating f_log(floating v) noexcept nogil:
    if floating is float:
        return logf(v)
    else:
        return log(v)

cdef inline floating f_tanh(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)

cdef inline floating f_erfc(floating v) noexcept nogil:
    if floating is float:
        return erfcf(v)
    else:
        return erfc(v)

cdef inline floating f_abs(floating v) noexcept nogil:
    return -v if v < 0 else v

cdef inline floating f_sigmoid(floating v) noexcept nogil:
    """Stable logistic: exp is only ever taken of -|v|."""
    cdef floating one = 1
    cdef floating e = f_exp(-f_abs(v))
    if v >= 0:
        return one / (one + e)
    return e / (one + e)


# ----------------------------------------------------------------------- one element
cdef inline floating act_value(act_t* tag, floating v, floating alpha) noexcept nogil:
    """f(v) for the activation named by the tag's type."""
    cdef floating zero = 0, one = 1, half = 0.5
    cdef floating inv_sqrt2 = 0.70710678118654752440
    if act_t is Identity:
        return v
    elif act_t is Sigmoid:
        return f_sigmoid(v)
    elif act_t is Tanh:
        return f_tanh(v)
    elif act_t is Relu:
        return zero if v < zero else v          # NaN propagates, as np.maximum
    elif act_t is LeakyRelu:
        return v if v > zero else alpha * v
    elif act_t is Elu:
        return v if v > zero else alpha * f_expm1(v)
    elif act_t is Gelu:                          # exact form: 1 + erf(t) = erfc(-t), exact in the tail
        return half * v * f_erfc(-v * inv_sqrt2)
    elif act_t is Softplus:                      # max(v, 0) + log1p(exp(-|v|))
        return (v if v > zero else zero) + f_log1p(f_exp(-f_abs(v)))
    else:                                        # Silu
        return v * f_sigmoid(v)


cdef inline floating act_grad(act_t* tag, floating dy, floating s, floating alpha) noexcept nogil:
    """dy * f'(.), where s is the output y, or the input x for gelu and silu."""
    cdef floating zero = 0, one = 1, half = 0.5
    cdef floating inv_sqrt2 = 0.70710678118654752440
    cdef floating inv_sqrt_2pi = 0.39894228040143267794
    cdef floating cdf, sg
    if act_t is Identity:
        return dy
    elif act_t is Sigmoid:
        return dy * s * (one - s)
    elif act_t is Tanh:
        return dy * (one - s * s)
    elif act_t is Relu:                          # dy * (y > 0): inf/NaN in dy behave as the reference
        return dy * (one if s > zero else zero)
    elif act_t is LeakyRelu:                     # alpha >= 0, so y > 0 exactly where x > 0
        return dy * (one if s > zero else alpha)
    elif act_t is Elu:                           # x <= 0: f'(x) = alpha exp(x) = y + alpha
        return dy * (one if s > zero else s + alpha)
    elif act_t is Softplus:                      # f'(x) = sigmoid(x) = 1 - exp(-y)
        return dy * -f_expm1(-s)
    elif act_t is Gelu:
        cdf = half * f_erfc(-s * inv_sqrt2)
        return dy * (cdf + s * (f_exp(-half * s * s) * inv_sqrt_2pi))
    else:                                        # Silu
        sg = f_sigmoid(s)
        return dy * sg * (one + s * (one - sg))


# ----------------------------------------------------------------------- loops
cdef inline void act_rows_t(act_t* tag, floating alpha, const floating* src, const floating* b,
                            floating* zdst, floating* dst, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """dst = f(src + b) over n x m; b (m,) may be NULL; zdst (may be NULL) receives src + b."""
    cdef Py_ssize_t i, j
    cdef floating v
    cdef const floating* s
    cdef floating* d
    cdef floating* zd
    if b == NULL:
        if <const floating*>dst == src:          # in place: one pointer, no alias checks
            for j in range(n * m):
                dst[j] = act_value(tag, dst[j], alpha)
        else:
            for j in range(n * m):
                dst[j] = act_value(tag, src[j], alpha)
    elif zdst == NULL:
        for i in range(n):
            d = dst + i * m
            if <const floating*>d == src + i * m:
                for j in range(m):
                    d[j] = act_value(tag, d[j] + b[j], alpha)
            else:
                s = src + i * m
                for j in range(m):
                    d[j] = act_value(tag, s[j] + b[j], alpha)
    else:
        for i in range(n):
            s = src + i * m
            zd = zdst + i * m
            d = dst + i * m
            for j in range(m):
                v = s[j] + b[j]
                zd[j] = v
                d[j] = act_value(tag, v, alpha)


cdef inline void softmax_rows(const floating* src, const floating* b, floating* zdst, floating* dst,
                              Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """Row-wise dst = softmax(src + b), with the row max subtracted; zdst as in act_rows_t."""
    cdef Py_ssize_t i, j
    cdef floating v, mx, inv
    cdef double total
    cdef const floating* s
    cdef floating* d
    for i in range(n):
        s = src + i * m
        d = dst + i * m
        if m == 0:
            continue
        mx = s[0] + (b[0] if b != NULL else 0)
        for j in range(m):
            v = s[j] + (b[j] if b != NULL else 0)
            if zdst != NULL:
                zdst[i * m + j] = v
            d[j] = v
            if v > mx:
                mx = v
        total = 0.0
        for j in range(m):
            v = f_exp(d[j] - mx)
            d[j] = v
            total += v
        inv = <floating>(1.0 / total)
        for j in range(m):
            d[j] = d[j] * inv


cdef inline void act_forward(int code, floating alpha, const floating* src, const floating* b,
                             floating* zdst, floating* dst, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """dst = f(src + b) for activation ``code`` (row-wise for softmax). See act_rows_t."""
    if code == IDENTITY:
        if b == NULL and <const floating*>dst == src:
            return
        act_rows_t(<Identity*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == SIGMOID:
        act_rows_t(<Sigmoid*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == TANH:
        act_rows_t(<Tanh*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == RELU:
        act_rows_t(<Relu*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == LEAKY_RELU:
        act_rows_t(<LeakyRelu*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == ELU:
        act_rows_t(<Elu*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == GELU:
        act_rows_t(<Gelu*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == SOFTPLUS:
        act_rows_t(<Softplus*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == SILU:
        act_rows_t(<Silu*>NULL, alpha, src, b, zdst, dst, n, m)
    elif code == SOFTMAX:
        softmax_rows(src, b, zdst, dst, n, m)


cdef inline void grad_rows_t(act_t* tag, floating alpha, const floating* dy, const floating* s,
                             floating* dst, floating* db, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """dst = dy * f'(s) over n x m; when db (m,) is not NULL it receives the column sums of dst."""
    cdef Py_ssize_t i, j
    cdef floating v
    cdef const floating* dyr
    cdef const floating* sr
    cdef floating* d
    if db == NULL:
        for j in range(n * m):
            dst[j] = act_grad(tag, dy[j], s[j], alpha)
    else:
        for j in range(m):
            db[j] = 0
        for i in range(n):
            dyr = dy + i * m
            sr = s + i * m
            d = dst + i * m
            for j in range(m):
                v = act_grad(tag, dyr[j], sr[j], alpha)
                d[j] = v
                db[j] += v


cdef inline void softmax_grad_rows(const floating* dy, const floating* y, floating* dst, floating* db,
                                   Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """Row-wise dst = y * (dy - sum(dy * y)); db as in grad_rows_t."""
    cdef Py_ssize_t i, j
    cdef double dot
    cdef floating c, v
    if db != NULL:
        for j in range(m):
            db[j] = 0
    for i in range(n):
        dot = 0.0
        for j in range(m):
            dot += <double>dy[i * m + j] * y[i * m + j]
        c = <floating>dot
        for j in range(m):
            v = y[i * m + j] * (dy[i * m + j] - c)
            dst[i * m + j] = v
            if db != NULL:
                db[j] += v


cdef inline void act_backward(int code, floating alpha, const floating* dy, const floating* x,
                              const floating* y, floating* dst, floating* db,
                              Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """dst = dy * f'(.) for activation ``code`` (x is read for gelu/silu, y otherwise); db optional."""
    if code == IDENTITY:
        grad_rows_t(<Identity*>NULL, alpha, dy, dy, dst, db, n, m)
    elif code == SIGMOID:
        grad_rows_t(<Sigmoid*>NULL, alpha, dy, y, dst, db, n, m)
    elif code == TANH:
        grad_rows_t(<Tanh*>NULL, alpha, dy, y, dst, db, n, m)
    elif code == RELU:
        grad_rows_t(<Relu*>NULL, alpha, dy, y, dst, db, n, m)
    elif code == LEAKY_RELU:
        grad_rows_t(<LeakyRelu*>NULL, alpha, dy, y, dst, db, n, m)
    elif code == ELU:
        grad_rows_t(<Elu*>NULL, alpha, dy, y, dst, db, n, m)
    elif code == GELU:
        grad_rows_t(<Gelu*>NULL, alpha, dy, x, dst, db, n, m)
    elif code == SOFTPLUS:
        grad_rows_t(<Softplus*>NULL, alpha, dy, y, dst, db, n, m)
    elif code == SILU:
        grad_rows_t(<Silu*>NULL, alpha, dy, x, dst, db, n, m)
    elif code == SOFTMAX:
        softmax_grad_rows(dy, y, dst, db, n, m)
