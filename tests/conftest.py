"""Shared fixtures. ``backend`` runs a test once per backend; REFERENCE (from _helpers) is the
NumPy oracle every backend is compared with."""

from __future__ import annotations

import os

import pytest

from _helpers import REFERENCE  # noqa: F401  (re-exported: `from conftest import REFERENCE`)


def _make_backend(name):
    if name == "reference":
        from fastnn.backends.base import Backend

        return Backend()
    if name == "cpu":
        from fastnn.backends.cpu import CpuBackend

        return CpuBackend()
    if name == "cuda":  # tests/cuda (its own run, with NUMBA_ENABLE_CUDASIM set) runs the suite on it
        from fastnn.backends import get_backend

        return get_backend("cuda")
    raise ValueError(f"unknown backend {name!r}")


BACKENDS = [
    pytest.param("reference", id="reference"),
    pytest.param("cpu", id="cpu"),
]
#: tests/cuda imports numba (and its simulator): collected only in its own run, with
#: NUMBA_ENABLE_CUDASIM set (1: the simulator; 0: a real GPU), never in the CPU run.
collect_ignore = [] if "NUMBA_ENABLE_CUDASIM" in os.environ else ["cuda"]

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
