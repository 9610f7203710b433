"""Dropout: inverted scaling, identity in evaluation and at rate 0, the kept fraction, masks
reproducible from the model's seed, the step counter as layer state, the same mask in the
backward, and the same masks on every device."""

import numpy as np
import pytest

import fastnn as fnn
from _helpers import CPU_BUILT, DEVICES


def dropout_model(rate=0.3, seed=0, device="reference", n=64, dtype="float64"):
    return fnn.Sequential([fnn.layers.Dropout(rate)], input_dim=n, seed=seed, device=device, dtype=dtype)


def train_forward(model, X):
    return model.backend.to_numpy(model.forward(model.backend.asarray(X), training=True)).copy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.75])
def test_kept_fraction_and_scaling(device, rate):
    model = dropout_model(rate, device=device, n=300)
    X = np.ones((200, 300))
    out = train_forward(model, X)
    kept = out != 0
    assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / X.size)  # binomial, 5 sigma
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_identity_in_evaluation_and_at_rate_zero(device):
    X = np.random.default_rng(0).standard_normal((20, 64))
    model = dropout_model(0.5, device=device)
    np.testing.assert_array_equal(model.predict(X), X)
    assert model.layers[0].state_dict()["step"] == 0  # evaluation draws nothing
    zero = dropout_model(0.0, device=device)
    xb = zero.backend.asarray(X)
    assert zero.forward(xb, training=True) is xb
    dy = zero.backend.asarray(X.copy())
    assert zero.layers[0].backward(dy) is dy


def test_same_seed_same_masks_other_seed_other_masks():
    X = np.ones((10, 64))
    a, b, c = dropout_model(seed=5), dropout_model(seed=5), dropout_model(seed=6)
    for _ in range(3):
        out_a, out_b, out_c = train_forward(a, X), train_forward(b, X), train_forward(c, X)
        np.testing.assert_array_equal(out_a, out_b)
        assert (out_a != out_c).mean() > 0.2
    assert a.layers[0].state_dict()["step"] == 3
    # each training batch draws a new mask
    assert (train_forward(a, X) != out_a).mean() > 0.2


def test_two_dropout_layers_draw_different_masks():
    model = fnn.Sequential([fnn.layers.Dropout(0.5), fnn.layers.Dropout(0.5)], input_dim=64, seed=0,
                           device="reference", dtype="float64")
    first, second = model.layers
    assert first.state_dict()["key"] != second.state_dict()["key"]


def test_state_dict_restores_the_mask_sequence():
    X = np.ones((10, 64))
    model = dropout_model(seed=1)
    train_forward(model, X)
    state = model.layers[0].state_dict()
    want = [train_forward(model, X) for _ in range(2)]
    other = dropout_model(seed=99)  # another seed: the key comes with the state
    other.layers[0].load_state_dict(state)
    for w in want:
        np.testing.assert_array_equal(train_forward(other, X), w)
    with pytest.raises(ValueError, match=r"Dropout.load_state_dict: step must be >= 0"):
        other.layers[0].load_state_dict({"key": 1, "step": -1})


def test_masks_do_not_depend_on_the_rest_of_the_model_or_its_initialization():
    """The mask key derives from the model's seed and the layer's position, not from draws of the
    model's generator: the initialization of the layers around it is unchanged by adding it."""
    plain = fnn.Sequential([fnn.layers.Dense(8), fnn.layers.Dense(3)], input_dim=4, seed=0)
    dropped = fnn.Sequential([fnn.layers.Dense(8), fnn.layers.Dropout(0.5), fnn.layers.Dense(3)], input_dim=4, seed=0)
    for a, b in zip(plain.get_weights(), dropped.get_weights()):
        np.testing.assert_array_equal(a, b)
    key = dropped.layers[1].state_dict()["key"]
    dropped.add(fnn.layers.Dense(2))  # a rebuild keeps the key
    assert dropped.layers[1].state_dict()["key"] == key


@pytest.mark.skipif(not CPU_BUILT, reason="the compiled CPU backend is not built")
def test_cpu_masks_equal_the_reference_masks():
    X = np.random.default_rng(2).standard_normal((33, 64))
    for dtype in ("float32", "float64"):
        outs = [train_forward(dropout_model(0.4, seed=3, device=d, dtype=dtype), X.astype(dtype))
                for d in ("reference", "cpu")]
        np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("device", DEVICES)
def test_backward_uses_the_forward_mask(device):
    model = fnn.Sequential([fnn.layers.Dense(16), fnn.layers.Dropout(0.5), fnn.layers.Dense(2)], input_dim=3,
                           seed=0, device=device, dtype="float64")
    X = np.random.default_rng(3).standard_normal((8, 3))
    be = model.backend
    h = model.layers[0].forward(be.asarray(X), training=True)
    out = be.to_numpy(model.layers[1].forward(h, training=True)).copy()
    kept = out != 0
    dy = be.asarray(np.ones((8, 16)))
    dx = be.to_numpy(model.layers[1].backward(dy))
    np.testing.assert_allclose(dx, kept * 2.0, rtol=1e-15)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_rate_must_be_in_0_1(rate):
    with pytest.raises(ValueError, match=r"Dropout: rate must be"):
        fnn.layers.Dropout(rate)


def test_trainer_advances_the_step_once_per_training_batch():
    X, y = fnn.datasets.make_moons(n=50, seed=0)
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dropout(0.2), fnn.layers.Dense(2)],
                           seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", batch_size=16, seed=0)
    trainer.fit(X, y, epochs=2, verbose=0, validation=(X, y))
    assert model.layers[1].state_dict()["step"] == trainer.optimizer.step_count == 8
