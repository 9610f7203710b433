"""Kernel tests compare each fast backend with the NumPy reference: unless a test is marked
``fallback``, CpuBackend must use its compiled kernels, never quietly run the reference; and the
reference backend does not run the comparisons with the reference (they would compare it with
itself)."""

from __future__ import annotations

from pathlib import Path

import pytest


class _NoReference:
    """Stands in for CpuBackend's fallback: contiguous float32/float64 calls must never use it."""

    def __getattr__(self, name):
        raise AssertionError(f"CpuBackend fell back to the NumPy reference for {name}")


@pytest.fixture(autouse=True)
def _compiled_path_only(request, monkeypatch):
    """Unless a test is marked ``fallback``, fail when CpuBackend runs the reference instead
    of its compiled kernels (which would make the comparisons vacuous)."""
    if request.node.get_closest_marker("fallback") is None:
        from fastnn.backends import cpu

        monkeypatch.setattr(cpu, "_REFERENCE", _NoReference())


def _compares_with_the_reference(item):
    """True for a test run on the reference backend that compares the backend with the reference
    (by the project's naming: ``..._matches_reference``, ``..._equal_the_reference...``,
    ``..._go_to_the_reference``): it would compare the reference with itself and could not fail."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("backend") == "reference" and "reference" in item.originalname


def pytest_collection_modifyitems(config, items):
    """Deselect the reference backend's runs of the conformance tests: a fast backend is compared
    with the reference; the reference itself is checked against independent values (gradient
    checks, hand-worked steps, torch's recorded trajectories) elsewhere."""
    here = Path(__file__).parent
    vacuous = [item for item in items if here in Path(item.path).parents and _compares_with_the_reference(item)]
    if vacuous:
        config.hook.pytest_deselected(items=vacuous)
        drop = set(vacuous)
        items[:] = [item for item in items if item not in drop]
