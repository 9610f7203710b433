"""Trainer: hand-worked steps, gradient-descent modes, weights, penalties, clipping, the fused
path, continuation, freezing, the allocation-free steady state and a real-data run."""

import math

import numpy as np
import pytest

import fastnn as fnn
from _helpers import assert_steady_state_allocates_nothing, needs_cpu

DEVICES = ["reference", "cpu"]


def linear_model(device="reference", dtype="float64"):
    model = fnn.Sequential([fnn.layers.Dense(1)], input_dim=2, seed=0, device=device, dtype=dtype)
    model.set_weights([np.array([[0.5], [-0.5]]), np.array([0.1])])
    return model


@pytest.mark.parametrize("device", DEVICES)
def test_hand_worked_mse_step(device):
    # pred = [-0.4, -0.4]; err = [-1.4, -2.4]; loss = (1.96 + 5.76) / 2 = 3.86
    # dL/dpred = err; dW = X^T err = [-8.6, -12.4]; db = -3.8; lr 0.1
    model = linear_model(device)
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(lr=0.1), batch_size=None, shuffle=False)
    history = trainer.fit([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], epochs=1, verbose=0)
    assert history.history["loss"] == [pytest.approx(3.86, rel=1e-12)]
    w, b = model.get_weights()
    np.testing.assert_allclose(w, [[1.36], [0.74]], rtol=1e-12)
    np.testing.assert_allclose(b, [0.48], rtol=1e-12)
    assert history.history["grad_norm"][0] == pytest.approx(math.sqrt(8.6**2 + 12.4**2 + 3.8**2))


@pytest.mark.parametrize("device", DEVICES)
def test_hand_worked_cross_entropy_step(device):
    # zero weights: p = (1/2, 1/2), loss = ln 2; dL/dz = p - onehot, averaged over 2 samples
    model = fnn.Sequential([fnn.layers.Dense(2, init="zeros")], input_dim=1, device=device, dtype="float64")
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(lr=1.0), batch_size=None, shuffle=False)
    history = trainer.fit([[1.0], [-1.0]], [0, 1], epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(math.log(2), rel=1e-12)
    # dz = [[-0.5, 0.5], [0.5, -0.5]] / 2; dW = x^T dz = [[-0.5, 0.5]]; db = 0
    w, b = model.get_weights()
    np.testing.assert_allclose(w, [[0.5, -0.5]], atol=1e-15)
    np.testing.assert_allclose(b, [0.0, 0.0], atol=1e-15)


def manual_sgd_epoch(model, X, y, order, bs, lr):
    """Independent minibatch SGD on a 1-layer linear MSE model, for comparison."""
    w, b = (a.astype(np.float64) for a in model.get_weights())
    for s in range(0, len(X), bs):
        idx = order[s:s + bs]
        err = X[idx] @ w + b - y[idx]
        g = 2 * err / err.size
        w, b = w - lr * X[idx].T @ g, b - lr * g.sum(0)
    return w, b


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size, steps", [(None, 1), (1, 10), (4, 3), (10, 1), (64, 1)])
def test_modes_and_last_partial_batch(device, batch_size, steps):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0, device=device, dtype="float64")
    expected = manual_sgd_epoch(model, X, y, np.arange(10), batch_size or 10, 0.05)
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(lr=0.05), batch_size=batch_size, shuffle=False)
    trainer.fit(X, y, epochs=1, verbose=0)
    assert trainer.optimizer.step_count == steps
    np.testing.assert_allclose(model.get_weights()[0], expected[0], rtol=1e-12)
    np.testing.assert_allclose(model.get_weights()[1], expected[1], rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_shuffled_epoch_uses_the_seeded_permutation(device):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((11, 3)), rng.standard_normal((11, 1))
    model = fnn.Sequential([fnn.layers.Dense(1)], input_dim=3, seed=0, device=device, dtype="float64")
    order = np.random.default_rng(7).permutation(11)
    expected = manual_sgd_epoch(model, X, y, order, 4, 0.1)
    fnn.Trainer(model, "mse", fnn.optim.SGD(lr=0.1), batch_size=4, seed=7).fit(X, y, epochs=1, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], expected[0], rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_continuing_fit_equals_one_long_fit(device):
    X, y = fnn.datasets.make_spirals(n=120, classes=3, seed=0)
    weights = []
    for split in ([6], [2, 4]):
        model = fnn.Sequential([fnn.layers.Dense(16, activation="tanh"), fnn.layers.Dense(3)], seed=0, device=device)
        trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9, nesterov=True),
                              batch_size=16, seed=3)
        for epochs in split:
            trainer.fit(X, y, epochs=epochs, verbose=0)
        weights.append(model.get_weights())
        assert len(trainer.history.history["loss"]) == 6
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_sample_and_class_weights():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((12, 3)), rng.integers(0, 3, 12)
    model = fnn.Sequential([fnn.layers.Dense(3)], input_dim=3, seed=0, device="reference", dtype="float64")
    trainer = fnn.Trainer(model, "cross_entropy")
    plain = trainer.evaluate(X, y)["loss"]
    assert trainer.evaluate(X, y, sample_weight=np.ones(12))["loss"] == pytest.approx(plain, rel=1e-12)
    assert trainer.evaluate(X, y, sample_weight=np.full(12, 3.0))["loss"] == pytest.approx(3 * plain, rel=1e-12)
    w = trainer._sample_weights("t", y, None, "balanced")
    counts = np.bincount(y, minlength=3)
    np.testing.assert_allclose(w, 12 / (3 * counts[y]))
    w = trainer._sample_weights("t", y, np.full(12, 2.0), {1: 5.0})
    np.testing.assert_allclose(w, np.where(y == 1, 10.0, 2.0))


