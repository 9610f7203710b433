"""Sequential and layers: flat buffers, building, add/pop, weights, devices, initialization; Dense
and the init gains against torch (recorded in tests/golden)."""

import functools
import importlib.util
import os
import pathlib

import numpy as np
import pytest

import fastnn as fnn
from _helpers import DEVICES, assert_close
from fastnn.backends.base import ACTIVATIONS, DEFAULT_ALPHA
from fastnn.initializers import INITS, default_init, gain


def mlp(device="reference", **kw):
    return fnn.Sequential([fnn.layers.Dense(5, activation="relu"), fnn.layers.Dense(3)], input_dim=4, seed=0,
                          device=device, **kw)


def test_parameters_are_views_of_one_flat_buffer():
    model = mlp()
    assert model.n_params == 4 * 5 + 5 + 5 * 3 + 3
    for layer in model.layers:
        for name, view in layer.params.items():
            assert np.shares_memory(view, model.params)
            assert np.shares_memory(layer.grads[name], model.grads)
            assert view.flags.c_contiguous
    starts = [p.start for p in model.param_info]
    assert all(s % 16 == 0 for s in starts)  # 64-byte aligned in float32
    model.params[:] = 0  # writing the buffer writes every layer
    assert not model.get_weights()[0].any()


def test_lazy_input_dim_and_summary(capsys):
    model = fnn.Sequential([fnn.layers.Dense(7, activation="tanh"), fnn.layers.Dense(2)], seed=0)
    assert not model.built and model.n_params == 0
    out = model.predict(np.ones((3, 6)))
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert model.input_dim == 6 and model.n_params == 6 * 7 + 7 + 7 * 2 + 2
    text = model.summary()
    assert "Dense(units=7, activation='tanh'" in capsys.readouterr().out
    assert "Total params: 65" in text


def test_add_and_pop_keep_the_other_weights():
    model = mlp()
    first = model.layers[0].weights
    head = model.pop()
    assert isinstance(head, fnn.layers.Dense) and len(model.layers) == 1
    np.testing.assert_array_equal(model.layers[0].weights[0], first[0])
    model.add(fnn.layers.Dense(6, activation="softmax"))
    assert model.n_out == 6
    np.testing.assert_array_equal(model.layers[0].weights[0], first[0])
    assert model.predict(np.ones((2, 4))).sum(axis=1) == pytest.approx([1, 1], rel=1e-5)


def test_get_set_weights_round_trip_and_checks():
    model = mlp()
    weights = [w + 1 for w in model.get_weights()]
    model.set_weights(weights)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expected 4 arrays; got 3"):
        model.set_weights(weights[:3])
    with pytest.raises(ValueError, match=r"w must have shape \(4, 5\); got \(5, 4\)"):
        model.set_weights([weights[0].T] + weights[1:])


def test_reset_parameters_is_reproducible():
    model = mlp()
    model.reset_parameters(seed=3)
    a = model.get_weights()
    model.reset_parameters(seed=3)
    for x, y in zip(a, model.get_weights()):
        np.testing.assert_array_equal(x, y)
    model.layers[1].reset_parameters(seed=4)
    np.testing.assert_array_equal(model.layers[0].weights[0], a[0])
    assert not np.array_equal(model.layers[1].weights[0], a[2])


def test_same_seed_same_model_different_seed_different_model():
    a, b = mlp().get_weights(), mlp().get_weights()
    c = fnn.Sequential([fnn.layers.Dense(5, activation="relu"), fnn.layers.Dense(3)], input_dim=4, seed=1,
                       device="reference").get_weights()
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_to_device_keeps_weights_and_predictions():
    pytest.importorskip("fastnn._ext.dense", reason="compiled CPU backend not built")
    model = mlp(dtype="float64")
    X = np.random.default_rng(0).standard_normal((5, 4))
    ref = model.predict(X)
    model.to("cpu")
    assert model.device == "cpu"
    np.testing.assert_allclose(model.predict(X), ref, rtol=1e-12)


