"""Several threads predicting with one model (issue 17 finding 1 / item 3) and the bounded
per-row-count workspace cache (finding 7).

Sequential.predict wrote every call into one set of layer workspaces, so a thread could
return another thread's output. The workspaces are now per thread; these tests run many
threads over one model and compare each result with the single-threaded one, bit for bit.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import fastnn as fnn
from _helpers import DEVICE, DEVICES

N_THREADS, N_CALLS, ROWS = 6, 60, 32


@pytest.fixture
def switch_often():
    # a short switch interval makes the interleavings that exposed the bug frequent
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def digits_model(device, dtype="float32"):
    L = fnn.layers
    layers = [L.Dense(48, activation="relu"), L.BatchNorm(), L.Dense(32, activation="tanh"), L.Dropout(0.2),
              L.Activation("relu"), L.Dense(10, activation="softmax")]
    return fnn.Sequential(layers, input_dim=64, seed=0, device=device, dtype=dtype)


def data(seed, rows=ROWS):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 64)) * 3, rng.integers(0, 10, rows)


def run_threads(work):
    """Run ``work(i)`` in N_THREADS threads started together; returns their results by index
    and re-raises the first exception."""
    results, errors = [None] * N_THREADS, []
    barrier = threading.Barrier(N_THREADS)

    def target(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("device", DEVICES)
def test_issue17_threads_predicting_with_one_model_get_their_own_results(device, switch_often):
    model = digits_model(device)
    inputs = [data(i)[0] for i in range(N_THREADS)]
    expected = [model.predict(X) for X in inputs]

    def work(i):
        return sum(not np.array_equal(model.predict(inputs[i]), expected[i]) for _ in range(N_CALLS))

    assert run_threads(work) == [0] * N_THREADS


@pytest.mark.parametrize("device", DEVICES)
def test_issue17_threads_with_different_row_counts_and_chunks(device, switch_often):
    model = digits_model(device)
    inputs = [data(i, rows=5 + 7 * i)[0] for i in range(N_THREADS)]
    expected = [model.predict(X) for X in inputs]

    def work(i):
        wrong = 0
        for call in range(N_CALLS // 2):
            got = model.predict(inputs[i], batch_size=None if call % 2 else 4)
            wrong += not np.allclose(got, expected[i], rtol=1e-5, atol=1e-6)
        return wrong

    assert run_threads(work) == [0] * N_THREADS


@pytest.mark.parametrize("device", DEVICES)
def test_issue17_trainer_predict_and_evaluate_from_threads(device, switch_often):
    model = digits_model(device)
    trainer = fnn.Trainer(model, "cross_entropy", metrics=["accuracy", fnn.metrics.TopKAccuracy(k=2)], seed=0)
    sets = [data(i) for i in range(N_THREADS)]
    expected = [(trainer.predict(X), trainer.evaluate(X, y)) for X, y in sets]

    def work(i):
        X, y = sets[i]
        wrong = 0
        for _ in range(N_CALLS // 3):
            wrong += not np.array_equal(trainer.predict(X), expected[i][0])
            wrong += trainer.evaluate(X, y) != expected[i][1]
        return wrong

    assert run_threads(work) == [0] * N_THREADS


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_issue17_estimator_predict_from_threads(switch_often):
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier, MLPRegressor

    X, y = data(99, rows=200)
    clf = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=3, random_state=0).fit(X, y)
    reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=3, random_state=0).fit(X, X[:, :2])
    inputs = [data(i)[0] for i in range(N_THREADS)]
    expected = [(clf.predict_proba(X), clf.predict(X), reg.predict(X)) for X in inputs]

    def work(i):
        wrong = 0
        for _ in range(N_CALLS // 3):
            got = (clf.predict_proba(inputs[i]), clf.predict(inputs[i]), reg.predict(inputs[i]))
            wrong += not all(np.array_equal(g, e) for g, e in zip(got, expected[i]))
        return wrong

    assert run_threads(work) == [0] * N_THREADS


def test_issue17_an_unbuilt_model_is_built_once_by_racing_threads(switch_often):
    model = fnn.Sequential([fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(3)], seed=0)
    X = data(0)[0]
    results = run_threads(lambda i: model.predict(X))
    reference = fnn.Sequential([fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(3)], seed=0,
                               input_dim=64).predict(X)
    for got in results:
        np.testing.assert_array_equal(got, reference)


def test_issue17_predict_cache_is_bounded_over_20000_row_counts():
    # finding 7: one workspace view set per distinct row count, without bound (+36 MiB over
    # 20,000 sizes); now at most _Workspace.MAX_SIZES per layer and thread
    import tracemalloc

    model = fnn.Sequential([fnn.layers.Dense(3, activation="relu"), fnn.layers.Dense(2)], input_dim=2, seed=0,
                           device=DEVICE)
    X = np.ones((20_000, 2))
    model.predict(X, batch_size=len(X))  # the buffers grow to the largest size once
    for n in range(1, 18_001):  # 18,000 distinct sizes: the entries stay bounded
        model.predict(X[:n], batch_size=n)
    for layer in model.layers:
        assert len(layer._ws) <= layer._ws.MAX_SIZES
    tracemalloc.start()  # and 2,000 more sizes under tracemalloc (slower) keep no memory
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(18_001, 20_001):
            model.predict(X[:n], batch_size=n)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown


def test_workspaces_survive_copy_and_pickle():
    import copy
    import pickle

    layer = fnn.layers.Dense(3)
    fnn.Sequential([layer], input_dim=4, seed=0).predict(np.ones((2, 4)))
    for clone in (copy.deepcopy(layer._ws), pickle.loads(pickle.dumps(layer._ws))):
        assert clone.widths == layer._ws.widths and len(clone) == 0
