"""What fastnn runs on: versions, BLAS, threads, CPU features, devices (for fnn.info())."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np


def _cpu_features():
    """SIMD flags of interest from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [x for x in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16") if x in flags]
    except OSError:
        pass
    return []


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _bf16():
    """Where Trainer(precision='bf16') runs its products on this CPU: 'amx', 'avx512-bf16' or
    'portable' (float32 products of rounded values)."""
    try:
        from ._ext import dense
    except ImportError as exc:
        return {"path": "reference", "reason": f"compiled CPU kernels missing ({exc})"}
    return {"path": dense.bf16_path()}


def collect():
    from ._version import __version__

    try:
        from .backends import cpu
    except ImportError as exc:  # a source checkout whose extensions were never compiled
        cpu_ok, threads = False, None
        blas = {"error": f"compiled CPU kernels missing ({exc}); install with pip install ."}
    else:
        cpu_ok, threads, blas = True, cpu.get_num_threads(), cpu.blas_info()
    from . import _chain
    from .cuda import device_info

    cuda = device_info()
    return {
        "fastnn": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_features": _cpu_features(),
        "cores": os.cpu_count(),
        "threads": threads,
        "blas": blas,
        "devices": {"cpu": cpu_ok, "reference": True, "cuda": cuda},
        "inference": _chain.describe(),
        "bf16": _bf16(),
    }
