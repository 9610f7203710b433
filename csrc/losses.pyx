"""Fused loss kernels: one pass per row computes the loss and, when ``grad`` is given, the gradient.

Each kernel adds sum_i weight_i * loss_i (accumulated in double) to loss_out[0] (float64, (1,))
and writes grad = scale * weight_i * dloss/dpred; weight (n,) and grad (n, k) may be None.
Scalar work per element is done in double and rounded once, as the float64 reference does.
Shapes are checked before the loops only so that a wrong call cannot touch memory out of
bounds; fastnn.backends.cpu explains the error.
"""

from libc.math cimport exp, log, log1p
from libc.stdint cimport int64_t
from cython cimport floating

from _activations cimport f_exp
from _types cimport ptr2, cptr2, cptr1


cdef int _check(str owner, const floating[:, ::1] pred, const floating[:, ::1] target,
                const floating[::1] weight, double[::1] loss_out, floating[:, ::1] grad) except -1:
    cdef Py_ssize_t n = pred.shape[0], k = pred.shape[1]
    if ((target is not None and (target.shape[0] != n or target.shape[1] != k))
            or (weight is not None and weight.shape[0] != n) or loss_out.shape[0] < 1
            or (grad is not None and (grad.shape[0] != n or grad.shape[1] != k))):
        raise ValueError(f"{owner}: shapes do not match.")
    return 0


def cross_entropy_labels(const floating[:, ::1] logits not None, const int64_t[::1] labels not None,
                         double label_smoothing, const floating[::1] weight, double scale,
                         double[::1] loss_out not None, floating[:, ::1] grad):
    """Stable softmax cross-entropy against integer labels (n,), each in [0, k), with label
    smoothing eps: t' = (1 - eps) onehot + eps / k; loss_i = lse_i - sum_j t'_j z_ij; grad p - t'."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], i, j, lab, bad = -1
    _check("cross_entropy", logits, logits, weight, loss_out, grad)
    if labels.shape[0] != n:
        raise ValueError("cross_entropy: shapes do not match.")
    if n == 0:
        return
    if k == 0:
        raise ValueError("cross_entropy: logits must have at least one column.")
    cdef const floating* pz = cptr2(logits)
    cdef const int64_t* pl = &labels[0]
    cdef const floating* pw = cptr1(weight) if weight is not None else NULL
    cdef floating* pg = ptr2(grad) if grad is not None else NULL
    cdef const floating* zr
    cdef floating* gr
    cdef floating mx, e
    cdef double s, inv, li, sm, c, wi, total = 0.0
    cdef double keep = 1.0 - label_smoothing, eps_k = label_smoothing / k
    with nogil:
        for i in range(n):
            lab = pl[i]
            if lab < 0 or lab >= k:
                bad = i
                break
            zr = pz + i * k
            mx = zr[0]
            for j in range(1, k):
                if zr[j] > mx:
                    mx = zr[j]
            s = 0.0
            if pg != NULL:
                gr = pg + i * k
                for j in range(k):
                    e = f_exp(zr[j] - mx)
                    gr[j] = e
                    s += e
            else:
                for j in range(k):
                    s += f_exp(zr[j] - mx)
            li = log(s) - keep * (<double>zr[lab] - mx)
            if label_smoothing != 0.0:
                sm = 0.0
                for j in range(k):
                    sm += <double>zr[j] - mx
                li -= eps_k * sm
            wi = pw[i] if pw != NULL else 1.0
            total += wi * li
            if pg != NULL:
                c = scale * wi
                inv = 1.0 / s
                for j in range(k):
                    gr[j] = <floating>(c * (gr[j] * inv - eps_k - (keep if j == lab else 0.0)))
    if bad >= 0:
        raise ValueError(f"cross_entropy: target labels must be in [0, {k}) for {k} classes; "
                         f"got {labels[bad]} at row {bad}.")
    loss_out[0] += total


def cross_entropy_soft(const floating[:, ::1] logits not None, const floating[:, ::1] target not None,
                       double label_smoothing, const floating[::1] weight, double scale,
                       double[::1] loss_out not None, floating[:, ::1] grad):
    """Stable softmax cross-entropy against float targets (n, k): t' = (1 - eps) t + eps / k,
    T = sum_j t'_j; loss_i = T lse_i - sum_j t'_j z_ij; grad p T - t'."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], i, j
    _check("cross_entropy", logits, target, weight, loss_out, grad)
    if n == 0:
        return
    if k == 0:
        raise ValueError("cross_entropy: logits must have at least one column.")
    cdef const floating* pz = cptr2(logits)
    cdef const floating* pt = cptr2(target)
    cdef const floating* pw = cptr1(weight) if weight is not None else NULL
    cdef floating* pg = ptr2(grad) if grad is not None else NULL
    cdef const floating* zr
    cdef const floating* tr
    cdef floating* gr
    cdef floating mx, e
    cdef double s, tj, tsum, dot, li, c, wi, pT, total = 0.0
    cdef double keep = 1.0 - label_smoothing, eps_k = label_smoothing / k
    with nogil:
        for i in range(n):
            zr = pz + i * k
            tr = pt + i * k
            mx = zr[0]
            for j in range(1, k):
                if zr[j] > mx:
                    mx = zr[j]
            s = 0.0
            tsum = 0.0
            dot = 0.0
            for j in range(k):
                e = f_exp(zr[j] - mx)
                if pg != NULL:
                    pg[i * k + j] = e
                s += e
                tj = keep * tr[j] + eps_k
                tsum += tj
                dot += tj * (<double>zr[j] - mx)
            li = tsum * log(s) - dot
            wi = pw[i] if pw != NULL else 1.0
            total += wi * li
            if pg != NULL:
                gr = pg + i * k
                c = scale * wi
                pT = tsum / s
                for j in range(k):
                    gr[j] = <floating>(c * (gr[j] * pT - (keep * tr[j] + eps_k)))
    loss_out[0] += total


