"""Every backend implements exactly Backend's public interface, with the same signatures."""

from __future__ import annotations

import inspect

import pytest

from fastnn.backends.base import Backend


def _public_methods(cls):
    return {name for name, member in inspect.getmembers(cls, callable) if not name.startswith("_")}


def _unannotated(sig):
    return sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                       return_annotation=sig.empty)


def _backend_classes():
    from fastnn.backends.cpu import CpuBackend

    return [CpuBackend]  # ---- issue 7: add CudaBackend


@pytest.mark.parametrize("cls", _backend_classes(), ids=lambda c: c.__name__)
def test_defines_only_backend_methods_with_the_same_signatures(cls):
    own = {name for name, member in vars(cls).items()
           if not name.startswith("_") and (callable(member) or isinstance(member, (staticmethod, classmethod)))}
    extra = own - _public_methods(Backend)
    assert not extra, f"{cls.__name__} defines public methods Backend lacks: {sorted(extra)}"
    for name in sorted(own):
        # names, kinds and defaults: the annotations are written once, on the interface
        got, want = (_unannotated(inspect.signature(getattr(c, name))) for c in (cls, Backend))
        assert got == want, f"{cls.__name__}.{name}{got} differs from Backend.{name}{want}"
    assert _public_methods(cls) == _public_methods(Backend)


@pytest.mark.parametrize("cls", _backend_classes(), ids=lambda c: c.__name__)
def test_overrides_the_kernels_it_accelerates(cls):
    own = {name for name in vars(cls) if not name.startswith("_")}
    memory = {"asarray", "to_numpy", "empty", "zeros", "copy", "fill"}  # NumPy's are optimal
    kernels = _public_methods(Backend) - memory
    assert kernels <= own, f"not overridden: {sorted(kernels - own)}"
    assert cls.name != Backend.name and isinstance(cls.name, str)