def test_l2_penalty_in_loss_and_gradient():
    model = linear_model()
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(lr=0.1), batch_size=None, shuffle=False, l2=0.5, l1=0.25)
    history = trainer.fit([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], epochs=1, verbose=0)
    # penalty on w only: 0.25 * (0.5 + 0.5) + 0.5 * (0.25 + 0.25) = 0.5
    assert history.history["loss"][0] == pytest.approx(3.86 + 0.5, rel=1e-12)
    # dW += 0.25 * sign(w) + 2 * 0.5 * w = [0.25 + 0.5, -0.25 - 0.5]
    w, b = model.get_weights()
    np.testing.assert_allclose(w, [[0.5 - 0.1 * (-8.6 + 0.75)], [-0.5 - 0.1 * (-12.4 - 0.75)]], rtol=1e-12)
    np.testing.assert_allclose(b, [0.48], rtol=1e-12)  # biases are not penalised


@pytest.mark.parametrize("device", DEVICES)
def test_clip_norm_and_clip_value(device):
    X, y = [[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0]
    norm = math.sqrt(8.6**2 + 12.4**2 + 3.8**2)
    model = linear_model(device)
    fnn.Trainer(model, "mse", fnn.optim.SGD(lr=0.1), batch_size=None, clip_norm=1.0).fit(X, y, verbose=0)
    step = np.concatenate([(np.array([[0.5], [-0.5]]) - model.get_weights()[0]).ravel(),
                           0.1 - model.get_weights()[1]]) / 0.1
    np.testing.assert_allclose(step, np.array([-8.6, -12.4, -3.8]) / (norm + 1e-6), rtol=1e-9)
    model = linear_model(device)
    fnn.Trainer(model, "mse", fnn.optim.SGD(lr=0.1), batch_size=None, clip_value=5.0).fit(X, y, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], [[1.0], [0.0]], rtol=1e-12)  # -8.6, -12.4 -> -5
    np.testing.assert_allclose(model.get_weights()[1], [0.48], rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("final, loss", [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy")])
def test_fused_final_activation_trains_like_logits(device, final, loss):
    """Dense(k, activation=softmax) + cross_entropy trains exactly like Dense(k) logits,
    and predict returns probabilities."""
    X, y = fnn.datasets.make_moons(n=64, seed=0)
    target = y if loss == "cross_entropy" else np.eye(2)[y]
    models = []
    for act in (final, None):
        model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(2, activation=act)],
                               seed=0, device=device)
        fnn.Trainer(model, loss, fnn.optim.SGD(0.1), batch_size=16, seed=0).fit(X, target, epochs=2, verbose=0)
        models.append(model)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_array_equal(a, b)
    probs = models[0].predict(X)
    logits = models[1].predict(X)
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref = ref / ref.sum(1, keepdims=True) if final == "softmax" else 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(probs, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_frozen_layer_is_bit_identical_after_training(device):
    X, y = fnn.datasets.make_spirals(n=90, seed=1)
    model = fnn.Sequential([fnn.layers.Dense(12, activation="relu"), fnn.layers.Dense(12, activation="relu"),
                            fnn.layers.Dense(3)], seed=0, device=device)
    model.predict(X[:1])
    model.layers[0].trainable = False
    before = model.layers[0].weights
    head = model.layers[2].weights
    fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9, weight_decay=1e-3), l2=1e-3,
                batch_size=8).fit(X, y, epochs=3, verbose=0)
    for a, b in zip(before, model.layers[0].weights):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head[0], model.layers[2].weights[0])


