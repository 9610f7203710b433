"""Training on device='cuda' end to end (against the CPU and reference devices), the device
plumbing (is_available, info, errors), and the host-side index checks of the CUDA backend."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import fastnn as fnn
from _helpers import assert_close, read_members
from fastnn.backends import get_backend

L = fnn.layers


def _model(device, dtype, seed=0):
    return fnn.Sequential([L.Dense(8, activation="relu"), L.BatchNorm(), L.Dropout(0.25), L.Dense(6, activation="gelu"),
                           L.Dense(3)], input_dim=5, seed=seed, device=device, dtype=dtype)


def _data(n=24):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


def _train(device, dtype, epochs=2, clip_norm=0.3, l1=1e-3, l2=1e-2):
    X, y = _data()
    model = _model(device, dtype)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(0.01), batch_size=8, metrics=["accuracy"],
                          seed=3, augment=[fnn.augment.GaussianNoise(0.1)], clip_norm=clip_norm, l1=l1, l2=l2)
    history = trainer.fit(X, y, epochs=epochs, verbose=0)
    return model, trainer, history, X


@pytest.mark.parametrize("dtype, other", [("float64", "reference"), ("float32", "cpu")])
def test_training_on_cuda_matches_the_host_devices(dtype, other):
    """Shuffled minibatches gathered on the device, Dropout and noise from the same counter-based
    streams, BatchNorm, Adam: the same weights and logs as the host devices, within rounding."""
    model, _, history, X = _train("cuda", dtype)
    ref, _, ref_history, _ = _train(other, dtype)
    factor = 1e3 if dtype == "float32" else 1e2  # two epochs of float32 rounding in different orders
    for got, want in zip(model.get_weights(), ref.get_weights()):
        assert_close(got, want, np.dtype(dtype), factor=factor)
    for key in ("loss", "accuracy", "grad_norm"):
        assert_close(np.array(history.history[key]), np.array(ref_history.history[key]), np.dtype(dtype),
                     factor=factor)
    pred = model.predict(X)
    assert isinstance(pred, np.ndarray) and pred.dtype == np.dtype(dtype)
    assert_close(pred, ref.predict(X), np.dtype(dtype), factor=factor)


def test_training_reads_the_device_once_per_epoch(monkeypatch):
    X, y = _data(24)
    model = _model("cuda", "float32")
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9), batch_size=4,
                          metrics=["accuracy"], clip_norm=0.5, l2=1e-3, seed=0)
    trainer.fit(X, y, epochs=1, verbose=0)  # warm-up: buffers
    backend = model.backend
    reads = []
    monkeypatch.setattr(backend, "to_numpy", lambda a, real=backend.to_numpy: reads.append(1) or real(a))
    launches = backend.launches
    trainer.fit(X, y, epochs=1, verbose=0)
    # the loss, the gradient norm, the penalty, the metric's outputs and targets; never a read
    # per batch (6 batches here; clip_norm and l2 are computed on the device), and TerminateOnNaN
    # keeps its snapshot of the parameters on the device (its sum of squares is one scalar)
    assert len(reads) == 5
    per_step = (backend.launches - launches) / 6
    assert 10 <= per_step <= 40, per_step


def test_divergence_is_caught_at_the_end_of_the_epoch():
    X, y = _data()
    model = fnn.Sequential([L.Dense(3)], input_dim=5, seed=0, device="cuda")
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(1e6), batch_size=8, seed=0)
    with pytest.raises(fnn.TrainingDiverged, match=r"the loss became (nan|inf) at epoch \d, found at the epoch's end: "
                                                   r"the device reads its loss once per epoch; the weights were "
                                                   r"restored to the last finite ones"):
        trainer.fit(X * 1e3, np.ones((len(X), 3)), epochs=5, verbose=0)
    assert np.isfinite(model.get_weights()[0]).all()  # TerminateOnNaN's snapshot, kept on the device


def test_model_to_cuda_and_back_and_the_saved_file_is_the_same(tmp_path):
    model, _, _, X = _train("cpu", "float32", epochs=1)
    want = model.predict(X)
    assert model.to("cuda").device == "cuda"
    assert_close(model.predict(X), want, np.float32, factor=10)
    fnn.io.save_model(model, tmp_path / "gpu.fnn")
    model.to("cpu")
    fnn.io.save_model(model, tmp_path / "cpu.fnn")
    assert read_members(tmp_path / "gpu.fnn") == read_members(tmp_path / "cpu.fnn")
    loaded = fnn.load(tmp_path / "gpu.fnn", device="cuda")
    assert_close(loaded.predict(X), want, np.float32, factor=10)


def test_host_indices_and_labels_are_checked_before_upload():
    backend = get_backend("cuda")
    x = backend.asarray(np.ones((5, 3), np.float32))
    out = backend.zeros((2, 3), np.float32)
    for bad in (5, -6):
        with pytest.raises(IndexError, match=rf"take_rows: index {bad} is out of bounds for 5 rows"):
            backend.take_rows(x, np.array([0, bad], np.int64), out=out)
    loss_out = backend.zeros((1,), np.float64)
    with pytest.raises(ValueError, match=r"cross_entropy: target labels must be in \[0, 3\); got -1"):
        backend.cross_entropy(x, np.array([0, -1, 1, 2, 0], np.int64), loss_out=loss_out)
    with pytest.raises(IndexError, match=r"mixup: index 5 is out of bounds for 5 rows"):
        backend.mixup(x, np.array([0, 5, 1, 2, 3], np.int64), 0.5)
    # device labels are trusted: an out-of-range row adds nothing and gets a zero gradient
    grad = backend.zeros((5, 3), np.float32)
    backend.cross_entropy(x, backend.asarray(np.array([0, 7, 1, 2, 0], np.int64)), loss_out=loss_out, grad=grad)
    assert_close(backend.to_numpy(loss_out)[0], 4 * np.log(3.0), np.float32)
    np.testing.assert_array_equal(backend.to_numpy(grad)[1], 0.0)


def test_outputs_must_be_device_arrays():
    backend = get_backend("cuda")
    with pytest.raises(TypeError, match=r"activation: out must be a device array on the cuda backend; got ndarray"):
        backend.activation("relu", np.ones((2, 2), np.float32), out=np.empty((2, 2), np.float32))
    with pytest.raises(TypeError, match=r"mse: loss_out must be a float64 device array of shape \(1,\)"):
        backend.mse(np.ones((2, 2)), np.ones((2, 2)), loss_out=np.zeros(1))


def test_the_backend_has_the_interface():
    from test_interface import (test_defines_only_backend_methods_with_the_same_signatures,
                                test_every_registered_operation_has_conformance_tests,
                                test_registered_implementations_follow_their_specs)

    from fastnn.backends import _adapter
    from fastnn.backends._ops import SPECS
    from fastnn.backends.cuda import CudaBackend

    test_defines_only_backend_methods_with_the_same_signatures(CudaBackend)
    test_registered_implementations_follow_their_specs(CudaBackend)
    test_every_registered_operation_has_conformance_tests(CudaBackend)
    assert _adapter.registered(CudaBackend) == set(SPECS)  # every operation has a device kernel


def test_is_available_means_a_real_gpu_and_info_says_so():
    simulated = fnn.cuda.simulated()
    info = fnn.info()["devices"]["cuda"]
    assert info["simulated"] is simulated
    assert fnn.cuda.is_available() is (not simulated) is info["available"]
    assert ("name" in info) is info["available"]
    assert info["numba_cuda"]


def test_unknown_gemm_route_is_a_value_error():
    from fastnn.backends.cuda import CudaBackend

    with pytest.raises(ValueError, match=r"CudaBackend: unknown gemm 'blas'; choose one of 'auto', 'tiled'"):
        CudaBackend(gemm="blas")


def test_an_operation_added_beside_its_user_is_launched_by_name_or_round_trips():
    """A new optimizer's update on CUDA: a kernel of its name in _cuda_kernels taking the spec's
    parameters in order is launched after the spec's checks; without one the reference runs on
    host copies. cuda.py does not change."""
    from numba import cuda

    from fastnn.backends import _adapter
    from fastnn.backends import cuda as cuda_backend
    from fastnn.backends._ops import SPECS, In, InOut
    from fastnn.backends.base import Backend

    def toy_update(self, p, g, buf, *, lr, use_buf=False):
        """p -= lr sign(g) (+ buf when use_buf)."""
        step = np.sign(np.asarray(g, np.float64)) + (np.asarray(buf, np.float64) if use_buf else 0.0)
        p[...] = np.asarray(p, np.float64) - lr * step

    ns = {"cuda": cuda}  # a kernel's `cuda` must be a global of its module (the simulator swaps it)
    exec("def toy_kernel(p, g, buf, lr, use_buf):\n"
         "    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):\n"
         "        s = 1.0 if g[i] > 0 else (-1.0 if g[i] < 0 else 0.0)\n"
         "        p[i] -= lr * (s + (buf[i] if use_buf else 0.0))\n", ns)
    toy_kernel = cuda.jit(ns["toy_kernel"])

    class Kernels:
        toy_update = toy_kernel

    backend = get_backend("cuda")
    try:
        _adapter.add_operation(toy_update, InOut("p", "n", required="p must be an array"), In("g", "n"),
                               In("buf", "n", used=lambda v: v["use_buf"]), anchor="p")
        assert "toy_update" not in _adapter.registered(cuda_backend.CudaBackend)  # a host round trip for now
        p = backend.asarray(np.ones(5))
        backend.toy_update(p, backend.asarray(np.array([1.0, -1, 0, 2, -3])), None, lr=0.5)
        np.testing.assert_array_equal(backend.to_numpy(p), [0.5, 1.5, 1.0, 0.5, 1.5])
        cuda_backend._launch_by_name(SPECS["toy_update"], kernels=Kernels)
        assert "toy_update" in _adapter.registered(cuda_backend.CudaBackend)
        impl = cuda_backend.CudaBackend.toy_update.__wrapped_impl__  # the operation's parameters, not *args
        assert tuple(inspect.signature(impl).parameters) == ("self", "p", "g", "buf", "lr", "use_buf")
        launches = backend.launches
        backend.toy_update(p, backend.asarray(np.ones(5)), backend.asarray(np.full(5, 2.0)), lr=0.25, use_buf=True)
        assert backend.launches == launches + 1
        np.testing.assert_array_equal(backend.to_numpy(p), [-0.25, 0.75, 0.25, -0.25, 0.75])
        with pytest.raises(ValueError, match=r"^toy_update: g must have shape \(5,\); got \(4,\)\.$"):
            backend.toy_update(p, backend.asarray(np.ones(4)), None, lr=0.5)
    finally:
        SPECS.pop("toy_update", None)
        cuda_backend.KERNELS.pop("toy_update", None)
        for cls in (Backend, cuda_backend.CudaBackend):
            if "toy_update" in vars(cls):
                delattr(cls, "toy_update")
        impl = cuda_backend.CudaBackend.implemented
        cuda_backend.CudaBackend.implemented = impl - {"toy_update"}