def test_trainable_flag_and_dtype():
    model = mlp(dtype="float64")
    assert model.params.dtype == np.float64
    assert model.predict(np.ones((1, 4), np.float32)).dtype == np.float64
    model.layers[0].trainable = False
    assert "no" in model.summary(print_fn=None)


def test_default_init_by_activation():
    assert default_init("relu") == "he_normal" and default_init("leaky_relu") == "he_normal"
    assert default_init("tanh") == "xavier_uniform" and default_init("identity") == "xavier_uniform"
    assert fnn.layers.Dense(3, activation="elu").init == "he_normal"


@pytest.mark.parametrize("init", INITS)
def test_init_statistics(init):
    n_in, n_out = 400, 300
    model = fnn.Sequential([fnn.layers.Dense(n_out, activation="relu", init=init)], input_dim=n_in, seed=0,
                           device="reference", dtype="float64")
    w = model.get_weights()[0]
    assert not model.get_weights()[1].any()
    expected_std = {
        "zeros": 0.0, "normal": 0.01, "uniform": 0.05 / np.sqrt(3),
        "xavier_uniform": np.sqrt(2 / (n_in + n_out)), "xavier_normal": np.sqrt(2 / (n_in + n_out)),
        "he_uniform": gain("relu") / np.sqrt(n_in), "he_normal": gain("relu") / np.sqrt(n_in),
        "lecun_normal": 1 / np.sqrt(n_in), "orthogonal": gain("relu") / np.sqrt(n_in),
    }[init]
    assert w.std() == pytest.approx(expected_std, rel=0.03, abs=1e-12)
    if init == "orthogonal":  # columns orthonormal up to the gain
        np.testing.assert_allclose(w.T @ w / gain("relu") ** 2, np.eye(n_out), atol=1e-10)


def test_callable_init():
    model = fnn.Sequential([fnn.layers.Dense(2, init=lambda shape, rng: np.full(shape, 0.25))], input_dim=3,
                           device="reference")
    np.testing.assert_array_equal(model.get_weights()[0], np.full((3, 2), 0.25, np.float32))
    with pytest.raises(ValueError, match="init callable must return finite values of shape"):
        fnn.Sequential([fnn.layers.Dense(2, init=lambda shape, rng: np.ones(3))], input_dim=3)


def test_activation_layer_alpha_and_repr():
    layer = fnn.layers.Activation("leaky_relu", alpha=0.2)
    model = fnn.Sequential([layer], input_dim=2, device="reference", dtype="float64")
    np.testing.assert_allclose(model.predict([[-1.0, 3.0]]), [[-0.2, 3.0]])
    assert repr(layer) == "Activation(name='leaky_relu', alpha=0.2)"


def test_predict_in_chunks_equals_one_pass():
    model = mlp()
    X = np.random.default_rng(0).standard_normal((37, 4))
    np.testing.assert_allclose(model.predict(X, batch_size=5), model.predict(X), rtol=1e-6)


# Gains written out (PyTorch's torch.nn.init.calculate_gain; ELU, which PyTorch does not define,
# gets ReLU's sqrt(2)), so that the test does not use fastnn's own gain table.
GAINS = {"identity": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": np.sqrt(2), "leaky_relu": np.sqrt(2 / (1 + 0.2**2)),
         "elu": np.sqrt(2), "gelu": 1.0, "softplus": 1.0, "silu": 1.0, "softmax": 1.0}


def expected_std(init, activation, n_in, n_out):
    # an explicit name is its paper's formula: Glorot's without a gain, He's with sqrt(2) (with the
    # leaky slope a: sqrt(2 / (1 + a^2))) whatever the activation (issue 17 finding 8)
    g = GAINS[activation]
    he = GAINS["leaky_relu"] if activation == "leaky_relu" else np.sqrt(2)
    return {
        "zeros": 0.0, "normal": 0.01, "uniform": 0.05 / np.sqrt(3),
        "xavier_uniform": np.sqrt(2 / (n_in + n_out)), "xavier_normal": np.sqrt(2 / (n_in + n_out)),
        "he_uniform": he / np.sqrt(n_in), "he_normal": he / np.sqrt(n_in), "lecun_normal": 1 / np.sqrt(n_in),
        "orthogonal": g / np.sqrt(max(n_in, n_out)),  # orthonormal columns (or rows), times the gain
    }[init]


