"""CpuBackend: the compiled CPU kernels of fastnn._ext behind the Backend interface.

Matrix products run in NumPy's own OpenBLAS, called from Cython through function pointers found
here once, at import: the library NumPy already loaded is opened again with RTLD_NOLOAD, so the
same copy and the same thread pool serve NumPy and fastnn (there is never a second OpenBLAS, and
no OpenMP). Bias, activation, losses and updates are single serial passes in Cython. Where no
OpenBLAS is found (a NumPy built on MKL or Accelerate), or with ``FASTNN_BLAS=numpy`` or
``CpuBackend(blas="numpy")``, products go through ``np.matmul(..., out=)`` instead.

The kernels are registered at the end of this module, one plain function per operation, against
the operation specs of backends/base.py; the adapter (backends/_adapter.py) makes them methods.
Each tries the compiled path first; the memoryview signature itself checks the dtypes (float32
or float64, all alike), C-contiguity and ndim, and the kernel entry checks shapes before it
touches memory. When it refuses, the spec examines the arguments: mixed float dtypes and
mismatched shapes raise errors that say what to do; other dtypes, non-contiguous or read-only
arrays are computed by the NumPy reference (a plain ``Backend``, so that the reference's own
calls between kernels stay in float64).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import re
import sys

import numpy as np

from .._checks import check_choice, check_int
from . import _adapter
from ._adapter import REFUSED as _REFUSED
from ._adapter import implement
from ._ops import FAMILIES, FLOAT_DTYPES, SPECS
from .base import (ACTIVATION_CODES, NEEDS_INPUT, RESIDUAL_CODES, Backend, check_batch_rows, dropout_threshold,
                   bf16_operand)

try:
    from .._ext import activations as _activations
    from .._ext import augment as _augment
    from .._ext import batchnorm as _batchnorm
    from .._ext import blas as _blas
    from .._ext import dense as _dense
    from .._ext import dropout as _dropout
    from .._ext import losses as _losses
    from .._ext import memory as _memory
    from .._ext import optim as _optim
except ImportError as exc:  # a source checkout that was never built
    raise ImportError(
        "fastnn.backends.cpu: the compiled kernels (fastnn._ext) are missing; build them with "
        "`python setup.py build_ext --inplace` or install with `pip install .`."
    ) from exc

__all__ = ["CpuBackend", "blas_info", "get_num_threads", "get_thread_policy", "set_num_threads",
           "set_thread_policy"]

_F32, _F64 = FLOAT_DTYPES
_I64 = np.dtype(np.int64)
_MSE, _MAE, _HUBER = RESIDUAL_CODES["mse"], RESIDUAL_CODES["mae"], RESIDUAL_CODES["huber"]


def _by_dtype(fused):
    """{dtype: specialisation} of a Cython fused function: calling one skips the fused dispatch."""
    return {_F32: fused["float"], _F64: fused["double"]}


_ACT_FWD = _by_dtype(_activations.forward)
_ACT_BWD = _by_dtype(_activations.backward)
#: precision -> the kernels' bf16 flag
_BF16 = {"fp32": False, "bf16": True}
_DENSE_FWD = _by_dtype(_dense.forward)
_DENSE_BIAS_ACT = _by_dtype(_dense.bias_activation)
_DENSE_BWD = _by_dtype(_dense.backward)
_DENSE_BWD_PASS = _by_dtype(_dense.backward_pass)
_CE_LABELS = _by_dtype(_losses.cross_entropy_labels)
_CE_SOFT = _by_dtype(_losses.cross_entropy_soft)
_BCE = _by_dtype(_losses.binary_cross_entropy)
_RESIDUAL = _by_dtype(_losses.residual)
_SGD = _by_dtype(_optim.sgd_update)
_ADAGRAD = _by_dtype(_optim.adagrad_update)
_ADADELTA = _by_dtype(_optim.adadelta_update)
_RMSPROP = _by_dtype(_optim.rmsprop_update)
_ADAM = _by_dtype(_optim.adam_update)
_ADAMAX = _by_dtype(_optim.adamax_update)
_NADAM = _by_dtype(_optim.nadam_update)
_SUM_SQUARES = _by_dtype(_optim.sum_squares)
_SCALE = _by_dtype(_optim.scale_)
_CLIP = _by_dtype(_optim.clip_)
_PENALTY = _by_dtype(_optim.penalty)
_BN_FWD = _by_dtype(_batchnorm.forward)
_BN_BWD = _by_dtype(_batchnorm.backward)
_DROPOUT_FWD = _by_dtype(_dropout.forward)
_DROPOUT_BWD = _by_dtype(_dropout.backward)
_NOISE = _by_dtype(_augment.gaussian_noise)
_MIXUP = _by_dtype(_augment.mixup)
_MIXUP_LABELS = _by_dtype(_augment.mixup_labels)
_TAKE = ({_F32: _memory.take["float"], _F64: _memory.take["double"], _I64: _memory.take["int64_t"]},
         {_F32: _memory.take_rows["float"], _F64: _memory.take_rows["double"],
          _I64: _memory.take_rows["int64_t"]})


class _ChainCalls(tuple):
    """What CpuBackend.dense_chain returns: ``forward(x)``, ``backward(dy)`` and the compiled
    ``chain`` (which owns the pointers and keeps the arrays alive)."""

    __slots__ = ()

    def __new__(cls, forward, backward, chain):
        return tuple.__new__(cls, (forward, backward, chain))

    forward = property(lambda self: self[0])
    backward = property(lambda self: self[1])
    chain = property(lambda self: self[2])


# ---------------------------------------------------------------------------------- BLAS
_GEMM_SYMBOLS = (  # (sgemm, dgemm, 64-bit integers), in order of preference
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", True),
    ("cblas_sgemm64_", "cblas_dgemm64_", True),
    ("scipy_cblas_sgemm", "scipy_cblas_dgemm", False),
    ("cblas_sgemm", "cblas_dgemm", False),
)
_SET_THREADS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads", "openblas_set_num_threads")
_GET_THREADS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                "scipy_openblas_get_num_threads", "openblas_get_num_threads")
_SET_CALLBACK = ("scipy_openblas_set_threads_callback_function64_", "openblas_set_threads_callback_function64_",
                 "scipy_openblas_set_threads_callback_function", "openblas_set_threads_callback_function")
_GET_CONFIG = ("scipy_openblas_get_config64_", "openblas_get_config64_",
               "scipy_openblas_get_config", "openblas_get_config")
_BLAS_CHOICES = ("auto", "openblas", "numpy")


def _openblas_candidates():
    """Paths of the OpenBLAS NumPy bundles (wheels), then of any OpenBLAS already mapped into
    this process (a NumPy linked to a system OpenBLAS, such as Debian's
    .../openblas-pthread/libblas.so.3), in that order, without duplicates."""
    np_dir = os.path.dirname(np.__file__)
    patterns = (
        os.path.join(os.path.dirname(np_dir), "numpy.libs", "*openblas*"),  # Linux, Windows wheels
        os.path.join(np_dir, ".dylibs", "*openblas*"),                      # macOS wheels
    )
    found = [p for pattern in patterns for p in sorted(glob.glob(pattern))]
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    fields = line.split(None, 5)
                    path = fields[5].strip() if len(fields) == 6 else ""
                    if path.startswith("/") and "openblas" in path.lower() and ".so" in os.path.basename(path):
                        found.append(path)
        except OSError:
            pass
    return list(dict.fromkeys(p for p in found if not p.endswith((".a", ".lib"))))


def _open_loaded(path):
    """ctypes handle on ``path`` only if it is already loaded (never load a second copy)."""
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is None:  # Windows: LoadLibrary of a loaded DLL returns that same module
        return ctypes.CDLL(path)
    return ctypes.CDLL(path, mode=noload | os.RTLD_LAZY | getattr(os, "RTLD_LOCAL", 0))


def _lookup(lib, names):
    """(name, function) of the first symbol of ``names`` that ``lib`` exports, else (None, None)."""
    for name in names:
        try:
            return name, getattr(lib, name)
        except AttributeError:
            continue
    return None, None


def _discover():
    """Find NumPy's loaded OpenBLAS and its symbols; returns the info dict (without threads)."""
    info = {"route": "numpy", "library": None, "sgemm": None, "dgemm": None, "int_size": None,
            "set_num_threads": None, "get_num_threads": None, "threads_callback": None, "config": None,
            "reason": "no OpenBLAS loaded by NumPy was found"}
    for path in _openblas_candidates():
        try:
            lib = _open_loaded(path)
        except OSError:  # not loaded in this process: not NumPy's
            continue
        for s_name, d_name, ilp64 in _GEMM_SYMBOLS:
            try:
                s_fn, d_fn = getattr(lib, s_name), getattr(lib, d_name)
            except AttributeError:
                continue
            info.update(route="openblas", library=path, sgemm=s_name, dgemm=d_name,
                        int_size=8 if ilp64 else 4, reason=None)
            _state["gemm"] = (ctypes.cast(s_fn, ctypes.c_void_p).value,
                              ctypes.cast(d_fn, ctypes.c_void_p).value, ilp64)
            break
        else:
            continue
        set_name, set_fn = _lookup(lib, _SET_THREADS)
        get_name, get_fn = _lookup(lib, _GET_THREADS)
        if set_fn is not None and get_fn is not None:
            set_fn.argtypes, set_fn.restype = [ctypes.c_int], None
            get_fn.argtypes, get_fn.restype = [], ctypes.c_int
            info.update(set_num_threads=set_name, get_num_threads=get_name)
            _state["threads"] = (set_fn, get_fn)
            cb_name, cb_fn = _lookup(lib, _SET_CALLBACK)  # OpenBLAS >= 0.3.28: jobs on the caller's threads
            if cb_fn is not None:
                info["threads_callback"] = cb_name
                _state["callback"] = ctypes.cast(cb_fn, ctypes.c_void_p).value
        _, config_fn = _lookup(lib, _GET_CONFIG)
        if config_fn is not None:
            config_fn.argtypes, config_fn.restype = [], ctypes.c_char_p
            info["config"] = (config_fn() or b"").decode("ascii", "replace").strip()
        _state["lib"] = lib  # keep the handle
        break
    return info


