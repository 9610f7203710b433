"""Micro-benchmarks of every kernel, through the backend interface (pytest-benchmark).

    PYTHONPATH=. python -m pytest bench/test_micro.py --benchmark-enable          # timings
    PYTHONPATH=. python -m pytest bench/test_micro.py --benchmark-enable -k adam  # one family
    PYTHONPATH=. python -m pytest bench/test_micro.py --benchmark-enable --benchmark-json=m.json

Dense forward and backward (TARGETS.md's layer shapes), each activation's forward and backward,
the fused losses, BatchNorm, Dropout and each optimizer update, float32, on the compiled
``cpu`` backend and the NumPy ``reference``. In the default test run (bench/conftest.py) the
timings are disabled: each benchmark runs once as a smoke test, and its result is compared
with the reference's on identical inputs, so a broken kernel fails here as well as in tests/.
Nothing asserts a speed.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.backends.base import ACTIVATIONS, DEFAULT_ALPHA, NEEDS_INPUT, Backend

DTYPE = np.float32
BACKENDS = ("cpu", "reference")
_cache = {}


def _backend(name):
    if name not in _cache:
        if name == "reference":
            _cache[name] = Backend()
        else:
            from fastnn.backends.cpu import CpuBackend

            _cache[name] = CpuBackend()
    return _cache[name]


def _arrays(seed, **shapes):
    """Named float32 arrays N(0, 1) of the given shapes (a fresh, seeded draw each call)."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s, dtype=DTYPE) for k, s in shapes.items()}


def _run(benchmark, backend_name, make, rtol=1e-4, atol=1e-5):
    """Time ``call`` from ``make(backend) -> (call, outputs)`` on one backend, then check one
    call on fresh inputs against the reference (outputs: the arrays the call writes)."""
    call, _ = make(_backend(backend_name))
    benchmark(call)
    if backend_name == "reference":
        return
    results = []
    for name in (backend_name, "reference"):
        call, outputs = make(_backend(name))
        call()
        results.append([np.asarray(o, np.float64) for o in outputs])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ dense
DENSE_SHAPES = {"tiny": (16, 4, 16), "regress": (32, 13, 64), "small": (64, 784, 128), "medium": (128, 512, 512)}