@pytest.mark.parametrize("shape", [(400, 200), (200, 400)], ids=str)
@pytest.mark.parametrize("activation", list(GAINS))
@pytest.mark.parametrize("init", INITS)
def test_init_std_follows_its_formula_for_every_activation(init, activation, shape):
    n_in, n_out = shape
    alpha = 0.2 if activation == "leaky_relu" else None
    model = fnn.Sequential([fnn.layers.Dense(n_out, activation=activation, init=init, alpha=alpha)], input_dim=n_in,
                           seed=1, device="reference", dtype="float64")
    w = model.get_weights()[0]
    std = expected_std(init, activation, n_in, n_out)
    assert w.std() == pytest.approx(std, rel=0.03, abs=1e-12)
    assert abs(w.mean()) <= 5 * std / np.sqrt(w.size) + 1e-12
    if init.endswith("uniform"):  # U(-limit, limit), limit = sqrt(3) std
        limit = np.sqrt(3) * std
        assert limit * 0.99 < np.abs(w).max() <= limit


# ------------------------------------------------------------------ against torch
# tests/golden/layers_torch.npz holds torch's values (tests/golden/record_torch.py records them), so that
# these comparisons run without torch; where torch is installed, the gains are also checked live.
GOLDEN_LAYERS = pathlib.Path(__file__).parent / "golden" / "layers_torch.npz"
#: devices of the layer comparisons; in the CUDA run (NUMBA_ENABLE_CUDASIM set, as for tests/cuda) cuda too
TORCH_DEVICES = DEVICES + (["cuda"] if "NUMBA_ENABLE_CUDASIM" in os.environ and importlib.util.find_spec("numba")
                           else [])
#: fastnn activation, its alpha, torch.nn.init.calculate_gain's name and parameter
TORCH_GAINS = [("identity", 0.0, "linear", None), ("sigmoid", 0.0, "sigmoid", None), ("tanh", 0.0, "tanh", None),
               ("relu", 0.0, "relu", None), ("leaky_relu", 0.01, "leaky_relu", 0.01),
               ("leaky_relu", 0.2, "leaky_relu", 0.2)]


@functools.cache
def _golden_layers():
    with np.load(GOLDEN_LAYERS) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("activation, alpha, name, param", TORCH_GAINS, ids=[f"{g[0]}-{g[1]}" for g in TORCH_GAINS])
def test_gains_match_torch_calculate_gain(activation, alpha, name, param):
    want = float(_golden_layers()[f"gain.{activation}.{alpha}"])
    assert gain(activation, alpha) == pytest.approx(want, rel=1e-12)


def test_gains_match_the_installed_torch_calculate_gain():
    torch = pytest.importorskip("torch")
    for activation, alpha, name, param in TORCH_GAINS:
        assert gain(activation, alpha) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-12)


def test_he_normal_matches_torch_kaiming_normal():
    """Same fan-in rule: the std of fastnn's he_normal draw is within 3% of torch's kaiming_normal_
    draw (recorded) for a (600 in, 300 out) kernel; torch's Linear weight is (out, in)."""
    n_out, n_in = (int(v) for v in _golden_layers()["kaiming_normal.shape"])
    model = fnn.Sequential([fnn.layers.Dense(n_out, activation="relu", init="he_normal")], input_dim=n_in, seed=0,
                           device="reference", dtype="float64")
    assert model.get_weights()[0].std() == pytest.approx(float(_golden_layers()["kaiming_normal.std"]), rel=0.03)