def blas_function(single, double):
    """Addresses (single, double, ilp64) of two functions of the OpenBLAS the compiled kernels use,
    named like its GEMM (``blas_function("sgemv", "dgemv")`` finds scipy_cblas_sgemv64_ where the
    GEMM is scipy_cblas_sgemm64_), or None when there is none (no OpenBLAS, FASTNN_BLAS=numpy)."""
    lib = _state["lib"]
    if lib is None or _INFO.get("route") != "openblas" or _ENV_BLAS == "numpy":
        return None
    try:
        s_fn = getattr(lib, _INFO["sgemm"].replace("sgemm", single))
        d_fn = getattr(lib, _INFO["dgemm"].replace("dgemm", double))
    except AttributeError:
        return None
    return (ctypes.cast(s_fn, ctypes.c_void_p).value, ctypes.cast(d_fn, ctypes.c_void_p).value,
            _INFO["int_size"] == 8)


_state = {"gemm": None, "threads": None, "lib": None, "policy": "fixed", "callback": None}
_ENV_BLAS = os.environ.get("FASTNN_BLAS", "auto").strip().lower() or "auto"
_INFO = _discover()
if _state["gemm"] is not None and _ENV_BLAS != "numpy":
    _blas.set_gemm(*_state["gemm"])
    if _state["callback"] is not None:  # its slots per thread: MAX_THREADS in the config string
        _max = re.search(r"MAX_THREADS=(\d+)", _INFO.get("config") or "")
        _blas.set_threads_callback(_state["callback"], int(_max.group(1)) if _max else 0)

