"""Solo spans (csrc/_blas.pxd): while a large model trains, fastnn's own pool runs the float
products (OpenBLAS's jobs handed to it through OpenBLAS's threads callback, or, without one,
OpenBLAS on one thread and the products split by fastnn), the optimizer's update and the
minibatch gather. Both ways agree with the reference and with OpenBLAS's own threads, the bits
repeat, the gather is np.take's, and OpenBLAS's state comes back after every span."""

import ctypes
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn.backends.base import Backend
from test_chain import _stack

cpu = pytest.importorskip("fastnn.backends.cpu", reason="the compiled CPU backend is not built")
from fastnn._ext import blas as _blas  # noqa: E402
from fastnn._ext import dense as _dense  # noqa: E402
from fastnn._ext import memory as _memory  # noqa: E402

L = fnn.layers
pytestmark = pytest.mark.skipif(cpu.get_num_threads() is None or _blas.solo_mode() == "off",
                                reason="no solo spans here (OpenBLAS's threads cannot be set, Windows, FASTNN_SOLO=0)")


MODES = ["callback", "split"]


@pytest.fixture
def two_threads():
    old = cpu.get_num_threads()
    fnn.set_num_threads(2)
    was, cb = _blas.set_solo(True), _blas.set_solo_callback(True)
    yield
    _blas.set_solo_callback(cb)
    _blas.set_solo(was)
    fnn.set_num_threads(old)


def _mode(mode):
    """Make solo spans run ``mode``; skip where this OpenBLAS has no threads callback."""
    _blas.set_solo_callback(mode == "callback")
    if _blas.solo_mode() != mode:
        pytest.skip(f"this OpenBLAS cannot run solo spans as {mode!r}")


def _callback_pointer():
    """OpenBLAS's installed threads callback (None: its own threads), where it exports the variable."""
    try:
        return ctypes.c_void_p.in_dll(cpu._state["lib"], "openblas_threads_callback_").value
    except ValueError:
        pytest.skip("this OpenBLAS does not export openblas_threads_callback_")


# 600 x 1000 weights (at least SOLO_WEIGHTS); the products are split by columns (n > m) and by rows
# (m > n), with A or B transposed in the backward, into uneven runs of 16 (1000, 33, 529, 67)
ROWS, WIDTHS, ACTS = 67, (600, 1000, 33, 529), ("relu", "gelu", "identity")


def _run(dtype, first, solo):
    _blas.set_solo(solo)
    calls = _blas.callback_spawns()
    steps = _stack(np.random.default_rng(3), dtype, ROWS, WIDTHS, ACTS, first)
    chain = cpu.CpuBackend().dense_chain(steps, first)
    assert isinstance(chain, cpu._ChainCalls) and chain.chain.solo
    rng = np.random.default_rng(4)
    x, dy = rng.standard_normal((ROWS, WIDTHS[0])).astype(dtype), rng.standard_normal((ROWS, WIDTHS[-1])).astype(dtype)
    out = chain.forward(x).copy()
    chain.backward(dy)
    assert _blas.callback_spawns() == calls  # every job ran on the pool
    return out, [[a.copy() if a is not None else None for a in st[4:]] for st in steps]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chain_in_solo_spans_matches_the_reference_and_openblas_threads(two_threads, dtype, first, mode):
    _mode(mode)
    assert 600 * 1000 >= _dense.SOLO_WEIGHTS
    got_out, got = _run(dtype, first, True)
    again_out, again = _run(dtype, first, True)
    obl_out, obl = _run(dtype, first, False)
    want_steps = _stack(np.random.default_rng(3), dtype, ROWS, WIDTHS, ACTS, first)
    reference = Backend().dense_chain(want_steps, first)
    rng = np.random.default_rng(4)
    x, dy = rng.standard_normal((ROWS, WIDTHS[0])).astype(dtype), rng.standard_normal((ROWS, WIDTHS[-1])).astype(dtype)
    want_out = reference.forward(x).copy()
    reference.backward(dy)
    eps = 1e-4 if dtype == np.float32 else 1e-11

    def close(a, b):  # the weights are not scaled: tolerances relative to the array's largest value
        np.testing.assert_allclose(a, b, rtol=10 * eps, atol=eps * np.abs(b).max())

    close(got_out, want_out)
    np.testing.assert_array_equal(got_out, again_out)  # same threads, same bits
    close(got_out, obl_out)
    for g, a, o, w in zip(got, again, obl, want_steps):
        for gi, ai, oi, wi in zip(g, a, o, w[4:]):  # z, y, dw, db, dx
            assert (gi is None) == (wi is None)
            if gi is not None:
                close(gi, wi)
                np.testing.assert_array_equal(gi, ai)
                close(gi, oi)


