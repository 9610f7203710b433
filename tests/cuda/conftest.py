"""The CUDA backend's tests, run in their own pytest invocation (the root conftest collects this
folder only when NUMBA_ENABLE_CUDASIM is set, so numba's simulator never enters the CPU run):

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda    # simulator, no GPU needed (CI)
    NUMBA_ENABLE_CUDASIM=0 python -m pytest -q tests/cuda    # a real GPU, full sizes

The backend-parameterised kernel tests of tests/backends run here against device='cuda'. On the
simulator every thread is a Python thread, so cases bigger than SIM_MAX_ELEMENTS are deselected
there; on a GPU they all run.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

# the shared kernel suite (test_kernels_cuda.py imports its modules)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "backends"))

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # before numba is first imported

try:
    import numba  # noqa: F401
except ImportError:  # pip install "fastnn[cuda]" to run these
    collect_ignore_glob = ["test_*.py"]
    SIMULATED = False
else:
    from numba import config

    SIMULATED = bool(config.ENABLE_CUDASIM)

#: Largest case (elements of a shape, or a flat size) run on the simulator. The simulator also
#: runs only the float32 cases of the shared suite (the kernels compute in float64 inside either
#: way; test_cuda.py trains in float64 against the reference): about 3 minutes instead of 6.
SIM_MAX_ELEMENTS = 2_000

#: Tests of the shared kernel suite that do not apply to device-resident indices: a kernel
#: cannot raise, so take_rows and cross_entropy check indices and labels on the host, before
#: uploading them (tests/cuda/test_cuda.py covers that); device arrays are trusted.
DEVICE_DESELECTED = {
    "test_take_rows_rejects_bad_indices": "device indices are trusted; host ones are checked",
    "test_cross_entropy_rejects_labels_out_of_range": "device labels are trusted; host ones are checked",
}


def _elements(value):
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return math.prod(value)
    return 0


def pytest_collection_modifyitems(config, items):
    keep, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        too_big = SIMULATED and (any(_elements(v) > SIM_MAX_ELEMENTS for v in params.values())
                                 or any(v is np.float64 for v in params.values()))
        (dropped if too_big or item.originalname in DEVICE_DESELECTED else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture
def backend():
    """The shared CUDA backend (this folder's tests run on it alone)."""
    from fastnn.backends import get_backend

    return get_backend("cuda")
