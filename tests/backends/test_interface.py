"""The kernel interface: every operation has one spec (fastnn/backends/_ops.py) on its reference;
each backend's registered implementations match the specs' signatures, a backend may implement
only some operations (the reference serves the rest, per operation), and every registered
operation is exercised against the reference by the conformance tests of this folder."""

from __future__ import annotations

import inspect
import pathlib

import numpy as np
import pytest

from fastnn.backends import _adapter
from fastnn.backends._ops import SPECS, In, InOut, Out, examine, op
from fastnn.backends.base import Backend
from golden.optim_db import OPTIM_DB

#: Backend methods that are not kernels with a spec: memory (NumPy's are optimal; a device
#: defines its own), the Dense stack's driver (a loop over dense_forward/dense_backward) and the
#: training epoch's thread context.
NOT_OPERATIONS = {"asarray", "to_numpy", "empty", "zeros", "copy", "fill", "take_rows", "dense_chain", "solo_span"}
HERE = pathlib.Path(__file__).resolve().parent


def _public_methods(cls):
    return {name for name, member in inspect.getmembers(cls, callable) if not name.startswith("_")}


def _unannotated(sig):
    return sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                       return_annotation=sig.empty)


def _backend_classes():
    from fastnn.backends.cpu import CpuBackend

    classes = [CpuBackend]
    try:
        import numba  # noqa: F401
    except ImportError:
        return classes
    import os

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":  # numba's simulator must be chosen before import
        from fastnn.backends.cuda import CudaBackend

        classes.append(CudaBackend)
    return classes


def test_every_kernel_of_the_interface_has_one_spec_on_its_reference():
    kernels = _public_methods(Backend) - NOT_OPERATIONS
    assert set(SPECS) == kernels, sorted(set(SPECS) ^ kernels)
    for name, spec in SPECS.items():
        assert getattr(Backend, name) is spec.reference and spec.reference.op_spec is spec
        assert spec.params == tuple(inspect.signature(getattr(Backend, name)).parameters)[1:]
        for arg in spec.arrays:  # every array argument is an Array parameter of the reference
            assert "Array" in str(spec.signature.parameters[arg.name].annotation), (name, arg.name)


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
    assert cls.name != Backend.name and isinstance(cls.name, str)


@pytest.mark.parametrize("cls", _backend_classes(), ids=lambda c: c.__name__)
def test_registered_implementations_follow_their_specs(cls):
    done = _adapter.registered(cls)
    assert done and done <= set(SPECS)
    for name in done:
        method = getattr(cls, name)
        assert method.op_spec is SPECS[name]
        impl = method.__wrapped_impl__
        assert tuple(inspect.signature(impl).parameters)[1:] == SPECS[name].params, name


@pytest.mark.parametrize("cls", _backend_classes(), ids=lambda c: c.__name__)
def test_every_registered_operation_has_conformance_tests(cls):
    """The kernel tests of this folder compare each backend with the reference, per dtype and
    edge shape; an operation registered without one would go untested."""
    from fastnn.optim import REGISTRY

    text = "".join(p.read_text() for p in HERE.glob("test_*kernels.py"))
    # an optimizer's kernels run in test_kernels.py's optimizer-table test when it has an OptimCase
    tabled = {k for entry in REGISTRY.values() if entry.cls.__name__ in {c.name for c in OPTIM_DB}
              for k in entry.kernels}
    missing = sorted(name for name in _adapter.registered(cls)
                     if name not in tabled and f'"{name}"' not in text and f".{name}(" not in text)
    assert not missing, f"{cls.__name__}: no conformance test calls {missing}"


# ------------------------------------------------------------------------ partial backends
def _partial_backend():
    """A backend with one compiled operation (sgd_update); everything else is the reference's."""
    from fastnn.backends import cpu

    class Partial(Backend):
        name = "partial"

    _adapter.implement(Partial, {"sgd_update": cpu.KERNELS["sgd_update"]}, "refuse", cpu._native)
    return Partial