def _dense(direction, shape):
    n, n_in, n_out = shape

    def make(be):
        a = _arrays(1, x=(n, n_in), w=(n_in, n_out), b=(n_out,), dy=(n, n_out))
        y = np.maximum(a["x"] @ a["w"] + a["b"], 0).astype(DTYPE)
        if direction == "forward":
            out = np.empty((n, n_out), DTYPE)
            return (lambda: be.dense_forward(a["x"], a["w"], a["b"], "relu", out=out)), [out]
        dw, db = np.empty((n_in, n_out), DTYPE), np.empty(n_out, DTYPE)
        dx, dz = np.empty((n, n_in), DTYPE), np.empty((n, n_out), DTYPE)
        return (lambda: be.dense_backward(a["dy"], a["x"], a["w"], y, None, "relu", dw=dw, db=db, dx=dx,
                                          dz=dz)), [dw, db, dx]

    return make


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("shape", list(DENSE_SHAPES), ids=lambda s: f"{s}{DENSE_SHAPES[s]}")
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_dense(benchmark, backend_name, direction, shape):
    benchmark.group = f"dense-{direction}-{shape}"
    _run(benchmark, backend_name, _dense(direction, DENSE_SHAPES[shape]), rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------ activations
ACT_SHAPE = (128, 512)


def _activation(name, direction):
    alpha = DEFAULT_ALPHA.get(name, 0.0)

    def make(be):
        a = _arrays(2, x=ACT_SHAPE, dy=ACT_SHAPE)
        out = np.empty(ACT_SHAPE, DTYPE)
        if direction == "forward":
            return (lambda: be.activation(name, a["x"], alpha=alpha, out=out)), [out]
        y = np.asarray(_backend("reference").activation(name, a["x"], alpha=alpha), DTYPE)
        x = a["x"] if name in NEEDS_INPUT else None
        return (lambda: be.activation_backward(name, a["dy"], x, y, alpha=alpha, out=out)), [out]

    return make


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_activation(benchmark, backend_name, name, direction):
    benchmark.group = f"activation-{direction}"
    _run(benchmark, backend_name, _activation(name, direction))


# ------------------------------------------------------------------ losses
LOSS_ROWS, LOSS_COLS = 128, 10


def _loss(name):
    def make(be):
        a = _arrays(3, pred=(LOSS_ROWS, LOSS_COLS), t=(LOSS_ROWS, LOSS_COLS))
        if name == "cross_entropy":
            target = np.random.default_rng(3).integers(0, LOSS_COLS, LOSS_ROWS)
        elif name == "binary_cross_entropy":
            target = (a["t"] > 0).astype(DTYPE)
        else:
            target = a["t"]
        loss_out, grad = np.zeros(1, np.float64), np.empty((LOSS_ROWS, LOSS_COLS), DTYPE)
        fn = getattr(be, name)
        return (lambda: fn(a["pred"], target, scale=1.0 / LOSS_ROWS, loss_out=loss_out, grad=grad)), [loss_out,
                                                                                                        grad]

    return make


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"])
def test_loss(benchmark, backend_name, name):
    benchmark.group = "loss"
    _run(benchmark, backend_name, _loss(name))


# ------------------------------------------------------------------ BatchNorm and Dropout
NORM_SHAPE = (128, 256)


def _batchnorm(direction):
    m = NORM_SHAPE[1]

    def make(be):
        a = _arrays(4, x=NORM_SHAPE, dy=NORM_SHAPE, gamma=(m,), beta=(m,))
        rm, rv, mean, istd = np.zeros(m, DTYPE), np.ones(m, DTYPE), np.empty(m, DTYPE), np.empty(m, DTYPE)
        out = np.empty(NORM_SHAPE, DTYPE)
        be.batchnorm_forward(a["x"], a["gamma"], a["beta"], rm, rv, mean=mean, inv_std=istd, out=out)
        if direction == "forward":
            return (lambda: be.batchnorm_forward(a["x"], a["gamma"], a["beta"], rm, rv, mean=mean, inv_std=istd,
                                                 out=out)), [out, rm, rv]
        dg, dbeta = np.empty(m, DTYPE), np.empty(m, DTYPE)
        return (lambda: be.batchnorm_backward(a["dy"], a["x"], a["gamma"], mean, istd, dgamma=dg, dbeta=dbeta,
                                              dx=out)), [out, dg, dbeta]

    return make


def _dropout(direction):
    def make(be):
        a = _arrays(5, x=NORM_SHAPE)
        mask, out = np.empty(NORM_SHAPE, np.uint8), np.empty(NORM_SHAPE, DTYPE)
        be.dropout_forward(a["x"], rate=0.2, key=7, step=3, mask=mask, out=out)
        if direction == "forward":
            return (lambda: be.dropout_forward(a["x"], rate=0.2, key=7, step=3, mask=mask, out=out)), [out, mask]
        return (lambda: be.dropout_backward(a["x"], mask, rate=0.2, out=out)), [out]

    return make


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("layer", ["batchnorm", "dropout"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_normalization_and_dropout(benchmark, backend_name, layer, direction):
    benchmark.group = f"{layer}-{direction}"
    make = _batchnorm(direction) if layer == "batchnorm" else _dropout(direction)
    _run(benchmark, backend_name, make, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ optimizer updates
#: update name -> (backend method, state buffers, keyword arguments); one step's scalars fixed.
UPDATES = {
    "sgd_momentum": ("sgd_update", 1, {"lr": 0.01, "momentum": 0.9}),
    "adagrad": ("adagrad_update", 1, {"lr": 0.01}),
    "adadelta": ("adadelta_update", 2, {"lr": 1.0}),
    "rmsprop": ("rmsprop_update", 3, {"lr": 0.01, "momentum": 0.9}),
    "adam": ("adam_update", 3, {"lr": 1e-3, "bias_correction1": 0.1, "bias_correction2": 0.001}),
    "adamw": ("adam_update", 3, {"lr": 1e-3, "weight_decay": 1e-2, "decoupled_weight_decay": True,
                                 "bias_correction1": 0.1, "bias_correction2": 0.001}),
    "adamax": ("adamax_update", 2, {"lr": 2e-3, "bias_correction1": 0.1}),
    "nadam": ("nadam_update", 2, {"lr": 2e-3, "mu": 0.9, "mu_next": 0.9, "mu_product": 0.9,
                                  "bias_correction2": 0.001}),
}
UPDATE_SIZES = {"1e5": 100_000, "670k": 669_706}  # 670k: the medium model's parameters


def _update(name, size):
    method, n_state, kw = UPDATES[name]

    def make(be):
        a = _arrays(6, p=(size,), g=(size,))
        state = [np.abs(s) for s in _arrays(7, **{f"s{i}": (size,) for i in range(n_state)}).values()]
        return (lambda: getattr(be, method)(a["p"], a["g"], *state, **kw)), [a["p"], *state]

    return make


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("size", list(UPDATE_SIZES))
@pytest.mark.parametrize("name", list(UPDATES))
def test_update(benchmark, backend_name, name, size):
    benchmark.group = f"update-{size}"
    _run(benchmark, backend_name, _update(name, UPDATE_SIZES[size]))