@pytest.mark.parametrize("dtype, factor", [("float64", 1.0), ("float32", 10.0)])
@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_matches_torch_forward_and_backward(activation, device, dtype, factor):
    """Dense(activation) = torch.nn.functional's activation of x @ w + b (recorded, float64):
    the output and, for an upstream gradient dy, autograd's dx, dw and db."""
    data = _golden_layers()
    x, w, b, dy = (data[f"dense.{k}"] for k in ("x", "w", "b", "dy"))
    alpha = float(data[f"dense.{activation}.alpha"])
    layer = fnn.layers.Dense(w.shape[1], activation=activation, alpha=alpha if activation in DEFAULT_ALPHA else None)
    model = fnn.Sequential([layer], input_dim=w.shape[0], seed=0, device=device, dtype=dtype)
    model.set_weights([w, b])
    be = layer.backend
    y = be.to_numpy(layer.forward(be.asarray(x.astype(dtype)), training=True)).copy()
    model.grads[...] = 0.0
    dx = be.to_numpy(layer.backward(be.asarray(dy.astype(dtype))))  # the layer may overwrite dy
    got = {"y": y, "dx": dx, "dw": be.to_numpy(layer.grads["w"]), "db": be.to_numpy(layer.grads["b"])}
    for name, value in got.items():
        want = data[f"dense.{activation}.{name}"]
        assert value.dtype == np.dtype(dtype), name
        try:
            assert_close(value, want, dtype, factor)
        except AssertionError as e:
            raise AssertionError(f"Dense({activation!r}) {name} on {device}, {dtype}") from e


@pytest.mark.parametrize("dtype, factor", [("float64", 1.0), ("float32", 10.0)])
@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_batchnorm_matches_torch_batchnorm1d(device, dtype, factor):
    """BatchNorm = torch.nn.BatchNorm1d (recorded, float64) over training steps: the output,
    dx, dgamma, dbeta and the running statistics (PyTorch's momentum and unbiased running
    variance); then, frozen, the evaluation output and dx (normalized by the running statistics)."""
    data = _golden_layers()
    g = {k[len("batchnorm."):]: v for k, v in data.items() if k.startswith("batchnorm.")}
    n_features = g["gamma"].size
    layer = fnn.layers.BatchNorm(momentum=float(g["momentum"]), eps=float(g["eps"]))
    model = fnn.Sequential([layer], input_dim=n_features, seed=0, device=device, dtype=dtype)
    model.set_weights([g["gamma"], g["beta"], np.zeros(n_features), np.ones(n_features)])
    be = layer.backend
    steps = len(g["x"]) - 1
    for t in range(steps + 1):
        if t == steps:  # the last step evaluates: torch's eval(), fastnn's frozen layer
            layer.trainable = False
            y_eval = be.to_numpy(layer.forward(be.asarray(g["x"][t].astype(dtype)), training=False)).copy()
            assert_close(y_eval, g["y"][t], dtype, factor)
        model.grads[...] = 0.0
        y = be.to_numpy(layer.forward(be.asarray(g["x"][t].astype(dtype)), training=True)).copy()
        dx = be.to_numpy(layer.backward(be.asarray(g["dy"][t].astype(dtype))))  # may overwrite dy
        got = {"y": y, "dx": dx, "running_mean": be.to_numpy(layer.params["running_mean"]),
               "running_var": be.to_numpy(layer.params["running_var"])}
        if t < steps:
            got.update(dgamma=be.to_numpy(layer.grads["gamma"]), dbeta=be.to_numpy(layer.grads["beta"]))
        for name, value in got.items():
            try:
                assert_close(value, g[name][t], dtype, factor)
            except AssertionError as e:
                raise AssertionError(f"BatchNorm {name} at step {t + 1} on {device}, {dtype}") from e


