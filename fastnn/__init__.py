"""fastnn: fast neural-network training on CPU and NVIDIA GPUs without a big framework.

>>> import fastnn as fnn
>>> X, y = fnn.datasets.load_digits()
>>> model = fnn.Sequential([fnn.layers.Dense(128, activation="relu"), fnn.layers.Dense(10)], seed=0)
>>> trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.05, momentum=0.9), seed=0)
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import ModelFormatError, TrainingDiverged

#: Public names imported on first use (PEP 562), so that importing fastnn or one of its
#: submodules loads only what it needs: name -> (module, attribute or None for the module).
_LAZY = {
    "callbacks": (".callbacks", None), "data": (".data", None), "datasets": (".datasets", None),
    "layers": (".layers", None), "losses": (".losses", None), "metrics": (".metrics", None),
    "optim": (".optim", None), "schedules": (".schedules", None),
    "load": (".io", "load"), "Sequential": (".model", "Sequential"), "Trainer": (".trainer", "Trainer"),
    "inference": (".inference", None), "export": (".export", None),
    "augment": (".augment", None), "landscapes": (".tools.landscapes", None),
    "sklearn": (".sklearn", None), "tuning": (".tuning", None), "Ensemble": (".ensemble", "Ensemble"),
    "preprocessing": (".preprocessing", None),
}


def __getattr__(name):
    # any other submodule (fastnn.io, fastnn.model, ...) is imported on first use too, as the
    # eager imports used to make it available; dunder probes (__wrapped__, ...) are not modules
    missing = AttributeError(f"module 'fastnn' has no attribute {name!r}")
    if name.startswith("__"):
        raise missing
    module, attribute = _LAZY.get(name, ("." + name, None))
    try:
        value = importlib.import_module(module, __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":  # a dependency of the submodule is missing: say so
            raise
        raise missing from None
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def set_num_threads(n):
    """Set the number of threads of fastnn's CPU work (the one BLAS thread pool it shares with
    NumPy; fastnn's own elementwise kernels run on the calling thread)."""
    from ._checks import check_int
    from .backends import cpu

    cpu.set_num_threads(check_int("set_num_threads", "n", n, low=1))


def get_num_threads():
    """Threads fastnn's CPU work uses (see set_num_threads)."""
    from .backends import cpu

    return cpu.get_num_threads()


def info():
    """Versions, BLAS, threads, CPU features and devices, as a dict."""
    from ._info import collect

    return collect()


__all__ = [
    "Ensemble", "ModelFormatError", "Sequential", "Trainer", "TrainingDiverged", "augment", "callbacks", "data",
    "datasets", "export", "get_num_threads", "inference", "info", "landscapes", "layers", "load", "losses", "metrics",
    "optim", "preprocessing", "schedules", "set_num_threads", "tuning", "__version__",
]
