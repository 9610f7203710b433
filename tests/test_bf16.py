"""Mixed-precision training, Trainer(precision="bf16"): the Dense products in bfloat16 with float32
sums, everything else float32. Through the public API: the compiled chain against the reference
device, bit-identical reruns, checkpoints that keep the precision and resume bit for bit, the
option's errors, predict and saved models in float32, the estimators and the CLI, and test
accuracy on digits within 0.3 points of float32 (median of 5 seeds). The kernels themselves are
tested against the reference in tests/backends/test_kernels.py (every path this CPU has)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn.cli import main

L = fnn.layers
pytest.importorskip("fastnn._ext.dense")


def _data(n=240, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, :k] @ rng.standard_normal((k, k))).argmax(1)
    return X, y


def _model(device="cpu", dtype="float32", seed=1):
    return fnn.Sequential([L.Dense(64, activation="relu"), L.Dense(48, activation="gelu"), L.Dense(3)],
                          input_dim=12, seed=seed, device=device, dtype=dtype)


def _train(precision, device="cpu", epochs=3, seed=1):
    X, y = _data()
    model = _model(device, seed=seed)
    fnn.Trainer(model, "cross_entropy", "adam", batch_size=32, seed=0, precision=precision).fit(
        X, y, epochs=epochs, verbose=0)
    return model


def test_a_step_on_the_compiled_chain_matches_the_reference_device():
    X, y = _data()
    grads = {}
    for device in ("cpu", "reference"):
        model = _model(device)
        trainer = fnn.Trainer(model, "cross_entropy", "sgd", batch_size=240, seed=0, precision="bf16")
        with model.training_precision("bf16"):
            out = model.forward(model.backend.asarray(X), training=True, logits=True)
            assert (device != "cpu") or model._chain is not None  # the compiled chain ran
            dy = model.backend.empty(out.shape, out.dtype)
            loss = model.backend.zeros((1,), np.float64)
            trainer.loss(model.backend, out, model.backend.asarray(y), scale=1 / 240, loss_out=loss, grad=dy)
            model.backward(dy)
        grads[device] = model.backend.to_numpy(model.grads).astype(np.float64)
    # the same products up to float32 summation order; a hidden activation that lands one float32
    # ulp apart can round to a neighbouring bf16 value: compared as a whole, not element by element
    err = np.linalg.norm(grads["cpu"] - grads["reference"]) / np.linalg.norm(grads["reference"])
    assert err < 1e-3, err


def test_bf16_training_is_reproducible_and_differs_from_float32():
    fnn.set_num_threads(2)
    a, b, c = _train("bf16"), _train("bf16"), _train("fp32")
    np.testing.assert_array_equal(a.params, b.params)  # same seed, same threads, same bits
    diff = np.abs(a.params - c.params).max()
    assert 1e-5 < diff < 0.1, diff  # the products really ran in bf16, and training went the same way


def test_bf16_reaches_the_reference_devices_weights():
    cpu, ref = _train("bf16"), _train("bf16", device="reference")
    err = np.linalg.norm(cpu.params - ref.params) / np.linalg.norm(ref.params)
    assert err < 1e-2, err


def test_predict_evaluate_and_saved_models_stay_float32(tmp_path):
    model = _train("bf16")
    assert model._precision == "fp32" and all(layer.precision == "fp32" for layer in model.layers)
    X, _ = _data(seed=3)
    ref = _model("reference")
    ref.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-5, atol=1e-6)  # float32 products
    model.save(tmp_path / "m.fnn")
    loaded = fnn.load(tmp_path / "m.fnn")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_checkpoint_keeps_the_precision_and_resumes_bit_for_bit(tmp_path):
    X, y = _data()
    straight = _model()
    fnn.Trainer(straight, "cross_entropy", "adam", batch_size=32, seed=0, precision="bf16").fit(X, y, epochs=4,
                                                                                                verbose=0)
    model = _model()
    trainer = fnn.Trainer(model, "cross_entropy", "adam", batch_size=32, seed=0, precision="bf16")
    trainer.fit(X, y, epochs=2, verbose=0)
    trainer.save_checkpoint(tmp_path / "c.fnn")
    resumed = fnn.Trainer.from_checkpoint(tmp_path / "c.fnn")
    assert resumed.precision == "bf16"
    resumed.fit(X, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(resumed.model.params, straight.params)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(precision="fp16"), ValueError, r"^Trainer: unknown precision 'fp16'; choose one of 'fp32', 'bf16'\.$"),
    (dict(precision=None), ValueError, r"^Trainer: unknown precision None"),
    (dict(precision="bf16", dtype="float64"), ValueError,
     r"^Trainer: precision='bf16' rounds a float32 model's products to bfloat16; this model is float64\. Build it "
     r"with dtype='float32' \(the default\) or use precision='fp32'\.$"),
])
def test_bad_precisions_are_refused(kwargs, error, match):
    dtype = kwargs.pop("dtype", "float32")
    with pytest.raises(error, match=match):
        fnn.Trainer(_model(dtype=dtype), "cross_entropy", **kwargs)


def test_the_estimators_take_a_precision():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    from fastnn.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    scores = {}
    for precision in ("fp32", "bf16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: 40 iterations are enough here
            clf = MLPClassifier((64,), max_iter=40, random_state=0, precision=precision).fit(X[:1200], y[:1200])
        scores[precision] = clf.score(X[1200:], y[1200:])
    assert clf.model_.dtype == np.float32 and clf.get_params()["precision"] == "bf16"
    assert scores["fp32"] > 0.85 and abs(scores["bf16"] - scores["fp32"]) < 0.02, scores
    with pytest.raises(ValueError, match=r"MLPClassifier: precision='bf16' trains a float32 model; got "
                                         r"dtype='float64'"):
        MLPClassifier(precision="bf16", dtype="float64").fit(X[:50], y[:50])
    with pytest.raises(ValueError, match=r"MLPClassifier: unknown precision 'half'"):
        MLPClassifier(precision="half").fit(X[:50], y[:50])


def test_the_cli_trains_in_bf16(tmp_path, capsys):
    out = tmp_path / "m.fnn"
    assert main(["train", "--epochs", "3", "--precision", "bf16", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"precision bf16: Dense products on {fnn.info()['bf16']['path']}" in text
    assert fnn.load(out).dtype == np.float32


def test_info_names_the_bf16_path():
    from fastnn._ext import dense

    assert fnn.info()["bf16"]["path"] in dense.BF16_PATHS


def test_digits_accuracy_within_0_3_points_of_float32():
    # the median over 5 seeds of the test accuracy, bf16 against float32 (issue: within 0.3 points)
    X, y = fnn.datasets.load_digits()
    X = fnn.data.Standardizer().fit_transform(X).astype(np.float32)
    idx = np.random.default_rng(0).permutation(len(X))
    train, test = idx[:1347], idx[1347:]
    scores = {}
    for precision in ("fp32", "bf16"):
        acc = []
        for seed in range(5):
            model = fnn.Sequential([L.Dense(128, activation="relu"), L.Dense(64, activation="relu"), L.Dense(10)],
                                   seed=seed)
            fnn.Trainer(model, "cross_entropy", "adam", batch_size=32, seed=seed, precision=precision).fit(
                X[train], y[train], epochs=20, verbose=0)
            acc.append((model.predict(X[test]).argmax(1) == y[test]).mean())
        scores[precision] = float(np.median(acc))
    assert scores["fp32"] > 0.95
    assert scores["bf16"] >= scores["fp32"] - 0.003, scores
