"""Float64 central-difference gradient checks of every layer, activation and loss through a
whole model, on the reference; and each backend's backward against the reference."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.backends import ACTIVATIONS, Backend

REFERENCE = Backend()
EPS = 1e-6


def model_loss_and_grads(model, loss, X, y, weight=None):
    """Loss (mean, as the Trainer reports it without penalties) and a copy of model.grads."""
    trainer = fnn.Trainer(model, loss)
    backend = model.backend
    X, y, weight = trainer._prepare("test", X, y, weight)
    fused = trainer._fused
    acc = backend.zeros((1,), np.float64)
    grad = backend.empty((len(X), model.n_out), model.dtype)
    out = model._forward(backend.asarray(X), training=True, logits=fused)
    count = trainer.loss.count(len(X), model.n_out)
    trainer.loss(backend, out, backend.asarray(y), weight=None if weight is None else backend.asarray(weight),
                 scale=1.0 / count, loss_out=acc, grad=grad)
    backend.fill(model.grads, 0.0)
    model._backward(grad)
    return float(backend.to_numpy(acc)[0]) / count, backend.to_numpy(model.grads).copy()


def numeric_grads(model, loss, X, y, weight=None, max_checks=60, seed=0):
    """Central differences on (a random subset of) the flat parameters."""
    params = model.params
    live = np.concatenate([np.arange(p.start, p.stop) for p in model.param_info])
    rng = np.random.default_rng(seed)
    idx = live if len(live) <= max_checks else rng.choice(live, max_checks, replace=False)
    num = {}
    for i in idx:
        old = params[i]
        params[i] = old + EPS
        lp, _ = model_loss_and_grads(model, loss, X, y, weight)
        params[i] = old - EPS
        lm, _ = model_loss_and_grads(model, loss, X, y, weight)
        params[i] = old
        num[i] = (lp - lm) / (2 * EPS)
    return num


def check_model(model, loss, X, y, weight=None, rtol=1e-6, atol=1e-8):
    _, analytic = model_loss_and_grads(model, loss, X, y, weight)
    for i, g in numeric_grads(model, loss, X, y, weight).items():
        np.testing.assert_allclose(analytic[i], g, rtol=rtol, atol=atol, err_msg=f"parameter {i}")


def data(n=7, d=5, k=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_activation_gradients(activation):
    X, y = data()
    model = fnn.Sequential([fnn.layers.Dense(6, activation=activation), fnn.layers.Dense(3)],
                           input_dim=5, seed=0, device="reference", dtype="float64")
    # keep pre-activations away from the kinks of relu/leaky_relu/elu, where differences lie
    if activation in ("relu", "leaky_relu", "elu"):
        z = X @ model.layers[0].params["w"] + model.layers[0].params["b"]
        assert np.abs(z).min() > 10 * EPS
    check_model(model, "cross_entropy", X, y)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_layer_gradients(activation):
    X, y = data()
    model = fnn.Sequential([fnn.layers.Dense(6), fnn.layers.Activation(activation), fnn.layers.Dense(2)],
                           input_dim=5, seed=3, device="reference", dtype="float64")
    check_model(model, "mse", X, np.random.default_rng(0).standard_normal((7, 2)))


@pytest.mark.parametrize("loss, target", [
    ("mse", "real"), ("mae", "real"), ("huber", "real"), (fnn.losses.Huber(delta=0.3), "real"),
    ("binary_cross_entropy", "binary"), ("cross_entropy", "labels"), ("cross_entropy", "soft"),
    (fnn.losses.CrossEntropy(label_smoothing=0.1), "labels"),
    (fnn.losses.CrossEntropy(label_smoothing=0.2), "soft"),
])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_gradients(loss, target, weighted):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((9, 4))
    y = {"real": rng.standard_normal((9, 3)), "binary": rng.uniform(0, 1, (9, 3)),
         "labels": rng.integers(0, 3, 9), "soft": rng.dirichlet(np.ones(3), 9)}[target]
    w = rng.uniform(0.1, 2.0, 9) if weighted else None
    model = fnn.Sequential([fnn.layers.Dense(5, activation="tanh"), fnn.layers.Dense(3)], input_dim=4, seed=1,
                           device="reference", dtype="float64")
    check_model(model, loss, X, y, w)


@pytest.mark.parametrize("final, loss", [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"),
                                         ("softmax", "mse"), ("sigmoid", "mse")])
def test_final_probability_layer_gradients(final, loss):
    """Fused (softmax+CE, sigmoid+BCE) and unfused final activations give exact gradients."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((8, 4))
    y = rng.integers(0, 3, 8) if loss == "cross_entropy" else rng.uniform(0, 1, (8, 3))
    for layers in ([fnn.layers.Dense(5, activation="gelu"), fnn.layers.Dense(3, activation=final)],
                   [fnn.layers.Dense(5, activation="silu"), fnn.layers.Dense(3), fnn.layers.Activation(final)]):
        model = fnn.Sequential(layers, input_dim=4, seed=2, device="reference", dtype="float64")
        check_model(model, loss, X, y)


def test_deep_model_without_bias_and_frozen_layer():
    X, y = data(n=6, d=4)
    layers = [fnn.layers.Dense(5, activation="softplus", use_bias=False), fnn.layers.Dense(4, activation="elu"),
              fnn.layers.Dense(3, activation="leaky_relu", alpha=0.2), fnn.layers.Dense(3)]
    model = fnn.Sequential(layers, input_dim=4, seed=5, device="reference", dtype="float64")
    check_model(model, "cross_entropy", X, y)
    layers[0].trainable = False  # frozen: no gradient, the rest unchanged
    _, frozen = model_loss_and_grads(model, "cross_entropy", X, y)
    p0 = model.param_info[0]
    assert not frozen[p0.start:p0.stop].any()
    layers[0].trainable = True
    _, full = model_loss_and_grads(model, "cross_entropy", X, y)
    np.testing.assert_array_equal(frozen[p0.stop:], full[p0.stop:])


def test_penalty_gradient():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(50)
    w[np.abs(w) < 1e-3] = 0.5  # away from the kink of |w|
    g = np.zeros(50)
    REFERENCE.penalty(w, g, l1=0.3, l2=0.7)
    for i in range(50):
        e = np.zeros(50)
        e[i] = EPS
        num = (REFERENCE.penalty(w + e, None, l1=0.3, l2=0.7) - REFERENCE.penalty(w - e, None, l1=0.3, l2=0.7)) / (2 * EPS)
        np.testing.assert_allclose(g[i], num, rtol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "binary_cross_entropy"])
def test_backend_backward_matches_reference(backend, activation, loss):
    """The whole backward pass of each backend equals the reference's in float64."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((13, 6))
    y = rng.integers(0, 4, 13) if loss == "cross_entropy" else rng.uniform(0, 1, (13, 4))
    grads = []
    for b in (REFERENCE, backend):
        model = fnn.Sequential([fnn.layers.Dense(9, activation=activation), fnn.layers.Dense(7, activation="tanh"),
                                fnn.layers.Dense(4)], input_dim=6, seed=0, device=b, dtype="float64")
        grads.append(model_loss_and_grads(model, loss, X, y))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-12)
    np.testing.assert_allclose(grads[1][1], grads[0][1], rtol=1e-10, atol=1e-12)
