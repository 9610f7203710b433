"""The CUDA device: is a GPU usable, and what is it. Imports numba only when a function is
called, never at ``import fastnn``. Public as ``fastnn.cuda`` (which re-exports these names);
it lives here so that the backends never import upward.

>>> from fastnn.backends._cuda_device import is_available
>>> isinstance(is_available(), bool)
True
"""

from __future__ import annotations

import importlib.metadata


def _numba_cuda():
    """(numba.config, numba.cuda), or None when numba is not installed."""
    try:
        from numba import config, cuda
    except ImportError:
        return None
    return config, cuda


def simulated():
    """True when numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1 before numba was imported):
    device='cuda' then runs every kernel in Python, for tests, on any machine."""
    found = _numba_cuda()
    return found is not None and bool(found[0].ENABLE_CUDASIM)


def is_available():
    """True when device='cuda' can run on a real NVIDIA GPU: numba-cuda is installed, a device and
    its driver are found, and the simulator is off."""
    found = _numba_cuda()
    if found is None or found[0].ENABLE_CUDASIM:
        return False
    try:
        return bool(found[1].is_available())
    except Exception:  # a broken driver or toolkit reads as no GPU
        return False


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_info():
    """{'available', 'simulated', 'numba', 'numba_cuda', and with a GPU 'name', 'compute_capability',
    'memory_gb'; without one 'reason'} for fnn.info()."""
    info = {"available": False, "simulated": simulated(), "numba": _version("numba"),
            "numba_cuda": _version("numba-cuda")}
    if _numba_cuda() is None:
        info["reason"] = 'numba-cuda is not installed (pip install "fastnn[cuda]")'
    elif info["simulated"]:
        info["reason"] = "numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): device='cuda' runs simulated"
    elif not is_available():
        info["reason"] = "no NVIDIA GPU or driver found by numba.cuda"
    else:
        from numba import cuda

        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        free, total = cuda.current_context().get_memory_info()
        info.update(available=True, name=name, compute_capability=".".join(map(str, dev.compute_capability)),
                    memory_gb=round(total / 2**30, 1))
    return info


__all__ = ["device_info", "is_available", "simulated"]
