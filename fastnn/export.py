"""Export to ONNX: a standard graph that ONNX Runtime and other runtimes execute.

The graph is the folded computation of ``fastnn.inference`` (BatchNorm folded into the
Dense layers, Dropout removed): one ``Gemm`` per Dense layer, ``Mul`` + ``Add`` for a
BatchNorm that could not be folded, and the activations as ``Relu``, ``Sigmoid``, ``Tanh``,
``LeakyRelu(alpha)``, ``Elu(alpha)``, ``Softplus``, ``Softmax(axis=-1)``, x * ``Sigmoid``(x)
for SiLU, and ``Gelu`` from opset 20 (x/2 (1 + ``Erf``(x / sqrt 2)) below). The input is
named ``input`` (batch, n_features) and the output ``output`` (batch, n_outputs), with a
dynamic batch dimension; the element type is the model's float32 or float64. The model's
metadata is kept as the JSON string ``fastnn.metadata`` in the ONNX metadata.

Needs the ``onnx`` package (``pip install "fastnn[onnx]"``); it is imported on first use.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ._checks import check_dtype_name, check_int
from ._files import atomic_write

#: Opsets written: 13 (Softmax on one axis) up to the newest the installed onnx knows.
MIN_OPSET = 13
#: The first opset with a Gelu operator.
GELU_OPSET = 20
_SIMPLE = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("fastnn.export.to_onnx needs the onnx package; install it with "
                          "pip install 'fastnn[onnx]' (or pip install onnx).") from None
    return onnx


class _Graph:
    """Collects the nodes and initializers of a graph with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, dtype
        self.nodes, self.initializers = [], []
        self._count = 0

    def name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint, value):
        name = self.name(hint)
        arr = np.asarray(value, dtype=self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op, inputs, output=None, hint=None, **attrs):
        output = output or self.name(hint or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=self.name(op), **attrs))
        return output


def _activation(g, name, alpha, x, opset, output):
    """Nodes computing activation ``name`` of x; returns the output's name."""
    if name in _SIMPLE:
        return g.node(_SIMPLE[name], [x], output)
    if name == "leaky_relu":
        return g.node("LeakyRelu", [x], output, alpha=float(alpha))
    if name == "elu":
        return g.node("Elu", [x], output, alpha=float(alpha))
    if name == "softmax":
        return g.node("Softmax", [x], output, axis=-1)
    if name == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x])], output)
    if name == "gelu":
        if opset >= GELU_OPSET:
            return g.node("Gelu", [x], output)
        erf = g.node("Erf", [g.node("Mul", [x, g.constant("inv_sqrt2", 1.0 / math.sqrt(2.0))])])
        cdf = g.node("Mul", [g.node("Add", [erf, g.constant("one", 1.0)]), g.constant("half", 0.5)])
        return g.node("Mul", [x, cdf], output)
    raise ValueError(f"fastnn.export: no ONNX form for activation {name!r}.")


def _graph(model, opset, onnx):
    """The ONNX GraphProto of an InferenceModel."""
    g = _Graph(onnx, model.dtype)
    x = "input"
    last = len(model.steps) - 1
    for i, step in enumerate(model.steps):
        act = step.activation
        out = "output" if i == last and act == "identity" else None
        if step.kind == "dense":
            inputs = [x, g.constant(f"dense{i}_weight", step.weight)]
            if step.bias is not None:
                inputs.append(g.constant(f"dense{i}_bias", step.bias))
            x = g.node("Gemm", inputs, out, hint=f"dense{i}")
        elif step.kind == "affine":
            x = g.node("Mul", [x, g.constant(f"affine{i}_scale", step.weight)], hint=f"affine{i}_scaled")
            x = g.node("Add", [x, g.constant(f"affine{i}_shift", step.bias)], out, hint=f"affine{i}")
        if act != "identity":
            x = _activation(g, act, step.alpha, x, opset, "output" if i == last else None)
    if x != "output":  # a model that computes the identity
        x = g.node("Identity", [x], "output")
    elem = onnx.helper.np_dtype_to_tensor_dtype(model.dtype)
    inputs = [onnx.helper.make_tensor_value_info("input", elem, ["batch", model.n_features])]
    outputs = [onnx.helper.make_tensor_value_info("output", elem, ["batch", model.n_outputs])]
    return onnx.helper.make_graph(g.nodes, "fastnn", inputs, outputs, g.initializers)


def to_onnx(model, path, opset=17, dtype=None):
    """Write ``model`` as an ONNX file (atomically) and return the ONNX ModelProto.

    Parameters
    ----------
    model : fastnn.Sequential, fastnn.inference.InferenceModel, str or os.PathLike
        A built model, or the path of a ``.fnn`` file.
    path : str or os.PathLike
        Where to write the ``.onnx`` file.
    opset : int, default 17
        ONNX opset, from 13 to the newest the installed onnx supports. GELU is the Gelu
        operator from opset 20 and its Erf form below.
    dtype : {'float32', 'float64'}, optional
        Element type of the graph; default the model's. ONNX Runtime (1.31) has no float64
        kernels for Elu, Softplus and Erf/Gelu: export such models with dtype='float32' to run
        them there.

    The graph passes ``onnx.checker.check_model`` (checked before writing). Raises
    ImportError when onnx is not installed, ModelFormatError for a bad ``.fnn`` file.

    >>> import fastnn as fnn, fastnn.export, os, tempfile
    >>> m = fnn.Sequential([fnn.layers.Dense(3, activation="softmax")], input_dim=4, seed=0)
    >>> proto = fnn.export.to_onnx(m, os.path.join(tempfile.mkdtemp(), "m.onnx"))
    >>> [n.op_type for n in proto.graph.node]
    ['Gemm', 'Softmax']
    """
    from . import __version__
    from .inference import InferenceModel, load
    from .model import Sequential

    owner = "fastnn.export.to_onnx"
    onnx = _import_onnx()
    opset = check_int(owner, "opset", opset, low=MIN_OPSET, high=onnx.defs.onnx_opset_version())
    dtype = None if dtype is None else check_dtype_name(owner, dtype)
    if isinstance(model, (str, os.PathLike)):
        model = load(model, dtype=dtype)
    elif isinstance(model, Sequential):
        model = InferenceModel.from_sequential(model, dtype=dtype)
    elif not isinstance(model, InferenceModel):
        raise TypeError(f"{owner}: model must be a fastnn.Sequential, an InferenceModel or the path of a .fnn "
                        f"file; got {type(model).__name__}.")
    elif dtype is not None and dtype != model.dtype:
        raise ValueError(f"{owner}: this InferenceModel computes in {model.dtype.name}; load it again with "
                         f"fastnn.inference.load(path, dtype={dtype.name!r}) to export {dtype.name}.")
    try:
        metadata = json.dumps(model.metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{owner}: model.metadata must be JSON-serialisable; {exc}.") from None
    opset_id = onnx.helper.make_opsetid("", opset)
    proto = onnx.helper.make_model(_graph(model, opset, onnx), opset_imports=[opset_id],
                                   producer_name="fastnn", producer_version=__version__)
    proto.ir_version = onnx.helper.find_min_ir_version_for([opset_id])
    onnx.helper.set_model_props(proto, {"fastnn.metadata": metadata})
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    with atomic_write(path) as f:
        f.write(data)
    return proto


__all__ = ["GELU_OPSET", "MIN_OPSET", "to_onnx"]