def test_validation_and_history():
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.05, momentum=0.9), metrics=["accuracy"], seed=0)
    perm = np.random.default_rng(0).permutation(150)
    h = trainer.fit(X[perm], y[perm], epochs=3, validation_split=0.2, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm", "epoch_time"}
    assert all(len(v) == 3 for v in h.history.values())
    assert h.history["lr"] == [0.05] * 3
    held_out = trainer.evaluate(X[perm][-30:], y[perm][-30:])
    assert h.history["val_loss"][-1] == pytest.approx(held_out["loss"])
    assert h.history["val_accuracy"][-1] == pytest.approx(held_out["accuracy"])


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([fnn.layers.Dense(3)], seed=0)
    fnn.Trainer(model, "cross_entropy", metrics=["accuracy"]).fit(X, y, epochs=4, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("epoch 1 - loss ") and "accuracy" in lines[3]


def test_diverging_training_raises():
    X = np.array([[1e3, -1e3], [2e3, 1e3]])
    model = fnn.Sequential([fnn.layers.Dense(1)], input_dim=2, seed=0)
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(lr=10.0), batch_size=1, shuffle=False)
    # a non-finite loss names its batch; the finite runaway before it is caught at an epoch's end
    with pytest.raises(fnn.TrainingDiverged, match=r"at epoch \d+, (batch \d+|found at the epoch's end)"):
        trainer.fit(X, [1.0, 2.0], epochs=50, verbose=0)
    assert np.isfinite(model.predict(X)).all()


def test_steady_state_training_step_allocates_nothing():
    pytest.importorskip("fastnn._ext.dense", reason="compiled CPU backend not built")
    X, y = fnn.datasets.load_digits()
    model = fnn.Sequential([fnn.layers.Dense(64, activation="relu"), fnn.layers.Dense(32, activation="gelu"),
                            fnn.layers.Dense(10)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.01, momentum=0.9), batch_size=32, l2=1e-4,
                          clip_norm=10.0, seed=0)
    X, y = X[:32 * 100], y[:32 * 100]  # 1797 rows: 56 full steps + one partial per epoch
    assert_steady_state_allocates_nothing(trainer, X, y)  # 114 steps


def test_digits_reaches_095_test_accuracy():
    X, y = fnn.datasets.load_digits()
    (Xtr, ytr), (Xte, yte) = fnn.data.split(X, y, fractions=(0.8, 0.2), stratify=True, seed=0)
    scaler = fnn.data.Standardizer().fit(Xtr)
    model = fnn.Sequential([fnn.layers.Dense(128, activation="relu"), fnn.layers.Dense(10)], input_dim=64, seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.02, momentum=0.9), batch_size=32,
                          metrics=["accuracy"], seed=0)
    trainer.fit(scaler.transform(Xtr), ytr, epochs=30, verbose=0)
    assert trainer.evaluate(scaler.transform(Xte), yte)["accuracy"] >= 0.95


def test_history_plot_and_csv(tmp_path):
    pytest.importorskip("matplotlib")
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)], seed=0)
    h = fnn.Trainer(model, "cross_entropy", metrics=["accuracy"], seed=0).fit(
        X, y, epochs=3, validation_split=0.2, verbose=0)
    h.plot(tmp_path / "curves.png")
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    h.to_csv(tmp_path / "h.csv")
    rows = (tmp_path / "h.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["epoch", "loss", "accuracy"] and len(rows) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


@needs_cpu
def test_same_seed_same_threads_gives_bit_identical_weights_by_default():
    # A product of 784-long rows (which OpenBLAS sums differently on 1 and 2 threads) in every
    # step: the default thread policy must not switch thread counts between runs.
    from fastnn.backends import cpu

    assert cpu.get_thread_policy() == "fixed"
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((1024, 784)).astype(np.float32), rng.integers(0, 10, 1024)

    def train():
        model = fnn.Sequential([fnn.layers.Dense(512, activation="relu"), fnn.layers.Dense(10)], input_dim=784,
                               seed=0, device="cpu")
        fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(1e-3), batch_size=128, seed=0).fit(X, y, epochs=2,
                                                                                            verbose=0)
        return model.get_weights()

    for a, b in zip(train(), train()):
        assert np.array_equal(a, b)


