"""Activation kernels: y = f(x) (softmax row-wise) and dx = dy * f'(.).

Activation codes are positions in fastnn.backends.base.ACTIVATIONS. Arrays are (n, m),
C-contiguous, one floating dtype; out may alias an input. The shape checks only keep a wrong
call from touching memory out of bounds; fastnn.backends.cpu explains the error.
"""

from cython cimport floating

from _activations cimport act_forward, act_backward, IDENTITY, GELU, SILU, N_ACTIVATIONS
from _types cimport ptr2, cptr2


cdef inline bint _is(const floating[:, ::1] a, Py_ssize_t n, Py_ssize_t m):
    """a is None or has shape (n, m)."""
    return a is None or (a.shape[0] == n and a.shape[1] == m)


def forward(int code, double alpha, const floating[:, ::1] x not None, floating[:, ::1] out not None):
    """out = f(x) for activation ``code`` (alpha: leaky_relu slope, elu scale)."""
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1]
    if out.shape[0] != n or out.shape[1] != m or code < 0 or code >= N_ACTIVATIONS:
        raise ValueError("activation: shapes do not match.")
    cdef const floating* px = cptr2(x)
    cdef floating* po = ptr2(out)
    with nogil:
        act_forward(code, <floating>alpha, px, NULL, NULL, po, n, m)


def backward(int code, double alpha, const floating[:, ::1] dy not None, const floating[:, ::1] x,
             const floating[:, ::1] y, floating[:, ::1] out not None):
    """out = dy * f'(.): from the input x for gelu/silu, from the output y otherwise (the
    other may be None)."""
    cdef Py_ssize_t n = dy.shape[0], m = dy.shape[1]
    if code < 0 or code >= N_ACTIVATIONS:
        raise ValueError(f"activation_backward: unknown activation code {code}.")
    if code == GELU or code == SILU:
        if x is None:
            raise ValueError("activation_backward: this activation needs x, the input; got None.")
    elif code != IDENTITY and y is None:
        raise ValueError("activation_backward: this activation needs y, the output; got None.")
    if not _is(x, n, m) or not _is(y, n, m) or out.shape[0] != n or out.shape[1] != m:
        raise ValueError("activation_backward: shapes do not match.")
    cdef const floating* pdy = cptr2(dy)
    cdef const floating* px = cptr2(x) if x is not None else NULL
    cdef const floating* py = cptr2(y) if y is not None else NULL
    cdef floating* po = ptr2(out)
    with nogil:
        act_backward(code, <floating>alpha, pdy, px, py, po, NULL, n, m)