#: How the compiled kernels use the pool: 'fixed' (default) always lets OpenBLAS use the pool as
#: NumPy does; 'adaptive' runs each product that OpenBLAS would split on one thread or on the
#: whole pool, whichever has been faster at its size in this process. OpenBLAS's sums depend on
#: how many threads ran a product (a 128x784 @ 784x512 product differs in the last bits between
#: 1 and 2 threads), so 'adaptive', whose choice follows the machine's load, is not bit for bit
#: reproducible; 'fixed' gives the same weights for the same seed and thread count.
THREAD_POLICIES = ("adaptive", "fixed")


def set_thread_policy(policy):
    """Choose how fastnn's products use the thread pool: 'adaptive' or 'fixed' (see
    THREAD_POLICIES); returns the previous policy. 'adaptive' needs OpenBLAS's thread functions
    (without them the policy stays 'fixed'). Forgets the timings measured so far."""
    policy = check_choice("set_thread_policy", "policy", policy, THREAD_POLICIES)
    old = _state["policy"]
    fns = _state["threads"]
    if fns is None:
        _blas.set_thread_control(0, 0, False)
        _state["policy"] = "fixed"
        return old
    addr = [ctypes.cast(f, ctypes.c_void_p).value for f in fns]
    _blas.set_thread_control(addr[0], addr[1], policy == "adaptive")
    _state["policy"] = policy
    return old