def _recorded_fit(case):
    """The seeded runs whose results tests/golden/trainer_fit.json holds (recorded with the
    Trainer before fit was split into named steps, issue 12 item 3)."""
    X, y = fnn.datasets.load_iris()
    X = fnn.data.Standardizer().fit_transform(X)
    L = fnn.layers
    if case == "chain":  # every layer a Dense: the compiled chain; augmentation, validation split
        model = fnn.Sequential([L.Dense(12, activation="tanh"), L.Dense(3)], seed=3, dtype="float64")
        trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(3e-2), batch_size=16, metrics=["accuracy"],
                              seed=5, augment=[fnn.augment.GaussianNoise(0.1), fnn.augment.Mixup(0.3)])
        stop = fnn.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best=True)
        trainer.fit(X, y, epochs=40, validation_split=0.2, callbacks=[stop], verbose=0)
    else:  # layer by layer: BatchNorm, Dropout, penalties, clipping, class weights, validation data
        model = fnn.Sequential([L.Dense(10), L.BatchNorm(), L.Activation("relu"), L.Dropout(0.2), L.Dense(3)],
                               seed=4, dtype="float64")
        trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.05, momentum=0.9), batch_size=13,
                              metrics=["accuracy", fnn.metrics.TopKAccuracy(k=2)], seed=6, l1=1e-4, l2=1e-3,
                              clip_norm=1.0, augment=fnn.augment.GaussianNoise(0.05))
        stop = fnn.callbacks.EarlyStopping(monitor="val_accuracy", patience=3)
        idx = np.random.default_rng(0).permutation(len(X))
        trainer.fit(X[idx[:120]], y[idx[:120]], epochs=25, validation=(X[idx[120:]], y[idx[120:]]),
                    callbacks=[stop], class_weight="balanced", verbose=0)
    return trainer


@needs_cpu
@pytest.mark.parametrize("case", ["chain", "layers"])
def test_fit_reproduces_the_run_recorded_before_the_refactor(case):
    # issue 12: fit's named steps must train as the single loop did. Recorded in float64 on the
    # project machine, where the result is bit-identical; the tolerance only absorbs another
    # CPU's BLAS summation order, far below what a changed step (one more random draw, a
    # reordered penalty) would move.
    import json
    import pathlib

    recorded = json.loads((pathlib.Path(__file__).parent / "golden" / "trainer_fit.json").read_text())[case]
    trainer = _recorded_fit(case)
    assert trainer.epoch == recorded["epoch"]  # early stopping fired at the same epoch
    history = {k: v for k, v in trainer.history.history.items() if k != "epoch_time"}
    assert sorted(history) == sorted(recorded["history"])
    for key, values in recorded["history"].items():
        np.testing.assert_allclose(history[key], values, rtol=1e-9, atol=1e-12, err_msg=key)
    weights = np.concatenate([w.ravel() for w in trainer.model.get_weights()])
    np.testing.assert_allclose(weights, recorded["weights"], rtol=1e-9, atol=1e-12)


def test_loss_registry_declares_each_fused_activation_once():
    # issue 12: a loss's fused output activation and its defaults are declared on the loss
    from fastnn.losses import DEFAULT_LOSS, LOSSES, fused_activation

    assert DEFAULT_LOSS == {"identity": "mse", "sigmoid": "binary_cross_entropy", "softmax": "cross_entropy"}
    assert {name: fused_activation(name) for name in LOSSES} == {
        "mse": None, "mae": None, "huber": None, "binary_cross_entropy": "sigmoid", "cross_entropy": "softmax"}
    assert fused_activation(fnn.losses.CrossEntropy(label_smoothing=0.1)) == "softmax"
    assert fused_activation("not a loss") is None and fused_activation(None) is None


