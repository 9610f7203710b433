"""The compiled Dense chain (CpuBackend.dense_chain, used by Sequential in training): the same
results as layer by layer and as the NumPy reference, and the cases where it must not be used."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.backends.base import Backend, _DenseChain

L = fnn.layers
cpu = pytest.importorskip("fastnn.backends.cpu", reason="the compiled CPU backend is not built")


def _no_chain(model):
    model._dense_chain = lambda rows, logits: None
    return model


def _train(device, dtype, acts, loss, chain=True, freeze_first=True, n=203):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 7))
    y = rng.integers(0, 3, n) if loss == "cross_entropy" else rng.standard_normal((n, 3))
    model = fnn.Sequential([L.Dense(9, activation=acts[0]), L.Dense(5, activation=acts[0], use_bias=False),
                            L.Dense(3, activation=acts[1])], input_dim=7, seed=1, device=device, dtype=dtype)
    if not chain:
        _no_chain(model)
    trainer = fnn.Trainer(model, loss, fnn.optim.Adam(lr=1e-2), batch_size=32, seed=0)
    model.layers[0].trainable = not freeze_first
    trainer.fit(X, y, epochs=2, verbose=0)
    model.layers[0].trainable = True  # the chain is rebuilt with layer 0's gradients and the dx below layer 1
    trainer.fit(X, y, epochs=2, verbose=0)
    return model


CASES = [(("relu", None), "cross_entropy"), (("gelu", "silu"), "mse"), (("tanh", "softmax"), "mse"),
         (("leaky_relu", "sigmoid"), "mse")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("acts,loss", CASES, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)))
def test_chain_trains_like_layer_by_layer_and_the_reference(dtype, acts, loss):
    chained = _train("cpu", dtype, acts, loss)
    assert any(entry is not None for entry in chained._chains.values())  # the chain really ran
    layered = _train("cpu", dtype, acts, loss, chain=False)
    reference = _train("reference", dtype, acts, loss)
    tight = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    loose = {"rtol": 2e-3, "atol": 2e-4} if dtype == "float32" else {"rtol": 1e-9, "atol": 1e-10}
    for a, b, c in zip(chained.get_weights(), layered.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, **tight)
        np.testing.assert_allclose(a, c, **loose)


def test_layer_backward_after_a_chained_forward_sees_that_forward():
    rng = np.random.default_rng(1)
    model = fnn.Sequential([L.Dense(6, activation="gelu"), L.Dense(2)], input_dim=4, seed=0, dtype="float64")
    twin = _no_chain(fnn.Sequential([L.Dense(6, activation="gelu"), L.Dense(2)], input_dim=4, seed=0,
                                    dtype="float64"))
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    for m in (model, twin):
        m.forward(x, training=True)
    assert model._chain is not None and twin._chain is None
    np.testing.assert_allclose(model.layers[1].backward(dy.copy()), twin.layers[1].backward(dy.copy()),
                               rtol=1e-12)
    np.testing.assert_allclose(model.grads, twin.grads, rtol=1e-12)


def test_the_chain_is_used_only_where_it_applies():
    x = np.ones((4, 3), np.float32)
    with_dropout = fnn.Sequential([L.Dense(5), L.Dropout(0.5), L.Dense(2)], input_dim=3, seed=0)
    with_dropout.forward(x, training=True)
    assert with_dropout._chain is None  # not every layer is a Dense
    reference = fnn.Sequential([L.Dense(2)], input_dim=3, seed=0, device="reference")
    assert isinstance(reference._dense_chain(4, False)[0], _DenseChain)  # the reference's loop
    frozen = fnn.Sequential([L.Dense(2)], input_dim=3, seed=0)
    frozen.layers[0].trainable = False
    assert frozen._dense_chain(4, False) is None  # nothing to train: no backward
    plain = fnn.Sequential([L.Dense(2)], input_dim=3, seed=0)
    plain.forward(x, training=False)
    assert plain._chain is None  # inference goes layer by layer
    with pytest.raises(TypeError, match="dense_forward: x is float64 but w is float32"):
        plain.forward(np.ones((4, 3)), training=True)  # refused by the chain: layer by layer says why
    assert plain._chain is None
    plain.forward(x, training=True)
    assert plain._chain is not None


def test_freezing_a_layer_drops_the_models_fused_chains():
    # issue 12: the model owns what tells it about freezing (no class-wide counter on Layer)
    import copy

    x = np.ones((4, 3), np.float32)
    model = fnn.Sequential([L.Dense(5, activation="relu"), L.Dense(2)], input_dim=3, seed=0)
    twin = copy.deepcopy(model)  # before any chain is compiled (compiled chains do not copy)
    model.forward(x, training=True)
    assert model._chains and model._chain is not None
    other = fnn.Sequential([L.Dense(2)], input_dim=3, seed=0)
    other.forward(x, training=True)
    model.layers[0].trainable = False
    assert not model._chains and other._chains  # only the layer's own model forgets
    twin.forward(x, training=True)
    twin.layers[1].trainable = False
    assert not twin._chains
    model.forward(x, training=True)
    steps = model._dense_chain(4, False)[1]
    assert steps[0][6] is None and steps[0][8] is None and steps[1][8] is None  # frozen: no dw, no dx below
    popped = model.pop()
    assert popped.on_trainable_change is None


def test_a_layer_joins_a_fused_stack_only_through_its_protocol():
    class Logged(L.Dense):
        def forward(self, x, training=False, skip_activation=False):
            return super().forward(x, training, skip_activation)

    model = fnn.Sequential([L.Dense(4), Logged(2)], input_dim=3, seed=0)
    assert model.layers[1].fused_dense_step(4) is None  # a replaced forward would be bypassed
    assert model._dense_chain(4, False) is None
    assert L.Activation("relu").fused_dense_step(4) is None


def _stack(rng, dtype, rows, widths, acts, first):
    """dense_chain steps for widths[0] -> ... -> widths[-1], with fresh outputs."""
    steps = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        w, b = rng.standard_normal((n_in, n_out)).astype(dtype), rng.standard_normal(n_out).astype(dtype)
        z = np.zeros((rows, n_out), dtype) if acts[i] in ("gelu", "silu") else None
        train = i >= first
        steps.append((w, b if i != 1 else None, acts[i], 0.1, z, np.zeros((rows, n_out), dtype),
                      np.zeros_like(w) if train else None, np.zeros_like(b) if train and i != 1 else None,
                      np.zeros((rows, n_in), dtype) if i > first else None))
    return steps


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_chain_matches_the_reference_loop(dtype, first):
    rng = np.random.default_rng(2)
    rows, widths, acts = 6, (5, 7, 4, 3), ("gelu", "leaky_relu", "identity")
    x, dy = rng.standard_normal((rows, 5)).astype(dtype), rng.standard_normal((rows, 3)).astype(dtype)
    got, want = _stack(np.random.default_rng(3), dtype, rows, widths, acts, first), \
        _stack(np.random.default_rng(3), dtype, rows, widths, acts, first)
    compiled = cpu.CpuBackend().dense_chain(got, first)
    assert isinstance(compiled, cpu._ChainCalls)
    reference = Backend().dense_chain(want, first)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(compiled.forward(x), reference.forward(x), **tol)
    compiled.backward(dy.copy())
    reference.backward(dy.copy())
    for g, w in zip(got, want):
        for a, b in zip(g[4:], w[4:]):  # z, y, dw, db, dx
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a, b, **tol)


def test_dense_chain_falls_back_where_it_cannot_run():
    be = cpu.CpuBackend()
    w, b, y = np.ones((3, 2), np.float32), np.ones(2, np.float32), np.ones((4, 2), np.float32)
    good = [(w, b, "relu", 0.0, None, y, np.ones_like(w), np.ones_like(b), None)]
    assert isinstance(be.dense_chain(good, 0), cpu._ChainCalls)
    assert isinstance(cpu.CpuBackend(blas="numpy").dense_chain(good, 0), _DenseChain)
    bad = [
        [(w.astype(np.float64), b, "relu", 0.0, None, y, None, None, None)],        # mixed dtypes
        [(np.ones((2, 3), np.float32).T, b, "relu", 0.0, None, y, None, None, None)],  # not C-contiguous
        [(w, b, "relu", 0.0, None, np.ones((4, 3), np.float32), None, None, None)],  # y's width
        [(w, b, "gelu", 0.0, None, y, None, None, None)],                           # gelu without z
        [(w, b, "relu", 0.0, None, y, None, None, np.ones((4, 3), np.float32))],    # dx on the first layer
        [(w, b, "swish", 0.0, None, y, None, None, None)],                          # unknown activation
    ]
    for steps in bad:
        assert isinstance(be.dense_chain(steps, 0), _DenseChain)  # the loop, whose kernels explain
    calls = be.dense_chain(good, 0)
    with pytest.raises(ValueError, match="Chain.forward"):
        calls.forward(np.ones((5, 3), np.float32))
    with pytest.raises(ValueError, match="Chain.backward"):
        calls.backward(np.ones((4, 2), np.float32))  # no forward yet
    with pytest.raises(ValueError, match="Chain.backward: no forward ran"):
        Backend().dense_chain(good, 0).backward(np.ones((4, 2), np.float32))
