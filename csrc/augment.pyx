"""Minibatch augmentation kernels of the Trainer: Gaussian input noise and mixup (Zhang et al. 2018).

x/out (n, m) C-contiguous, one floating dtype; indices and labels int64. The noise comes from the
counter-based Philox stream of _philox.pxd (no array is drawn): block b's words (w0, w1, w2, w3)
give four standard normals by Box-Muller, r cos t and r sin t for (w0, w1) then (w2, w3), with
r = sqrt(-2 log((w_even + 1) 2^-32)) and t = 2 pi w_odd 2^-32, in double, element e taking normal
(e mod 4) of block e div 4, as fastnn.backends.base._normals does.
"""

from libc.math cimport cos, log, sin, sqrt, M_PI
from libc.stdint cimport int64_t, uint32_t, uint64_t
from cython cimport floating

from _philox cimport PhiloxKey, philox_key, philox_words, PHILOX_WORDS
from _types cimport ptr2, cptr2


def gaussian_noise(const floating[:, ::1] x not None, double std, uint64_t key, uint64_t step,
                   floating[:, ::1] out not None):
    """out = x + std z, z standard normal from the stream (key, step); out may alias x."""
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1]
    if out.shape[0] != n or out.shape[1] != m:
        raise ValueError("gaussian_noise: shapes do not match.")
    cdef Py_ssize_t size = n * m, e = 0, j, count
    if size == 0:
        return
    cdef const floating* px = cptr2(x)
    cdef floating* po = ptr2(out)
    cdef PhiloxKey ks = philox_key(key)
    cdef uint32_t words[PHILOX_WORDS]
    cdef double z[PHILOX_WORDS]
    cdef double r, t, unit = 2.0 ** -32
    with nogil:
        while e < size:
            count = size - e if size - e < PHILOX_WORDS else PHILOX_WORDS
            philox_words(&ks, step, <uint64_t>(e // 4), (count + 3) // 4, words)
            for j in range(0, count, 2):
                r = sqrt(-2.0 * log((words[j] + 1.0) * unit))
                t = (2.0 * M_PI * unit) * words[j + 1]
                z[j] = r * cos(t)
                z[j + 1] = r * sin(t)
            for j in range(count):
                po[e + j] = <floating>(px[e + j] + std * z[j])
            e += count


cdef int _check_indices(const int64_t[::1] idx, Py_ssize_t n) except -1:
    cdef Py_ssize_t i
    if idx.shape[0] != n:
        raise ValueError("mixup: shapes do not match.")
    for i in range(n):
        if idx[i] < 0 or idx[i] >= n:
            raise IndexError(f"mixup: index {idx[i]} is out of bounds for {n} rows.")
    return 0


def mixup(const floating[:, ::1] x not None, const int64_t[::1] idx not None, double lam,
          floating[:, ::1] out not None):
    """out[i] = lam x[i] + (1 - lam) x[idx[i]]; out must not alias x."""
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1], i, j
    if out.shape[0] != n or out.shape[1] != m:
        raise ValueError("mixup: shapes do not match.")
    _check_indices(idx, n)
    if n * m == 0:
        return
    cdef const floating* px = cptr2(x)
    cdef floating* po = ptr2(out)
    cdef floating a = lam, b = 1.0 - lam
    cdef const floating* xi
    cdef const floating* xk
    with nogil:
        for i in range(n):
            xi = px + i * m
            xk = px + idx[i] * m
            for j in range(m):
                po[i * m + j] = a * xi[j] + b * xk[j]


def mixup_labels(const int64_t[::1] labels not None, const int64_t[::1] idx not None, double lam,
                 floating[:, ::1] out not None):
    """out (n, k) = lam onehot(labels) + (1 - lam) onehot(labels[idx]), labels in [0, k)."""
    cdef Py_ssize_t n = labels.shape[0], k = out.shape[1], i, j
    if out.shape[0] != n:
        raise ValueError("mixup_labels: shapes do not match.")
    _check_indices(idx, n)
    for i in range(n):
        if labels[i] < 0 or labels[i] >= k:
            raise ValueError(f"mixup_labels: labels must be in [0, {k}); got {labels[i]}.")
    if n * k == 0:
        return
    cdef floating* po = ptr2(out)
    cdef floating a = lam, b = 1.0 - lam
    with nogil:
        for i in range(n * k):
            po[i] = 0
        for i in range(n):
            po[i * k + labels[i]] += a
            po[i * k + labels[idx[i]]] += b
