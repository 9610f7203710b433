"""pytest setup of the micro-benchmarks (bench/test_micro.py).

The default test run (``python -m pytest``, testpaths tests and bench) collects them as a smoke
test: timings are disabled unless ``--benchmark-enable`` (or ``--benchmark-only``) is given, so
each benchmark body runs once. Without pytest-benchmark installed, a stand-in ``benchmark``
fixture calls the function once.
"""

from __future__ import annotations

import importlib.util

import pytest

_HAVE_PLUGIN = importlib.util.find_spec("pytest_benchmark") is not None


def pytest_configure(config):
    # runs before pytest-benchmark's own pytest_configure (trylast), which reads the option
    if config.pluginmanager.hasplugin("pytest_benchmark") or config.pluginmanager.hasplugin("benchmark"):
        opt = config.option
        if not getattr(opt, "benchmark_enable", False) and not getattr(opt, "benchmark_only", False):
            opt.benchmark_disable = True


if not _HAVE_PLUGIN:
    class _OneCall:
        """What the tests use of pytest-benchmark's fixture: call once, keep a group name."""

        group = None

        def __call__(self, fn, *args, **kwargs):
            return fn(*args, **kwargs)

    @pytest.fixture
    def benchmark():
        """Stand-in for pytest-benchmark's fixture when it is not installed: one plain call."""
        return _OneCall()