def get_thread_policy():
    """'adaptive' or 'fixed' (see set_thread_policy)."""
    return _state["policy"]


_ENV_POLICY = os.environ.get("FASTNN_THREAD_POLICY", "fixed").strip().lower() or "fixed"
set_thread_policy(_ENV_POLICY if _ENV_POLICY in THREAD_POLICIES else "fixed")


def blas_info():
    """Where fastnn's matrix products run: a dict with ``route`` ('openblas': cblas_?gemm of the
    OpenBLAS NumPy loaded, called from Cython; 'numpy': np.matmul), ``library`` (its path),
    ``sgemm``/``dgemm``/``set_num_threads``/``get_num_threads`` (symbols), ``int_size`` (8 for
    ILP64), ``threads`` (pool size, None when unknown), ``config`` and ``reason`` (why 'numpy')."""
    info = dict(_INFO)
    if _ENV_BLAS == "numpy" and info["route"] == "openblas":
        info.update(route="numpy", reason="FASTNN_BLAS=numpy")
    info["threads"] = get_num_threads()
    info["thread_policy"] = get_thread_policy()
    info["solo"] = _blas.solo_mode()  # how large models' training epochs use the cores (solo spans)
    return info


def set_num_threads(n):
    """Set the size of OpenBLAS's thread pool, which NumPy and fastnn share; returns the
    previous size, or None (and does nothing) when the pool cannot be controlled."""
    n = check_int("set_num_threads", "n", n, low=1)
    if _state["threads"] is None:
        return None
    set_fn, get_fn = _state["threads"]
    old = _blas.solo_threads() or get_fn()
    set_fn(n)
    _blas.solo_threads(n)  # a training chain running in another thread restores n, not old
    set_thread_policy(_state["policy"])  # timings taken with another pool size no longer apply
    return old


def get_num_threads():
    """Size of OpenBLAS's thread pool, or None when it cannot be queried."""
    if _state["threads"] is None:
        return None
    return int(_blas.solo_threads() or _state["threads"][1]())


