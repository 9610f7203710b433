"""BatchNorm: training vs evaluation semantics, running statistics against their closed-form
recurrence, what the optimizer and the penalties leave alone, freezing, batches of one row,
weights order and devices."""

import numpy as np
import pytest

import fastnn as fnn
from _helpers import DEVICES


def bn_first_model(device="reference", n_in=4, **bn):
    """BatchNorm on the inputs themselves, so that its input in every step is known."""
    return fnn.Sequential([fnn.layers.BatchNorm(**bn), fnn.layers.Dense(3)], input_dim=n_in, seed=0,
                          device=device, dtype="float64")


def data(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * [1.0, 3.0, 0.5, 2.0][:d] + [5.0, -2.0, 0.0, 1.0][:d], rng.integers(0, 3, n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [None, 8, 12])
def test_running_statistics_follow_the_closed_form_recurrence(device, batch_size):
    X, y = data()
    momentum = 0.3
    model = bn_first_model(device, momentum=momentum)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9, weight_decay=0.1),
                          batch_size=batch_size, shuffle=False, l2=0.01)
    trainer.fit(X, y, epochs=3, verbose=0)
    mean, var = np.zeros(4), np.ones(4)
    bs = batch_size or len(X)
    for start in list(range(0, len(X), bs)) * 3:  # 40 rows: no batch of one row to merge
        xb = X[start:start + bs]
        mean = (1 - momentum) * mean + momentum * xb.mean(axis=0)
        var = (1 - momentum) * var + momentum * xb.var(axis=0, ddof=1)
    _, _, running_mean, running_var = model.layers[0].weights
    np.testing.assert_allclose(running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, var, rtol=1e-12)
    if batch_size is None:  # k full-batch steps: running = (1 - (1 - m)^k) batch + (1 - m)^k initial
        decay = (1 - momentum) ** 3
        np.testing.assert_allclose(running_mean, (1 - decay) * X.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(running_var, decay + (1 - decay) * X.var(axis=0, ddof=1), rtol=1e-12)
    # the buffers' gradients were never written
    for p in model.param_info:
        if p.kind == "buffer":
            assert not model.grads[p.start:p.stop].any()


@pytest.mark.parametrize("device", DEVICES)
def test_training_uses_batch_statistics_and_evaluation_the_running_ones(device):
    X, y = data()
    model = bn_first_model(device, eps=1e-3)
    fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1), batch_size=16, seed=0).fit(X, y, epochs=2, verbose=0)
    bn = model.layers[0]
    gamma, beta, rm, rv = bn.weights
    assert not np.allclose(gamma, 1) and not np.allclose(beta, 0)  # trained
    before = bn.weights
    out = model.backend.to_numpy(bn.forward(model.backend.asarray(X), training=False))
    np.testing.assert_allclose(out, gamma * (X - rm) / np.sqrt(rv + 1e-3) + beta, rtol=1e-12)
    out = model.backend.to_numpy(bn.forward(model.backend.asarray(X), training=True))
    np.testing.assert_allclose(out, gamma * (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-3) + beta, rtol=1e-10)
    model.set_weights(before + model.get_weights()[4:])  # undo that training pass
    # predict, evaluate and validation do not move the running statistics
    trainer = fnn.Trainer(model, "cross_entropy")
    model.predict(X)
    trainer.evaluate(X, y)
    for a, b in zip(before, bn.weights):
        np.testing.assert_array_equal(a, b)
    predictions = model.predict(X)
    np.testing.assert_allclose(predictions, model.predict(X[:5]).tolist() + model.predict(X[5:]).tolist())


