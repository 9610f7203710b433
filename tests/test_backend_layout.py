"""The kernel layer's layout: activation codes come from one table (fastnn.backends.base.ACTIVATIONS),
which the compiled kernels' enum and the CUDA kernels' constants follow name for name; each fast
backend loads without the other."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from fastnn.backends.base import ACTIVATION_CODES, ACTIVATIONS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_compiled_kernels_enum_follows_the_activation_table():
    text = (ROOT / "csrc" / "_activations.pxd").read_text()
    block = text[text.index("cdef enum:"):].split("\n\n", 1)[0]
    enum = {name.lower(): int(code) for name, code in re.findall(r"^\s+([A-Z_]+) = (\d+)$", block, re.M)}
    assert enum.pop("n_activations") == len(ACTIVATIONS)
    assert enum == ACTIVATION_CODES


def test_the_cuda_kernels_constants_follow_the_activation_table():
    kernels = pytest.importorskip("fastnn.backends._cuda_kernels", reason="numba is not installed")
    assert {name: getattr(kernels, "_" + name.upper()) for name in ACTIVATIONS} == ACTIVATION_CODES


def test_the_cuda_backend_loads_without_the_compiled_cpu_kernels():
    pytest.importorskip("numba", reason="numba is not installed")
    code = ("import sys, fastnn.backends.cuda; "
            "print(sorted(m for m in sys.modules if m.startswith(('fastnn.backends.cpu', 'fastnn._ext'))))")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
