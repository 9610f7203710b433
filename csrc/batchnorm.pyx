"""Batch normalization kernels (Ioffe & Szegedy 2015): per column of x (n, m), C-contiguous, one
floating dtype; per-feature vectors (m,).

Forward: one pass for the statistics (Welford's running mean and sum of squared deviations, in
double whatever the dtype), one pass for out = (x - mu) * a + beta, a = gamma * inv_std. Backward
in closed form: one pass for sum(dy) and sum(dy (x - mu)) (in double), one pass for
dx = k1 dy + k2 (x - mu) + k3. xhat is never stored: the backward recomputes it from x, which the
layer keeps, so the forward writes only its output. Columns are processed in blocks of _COLS so
that the per-column accumulators live on the stack. Shapes are checked before the loops only so
that a wrong call cannot touch memory out of bounds; fastnn.backends.cpu explains the error.
"""

from libc.math cimport sqrt
from cython cimport floating

from _types cimport ptr1, cptr1, ptr2, cptr2

cdef enum:
    _COLS = 1024                              # columns per block: 28-48 KiB of stack


cdef inline void _welford(const floating* x, Py_ssize_t n, Py_ssize_t m, Py_ssize_t w,
                          double* mu, double* m2) noexcept nogil:
    """mu[j] and m2[j] = mean and sum of squared deviations of column j < w of the block that
    starts at x (rows of stride m): Welford's update, one row at a time, in double."""
    cdef Py_ssize_t i, j
    cdef double r, v, d
    cdef const floating* row
    for j in range(w):
        mu[j] = 0.0
        m2[j] = 0.0
    for i in range(n):
        r = 1.0 / (i + 1)
        row = x + i * m
        for j in range(w):
            v = row[j]
            d = v - mu[j]
            mu[j] = mu[j] + d * r
            m2[j] = m2[j] + d * (v - mu[j])


def forward(const floating[:, ::1] x not None, const floating[::1] gamma not None,
            const floating[::1] beta not None, floating[::1] running_mean not None,
            floating[::1] running_var not None, double eps, double momentum, bint training,
            floating[::1] mean, floating[::1] inv_std, floating[:, ::1] out not None):
    """out = gamma (x - mu) inv_std + beta; training: batch mean and biased variance, running
    statistics updated in place (unbiased variance, n >= 2 checked by the caller); else the
    running statistics. mean/inv_std (may be None) receive mu and inv_std."""
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1], c, j, i, w
    if (gamma.shape[0] != m or beta.shape[0] != m or running_mean.shape[0] != m
            or running_var.shape[0] != m or out.shape[0] != n or out.shape[1] != m
            or (mean is not None and mean.shape[0] != m) or (inv_std is not None and inv_std.shape[0] != m)
            or (training and n < 2)):
        raise ValueError("batchnorm_forward: shapes do not match.")
    if m == 0:
        return
    cdef const floating* px = cptr2(x)
    cdef floating* po = ptr2(out)
    cdef const floating* pg = cptr1(gamma)
    cdef const floating* pb = cptr1(beta)
    cdef floating* prm = ptr1(running_mean)
    cdef floating* prv = ptr1(running_var)
    cdef floating* pmean = ptr1(mean) if mean is not None else NULL
    cdef floating* pistd = ptr1(inv_std) if inv_std is not None else NULL
    cdef double mu[_COLS]
    cdef double m2[_COLS]
    cdef floating fmu[_COLS]
    cdef floating fa[_COLS]
    cdef floating fb[_COLS]
    cdef double var, istd, keep = 1.0 - momentum, unbiased = n / (n - 1.0) if n > 1 else 0.0
    cdef const floating* xr
    cdef floating* orow
    with nogil:
        c = 0
        while c < m:
            w = m - c if m - c < _COLS else _COLS
            if training:
                _welford(px + c, n, m, w, mu, m2)
            for j in range(w):
                if training:
                    var = m2[j] / n
                    prm[c + j] = <floating>(keep * prm[c + j] + momentum * mu[j])
                    prv[c + j] = <floating>(keep * prv[c + j] + momentum * var * unbiased)
                else:
                    mu[j] = prm[c + j]
                    var = prv[c + j]
                istd = 1.0 / sqrt(var + eps)
                if pmean != NULL:
                    pmean[c + j] = <floating>mu[j]
                if pistd != NULL:
                    pistd[c + j] = <floating>istd
                fmu[j] = <floating>mu[j]
                fa[j] = <floating>(pg[c + j] * istd)
                fb[j] = pb[c + j]
            for i in range(n):
                xr = px + i * m + c
                orow = po + i * m + c
                for j in range(w):
                    orow[j] = (xr[j] - fmu[j]) * fa[j] + fb[j]
            c += _COLS