def test_batch_of_one_row_raises_a_clear_error():
    X, y = data(n=10)
    model = bn_first_model()
    with pytest.raises(ValueError, match=r"BatchNorm: a training batch needs at least 2 rows .* got 1\. "
                                         r"Use batch_size >= 2"):
        fnn.Trainer(model, "cross_entropy", batch_size=1).fit(X, y, verbose=0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fnn.Trainer(model, "cross_entropy", batch_size=None).fit(X[:1], y[:1], verbose=0)
    model.predict(X[:1])  # evaluation of one row is fine


@pytest.mark.parametrize("n, batch_size, frozen, steps, last", [
    (50, 7, False, 7, 8),    # 50 = 7 * 7 + 1: the row is merged into the last full batch
    (50, 7, True, 8, 1),     # a frozen BatchNorm uses running statistics: one row is fine
    (51, 7, False, 8, 2),
    (3, 2, False, 1, 3),
])
def test_a_last_batch_of_one_row_is_merged_into_the_previous_one(n, batch_size, frozen, steps, last):
    X, y = data(n=n)
    model = bn_first_model()
    model.layers[0].trainable = not frozen
    rows = []
    model.layers[1].forward = (lambda f: lambda x, training=False, **k: (rows.append(len(x)) if training else None)
                               or f(x, training, **k))(model.layers[1].forward)  # training batches only
    trainer = fnn.Trainer(model, "cross_entropy", batch_size=batch_size, seed=0)
    trainer.fit(X, y, epochs=1, verbose=0)
    assert trainer.optimizer.step_count == steps
    assert sum(rows) == n and rows[-1] == last


@pytest.mark.parametrize("device", DEVICES)
def test_frozen_batchnorm_uses_running_statistics_and_stays_bit_identical(device):
    X, y = data(n=64)
    model = fnn.Sequential([fnn.layers.Dense(6), fnn.layers.BatchNorm(), fnn.layers.Activation("relu"),
                            fnn.layers.Dense(3)], input_dim=4, seed=0, device=device)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.05, momentum=0.9), batch_size=16, seed=0)
    trainer.fit(X, y, epochs=2, verbose=0)
    bn = model.layers[1]
    bn.trainable = False
    frozen, first = bn.weights, model.layers[0].weights
    xb = model.backend.asarray(X[:16].astype(np.float32))
    h = model.layers[0].forward(xb)
    np.testing.assert_array_equal(model.backend.to_numpy(bn.forward(h, training=True)),
                                  model.backend.to_numpy(bn.forward(h, training=False)))
    trainer.fit(X, y, epochs=2, verbose=0)
    for a, b in zip(frozen, bn.weights):  # gamma, beta and the running statistics
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], model.layers[0].weights[0])  # gradients still flow through it
    bn.trainable = True
    trainer.fit(X, y, epochs=1, verbose=0)
    assert not np.array_equal(frozen[2], bn.weights[2])


def test_gamma_and_beta_get_no_weight_decay_nor_penalty():
    model = fnn.Sequential([fnn.layers.Dense(5), fnn.layers.BatchNorm(), fnn.layers.Dense(3)], input_dim=4,
                           seed=0, device="reference", dtype="float64")
    opt = fnn.optim.SGD(0.1, weight_decay=0.5)
    opt.bind(model)
    decayed = {(p.layer.__class__.__name__, p.name) for p in model.param_info for seg in opt.segments()
               if seg.start <= p.start < seg.stop and seg.weight_decay}
    assert decayed == {("Dense", "w")}
    covered = {p.name for p in model.param_info for seg in opt.segments() if seg.start <= p.start < seg.stop}
    assert covered == {"w", "b", "gamma", "beta"}  # the running statistics are in no segment
    trainer = fnn.Trainer(model, "mse", opt, l1=0.3, l2=0.7)
    w = [model.layers[0].params["w"], model.layers[2].params["w"]]
    assert trainer._penalty() == pytest.approx(sum(0.3 * np.abs(a).sum() + 0.7 * (a * a).sum() for a in w))


def test_weights_order_and_round_trip():
    model = fnn.Sequential([fnn.layers.Dense(3), fnn.layers.BatchNorm()], input_dim=2, seed=0, device="reference")
    gamma, beta, rm, rv = model.layers[1].weights
    np.testing.assert_array_equal(gamma, np.ones(3))
    np.testing.assert_array_equal(beta, np.zeros(3))
    np.testing.assert_array_equal(rm, np.zeros(3))
    np.testing.assert_array_equal(rv, np.ones(3))
    new = [w + i for i, w in enumerate(model.get_weights())]
    model.set_weights(new)
    for a, b in zip(new, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.layers[1].reset_parameters()
    np.testing.assert_array_equal(model.layers[1].weights[3], np.ones(3))
    assert model.n_params == 2 * 3 + 3 + 4 * 3
    assert "BatchNorm(momentum=0.1, eps=1e-05)" in model.summary(print_fn=None)


@pytest.mark.parametrize("bad, match", [({"momentum": 1.5}, r"momentum must be <= 1.0"),
                                        ({"momentum": -0.1}, r"momentum must be >= 0.0"),
                                        ({"eps": 0.0}, r"eps must be > 0.0")])
def test_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=rf"BatchNorm: {match}"):
        fnn.layers.BatchNorm(**bad)


def test_devices_agree_and_to_keeps_the_running_statistics():
    pytest.importorskip("fastnn._ext.batchnorm", reason="compiled CPU backend not built")
    X, y = data(n=48)
    weights = []
    for device in ("reference", "cpu"):
        model = fnn.Sequential([fnn.layers.Dense(8), fnn.layers.BatchNorm(momentum=0.2), fnn.layers.Activation("relu"),
                                fnn.layers.Dropout(0.3), fnn.layers.Dense(3)], input_dim=4, seed=1, device=device,
                               dtype="float64")
        fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.05, momentum=0.9), batch_size=10, seed=2).fit(
            X, y, epochs=3, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):  # same seeds: same masks on both devices
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    ref = model.predict(X)
    model.to("reference")
    np.testing.assert_allclose(model.predict(X), ref, rtol=1e-12)
    for a, b in zip(weights[1], model.get_weights()):
        np.testing.assert_array_equal(a, b)
