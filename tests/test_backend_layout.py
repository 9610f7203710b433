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


def test_the_backends_never_import_upward():
    """fastnn/backends imports only itself, the compiled kernels (fastnn._ext) and the leaf
    argument checks (fastnn._checks, which import nothing of fastnn): no circle through the API."""
    leaves = {"_ext", "_checks"}
    for path in sorted((ROOT / "fastnn" / "backends").glob("*.py")):
        for level, module in re.findall(r"^\s*from (\.+)(\w*)", path.read_text(), re.M):
            if len(level) > 1:
                assert module in leaves, f"{path.name} imports fastnn.{module}"
        assert not re.search(r"^\s*(from|import) fastnn\b", path.read_text(), re.M), path.name
    assert not re.search(r"^\s*from \.", (ROOT / "fastnn" / "_checks.py").read_text(), re.M)


def test_the_residual_loss_codes_follow_one_table():
    """mse, mae and huber are codes of one residual kernel on every device: the compiled kernel's
    names, the CUDA kernel's constants and the CPU backend's calls come from RESIDUAL_LOSSES."""
    from fastnn.backends.base import RESIDUAL_CODES, RESIDUAL_LOSSES

    assert RESIDUAL_CODES == {"mse": 0, "mae": 1, "huber": 2}
    text = (ROOT / "csrc" / "losses.pyx").read_text()
    assert repr(RESIDUAL_LOSSES).replace("'", '"') in text  # the name table the compiled kernel reports with
    kernels = pytest.importorskip("fastnn.backends._cuda_kernels", reason="numba is not installed")
    assert {name: getattr(kernels, "_" + name.upper()) for name in RESIDUAL_LOSSES} == RESIDUAL_CODES