@pytest.mark.parametrize("activation", [None, "sigmoid", "tanh", "relu", "elu"])
@pytest.mark.parametrize("init", ["he_normal", "he_uniform"])
def test_explicit_he_init_is_hes_formula_whatever_the_activation(activation, init):
    # init="he_normal" on a Dense without its own activation (followed by
    # BatchNorm and a ReLU) drew with gain 1; He's formula (Keras, PyTorch) is sqrt(2 / fan_in).
    n_in, n_out = 500, 400
    model = fnn.Sequential([fnn.layers.Dense(n_out, activation=activation, init=init)], input_dim=n_in, seed=1,
                           device="reference", dtype="float64")
    assert model.get_weights()[0].std() == pytest.approx(np.sqrt(2 / n_in), rel=0.02)


def test_explicit_he_init_with_leaky_relu_uses_the_slope():
    n_in, n_out, alpha = 500, 400, 0.3
    model = fnn.Sequential([fnn.layers.Dense(n_out, activation="leaky_relu", alpha=alpha, init="he_normal")],
                           input_dim=n_in, seed=1, device="reference", dtype="float64")
    assert model.get_weights()[0].std() == pytest.approx(np.sqrt(2 / ((1 + alpha ** 2) * n_in)), rel=0.02)


@pytest.mark.parametrize("init", ["xavier_normal", "xavier_uniform"])
def test_explicit_xavier_init_is_glorots_formula_on_tanh(init):
    n_in, n_out = 500, 400
    explicit = fnn.Sequential([fnn.layers.Dense(n_out, activation="tanh", init=init)], input_dim=n_in, seed=1,
                              device="reference", dtype="float64")
    assert explicit.get_weights()[0].std() == pytest.approx(np.sqrt(2 / (n_in + n_out)), rel=0.02)
    default = fnn.Sequential([fnn.layers.Dense(n_out, activation="tanh")], input_dim=n_in, seed=1,
                             device="reference", dtype="float64")  # the default keeps tanh's gain
    assert default.get_weights()[0].std() == pytest.approx(5 / 3 * np.sqrt(2 / (n_in + n_out)), rel=0.02)
    assert "init" not in default.layers[0].get_config() and explicit.layers[0].get_config()["init"] == init


def test_sequential_forward_backward_and_build_are_public():
    # issue 12: the Trainer, io and callbacks drive the model through these, not _forward/_build
    rng = np.random.default_rng(0)
    model = fnn.Sequential([fnn.layers.Dense(5, activation="tanh"), fnn.layers.Dense(2)], seed=0,
                           device="reference", dtype="float64")
    assert model.build(3) is model and model.built and model.input_dim == 3
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    y = model.forward(x, training=True)
    np.testing.assert_allclose(y, model.predict(x), rtol=1e-15)
    model.backward(dy.copy())
    w0, b0, w1, _ = model.get_weights()
    h = np.tanh(x @ w0 + b0)
    np.testing.assert_allclose(model.layers[1].grads["w"], h.T @ dy, rtol=1e-12)
    dh = (dy @ w1.T) * (1 - h**2)
    np.testing.assert_allclose(model.layers[0].grads["w"], x.T @ dh, rtol=1e-12)
    with pytest.raises(ValueError, match=r"^Sequential.build: input_dim must be"):
        model.build(0)
    with pytest.raises(ValueError, match="Sequential.build: the model has no layers"):
        fnn.Sequential().build(3)
    with pytest.raises(ValueError, match="fit: X has 4 features; the model was built for 3"):
        model.ensure_built(4, "fit")


def test_parameter_layout_lives_in_its_own_module():
    from fastnn._params import ALIGN, ParamInfo, layout

    dense = fnn.layers.Dense(3)
    info, size = layout([(dense, "w", (2, 3), "weight"), (dense, "b", (3,), "bias")])
    assert [(p.start, p.stop) for p in info] == [(0, 6), (ALIGN, ALIGN + 3)] and size == 2 * ALIGN
    assert isinstance(info[0], ParamInfo) and info[0].trainable and "weight" in repr(info[0])
    dense.trainable = False
    assert not info[1].trainable
    model = fnn.Sequential([fnn.layers.Dense(3)], input_dim=2, seed=0)
    assert [(p.start, p.stop) for p in model.param_info] == [(0, 6), (ALIGN, ALIGN + 3)]
