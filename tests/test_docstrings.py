"""Every runnable example in the public modules' docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import fastnn

MODULES = sorted(m.name for m in pkgutil.walk_packages(fastnn.__path__, "fastnn.")
                 if not m.name.startswith(("fastnn._ext", "fastnn.cli")))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # a module of an optional extra that is not installed
        pytest.skip(f"{name}: {exc}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
