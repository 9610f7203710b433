"""The conformance suite compares fast backends with the NumPy reference, never the reference
with itself (issue 12: such a case passes whatever the kernels compute)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _collected(*files):
    """Node ids pytest collects from ``files`` of this folder, in a separate process."""
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                          *(os.path.join(HERE, f) for f in files)],
                         capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(HERE)), check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return [line for line in run.stdout.splitlines() if "::" in line]


def _name(node):
    return node.split("::")[1].split("[")[0]


def _backend(node):
    """The first parameter id (the backend fixture's), or None."""
    match = re.search(r"\[([^\]-]+)", node)
    return match and match.group(1)


def test_no_conformance_case_compares_the_reference_with_itself():
    ids = _collected("test_kernels.py", "test_norm_kernels.py", os.path.join(os.pardir, "test_gradcheck.py"))
    comparisons = [node for node in ids if "reference" in _name(node)]
    assert comparisons, "no comparison with the reference was collected"
    assert {_backend(node) for node in comparisons} >= {"cpu"}
    vacuous = [node for node in comparisons if _backend(node) == "reference"]
    assert not vacuous, f"{len(vacuous)} cases compare the reference with itself, e.g. {vacuous[:3]}"
    # the reference still runs the tests that check it against independent values
    assert any(_backend(node) == "reference" for node in ids)