@pytest.mark.fallback  # the reference serves the operations Partial lacks
def test_a_backend_may_implement_some_operations_and_falls_back_per_operation():
    partial = _partial_backend()
    assert _adapter.registered(partial) == {"sgd_update"}
    assert partial.adam_update is Backend.adam_update  # the reference, inherited
    be, ref = partial(), Backend()
    rng = np.random.default_rng(0)
    for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-12)):
        for n in (0, 1, 13):
            p, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
            bufs = [np.zeros(n, dtype) for _ in range(2)]
            ps = [p.copy(), p.copy()]
            be.sgd_update(ps[0], g, bufs[0], lr=0.1, momentum=0.9, first_step=True)
            ref.sgd_update(ps[1], g, bufs[1], lr=0.1, momentum=0.9, first_step=True)
            np.testing.assert_allclose(ps[0], ps[1], rtol=tol, atol=tol)
            np.testing.assert_allclose(bufs[0], bufs[1], rtol=tol, atol=tol)
    with pytest.raises(TypeError, match=r"^sgd_update: g is float64 but p is float32; cast with g\.astype"):
        be.sgd_update(np.ones(3, np.float32), np.ones(3), None, lr=0.1)


def test_an_implementation_must_take_the_specs_parameters_in_order():
    class Wrong(Backend):
        name = "wrong"

    def sgd_update(self, g, p, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
        pass

    with pytest.raises(TypeError, match=r"sgd_update takes \('g', 'p', .*the spec's parameters are \('p', 'g'"):
        _adapter.implement(Wrong, {"sgd_update": sgd_update}, "refuse")
    with pytest.raises(TypeError, match=r"Wrong: no operation spec for \['sgd'\]"):
        _adapter.implement(Wrong, {"sgd": sgd_update}, "refuse")


class _Device:
    """A stand-in device array: NumPy cannot compute on it directly."""

    def __init__(self, a):
        self.a = np.array(a)

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)


@pytest.mark.fallback
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_host_round_trip_runs_the_reference_on_host_copies(dtype):
    """What a device backend does for an operation it has no kernel for."""
    def to_device(h, dev):
        if dev is None:
            return _Device(h)
        dev.a[...] = h
        return dev

    trips = {name: _adapter.host_round_trip(SPECS[name], lambda d: d.a.copy(), to_device,
                                            lambda a: isinstance(a, _Device))
             for name in ("huber", "activation", "adam_update", "sum_squares")}
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal((5, 3)).astype(dtype)
    ref = Backend()
    want_loss, want_grad = np.zeros(1), np.empty((5, 3), dtype)
    ref.huber(pred, target, delta=0.5, loss_out=want_loss, grad=want_grad)
    loss, grad = _Device(np.zeros(1)), _Device(np.empty((5, 3), dtype))
    assert trips["huber"](None, _Device(pred), _Device(target), delta=0.5, loss_out=loss, grad=grad) is loss
    np.testing.assert_array_equal(loss.a, want_loss)
    np.testing.assert_array_equal(grad.a, want_grad)
    y = trips["activation"](None, "tanh", _Device(pred))
    assert isinstance(y, _Device) and y.dtype == dtype
    np.testing.assert_array_equal(y.a, ref.activation("tanh", pred))
    p, m, v = (_Device(a) for a in (pred[0], np.zeros(3, dtype), np.zeros(3, dtype)))
    want_p, want_m, want_v = pred[0].copy(), np.zeros(3, dtype), np.zeros(3, dtype)
    kw = dict(lr=0.1, bias_correction1=0.1, bias_correction2=0.001)
    assert trips["adam_update"](None, p, _Device(target[0]), m, v, None, **kw) is None
    ref.adam_update(want_p, target[0], want_m, want_v, None, **kw)
    for got, want in ((p, want_p), (m, want_m), (v, want_v)):
        np.testing.assert_array_equal(got.a, want)
    assert trips["sum_squares"](None, _Device(pred[1])) == ref.sum_squares(pred[1])
    with pytest.raises(ValueError, match=r"^huber: grad must have shape \(5, 3\); got \(3,\)\.$"):
        trips["huber"](None, _Device(pred), _Device(target), loss_out=loss, grad=_Device(np.zeros(3, dtype)))