def test_small_chains_keep_openblas_threads(two_threads):
    steps = _stack(np.random.default_rng(3), np.float32, 5, (7, 9, 4), ("relu", "identity"), 0)
    assert not cpu.CpuBackend().dense_chain(steps, 0).chain.solo


def test_a_split_span_holds_openblas_at_one_thread_and_restores_its_count(two_threads):
    _mode("split")
    threads = cpu._state["threads"][1]  # OpenBLAS's own count
    assert _blas.solo_begin()
    try:
        assert threads() == 1 and fnn.get_num_threads() == 2  # fastnn's pool keeps two
        assert _blas.solo_begin()  # nested
        _blas.solo_end()
        assert threads() == 1
        fnn.set_num_threads(3)  # set inside a span: what the span restores
        assert fnn.get_num_threads() == 3
    finally:
        _blas.solo_end()
    assert threads() == 3 and fnn.get_num_threads() == 3
    with pytest.raises(RuntimeError, match="no solo span"):
        _blas.solo_end()
    _blas.set_solo(False)
    assert not _blas.solo_begin() and _blas.solo_mode() == "off"  # turned off: nothing begins


def test_a_callback_span_installs_the_callback_and_removes_it(two_threads):
    _mode("callback")
    assert _callback_pointer() is None
    assert _blas.solo_begin()
    try:
        assert _callback_pointer() is not None and cpu._state["threads"][1]() == 2
        assert _blas.solo_begin()  # nested: still installed after the inner end
        _blas.solo_end()
        assert _callback_pointer() is not None
        with pytest.raises(RuntimeError, match="a solo span is open"):
            _blas.set_solo_callback(False)
    finally:
        _blas.solo_end()
    assert _callback_pointer() is None and cpu._state["threads"][1]() == 2


def test_openblas_jobs_called_from_inside_a_pool_task_get_threads_of_their_own(two_threads):
    _mode("callback")
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((300, 257)), rng.standard_normal((257, 310))  # OpenBLAS splits it
    c = np.zeros((300, 310))
    spawns = _blas.callback_spawns()
    assert _blas.solo_begin()
    try:
        _blas._product_in_pool_task(a, b, c)  # the pool is held by the task: its jobs cannot have it
    finally:
        _blas.solo_end()
    np.testing.assert_allclose(c, a @ b, rtol=1e-12, atol=1e-12)
    assert _blas.callback_spawns() == spawns + 1


def test_numpy_products_in_another_thread_during_spans_are_right(two_threads):
    _mode("callback")
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((400, 300)), rng.standard_normal((300, 350))
    want, bad = a @ b, []

    def other():
        for _ in range(30):
            if not np.allclose(a @ b, want, rtol=1e-12, atol=1e-12):
                bad.append(1)

    t = threading.Thread(target=other)
    t.start()
    for _ in range(10):
        _run(np.float32, 0, True)
    t.join(timeout=60)
    assert not t.is_alive() and not bad


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("rows", [1, 9, 131])
def test_the_gather_shared_over_the_pool_is_np_take(two_threads, dtype, rows):
    rng = np.random.default_rng(rows)
    x = (rng.standard_normal((1000, 601)) * 100).astype(dtype)  # 131 rows: over 64 KiB, split
    idx = rng.integers(-1000, 1000, rows).astype(np.int64)
    out = np.zeros((rows, 601), dtype)
    assert _blas.solo_begin()
    try:
        _memory.take_rows(x, idx, out)
        np.testing.assert_array_equal(out, np.take(x, idx, axis=0))
        idx[-1] = 1000
        with pytest.raises(IndexError, match="index 1000 is out of bounds"):
            _memory.take_rows(x, idx, np.zeros((rows, 601), dtype))
    finally:
        _blas.solo_end()


def _fit(solo, callbacks=None):
    _blas.set_solo(solo)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((700, 128)).astype(np.float32), rng.integers(0, 3, 700)
    model = fnn.Sequential([L.Dense(4200, activation="relu"), L.Dense(3)], input_dim=128, seed=1)
    assert model.n_params >= _dense.SOLO_WEIGHTS
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(lr=1e-3), batch_size=128, seed=0)
    trainer.fit(X, y, epochs=2, verbose=0, callbacks=callbacks)
    return model.params.copy()


@pytest.mark.parametrize("mode", MODES)
def test_training_a_large_model_repeats_its_bits_and_restores_openblas(two_threads, mode):
    _mode(mode)
    a, b, c = _fit(True), _fit(True), _fit(False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-3, atol=2e-3)  # OpenBLAS's threads sum in another order (lr 1e-3)
    assert cpu._state["threads"][1]() == 2

    class Boom(fnn.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        _fit(True, callbacks=[Boom()])
    assert cpu._state["threads"][1]() == 2 and fnn.get_num_threads() == 2
    if mode == "callback":
        assert _callback_pointer() is None
