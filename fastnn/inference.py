"""Prediction from a ``.fnn`` model file with NumPy alone.

``fastnn.inference`` needs neither the compiled kernels (``fastnn._ext``) nor numba nor scipy:
it reads a model file with the same checks as ``fastnn.load`` (a damaged or hostile file
raises ``fastnn.ModelFormatError`` and executes nothing), folds the model into a short list of
steps, and runs them with NumPy's matrix product and in-place ufuncs into buffers kept per
batch size, so that predicting one row allocates only its result.

Folding, done once in float64 at load time:

- BatchNorm (evaluation mode, y = gamma (x - mean) / sqrt(var + eps) + beta) is a per-feature
  affine map y = x s + t. After a Dense layer without activation it is folded into its
  weights (W' = W s, b' = b s + t); otherwise into the next Dense layer (W' = diag(s) W,
  b' = t W + b) when nothing nonlinear comes between; otherwise it stays an elementwise step.
- Standardize and MinMaxScale (fastnn.preprocessing) are per-feature affine maps too, folded
  the same way: a Standardize first layer disappears into the first Dense layer's weights.
- Dropout is the identity in evaluation and disappears, as do identity activations.
- An Activation layer after a Dense layer without activation becomes that layer's activation.

>>> import fastnn as fnn, fastnn.inference, numpy as np, os, tempfile
>>> m = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)],
...                    input_dim=4, seed=0, device="reference")
>>> path = os.path.join(tempfile.mkdtemp(), "m.fnn"); m.save(path)
>>> model = fastnn.inference.load(path)
>>> model.n_features, model.n_outputs, model.predict(np.ones((2, 4))).shape
(4, 3, (2, 3))
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

from . import _chain
from ._chain import get_num_threads, set_num_threads
from ._checks import (_MASK_SIZE, as_float_array, check_choice, check_dtype_name, check_finite, check_float,
                      check_int, probably_finite)
from ._special import erfc
from .backends.base import DEFAULT_ALPHA
from .io import LayerSpec, format_error, layer_describers, read_model_file

#: Rows per chunk in predict when no batch size is given (bounded buffer memory).
_CHUNK = 4096
#: engine= choices: 'compiled' (fastnn._ext.infer), 'numpy' (NumPy alone), 'auto' (compiled when it imports)
ENGINES = ("auto", "compiled", "numpy")
#: Batch sizes whose buffer views are kept per thread before the cache is cleared.
_MAX_PLANS = 16
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


# ---------------------------------------------------------------- layer rules
def _checked_config(kind, config, defaults, required=()):
    """``config`` with ``defaults`` filled in; unknown or missing keys raise TypeError."""
    unknown = sorted(set(config) - set(defaults) - set(required))
    if unknown:
        allowed = ", ".join(sorted((*defaults, *required)))
        raise TypeError(f"{kind}: unknown config key {unknown[0]!r}; it takes {allowed}.")
    missing = [k for k in required if k not in config]
    if missing:
        raise TypeError(f"{kind}: the config lacks {missing[0]!r}.")
    cfg = {**defaults, **config}
    if not isinstance(cfg["trainable"], bool):
        raise TypeError(f"{kind}: trainable must be True or False; got {cfg['trainable']!r}.")
    return cfg


def _describe_batchnorm(kind, config, n_in, dtype):
    """BatchNorm: four arrays of n_in values, in the order gamma, beta, running mean and
    running variance (the parameter names are the file's)."""
    cfg = _checked_config(kind, config, {"momentum": 0.1, "eps": 1e-5, "trainable": True})
    check_float(kind, "momentum", cfg["momentum"], low=0.0, high=1.0)
    check_float(kind, "eps", cfg["eps"], low=0.0, low_open=True)
    return LayerSpec(kind, cfg, n_in, n_in, [(None, (n_in,))] * 4)


def _describe_dropout(kind, config, n_in, dtype):
    cfg = _checked_config(kind, config, {"trainable": True}, required=("rate",))
    check_float(kind, "rate", cfg["rate"], low=0.0, high=1.0, high_open=True)
    return LayerSpec(kind, cfg, n_in, n_in, [])


def _describers():
    """Layer types fastnn.inference runs: those of fastnn.layers, and BatchNorm and Dropout
    by rules of its own, which take arrays by their order in the file."""
    return {**layer_describers(), "BatchNorm": _describe_batchnorm, "Dropout": _describe_dropout}


# -------------------------------------------------------------------- folding
class Step(NamedTuple):
    """One step of the folded computation: y = f(x @ weight + bias) for kind 'dense',
    y = f(x * weight + bias) (per feature) for 'affine', y = f(x) for 'activation'.
    ``bias`` may be None; f is ``activation`` with its ``alpha``."""

    kind: str
    n_in: int
    n_out: int
    activation: str = "identity"
    alpha: float = 0.0
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None


def _fold(specs, weights, dtype):
    """Steps (weights in ``dtype``) equivalent in evaluation to the layers ``specs``."""
    steps = []
    pending = None  # (s, t) of BatchNorms waiting for the next Dense layer

    def foldable(step):  # a step whose output an affine map can be folded into
        return step.kind in ("dense", "affine") and step.activation == "identity"

    def flush():
        nonlocal pending
        if pending is not None:
            steps.append(Step("affine", len(pending[0]), len(pending[0]), weight=pending[0], bias=pending[1]))
            pending = None

    for i, (spec, arrays) in enumerate(zip(specs, weights)):
        arrays = [np.asarray(a, np.float64) for a in arrays]
        cfg = spec.config
        if spec.kind == "Dense":
            w = arrays[0]
            b = arrays[1] if cfg["use_bias"] else None
            if pending is not None:
                s, t = pending
                b = t @ w + (0.0 if b is None else b)
                w = s[:, None] * w
                pending = None
            name = cfg["activation"]
            steps.append(Step("dense", spec.n_in, spec.n_out, name, cfg.get("alpha", DEFAULT_ALPHA.get(name, 0.0)),
                              w, b))
        elif spec.kind in ("BatchNorm", "Standardize", "MinMaxScale"):
            if spec.kind == "BatchNorm":
                gamma, beta, mean, var = arrays
                if (var < 0).any():
                    raise ValueError(f"layer {i} (BatchNorm) has a negative running variance {float(var.min())!r}")
                s = gamma / np.sqrt(var + cfg["eps"])
                t = beta - mean * s
            else:  # y = (x - center) * factor + offset
                center, s, offset = arrays
                t = offset - center * s
            if pending is not None:
                pending = (pending[0] * s, pending[1] * s + t)
            elif steps and foldable(steps[-1]):
                last = steps[-1]
                w = last.weight * s  # scales the columns of a dense weight, or the affine scale
                b = t if last.bias is None else last.bias * s + t
                steps[-1] = last._replace(weight=w, bias=b)
            else:
                pending = (s, t)
        elif spec.kind == "Activation":
            name = cfg["name"]
            if name == "identity":
                continue
            flush()
            alpha = cfg.get("alpha", DEFAULT_ALPHA.get(name, 0.0))
            if steps and steps[-1].activation == "identity":
                steps[-1] = steps[-1]._replace(activation=name, alpha=alpha)
            else:
                steps.append(Step("activation", spec.n_in, spec.n_out, name, alpha))
        elif spec.kind != "Dropout":  # Dropout is the identity in evaluation
            raise TypeError(f"fastnn.inference: no inference rule for layer type {spec.kind!r}.")
    flush()
    if not steps:  # nothing but identities: y = x
        n = specs[0].n_in
        steps.append(Step("activation", n, n))

    def cast(a):
        if a is None:
            return None
        a = np.ascontiguousarray(a, dtype=dtype)
        if not np.isfinite(a).all():  # a BatchNorm with a tiny variance and eps scales beyond dtype
            raise ValueError(f"folding the BatchNorm layers gives weights beyond the range of {dtype.name}")
        return a

    return tuple(step._replace(weight=cast(step.weight), bias=cast(step.bias)) for step in steps)


# ----------------------------------------------------------------- execution
class _Scratch:
    """Work buffers of one step for one batch size: two float (n, width), one bool (n, width)
    and one float (n, 1), views of per-thread flat buffers."""

    __slots__ = ("f1", "f2", "mask", "col")

    def __init__(self, flat, n, width):
        self.f1, self.f2, self.mask, self.col = (
            buf[:n * w].reshape(n, w) for buf, w in zip(flat, (width, width, width, 1)))


def _sigmoid(z, out, s):
    """out = 1 / (1 + exp(-z)), exp only ever of -|z| (out may be z). Uses s.f1, s.mask."""
    e, negative = s.f1, s.mask
    np.less(z, 0.0, out=negative)
    np.abs(z, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)                  # e = exp(-|z|)
    np.add(e, 1.0, out=out)
    np.divide(e, out, out=e)          # sigmoid(-|z|) = e / (1 + e)
    np.reciprocal(out, out=out)       # sigmoid(|z|) = 1 / (1 + e)
    np.copyto(out, e, where=negative)


def _activate(name, alpha, z, out, s):
    """out = f(z) in place (out may be z), with the formulas of fastnn.backends.base."""
    if name == "relu":
        np.maximum(z, 0.0, out=out)
    elif name == "identity":
        if out is not z:
            np.copyto(out, z)
    elif name == "softmax":
        np.max(z, axis=1, keepdims=True, out=s.col)
        np.subtract(z, s.col, out=out)
        np.exp(out, out=out)
        np.sum(out, axis=1, keepdims=True, out=s.col)
        np.divide(out, s.col, out=out)
    elif name == "sigmoid":
        _sigmoid(z, out, s)
    elif name == "tanh":
        np.tanh(z, out=out)
    elif name == "leaky_relu":        # alpha >= 0: max(z, alpha z) for alpha <= 1, else min
        np.multiply(z, alpha, out=s.f1)
        (np.maximum if alpha <= 1.0 else np.minimum)(z, s.f1, out=out)
    elif name == "elu":               # max(z, 0) + alpha expm1(min(z, 0))
        np.minimum(z, 0.0, out=s.f1)
        np.expm1(s.f1, out=s.f1)
        np.multiply(s.f1, alpha, out=s.f1)
        np.maximum(z, 0.0, out=out)
        np.add(out, s.f1, out=out)
    elif name == "gelu":              # z/2 erfc(-z/sqrt 2): exact in the negative tail
        np.multiply(z, -_INV_SQRT2, out=s.f2)
        s.f2[...] = erfc(s.f2)
        np.multiply(z, s.f2, out=out)
        np.multiply(out, 0.5, out=out)
    elif name == "softplus":          # logaddexp(z, 0) = max(z, 0) + log1p(exp(-|z|))
        np.logaddexp(z, 0.0, out=out)
    elif name == "silu":
        _sigmoid(z, s.f2, s)
        np.multiply(z, s.f2, out=out)
    else:
        raise ValueError(f"fastnn.inference: unknown activation {name!r}.")


def _step_function(step, s, screen=False):
    """fn(x, out) computing ``step`` with the scratch views ``s``. With ``screen`` (a dense or
    affine step) fn stops and returns False when its pre-activation holds NaN or inf."""
    act, alpha, w, b = step.activation, step.alpha, step.weight, step.bias
    if step.kind in ("dense", "affine"):
        product = np.dot if step.kind == "dense" else np.multiply  # np.dot: matmul's BLAS call, cheaper

        def run(x, out):
            product(x, w, out=out)
            if b is not None:
                np.add(out, b, out=out)
            if screen and not probably_finite(out):
                return False
            if act != "identity":
                _activate(act, alpha, out, out, s)
    else:
        def run(x, out):
            _activate(act, alpha, x, out, s)
    return run


class InferenceModel:
    """A model file folded for prediction with NumPy alone; build it with ``load(path)`` or
    ``InferenceModel.from_sequential(model)``.

    Attributes
    ----------
    n_features, n_outputs : int
        Input and output widths.
    dtype : numpy.dtype
        float32 or float64: the dtype of the computation and of the predictions.
    metadata : dict
        The model's free-form metadata (the CLI keeps its columns and class names there).
    layers : tuple of dict
        The architecture as stored: ``{"type", "config", "n_in", "n_out"}`` per layer.
    steps : tuple of Step
        The folded computation that ``predict`` runs.

    engine : str
        'compiled' (fastnn's compiled kernels: one call per predict for the whole stack) or
        'numpy' (NumPy alone): see ``load``.

    ``predict`` keeps its buffers per thread, so one model may serve several threads.
    """

    def __init__(self, specs, weights, dtype, metadata=None, engine="auto"):
        engine = check_choice("fastnn.inference", "engine", engine, ENGINES)
        self.dtype = np.dtype(dtype)
        self.layers = tuple({"type": s.kind, "config": dict(s.config), "n_in": s.n_in, "n_out": s.n_out}
                            for s in specs)
        self.n_features = specs[0].n_in
        self.n_outputs = specs[-1].n_out
        self.metadata = {} if metadata is None else metadata
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused after folding
            self.steps = _fold(specs, weights, self.dtype)
        self._width = max(step.n_out for step in self.steps)
        self._screened = self.steps[0].kind in ("dense", "affine")  # see predict
        self._local = threading.local()
        self._runner = None
        if engine != "numpy" and _chain.module() is not None:
            self._runner = _chain.Runner(self.steps, self.dtype, pack=True)
        elif engine == "compiled":
            raise ImportError(f"fastnn.inference: engine='compiled' needs fastnn's compiled kernels, which cannot "
                              f"be imported here ({_chain.reason()}); install a fastnn wheel or build it "
                              f"(pip install -e . in a checkout), or pass engine='numpy' (or 'auto').")

    @property
    def engine(self):
        """'compiled' or 'numpy': the engine ``predict`` runs."""
        return "numpy" if self._runner is None else "compiled"

    @property
    def kernels(self):
        """Whose products ``predict`` runs: 'fastnn-avx512' (fastnn's own, float32 on AVX-512),
        'openblas' (the compiled engine through NumPy's OpenBLAS) or 'numpy'."""
        return "numpy" if self._runner is None else self._runner.kernels

    @classmethod
    def from_sequential(cls, model, dtype=None, engine="auto"):
        """Fold a built ``fastnn.Sequential`` (its weights are copied); ``engine`` as in ``load``."""
        from .model import Sequential

        if not isinstance(model, Sequential):
            raise TypeError(f"InferenceModel.from_sequential: expected a fastnn.Sequential; got {model!r}.")
        if not model.built:
            raise ValueError("InferenceModel.from_sequential: the model is not built yet; give input_dim or "
                             "train it first.")
        dtype = model.dtype if dtype is None else check_dtype_name("InferenceModel.from_sequential", dtype)
        describers = _describers()
        specs = []
        for layer in model.layers:
            kind = type(layer).__name__
            if kind not in describers:
                raise TypeError(f"fastnn.inference: no inference rule for layer type {kind!r}.")
            specs.append(describers[kind](kind, layer.get_config(), layer.n_in, model.dtype))
        return cls(specs, [layer.weights for layer in model.layers], dtype, dict(model.metadata), engine)

    # ------------------------------------------------------------ running
    def _plan(self, n, screen):
        """(body, last) for batches of n rows: body lists (fn, out) for every step but the last,
        out a view of this thread's buffers; last is the last step's fn, which writes into the
        caller's array. Buffers are per thread and grown to the largest batch. With ``screen``
        the first step stops at NaN or inf (see predict)."""
        local = self._local
        plans = getattr(local, "plans", None)
        if plans is None or n > local.capacity:
            capacity = max(n, getattr(local, "capacity", 0))
            size = capacity * self._width
            # two ping-pong step outputs, then the scratch: float, float, bool, one column
            # (pages that an activation never touches are never committed by the OS)
            local.flat = [np.empty(size, self.dtype) for _ in range(4)] + [np.empty(size, np.bool_),
                                                                           np.empty(capacity, self.dtype)]
            local.capacity, local.plans = capacity, {}
            plans = local.plans
        elif len(plans) >= _MAX_PLANS:
            plans.clear()
        flat = local.flat
        fns = [_step_function(step, _Scratch(flat[2:], n, step.n_out), screen=screen and i == 0)
               for i, step in enumerate(self.steps)]
        body = tuple((fn, flat[i % 2][:n * step.n_out].reshape(n, step.n_out))
                     for i, (fn, step) in enumerate(zip(fns[:-1], self.steps)))
        plans[n, screen] = body, fns[-1]
        return plans[n, screen]

    def _run(self, x, out, screen=False):
        """Compute one chunk into ``out``; with ``screen``, False (``out`` unfinished) when the
        first step's pre-activation holds NaN or inf."""
        try:
            body, last = self._local.plans[x.shape[0], screen]
        except (AttributeError, KeyError):  # a new thread or batch size
            body, last = self._plan(x.shape[0], screen)
        for fn, y in body:
            if fn(x, y) is False:
                return False
            x = y
        return last(x, out) is not False

    def _run_all(self, X, out, chunk, screen=False):
        """Compute X in chunks of at most ``chunk`` rows; False when a screen found NaN/inf."""
        if self._runner is not None:
            return self._runner.run(X, out, chunk, screen)
        if len(X) <= chunk:
            return self._run(X, out, screen)
        return all(self._run(X[i:i + chunk], out[i:i + chunk], screen) for i in range(0, len(X), chunk))

    def predict(self, X, batch_size=None):
        """Model output for X (n_samples, n_features) as a new array (n_samples, n_outputs) of
        ``dtype``: probabilities for a model ending in softmax/sigmoid, as ``Sequential.predict``.

        X may be any bool, integer or float array or nested list; NaN/inf are refused.
        ``batch_size`` bounds the rows computed at once (default 4096).
        """
        owner = "InferenceModel.predict"
        # A large X is screened for NaN/inf through the first step's product instead of a pass
        # over X: every output of a row with a NaN or inf input is NaN or inf in x @ W (+ b) and
        # in x * w + b under IEEE arithmetic (inf * 0 is NaN), and that product is in cache.
        # Only when it holds one is X searched, for the message. A small X is checked directly
        # (cheaper than the errstate the screen needs).
        # The compiled engine screens any X already in the model's dtype (its check of the
        # product costs nothing next to NumPy's of X, 1 us of a one-row predict's 8).
        screen = self._screened and isinstance(X, np.ndarray) and (
            X.size > _MASK_SIZE or (self._runner is not None and X.dtype == self.dtype))
        X = as_float_array(owner, "X", X, self.dtype, finite=not screen)
        if X.shape[1] != self.n_features:
            raise ValueError(f"{owner}: X has {X.shape[1]} features; the model takes {self.n_features}.")
        chunk = _CHUNK if batch_size is None else check_int(owner, "batch_size", batch_size, low=1)
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        if not screen:
            self._run_all(X, out, chunk)
            return out
        if self._runner is not None:  # no floating-point warnings from the compiled kernels
            finite = self._run_all(X, out, chunk, screen=True)
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                finite = self._run_all(X, out, chunk, screen=True)
        if not finite:
            check_finite(owner, "X", X)  # names the first NaN/inf
            self._run_all(X, out, chunk)  # a finite X whose first product overflowed: computed as it is
        return out

    def __repr__(self):
        parts = [f"{s.kind} {s.n_out}" + ("" if s.activation == "identity" else f" {s.activation}")
                 for s in self.steps]
        return (f"InferenceModel({self.n_features} -> {' -> '.join(parts)}, dtype={self.dtype.name!r}, "
                f"engine={self.engine!r}, kernels={self.kernels!r})")


def load(path, dtype=None, engine="auto"):
    """Load a ``.fnn`` model file for prediction.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``model.save`` (or ``fastnn train --out``).
    dtype : {'float32', 'float64'}, optional
        The dtype to compute in; default the file's.
    engine : {'auto', 'compiled', 'numpy'}, default 'auto'
        'compiled': fastnn's compiled kernels (``fastnn._ext.infer``): one call per predict for
        the whole stack, each product's bias and activation in its output pass, one-row products
        split over ``get_num_threads()`` threads; ImportError where they cannot be imported.
        'numpy': NumPy alone. 'auto': compiled when it can be imported, else NumPy. Both give the
        same predictions within rounding; ``model.engine`` says which one runs.

    Raises FileNotFoundError when there is no file, and ``fastnn.ModelFormatError`` for
    anything that is not an intact model file; nothing in the file is executed.
    """
    if dtype is not None:
        dtype = check_dtype_name("fastnn.inference.load", dtype)
    engine = check_choice("fastnn.inference.load", "engine", engine, ENGINES)
    owner = "fastnn.inference.load"
    content = read_model_file(path, owner=owner, describers=_describers())
    try:
        return InferenceModel(content.layers, content.weights, content.dtype if dtype is None else dtype,
                              content.metadata, engine)
    except ValueError as exc:  # arrays that pass the format checks but cannot be folded
        raise format_error(path, str(exc), owner) from None


__all__ = ["ENGINES", "InferenceModel", "Step", "get_num_threads", "load", "set_num_threads"]
