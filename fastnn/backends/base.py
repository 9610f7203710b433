"""The kernel interface. Every body here is also the NumPy reference: plain, float64-safe,
written for clarity and never optimised. Faster backends override what they accelerate and
are tested against these bodies.

Conventions shared by every kernel:
- arrays are 2-D (n_samples, n_features) or flat 1-D parameter buffers, float32 or float64,
  all arguments of one call in the same dtype; integer labels are int64;
- ``out``/workspace arguments are written, never read; optimizer kernels mutate the
  parameter and its state in place and return None;
- loss kernels *add* the weighted sum of per-element losses to ``loss_out`` (a float64 array
  of shape (1,)) so that a device backend never has to synchronise per batch, and write the
  gradient ``scale * weight_i * dloss/dpred`` into ``grad`` when it is given.
Each kernel's array arguments (role, dtype family, symbolic shape, when they may be None) are
written once, as data, by ``@op`` on its method here (fastnn/backends/_ops.py); the fast backends
register their kernels against these specs (fastnn/backends/_adapter.py), which say at their
boundary what a wrong call is. The Python layers check user input before a kernel is called.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ._ops import ACTIVATION_CODES, ACTIVATIONS, In, InOut, Out, op  # noqa: F401  (re-exported)

#: A backend's array: a numpy.ndarray here and on the CPU, a device array on CUDA.
Array = Any

#: Activations whose derivative needs the pre-activation input x; the others use the output y.
NEEDS_INPUT = frozenset({"gelu", "silu"})
#: The residual losses of the one residual kernel, in the order of their integer codes (every device).
RESIDUAL_LOSSES = ("mse", "mae", "huber")
RESIDUAL_CODES = {name: code for code, name in enumerate(RESIDUAL_LOSSES)}
#: Default shape parameter per activation (the slope or scale ``alpha``).
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}
#: Precisions of the Dense products in training: "fp32" (the arrays' own dtype) and "bf16"
#: (float32 arrays; operands rounded to bfloat16, sums in float32).
PRECISIONS = ("fp32", "bf16")


def round_bf16(a):
    """float32 copy of ``a`` with every value rounded to the nearest bfloat16 (ties to even, the
    rounding of torch and of the compiled kernels); NaN stays NaN, values past bf16's largest
    round to inf. The products of such values are exact in float32 and float64."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    out = np.where(nan, (u | 0x00400000) & 0xFFFF0000, rounded).astype(np.uint32).view(np.float32)
    return out.reshape(np.shape(a))


def bf16_operand(a, precision):
    """A product's operand as the kernels take it under ``precision``: rounded to bfloat16 values
    (a float32 copy) for "bf16", ``a`` itself for "fp32"."""
    return round_bf16(a) if precision == "bf16" else a


def _operand(a, precision):
    """A product's operand in float64 (the reference's), rounded to bf16 first under "bf16"."""
    return np.asarray(bf16_operand(a, precision), np.float64)


def _check_precision(values):
    precision = values["precision"]
    if precision not in PRECISIONS:
        raise ValueError(f"dense: unknown precision {precision!r}; choose one of "
                         f"{', '.join(map(repr, PRECISIONS))}.")
    if precision == "bf16":
        for name in ("x", "w", "dy"):
            v = values.get(name)
            if v is not None and getattr(v, "dtype", None) == np.float64:
                raise ValueError(f"dense: precision='bf16' takes float32 arrays; {name} is float64. Train a "
                                 f"float32 model (dtype='float32') or use precision='fp32'.")

_erf = np.frompyfunc(math.erf, 1, 1)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _write(out, value, like):
    """Store ``value`` into ``out`` (allocated in ``like``'s dtype when None) and return it."""
    if out is None:
        return np.array(value, dtype=like.dtype)
    out[...] = value
    return out


# ------------------------------------------------------------- counter-based random streams
_MASK32 = np.uint64(0xFFFFFFFF)
_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint64(0x9E3779B9), np.uint64(0xBB67AE85))


def philox_words(key, step, start, count):
    """The uint32 words of flat elements start .. start + count - 1 of the stream (key, step).

    Element e gets word (e mod 4) of Philox4x32-10 (Salmon et al. 2011) with counter
    (b lo, b hi, step lo, step hi), b = e div 4, and key (key lo, key hi): 64-bit key and step
    split into 32-bit halves. The compiled kernels (csrc/_philox.pxd) produce the same words.
    """
    first, last = start // 4, (start + count + 3) // 4
    b = np.arange(first, last, dtype=np.uint64)
    c0, c1 = b & _MASK32, b >> np.uint64(32)
    c2 = np.full_like(b, step & 0xFFFFFFFF)
    c3 = np.full_like(b, step >> 32)
    k0, k1 = np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32)
    for r in range(10):
        if r:
            k0, k1 = (k0 + _PHILOX_W[0]) & _MASK32, (k1 + _PHILOX_W[1]) & _MASK32
        p0, p1 = c0 * _PHILOX_M[0], c2 * _PHILOX_M[1]  # 32 x 32 -> 64 bits: no overflow
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK32
    words = np.stack([c0, c1, c2, c3], axis=1).reshape(-1).astype(np.uint32)
    return words[start - 4 * first:start - 4 * first + count]


def dropout_threshold(rate):
    """Dropout keeps an element when its word is >= this: floor(rate * 2**32), rate in [0, 1)."""
    return int(rate * 4294967296.0)


