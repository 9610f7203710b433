"""Helpers shared by the tests: the NumPy reference backend (the oracle), comparisons, and
builders of model files (valid, hand-written or hostile)."""

from __future__ import annotations

import gc
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from fastnn.backends.base import Backend

#: The oracle: every backend's kernels are compared with these plain NumPy bodies.
REFERENCE = Backend()

#: Relative tolerance per dtype for one kernel against the float64 reference.
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def tol(dtype, factor=1.0):
    return TOL[np.dtype(dtype)] * factor


def assert_close(got, want, dtype, factor=1.0):
    """Elementwise |got - want| <= t (|want| + max|want| + 1), t = TOL[dtype] * factor: a
    relative check that does not demand relative accuracy where terms cancelled."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    t = tol(dtype, factor)
    scale = 1.0 + (np.abs(want).max() if want.size else 0.0)
    np.testing.assert_allclose(got, want, rtol=t, atol=t * scale)


def layout(a, kind):
    """The same values as ``a`` in another memory layout: 'C', 'F' (Fortran) or 'strided'."""
    if kind == "C":
        return np.ascontiguousarray(a)
    if kind == "F":
        return np.asfortranarray(a)
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    view = wide[..., ::2]
    assert not view.flags.c_contiguous or a.shape[-1] <= 1
    return view


def host_only(backend):
    """Skip unless the backend's arrays are NumPy arrays (non-contiguous inputs make sense only there)."""
    if backend.name not in ("reference", "cpu"):
        pytest.skip("host arrays only")


def classification_data(n=7, d=5, k=3, seed=1):
    """Standard normal features (n, d) and integer labels in [0, k)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def _cpu_built():
    """True when the compiled CPU backend (fastnn._ext) is built and importable."""
    try:
        from fastnn.backends import get_backend

        get_backend("cpu")
    except ImportError:
        return False
    return True


CPU_BUILT = _cpu_built()
needs_cpu = pytest.mark.skipif(not CPU_BUILT, reason="the compiled CPU backend (fastnn._ext) is not built")
#: both devices, cpu skipped when its extension is not built
DEVICES = [pytest.param("cpu", marks=needs_cpu), "reference"]
#: device for the tests where the device does not matter (errors are raised before any kernel)
DEVICE = "cpu" if CPU_BUILT else "reference"


def assert_steady_state_allocates_nothing(trainer, X, y, epochs=2):
    """After a warm-up epoch (workspaces, buffers, views), ``epochs`` more epochs of ``fit`` must
    not grow NumPy's allocation domain at all, nor Python's memory by more than 16 KiB."""
    trainer.fit(X, y, epochs=1, verbose=0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        trainer.fit(X, y, epochs=epochs, verbose=0)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    numpy_domain = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    grown = [s for s in after.filter_traces(numpy_domain).compare_to(before.filter_traces(numpy_domain), "lineno")
             if s.size_diff > 0]
    assert not grown, f"array memory grew in the steady state: {grown[:3]}"
    big = [s for s in after.compare_to(before, "lineno") if s.size_diff > 16_384]
    assert not big, f"memory grew in the steady state: {big[:3]}"


# ------------------------------------------------------------------ model files
def read_members(path):
    """{member name: bytes} of a zip file."""
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """Write {member name: bytes or str} as a zip file; returns ``path``."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def npy_bytes(arr, allow_pickle=False):
    """The .npy serialisation of ``arr``."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def with_meta(path, out, edit):
    """Copy the model file at ``path`` to ``out`` with model.json edited by ``edit(meta)``
    (which may return a replacement: a dict, or str/bytes written as is)."""
    members = read_members(path)
    meta = json.loads(members["model.json"])
    new = edit(meta)
    new = meta if new is None else new
    members["model.json"] = new if isinstance(new, (str, bytes)) else json.dumps(new)
    return write_zip(out, members)


def write_model_file(path, layers, input_dim, dtype="float32", metadata=None):
    """Write a model file by hand, in fastnn.io's format, for layer types this branch may not
    have (BatchNorm, Dropout). ``layers`` lists ``(type, config, {param name: array})``; the
    arrays are stored in the dicts' order. Returns ``path``."""
    entries, members = [], {}
    for i, (_, _, arrays) in enumerate(layers):
        for param, arr in arrays.items():
            name = f"arrays/{i}.{param}.npy"
            entries.append({"name": name, "layer": i, "param": param, "shape": list(np.shape(arr))})
            members[name] = npy_bytes(np.asarray(arr, dtype=dtype))
    meta = {"format": "fastnn.model", "format_version": 1, "fastnn_version": "0.1.0",
            "model": {"input_dim": input_dim, "dtype": dtype, "seed": 0,
                      "layers": [{"type": kind, "config": config} for kind, config, _ in layers]},
            "arrays": entries, "metadata": metadata or {}}
    return write_zip(path, {"model.json": json.dumps(meta), **members})
