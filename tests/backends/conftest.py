"""Kernel tests compare each fast backend with the NumPy reference: unless a test is marked
``fallback``, CpuBackend must use its compiled kernels, never quietly run the reference; and the
reference backend does not run the comparisons with the reference (they would compare it with
itself)."""

from __future__ import annotations

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
        from fastnn.backends import _adapter

        monkeypatch.setattr(_adapter, "REFERENCE", _NoReference())
