"""Argument checks at the fast backends' boundary, shared by CpuBackend and CudaBackend: each
raises what the caller must fix (mixed float dtypes, wrong shapes, a missing array) with the
owner, the argument and the remedy in the message. Nothing here needs the compiled CPU kernels
or numba, so either backend loads without the other."""

from __future__ import annotations

import numpy as np

from .._checks import FLOAT_DTYPES
from .base import ACTIVATION_CODES, ACTIVATIONS, NEEDS_INPUT

def _dtype_name(dtype):
    return f"np.{dtype}" if dtype in FLOAT_DTYPES else repr(str(dtype))


def _check_dtypes(owner, anchor, floats, outputs=()):
    """Raise TypeError when the float arrays of one call mix float32 and float64. ``anchor``
    names the array whose dtype the others should follow; ``floats`` is [(name, array)]."""
    # (None == np.dtype("float64") is True in NumPy: keep non-arrays out of the comparisons)
    floats = [(name, a) for name, a in floats
              if isinstance(getattr(a, "dtype", None), np.dtype) and a.dtype in FLOAT_DTYPES]  # device arrays too
    ref = dict(floats).get(anchor)
    if ref is None:
        if not floats:
            return
        anchor, ref = floats[0]
    want = ref.dtype
    for name, a in floats:
        dt = a.dtype
        if dt != want:
            remedy = (f"allocate {name} with dtype={_dtype_name(want)}" if name in outputs
                      else f"cast with {name}.astype({_dtype_name(want)})")
            raise TypeError(f"{owner}: {name} is {dt} but {anchor} is {want}; {remedy}.")


def _expect(owner, name, a, shape):
    """Raise ValueError unless ``a`` (None skipped) has ``shape``; None entries match any size."""
    if a is None or not hasattr(a, "shape"):
        return
    if len(a.shape) != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        dims = ", ".join("any" if s is None else str(s) for s in shape)
        want = f"({dims},)" if len(shape) == 1 else f"({dims})"
        raise ValueError(f"{owner}: {name} must have shape {want}; got {tuple(a.shape)}.")


def _fast_ok(inputs, outputs=(), ndim=None):
    """True when every array (None skipped) is an ndarray the compiled kernels take: float32 or
    float64, C-contiguous, of the given ndim (a dict name -> ndim), outputs writeable."""
    for name, a in list(inputs) + list(outputs):
        if a is None:
            continue
        if not isinstance(a, np.ndarray) or a.dtype not in FLOAT_DTYPES or not a.flags.c_contiguous:
            return False
        if ndim is not None and a.ndim != ndim.get(name, 2):
            return False
    return all(a is None or a.flags.writeable for _, a in outputs)


def _arrays(*arrays):
    """True when every argument is None or an ndarray (anything else goes to the reference)."""
    return all(a is None or isinstance(a, np.ndarray) for a in arrays)


def _unknown_activation(owner, name):
    if name not in ACTIVATION_CODES:
        listed = ", ".join(repr(a) for a in ACTIVATIONS)
        raise ValueError(f"{owner}: unknown activation {name!r}; choose one of {listed}.")


def _update_refused(owner, p, g, state):
    """Examine the arguments of an optimizer update the compiled kernel refused. ``state`` is
    [(name, buffer, when)]: ``when`` is None for a buffer this call does not use, else the
    condition under which it is needed ('' for always). Raises what the caller must fix (mixed
    dtypes, shapes, a missing buffer); returns True when the arrays suit the kernel (the refusal
    is unexpected: re-raise it), False when the NumPy reference should run the update (other
    dtypes, non-contiguous or read-only arrays, array-likes)."""
    used = [(name, a) for name, a, when in state if when is not None]
    if p is None or g is None or not _arrays(p, g, *(a for _, a in used)):
        return False
    _check_update(owner, p, g, state)
    return _fast_ok([("g", g)], [("p", p), *used], ndim=dict.fromkeys(["p", "g", *(n for n, _ in used)], 1))


def _check_update(owner, p, g, state):
    """Raise for an optimizer call with a missing buffer (``state`` as _update_refused takes
    it), mixed float dtypes or a buffer not shaped like p."""
    used = [(name, a) for name, a, when in state if when is not None]
    for name, a, when in state:
        if when is not None and a is None:
            raise ValueError(f"{owner}: {name} must be an array like p{when}; got None.")
    _check_dtypes(owner, "p", [("p", p), ("g", g), *used], outputs=[name for name, _ in used])
    for name, a in [("g", g), *used]:
        _expect(owner, name, a, p.shape)


