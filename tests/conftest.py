"""Shared fixtures. ``backend`` runs a test once per backend; REFERENCE (from _helpers) is the
NumPy oracle every backend is compared with."""

from __future__ import annotations

import pytest

from _helpers import REFERENCE  # noqa: F401  (re-exported: `from conftest import REFERENCE`)


def _make_backend(name):
    if name == "reference":
        from fastnn.backends.base import Backend

        return Backend()
    if name == "cpu":
        from fastnn.backends.cpu import CpuBackend

        return CpuBackend()
    # ---- issue 7: the CUDA backend goes here: build CudaBackend (on numba's simulator,
    # NUMBA_ENABLE_CUDASIM=1 set at the top of this file before numba is imported, when no GPU).
    raise ValueError(f"unknown backend {name!r}")


BACKENDS = [
    pytest.param("reference", id="reference"),
    pytest.param("cpu", id="cpu"),
    # ---- issue 7: add pytest.param("cuda", id="cuda") here.
]

_cache = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "fallback: the test expects CpuBackend to fall back to the "
                                       "NumPy reference (non-contiguous arrays, other dtypes)")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend in turn (one shared instance per backend and session)."""
    if request.param not in _cache:
        _cache[request.param] = _make_backend(request.param)
    return _cache[request.param]
