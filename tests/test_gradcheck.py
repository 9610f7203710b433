"""Float64 central-difference gradient checks of every layer, activation and loss through a
whole model, on the reference; and each backend's backward against the reference."""

import numpy as np
import pytest

import fastnn as fnn
from _helpers import classification_data as data
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
    out = model.forward(backend.asarray(X), training=True, logits=fused)
    count = trainer.loss.count(len(X), model.n_out)
    trainer.loss(backend, out, backend.asarray(y), weight=None if weight is None else backend.asarray(weight),
                 scale=1.0 / count, loss_out=acc, grad=grad)
    backend.fill(model.grads, 0.0)
    model.backward(grad)
    return float(backend.to_numpy(acc)[0]) / count, backend.to_numpy(model.grads).copy()


def numeric_grads(model, loss, X, y, weight=None, max_checks=60, seed=0, only_trainable=False):
    """Central differences on (a random subset of) the flat parameters (those the optimizer
    updates when ``only_trainable``)."""
    params = model.params
    live = np.concatenate([np.arange(p.start, p.stop) for p in model.param_info
                           if p.trainable or not only_trainable])
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


def check_model(model, loss, X, y, weight=None, rtol=1e-6, atol=1e-8, only_trainable=False):
    _, analytic = model_loss_and_grads(model, loss, X, y, weight)
    for i, g in numeric_grads(model, loss, X, y, weight, only_trainable=only_trainable).items():
        np.testing.assert_allclose(analytic[i], g, rtol=rtol, atol=atol, err_msg=f"parameter {i}")


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
        up, down = (REFERENCE.penalty(w + s * e, None, l1=0.3, l2=0.7) for s in (1, -1))
        num = (up - down) / (2 * EPS)
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


# ------------------------------------------------------------- BatchNorm, Dropout, penalties
@pytest.mark.parametrize("momentum", [0.1, 1.0])
def test_batchnorm_layer_alone_gradients(momentum):
    """gamma, beta and dL/dx of a lone BatchNorm in training mode (batch statistics)."""
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((9, 4)) * 2 + 1, rng.standard_normal((9, 4))
    model = fnn.Sequential([fnn.layers.BatchNorm(momentum=momentum, eps=1e-3)], input_dim=4,
                           device="reference", dtype="float64")
    model.set_weights([rng.uniform(0.5, 2, 4), rng.standard_normal(4), np.zeros(4), np.ones(4)])
    check_model(model, "mse", X, Y)
    # dL/dx: the layer's backward against central differences on the inputs
    loss = lambda x: model_loss_and_grads(model, "mse", x, Y)[0]  # noqa: E731
    acc, grad = np.zeros(1), np.empty((9, 4))
    out = model.forward(X, training=True)
    fnn.losses.MSE()(model.backend, out, Y, scale=1.0 / Y.size, loss_out=acc, grad=grad)
    dx = model.layers[0].backward(grad)
    for i, j in [(0, 0), (3, 1), (8, 3), (5, 2)]:
        e = np.zeros_like(X)
        e[i, j] = EPS
        np.testing.assert_allclose(dx[i, j], (loss(X + e) - loss(X - e)) / (2 * EPS), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_batchnorm_model_gradients(loss):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((10, 5))
    y = rng.integers(0, 3, 10) if loss == "cross_entropy" else rng.standard_normal((10, 3))
    model = fnn.Sequential([fnn.layers.Dense(6), fnn.layers.BatchNorm(), fnn.layers.Activation("tanh"),
                            fnn.layers.Dense(4, activation="sigmoid"), fnn.layers.BatchNorm(eps=1e-2),
                            fnn.layers.Dense(3)], input_dim=5, seed=4, device="reference", dtype="float64")
    check_model(model, loss, X, y)  # the running statistics too: the loss does not depend on them
    # a frozen BatchNorm normalizes with constants: still exact, and its parameters get no gradient
    model.layers[1].trainable = False
    check_model(model, loss, X, y, only_trainable=True)
    _, grads = model_loss_and_grads(model, loss, X, y)
    bn = [p for p in model.param_info if p.layer is model.layers[1]]
    assert not any(grads[p.start:p.stop].any() for p in bn)


def test_dropout_model_gradients():
    """With the mask held fixed (the step reset before each forward), the gradient is exact."""
    X, y = data(n=8)
    model = fnn.Sequential([fnn.layers.Dense(12, activation="relu"), fnn.layers.Dropout(0.4), fnn.layers.Dense(3)],
                           input_dim=5, seed=2, device="reference", dtype="float64")
    dropout = model.layers[1]
    forward = dropout.forward

    def fixed_mask_forward(x, training=False, skip_activation=False):
        dropout.step = 7
        return forward(x, training, skip_activation)

    dropout.forward = fixed_mask_forward
    check_model(model, "cross_entropy", X, y)


@pytest.mark.parametrize("l1, l2", [(0.05, 0.0), (0.0, 0.2), (0.05, 0.2)], ids=["l1", "l2", "elastic-net"])
def test_penalty_gradients_through_a_trainer_step(l1, l2):
    """The gradient one Trainer step applies (SGD, lr 1, full batch) is the derivative of the
    objective it reports, loss + l1 sum|w| + l2 sum w^2 over the weights only."""
    X, y = data(n=9)
    model = fnn.Sequential([fnn.layers.Dense(6, activation="tanh"), fnn.layers.BatchNorm(),
                            fnn.layers.Dense(3, use_bias=False)], input_dim=5, seed=3, device="reference",
                           dtype="float64")
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(lr=1.0), batch_size=None, l1=l1, l2=l2)

    def objective():
        return model_loss_and_grads(model, "cross_entropy", X, y)[0] + trainer._penalty()

    before = model.params.copy()
    reported = objective()
    model.params[:] = before
    history = trainer.fit(X, y, epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(reported, rel=1e-12)
    applied = before - model.params  # lr 1: the gradient
    model.params[:] = before
    for p in model.param_info:
        if p.kind == "buffer":  # the running statistics moved by their own rule
            continue
        for i in range(p.start, p.stop, max(1, (p.stop - p.start) // 7)):
            old = model.params[i]
            model.params[i] = old + EPS
            up = objective()
            model.params[i] = old - EPS
            down = objective()
            model.params[i] = old
            np.testing.assert_allclose(applied[i], (up - down) / (2 * EPS), rtol=1e-6, atol=1e-9,
                                       err_msg=f"{p.name} of {p.layer!r}")


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_backend_backward_with_batchnorm_and_dropout_matches_reference(backend, loss):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((13, 6))
    y = rng.integers(0, 4, 13) if loss == "cross_entropy" else rng.uniform(0, 1, (13, 4))
    grads = []
    for b in (REFERENCE, backend):
        model = fnn.Sequential([fnn.layers.Dense(9), fnn.layers.BatchNorm(), fnn.layers.Activation("relu"),
                                fnn.layers.Dropout(0.3), fnn.layers.Dense(4)], input_dim=6, seed=0, device=b,
                               dtype="float64")
        grads.append(model_loss_and_grads(model, loss, X, y))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-12)
    np.testing.assert_allclose(grads[1][1], grads[0][1], rtol=1e-10, atol=1e-12)
