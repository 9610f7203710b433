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
            raise RuntimeError(
                f"{owner}: device='cuda' is not available in this build of fastnn yet "
                f"(the numba.cuda backend is under way); use device='cpu'."
            )
    return _instances[device]


__all__ = ["ACTIVATIONS", "Backend", "DEVICES", "get_backend"]
