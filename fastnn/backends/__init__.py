"""Backends: one kernel interface (``Backend``, whose bodies are the NumPy reference) and the
implementations that accelerate it. Layers, optimizers and the Trainer reach arrays only
through a backend, so the same model code runs on every device."""

from __future__ import annotations

from .._checks import check_choice
from .base import ACTIVATIONS, Backend

DEVICES = ("cpu", "cuda", "reference")

_instances: dict[str, Backend] = {}


def get_backend(device, owner="fastnn"):
    """Return the shared backend instance for ``device`` ('cpu', 'cuda' or 'reference')."""
    if isinstance(device, Backend):
        return device
    check_choice(owner, "device", device, DEVICES)
    if device not in _instances:
        if device == "reference":
            _instances[device] = Backend()
        elif device == "cpu":
            from .cpu import CpuBackend

            _instances[device] = CpuBackend()
        else:
            _instances[device] = _cuda_backend(owner)
    return _instances[device]


def _cuda_backend(owner):
    """CudaBackend on a real GPU or numba's simulator; a RuntimeError naming the remedy otherwise."""
    from ._cuda_device import is_available, simulated

    try:
        if not (is_available() or simulated()):
            from numba import cuda  # noqa: F401  (installed: the GPU or its driver is missing)

            raise RuntimeError(
                f"{owner}: device='cuda' found no usable NVIDIA GPU (numba.cuda.is_available() is False: no "
                f"device, or no driver); use device='cpu', or set NUMBA_ENABLE_CUDASIM=1 before numba is "
                f"imported to run the CUDA kernels on numba's simulator.")
        from .cuda import CudaBackend
    except ImportError as exc:
        raise RuntimeError(
            f"{owner}: device='cuda' needs numba-cuda ({exc}); install it with pip install \"fastnn[cuda]\" "
            f"and, on a GPU machine, numba-cuda's CUDA extra (pip install \"numba-cuda[cu12]\" or [cu13]); or "
            f"use device='cpu'.") from exc
    return CudaBackend()


__all__ = ["ACTIVATIONS", "Backend", "DEVICES", "get_backend"]
