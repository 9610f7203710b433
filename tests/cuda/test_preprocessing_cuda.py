"""fastnn.preprocessing on device='cuda' (the BatchNorm kernel in evaluation mode with eps=0):
the same outputs as the reference backend, adapted by fit, trained through."""

import numpy as np

import fastnn as fnn
from fastnn.preprocessing import MinMaxScale, Standardize


def test_scaling_layers_match_the_reference_on_cuda():
    X = np.random.default_rng(0).normal(3.0, 2.0, (20, 3)).astype(np.float32)
    for make in (Standardize, lambda: MinMaxScale((-1, 1)), lambda: Standardize(inverse=True)):
        ref = fnn.Sequential([make().adapt(X)], input_dim=3, device="reference").predict(X)
        got = fnn.Sequential([make().adapt(X)], input_dim=3, device="cuda").predict(X)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_fit_adapts_and_trains_through_standardize_on_cuda():
    X = np.random.default_rng(1).normal(3.0, 2.0, (32, 3)).astype(np.float32)
    y = (X[:, 0] > 3).astype(np.int64)
    models = [fnn.Sequential([Standardize(), fnn.layers.Dense(4, activation="relu"), fnn.layers.Dense(2)],
                             seed=0, device=device) for device in ("reference", "cuda")]
    for m in models:
        fnn.Trainer(m, "cross_entropy", fnn.optim.SGD(0.1), batch_size=16, shuffle=False).fit(X, y, epochs=2,
                                                                                          verbose=0)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