class CpuBackend(Backend):
    """Compiled CPU kernels (Cython) with GEMMs on NumPy's own OpenBLAS; see the module docstring.

    Parameters
    ----------
    blas : {'auto', 'openblas', 'numpy'} or None, default None
        How products run: 'openblas' calls NumPy's OpenBLAS from Cython (an error if none was
        found), 'numpy' uses np.matmul, 'auto' the first when available. None reads the
        environment variable FASTNN_BLAS (default 'auto').

    >>> be = CpuBackend()
    >>> be.dense_forward(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), None, "relu").shape
    (2, 4)
    """

    name = "cpu"

    def __init__(self, blas=None):
        choice = _ENV_BLAS if blas is None else blas
        if choice not in _BLAS_CHOICES:
            source = " (from FASTNN_BLAS)" if blas is None else ""
            listed = ", ".join(repr(c) for c in _BLAS_CHOICES)
            raise ValueError(f"CpuBackend: unknown blas {choice!r}{source}; choose one of {listed}.")
        if choice == "openblas" and _state["gemm"] is None:
            raise RuntimeError(f"CpuBackend: blas='openblas' but {_INFO['reason']}; use blas='numpy'.")
        if choice == "openblas" and not _blas.has_gemm():  # FASTNN_BLAS=numpy left it unset
            _blas.set_gemm(*_state["gemm"])
        # The route in the Cython module is process-wide; this instance may still bypass it.
        self._gemm = choice != "numpy" and _blas.has_gemm()

    def __repr__(self):
        return f"CpuBackend(blas={'openblas' if self._gemm else 'numpy'!r})"

    # ------------------------------------------------------------------ memory
    def take_rows(self, x, idx, *, out):
        # A memcpy per row: about 0.5 us less than np.take per minibatch at tiny shapes.
        try:
            _TAKE[x.ndim - 1][x.dtype](x, idx, out)
            return out
        except _REFUSED:  # anything unusual, bad indices included: np.take does it, or says why
            return _adapter.REFERENCE.take_rows(x, idx, out=out)

    # ------------------------------------------------------------------ dense
    def solo_span(self, n_weights):
        """Backend.solo_span: for a model of at least _dense.SOLO_WEIGHTS parameters on the OpenBLAS
        route, a solo span (csrc/_blas.pxd): fastnn's pool runs the products (OpenBLAS's jobs through
        its threads callback, or OpenBLAS on one thread and the products split by fastnn), the
        optimizer's update and the minibatch gather, so that those passes get both cores instead
        of competing with OpenBLAS's idle workers, which spin for a while after each product.
        NumPy products run inside it (in callbacks, say) go the same way."""
        if not self._gemm or n_weights < _dense.SOLO_WEIGHTS:
            return contextlib.nullcontext()
        return _SoloSpan()

    def dense_chain(self, steps, first, precision="fp32"):
        """Backend.dense_chain as one compiled call each way (fastnn._ext.dense.Chain: the data
        pointers are taken once, so the arrays must stay in place while it is used), or the
        reference's loop over this backend's kernels when these arrays cannot run there."""
        dtype = steps[0][0].dtype if steps else None
        if not self._gemm or dtype not in (_F32, _F64) or precision not in _BF16 or (
                precision == "bf16" and dtype != _F32):
            return super().dense_chain(steps, first, precision)
        rows = steps[0][5].shape[0]
        specs, n_in = [], steps[0][0].shape[0]
        for i, (w, b, activation, alpha, z, y, dw, db, dx) in enumerate(steps):
            n_out = w.shape[1] if w.ndim == 2 else -1
            shapes = ((w, (n_in, n_out)), (b, (n_out,)), (z, (rows, n_out)), (y, (rows, n_out)),
                      (dw, (n_in, n_out)), (db, (n_out,)), (dx, (rows, n_in)))
            for a, shape in shapes:
                if a is not None and not (isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shape
                                          and a.flags.c_contiguous and (a is w or a is b or a.flags.writeable)):
                    return super().dense_chain(steps, first, precision)
            if activation not in ACTIVATION_CODES or (activation in NEEDS_INPUT) != (z is not None) \
                    or (dx is None) != (i <= first) or (i < first and dw is not None):
                return super().dense_chain(steps, first, precision)
            specs.append((n_in, n_out, ACTIVATION_CODES[activation], float(alpha), w, b, z, y, dw, db, dx))
            n_in = n_out
        chain = _dense.Chain(rows, dtype == _F64, specs, first, precision == "bf16")
        if dtype == _F64:
            return _ChainCalls(chain.forward64, chain.backward64, chain)
        return _ChainCalls(chain.forward32, chain.backward32, chain)


class _SoloSpan:
    """CpuBackend.solo_span's context: _blas.solo_begin / solo_end."""

    __slots__ = ("began",)

    def __enter__(self):
        self.began = _blas.solo_begin()
        return self

    def __exit__(self, *exc):
        if self.began:
            _blas.solo_end()
        return False


# ---------------------------------------------------------------------------------- kernels
# One function per operation: the fast call and nothing else, its parameters the reference's
# (backends/base.py), in order. The adapter (backends/_adapter.py) gives each the reference's
# signature and, when the compiled call refuses, the spec's checks and the reference.
def _activation(self, name, x, alpha, out):
    o = np.empty(x.shape, x.dtype) if out is None else out
    _ACT_FWD[x.dtype](ACTIVATION_CODES[name], alpha, x, o)
    return o


def _activation_backward(self, name, dy, x, y, alpha, out):
    o = np.empty(dy.shape, dy.dtype) if out is None else out
    _ACT_BWD[dy.dtype](ACTIVATION_CODES[name], alpha, dy, x, y, o)
    return o


