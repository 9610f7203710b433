"""Kernels on flat parameter/gradient buffers (n,): the SGD update, norms, scaling, clipping, penalty.

All arrays are 1-D, C-contiguous, one floating dtype; updates are in place and the per-element
math runs in that dtype, so the float32 loops vectorize and stream at memory bandwidth. Sums
are accumulated in double, in sixteen independent partial sums (gcc may then vectorize them
without reassociating, which -O3 alone would not do). Shapes are checked before the loops only
so that a wrong call cannot touch memory out of bounds; fastnn.backends.cpu explains the error.
"""

from libc.math cimport fabs
from cython cimport floating

from _types cimport ptr1, cptr1


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
    with nogil:
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
