"""Operation specs: each kernel's array arguments written once, as data, beside its NumPy reference.

``@op(...)`` on a ``Backend`` method (backends/base.py) records, for each array argument, its role
('in', 'out' or 'inout'), its dtype family ('float': float32 or float64, one dtype per call;
'int64': labels and indices; 'uint8': masks; 'float64': accumulators), its shape in symbols
(``"n,k"``: the first array that names a symbol fixes it; a dict {ndim: shape} where several
ranks are allowed; None: any shape), and when it may be None. ``examine`` reads a call against
its spec: it raises what the caller must fix (mixed float dtypes, wrong shapes or ranks, a
missing array, an unknown activation) with the operation, the argument, the value and the
remedy, and otherwise says whether every array suits a backend's native kernels. The adapters
of fastnn/backends/_adapter.py run it at the boundary of every compiled and CUDA kernel.
Nothing here imports numba or the compiled kernels.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

#: Activation names in the order of their integer codes (the compiled and CUDA kernels use the
#: codes; backends.base re-exports both).
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus", "silu", "softmax")
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ROLES = ("in", "out", "inout")
FAMILIES = {"float": None, "int64": np.dtype(np.int64), "uint8": np.dtype(np.uint8),
            "float64": np.dtype(np.float64)}


def _parse_shape(shape):
    if shape is None:
        return None
    if isinstance(shape, dict):
        return {ndim: _parse_shape(s) for ndim, s in shape.items()}
    if isinstance(shape, str):
        return tuple(s.strip() if not s.strip().isdigit() else int(s) for s in shape.split(",") if s.strip())
    return tuple(shape)


class Arg:
    """One array argument of an operation.

    Parameters
    ----------
    name : str
        The parameter's name in the reference's signature.
    role : {'in', 'out', 'inout'}
        Read, written (never read) or updated in place; outputs must be writeable.
    family : {'float', 'int64', 'uint8', 'float64'} or dict {ndim: family}
        'float' arrays of one call share one dtype (float32 or float64).
    shape : str, tuple, dict {ndim: shape} or None
        Symbols ("n,k") or sizes per dimension; None: any shape.
    required : str or callable(values) -> str or None, optional
        When None is not allowed: the message (after "op: ") for a None, or a function of the
        call's values returning it (None: allowed in this call). Default: None is allowed.
    used : callable(values) -> bool, optional
        False when this call ignores the argument (then it is not examined at all).
    """

    __slots__ = ("name", "role", "family", "shape", "required", "used")

    def __init__(self, name: str, role: str = "in", family: str | dict = "float", shape: Any = None,
                 required: str | Callable | None = None, used: Callable | None = None):
        if role not in ROLES:
            raise ValueError(f"Arg {name!r}: role must be one of {ROLES}; got {role!r}.")
        for fam in (family.values() if isinstance(family, dict) else (family,)):
            if fam not in FAMILIES:
                raise ValueError(f"Arg {name!r}: family must be one of {tuple(FAMILIES)}; got {fam!r}.")
        self.name, self.role, self.family = name, role, family
        self.shape, self.required, self.used = _parse_shape(shape), required, used

    def family_of(self, ndim: int) -> str:
        fam = self.family
        return fam.get(ndim, next(iter(fam.values()))) if isinstance(fam, dict) else fam

    def shape_of(self, ndim: int):
        shape = self.shape
        if isinstance(shape, dict):
            return shape.get(ndim, next(iter(shape.values())))
        return shape

    def __repr__(self):
        return f"Arg({self.name!r}, {self.role!r}, {self.family!r}, {self.shape!r})"


def In(name, shape=None, family="float", **kw):  # noqa: N802  (reads as a declaration)
    return Arg(name, "in", family, shape, **kw)


def Out(name, shape=None, family="float", **kw):  # noqa: N802
    return Arg(name, "out", family, shape, **kw)


def InOut(name, shape=None, family="float", **kw):  # noqa: N802
    return Arg(name, "inout", family, shape, **kw)


class OpSpec:
    """An operation: its reference (a Backend method), its parameters in signature order, its
    array arguments in the order their shapes are read, the float array whose dtype the others
    follow (``anchor``), the parameter holding an activation name (``activation``), and an extra
    ``check(values)`` for what the table cannot say."""

    def __init__(self, reference: Callable, arrays: tuple[Arg, ...], anchor: str | None,
                 activation: str | None, check: Callable | None):
        self.name = reference.__name__
        self.reference = reference
        self.signature = inspect.signature(reference)
        self.params = tuple(p for p in self.signature.parameters if p != "self")
        self.arrays = arrays
        self.anchor = anchor
        self.activation = activation
        self.check = check
        for a in arrays:
            if a.name not in self.params:
                raise TypeError(f"op {self.name}: Arg {a.name!r} is not a parameter of {self.signature}.")
        if activation is not None and activation not in self.params:
            raise TypeError(f"op {self.name}: activation {activation!r} is not a parameter.")

    @property
    def scalars(self) -> tuple[str, ...]:
        """The parameters that are not arrays (options)."""
        names = {a.name for a in self.arrays}
        return tuple(p for p in self.params if p not in names)

    def __repr__(self):
        return f"OpSpec({self.name!r}, arrays={[a.name for a in self.arrays]})"


#: every operation, by name, in the order Backend defines them
SPECS: dict[str, OpSpec] = {}


def op(*arrays: Arg, anchor: str | None = None, activation: str | None = None, check: Callable | None = None):
    """Decorator for a Backend reference method: records its spec in SPECS and returns the
    method unchanged (the reference pays nothing for it)."""

    def record(fn):
        spec = OpSpec(fn, arrays, anchor, activation, check)
        SPECS[spec.name] = spec
        fn.op_spec = spec
        return fn

    return record


# ------------------------------------------------------------------------------ checks
def _dtype_name(dtype):
    return f"np.{dtype}" if dtype in FLOAT_DTYPES else repr(str(dtype))


def check_dtypes(owner, anchor, floats, outputs=()):
    """Raise TypeError when the float arrays of one call mix float32 and float64. ``anchor``
    names the array whose dtype the others should follow; ``floats`` is [(name, array)]."""
    # (None == np.dtype("float64") is True in NumPy: keep non-arrays out of the comparisons)
    floats = [(name, a) for name, a in floats
              if isinstance(getattr(a, "dtype", None), np.dtype) and a.dtype in FLOAT_DTYPES]  # device arrays too
    ref = dict(floats).get(anchor)
    if ref is None:
        if not floats:
            return
        anchor, ref = floats[0]
    want = ref.dtype
    for name, a in floats:
        dt = a.dtype
        if dt != want:
            remedy = (f"allocate {name} with dtype={_dtype_name(want)}" if name in outputs
                      else f"cast with {name}.astype({_dtype_name(want)})")
            raise TypeError(f"{owner}: {name} is {dt} but {anchor} is {want}; {remedy}.")


def expect_shape(owner, name, a, shape):
    """Raise ValueError unless ``a`` (None skipped) has ``shape``; None entries match any size."""
    if a is None or not hasattr(a, "shape"):
        return
    if len(a.shape) != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        dims = ", ".join("any" if s is None else str(s) for s in shape)
        want = f"({dims},)" if len(shape) == 1 else f"({dims})"
        raise ValueError(f"{owner}: {name} must have shape {want}; got {tuple(a.shape)}.")


def check_activation(owner, name):
    """Raise ValueError for a name that is not in ACTIVATIONS."""
    if not isinstance(name, str) or name not in ACTIVATION_CODES:
        listed = ", ".join(repr(a) for a in ACTIVATIONS)
        raise ValueError(f"{owner}: unknown activation {name!r}; choose one of {listed}.")


def examine(spec: OpSpec, values: dict, native: Callable | None = None) -> bool:
    """Check a call (``values``: parameter name -> value) against ``spec``.

    Raises what the caller must fix. Returns True when every examined array is accepted by
    ``native(arg, array)`` (a backend's own kernels take them all: the call is right), False
    when one is not (another dtype, a non-contiguous or read-only array, an array-like: the
    reference computes it). With ``native`` None only the checks run (and True is returned).
    """
    owner = spec.name
    if spec.activation is not None:
        check_activation(owner, values[spec.activation])
    present = []
    plain = True
    for a in spec.arrays:
        v = values[a.name]
        if a.used is not None and not a.used(values):
            continue
        if v is None:
            req = a.required
            msg = req(values) if callable(req) else req
            if msg:
                raise ValueError(f"{owner}: {msg}; got None.")
            continue
        if not (hasattr(v, "shape") and hasattr(v, "dtype")):
            plain = False  # a list or scalar: only the reference takes it
            continue
        present.append((a, v))
    check_dtypes(owner, spec.anchor, [(a.name, v) for a, v in present if a.family_of(len(v.shape)) == "float"],
                 outputs=[a.name for a, _ in present if a.role == "out"] + [a.name for a, _ in present
                                                                           if a.role == "inout"])
    sizes: dict[str, int] = {}
    for a, v in present:
        shape = a.shape_of(len(v.shape))
        if shape is None:
            continue
        expect_shape(owner, a.name, v, tuple(sizes.get(s) if isinstance(s, str) else s for s in shape))
        for s, n in zip(shape, v.shape):
            if isinstance(s, str):
                sizes.setdefault(s, n)
    if spec.check is not None:
        spec.check(values)
    if native is None:
        return True
    return plain and all(native(a, v) for a, v in present)


__all__ = ["Arg", "FAMILIES", "In", "InOut", "OpSpec", "Out", "ROLES", "SPECS", "check_activation", "check_dtypes",
           "examine", "expect_shape", "op"]
