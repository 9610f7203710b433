"""fastnn.inference's compiled engine (fastnn._ext.infer through fastnn._chain) against its NumPy
engine, on both of its float32 product kernels (fastnn's own AVX-512 panels where the CPU has
them, OpenBLAS's): every activation and folding case, float32 and float64, one row, odd sizes,
the panel and row-block edges and chunk boundaries, the splits over the pool (1, 2 and 3
threads), concurrent and forked callers, an idle pool asleep, Sequential.predict over live
parameters, and the options' errors."""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time

import numpy as np
import pytest

import fastnn as fnn
import fastnn.inference as inference
from fastnn import _chain
from fastnn.backends.base import ACTIVATIONS

from _helpers import assert_close, write_model_file
from _models import folding_cases

L = fnn.layers
infer = pytest.importorskip("fastnn._ext.infer")


def _pair(model, dtype=None):
    """(compiled, numpy) InferenceModels of ``model``."""
    return (inference.InferenceModel.from_sequential(model, dtype, engine="compiled"),
            inference.InferenceModel.from_sequential(model, dtype, engine="numpy"))


def _inputs(n, width, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((n, width)).astype(dtype)


PANELS = infer.panels_available()


@pytest.fixture(params=["fastnn-avx512", "openblas"])
def kernels(request, monkeypatch):
    """Runs a test on each float32 product kernel of the compiled engine (the AVX-512 one where the
    CPU has it); float64 is always OpenBLAS's."""
    if request.param == "fastnn-avx512" and not PANELS:
        pytest.skip("this CPU has no AVX-512F: fastnn's own kernels do not run here")
    monkeypatch.setattr(_chain, "PANELS", request.param == "fastnn-avx512")
    return request.param


def _expect_kernels(model, kernels):
    assert model.kernels == (kernels if model.dtype == np.float32 else "openblas")


@pytest.fixture
def threads():
    """Restores the engine's thread count after a test that changes it."""
    before = inference.get_num_threads()
    yield
    inference.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_matches_the_numpy_engine(activation, dtype, kernels):
    model = fnn.Sequential([L.Dense(9, activation=activation), L.Dense(5, activation=activation),
                            L.Activation(activation), L.Dense(3)], input_dim=7, seed=1, dtype=dtype)
    compiled, numpy = _pair(model)
    assert (compiled.engine, numpy.engine, numpy.kernels) == ("compiled", "numpy", "numpy")
    _expect_kernels(compiled, kernels)
    for n in (1, 2, 5, 33):
        X = _inputs(n, 7, dtype) * 3
        assert_close(compiled.predict(X), numpy.predict(X), dtype, factor=8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(folding_cases()))
def test_every_folding_case_matches_the_numpy_engine(tmp_path, case, dtype, kernels):
    layers, n_in, _ = folding_cases()[case]
    path = write_model_file(tmp_path / "m.fnn", layers, n_in, dtype=dtype)
    compiled, numpy = inference.load(path, engine="compiled"), inference.load(path, engine="numpy")
    _expect_kernels(compiled, kernels)
    assert [s[:4] for s in compiled.steps] == [s[:4] for s in numpy.steps]
    X = _inputs(17, n_in, dtype)
    assert_close(compiled.predict(X), numpy.predict(X), dtype, factor=8)
    assert_close(compiled.predict(X[:1]), numpy.predict(X[:1]), dtype, factor=8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_one_row_split_over_the_pool_matches(dtype, n_threads, threads, kernels):
    # 600 x 512 and 512 x 520 are past the split threshold (k n >= 2^18); 520 columns end in a
    # part that is not a multiple of 16 (nor of a 32-column panel); softmax last (applied after
    # the parts)
    model = fnn.Sequential([L.Dense(512, activation="gelu"), L.Dense(520, activation="relu"),
                            L.Dense(10, activation="softmax")], input_dim=600, seed=2, dtype=dtype)
    inference.set_num_threads(n_threads)
    compiled, numpy = _pair(model)
    _expect_kernels(compiled, kernels)
    for seed in range(3):
        X = _inputs(1, 600, dtype, seed)
        assert_close(compiled.predict(X), numpy.predict(X), dtype, factor=8)
    item = np.dtype(dtype).itemsize
    if compiled.kernels == "fastnn-avx512":
        # every dense weight in panels of 32 columns, the last one padded: 512, 544 and 32 columns
        assert compiled._runner.packed_bytes == (600 * 512 + 512 * 544 + 520 * 32) * item
    elif n_threads == 2:
        # the weights were packed into two column blocks per split layer at load
        assert compiled._runner.packed_bytes == (600 * 512 + 512 * 520) * item
    else:
        assert compiled._runner.packed_bytes == 0
    if n_threads == 2:
        assert infer.pool_workers() >= 1
        inference.set_num_threads(3)  # three parts (OpenBLAS: read in place, with W's row stride)
        X = _inputs(1, 600, dtype, 9)
        assert_close(compiled.predict(X), numpy.predict(X), dtype, factor=8)


@pytest.mark.skipif(not PANELS, reason="this CPU has no AVX-512F: fastnn's own kernels do not run here")
@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("widths, last", [
    ((1,), "identity"),                    # one column: a panel of 31 zeros
    ((16, 31), "sigmoid"),                 # half a panel, one short of a panel
    ((32, 33), "softmax"),                 # a whole panel, one over
    ((65, 520), "relu"),                   # 520 x 65 under the panel split, then 65 x 520 over it
    ((600, 520, 3), "softmax"),            # split by panels, then a softmax on 3 outputs
    ((600,), "softmax"),                   # a softmax over a product split by panels
])
def test_panel_kernels_at_their_edges(widths, last, n_threads, threads):
    # rows around the 12-row register block, the 192-row cache block and a split over the threads
    *hidden, out = widths
    layers = [L.Dense(w, activation="relu") for w in hidden] + [L.Dense(out, activation=last)]
    model = fnn.Sequential(layers, input_dim=520, seed=12, dtype="float32")
    inference.set_num_threads(n_threads)
    compiled, numpy = _pair(model)
    assert compiled.kernels == "fastnn-avx512"
    for rows in (1, 2, 11, 12, 13, 191, 192, 193, 385, 1001):
        X = _inputs(rows, 520, "float32", rows) * 2
        assert_close(compiled.predict(X), numpy.predict(X), "float32", factor=8)


@pytest.mark.parametrize("rows, where", [(1, (0, 7)), (2, (1, 0)), (600, (577, 3)), (5000, (13, 517))])
def test_a_nan_is_found_by_the_screen_on_every_path(rows, where, threads, kernels):
    # the screen sees the first step's pre-activation (a fused ReLU would turn NaN into 0)
    inference.set_num_threads(2)
    model = fnn.Sequential([L.Dense(600, activation="relu"), L.Dense(520, activation="relu"), L.Dense(4)],
                           input_dim=520, seed=13)
    compiled, numpy = _pair(model)
    X = _inputs(rows, 520, "float32")
    assert_close(compiled.predict(X), numpy.predict(X), "float32", factor=8)
    X[where] = np.nan
    with pytest.raises(ValueError, match=rf"X contains NaN or inf \(first at index \[{where[0]}, {where[1]}\]"):
        compiled.predict(X)


def test_info_names_the_inference_kernels():
    info = fnn.info()["inference"]
    assert info["engine"] == "compiled" and info["threads"] == inference.get_num_threads()
    assert info["float32_kernels"] == ("fastnn-avx512" if PANELS else "openblas")


@pytest.mark.parametrize("rows", [1, 4095, 4096, 4097, 8193])
def test_chunk_boundaries(rows, kernels):
    model = fnn.Sequential([L.Dense(16, activation="tanh"), L.BatchNorm(), L.Dense(4)], input_dim=6, seed=3)
    compiled, numpy = _pair(model)
    _expect_kernels(compiled, kernels)
    X = _inputs(rows, 6, "float32")
    assert_close(compiled.predict(X), numpy.predict(X), "float32", factor=8)
    assert_close(compiled.predict(X, batch_size=1000), numpy.predict(X), "float32", factor=8)


def test_a_nan_in_a_large_input_is_found_through_the_first_product():
    model = fnn.Sequential([L.Dense(8, activation="relu"), L.Dense(2)], input_dim=64, seed=4)
    compiled, _ = _pair(model)
    X = _inputs(5000, 64, "float32")  # screened through the first product
    X[4321, 17] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index \[4321, 17\]: inf\)"):
        compiled.predict(X)


def test_concurrent_predicts_agree(threads, kernels):
    inference.set_num_threads(2)
    model = fnn.Sequential([L.Dense(512, activation="relu"), L.Dense(512, activation="relu"), L.Dense(10)],
                           input_dim=784, seed=5)
    compiled, numpy = _pair(model)
    X = _inputs(64, 784, "float32")
    want = [numpy.predict(X[i:i + 1]) for i in range(64)] + [numpy.predict(X)]
    errors = []

    def work(k):
        try:
            for _ in range(20):
                for i in range(k, 64, 4):
                    assert_close(compiled.predict(X[i:i + 1]), want[i], "float32", factor=8)
                assert_close(compiled.predict(X), want[-1], "float32", factor=8)
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert errors == []


def _forked_predict(model, X, queue):
    queue.put(model.predict(X))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_predicts_with_a_pool_of_its_own(threads):
    inference.set_num_threads(2)
    model = fnn.Sequential([L.Dense(1024, activation="relu"), L.Dense(3)], input_dim=512, seed=6)
    compiled, numpy = _pair(model)
    X = _inputs(1, 512, "float32")
    compiled.predict(X)  # the parent's pool is running
    assert infer.pool_workers() >= 1
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_predict, args=(compiled, X, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert_close(got, numpy.predict(X), "float32", factor=8)
    assert_close(compiled.predict(X), got, "float32", factor=8)  # the parent's pool still works


def test_an_idle_pool_sleeps(threads):
    inference.set_num_threads(2)
    model = fnn.Sequential([L.Dense(1024, activation="relu"), L.Dense(3)], input_dim=512, seed=7)
    compiled, _ = _pair(model)
    compiled.predict(_inputs(1, 512, "float32"))
    time.sleep(0.05)  # past the spin time (50 us)
    before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(0.5)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.1, f"the process used {cpu:.2f} s of CPU in 0.5 s idle: a worker spins"


def test_nothing_is_started_at_import():
    code = ("import fastnn.inference, sys, threading; "
            "assert 'fastnn._ext.infer' not in sys.modules and threading.active_count() == 1; print('ok')")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_sequential_predict_follows_training():
    X = _inputs(200, 10, "float32")
    y = (X[:, 0] > 0).astype(np.int64)
    model = fnn.Sequential([L.Dense(16, activation="relu"), L.Dropout(0.2), L.Dense(2)], input_dim=10, seed=8)
    before = model.predict(X)
    runner = model._compiled_predictor()
    assert runner is not None  # the compiled chain over the live parameters
    fnn.Trainer(model, loss="cross_entropy", optimizer="adam", batch_size=20).fit(X, y, epochs=3, verbose=0)
    ref = fnn.Sequential([L.Dense(16, activation="relu"), L.Dropout(0.2), L.Dense(2)], input_dim=10, seed=8,
                         device="reference")
    ref.set_weights(model.get_weights())
    after = model.predict(X)
    assert not np.allclose(after, before)
    assert_close(after, ref.predict(X), "float32", factor=8)
    assert model._compiled_predictor() is runner  # the same chain: it reads the parameters in place


def test_sequential_predict_runs_layer_by_layer_where_a_layer_cannot_join():
    model = fnn.Sequential([L.Dense(4, activation="relu"), L.BatchNorm(), L.Dense(2)], input_dim=3, seed=9)
    assert model._compiled_predictor() is None  # BatchNorm has no inference_step
    model = fnn.Sequential([L.Dense(4), L.Dense(2)], input_dim=3, seed=9, device="reference")
    assert model._compiled_predictor() is None
    model = fnn.Sequential([L.Dense(4), L.Dense(2)], input_dim=3, seed=9)
    model.layers[0].forward = lambda x, training=False, skip_activation=False: x  # replaced on the instance
    assert model._compiled_predictor() is None


def test_compiled_engine_unavailable(monkeypatch, tmp_path):
    model = fnn.Sequential([L.Dense(2)], input_dim=3, seed=10)
    path = tmp_path / "m.fnn"
    model.save(path)
    monkeypatch.setattr(_chain, "module", lambda: None)
    monkeypatch.setitem(_chain._STATE, "reason", "ImportError: blocked by the test")
    assert inference.load(path).engine == "numpy"
    with pytest.raises(ImportError, match=r"^fastnn.inference: engine='compiled' needs fastnn's compiled kernels, "
                                          r"which cannot be imported here \(ImportError: blocked by the test\); "
                                          r".*or pass engine='numpy'"):
        inference.load(path, engine="compiled")


@pytest.mark.parametrize("call, error, match", [
    (lambda p: inference.load(p, engine="fast"), ValueError,
     r"^fastnn.inference.load: unknown engine 'fast'; choose one of 'auto', 'compiled', 'numpy'\.$"),
    (lambda p: inference.set_num_threads(0), ValueError, r"^fastnn.inference.set_num_threads: n must be"),
    (lambda p: inference.set_num_threads(65), ValueError, r"^fastnn.inference.set_num_threads: n must be"),
    (lambda p: inference.set_num_threads(2.0), TypeError,
     r"^fastnn.inference.set_num_threads: n must be an integer; got 2.0"),
])
def test_bad_options_are_refused(tmp_path, call, error, match, threads):
    path = tmp_path / "m.fnn"
    fnn.Sequential([L.Dense(2)], input_dim=3, seed=11).save(path)
    with pytest.raises(error, match=match):
        call(path)


def test_the_thread_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("FASTNN_INFERENCE_THREADS", "3")
    assert _chain.default_threads() == 3
    monkeypatch.setenv("FASTNN_INFERENCE_THREADS", "lots")
    with pytest.raises(ValueError, match=r"^FASTNN_INFERENCE_THREADS='lots' is not a thread count; set it to a "
                                         r"whole number from 1 to 64, or unset it\.$"):
        _chain.default_threads()
    monkeypatch.delenv("FASTNN_INFERENCE_THREADS")
    assert 1 <= _chain.default_threads() <= 8


def test_set_num_threads_returns_the_previous_value(threads):
    inference.set_num_threads(3)
    assert inference.set_num_threads(1) == 3 and inference.get_num_threads() == 1 and infer.get_threads() == 1