# ---- argument checks shared with CudaBackend: raise for a bad call (mixed float dtypes, shapes,
# missing arrays); return the [(name, array)] lists the caller examines further.
def _check_activation_backward(owner, name, dy, x, y, out):
    needed = ("x", x) if name in NEEDS_INPUT else ("y", y)
    arrays = [("dy", dy), ("x", x), ("y", y)]
    _check_dtypes(owner, "dy", arrays + [("out", out)], outputs=("out",))
    if needed[1] is None and name != "identity":
        raise ValueError(f"{owner}: {name} needs {needed[0]} (the activation's "
                         f"{'input' if needed[0] == 'x' else 'output'}); got None.")
    _expect(owner, "x", x, dy.shape)
    _expect(owner, "y", y, dy.shape)
    _expect(owner, "out", out, dy.shape)
    return arrays


def _check_dense_forward(owner, x, w, b, z, out):
    inputs = [("x", x), ("w", w), ("b", b)]
    outputs = [("z", z), ("out", out)]
    _check_dtypes(owner, "w", inputs + outputs, outputs=("z", "out"))
    _expect(owner, "w", w, (None, None))
    n_in, n_out = w.shape
    _expect(owner, "x", x, (None, n_in))
    n = x.shape[0]
    _expect(owner, "b", b, (n_out,))
    _expect(owner, "z", z, (n, n_out))
    _expect(owner, "out", out, (n, n_out))
    return inputs, outputs


def _check_dense_backward(owner, activation, dy, x, w, y, z, dw, db, dx, dz):
    needed = ("z", z) if activation in NEEDS_INPUT else ("y", y)
    inputs = [("dy", dy), ("x", x), ("w", w), ("y", y), ("z", z)]
    outputs = [("dw", dw), ("db", db), ("dx", dx), ("dz", dz)]
    _check_dtypes(owner, "w", inputs + outputs, outputs=("dw", "db", "dx", "dz"))
    if needed[1] is None and activation != "identity":
        raise ValueError(f"{owner}: activation {activation!r} needs {needed[0]} "
                         f"(the forward {'pre-activation' if needed[0] == 'z' else 'output'}); got None.")
    for name, a, grad, grad_name in (("x", x, dw, "dw"), ("w", w, dx, "dx")):
        if a is None and grad is not None:
            raise ValueError(f"{owner}: {name} is needed for {grad_name}; got None.")
    _expect(owner, "dy", dy, (None, None))
    n, n_out = dy.shape
    _expect(owner, "y", y, (n, n_out))
    _expect(owner, "z", z, (n, n_out))
    _expect(owner, "dz", dz, (n, n_out))
    _expect(owner, "db", db, (n_out,))
    _expect(owner, "x", x, (n, None))
    _expect(owner, "w", w, (x.shape[1] if x is not None else None, n_out))
    n_in = x.shape[1] if x is not None else (w.shape[0] if w is not None else None)
    _expect(owner, "dw", dw, (n_in, n_out))
    _expect(owner, "dx", dx, (n, n_in))
    return inputs, outputs


def _check_loss(owner, pred_name, pred, target, weight, grad, labels):
    floats = [(pred_name, pred), ("weight", weight), ("grad", grad)]
    if not labels:
        floats.insert(1, ("target", target))
    _check_dtypes(owner, pred_name, floats, outputs=("grad",))
    _expect(owner, pred_name, pred, (None, None))
    n, k = pred.shape
    _expect(owner, "target", target, (n,) if labels else (n, k))
    _expect(owner, "weight", weight, (n,))
    _expect(owner, "grad", grad, (n, k))
    return floats


def _check_batchnorm_forward(owner, x, vectors, out):
    _check_dtypes(owner, "x", [("x", x)] + vectors + [("out", out)],
                  outputs=("running_mean", "running_var", "mean", "inv_std", "out"))
    _expect(owner, "x", x, (None, None))
    n, m = x.shape
    for name, a in vectors:
        _expect(owner, name, a, (m,))
    _expect(owner, "out", out, (n, m))


def _check_batchnorm_backward(owner, dy, x, vectors, grads, dx):
    _check_dtypes(owner, "dy", [("dy", dy), ("x", x)] + vectors + grads + [("dx", dx)],
                  outputs=("dgamma", "dbeta", "dx"))
    _expect(owner, "dy", dy, (None, None))
    n, m = dy.shape
    _expect(owner, "x", x, (n, m))
    _expect(owner, "dx", dx, (n, m))
    for name, a in vectors + grads:
        _expect(owner, name, a, (m,))


class ResidualLosses:
    """mse, mae and huber as one residual kernel with a code (0, 1, 2): a fast backend defines
    ``_residual(name, code, pred, target, delta, weight, scale, loss_out, grad)`` and takes these
    three methods as class attributes."""

    def mse(self, pred, target, *, weight=None, scale=1.0, loss_out, grad=None):
        return self._residual("mse", 0, pred, target, 0.0, weight, scale, loss_out, grad)

    def mae(self, pred, target, *, weight=None, scale=1.0, loss_out, grad=None):
        return self._residual("mae", 1, pred, target, 0.0, weight, scale, loss_out, grad)

    def huber(self, pred, target, *, delta=1.0, weight=None, scale=1.0, loss_out, grad=None):
        return self._residual("huber", 2, pred, target, delta, weight, scale, loss_out, grad)
