"""Train -> save -> fastnn.inference and ONNX Runtime with the real BatchNorm and Dropout layers,
for classification and regression: the deployed model predicts what model.predict does."""

import numpy as np
import pytest

import fastnn as fnn
import fastnn.inference as inference
from fastnn.backends.base import ACTIVATIONS

L = fnn.layers


def trained(activation, task, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((96, 6)).astype(np.float32)
    if task == "classify":
        y, n_out, loss, last = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1), 3, "cross_entropy", "softmax"
    else:
        y, n_out, loss, last = X[:, :2].sum(axis=1), 1, "mse", None
    model = fnn.Sequential([
        L.Dense(16), L.BatchNorm(), L.Activation(activation), L.Dropout(0.2),
        L.Dense(12, activation=activation), L.BatchNorm(momentum=0.3, eps=1e-3), L.Dropout(0.1),
        L.Dense(n_out, activation=last),
    ], seed=seed)
    fnn.Trainer(model, loss, fnn.optim.Adam(3e-3), batch_size=16, seed=seed).fit(X, y, epochs=3, verbose=0)
    return model, X


@pytest.mark.parametrize("task", ["classify", "regress"])
@pytest.mark.parametrize("activation", ACTIVATIONS[:-1])  # softmax is the output layer's
def test_inference_runtime_matches_predict(tmp_path, activation, task):
    model, X = trained(activation, task)
    model.save(tmp_path / "m.fnn")
    deployed = inference.load(tmp_path / "m.fnn")
    want = model.predict(X)
    got = deployed.predict(X)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    # both BatchNorms folded into a neighbouring Dense, both Dropouts removed
    assert [step.kind for step in deployed.steps] == ["dense", "dense", "dense"]


@pytest.mark.parametrize("task", ["classify", "regress"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "silu"])
def test_onnx_runtime_matches_predict(tmp_path, activation, task):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import fastnn.export as export

    model, X = trained(activation, task)
    export.to_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": X})[0]
    np.testing.assert_allclose(got, model.predict(X), rtol=2e-5, atol=2e-5)
