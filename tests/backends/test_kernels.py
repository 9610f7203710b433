"""Each kernel of each backend against the NumPy reference: dtypes x shapes (0 rows, 1x1, one row,
one feature, odd, a few hundred wide), non-contiguous inputs, extreme values, dtype errors."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _helpers import REFERENCE, assert_close, layout
from _helpers import host_only as _host
from golden.optim_db import OPTIM_DB
from fastnn.backends.base import ACTIVATIONS, DEFAULT_ALPHA, NEEDS_INPUT, round_bf16

DTYPES = [np.float32, np.float64]
SHAPES = [(0, 3), (1, 1), (1, 13), (7, 1), (7, 13), (256, 300)]
# (n_samples, n_in, n_out)
DENSE_SHAPES = [(0, 4, 3), (1, 1, 1), (1, 5, 3), (9, 1, 4), (7, 13, 5), (64, 300, 256)]
LAYOUTS = ["F", "strided"]
EXTREMES = np.array([-1e4, -100.0, -30.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1.0, 30.0, 100.0, 1e4])


def _alpha(name):
    return {"leaky_relu": 0.1, "elu": 1.3}.get(name, DEFAULT_ALPHA.get(name, 0.0))


def _rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _same_dtype(backend, got, dtype):
    """Fast backends return the input's dtype; the reference allocates float64 when out is None."""
    assert got.dtype == dtype


def _act(backend, name, x, **kw):
    return backend.to_numpy(backend.activation(name, backend.asarray(x), alpha=_alpha(name), **kw))


def _act_backward(backend, name, dy, x, y):
    return backend.to_numpy(backend.activation_backward(
        name, backend.asarray(dy), backend.asarray(x), backend.asarray(y), alpha=_alpha(name)))


# ------------------------------------------------------------------------------ memory
@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
@pytest.mark.parametrize("shape", [(20,), (20, 1), (20, 7), (5, 300)], ids=str)
def test_take_rows_matches_reference(backend, shape, dtype):
    rng = np.random.default_rng(21)
    x = (100 * rng.standard_normal(shape)).astype(dtype)
    for idx in (rng.permutation(shape[0])[:4], np.array([-1, 0, -shape[0], 2]), np.array([], np.int64)):
        idx = idx.astype(np.int64)
        want = np.empty((len(idx),) + shape[1:], dtype)
        REFERENCE.take_rows(x, idx, out=want)
        out = backend.empty(want.shape, dtype)
        assert backend.take_rows(backend.asarray(x), backend.asarray(idx), out=out) is out
        np.testing.assert_array_equal(backend.to_numpy(out), want)


@pytest.mark.fallback  # CpuBackend lets np.take word the error
def test_take_rows_rejects_bad_indices(backend):
    x = backend.asarray(np.ones((5, 3), np.float32))
    out = backend.asarray(np.full((2, 3), 7.0, np.float32))
    for bad in (5, -6):
        with pytest.raises(IndexError):
            backend.take_rows(x, backend.asarray(np.array([0, bad], np.int64)), out=out)


@pytest.mark.fallback
def test_take_rows_accepts_non_contiguous(backend):
    _host(backend)
    x = _rand(np.random.default_rng(22), (9, 4), np.float32)
    idx = np.array([3, 1, 8], np.int64)
    out = layout(np.empty((3, 4), np.float32), "F")
    backend.take_rows(layout(x, "F"), layout(idx, "strided"), out=out)
    np.testing.assert_array_equal(out, x[idx])


