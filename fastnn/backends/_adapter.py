"""The one adapter between the operation specs (``_ops.SPECS``) and a backend's kernels.

A backend registers a plain function per operation it implements: ``impl(self, <the reference's
parameters, in order, all positional>)`` doing the fast call and nothing else. ``implement``
turns the registrations into methods with the reference's exact signature (generated source,
as dataclasses does, so that the hot path is the fast call inside one try and nothing more):

- ``mode="refuse"`` (compiled CPU kernels, whose typed signatures refuse what they cannot take):
  the fast call first; only when it raises one of ``REFUSED``, the spec-driven ``examine``
  raises the caller's error (mixed dtypes, shapes, ranks, a missing array), re-raises the
  kernel's own error when every array suited it, and otherwise runs the NumPy reference
  (other dtypes, non-contiguous or read-only arrays, array-likes). No silent fallback hides a
  wrong call.
- ``mode="check"`` (CUDA kernels, which cannot refuse: they would read out of bounds):
  the spec-driven check first, then the conversion of every input (``native(arg, value)``:
  host arrays uploaded, int64 families as int64), then the launch.

An operation a backend does not register is the reference's (the method it inherits from
``Backend``): per-operation fallback. ``host_round_trip`` makes such a method for a device
whose arrays NumPy cannot read: inputs are copied to the host, the reference runs there, and
the outputs are copied back into the caller's device arrays.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable

from ._ops import SPECS, OpSpec, examine, op
from .base import Backend

#: What a refusing compiled kernel raises: wrong dtype/ndim/contiguity (ValueError, TypeError),
#: a non-array (AttributeError), an unknown name or dtype (KeyError), a shape on the way (IndexError).
REFUSED = (TypeError, ValueError, AttributeError, KeyError, IndexError)

#: The reference the refusing adapters fall back to: a plain Backend, so that the reference's
#: own calls between kernels stay in float64 (the kernel tests replace it to prove the fast path ran).
REFERENCE = Backend()


def run_reference(spec: OpSpec, values: dict):
    """The reference of ``spec`` on ``values`` (parameter name -> value)."""
    return getattr(REFERENCE, spec.name)(**values)


def _signature_source(spec: OpSpec) -> tuple[str, dict]:
    """The reference's parameter list as source (defaults as names bound in the namespace)."""
    parts, ns, star = [], {}, False
    for p in spec.signature.parameters.values():
        if p.name == "self":
            continue
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        if p.default is inspect.Parameter.empty:
            parts.append(p.name)
        else:
            ns[f"_d_{p.name}"] = p.default
            parts.append(f"{p.name}=_d_{p.name}")
    return ", ".join(parts), ns


def _check_impl(spec: OpSpec, impl: Callable, owner: str):
    params = list(inspect.signature(impl).parameters.values())
    if len(params) == 2 and params[1].kind is inspect.Parameter.VAR_POSITIONAL:
        return  # a generic implementation (a convention's launch): it takes the spec's parameters in order
    got = tuple(p.name for p in params)[1:]
    if got != spec.params:
        raise TypeError(f"{owner}: the implementation of {spec.name} takes {got}; the spec's parameters are "
                        f"{spec.params} (self first, then these, in this order).")


def refused(backend, spec: OpSpec, exc: BaseException, args: tuple, native: Callable):
    """The slow path of a refused fast call: raise for a wrong call, re-raise ``exc`` when the
    arrays suited the kernel, else return the reference's result."""
    values = dict(zip(spec.params, args))
    if examine(spec, values, native):
        raise exc
    return run_reference(spec, values)


def _inlined(spec: OpSpec, impl: Callable, native: Callable | None):
    """The refusing method with ``impl``'s body inlined in its try block, compiled in ``impl``'s
    module (its globals, its file and line numbers), or None when the source is not available.
    It is the code a hand-written wrapper would be: the fast call costs no extra Python call."""
    try:
        source = textwrap.dedent(inspect.getsource(impl))
    except (OSError, TypeError):
        return None
    fn = ast.parse(source).body[0]
    if not isinstance(fn, ast.FunctionDef):
        return None
    params, defaults = _signature_source(spec)
    call = ", ".join(spec.params)
    template = ast.parse(
        f"def _fastnn_factory(_spec, _refused, _native, _REFUSED, {', '.join(defaults) or '_unused=None'}):\n"
        f"    def {spec.name}(self, {params}):\n"
        f"        try:\n            pass\n"
        f"        except _REFUSED as exc:\n            return _refused(self, _spec, exc, ({call},), _native)\n"
        f"    return {spec.name}\n")
    first = impl.__code__.co_firstlineno  # the adapter's own lines are reported as impl's def line
    for node in ast.walk(template):
        if hasattr(node, "lineno"):
            node.lineno = node.end_lineno = first  # type: ignore[attr-defined]
    ast.increment_lineno(fn, first - fn.lineno)
    factory_def = template.body[0]
    assert isinstance(factory_def, ast.FunctionDef)  # the template above: the factory, the method, its try
    method, = (node for node in factory_def.body if isinstance(node, ast.FunctionDef))
    try_block = method.body[0]
    assert isinstance(try_block, ast.Try)
    try_block.body = fn.body
    module = ast.fix_missing_locations(template)
    ns = impl.__globals__
    exec(compile(module, impl.__code__.co_filename, "exec"), ns)  # noqa: S102  (our own source, our module)
    factory = ns.pop("_fastnn_factory")
    return factory(spec, refused, native, REFUSED, **defaults)