def backward(const floating[:, ::1] dy not None, const floating[:, ::1] x not None,
             const floating[::1] gamma not None, const floating[::1] mean not None,
             const floating[::1] inv_std not None, bint training, floating[::1] dgamma,
             floating[::1] dbeta, floating[:, ::1] dx):
    """xhat = (x - mean) inv_std; dgamma = sum(dy xhat), dbeta = sum(dy); training:
    dx = gamma inv_std (dy - mean(dy) - xhat mean(dy xhat)), else dx = gamma inv_std dy. Outputs
    may be None; dx may alias dy (each element is read before it is written), not x."""
    cdef Py_ssize_t n = dy.shape[0], m = dy.shape[1], c, j, i, w
    if (x.shape[0] != n or x.shape[1] != m or gamma.shape[0] != m or mean.shape[0] != m
            or inv_std.shape[0] != m or (dgamma is not None and dgamma.shape[0] != m)
            or (dbeta is not None and dbeta.shape[0] != m)
            or (dx is not None and (dx.shape[0] != n or dx.shape[1] != m))):
        raise ValueError("batchnorm_backward: shapes do not match.")
    if m == 0:
        return
    cdef const floating* pdy = cptr2(dy)
    cdef const floating* px = cptr2(x)
    cdef const floating* pg = cptr1(gamma)
    cdef const floating* pmu = cptr1(mean)
    cdef const floating* pistd = cptr1(inv_std)
    cdef floating* pdg = ptr1(dgamma) if dgamma is not None else NULL
    cdef floating* pdb = ptr1(dbeta) if dbeta is not None else NULL
    cdef floating* pdx = ptr2(dx) if dx is not None else NULL
    cdef bint sums = pdg != NULL or pdb != NULL or (pdx != NULL and training)
    cdef double s1[_COLS]
    cdef double s2[_COLS]
    cdef floating fmu[_COLS]
    cdef floating k1[_COLS]
    cdef floating k2[_COLS]
    cdef floating k3[_COLS]
    cdef double a, istd, g, d
    cdef const floating* dyr
    cdef const floating* xr
    cdef floating* dxr
    with nogil:
        c = 0
        while c < m:
            w = m - c if m - c < _COLS else _COLS
            for j in range(w):
                s1[j] = 0.0
                s2[j] = 0.0
                fmu[j] = pmu[c + j]
            if sums:
                for i in range(n):
                    dyr = pdy + i * m + c
                    xr = px + i * m + c
                    for j in range(w):
                        d = dyr[j]
                        s1[j] = s1[j] + d
                        s2[j] = s2[j] + d * <double>(xr[j] - fmu[j])
            for j in range(w):
                istd = pistd[c + j]
                g = s2[j] * istd                      # sum(dy xhat)
                if pdg != NULL:
                    pdg[c + j] = <floating>g
                if pdb != NULL:
                    pdb[c + j] = <floating>s1[j]
                a = pg[c + j] * istd
                k1[j] = <floating>a
                k2[j] = <floating>(-a * istd * g / n) if training else 0
                k3[j] = <floating>(-a * s1[j] / n) if training else 0
            if pdx != NULL:
                for i in range(n):
                    dyr = pdy + i * m + c
                    xr = px + i * m + c
                    dxr = pdx + i * m + c
                    for j in range(w):
                        dxr[j] = k1[j] * dyr[j] + k2[j] * (xr[j] - fmu[j]) + k3[j]
            c += _COLS
