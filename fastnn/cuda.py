"""The CUDA device: is a GPU usable, and what is it. Imports numba only when a function is
called, never at ``import fastnn``.

>>> import fastnn as fnn
>>> isinstance(fnn.cuda.is_available(), bool)
True
"""

from __future__ import annotations

from .backends._cuda_device import device_info, is_available, simulated

__all__ = ["device_info", "is_available", "simulated"]