def _dense_forward(self, x, w, b, activation, alpha, z, out, precision):
    code = ACTIVATION_CODES[activation]
    bf16 = _BF16[precision]  # KeyError for an unknown precision: the adapter's check says why
    o = np.empty((x.shape[0], w.shape[1]), x.dtype) if out is None else out
    if self._gemm:
        _DENSE_FWD[x.dtype](x, w, b, code, alpha, z, o, bf16)
    else:
        np.matmul(bf16_operand(x, precision), bf16_operand(w, precision), out=o if z is None else z)
        _DENSE_BIAS_ACT[x.dtype](b, code, alpha, z, o)
    return o


def _dense_backward(self, dy, x, w, y, z, activation, alpha, dw, db, dx, dz, precision):
    code = ACTIVATION_CODES[activation]
    bf16 = _BF16[precision]
    d = dz
    if d is None and code:  # the kernel needs somewhere to put dy * f'; identity uses dy
        d = np.empty(dy.shape, dy.dtype)
    if self._gemm:
        _DENSE_BWD[dy.dtype](dy, x, w, y, z, code, alpha, dw, db, dx, d, bf16)
    else:
        _DENSE_BWD_PASS[dy.dtype](dy, y, z, code, alpha, db, d)
        g = bf16_operand(dy if d is None else d, precision)
        if dw is not None:
            np.matmul(bf16_operand(x, precision).T, g, out=dw)
        if dx is not None:
            np.matmul(g, bf16_operand(w, precision).T, out=dx)
    return dx


def _cross_entropy(self, logits, target, label_smoothing, weight, scale, loss_out, grad):
    kernel = _CE_LABELS if target.ndim == 1 else _CE_SOFT
    kernel[logits.dtype](logits, target, label_smoothing, weight, scale, loss_out, grad)
    return loss_out


def _binary_cross_entropy(self, logits, target, weight, scale, loss_out, grad):
    _BCE[logits.dtype](logits, target, weight, scale, loss_out, grad)
    return loss_out


def _mse(self, pred, target, weight, scale, loss_out, grad):
    _RESIDUAL[pred.dtype](_MSE, pred, target, 0.0, weight, scale, loss_out, grad)
    return loss_out


def _mae(self, pred, target, weight, scale, loss_out, grad):
    _RESIDUAL[pred.dtype](_MAE, pred, target, 0.0, weight, scale, loss_out, grad)
    return loss_out


def _huber(self, pred, target, delta, weight, scale, loss_out, grad):
    _RESIDUAL[pred.dtype](_HUBER, pred, target, delta, weight, scale, loss_out, grad)
    return loss_out


def _batchnorm_forward(self, x, gamma, beta, running_mean, running_var, eps, momentum, training, mean, inv_std,
                       out):
    if training:
        check_batch_rows("batchnorm_forward", np.shape(x)[0])
    o = np.empty(x.shape, x.dtype) if out is None else out
    _BN_FWD[x.dtype](x, gamma, beta, running_mean, running_var, eps, momentum, training, mean, inv_std, o)
    return o


def _batchnorm_backward(self, dy, x, gamma, mean, inv_std, training, dgamma, dbeta, dx):
    _BN_BWD[dy.dtype](dy, x, gamma, mean, inv_std, training, dgamma, dbeta, dx)
    return dx


def _dropout_forward(self, x, rate, key, step, mask, out):
    o = np.empty(x.shape, x.dtype) if out is None else out
    _DROPOUT_FWD[x.dtype](x, key, step, dropout_threshold(rate), 1.0 / (1.0 - rate), mask, o)
    return o


def _dropout_backward(self, dy, mask, rate, out):
    o = np.empty(dy.shape, dy.dtype) if out is None else out
    _DROPOUT_BWD[dy.dtype](dy, mask, 1.0 / (1.0 - rate), o)
    return o


def _gaussian_noise(self, x, std, key, step, out):
    o = np.empty(x.shape, x.dtype) if out is None else out
    _NOISE[x.dtype](x, std, key, step, o)
    return o