def _normals(key, step, count):
    """Standard normals of flat elements 0 .. count - 1 of the stream (key, step), by Box-Muller on
    word pairs: block b's words (w0, w1, w2, w3) give r cos t, r sin t for (w0, w1) and then (w2, w3),
    with r = sqrt(-2 log((w_even + 1) 2^-32)), t = 2 pi w_odd 2^-32 (double precision)."""
    w = philox_words(key, step, 0, 4 * ((count + 3) // 4)).reshape(-1, 2, 2).astype(np.float64)
    r = np.sqrt(-2.0 * np.log((w[:, :, 0] + 1.0) * 2.0 ** -32))
    t = (2.0 * math.pi * 2.0 ** -32) * w[:, :, 1]
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=2).reshape(-1)[:count]


def check_batch_rows(owner, n):
    """Batch statistics need two rows: a variance of one row is 0 and its unbiased estimate undefined."""
    if n < 2:
        raise ValueError(f"{owner}: a training batch needs at least 2 rows to estimate the batch variance; "
                         f"got {n}.")



# ---- spec helpers (fastnn/backends/_ops.py): shared shapes of the loss and update kernels
def _needs_input(which):
    """activation_backward needs x for the names in NEEDS_INPUT, y for the others but identity."""
    def required(v):
        name = v["name"]
        if name == "identity" or (name in NEEDS_INPUT) != (which == "x"):
            return None
        return f"{name} needs {which} (the activation's {'input' if which == 'x' else 'output'})"
    return required


def _dense_needs(which):
    """dense_backward needs z for the activations in NEEDS_INPUT, y for the others but identity."""
    def required(v):
        act = v["activation"]
        if act == "identity" or (act in NEEDS_INPUT) != (which == "z"):
            return None
        return f"activation {act!r} needs {which} (the forward {'pre-activation' if which == 'z' else 'output'})"
    return required


def _needed_for(name, grad):
    return lambda v: f"{name} is needed for {grad}" if v[grad] is not None else None


def _host_out_of_range(a, high):
    """The first value of host integer array ``a`` outside [0, high), or None (device arrays and
    other dtypes are not read here: their kernels or the reference check them)."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu" or a.ndim != 1 or not a.size:
        return None
    bad = a[(a < 0) | (a >= high)]
    return bad[0] if bad.size else None


def _labels_in_range(v):
    logits, target = v["logits"], v["target"]
    k = logits.shape[1] if len(getattr(logits, "shape", ())) == 2 else None
    bad = None if k is None else _host_out_of_range(target, k)
    if bad is not None:
        raise ValueError(f"cross_entropy: target labels must be in [0, {k}); got {bad}.")


def _rows_in_range(v):
    x, idx = v["x"], v["idx"]
    n = x.shape[0] if getattr(x, "shape", ()) else None
    bad = None if n is None else _host_out_of_range(idx, n)
    if bad is not None:
        raise IndexError(f"mixup: index {bad} is out of bounds for {n} rows.")


def _loss_args(pred, target=None):
    """The arrays of a loss kernel: pred (n, k) first (its dtype the others follow)."""
    return (In(pred, "n,k", required=f"{pred} must be an array"),
            target or In("target", "n,k", required="target must be an array"),
            In("weight", "n"), InOut("loss_out", None, "float64", required="loss_out must be an array"),
            Out("grad", "n,k"))


def adam_moments(p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, weight_decay, decoupled_weight_decay):
    """Adam's moment update in float64, stored in exp_avg and exp_avg_sq: d = g + wd p (or, decoupled,
    d = g and p scaled by 1 - lr wd); m = beta1 m + (1 - beta1) d; v = beta2 v + (1 - beta2) d^2.
    Returns (p, m, v), p the (scaled) parameters in float64. The references of Adam and RAdam."""
    p64, d = np.asarray(p, np.float64), np.asarray(g, np.float64)
    if decoupled_weight_decay:
        p64 = p64 * (1.0 - lr * weight_decay)
    else:
        d = d + weight_decay * p64
    m = beta1 * np.asarray(exp_avg, np.float64) + (1.0 - beta1) * d
    v = beta2 * np.asarray(exp_avg_sq, np.float64) + (1.0 - beta2) * d * d
    exp_avg[...] = m
    exp_avg_sq[...] = v
    return p64, m, v


def _update_args(used=None, **state):
    """The arrays of an optimizer update: p (n,), g (n,) and the state buffers (n,); ``state``
    maps each buffer to the condition under which it is needed ('' for always), ``used`` a
    buffer to the test of the call's values under which it is read at all."""
    used = used or {}
    args = [InOut("p", "n", required="p must be an array"), In("g", "n", required="g must be an array like p")]
    for name, when in state.items():
        args.append(InOut(name, "n", required=f"{name} must be an array like p{when}", used=used.get(name)))
    return tuple(args)


