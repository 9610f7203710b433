"""Shared fixtures. ``backend`` runs a test once per backend; REFERENCE (from _helpers) is the
NumPy oracle every backend is compared with."""

from __future__ import annotations

import os
from pathlib import Path

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


def _compares_with_the_reference(item):
    """True for a test run on the reference backend that compares the backend with the reference
    (by the project's naming: ``..._matches_reference``, ``..._equal_the_reference...``,
    ``..._go_to_the_reference``): it would compare the reference with itself and could not fail."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("backend") == "reference" and "reference" in item.originalname


def pytest_collection_modifyitems(config, items):
    """Deselect the reference backend's runs of the conformance tests: a fast backend is compared
    with the reference; the reference itself is checked against independent values (gradient
    checks, hand-worked steps, torch's recorded trajectories) elsewhere. The long fuzzing
    campaign (marker ``fuzz``) runs only when ``-m`` names it (``pytest -m fuzz``)."""
    if "fuzz" not in (config.getoption("markexpr") or ""):
        campaign = [item for item in items if item.get_closest_marker("fuzz") is not None]
        if campaign:
            config.hook.pytest_deselected(items=campaign)
            items[:] = [item for item in items if item.get_closest_marker("fuzz") is None]
    here = Path(__file__).parent
    vacuous = [item for item in items if (here / "backends" in Path(item.path).parents
                                          or Path(item.path).name == "test_gradcheck.py")
               and _compares_with_the_reference(item)]
    if vacuous:
        config.hook.pytest_deselected(items=vacuous)
        drop = set(vacuous)
        items[:] = [item for item in items if item not in drop]