def _mixup(self, x, idx, lam, out):
    o = np.empty(x.shape, x.dtype) if out is None else out
    if x.ndim == 1:  # per-sample weights: one column
        _MIXUP[x.dtype](x.reshape(-1, 1), idx, lam, o.reshape(-1, 1))
    else:
        _MIXUP[x.dtype](x, idx, lam, o)
    return o


def _mixup_labels(self, labels, idx, lam, out):
    _MIXUP_LABELS[out.dtype](labels, idx, lam, out)
    return out


def _flat(x):
    """A flat view of a C-contiguous array (x itself otherwise: the 1-D kernel then refuses it;
    a reshape would copy, and an in-place kernel would write the copy)."""
    return x if x.ndim == 1 or not x.flags.c_contiguous else x.reshape(-1)


def _sum_squares(self, x):
    return _SUM_SQUARES[x.dtype](x)


def _scale_(self, x, factor):
    _SCALE[x.dtype](_flat(x), factor)
    return x


def _clip_(self, x, value):
    _CLIP[x.dtype](_flat(x), value)
    return x


def _penalty(self, w, g, l1, l2):
    return _PENALTY[w.dtype](w, g, l1, l2)


def _sgd_update(self, p, g, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
    _SGD[p.dtype](p, g, buf if momentum else None, lr, momentum, dampening, nesterov, weight_decay, first_step)


def _adagrad_update(self, p, g, state_sum, lr, eps, weight_decay):
    _ADAGRAD[p.dtype](p, g, state_sum, lr, eps, weight_decay)


def _adadelta_update(self, p, g, square_avg, acc_delta, lr, rho, eps, weight_decay):
    _ADADELTA[p.dtype](p, g, square_avg, acc_delta, lr, rho, eps, weight_decay)


def _rmsprop_update(self, p, g, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum,
                    centered):
    _RMSPROP[p.dtype](p, g, square_avg, grad_avg if centered else None, momentum_buffer if momentum else None, lr,
                      alpha, eps, weight_decay, momentum, centered)


def _adam_update(self, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay, amsgrad,
                 decoupled_weight_decay, bias_correction1, bias_correction2):
    _ADAM[p.dtype](p, g, exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else None, lr, beta1, beta2, eps,
                   weight_decay, amsgrad, decoupled_weight_decay, bias_correction1, bias_correction2)


def _adamax_update(self, p, g, exp_avg, exp_inf, lr, beta1, beta2, eps, weight_decay, bias_correction1):
    _ADAMAX[p.dtype](p, g, exp_avg, exp_inf, lr, beta1, beta2, eps, weight_decay, bias_correction1)


def _nadam_update(self, p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, mu, mu_next, mu_product,
                  bias_correction2):
    _NADAM[p.dtype](p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, mu, mu_next, mu_product,
                    bias_correction2)


def _native(arg, a):
    """True when the compiled kernels take ``a`` for ``arg``: an ndarray of the family's dtype,
    C-contiguous, writeable when the kernel writes it (ranks were checked by the spec)."""
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
        return False
    family = arg.family_of(a.ndim)
    if family == "float":
        ok = a.dtype in FLOAT_DTYPES
    else:
        ok = a.dtype == FAMILIES[family]
    return ok and (arg.role == "in" or a.flags.writeable)


#: the operations with a compiled kernel: {name: fast call}; the others are the reference's
KERNELS = {name[1:]: fn for name, fn in list(globals().items())
           if name[1:] in SPECS and name.startswith("_") and callable(fn)}
implement(CpuBackend, KERNELS, "refuse", _native)


def _fused_update(spec, module=_optim):
    """Convention: an operation with no function above and a fused kernel of the same name in
    fastnn._ext.optim (float and double, taking the spec's parameters in order) is registered
    as that kernel, refusing and falling back as the others do. A new optimizer's update needs
    no code here."""
    if spec.name in _adapter.registered(CpuBackend) or not hasattr(module, spec.name):
        return
    kernel = _by_dtype(getattr(module, spec.name))
    first, params = spec.params[0], ", ".join(spec.params)
    ns = {"_kernel": kernel}
    exec(f"def {spec.name}(self, {params}):\n    return _kernel[{first}.dtype]({params})\n", ns)  # noqa: S102
    implement(CpuBackend, {spec.name: ns[spec.name]}, "refuse", _native)


_adapter.add_convention(_fused_update)