# ------------------------------------------------------------------------- activations
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_reference(backend, name, shape, dtype):
    rng = np.random.default_rng(0)
    x = _rand(rng, shape, dtype, 3.0)
    got = _act(backend, name, x)
    assert got.shape == x.shape
    _same_dtype(backend, got, dtype)
    assert_close(got, REFERENCE.activation(name, x, alpha=_alpha(name)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_reference(backend, name, shape, dtype):
    rng = np.random.default_rng(1)
    x = _rand(rng, shape, dtype, 3.0)
    y = REFERENCE.activation(name, x, alpha=_alpha(name)).astype(dtype)
    dy = _rand(rng, shape, dtype)
    got = _act_backward(backend, name, dy, x, y)
    assert got.shape == x.shape
    _same_dtype(backend, got, dtype)
    assert_close(got, REFERENCE.activation_backward(name, dy, x, y, alpha=_alpha(name)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_extreme_inputs_stay_finite(backend, name, dtype):
    x = np.tile(EXTREMES.astype(dtype), (3, 1))
    x[1] = x[1, ::-1]
    with np.errstate(all="ignore"):
        want = REFERENCE.activation(name, x, alpha=_alpha(name))
    got = _act(backend, name, x)
    assert np.isfinite(got).all(), got
    assert_close(got, want, dtype)
    y = got.astype(dtype)
    dy = np.ones_like(x)
    with np.errstate(all="ignore"):
        want_grad = REFERENCE.activation_backward(name, dy, x, y, alpha=_alpha(name))
    got_grad = _act_backward(backend, name, dy, x, y)
    assert np.isfinite(got_grad).all(), got_grad
    assert_close(got_grad, want_grad, dtype)


@pytest.mark.fallback
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_accepts_non_contiguous(backend, name, dtype, kind):
    _host(backend)
    rng = np.random.default_rng(2)
    x = _rand(rng, (7, 13), dtype, 2.0)
    want = REFERENCE.activation(name, x, alpha=_alpha(name))
    assert_close(backend.activation(name, layout(x, kind), alpha=_alpha(name)), want, dtype)
    out = layout(np.empty_like(x), kind)
    assert backend.activation(name, x, alpha=_alpha(name), out=out) is out
    assert_close(out, want, dtype)
    y = want.astype(dtype)
    dy = _rand(rng, x.shape, dtype)
    want_grad = REFERENCE.activation_backward(name, dy, x, y, alpha=_alpha(name))
    got = backend.activation_backward(name, layout(dy, kind), layout(x, kind), layout(y, kind),
                                      alpha=_alpha(name))
    assert_close(got, want_grad, dtype)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_writes_into_out_and_in_place(backend, name):
    _host(backend)
    rng = np.random.default_rng(3)
    x = _rand(rng, (5, 6), np.float32)
    want = REFERENCE.activation(name, x, alpha=_alpha(name))
    out = np.full_like(x, np.nan)
    assert backend.activation(name, x, alpha=_alpha(name), out=out) is out
    assert_close(out, want, np.float32)
    inplace = x.copy()
    backend.activation(name, inplace, alpha=_alpha(name), out=inplace)
    assert_close(inplace, want, np.float32)
    dy = _rand(rng, x.shape, np.float32)
    y = want.astype(np.float32)
    want_grad = REFERENCE.activation_backward(name, dy, x, y, alpha=_alpha(name))
    # the gradient may overwrite dy (as dense_backward's dz may alias dy)
    backend.activation_backward(name, dy, x, y, alpha=_alpha(name), out=dy)
    assert_close(dy, want_grad, np.float32)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_needs_only_its_argument(backend, name):
    rng = np.random.default_rng(4)
    x = _rand(rng, (4, 5), np.float64)
    y = REFERENCE.activation(name, x)
    dy = _rand(rng, x.shape, np.float64)
    want = REFERENCE.activation_backward(name, dy, x, y)
    if name in NEEDS_INPUT:
        got = backend.activation_backward(name, backend.asarray(dy), backend.asarray(x), None)
    else:
        got = backend.activation_backward(name, backend.asarray(dy), None, backend.asarray(y))
    assert_close(backend.to_numpy(got), want, np.float64)


# ------------------------------------------------------------------------------- dense
@pytest.mark.parametrize("with_z", [False, True], ids=["out", "z+out"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward_matches_reference(backend, activation, shape, dtype, bias, with_z):
    n, n_in, n_out = shape
    rng = np.random.default_rng(5)
    x, w = _rand(rng, (n, n_in), dtype), _rand(rng, (n_in, n_out), dtype, 1 / np.sqrt(n_in))
    b = _rand(rng, (n_out,), dtype) if bias else None
    want_z = np.empty((n, n_out))
    want = REFERENCE.dense_forward(x, w, b, activation, alpha=_alpha(activation), z=want_z)
    z = backend.zeros((n, n_out), dtype) if with_z else None
    got = backend.dense_forward(backend.asarray(x), backend.asarray(w),
                                None if b is None else backend.asarray(b), activation,
                                alpha=_alpha(activation), z=z)
    got = backend.to_numpy(got)
    assert got.shape == (n, n_out)
    _same_dtype(backend, got, dtype)
    assert_close(got, want, dtype, factor=3)
    if with_z:
        assert_close(backend.to_numpy(z), want_z, dtype, factor=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "softmax", "gelu"])
def test_dense_forward_into_out(backend, activation, dtype):
    rng = np.random.default_rng(6)
    x, w, b = _rand(rng, (16, 4), dtype), _rand(rng, (4, 16), dtype), _rand(rng, (16,), dtype)
    out = backend.empty((16, 16), dtype)
    got = backend.dense_forward(backend.asarray(x), backend.asarray(w), backend.asarray(b), activation,
                                out=out)
    assert got is out
    assert_close(backend.to_numpy(out), REFERENCE.dense_forward(x, w, b, activation), dtype)


@pytest.mark.fallback
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_accepts_non_contiguous(backend, dtype, kind):
    _host(backend)
    rng = np.random.default_rng(7)
    x, w, b = _rand(rng, (7, 13), dtype), _rand(rng, (13, 5), dtype), _rand(rng, (5,), dtype)
    want = REFERENCE.dense_forward(x, w, b, "tanh")
    assert_close(backend.dense_forward(layout(x, kind), w, b, "tanh"), want, dtype)
    assert_close(backend.dense_forward(x, layout(w, kind), b, "tanh"), want, dtype)
    assert_close(backend.dense_forward(x, w, layout(b, "strided"), "tanh"), want, dtype)
    out = layout(np.empty((7, 5), dtype), kind)
    assert backend.dense_forward(x, w, b, "tanh", out=out) is out
    assert_close(out, want, dtype)


# which of dw, db, dx are requested, and how dz is given
_BACKWARD_CASES = {
    "all": dict(dw=True, db=True, dx=True, dz="none"),
    "dz-workspace": dict(dw=True, db=True, dx=True, dz="own"),
    "dz-aliases-dy": dict(dw=True, db=True, dx=True, dz="alias"),
    "first-layer": dict(dw=True, db=True, dx=False, dz="none"),
    "frozen": dict(dw=False, db=False, dx=True, dz="none"),
    "no-bias": dict(dw=True, db=False, dx=True, dz="none"),
    "nothing": dict(dw=False, db=False, dx=False, dz="own"),
}


@pytest.mark.parametrize("case", list(_BACKWARD_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward_matches_reference(backend, activation, shape, dtype, case):
    spec = _BACKWARD_CASES[case]
    n, n_in, n_out = shape
    rng = np.random.default_rng(8)
    x, w = _rand(rng, (n, n_in), dtype), _rand(rng, (n_in, n_out), dtype, 1 / np.sqrt(max(n_in, 1)))
    b = _rand(rng, (n_out,), dtype)
    z = np.empty((n, n_out))
    y = REFERENCE.dense_forward(x, w, b, activation, alpha=_alpha(activation), z=z).astype(dtype)
    z = z.astype(dtype)
    dy = _rand(rng, (n, n_out), dtype)
    alpha = _alpha(activation)
    want = {k: np.zeros(s) for k, s in (("dw", w.shape), ("db", b.shape), ("dx", x.shape), ("dz", dy.shape))}
    REFERENCE.dense_backward(dy, x, w, y, z, activation, alpha=alpha, **want)

    arrs = {k: backend.asarray(v) for k, v in dict(dy=dy, x=x, w=w, y=y, z=z).items()}
    outs = {k: (backend.zeros(want[k].shape, dtype) if spec[k] else None) for k in ("dw", "db", "dx")}
    if spec["dz"] == "own":
        outs["dz"] = backend.zeros(dy.shape, dtype)
    elif spec["dz"] == "alias":
        outs["dz"] = arrs["dy"]
    else:
        outs["dz"] = None
    ret = backend.dense_backward(arrs["dy"], arrs["x"], arrs["w"], arrs["y"], arrs["z"], activation,
                                 alpha=alpha, **outs)
    assert ret is outs["dx"]
    factor = 3 if n_in < 100 else 10
    for k in ("dw", "db", "dx", "dz"):
        if outs[k] is not None:
            assert_close(backend.to_numpy(outs[k]), want[k], dtype, factor=factor)
    if spec["dz"] != "alias":
        np.testing.assert_array_equal(backend.to_numpy(arrs["dy"]), dy)  # dy is read only


@pytest.mark.fallback
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("activation", ["relu", "gelu", "softmax"])
def test_dense_backward_accepts_non_contiguous(backend, activation, kind):
    _host(backend)
    dtype = np.float32
    rng = np.random.default_rng(9)
    x, w, b = _rand(rng, (7, 13), dtype), _rand(rng, (13, 5), dtype), _rand(rng, (5,), dtype)
    z = np.empty((7, 5))
    y = REFERENCE.dense_forward(x, w, b, activation, z=z).astype(dtype)
    z = z.astype(dtype)
    dy = _rand(rng, (7, 5), dtype)
    want = {k: np.zeros(s) for k, s in (("dw", w.shape), ("db", b.shape), ("dx", x.shape))}
    REFERENCE.dense_backward(dy, x, w, y, z, activation, **want)
    got = {k: layout(np.zeros(v.shape, dtype), kind if v.ndim == 2 else "strided") for k, v in want.items()}
    backend.dense_backward(layout(dy, kind), layout(x, kind), layout(w, kind), layout(y, kind),
                           layout(z, kind), activation, **got)
    for k in want:
        assert_close(got[k], want[k], dtype)


# ------------------------------------------------------------------------------ losses
LOSS_SHAPES = [(0, 3), (1, 1), (1, 10), (7, 3), (64, 10), (256, 300)]


def _loss_pair(backend, method, pred, target, weight, dtype, with_grad, **kw):
    """(loss, grad) of backend and of the reference; loss_out starts at 0.5 to check it adds."""
    scale = 1.0 / max(len(pred), 1)
    results = []
    for be in (backend, REFERENCE):
        loss_out = be.asarray(np.full(1, 0.5))
        grad = be.zeros(pred.shape, dtype) if with_grad else None
        pred_b, target_b, weight_b = (None if a is None else be.asarray(a) for a in (pred, target, weight))
        ret = getattr(be, method)(pred_b, target_b, weight=weight_b, scale=scale, loss_out=loss_out, grad=grad, **kw)
        assert ret is loss_out
        results.append((be.to_numpy(loss_out)[0], None if grad is None else be.to_numpy(grad)))
    return results


def _check_loss(results, dtype, n_terms):
    (got_loss, got_grad), (want_loss, want_grad) = results
    assert np.isfinite(got_loss)
    # a float32 loss is a sum of n*k terms computed in float32: allow for that
    assert_close(got_loss, want_loss, dtype, factor=1 + np.sqrt(n_terms))
    if want_grad is not None:
        assert np.isfinite(got_grad).all()
        assert_close(got_grad, want_grad, dtype, factor=3)


@pytest.mark.parametrize("with_grad", [True, False], ids=["grad", "nograd"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("targets", ["labels", "onehot", "soft"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
def test_cross_entropy_matches_reference(backend, shape, dtype, targets, weighted, smoothing, with_grad):
    n, k = shape
    rng = np.random.default_rng(10)
    logits = _rand(rng, shape, dtype, 3.0)
    labels = rng.integers(0, k, n).astype(np.int64)
    if targets == "labels":
        target = labels
    elif targets == "onehot":
        target = np.eye(k, dtype=dtype)[labels]
    else:
        target = rng.dirichlet(np.ones(k), n).astype(dtype) if n else np.zeros(shape, dtype)
    weight = rng.uniform(0.1, 2.0, n).astype(dtype) if weighted else None
    results = _loss_pair(backend, "cross_entropy", logits, target, weight, dtype, with_grad,
                         label_smoothing=smoothing)
    _check_loss(results, dtype, n * k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", ["labels", "soft"])
def test_cross_entropy_is_stable_for_huge_logits(backend, dtype, targets):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4], [0.0, 0.0, 0.0], [-1e4, -1e4, -1e4]], dtype)
    labels = np.array([0, 2, 1, 0], np.int64)
    target = labels if targets == "labels" else np.eye(3, dtype=dtype)[labels]
    results = _loss_pair(backend, "cross_entropy", logits, target, None, dtype, True, label_smoothing=0.1)
    _check_loss(results, dtype, logits.size)


def test_cross_entropy_rejects_labels_out_of_range(backend):
    if backend.name == "reference":
        pytest.skip("the reference indexes with NumPy (negative labels wrap)")
    logits = backend.asarray(np.zeros((3, 4), np.float32))
    loss_out = backend.zeros((1,), np.float64)
    for bad in (4, -1):
        labels = backend.asarray(np.array([0, bad, 1], np.int64))
        with pytest.raises(ValueError, match=r"cross_entropy: target labels must be in \[0, 4\)"):
            backend.cross_entropy(logits, labels, loss_out=loss_out, grad=backend.zeros((3, 4), np.float32))
        assert backend.to_numpy(loss_out)[0] == 0.0


@pytest.mark.parametrize("with_grad", [True, False], ids=["grad", "nograd"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("method", ["binary_cross_entropy", "mse", "mae", "huber"])
def test_elementwise_losses_match_reference(backend, method, shape, dtype, weighted, with_grad):
    n, k = shape
    rng = np.random.default_rng(11)
    pred = _rand(rng, shape, dtype, 3.0)
    if method == "binary_cross_entropy":
        target = rng.uniform(0, 1, shape).astype(dtype)
        target[:, :1] = (target[:, :1] > 0.5)
    else:
        target = _rand(rng, shape, dtype, 2.0)
        target.flat[::5] = pred.flat[::5]  # exact ties: mae's sign(0) = 0, huber's d = 0
    weight = rng.uniform(0.1, 2.0, n).astype(dtype) if weighted else None
    kw = {"delta": 0.7} if method == "huber" else {}
    results = _loss_pair(backend, method, pred, target, weight, dtype, with_grad, **kw)
    _check_loss(results, dtype, n * k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_is_stable_for_huge_logits(backend, dtype):
    logits = np.array([[1e4, -1e4, 0.0, 100.0, -100.0, 30.0]], dtype)
    target = np.array([[0.0, 1.0, 0.5, 1.0, 0.0, 0.3]], dtype)
    results = _loss_pair(backend, "binary_cross_entropy", logits, target, None, dtype, True)
    _check_loss(results, dtype, logits.size)


@pytest.mark.fallback
@pytest.mark.parametrize("method", ["cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"])
def test_losses_accept_non_contiguous(backend, method):
    _host(backend)
    dtype = np.float64
    rng = np.random.default_rng(12)
    pred = _rand(rng, (7, 5), dtype)
    target = rng.uniform(0, 1, (7, 5)).astype(dtype)
    weight = rng.uniform(0.5, 1.5, 7).astype(dtype)
    results = []
    for be, conv in ((backend, lambda a, kind: layout(a, kind)), (REFERENCE, lambda a, kind: a)):
        loss_out, grad = np.zeros(1), layout(np.zeros((7, 5), dtype), "F")
        getattr(be, method)(conv(pred, "F"), conv(target, "strided"), weight=conv(weight, "strided"),
                            loss_out=loss_out, grad=grad)
        results.append((loss_out[0], grad))
    _check_loss(results, dtype, pred.size)


# ---------------------------------------------------------------- flat buffers, update
SIZES = [0, 1, 7, 1000, 100_003]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_sum_squares_matches_reference(backend, size, dtype):
    x = _rand(np.random.default_rng(13), size, dtype)
    got = backend.sum_squares(backend.asarray(x))
    assert isinstance(got, float)
    assert_close(got, REFERENCE.sum_squares(x), np.float64, factor=100)  # double accumulation


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_scale_and_clip_match_reference(backend, size, dtype):
    x = _rand(np.random.default_rng(14), size, dtype, 2.0)
    for method, arg in (("scale_", 0.37), ("clip_", 0.8)):
        want = getattr(REFERENCE, method)(x.copy(), arg)
        buf = backend.asarray(x.copy())
        assert getattr(backend, method)(buf, arg) is buf
        np.testing.assert_array_equal(backend.to_numpy(buf), want)  # one rounding each: exact


@pytest.mark.fallback
@pytest.mark.parametrize("kind", ["2d", "strided"])
def test_scale_and_clip_accept_other_layouts(backend, kind):
    _host(backend)
    x = _rand(np.random.default_rng(15), (6, 9), np.float32, 2.0)
    for method, arg in (("scale_", 0.37), ("clip_", 0.8)):
        want = getattr(REFERENCE, method)(x.copy(), arg)
        buf = x.copy() if kind == "2d" else layout(x, "strided")
        assert getattr(backend, method)(buf, arg) is buf
        np.testing.assert_array_equal(buf, want)


@pytest.mark.parametrize("max_norm", [None, 0.5, 1e6], ids=["measure", "clips", "within"])
@pytest.mark.parametrize("size", [0, 7, 1000])
def test_clip_grad_norm_matches_reference(backend, size, max_norm):
    x = _rand(np.random.default_rng(15), size, np.float32)
    want, want_norm = x.copy(), np.full(1, np.nan)
    REFERENCE.clip_grad_norm_(want, max_norm, norm_out=want_norm)
    buf, norm = backend.asarray(x.copy()), backend.zeros((1,), np.float64)
    assert backend.clip_grad_norm_(buf, max_norm, norm_out=norm) is norm
    assert_close(backend.to_numpy(norm), want_norm, np.float64, factor=100)
    assert_close(backend.to_numpy(buf), want, np.float32)
    got_norm = np.linalg.norm(backend.to_numpy(buf).astype(np.float64))
    if max_norm == 0.5:
        assert got_norm <= 0.5 * (1 + 1e-6)
    else:  # unchanged
        assert np.isclose(got_norm, want_norm[0], rtol=1e-12, atol=0.0)


def test_clip_keeps_nan(backend):
    x = backend.asarray(np.array([np.nan, 5.0, -5.0, 0.5], np.float32))
    got = backend.to_numpy(backend.clip_(x, 1.0))
    np.testing.assert_array_equal(got, [np.nan, 1.0, -1.0, 0.5])


@pytest.mark.parametrize("with_grad", [True, False], ids=["grad", "nograd"])
@pytest.mark.parametrize("l1, l2", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.7), (0.3, 0.7)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_penalty_matches_reference(backend, size, dtype, l1, l2, with_grad):
    rng = np.random.default_rng(16)
    w = _rand(rng, size, dtype)
    w[::7] = 0.0  # sign(0) = 0
    g = _rand(rng, size, dtype)
    want_g = g.copy()
    want = REFERENCE.penalty(w, want_g if with_grad else None, l1=l1, l2=l2)
    got_g = backend.asarray(g.copy()) if with_grad else None
    got = backend.penalty(backend.asarray(w), got_g, l1=l1, l2=l2)
    assert isinstance(got, float)
    assert_close(got, want, np.float64, factor=100)
    if with_grad:
        assert_close(backend.to_numpy(got_g), want_g, dtype)


@pytest.mark.parametrize("size", [0, 7, 1000])
def test_penalty_into_adds_the_scaled_penalty(backend, size):
    rng = np.random.default_rng(17)
    w, g = _rand(rng, size, np.float32), _rand(rng, size, np.float32)
    want_g = g.copy()
    want = 1.5 + 3.0 * REFERENCE.penalty(w, want_g, l1=0.3, l2=0.7)
    loss_out, got_g = backend.asarray(np.array([1.5])), backend.asarray(g.copy())
    assert backend.penalty_into(backend.asarray(w), got_g, l1=0.3, l2=0.7, scale=3.0, loss_out=loss_out) is loss_out
    assert_close(backend.to_numpy(loss_out)[0], want, np.float64, factor=100)
    assert_close(backend.to_numpy(got_g), want_g, np.float32)


SGD_CASES = {
    "plain": dict(),
    "weight-decay": dict(weight_decay=0.01),
    "momentum": dict(momentum=0.9),
    "dampening": dict(momentum=0.9, dampening=0.5, weight_decay=0.01),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "nesterov-wd": dict(momentum=0.8, nesterov=True, weight_decay=0.05),
}


@pytest.mark.parametrize("case", list(SGD_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 10_001])
def test_sgd_update_matches_reference_over_steps(backend, size, dtype, case):
    kw = SGD_CASES[case]
    rng = np.random.default_rng(17)
    p = _rand(rng, size, dtype)
    want_p, want_buf = p.copy(), np.full(size, np.nan, dtype)  # the first step must not read buf
    got_p, got_buf = backend.asarray(p.copy()), backend.asarray(np.full(size, np.nan, dtype))
    for step in range(5):
        g = _rand(rng, size, dtype)
        g_copy = g.copy()
        REFERENCE.sgd_update(want_p, g, want_buf, lr=0.1, first_step=step == 0, **kw)
        dev_g = backend.asarray(g)
        ret = backend.sgd_update(got_p, dev_g, got_buf, lr=0.1, first_step=step == 0, **kw)
        assert ret is None
        np.testing.assert_array_equal(backend.to_numpy(dev_g), g_copy)  # g is not modified
        assert_close(backend.to_numpy(got_p), want_p, dtype, factor=2 * (step + 1))
        if kw.get("momentum"):
            assert_close(backend.to_numpy(got_buf), want_buf, dtype, factor=2 * (step + 1))


def test_sgd_update_without_momentum_needs_no_buffer(backend):
    p = backend.asarray(np.ones(5, np.float32))
    backend.sgd_update(p, backend.asarray(np.ones(5, np.float32)), None, lr=0.5)
    np.testing.assert_array_equal(backend.to_numpy(p), np.full(5, 0.5, np.float32))


@pytest.mark.fallback
def test_sgd_update_accepts_non_contiguous(backend):
    _host(backend)
    rng = np.random.default_rng(18)
    p, g = _rand(rng, 9, np.float32), _rand(rng, 9, np.float32)
    want_p, want_buf = p.copy(), np.zeros(9, np.float32)
    REFERENCE.sgd_update(want_p, g, want_buf, lr=0.1, momentum=0.9, first_step=True)
    got_p, got_buf = layout(p, "strided"), layout(np.zeros(9, np.float32), "strided")
    backend.sgd_update(got_p, layout(g, "strided"), got_buf, lr=0.1, momentum=0.9, first_step=True)
    assert_close(got_p, want_p, np.float32)
    assert_close(got_buf, want_buf, np.float32)


def _nadam_scalars(t, beta1=0.9, momentum_decay=4e-3):
    mus = [beta1 * (1.0 - 0.5 * 0.96 ** (k * momentum_decay)) for k in range(1, t + 2)]
    return dict(mu=mus[t - 1], mu_next=mus[t], mu_product=math.prod(mus[:t]), bias_correction2=1.0 - 0.999 ** t)


#: scalars each update kernel takes per step t (1-based), as its optimizer computes them
STEP_SCALARS = {
    "adam_update": lambda t: dict(bias_correction1=1.0 - 0.9 ** t, bias_correction2=1.0 - 0.999 ** t),
    "adamax_update": lambda t: dict(bias_correction1=1.0 - 0.9 ** t),
    "nadam_update": _nadam_scalars,
}
#: id: (kernel, {state buffer: initial value, or None when this variant does not use it}, options)
UPDATE_CASES = {
    "adagrad": ("adagrad_update", dict(state_sum=0.0), dict(lr=0.1)),
    "adagrad-wd-init": ("adagrad_update", dict(state_sum=0.1), dict(lr=0.1, eps=1e-6, weight_decay=0.05)),
    "adadelta": ("adadelta_update", dict(square_avg=0.0, acc_delta=0.0), dict(lr=1.0)),
    "adadelta-wd": ("adadelta_update", dict(square_avg=0.0, acc_delta=0.0),
                    dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
    "rmsprop": ("rmsprop_update", dict(square_avg=0.0, grad_avg=None, momentum_buffer=None), dict(lr=0.01)),
    "rmsprop-momentum": ("rmsprop_update", dict(square_avg=0.0, grad_avg=None, momentum_buffer=0.0),
                         dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
    "rmsprop-centered": ("rmsprop_update", dict(square_avg=0.0, grad_avg=0.0, momentum_buffer=None),
                         dict(lr=0.01, alpha=0.9, centered=True)),
    "rmsprop-centered-momentum": ("rmsprop_update", dict(square_avg=0.0, grad_avg=0.0, momentum_buffer=0.0),
                                  dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
    "adam": ("adam_update", dict(exp_avg=0.0, exp_avg_sq=0.0, max_exp_avg_sq=None), dict(lr=0.01)),
    "adam-wd": ("adam_update", dict(exp_avg=0.0, exp_avg_sq=0.0, max_exp_avg_sq=None),
                dict(lr=0.01, weight_decay=0.1)),
    "adam-amsgrad": ("adam_update", dict(exp_avg=0.0, exp_avg_sq=0.0, max_exp_avg_sq=0.0),
                     dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    "adamw": ("adam_update", dict(exp_avg=0.0, exp_avg_sq=0.0, max_exp_avg_sq=None),
              dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    "adamw-amsgrad": ("adam_update", dict(exp_avg=0.0, exp_avg_sq=0.0, max_exp_avg_sq=0.0),
                      dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, amsgrad=True)),
    "adamax": ("adamax_update", dict(exp_avg=0.0, exp_inf=0.0), dict(lr=2e-3)),
    "adamax-wd": ("adamax_update", dict(exp_avg=0.0, exp_inf=0.0), dict(lr=2e-3, weight_decay=0.1)),
    "nadam": ("nadam_update", dict(exp_avg=0.0, exp_avg_sq=0.0), dict(lr=2e-3)),
    "nadam-wd": ("nadam_update", dict(exp_avg=0.0, exp_avg_sq=0.0), dict(lr=2e-3, weight_decay=0.1)),
}


def _run_update(backend, kernel, state, kw, t, p, g):
    getattr(backend, kernel)(p, g, *state, **kw, **STEP_SCALARS.get(kernel, lambda t: {})(t))


@pytest.mark.parametrize("case", list(UPDATE_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 10_001])
def test_update_kernels_match_reference_over_50_steps(backend, size, dtype, case):
    kernel, init, kw = UPDATE_CASES[case]
    rng = np.random.default_rng(19)
    p = _rand(rng, size, dtype)
    want = [p.copy()] + [None if v is None else np.full(size, v, dtype) for v in init.values()]
    got = [backend.asarray(a) if a is not None else None for a in (x if x is None else x.copy() for x in want)]
    for t in range(1, 51):
        g = _rand(rng, size, dtype)
        dev_g = backend.asarray(g)
        _run_update(REFERENCE, kernel, want[1:], kw, t, want[0], g)
        assert _run_update(backend, kernel, got[1:], kw, t, got[0], dev_g) is None
        np.testing.assert_array_equal(backend.to_numpy(dev_g), g)  # g is not modified
        for name, w, a in zip(["p", *init], want, got):
            if w is not None:
                assert_close(backend.to_numpy(a), w, dtype, factor=2), (name, t)
    assert np.isfinite(want[0]).all() and not np.array_equal(want[0], p)



@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda case: case.key)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 10_001])
def test_every_optimizer_of_the_test_table_runs_its_kernels_like_the_reference(backend, size, dtype, case):
    """Each entry of tests/golden/optim_db.py driven through its Optimizer for 30 updates on this
    backend and on the reference (the kernels its registry entry names, with the scalars the
    optimizer computes): a new optimizer's kernels are conformance-tested by its entry there.
    Zero values with zero gradients (the alignment padding of a model's buffers) stay zero."""
    import fastnn as fnn

    rng = np.random.default_rng(21)
    start = _rand(rng, size, dtype)
    runs = [(fnn.optim.Parameters(start, device=b, dtype=np.dtype(dtype).name), case.make_fastnn(fnn, case.lr))
            for b in ("reference", backend.name)]
    for x, opt in runs:
        opt.bind(x)
    for _ in range(30):
        g = _rand(rng, size, dtype)
        for x, opt in runs:
            x.grads[...] = x.backend.asarray(g)
            opt.step()
    (want, ref), (got, opt) = runs
    assert_close(got.backend.to_numpy(got.params), want.params, dtype, factor=4)
    for name in ref.state_names:
        assert_close(got.backend.to_numpy(opt.state[name]), ref.state[name], dtype, factor=4), name
    assert not np.array_equal(want.params, start)
    zero = fnn.optim.Parameters(np.zeros(5, dtype), device=backend.name, dtype=np.dtype(dtype).name)
    opt = case.make_fastnn(fnn, case.lr)
    opt.bind(zero)
    for _ in range(2):
        opt.step()
    np.testing.assert_array_equal(zero.backend.to_numpy(zero.params), 0.0)


def test_update_kernels_leave_zero_padding_zero(backend):
    # the optimizer extends a segment over the alignment padding between parameters, where p
    # and g are zero: every update must keep p there zero
    for kernel, init, kw in UPDATE_CASES.values():
        state = [None if v is None else backend.asarray(np.full(5, v, np.float32)) for v in init.values()]
        p = backend.asarray(np.zeros(5, np.float32))
        for t in (1, 2):
            _run_update(backend, kernel, state, kw, t, p, backend.asarray(np.zeros(5, np.float32)))
        np.testing.assert_array_equal(backend.to_numpy(p), 0.0, err_msg=kernel)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="flushing is x86 (MXCSR) only")
@pytest.mark.parametrize("case", ["sgd-momentum", *UPDATE_CASES])
def test_issue3_updates_flush_subnormal_state_to_zero(backend, case):
    """Under exact-zero gradients (dead ReLU units) decaying state sank into subnormal floats and
    the update ran 13x slower; the compiled updates flush them (and restore the FPU mode)."""
    if backend.name != "cpu":
        pytest.skip("the NumPy reference keeps IEEE subnormals; flushing is the compiled kernels' speed-up")
    if case == "sgd-momentum":
        kernel, init, kw = "sgd_update", dict(buf=0.0), dict(lr=0.1, momentum=0.9)
    else:
        kernel, init, kw = UPDATE_CASES[case]
    tiny = np.finfo(np.float32).tiny

    def decay(be):  # 100 updates with zero gradients from state just above the subnormal range
        state = [None if v is None else np.full(64, 4 * tiny, np.float32) for v in init.values()]
        p = np.zeros(64, np.float32)
        for t in range(2, 102):
            _run_update(be, kernel, state, kw, t, p, np.zeros(64, np.float32))
        return [(name, buf) for name, buf in zip(init, state) if buf is not None]

    for name, buf in decay(backend):
        assert not np.any((buf != 0) & (np.abs(buf) < tiny)), f"{name} holds subnormals"
    if case == "adam":  # IEEE arithmetic (the reference) does produce them
        assert np.any((decay(REFERENCE)[0][1] != 0) & (np.abs(decay(REFERENCE)[0][1]) < tiny))
    assert np.float32(tiny / 4) * np.float32(1.0) != 0  # the caller's FPU mode is back


@pytest.mark.fallback
@pytest.mark.parametrize("case", ["adagrad", "adadelta", "rmsprop-centered-momentum", "adam-amsgrad", "adamax",
                                  "nadam"])
def test_update_kernels_accept_non_contiguous(backend, case):
    _host(backend)
    kernel, init, kw = UPDATE_CASES[case]
    rng = np.random.default_rng(20)
    p, g = _rand(rng, 9, np.float32), _rand(rng, 9, np.float32)
    want = [p.copy()] + [None if v is None else np.full(9, v, np.float32) for v in init.values()]
    got = [None if a is None else layout(a, "strided") for a in want]
    _run_update(REFERENCE, kernel, want[1:], kw, 1, want[0], g)
    _run_update(backend, kernel, got[1:], kw, 1, got[0], layout(g, "strided"))
    for w, a in zip(want, got):
        if w is not None:
            assert_close(a, w, np.float32)


# ------------------------------------------------------------------------ errors (cpu)
def _cpu(backend):
    if backend.name != "cpu":
        pytest.skip("the reference computes mixed dtypes in float64; fast backends refuse them")


def test_dtype_mismatch_is_a_type_error_that_says_what_to_do(backend):
    _cpu(backend)
    x64, w32 = np.ones((4, 3)), np.ones((3, 2), np.float32)
    with pytest.raises(TypeError, match=r"^dense_forward: x is float64 but w is float32; "
                                        r"cast with x\.astype\(np\.float32\)\.$"):
        backend.dense_forward(x64, w32, None, "relu")
    with pytest.raises(TypeError, match=r"dense_forward: b is float64 but w is float32"):
        backend.dense_forward(x64.astype(np.float32), w32, np.zeros(2), "relu")
    with pytest.raises(TypeError, match=r"dense_forward: out is float64 but w is float32; allocate out"):
        backend.dense_forward(x64.astype(np.float32), w32, None, "relu", out=np.zeros((4, 2)))
    # non-contiguous arrays are checked too before the reference would run
    with pytest.raises(TypeError, match=r"dense_forward: x is float64 but w is float32"):
        backend.dense_forward(np.asfortranarray(x64), w32, None)
    with pytest.raises(TypeError, match=r"dense_backward: dy is float64 but w is float32"):
        backend.dense_backward(np.ones((4, 2)), x64.astype(np.float32), w32, None, None,
                               dw=np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match=r"activation: out is float32 but x is float64"):
        backend.activation("relu", x64, out=x64.astype(np.float32))
    with pytest.raises(TypeError, match=r"activation_backward: y is float32 but dy is float64"):
        backend.activation_backward("relu", x64, None, x64.astype(np.float32))
    with pytest.raises(TypeError, match=r"cross_entropy: weight is float64 but logits is float32"):
        backend.cross_entropy(w32, np.zeros(3, np.int64), weight=np.ones(3), loss_out=np.zeros(1))
    with pytest.raises(TypeError, match=r"mse: target is float64 but pred is float32"):
        backend.mse(w32, np.ones((3, 2)), loss_out=np.zeros(1))
    with pytest.raises(TypeError, match=r"sgd_update: g is float64 but p is float32"):
        backend.sgd_update(np.ones(3, np.float32), np.ones(3), None, lr=0.1)
    with pytest.raises(TypeError, match=r"^adam_update: exp_avg_sq is float64 but p is float32; allocate exp_avg_sq "
                                        r"with dtype=np\.float32\.$"):
        backend.adam_update(np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3),
                            None, lr=0.1, bias_correction1=0.1, bias_correction2=0.001)
    with pytest.raises(TypeError, match=r"^adagrad_update: g is float64 but p is float32; cast with"):
        backend.adagrad_update(np.ones(3, np.float32), np.ones(3), np.zeros(3, np.float32), lr=0.1)
    with pytest.raises(TypeError, match=r"penalty: g is float32 but w is float64"):
        backend.penalty(np.ones(3), np.ones(3, np.float32), l1=0.1)


def test_shape_mismatch_is_a_value_error(backend):
    _cpu(backend)
    x, w = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match=r"dense_forward: x must have shape \(any, 5\); got \(4, 3\)\."):
        backend.dense_forward(x, np.ones((5, 2), np.float32), None)
    with pytest.raises(ValueError, match=r"dense_forward: b must have shape \(2,\); got \(3,\)\."):
        backend.dense_forward(x, w, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"dense_forward: out must have shape \(4, 2\)"):
        backend.dense_forward(x, w, None, out=np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"dense_backward: dw must have shape \(3, 2\)"):
        backend.dense_backward(np.ones((4, 2), np.float32), x, w, None, None, dw=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"dense_backward: activation 'relu' needs y"):
        backend.dense_backward(np.ones((4, 2), np.float32), x, w, None, None, "relu")
    with pytest.raises(ValueError, match=r"dense_backward: x is needed for dw"):
        backend.dense_backward(np.ones((4, 2), np.float32), None, w, None, None, dw=w.copy())
    with pytest.raises(ValueError, match=r"activation_backward: y must have shape \(4, 3\)"):
        backend.activation_backward("tanh", x, None, w)
    with pytest.raises(ValueError, match=r"cross_entropy: target must have shape \(4,\)"):
        backend.cross_entropy(x, np.zeros(5, np.int64), loss_out=np.zeros(1))
    with pytest.raises(ValueError, match=r"mae: grad must have shape \(4, 3\)"):
        backend.mae(x, x, loss_out=np.zeros(1), grad=w)
    with pytest.raises(ValueError, match=r"sgd_update: buf must have shape \(3,\)"):
        backend.sgd_update(np.ones(3, np.float32), np.ones(3, np.float32), np.ones(2, np.float32),
                           lr=0.1, momentum=0.9)
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^rmsprop_update: grad_avg must have shape \(3,\); got \(4,\)\.$"):
        backend.rmsprop_update(p, p.copy(), p.copy(), np.ones(4, np.float32), None, lr=0.1, centered=True)
    with pytest.raises(ValueError, match=r"^adadelta_update: g must have shape \(3,\); got \(2,\)\.$"):
        backend.adadelta_update(p, p[:2].copy(), p.copy(), p.copy(), lr=0.1)


def test_missing_state_buffer_is_a_value_error(backend):
    _cpu(backend)
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^sgd_update: buf must be an array like p when momentum != 0; got None\.$"):
        backend.sgd_update(p, p.copy(), None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"^adam_update: max_exp_avg_sq must be an array like p when amsgrad=True; "
                                         r"got None\.$"):
        backend.adam_update(p, p.copy(), p.copy(), p.copy(), None, lr=0.1, amsgrad=True, bias_correction1=0.1,
                            bias_correction2=0.001)
    with pytest.raises(ValueError, match=r"^rmsprop_update: momentum_buffer must be an array like p when "
                                         r"momentum != 0; got None\.$"):
        backend.rmsprop_update(p, p.copy(), p.copy(), None, None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"^nadam_update: exp_avg must be an array like p; got None\.$"):
        backend.nadam_update(p, p.copy(), None, p.copy(), lr=0.1, mu=0.9, mu_next=0.9, mu_product=0.9,
                             bias_correction2=0.001)
    # unused buffers may be None
    backend.rmsprop_update(p, p.copy(), p.copy(), None, None, lr=0.1)
    backend.adam_update(p, p.copy(), p.copy(), p.copy(), None, lr=0.1, bias_correction1=0.1, bias_correction2=0.001)


@pytest.mark.parametrize("method", ["activation", "dense_forward"])
def test_unknown_activation_is_a_value_error(backend, method):
    x = backend.asarray(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="unknown"):
        if method == "activation":
            backend.activation("swish", x)
        else:
            backend.dense_forward(x, x, None, "swish")


@pytest.mark.fallback
def test_other_dtypes_go_to_the_reference(backend):
    _cpu(backend)
    x, w = np.arange(6).reshape(2, 3), np.ones((3, 2))
    np.testing.assert_array_equal(backend.dense_forward(x, w, None), REFERENCE.dense_forward(x, w, None))
    np.testing.assert_array_equal(backend.activation("relu", x - 3), REFERENCE.activation("relu", x - 3))
    labels = np.array([0, 2], np.int32)  # not int64
    for be in (backend, REFERENCE):
        loss_out = np.zeros(1)
        be.cross_entropy(np.ones((2, 3)), labels, loss_out=loss_out)
        assert_close(loss_out[0], 2 * np.log(3), np.float64)


# -------------------------------------------------------------------------- BLAS (cpu)
def test_blas_info_describes_the_route():
    from fastnn.backends import cpu

    info = cpu.blas_info()
    assert info["route"] in ("openblas", "numpy")
    if info["route"] == "openblas":
        assert os.path.exists(info["library"]) and info["int_size"] in (4, 8)
        assert info["sgemm"].endswith(("sgemm", "sgemm64_")) and info["dgemm"]
    else:
        assert info["reason"]


def test_the_openblas_route_uses_numpys_copy_only():
    from fastnn.backends import cpu

    if cpu.blas_info()["route"] != "openblas" or not os.path.exists("/proc/self/maps"):
        pytest.skip("needs NumPy's OpenBLAS on Linux")
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    # SciPy (imported with scikit-learn by tests/test_sklearn.py) brings its own copy
    paths = {p for p in paths if os.path.basename(os.path.dirname(p)) != "scipy.libs"}
    assert len(paths) == 1, paths  # the one NumPy loaded: fastnn opened it with RTLD_NOLOAD


def test_set_num_threads_round_trips():
    from fastnn.backends import cpu

    before = cpu.get_num_threads()
    if before is None:
        pytest.skip("the BLAS thread pool cannot be controlled here")
    assert cpu.set_num_threads(1) == before
    assert cpu.get_num_threads() == 1
    cpu.set_num_threads(before)
    assert cpu.get_num_threads() == before
    with pytest.raises(ValueError, match="set_num_threads: n must be >= 1"):
        cpu.set_num_threads(0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_thread_choice_measures_both_and_restores_the_pool(dtype, threads):
    """Products large enough for OpenBLAS to split run on one thread or the pool (adaptive
    policy); the results match the fixed policy's, both choices get measured, and the pool
    size NumPy sees afterwards is the one set."""
    from fastnn._ext import blas
    from fastnn.backends import cpu

    if cpu.get_num_threads() is None or cpu.blas_info()["route"] != "openblas":
        pytest.skip("needs NumPy's OpenBLAS with its thread functions")
    before, policy = cpu.get_num_threads(), cpu.get_thread_policy()
    rng = np.random.default_rng(21)
    a, b = _rand(rng, (96, 128), dtype), _rand(rng, (128, 96), dtype)  # m*n*k = 1.2M: split by OpenBLAS
    want = REFERENCE.dense_forward(a, b, None, "identity")
    try:
        cpu.set_num_threads(threads)
        assert cpu.set_thread_policy("adaptive") == policy and cpu.get_thread_policy() == "adaptive"
        assert blas.thread_stats() == {}  # forgotten on a policy change
        for _ in range(5):
            c = np.zeros((96, 96), dtype)
            blas.matmul(a, b, c)
            assert_close(c, want, dtype, factor=3)
            assert cpu.get_num_threads() == threads
        stats = blas.thread_stats()
        if threads == 1:  # nothing to choose with one thread
            assert stats == {}
        else:
            (one, pool, seen), = stats.values()
            assert one > 0 and pool > 0 and seen == 5
        assert cpu.set_thread_policy("fixed") == "adaptive" and cpu.blas_info()["thread_policy"] == "fixed"
        blas.matmul(a, b, c)
        assert blas.thread_stats() == {}
    finally:
        cpu.set_num_threads(before)
        cpu.set_thread_policy(policy)
    with pytest.raises(ValueError,
                       match=r"set_thread_policy: unknown policy 'spin'; choose one of 'adaptive', 'fixed'\."):
        cpu.set_thread_policy("spin")


@pytest.mark.parametrize("small", [0.0, 1e18], ids=["blas", "builtin-loop"])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mnk", [(1, 1, 1), (7, 13, 5), (33, 65, 17), (5, 3, 0)], ids=str)
def test_blas_matmul_routes_agree(mnk, dtype, trans, small):
    from fastnn._ext import blas

    m, n, k = mnk
    rng = np.random.default_rng(19)
    a = _rand(rng, (k, m) if trans[0] else (m, k), dtype)
    b = _rand(rng, (n, k) if trans[1] else (k, n), dtype)
    c = _rand(rng, (m, n), dtype)
    want = 0.5 * (a.T if trans[0] else a) @ (b.T if trans[1] else b) + 2.0 * c
    old = blas.set_small_gemm(small)
    try:
        blas.matmul(a, b, c, trans[0], trans[1], 0.5, 2.0)
    finally:
        blas.set_small_gemm(old)
    assert_close(c, want, dtype, factor=3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_blas_fallback_matches_reference(dtype):
    """The route used when NumPy has no OpenBLAS (MKL, Accelerate): np.matmul + Cython passes."""
    from fastnn.backends.cpu import CpuBackend

    be = CpuBackend(blas="numpy")
    assert repr(be) == "CpuBackend(blas='numpy')"
    rng = np.random.default_rng(20)
    for activation in ("identity", "relu", "gelu", "softmax"):
        x, w, b = _rand(rng, (7, 13), dtype), _rand(rng, (13, 5), dtype), _rand(rng, (5,), dtype)
        z = np.zeros((7, 5), dtype)
        want_z = np.zeros((7, 5))
        want = REFERENCE.dense_forward(x, w, b, activation, z=want_z)
        assert_close(be.dense_forward(x, w, b, activation, z=z), want, dtype, factor=3)
        assert_close(z, want_z, dtype, factor=3)
        dy = _rand(rng, (7, 5), dtype)
        y, z = want.astype(dtype), want_z.astype(dtype)
        want_g = {k: np.zeros(s) for k, s in (("dw", w.shape), ("db", b.shape), ("dx", x.shape))}
        REFERENCE.dense_backward(dy, x, w, y, z, activation, **want_g)
        got = {k: np.zeros(v.shape, dtype) for k, v in want_g.items()}
        assert be.dense_backward(dy, x, w, y, z, activation, **got) is got["dx"]
        for k in want_g:
            assert_close(got[k], want_g[k], dtype, factor=3)


def test_fastnn_blas_env_forces_the_numpy_route():
    code = textwrap.dedent("""
        import numpy as np
        from fastnn.backends import cpu
        from fastnn.backends.base import Backend
        info = cpu.blas_info()
        assert info["route"] == "numpy", info
        assert "FASTNN_BLAS" in info["reason"] or info["library"] is None, info
        be = cpu.CpuBackend()
        assert not be._gemm
        from fastnn._ext import blas
        assert not blas.has_gemm()
        rng = np.random.default_rng(0)
        x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((9, 6), (6, 4), (4,)))
        got = be.dense_forward(x, w, b, "relu")
        want = Backend().dense_forward(x, w, b, "relu")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        print("ok")
    """)
    import fastnn

    env = dict(os.environ, FASTNN_BLAS="numpy")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))  # the fastnn under test
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_unknown_blas_choice_is_a_value_error():
    from fastnn.backends.cpu import CpuBackend

    with pytest.raises(ValueError,
                       match=r"CpuBackend: unknown blas 'mkl'; choose one of 'auto', 'openblas', 'numpy'\."):
        CpuBackend(blas="mkl")


# ------------------------------------------------------------------------------- bf16 products
# precision="bf16": the operands of every product rounded to bfloat16 (ties to even), float32 sums.
# The compiled paths (AMX tiles, AVX512-BF16, portable: rounded float32 copies through the float32
# GEMM) agree with the reference's exact float64 sums of the same products within the float32
# summation bound: k * 2^-24 * sum_i |a_i b_i| per output (2^-23 here, for the pairwise sums).
# (products under 2^15 multiply-adds take the portable path on every CPU: the first three)
BF16_SHAPES = [(1, 1, 1), (1, 7, 3), (5, 33, 17), (1, 300, 130), (17, 100, 47), (33, 47, 65), (2, 64, 300),
               (64, 784, 128)]


@pytest.fixture(params=["portable", "avx512-bf16", "amx"])
def bf16_path(request, backend):
    """Each bf16 path this CPU has, on the cpu backend (others: one run)."""
    if backend.name != "cpu":
        if request.param != "amx":
            pytest.skip("the bf16 paths are the cpu backend's")
        yield None
        return
    dense = pytest.importorskip("fastnn._ext.dense")
    try:
        if dense.set_bf16_path(request.param) != request.param:
            pytest.skip(f"this CPU has no {request.param} path")
        yield request.param
    finally:
        dense.set_bf16_path("amx")  # the best this CPU has again


def _bf16_bound(a, b):
    """Per-output bound of a float32-summed product of the bf16-rounded a (n, k) and b (k, m)."""
    ra, rb = np.abs(round_bf16(a)).astype(np.float64), np.abs(round_bf16(b)).astype(np.float64)
    return a.shape[1] * 2.0**-23 * (ra @ rb) + 1e-30


@pytest.mark.parametrize("activation", ["identity", "relu", "gelu", "softmax"])
@pytest.mark.parametrize("shape", BF16_SHAPES, ids=str)
def test_bf16_dense_forward_matches_reference(backend, bf16_path, activation, shape):
    n, n_in, n_out = shape
    rng = np.random.default_rng(21)
    x, w = _rand(rng, (n, n_in), np.float32), _rand(rng, (n_in, n_out), np.float32, 1 / np.sqrt(n_in))
    b = _rand(rng, (n_out,), np.float32)
    z = np.empty((n, n_out))
    want = REFERENCE.dense_forward(x, w, b, activation, z=z, precision="bf16")
    zb = backend.zeros((n, n_out), np.float32) if activation in NEEDS_INPUT else None
    got = backend.to_numpy(backend.dense_forward(backend.asarray(x), backend.asarray(w), backend.asarray(b),
                                                 activation, z=zb, precision="bf16"))
    assert got.dtype == np.float32
    bound = 2 * _bf16_bound(x, w) + 2.0**-22 * (np.abs(z) + 1)  # the products' sums, then b and f in float32
    assert np.all(np.abs(got - want) <= bound), np.abs(got - want).max()
    if activation == "identity":  # and not the float32 product: the rounding is applied
        fp32 = x.astype(np.float64) @ w + b
        assert np.abs(got - fp32).max() > 10 * np.abs(got - want).max()


@pytest.mark.parametrize("activation", ["identity", "relu"])
@pytest.mark.parametrize("shape", BF16_SHAPES, ids=str)
def test_bf16_dense_backward_matches_reference(backend, bf16_path, activation, shape):
    # identity and relu: dz = dy or 0 on both sides, bit for bit, so that the rounding of dz to
    # bf16 is the same (a one-ulp difference in dz could move it by a whole bf16 step)
    n, n_in, n_out = shape
    rng = np.random.default_rng(22)
    x, w = _rand(rng, (n, n_in), np.float32), _rand(rng, (n_in, n_out), np.float32, 1 / np.sqrt(n_in))
    y = REFERENCE.dense_forward(x, w, None, activation, precision="bf16").astype(np.float32)
    dy = _rand(rng, (n, n_out), np.float32)
    want = {"dw": np.zeros(w.shape), "db": np.zeros(n_out), "dx": np.zeros(x.shape)}
    REFERENCE.dense_backward(dy, x, w, y, None, activation, precision="bf16", **want)
    outs = {k: backend.zeros(v.shape, np.float32) for k, v in want.items()}
    backend.dense_backward(backend.asarray(dy), backend.asarray(x), backend.asarray(w), backend.asarray(y), None,
                           activation, precision="bf16", **outs)
    d = dy * (y > 0) if activation == "relu" else dy
    bounds = {"dw": _bf16_bound(x.T, d), "dx": _bf16_bound(d, w.T), "db": n * 2.0**-23 * np.abs(d).sum(0) + 1e-30}
    for k in want:
        got = backend.to_numpy(outs[k])
        assert np.all(np.abs(got - want[k]) <= 2 * bounds[k]), (k, np.abs(got - want[k]).max())


def test_bf16_rounds_to_nearest_even(backend, bf16_path):
    # bf16 keeps 7 bits after the point: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (to 1, even),
    # 1 + 3 2^-8 halfway between 1 + 2^-7 and 1 + 2^-6 (to 1 + 2^-6, even); truncation would give
    # 1 and 1 + 2^-7, rounding half up 1 + 2^-7 and 1 + 2^-6
    x = np.array([[1 + 2.0**-8, 1 + 3 * 2.0**-8]], np.float32)
    w = np.ones((2, 1), np.float32)
    got = backend.to_numpy(backend.dense_forward(backend.asarray(x), backend.asarray(w), None, "identity",
                                                 precision="bf16"))
    assert got[0, 0] == 2 + 2.0**-6
    np.testing.assert_array_equal(round_bf16(np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8)], np.float32)),
                                  np.array([1, 1 + 2.0**-6, -1], np.float32))


def test_bf16_refuses_float64_and_unknown_precisions(backend):
    x, w = np.ones((2, 3)), np.ones((3, 4))
    with pytest.raises(ValueError, match=r"precision='bf16' takes float32 arrays; x is float64"):
        backend.dense_forward(backend.asarray(x), backend.asarray(w), None, "relu", precision="bf16")
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'; choose one of 'fp32', 'bf16'"):
        backend.dense_forward(backend.asarray(x.astype(np.float32)), backend.asarray(w.astype(np.float32)), None,
                              "relu", precision="fp16")


_SGD_CASES = {"sgd": ("sgd_update", dict(buf=None), dict(lr=0.1)),
              "sgd-momentum-wd": ("sgd_update", dict(buf=0.0), dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
              "sgd-nesterov": ("sgd_update", dict(buf=0.0), dict(lr=0.1, momentum=0.9, nesterov=True))}


@pytest.mark.parametrize("case", [*_SGD_CASES, *UPDATE_CASES])
def test_large_updates_split_over_the_pool_give_the_same_bits(backend, case):
    # 300,001 elements: past the split (65,536), into odd spans; one thread and two give the
    # same bits (each element's expression is the same), and both match the reference
    if backend.name != "cpu":
        pytest.skip("the cpu backend's updates split over its pool")
    import fastnn as fnn
    from fastnn._ext import pool

    kernel, init, kw = {**_SGD_CASES, **UPDATE_CASES}[case]
    rng = np.random.default_rng(23)
    size = 300_001
    p0 = _rand(rng, size, np.float32)
    grads = [_rand(rng, size, np.float32) for _ in range(3)]
    results = []
    before = fnn.get_num_threads()
    try:
        for threads in (1, 2):
            fnn.set_num_threads(threads)
            got = [p0.copy()] + [None if v is None else np.full(size, v, np.float32) for v in init.values()]
            for t, g in enumerate(grads, 1):
                _run_update(backend, kernel, got[1:], kw, t, got[0], g)
            results.append(got)
    finally:
        fnn.set_num_threads(before)
    assert pool.workers() >= 1
    for a, b in zip(*results):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    want = [p0.copy()] + [None if v is None else np.full(size, v, np.float32) for v in init.values()]
    for t, g in enumerate(grads, 1):
        _run_update(REFERENCE, kernel, want[1:], kw, t, want[0], g)
    for w, a in zip(want, results[1]):
        if w is not None:
            assert_close(a, w, np.float32, factor=2)
