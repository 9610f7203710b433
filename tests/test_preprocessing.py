"""fastnn.preprocessing (issue 16): Standardize / MinMaxScale inside the model: adapt, Trainer.fit
adapting on the training rows only, saved in the model file, folded by fastnn.inference and the
ONNX export, the old CLI metadata turned into a layer; Sequential.predict_proba/predict_classes."""

import json
import zipfile

import numpy as np
import pytest

import fastnn as fnn
import fastnn.inference
from fastnn.preprocessing import MinMaxScale, Standardize


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal([5.0, -300.0, 0.01], [1.0, 100.0, 0.001], size=(n, 3)).astype(np.float32)
    y = (X[:, 0] - 5 + (X[:, 1] + 300) / 100 > 0).astype(np.int64)
    return X, y


def test_standardize_adapt_matches_the_standardizer():
    X, _ = _data()
    layer = Standardize().adapt(X)
    ref = fnn.data.Standardizer().fit(X)
    np.testing.assert_allclose(layer.mean_, ref.mean_, rtol=1e-6)
    np.testing.assert_allclose(layer.scale_, ref.scale_, rtol=1e-6)
    m = fnn.Sequential([layer], input_dim=3, device="reference")
    np.testing.assert_allclose(m.predict(X), ref.transform(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_layers_run_on_each_backend(device):
    X, _ = _data()
    for layer, ref in ((Standardize(), fnn.data.Standardizer()),
                       (MinMaxScale((-1, 1)), fnn.data.MinMaxScaler((-1, 1)))):
        m = fnn.Sequential([layer.adapt(X)], input_dim=3, device=device)
        np.testing.assert_allclose(m.predict(X), ref.fit(X).transform(X), rtol=1e-4, atol=1e-5)


def test_inverse_standardize_undoes_standardize():
    X, _ = _data()
    m = fnn.Sequential([Standardize().adapt(X), Standardize(inverse=True).adapt(X)], input_dim=3)
    np.testing.assert_allclose(m.predict(X), X, rtol=1e-5)


def test_adapt_checks_its_input():
    with pytest.raises(ValueError, match="Standardize.adapt: X"):
        Standardize().adapt(np.array([[np.nan, 1.0]]))
    layer = Standardize().adapt(np.ones((4, 2)))
    with pytest.raises(ValueError, match="adapted on 2 features; the model gives it 3"):
        fnn.Sequential([layer], input_dim=3)
    with pytest.raises(ValueError, match="feature_range must be a pair"):
        MinMaxScale((1, 0))
    with pytest.raises(TypeError, match="inverse must be True or False"):
        Standardize(inverse="yes")


def test_fit_adapts_an_unadapted_layer_on_the_training_rows_only():
    X, y = _data(300)
    X[-60:] += 1000.0  # the validation rows (validation_split takes the last ones) are far off
    m = fnn.Sequential([Standardize(), fnn.layers.Dense(2)], seed=0)
    fnn.Trainer(m, "cross_entropy", fnn.optim.Adam(1e-2)).fit(X, y, epochs=1, validation_split=0.2, verbose=0)
    np.testing.assert_allclose(m.layers[0].mean_, X[:240].astype(np.float64).mean(axis=0), rtol=1e-5)
    before = m.layers[0].mean_.copy()
    fnn.Trainer(m, "cross_entropy").fit(X + 50, y, epochs=1, verbose=0)  # adapted: kept
    np.testing.assert_array_equal(m.layers[0].mean_, before)


def test_model_with_standardize_learns_raw_badly_scaled_features():
    X, y = _data(400)
    m = fnn.Sequential([Standardize(), fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(2)], seed=0)
    t = fnn.Trainer(m, "cross_entropy", fnn.optim.Adam(1e-2), metrics=["accuracy"])
    t.fit(X, y, epochs=30, verbose=0)
    assert t.evaluate(X, y)["accuracy"] > 0.95


def test_saved_loaded_folded_and_exported_models_agree(tmp_path):
    X, y = _data()
    m = fnn.Sequential([Standardize(), fnn.layers.Dense(8, activation="tanh"), fnn.layers.BatchNorm(),
                        MinMaxScale(), fnn.layers.Dense(2)], seed=0)
    fnn.Trainer(m, "cross_entropy", fnn.optim.Adam(1e-2)).fit(X, y, epochs=3, verbose=0)
    m.layers[3].adapt(np.random.default_rng(1).normal(size=(50, 8)))
    path = tmp_path / "m.fnn"
    m.save(path)
    expected = m.predict(X)
    loaded = fnn.load(path)
    assert type(loaded.layers[0]) is Standardize and loaded.layers[0].adapted
    np.testing.assert_allclose(loaded.predict(X), expected, rtol=1e-5, atol=1e-5)
    folded = fastnn.inference.load(path)
    assert [s.kind for s in folded.steps][0] == "dense"  # the Standardize went into the first Dense
    np.testing.assert_allclose(folded.predict(X), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fastnn.inference.InferenceModel.from_sequential(m).predict(X), expected,
                               rtol=1e-4, atol=1e-4)
    ort = pytest.importorskip("onnxruntime")
    fnn.export.to_onnx(path, tmp_path / "m.onnx")
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": X})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _legacy_file(tmp_path, std):
    """A model file as an older fastnn train wrote it: the input scaling in the metadata only."""
    X, y = _data()
    m = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    m.metadata = {"task": "classify", "classes": [0, 1], "standardize": std, "split_seed": 0}
    path = tmp_path / "old.fnn"
    m.save(path)
    return m, path, X


def test_issue16_old_cli_files_apply_their_scaling_everywhere(tmp_path):
    scaler = fnn.data.Standardizer().fit(_data()[0])
    m, path, X = _legacy_file(tmp_path, {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()})
    expected = m.predict(scaler.transform(X))
    loaded = fnn.load(path)
    assert type(loaded.layers[0]) is Standardize and "standardize" not in loaded.metadata
    np.testing.assert_allclose(loaded.predict(X), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fastnn.inference.load(path).predict(X), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("std", [{"mean": [0, 0], "scale": [1, 1]}, {"mean": [0, 0, 0], "scale": [1, 0, 1]},
                                 {"mean": "x"}, [1, 2]])
def test_issue16_old_cli_files_with_bad_scaling_are_refused(tmp_path, std):
    _, path, _ = _legacy_file(tmp_path, std)
    for load in (fnn.load, fastnn.inference.load):
        with pytest.raises(fnn.ModelFormatError, match="metadata 'standardize'"):
            load(path)


def test_file_stores_the_layer_and_its_arrays(tmp_path):
    m = fnn.Sequential([Standardize().adapt(np.arange(6.0).reshape(3, 2)), fnn.layers.Dense(1)], input_dim=2)
    m.save(tmp_path / "m.fnn")
    with zipfile.ZipFile(tmp_path / "m.fnn") as zf:
        meta = json.loads(zf.read("model.json"))
        assert meta["model"]["layers"][0] == {"type": "Standardize", "config": {"inverse": False, "adapted": True,
                                                                                "trainable": False}}
        assert {e["param"] for e in meta["arrays"] if e["layer"] == 0} == {"center", "factor", "offset"}


def test_predict_proba_and_classes_from_logits_and_probabilities():
    X, _ = _data(20)
    logits = fnn.Sequential([Standardize().adapt(X), fnn.layers.Dense(3)], input_dim=3, seed=0)
    p = logits.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert (logits.predict_classes(X) == logits.predict(X).argmax(axis=1)).all()
    soft = fnn.Sequential([Standardize().adapt(X), fnn.layers.Dense(3, activation="softmax")], input_dim=3, seed=0)
    np.testing.assert_allclose(soft.predict_proba(X), soft.predict(X), rtol=1e-6)
    binary = fnn.Sequential([fnn.layers.Dense(1)], input_dim=3, seed=0)
    z = binary.predict(X)[:, 0]
    pb = binary.predict_proba(X)
    np.testing.assert_allclose(pb[:, 1], 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-5)
    assert (binary.predict_classes(X) == (z > 0)).all()
    reg = fnn.Sequential([fnn.layers.Dense(1), Standardize(inverse=True).adapt(np.ones((2, 1)))], input_dim=3)
    with pytest.raises(ValueError, match="a regressor; use predict"):
        reg.predict_proba(X)