class Backend:
    """Kernel interface. Every body here is also the NumPy reference (``device="reference"``)."""

    name = "reference"
    #: True for a backend whose arrays live on an accelerator: the Trainer then reads the loss
    #: (and checks it is finite) once per epoch instead of every batch.
    device_resident = False

    # ------------------------------------------------------------------ memory
    def asarray(self, x: Array, dtype: DTypeLike | None = None) -> Array:
        """Host array -> backend array (a C-contiguous copy only when needed)."""
        return np.ascontiguousarray(x, dtype=dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        """Backend array -> NumPy array."""
        return np.asarray(x)

    def empty(self, shape: int | tuple[int, ...], dtype: DTypeLike) -> Array:
        """Uninitialised C-contiguous array."""
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape: int | tuple[int, ...], dtype: DTypeLike) -> Array:
        """Zero-filled C-contiguous array."""
        return np.zeros(shape, dtype=dtype)

    def copy(self, src: Array, out: Array) -> Array:
        """out[...] = src (same shape)."""
        out[...] = src
        return out

    def fill(self, x: Array, value: float) -> Array:
        """x[...] = value, in place."""
        x[...] = value
        return x

    def take_rows(self, x: Array, idx: Array, *, out: Array) -> Array:
        """out = x[idx]: gather rows (a minibatch). idx int64 (n,), out (n, x.shape[1])."""
        np.take(x, idx, axis=0, out=out)
        return out

    # ------------------------------------------------------------- activations
    @op(In("x", "n,m"), Out("out", "n,m"), anchor="x", activation="name")
    def activation(self, name: str, x: Array, *, alpha: float = 0.0, out: Array | None = None) -> Array:
        """y = f(x) elementwise (softmax: row-wise). x, out: (n, m)."""
        like, x = x, np.asarray(x, dtype=np.float64)
        if name == "identity":
            y = x
        elif name == "sigmoid":
            y = _sigmoid(x)
        elif name == "tanh":
            y = np.tanh(x)
        elif name == "relu":
            y = np.maximum(x, 0.0)
        elif name == "leaky_relu":
            y = np.where(x > 0, x, alpha * x)
        elif name == "elu":
            y = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))
        elif name == "gelu":  # exact form with erf, PyTorch's default
            y = 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))
        elif name == "softplus":
            y = np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
        elif name == "silu":
            y = x * _sigmoid(x)
        elif name == "softmax":
            e = np.exp(x - x.max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        else:
            raise ValueError(f"activation: unknown name {name!r}")
        return _write(out, y, like)

    @op(In("dy", "n,m", required="dy must be an array"), In("x", "n,m", required=_needs_input("x")),
        In("y", "n,m", required=_needs_input("y")), Out("out", "n,m"), anchor="dy", activation="name")
    def activation_backward(self, name: str, dy: Array, x: Array, y: Array, *, alpha: float = 0.0,
                            out: Array | None = None) -> Array:
        """dx = dy * f'(x). Uses the output y, or the input x for the names in NEEDS_INPUT
        (the other argument may be None: Array is Any). dy, x, y, out: (n, m)."""
        like, dy = dy, np.asarray(dy, dtype=np.float64)
        y = None if y is None else np.asarray(y, dtype=np.float64)
        if name == "identity":
            d = dy
        elif name == "sigmoid":
            d = dy * y * (1.0 - y)
        elif name == "tanh":
            d = dy * (1.0 - y * y)
        elif name == "relu":
            d = dy * (y > 0)
        elif name == "leaky_relu":  # alpha >= 0, so y > 0 exactly where x > 0
            d = dy * np.where(y > 0, 1.0, alpha)
        elif name == "elu":  # alpha > 0: for x <= 0, f'(x) = alpha * exp(x) = y + alpha
            d = dy * np.where(y > 0, 1.0, y + alpha)
        elif name == "softplus":  # f'(x) = sigmoid(x) = 1 - exp(-y)
            d = dy * -np.expm1(-y)
        elif name == "softmax":
            d = y * (dy - (dy * y).sum(axis=1, keepdims=True))
        elif name == "gelu":
            x = np.asarray(x, dtype=np.float64)
            cdf = 0.5 * (1.0 + np.asarray(_erf(x / math.sqrt(2.0)), dtype=np.float64))
            pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
            d = dy * (cdf + x * pdf)
        elif name == "silu":
            x = np.asarray(x, dtype=np.float64)
            s = _sigmoid(x)
            d = dy * s * (1.0 + x * (1.0 - s))
        else:
            raise ValueError(f"activation_backward: unknown name {name!r}")
        return _write(out, d, like)

    # ------------------------------------------------------------------ dense
    @op(In("w", "i,o", required="w must be an array"), In("x", "n,i", required="x must be an array"), In("b", "o"),
        Out("z", "n,o"), Out("out", "n,o"), anchor="w", activation="activation", check=_check_precision)
    def dense_forward(self, x: Array, w: Array, b: Array | None, activation: str = "identity", *, alpha: float = 0.0,
                      z: Array | None = None, out: Array | None = None, precision: str = "fp32") -> Array:
        """out = f(x @ w + b), the activation fused into the pass over the output.

        x (n, n_in), w (n_in, n_out), b (n_out,) or None, out (n, n_out). ``z`` (n, n_out),
        when given, receives the pre-activation (needed by the backward of NEEDS_INPUT).
        ``precision="bf16"`` (float32 arrays): x and w are rounded to bfloat16 for the product
        (see PRECISIONS); the bias, the activation and the outputs stay float32.
        """
        _check_precision({"precision": precision, "x": x, "w": w})
        zz = _operand(x, precision) @ _operand(w, precision)
        if b is not None:
            zz = zz + np.asarray(b, np.float64)
        if z is not None:
            z[...] = zz
        y = Backend.activation(self, activation, zz, alpha=alpha)  # the reference's own, in float64
        return _write(out, y, x)

    @op(In("dy", "n,o", required="dy must be an array"), In("y", "n,o", required=_dense_needs("y")),
        In("z", "n,o", required=_dense_needs("z")), Out("dz", "n,o"), Out("db", "o"),
        In("x", "n,i", required=_needed_for("x", "dw")), In("w", "i,o", required=_needed_for("w", "dx")),
        Out("dw", "i,o"), Out("dx", "n,i"), anchor="w", activation="activation", check=_check_precision)
    def dense_backward(self, dy: Array, x: Array | None, w: Array, y: Array, z: Array | None,
                       activation: str = "identity", *, alpha: float = 0.0, dw: Array | None = None,
                       db: Array | None = None, dx: Array | None = None, dz: Array | None = None,
                       precision: str = "fp32") -> Array:
        """Gradients of out = f(x @ w + b) given dy = dLoss/dout.

        dz = dy * f'(z) (written to the workspace ``dz`` when given; it may alias dy);
        dw = x.T @ dz, db = dz.sum(0), dx = dz @ w.T, each skipped when its output is None
        (a frozen layer has no dw/db; the first layer needs no dx). Returns dx.
        ``precision="bf16"`` (float32 arrays): the products take x, w and dz (as float32) rounded
        to bfloat16; dz, db and the outputs stay float32.
        """
        _check_precision({"precision": precision, "x": x, "w": w, "dy": dy})
        d = Backend.activation_backward(self, activation, np.asarray(dy, np.float64), z, y, alpha=alpha)
        if dz is not None:
            dz[...] = d
        # under bf16 the products see dz as the compiled kernels do: float32, then rounded
        dp = _operand(np.asarray(d, np.float32), precision) if precision == "bf16" else d
        if dw is not None:
            dw[...] = _operand(x, precision).T @ dp
        if db is not None:
            db[...] = d.sum(axis=0)
        if dx is not None:
            dx[...] = dp @ _operand(w, precision).T
        return dx

    def solo_span(self, n_weights: int) -> contextlib.AbstractContextManager:
        """A context for training a model with ``n_weights`` parameters (Trainer.fit holds one over
        its epochs), in which a backend may give all its threads to the training's own kernels
        (the cpu backend: fastnn's pool runs the products, updates and gathers); here nothing."""
        return contextlib.nullcontext()

    def dense_chain(self, steps: Sequence[tuple], first: int, precision: str = "fp32") -> _DenseChain:
        """Training forward and backward of a stack of Dense layers, as an object with
        ``forward(x)`` (returns the last layer's y) and ``backward(dy)``.

        ``steps``: per layer (w, b, activation, alpha, z, y, dw, db, dx): its parameters, its
        workspaces for one batch size (z: the pre-activation, kept for gelu/silu, else None) and
        its gradient outputs (dw, db None for a frozen layer, db None without bias, dx None for
        layer ``first`` and below). forward runs dense_forward layer by layer, each layer's y
        being the next one's x; backward runs dense_backward from the last layer down to
        ``first``, dz written over dy (which is overwritten) and each dx passed on as the next dy.
        Here it is that loop; a fast backend runs it in one call where it can (the cpu backend:
        no Python per layer) and falls back to this loop elsewhere. ``precision``: of every
        product, as in dense_forward.
        """
        return _DenseChain(self, steps, first, precision)

    # ----------------------------------------------------------------- losses
    @staticmethod
    def _accumulate(per_sample, weight, loss_out, grad, dgrad, scale):
        """Shared tail of the loss kernels: weights, the loss sum and the scaled gradient."""
        w = np.ones(per_sample.shape[0]) if weight is None else np.asarray(weight, np.float64)
        loss_out[0] += float(np.sum(w * per_sample))
        if grad is not None:
            grad[...] = scale * w[:, None] * dgrad
        return loss_out

    @op(*_loss_args("logits", In("target", {1: "n", 2: "n,k"}, {1: "int64", 2: "float"},
                                  required="target must be an array")), anchor="logits",
        check=_labels_in_range)
    def cross_entropy(self, logits: Array, target: Array, *, label_smoothing: float = 0.0, weight: Array | None = None,
                      scale: float = 1.0, loss_out: Array, grad: Array | None = None) -> Array:
        """Fused stable softmax + cross-entropy on logits (n, k).

        target: int64 labels (n,) or float targets (n, k) (one-hot or soft). With label
        smoothing eps, t' = (1 - eps) t + eps / k. Per-sample loss -sum_k t'_k log p_k;
        gradient p * sum_k t'_k - t' (= p - t' when targets sum to one).
        """
        z = np.asarray(logits, np.float64)
        n, k = z.shape
        if target.ndim == 1:
            t = np.zeros((n, k))
            t[np.arange(n), target] = 1.0
        else:
            t = np.asarray(target, np.float64)
        t = (1.0 - label_smoothing) * t + label_smoothing / k
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        per_sample = -(t * logp).sum(axis=1)
        dgrad = np.exp(logp) * t.sum(axis=1, keepdims=True) - t
        return self._accumulate(per_sample, weight, loss_out, grad, dgrad, scale)

    @op(*_loss_args("logits"), anchor="logits")
    def binary_cross_entropy(self, logits: Array, target: Array, *, weight: Array | None = None, scale: float = 1.0,
                             loss_out: Array, grad: Array | None = None) -> Array:
        """Fused stable sigmoid + binary cross-entropy on logits (n, k), targets in [0, 1].

        Per element max(z, 0) - z t + log(1 + exp(-|z|)); gradient sigmoid(z) - t.
        """
        z = np.asarray(logits, np.float64)
        t = np.asarray(target, np.float64)
        per_elem = np.maximum(z, 0.0) - z * t + np.log1p(np.exp(-np.abs(z)))
        return self._accumulate(per_elem.sum(axis=1), weight, loss_out, grad, _sigmoid(z) - t, scale)

    @op(*_loss_args("pred"), anchor="pred")
    def mse(self, pred: Array, target: Array, *, weight: Array | None = None, scale: float = 1.0, loss_out: Array,
            grad: Array | None = None) -> Array:
        """Squared error per element (p - t)^2; gradient 2 (p - t). pred, target (n, k)."""
        d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
        return self._accumulate((d * d).sum(axis=1), weight, loss_out, grad, 2.0 * d, scale)

    @op(*_loss_args("pred"), anchor="pred")
    def mae(self, pred: Array, target: Array, *, weight: Array | None = None, scale: float = 1.0, loss_out: Array,
            grad: Array | None = None) -> Array:
        """Absolute error per element |p - t|; gradient sign(p - t) (0 where equal)."""
        d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
        return self._accumulate(np.abs(d).sum(axis=1), weight, loss_out, grad, np.sign(d), scale)

    @op(*_loss_args("pred"), anchor="pred")
    def huber(self, pred: Array, target: Array, *, delta: float = 1.0, weight: Array | None = None, scale: float = 1.0,
              loss_out: Array, grad: Array | None = None) -> Array:
        """Huber per element: d^2/2 where |d| <= delta, else delta (|d| - delta/2);
        gradient clip(d, -delta, delta). As PyTorch's HuberLoss."""
        d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
        a = np.abs(d)
        per_elem = np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))
        return self._accumulate(per_elem.sum(axis=1), weight, loss_out, grad,
                                np.clip(d, -delta, delta), scale)

    # ---- normalization and dropout
    # BatchNorm, Dropout and the Trainer's augmentations. Random kernels draw from the
    # counter-based stream (key, step) of philox_words, the same on every backend.
    @op(In("x", "n,m", required="x must be an array"), In("gamma", "m", required="gamma must be an array"),
        In("beta", "m", required="beta must be an array"),
        InOut("running_mean", "m", required="running_mean must be an array"),
        InOut("running_var", "m", required="running_var must be an array"), Out("mean", "m"), Out("inv_std", "m"),
        Out("out", "n,m"), anchor="x")
    def batchnorm_forward(self, x: Array, gamma: Array, beta: Array, running_mean: Array, running_var: Array, *,
                          eps: float = 1e-05, momentum: float = 0.1, training: bool = True, mean: Array | None = None,
                          inv_std: Array | None = None, out: Array | None = None) -> Array:
        """out = gamma * (x - mu) * inv_std + beta per column, inv_std = 1 / sqrt(var + eps).

        training: mu, var are the batch's mean and biased variance (n >= 2 rows), and the
        running statistics move in place, running = (1 - momentum) running + momentum batch,
        with the unbiased variance var n / (n - 1) (PyTorch's convention); otherwise mu, var are
        running_mean, running_var (read only). ``mean``, ``inv_std`` (m,), when given, receive
        mu and inv_std for the backward. x, out (n, m); gamma, beta and the running stats (m,).
        """
        x64 = np.asarray(x, np.float64)
        n = x64.shape[0]
        if training:
            check_batch_rows("batchnorm_forward", n)
            mu, var = x64.mean(axis=0), x64.var(axis=0)
            running_mean[...] = (1.0 - momentum) * np.asarray(running_mean, np.float64) + momentum * mu
            running_var[...] = (1.0 - momentum) * np.asarray(running_var, np.float64) + momentum * var * n / (n - 1)
        else:
            mu, var = np.asarray(running_mean, np.float64), np.asarray(running_var, np.float64)
        istd = 1.0 / np.sqrt(var + eps)
        if mean is not None:
            mean[...] = mu
        if inv_std is not None:
            inv_std[...] = istd
        return _write(out, (x64 - mu) * (np.asarray(gamma, np.float64) * istd) + np.asarray(beta, np.float64), x)

    @op(In("dy", "n,m", required="dy must be an array"), In("x", "n,m", required="x must be an array"),
        Out("dx", "n,m"), In("gamma", "m", required="gamma must be an array"),
        In("mean", "m", required="mean must be an array"), In("inv_std", "m", required="inv_std must be an array"),
        Out("dgamma", "m"), Out("dbeta", "m"), anchor="dy")
    def batchnorm_backward(self, dy: Array, x: Array, gamma: Array, mean: Array, inv_std: Array, *,
                           training: bool = True, dgamma: Array | None = None, dbeta: Array | None = None,
                           dx: Array | None = None) -> Array:
        """Gradients of batchnorm_forward given dy, with ``mean``, ``inv_std`` as it returned them.

        xhat = (x - mean) inv_std; dgamma = sum(dy xhat), dbeta = sum(dy) over rows; training
        (batch statistics): dx = gamma inv_std (dy - mean(dy) - xhat mean(dy xhat)) (Ioffe &
        Szegedy 2015, in closed form); otherwise (running statistics, constants) dx = gamma
        inv_std dy. Each output is skipped when None; dx may alias dy. Returns dx.
        """
        dy64 = np.asarray(dy, np.float64)
        xhat = (np.asarray(x, np.float64) - np.asarray(mean, np.float64)) * np.asarray(inv_std, np.float64)
        sum_dy, sum_dy_xhat = dy64.sum(axis=0), (dy64 * xhat).sum(axis=0)
        if dgamma is not None:
            dgamma[...] = sum_dy_xhat
        if dbeta is not None:
            dbeta[...] = sum_dy
        if dx is not None:
            a = np.asarray(gamma, np.float64) * np.asarray(inv_std, np.float64)
            n = max(dy64.shape[0], 1)
            dx[...] = a * (dy64 - sum_dy / n - xhat * (sum_dy_xhat / n)) if training else a * dy64
        return dx

    @op(In("x", "n,m", required="x must be an array"), Out("mask", "n,m", "uint8"), Out("out", "n,m"), anchor="x")
    def dropout_forward(self, x: Array, *, rate: float, key: int, step: int, mask: Array | None = None,
                        out: Array | None = None) -> Array:
        """Inverted dropout: out = x * s where the stream (key, step) keeps an element, else 0.

        Element e (row-major) is kept when philox_words(key, step)[e] >= dropout_threshold(rate)
        (probability 1 - rate); s = 1 / (1 - rate) rounded to x's dtype, and the product is taken
        in that dtype, so every backend gives the same bits. ``mask`` (n, m) uint8 receives 1 for
        kept elements. x, out (n, m); rate in [0, 1); key, step: unsigned 64-bit integers.
        """
        x = np.asarray(x)
        keep = philox_words(key, step, 0, x.size).reshape(x.shape) >= dropout_threshold(rate)
        if mask is not None:
            mask[...] = keep
        return _write(out, x * np.asarray(1.0 / (1.0 - rate), x.dtype) * keep, x)

    @op(In("dy", "n,m", required="dy must be an array"), In("mask", "n,m", "uint8", required="mask must be an array"),
        Out("out", "n,m"), anchor="dy")
    def dropout_backward(self, dy: Array, mask: Array, *, rate: float, out: Array | None = None) -> Array:
        """dx = dy * s where mask is 1, else 0 (s as in dropout_forward); out may alias dy."""
        dy = np.asarray(dy)
        return _write(out, dy * np.asarray(1.0 / (1.0 - rate), dy.dtype) * (np.asarray(mask) != 0), dy)

    @op(In("x", "n,m", required="x must be an array"), Out("out", "n,m"), anchor="x")
    def gaussian_noise(self, x: Array, *, std: float, key: int, step: int, out: Array | None = None) -> Array:
        """out = x + std * z, z standard normal from the stream (key, step) by Box-Muller (see
        _normals); computed in double, rounded once. x, out (n, m); out may alias x."""
        x64 = np.asarray(x, np.float64)
        z = _normals(key, step, x64.size).reshape(x64.shape)
        return _write(out, x64 + std * z, x)

    @op(In("x", {2: "n,m", 1: "n"}, required="x must be an array"),
        In("idx", "n", "int64", required="idx must be an array"), Out("out", {2: "n,m", 1: "n"}), anchor="x",
        check=_rows_in_range)
    def mixup(self, x: Array, idx: Array, lam: float, *, out: Array | None = None) -> Array:
        """out = lam * x + (1 - lam) * x[idx] (Zhang et al. 2018). x (n, m) or (n,), idx int64 (n,)
        in [0, n); out like x, not aliasing it."""
        x64 = np.asarray(x, np.float64)
        return _write(out, lam * x64 + (1.0 - lam) * x64[np.asarray(idx)], x)

    @op(In("labels", "n", "int64", required="labels must be an array"),
        In("idx", "n", "int64", required="idx must be an array"), Out("out", "n,k", required="out must be an array"),
        anchor="out")
    def mixup_labels(self, labels: Array, idx: Array, lam: float, *, out: Array) -> Array:
        """Mixed one-hot targets: out = lam * onehot(labels) + (1 - lam) * onehot(labels[idx]).
        labels int64 (n,) in [0, k), idx int64 (n,) in [0, n), out (n, k)."""
        labels = np.asarray(labels)
        k = out.shape[1]
        onehot = np.eye(k)[labels]
        out[...] = lam * onehot + (1.0 - lam) * onehot[np.asarray(idx)]
        return out

    # ------------------------------------------------------ flat buffers, update
    @op(In("x", "n", required="x must be an array"), anchor="x")
    def sum_squares(self, x: Array) -> float:
        """sum(x**2) as a Python float (squared global norm of a flat buffer)."""
        x = np.asarray(x, np.float64)
        return float(np.dot(x, x))

    @op(InOut("x", required="x must be an array"),
        Out("norm_out", "1", "float64", required="norm_out must be an array"), anchor="x")
    def clip_grad_norm_(self, x: Array, max_norm: float | None, *, norm_out: Array) -> Array:
        """PyTorch's clip_grad_norm_ on a flat buffer, without a host round-trip on a device:
        norm_out[0] = ||x||_2 (float64 array of shape (1,)); when max_norm is not None and the norm
        exceeds it, x *= max_norm / (norm + 1e-6), in place. Returns norm_out."""
        norm = math.sqrt(self.sum_squares(x))
        norm_out[0] = norm
        if max_norm is not None and norm > max_norm:
            self.scale_(x, max_norm / (norm + 1e-6))
        return norm_out

    @op(InOut("x", required="x must be an array"), anchor="x")
    def scale_(self, x: Array, factor: float) -> Array:
        """x *= factor, in place."""
        x *= factor
        return x

    @op(InOut("x", required="x must be an array"), anchor="x")
    def clip_(self, x: Array, value: float) -> Array:
        """x = clip(x, -value, value), in place."""
        np.clip(x, -value, value, out=x)
        return x

    @op(In("w", "n", required="w must be an array"), InOut("g", "n"), anchor="w")
    def penalty(self, w: Array, g: Array, *, l1: float = 0.0, l2: float = 0.0) -> float:
        """Elastic-net penalty l1 * sum|w| + l2 * sum w^2, returned as a float; when g is given,
        its gradient l1 * sign(w) + 2 * l2 * w is added to g in place. w, g: flat (n,)."""
        w64 = np.asarray(w, np.float64)
        if g is not None:
            g += (l1 * np.sign(w64) + 2.0 * l2 * w64).astype(g.dtype)
        return float(l1 * np.abs(w64).sum() + l2 * np.dot(w64, w64))

    @op(In("w", "n", required="w must be an array"), InOut("g", "n"),
        InOut("loss_out", None, "float64", required="loss_out must be an array"), anchor="w")
    def penalty_into(self, w: Array, g: Array, *, l1: float = 0.0, l2: float = 0.0, scale: float = 1.0,
                     loss_out: Array) -> Array:
        """penalty(w, g, l1=l1, l2=l2), gradient included, but added times ``scale`` to loss_out[0]
        (a float64 array of shape (1,)) instead of returned: no host round-trip on a device."""
        loss_out[0] += scale * self.penalty(w, g, l1=l1, l2=l2)
        return loss_out

    @op(*_update_args(buf=" when momentum != 0", used={"buf": lambda v: v["momentum"] != 0}), anchor="p")
    def sgd_update(self, p: Array, g: Array, buf: Array, *, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                   nesterov: bool = False, weight_decay: float = 0.0, first_step: bool = False) -> None:
        """PyTorch's SGD on flat buffers, in place: g' = g + wd p; with momentum,
        buf = g' on the first step, else momentum buf + (1 - dampening) g';
        g' = g' + momentum buf (Nesterov) or buf; then p -= lr g'. g is not modified."""
        p64 = np.asarray(p, np.float64)
        d = np.asarray(g, np.float64) + weight_decay * p64
        if momentum != 0.0:
            b = d if first_step else momentum * np.asarray(buf, np.float64) + (1.0 - dampening) * d
            buf[...] = b
            d = d + momentum * b if nesterov else b
        p[...] = p64 - lr * d

    # The adaptive optimizers: PyTorch's update rules (torch.optim's algorithm boxes) on flat
    # buffers, in place. Every one first forms d = g + weight_decay * p (coupled L2, as in
    # PyTorch; AdamW's decoupled form is a flag of adam_update). Scalars that depend only on the
    # step (the decayed lr, bias corrections, NAdam's momentum products) are computed by the
    # optimizer in Python and passed in. g is never modified.
    @op(*_update_args(state_sum=""), anchor="p")
    def adagrad_update(self, p: Array, g: Array, state_sum: Array, *, lr: float, eps: float = 1e-10,
                       weight_decay: float = 0.0) -> None:
        """Adagrad: state_sum += d^2; p -= lr d / (sqrt(state_sum) + eps). ``lr`` is the decayed
        rate lr / (1 + (t - 1) lr_decay)."""
        p64 = np.asarray(p, np.float64)
        d = np.asarray(g, np.float64) + weight_decay * p64
        s = np.asarray(state_sum, np.float64) + d * d
        state_sum[...] = s
        p[...] = p64 - lr * d / (np.sqrt(s) + eps)

    @op(*_update_args(square_avg="", acc_delta=""), anchor="p")
    def adadelta_update(self, p: Array, g: Array, square_avg: Array, acc_delta: Array, *, lr: float, rho: float = 0.9,
                        eps: float = 1e-06, weight_decay: float = 0.0) -> None:
        """Adadelta: square_avg = rho square_avg + (1 - rho) d^2;
        delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * d;
        acc_delta = rho acc_delta + (1 - rho) delta^2; p -= lr delta."""
        p64 = np.asarray(p, np.float64)
        d = np.asarray(g, np.float64) + weight_decay * p64
        v = rho * np.asarray(square_avg, np.float64) + (1.0 - rho) * d * d
        u = np.asarray(acc_delta, np.float64)
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * d
        square_avg[...] = v
        acc_delta[...] = rho * u + (1.0 - rho) * delta * delta
        p[...] = p64 - lr * delta

    @op(*_update_args(square_avg="", grad_avg=" when centered=True", momentum_buffer=" when momentum != 0",
                      used={"grad_avg": lambda v: v["centered"], "momentum_buffer": lambda v: v["momentum"] != 0}),
        anchor="p")
    def rmsprop_update(self, p: Array, g: Array, square_avg: Array, grad_avg: Array, momentum_buffer: Array, *,
                       lr: float, alpha: float = 0.99, eps: float = 1e-08, weight_decay: float = 0.0,
                       momentum: float = 0.0, centered: bool = False) -> None:
        """RMSprop: square_avg = alpha square_avg + (1 - alpha) d^2; centered: grad_avg = alpha
        grad_avg + (1 - alpha) d and denom = sqrt(square_avg - grad_avg^2) + eps, else
        denom = sqrt(square_avg) + eps; with momentum, buf = momentum buf + d / denom and
        p -= lr buf, else p -= lr d / denom. grad_avg is used only when centered and
        momentum_buffer only when momentum != 0 (either may be None otherwise)."""
        p64 = np.asarray(p, np.float64)
        d = np.asarray(g, np.float64) + weight_decay * p64
        v = alpha * np.asarray(square_avg, np.float64) + (1.0 - alpha) * d * d
        square_avg[...] = v
        if centered:
            a = alpha * np.asarray(grad_avg, np.float64) + (1.0 - alpha) * d
            grad_avg[...] = a
            v = v - a * a
        step = d / (np.sqrt(v) + eps)
        if momentum != 0.0:
            step = momentum * np.asarray(momentum_buffer, np.float64) + step
            momentum_buffer[...] = step
        p[...] = p64 - lr * step

    @op(*_update_args(exp_avg="", exp_avg_sq="", max_exp_avg_sq=" when amsgrad=True",
                      used={"max_exp_avg_sq": lambda v: v["amsgrad"]}),
        anchor="p")
    def adam_update(self, p: Array, g: Array, exp_avg: Array, exp_avg_sq: Array, max_exp_avg_sq: Array, *, lr: float,
                    beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-08, weight_decay: float = 0.0,
                    amsgrad: bool = False, decoupled_weight_decay: bool = False, bias_correction1: float,
                    bias_correction2: float) -> None:
        """Adam (and AdamW): m = beta1 m + (1 - beta1) d; v = beta2 v + (1 - beta2) d^2; with
        amsgrad, vmax = max(vmax, v) stands for v below; p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2)
        + eps), bc_i = 1 - beta_i^t. ``decoupled_weight_decay`` (AdamW): d = g, and p is first
        multiplied by 1 - lr weight_decay. max_exp_avg_sq is used only with amsgrad."""
        p64, m, v = adam_moments(p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, weight_decay, decoupled_weight_decay)
        if amsgrad:
            v = np.maximum(np.asarray(max_exp_avg_sq, np.float64), v)
            max_exp_avg_sq[...] = v
        p[...] = p64 - lr / bias_correction1 * m / (np.sqrt(v) / math.sqrt(bias_correction2) + eps)

    @op(*_update_args(exp_avg="", exp_inf=""), anchor="p")
    def adamax_update(self, p: Array, g: Array, exp_avg: Array, exp_inf: Array, *, lr: float, beta1: float = 0.9,
                      beta2: float = 0.999, eps: float = 1e-08, weight_decay: float = 0.0,
                      bias_correction1: float) -> None:
        """Adamax: m = beta1 m + (1 - beta1) d; u = max(beta2 u, |d| + eps);
        p -= lr / bc1 * m / u, bc1 = 1 - beta1^t."""
        p64 = np.asarray(p, np.float64)
        d = np.asarray(g, np.float64) + weight_decay * p64
        m = beta1 * np.asarray(exp_avg, np.float64) + (1.0 - beta1) * d
        u = np.maximum(beta2 * np.asarray(exp_inf, np.float64), np.abs(d) + eps)
        exp_avg[...] = m
        exp_inf[...] = u
        p[...] = p64 - lr / bias_correction1 * m / u

    @op(*_update_args(exp_avg="", exp_avg_sq=""), anchor="p")
    def nadam_update(self, p: Array, g: Array, exp_avg: Array, exp_avg_sq: Array, *, lr: float, beta1: float = 0.9,
                     beta2: float = 0.999, eps: float = 1e-08, weight_decay: float = 0.0, mu: float, mu_next: float,
                     mu_product: float, bias_correction2: float) -> None:
        """NAdam: m, v as in Adam; denom = sqrt(v / bc2) + eps;
        p -= lr (1 - mu) / (1 - mu_product) d / denom + lr mu_next / (1 - mu_product mu_next) m / denom,
        where mu = mu_t, mu_next = mu_{t+1} and mu_product = mu_1 ... mu_t."""
        p64 = np.asarray(p, np.float64)
        d = np.asarray(g, np.float64) + weight_decay * p64
        m = beta1 * np.asarray(exp_avg, np.float64) + (1.0 - beta1) * d
        v = beta2 * np.asarray(exp_avg_sq, np.float64) + (1.0 - beta2) * d * d
        exp_avg[...] = m
        exp_avg_sq[...] = v
        denom = np.sqrt(v / bias_correction2) + eps
        p[...] = (p64 - lr * (1.0 - mu) / (1.0 - mu_product) * d / denom
                  - lr * mu_next / (1.0 - mu_product * mu_next) * m / denom)


class _DenseChain:
    """Backend.dense_chain's loop: dense_forward and dense_backward layer by layer."""

    def __init__(self, backend, steps, first, precision="fp32"):
        self.backend, self.steps, self.first, self._x = backend, list(steps), first, None
        self.precision = precision

    def forward(self, x):
        self._x = x
        for w, b, activation, alpha, z, y, _, _, _ in self.steps:
            x = self.backend.dense_forward(x, w, b, activation, alpha=alpha, z=z, out=y, precision=self.precision)
        return x

    def backward(self, dy):
        if self._x is None:
            raise ValueError("Chain.backward: no forward ran.")
        for i in range(len(self.steps) - 1, self.first - 1, -1):
            w, _, activation, alpha, z, y, dw, db, dx = self.steps[i]
            x = self._x if i == 0 else self.steps[i - 1][5]
            dy = self.backend.dense_backward(dy, x, w, y, z, activation, alpha=alpha, dw=dw, db=db, dx=dx, dz=dy,
                                             precision=self.precision)
