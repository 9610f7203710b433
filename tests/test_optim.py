"""Optimizers: the fused update equals the published rule step by step, state included;
per-layer options, frozen layers, weight decay on weights only."""

import numpy as np
import pytest

import fastnn as fnn

SGD_CASES = [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.5),
    dict(momentum=0.8, nesterov=True),
    dict(momentum=0.9, weight_decay=0.1),
    dict(momentum=0.9, nesterov=True, weight_decay=0.05),
    dict(weight_decay=0.3),
]


def sgd_rule(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD's documented algorithm, written out independently."""
    buf = None
    trajectory = []
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        trajectory.append((p.copy(), None if buf is None else buf.copy()))
    return trajectory


@pytest.mark.parametrize("kwargs", SGD_CASES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_sgd_matches_the_published_rule_step_by_step(backend, kwargs, dtype, tol):
    rng = np.random.default_rng(0)
    model = fnn.Sequential([fnn.layers.Dense(7, use_bias=False)], input_dim=5, seed=0, device=backend, dtype=dtype)
    opt = fnn.optim.SGD(lr=0.05, **kwargs)
    opt.bind(model)
    p0 = model.get_weights()[0].astype(np.float64)
    grads = [rng.standard_normal((5, 7)) for _ in range(20)]
    expected = sgd_rule(p0, grads, 0.05, **kwargs)
    for g, (p_exp, buf_exp) in zip(grads, expected):
        model.layers[0].grads["w"][...] = backend.asarray(g.astype(dtype))
        opt.step()
        np.testing.assert_allclose(model.get_weights()[0], p_exp, rtol=tol, atol=tol)
        if buf_exp is not None:
            buf = backend.to_numpy(opt.state_dict()["state"]["momentum_buffer"])[:35].reshape(5, 7)
            np.testing.assert_allclose(buf, buf_exp, rtol=tol, atol=tol)
    assert opt.step_count == 20


def test_sgd_matches_pytorch_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    for kwargs in SGD_CASES:
        w = rng.standard_normal((4, 3))
        model = fnn.Sequential([fnn.layers.Dense(3, use_bias=False)], input_dim=4, device="reference",
                               dtype="float64")
        model.set_weights([w])
        opt = fnn.optim.SGD(lr=0.1, **kwargs)
        opt.bind(model)
        tw = torch.tensor(w, requires_grad=True)
        topt = torch.optim.SGD([tw], lr=0.1, **kwargs)
        for _ in range(10):
            g = rng.standard_normal((4, 3))
            model.layers[0].grads["w"][...] = g
            opt.step()
            tw.grad = torch.tensor(g)
            topt.step()
        np.testing.assert_allclose(model.get_weights()[0], tw.detach().numpy(), rtol=1e-12)


def test_weight_decay_skips_biases_and_layer_options_apply():
    model = fnn.Sequential([fnn.layers.Dense(2), fnn.layers.Dense(2)], input_dim=2, seed=0, device="reference",
                           dtype="float64")
    w0 = model.get_weights()
    opt = fnn.optim.SGD(lr=0.1, weight_decay=0.5)
    opt.set_layer_options(model.layers[1], lr=0.1)  # the head learns 10 times slower
    opt.bind(model)
    model.grads[:] = 0.0
    opt.step()  # zero gradients: only the decay moves the weights
    w1 = model.get_weights()
    np.testing.assert_allclose(w1[0], w0[0] * (1 - 0.1 * 0.5))
    np.testing.assert_array_equal(w1[1], w0[1])  # bias: no decay
    np.testing.assert_allclose(w1[2], w0[2] * (1 - 0.01 * 0.5))
    opt.set_layer_options(model.layers[0], weight_decay=0.0)
    opt.step()
    np.testing.assert_array_equal(model.get_weights()[0], w1[0])


def test_frozen_layer_is_skipped_and_segments_do_not_span_it():
    model = fnn.Sequential([fnn.layers.Dense(3), fnn.layers.Dense(3), fnn.layers.Dense(3)], input_dim=3, seed=0,
                           device="reference")
    model.layers[1].trainable = False
    opt = fnn.optim.SGD(lr=1.0)
    opt.bind(model)
    segments = opt.segments()
    frozen = [p for p in model.param_info if p.layer is model.layers[1]]
    for seg in segments:
        for p in frozen:
            assert seg.stop <= p.start or seg.start >= p.stop
    before = model.layers[1].weights
    model.grads[:] = 1.0
    opt.step()
    for a, b in zip(before, model.layers[1].weights):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.layers[0].weights[0], before[0])


def test_state_dict_round_trip():
    model = fnn.Sequential([fnn.layers.Dense(3)], input_dim=2, seed=0, device="reference")
    opt = fnn.optim.SGD(lr=0.1, momentum=0.9)
    opt.bind(model)
    model.grads[:] = 0.5
    opt.step()
    state = opt.state_dict()
    opt2 = fnn.optim.SGD(lr=0.1, momentum=0.9)
    opt2.bind(model)
    opt2.load_state_dict(state)
    assert opt2.step_count == 1
    np.testing.assert_array_equal(opt2.state["momentum_buffer"], opt.state["momentum_buffer"])


def test_optimizer_rebinds_after_the_model_changes():
    X, y = fnn.datasets.make_moons(n=40, seed=0)
    model = fnn.Sequential([fnn.layers.Dense(4, activation="relu"), fnn.layers.Dense(2)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9), batch_size=8)
    trainer.fit(X, y, epochs=1, verbose=0)
    model.pop()
    model.add(fnn.layers.Dense(2))  # a new head: new flat buffers
    trainer.fit(X, y, epochs=1, verbose=0)
    assert trainer.optimizer.state["momentum_buffer"].shape == model.params.shape