def binary_cross_entropy(const floating[:, ::1] logits not None, const floating[:, ::1] target not None,
                         const floating[::1] weight, double scale, double[::1] loss_out not None,
                         floating[:, ::1] grad):
    """Stable sigmoid + binary cross-entropy per element: max(z, 0) - z t + log1p(exp(-|z|));
    grad sigmoid(z) - t."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], i, j
    _check("binary_cross_entropy", logits, target, weight, loss_out, grad)
    if n == 0 or k == 0:
        return
    cdef const floating* pz = cptr2(logits)
    cdef const floating* pt = cptr2(target)
    cdef const floating* pw = cptr1(weight) if weight is not None else NULL
    cdef floating* pg = ptr2(grad) if grad is not None else NULL
    cdef double z, t, e, row, c, wi, sig, total = 0.0
    with nogil:
        for i in range(n):
            row = 0.0
            wi = pw[i] if pw != NULL else 1.0
            c = scale * wi
            for j in range(k):
                z = pz[i * k + j]
                t = pt[i * k + j]
                e = exp(-z if z > 0 else z)
                row += (z if z > 0 else 0.0) - z * t + log1p(e)
                if pg != NULL:
                    sig = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
                    pg[i * k + j] = <floating>(c * (sig - t))
            total += wi * row
    loss_out[0] += total


cdef inline double _residual_loss(int code, double d, double delta, double* g) noexcept nogil:
    """Loss of one residual d = p - t for code 0 (squared), 1 (absolute), 2 (Huber); its
    derivative goes to g[0]."""
    cdef double a = -d if d < 0 else d
    if code == 0:
        g[0] = 2.0 * d
        return d * d
    if code == 1:
        g[0] = 1.0 if d > 0 else (-1.0 if d < 0 else 0.0)
        return a
    g[0] = delta if d > delta else (-delta if d < -delta else d)
    return 0.5 * d * d if a <= delta else delta * (a - 0.5 * delta)


def residual(int code, const floating[:, ::1] pred not None, const floating[:, ::1] target not None,
             double delta, const floating[::1] weight, double scale, double[::1] loss_out not None,
             floating[:, ::1] grad):
    """Elementwise regression losses of the residual d = p - t, by ``code``:
    0 squared error d^2 (grad 2d), 1 absolute error |d| (grad sign d, 0 where d = 0),
    2 Huber: d^2/2 where |d| <= delta, else delta (|d| - delta/2) (grad clip(d, +-delta))."""
    cdef Py_ssize_t n = pred.shape[0], k = pred.shape[1], i, j
    _check(("mse", "mae", "huber")[code], pred, target, weight, loss_out, grad)
    if n == 0 or k == 0:
        return
    cdef const floating* pp = cptr2(pred)
    cdef const floating* pt = cptr2(target)
    cdef const floating* pw = cptr1(weight) if weight is not None else NULL
    cdef floating* pg = ptr2(grad) if grad is not None else NULL
    cdef double d, g, row, c, wi, total = 0.0
    with nogil:
        for i in range(n):
            row = 0.0
            wi = pw[i] if pw != NULL else 1.0
            c = scale * wi
            for j in range(k):
                d = <double>pp[i * k + j] - pt[i * k + j]
                row += _residual_loss(code, d, delta, &g)
                if pg != NULL:
                    pg[i * k + j] = <floating>(c * g)
            total += wi * row
    loss_out[0] += total