def test_no_module_keeps_its_own_table_of_loss_activations():
    # the grep of issue 12, as a test: a dict literal pairing a loss name with an activation
    # name anywhere but losses.py is a second, hand-kept copy of the registry
    import ast
    import pathlib

    losses = {"mse", "mae", "huber", "binary_cross_entropy", "cross_entropy"}
    outputs = {"softmax", "sigmoid", "identity"}
    root = pathlib.Path(fnn.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        if path.name == "losses.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                pairs = {(k.value, v.value) for k, v in zip(node.keys, node.values)
                         if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
                if any({a, b} <= losses | outputs and ({a, b} & losses) and ({a, b} & outputs) for a, b in pairs):
                    found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_class_weight_reads_one_hot_targets_of_any_softmax_loss():
    # the Trainer asks the loss (fuses == 'softmax': one class per row), not its name
    class Renamed(fnn.losses.CrossEntropy):
        name = "renamed_cross_entropy"

    X = np.random.default_rng(0).standard_normal((12, 3))
    onehot = np.eye(3)[np.arange(12) % 3]
    model = fnn.Sequential([fnn.layers.Dense(3)], input_dim=3, seed=0, device="reference", dtype="float64")
    trainer = fnn.Trainer(model, Renamed(), batch_size=None, seed=0)
    trainer.fit(X, onehot, epochs=1, class_weight="balanced", verbose=0)
    assert trainer.epoch == 1


def _iris_trainer(seed=0):
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dropout(0.1), fnn.layers.Dense(3)],
                           seed=seed, dtype="float64", device="reference")
    opt = fnn.optim.Adam(1e-2)
    opt.set_layer_options(model.layers[2], lr=0.5)
    trainer = fnn.Trainer(model, "cross_entropy", opt, batch_size=32, seed=seed,
                          augment=[fnn.augment.GaussianNoise(0.05), fnn.augment.Mixup(0.2)])
    return trainer, X, y


def test_trainer_state_dict_resumes_without_a_file():
    # issue 12: the state a checkpoint writes is the Trainer's own state_dict()
    straight, X, y = _iris_trainer()
    straight.fit(X, y, epochs=4, verbose=0)
    first, _, _ = _iris_trainer()
    first.fit(X, y, epochs=2, verbose=0)
    state = first.state_dict()
    assert state["optimizer"]["layer_options"] == {"2": {"lr": 0.5}}
    assert state["epoch"] == 2 and state["augment"] == [{"step": 10}, {}] and state["layers"] == {"1": first.model
                                                                                                  .layers[1].state_dict()}
    second, _, _ = _iris_trainer()
    second.optimizer.set_layer_options(second.model.layers[2], lr=1.0)  # replaced by the state's options
    second.model.build(4)
    second.model.set_weights(first.model.get_weights())
    second.load_state_dict(state)
    second.fit(X, y, epochs=2, verbose=0)
    for a, b in zip(second.model.get_weights(), straight.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert second.history.history["loss"] == straight.history.history["loss"]


def test_trainer_load_state_dict_checks_every_field():
    trainer, X, y = _iris_trainer()
    trainer.fit(X, y, epochs=1, verbose=0)
    state = trainer.state_dict()
    with pytest.raises(ValueError, match=r"^Trainer.load_state_dict: the epoch must be an integer"):
        trainer.load_state_dict({**state, "epoch": -1})
    with pytest.raises(ValueError, match=r"layer key '7' is not a layer of the model \(0..2\)"):
        trainer.load_state_dict({**state, "layers": {"7": {}}})
    with pytest.raises(ValueError, match="one key and one state per augmentation"):
        trainer.load_state_dict({**state, "augment_keys": [1]})
    with pytest.raises(ValueError, match=r"the optimizer state has \['m'\]; Adam needs"):
        trainer.load_state_dict({**state, "optimizer": {**state["optimizer"], "state": {"m": 0}}})
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: layer key '5' is not a layer of the bound model"):
        trainer.load_state_dict({**state, "optimizer": {**state["optimizer"], "layer_options": {"5": {"lr": 1.0}}}})
    with pytest.raises(TypeError, match="state must be a dict"):
        trainer.load_state_dict([state])
    unbuilt = fnn.Trainer(fnn.Sequential([fnn.layers.Dense(3)]), "cross_entropy")
    with pytest.raises(ValueError, match="Trainer.state_dict: the model is not built yet"):
        unbuilt.state_dict()


def test_a_custom_augmentation_plugs_in_through_the_public_protocol():
    class Flip(fnn.augment.Augmentation):
        """x' = -x (a toy transform written against bind/buffer_shapes/apply)."""

        def bind(self, key, capacity):
            self.bound = (key, capacity)

        def buffer_shapes(self, n_features, n_out, dtype, weighted):
            return {"x": ((n_features,), dtype)}

        def apply(self, backend, rng, out, x, y, w):
            return np.negative(x, out=out["x"]), y, w  # the reference backend: NumPy arrays

    X = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = 2.0 * X[:, 0]
    model = fnn.Sequential([fnn.layers.Dense(1)], input_dim=1, seed=0, device="reference", dtype="float64")
    flip = Flip()
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(0.05), batch_size=None, shuffle=False, seed=0, augment=flip)
    trainer.fit(X, y, epochs=200, verbose=0)
    assert flip.bound[1] == 4
    assert model.get_weights()[0][0, 0] == pytest.approx(-2.0, abs=0.05)  # learned on the flipped inputs