def make_method(spec: OpSpec, impl: Callable, mode: str, native: Callable | None = None, owner: str = "backend"):
    """A method with ``spec``'s signature running ``impl`` under the adapter ``mode`` (module
    docstring)."""
    _check_impl(spec, impl, owner)
    if mode == "refuse":
        fn = _inlined(spec, impl, native)
        if fn is not None:
            fn.__doc__ = spec.reference.__doc__
            fn.__wrapped_impl__ = impl
            fn.op_spec = spec
            return fn
    params, ns = _signature_source(spec)
    call = ", ".join(spec.params)
    if mode == "refuse":
        body = (f"    try:\n        return _impl(self, {call})\n"
                f"    except _REFUSED as exc:\n        return _refused(self, _spec, exc, ({call},), _native)\n")
    elif mode == "check":  # ``native`` converts an input: native(arg, value) -> the backend's array
        inputs = {a.name: i for i, a in enumerate(spec.arrays) if a.role == "in"}
        conv = ", ".join(f"_native(_arrays[{inputs[p]}], {p})" if p in inputs and native is not None else p
                         for p in spec.params)
        body = f"    _check(self, _spec, ({call},))\n    return _impl(self, {conv})\n"
    else:
        raise ValueError(f"make_method: mode must be 'refuse' or 'check'; got {mode!r}.")
    src = f"def {spec.name}(self, {params}):\n{body}"
    ns.update(_impl=impl, _spec=spec, _REFUSED=REFUSED, _refused=refused, _native=native, _check=_check_first,
              _arrays=spec.arrays)
    exec(compile(src, f"<fastnn adapter {owner}.{spec.name}>", "exec"), ns)  # noqa: S102  (our own source)
    fn = ns[spec.name]
    fn.__doc__ = spec.reference.__doc__
    fn.__wrapped_impl__ = impl
    fn.op_spec = spec
    return fn


def _check_first(backend, spec, args):
    examine(spec, dict(zip(spec.params, args)))


def implement(cls, impls: dict, mode: str, native: Callable | None = None):
    """Install on ``cls`` one adapted method per entry of ``impls`` ({operation name: impl});
    returns the names installed. Unknown names are an error (a typo would silently leave the
    reference in place)."""
    unknown = sorted(set(impls) - set(SPECS))
    if unknown:
        raise TypeError(f"{cls.__name__}: no operation spec for {unknown}; the operations are {sorted(SPECS)}.")
    for name, impl in impls.items():
        method = make_method(SPECS[name], impl, mode, native, cls.__name__)
        method.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, method)
    cls.implemented = frozenset(impls) | frozenset(getattr(cls, "implemented", ()))
    return sorted(impls)


_CONVENTIONS: list[Callable] = []


def add_convention(rule: Callable):
    """``rule(spec)`` registers a backend's kernel for ``spec`` when its kernel library has one
    by the operation's name (for example a fused update ``<name>_update`` in fastnn._ext.optim);
    it runs now for every operation and later for every operation added by add_operation."""
    _CONVENTIONS.append(rule)
    for spec in list(SPECS.values()):
        rule(spec)


def add_operation(reference: Callable, *arrays, anchor: str | None = None, activation: str | None = None,
                  check: Callable | None = None) -> Callable:
    """Add an operation to the kernel interface from beside its user: ``reference`` (a function
    ``(backend, ...)`` written as a Backend method) becomes ``Backend.<its name>`` with its spec,
    and every backend's conventions register the kernels found under that name. An optimizer
    with an update rule of its own adds it this way in fastnn/optim.py, next to its class."""
    name = reference.__name__
    if name in SPECS or hasattr(Backend, name):
        raise ValueError(f"add_operation: {name!r} is already an operation of the interface; choose another name.")
    op(*arrays, anchor=anchor, activation=activation, check=check)(reference)
    reference.__qualname__ = f"Backend.{name}"
    setattr(Backend, name, reference)
    for rule in _CONVENTIONS:
        rule(SPECS[name])
    return reference


def registered(cls) -> frozenset:
    """The operations ``cls`` implements itself (the rest are the reference's)."""
    return frozenset(getattr(cls, "implemented", ()))


def host_round_trip(spec: OpSpec, to_host: Callable, to_device: Callable, is_device: Callable):
    """A method running the reference of ``spec`` on host copies of a device backend's arrays:
    every array argument is copied to the host, the reference runs, outputs and in-place
    arguments are copied back into the caller's device arrays, and a new array the reference
    returned is uploaded. One transfer per array each way: for operations a device does not
    implement, never for hot ones."""
    roles = {a.name: a.role for a in spec.arrays}
    params, ns = _signature_source(spec)
    call = ", ".join(spec.params)

    def trip(self, *args):
        values = dict(zip(spec.params, args))
        examine(spec, values)
        host, back = {}, []
        for name, v in values.items():
            if name in roles and v is not None and is_device(v):
                host[name] = to_host(v)
                if roles[name] != "in":
                    back.append((v, host[name]))
            else:
                host[name] = v
        result = run_reference(spec, host)
        for dev, h in back:
            to_device(h, dev)
        if result is None or not hasattr(result, "shape"):
            return result
        for dev, h in back:
            if h is result:
                return dev
        return to_device(result, None)

    src = f"def {spec.name}(self, {params}):\n    return _trip(self, {call})\n"
    ns["_trip"] = trip
    exec(compile(src, f"<fastnn host round trip {spec.name}>", "exec"), ns)  # noqa: S102
    fn = ns[spec.name]
    fn.__doc__ = spec.reference.__doc__
    fn.op_spec = spec
    return fn


__all__ = ["REFERENCE", "REFUSED", "add_convention", "add_operation", "host_round_trip", "implement", "make_method",
           "refused", "registered", "run_reference"]
