"""The compiled inference engine (``fastnn._ext.infer``) for fastnn.inference and Sequential.predict.

A ``Runner`` holds one ``Chain`` (csrc/infer.pyx: a stack of dense, affine and activation steps
run in one call per block of rows, bias and activation fused into each product's output pass)
and per-thread scratch. A packed float32 chain on a CPU with AVX-512 runs on fastnn's own
kernels (csrc/fnn_gemm.h: weights in panels laid out at load); otherwise the products are
OpenBLAS's. The extension is imported at the first use, never at import time, with the OpenBLAS
functions it calls (NumPy's own, found by fastnn.backends.cpu); when it cannot be imported,
``module()`` is None and ``reason()`` says why. Products large enough to gain are split over a
pool of native threads (``set_num_threads``) that sleep when idle.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ._checks import check_int
from .backends.base import ACTIVATION_CODES

_LOCK = threading.Lock()
_STATE: dict = {}          # "module": the extension or None, "reason": why it is None
_THREADS: list = [None]    # set_num_threads's value (None: the default)
_ENV_THREADS = "FASTNN_INFERENCE_THREADS"
#: whether packed float32 chains run on fastnn's own kernels where the CPU has AVX-512 (False:
#: OpenBLAS's, as on other CPUs and in float64; tests switch it to cover both)
PANELS = True


def default_threads() -> int:
    """FASTNN_INFERENCE_THREADS when set (1 to 64), else the cores this process may use (at most 8)."""
    value = os.environ.get(_ENV_THREADS, "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if not 1 <= n <= 64:
            raise ValueError(f"{_ENV_THREADS}={value!r} is not a thread count; set it to a whole number "
                             f"from 1 to 64, or unset it.")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def module():
    """fastnn._ext.infer ready to run (OpenBLAS's gemv installed, the thread count set), or None."""
    with _LOCK:
        if "module" not in _STATE:
            try:
                from ._ext import infer
                from .backends import cpu  # finds NumPy's OpenBLAS and installs its GEMM for the kernels
            except ImportError as exc:
                _STATE.update(module=None, reason=f"{type(exc).__name__}: {exc}")
            else:
                gemv = cpu.blas_function("sgemv", "dgemv")
                if gemv is not None:
                    infer.set_gemv(*gemv)
                infer.set_threads(get_num_threads())
                _STATE.update(module=infer, reason=None)
        return _STATE["module"]


def describe() -> dict:
    """What the compiled inference engine is here, for fnn.info(): available, why not, threads,
    and the float32 products a loaded model runs ('fastnn-avx512' or 'openblas')."""
    mod = module()
    if mod is None:
        return {"engine": "numpy", "reason": reason()}
    kernels = "fastnn-avx512" if PANELS and mod.panels_available() else "openblas"
    return {"engine": "compiled", "float32_kernels": kernels, "threads": get_num_threads()}


def reason() -> str | None:
    """Why ``module()`` is None (None when it is not, or was not asked for yet)."""
    return _STATE.get("reason")


def set_num_threads(n: int) -> int:
    """Threads (the caller's included) that the compiled engine splits a one-row product over,
    1 to 64; returns the previous value. Threads already started stay, asleep, when it shrinks."""
    n = check_int("fastnn.inference.set_num_threads", "n", n, low=1, high=64)
    previous = get_num_threads()
    _THREADS[0] = n
    mod = _STATE.get("module")
    if mod is not None:
        mod.set_threads(n)
    return previous


def get_num_threads() -> int:
    """The value of ``set_num_threads`` (default: ``default_threads()``)."""
    if _THREADS[0] is None:
        _THREADS[0] = default_threads()
    return _THREADS[0]


class Runner:
    """The compiled chain of ``steps``, each (kind, n_in, n_out, activation, alpha, weight, bias)
    with kind 'dense', 'affine' or 'activation' (fastnn.inference.Step's fields), every array
    C-contiguous in ``dtype``. The arrays are used in place, not copied: a model's live parameters
    give predictions that follow its training, unless ``pack`` (for weights that never change):
    then the weights a one-row product splits are also copied into per-thread column blocks.
    ValueError/TypeError for steps the chain refuses."""

    def __init__(self, steps, dtype, pack=False):
        mod = module()
        if mod is None:
            raise ImportError(f"the compiled inference engine is not available: {reason()}")
        self.dtype = np.dtype(dtype)
        self.chain = mod.Chain([(kind, n_in, n_out, ACTIVATION_CODES[act], float(alpha), w, b)
                                for kind, n_in, n_out, act, alpha, w, b in steps], self.dtype)
        # weights that never change (a loaded model's) are laid out once for their products:
        # float32 on an AVX-512 CPU in panels for fastnn's own kernels, else the blocks that
        # each thread of a split one-row product reads, for the thread count of now (runs on
        # another count read the weights in place)
        self.packed_bytes = self.chain.pack(get_num_threads(), PANELS) if pack else 0
        self._local = threading.local()

    @property
    def kernels(self):
        """'fastnn-avx512' (fastnn's own float32 kernels) or 'openblas' (OpenBLAS's, through NumPy)."""
        return self.chain.kernels

    def _scratch(self, rows):
        buf = getattr(self._local, "buf", None)
        need = self.chain.scratch_size(rows)
        if buf is None or buf.size < need:
            buf = self._local.buf = np.empty(need, self.dtype)
        return buf

    def run(self, X, out, chunk, screen=False):
        """out = the chain applied to X (C-contiguous, the chain's dtype), ``chunk`` rows at a
        time; with ``screen``, False (out unfinished) when a first pre-activation is NaN or inf."""
        n = X.shape[0]
        if n <= chunk:
            return self.chain.run(X, out, self._scratch(n), screen)
        buf = self._scratch(chunk)
        return all(self.chain.run(X[i:i + chunk], out[i:i + chunk], buf, screen) for i in range(0, n, chunk))