# ------------------------------------------------------------------------ the spec's checks
def test_a_spec_is_data_read_by_one_check():
    class Toy(Backend):
        @op(In("x", "n,k"), In("labels", "n", "int64"), InOut("acc", "k"), Out("out", "n,k"), anchor="x")
        def toy(self, x, labels, acc, *, out=None):
            """A spec outside the interface (not registered in SPECS for Backend's tests)."""

    spec = SPECS.pop("toy")
    assert spec.scalars == () and [a.role for a in spec.arrays] == ["in", "in", "inout", "out"]
    x = np.ones((4, 3), np.float32)
    good = dict(x=x, labels=np.zeros(4, np.int64), acc=np.zeros(3, np.float32), out=None)
    assert examine(spec, good, lambda arg, a: True) is True
    assert examine(spec, dict(good, x=np.asfortranarray(np.ones((4, 3), np.float32))),
                   lambda arg, a: a.flags.c_contiguous) is False
    assert examine(spec, dict(good, x=[[1.0]]), lambda arg, a: True) is False  # an array-like: the reference
    with pytest.raises(TypeError, match=r"^toy: acc is float64 but x is float32; allocate acc with "
                                        r"dtype=np\.float32\.$"):
        examine(spec, dict(good, acc=np.zeros(3)))
    with pytest.raises(ValueError, match=r"^toy: labels must have shape \(4,\); got \(5,\)\.$"):
        examine(spec, dict(good, labels=np.zeros(5, np.int64)))
    with pytest.raises(ValueError, match=r"^toy: out must have shape \(4, 3\); got \(4,\)\.$"):
        examine(spec, dict(good, out=np.zeros(4, np.float32)))


@pytest.mark.fallback
def test_an_operation_added_beside_its_user_finds_its_kernel_by_name():
    """How an optimizer with an update of its own is added: its reference and spec in
    fastnn/optim.py (add_operation), its kernel under the same name in fastnn._ext.optim (here a
    stand-in module); cpu.py and cuda.py do not change."""
    from fastnn.backends import cpu

    def toy_update(self, p, g, *, lr):
        """p -= lr sign(g)."""
        p[...] = np.asarray(p, np.float64) - lr * np.sign(np.asarray(g, np.float64))

    calls = []

    def kernel(p, g, lr):
        if p.dtype != g.dtype or not p.flags.c_contiguous:
            raise ValueError("Buffer dtype mismatch")  # what a typed memoryview refuses
        calls.append(p.dtype)
        p -= (lr * np.sign(g)).astype(p.dtype)

    class Module:
        toy_update = {"float": kernel, "double": kernel}

    try:
        _adapter.add_operation(toy_update, InOut("p", "n", required="p must be an array"), In("g", "n"), anchor="p")
        with pytest.raises(ValueError, match=r"add_operation: 'toy_update' is already an operation"):
            _adapter.add_operation(toy_update)
        assert Backend.toy_update is toy_update and "toy_update" not in _adapter.registered(cpu.CpuBackend)
        cpu._fused_update(SPECS["toy_update"], module=Module)
        assert "toy_update" in _adapter.registered(cpu.CpuBackend)
        be = cpu.CpuBackend()
        p = np.ones(4, np.float32)
        be.toy_update(p, np.array([1, -1, 0, 2], np.float32), lr=0.5)
        np.testing.assert_array_equal(p, [0.5, 1.5, 1.0, 0.5])
        assert calls == [np.float32]
        strided = np.ones(8)[::2]  # not contiguous: the reference
        be.toy_update(strided, np.ones(4), lr=0.25)
        np.testing.assert_array_equal(strided, 0.75)
        assert len(calls) == 1
        with pytest.raises(TypeError, match=r"^toy_update: g is float64 but p is float32; cast with"):
            be.toy_update(p, np.ones(4), lr=0.5)
        with pytest.raises(ValueError, match=r"^toy_update: g must have shape \(4,\); got \(3,\)\.$"):
            be.toy_update(p, np.ones(3, np.float32), lr=0.5)
    finally:
        SPECS.pop("toy_update", None)
        classes, i = [Backend], 0
        while i < len(classes):  # every backend class loaded in this process (a device's round trip too)
            classes += classes[i].__subclasses__()
            i += 1
        for cls in classes:
            if "toy_update" in vars(cls):
                delattr(cls, "toy_update")
            if "toy_update" in vars(cls).get("implemented", ()):
                cls.implemented = cls.implemented - {"toy_update"}
