"""fastnn.export.to_onnx and `fastnn export`: the ONNX graph passes onnx's checker and ONNX
Runtime computes what model.predict does, for every layer and activation, float32 and
float64, classification and regression; BatchNorm is folded and Dropout removed; bad
arguments are refused. Skipped where onnx or onnxruntime are not installed (the `test` extra
installs them), except the checks of what happens without onnx."""

import os
import sys

import numpy as np
import pytest

import fastnn as fnn
import fastnn.export as export
import fastnn.inference as inference
from fastnn.backends.base import ACTIVATIONS
from fastnn.cli import main

from _helpers import DEVICES, assert_close, write_model_file
from _models import folding_cases, numpy_forward, trained_classifier, trained_regressor

try:
    import onnx
    import onnxruntime as ort
except ImportError:
    onnx = ort = None

needs_onnx = pytest.mark.skipif(ort is None, reason="needs onnx and onnxruntime (pip install -e '.[test]')")
L = fnn.layers
OPSETS = [13, 17, export.GELU_OPSET]
#: How far the float64 graph may be from the model, as a multiple of the float64 tolerance:
#: ONNX stores LeakyRelu's and Elu's alpha as float32, and where ONNX Runtime has no float64
#: kernel (Elu, Softplus, Erf/Gelu) onnx's reference evaluator runs the graph, with a float32 erf.
FLOAT64_FACTOR = {"leaky_relu": 1e4, "elu": 1e4, "gelu": 1e5}


def run_onnx(path, X):
    """Output of the ONNX file for X: ONNX Runtime's, or where ONNX Runtime has no kernel for
    a float64 operator, that of onnx's reference evaluator."""
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's NotImplemented is not exported under a stable name
        if X.dtype != np.float64 or "NOT_IMPLEMENTED" not in str(exc):
            raise
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(str(path)).run(None, {"input": X})[0]
    return session.run(["output"], {"input": X})[0]


def assert_onnx_matches(path, X, want, dtype, activation=None):
    X = np.ascontiguousarray(X, dtype=dtype)
    got = run_onnx(path, X)
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    factor = FLOAT64_FACTOR.get(activation, 4) if dtype == "float64" else 4
    assert_close(got, want, dtype, factor=factor)


def random_model(activation, dtype, n_in=7):
    """Dense(act) -> Activation(act) -> Dense(act), weights large enough to reach the tails."""
    model = fnn.Sequential([L.Dense(16, activation=activation), L.Activation(activation, alpha=0.3 if activation in
                                                                                  ("leaky_relu", "elu") else None),
                            L.Dense(5, activation=activation)], input_dim=n_in, seed=0, device="reference",
                           dtype=dtype)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 1.5, w.shape) for w in model.get_weights()])
    return model


def op_types(proto):
    return [node.op_type for node in proto.graph.node]


# ------------------------------------------------------------ every activation
@needs_onnx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_runs_in_onnx_runtime(tmp_path, activation, opset, dtype):
    model = random_model(activation, dtype)
    path = tmp_path / "m.onnx"
    proto = export.to_onnx(model, path, opset=opset)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert proto.opset_import[0].version == opset
    X = np.random.default_rng(1).normal(0, 2, (37, 7))
    assert_onnx_matches(path, X, model.predict(X), dtype, activation)


@needs_onnx
@pytest.mark.parametrize("build", [trained_classifier, trained_regressor])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_trained_model_round_trip_through_a_file(tmp_path, build, device, activation):
    model, X = build(activation, device, "float32")
    model.save(tmp_path / "m.fnn")
    export.to_onnx(tmp_path / "m.fnn", tmp_path / "m.onnx")
    assert_onnx_matches(tmp_path / "m.onnx", X, model.predict(X), "float32")


@needs_onnx
def test_graph_interface(tmp_path):
    model, X = trained_classifier("relu", "reference", "float64")
    model.metadata = {"classes": ["a", "b", "c"]}
    proto = export.to_onnx(model, tmp_path / "m.onnx")
    graph = proto.graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["output"]
    for value, width in ((graph.input[0], 2), (graph.output[0], 3)):
        dims = value.type.tensor_type.shape.dim
        assert value.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
        assert (dims[0].dim_param, dims[1].dim_value) == ("batch", width)
    assert op_types(proto) == ["Gemm", "Relu", "Relu", "Gemm", "Softmax"]
    assert proto.producer_name == "fastnn" and proto.producer_version == fnn.__version__
    assert proto.ir_version == onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", 17)])
    assert {p.key: p.value for p in proto.metadata_props} == {"fastnn.metadata": '{"classes": ["a", "b", "c"]}'}
    for n in (1, 5, len(X)):  # the batch dimension is dynamic
        assert_onnx_matches(tmp_path / "m.onnx", X[:n], model.predict(X[:n]), "float64")


@needs_onnx
def test_gelu_is_one_operator_from_opset_20_and_erf_below(tmp_path):
    model = random_model("gelu", "float32")
    assert "Gelu" not in op_types(export.to_onnx(model, tmp_path / "a.onnx", opset=export.GELU_OPSET - 1))
    assert op_types(export.to_onnx(model, tmp_path / "a.onnx", opset=export.GELU_OPSET - 1)).count("Erf") == 3
    assert op_types(export.to_onnx(model, tmp_path / "b.onnx", opset=export.GELU_OPSET)).count("Gelu") == 3


@needs_onnx
def test_silu_is_x_times_sigmoid_and_alpha_is_kept(tmp_path):
    assert op_types(export.to_onnx(random_model("silu", "float32"), tmp_path / "s.onnx"))[:3] == [
        "Gemm", "Sigmoid", "Mul"]
    proto = export.to_onnx(random_model("leaky_relu", "float32"), tmp_path / "l.onnx")
    alphas = [a.f for node in proto.graph.node for a in node.attribute if a.name == "alpha"]
    np.testing.assert_allclose(alphas, [0.01, 0.3, 0.01], rtol=1e-7)


@needs_onnx
@pytest.mark.parametrize("case", list(folding_cases()))
def test_batchnorm_is_folded_and_dropout_removed(tmp_path, case):
    layers, n_in, _ = folding_cases()[case]
    path = write_model_file(tmp_path / "bn.fnn", layers, n_in)
    proto = export.to_onnx(path, tmp_path / "bn.onnx")
    assert not {"BatchNormalization", "Dropout"} & set(op_types(proto))
    X = np.random.default_rng(1).normal(0, 2, (20, n_in))
    assert_onnx_matches(tmp_path / "bn.onnx", X, numpy_forward(layers, X, "float32"), "float32")


@needs_onnx
def test_path_inference_model_and_sequential_give_the_same_file(tmp_path):
    model, _ = trained_regressor("elu", "reference", "float32")
    model.save(tmp_path / "m.fnn")
    export.to_onnx(tmp_path / "m.fnn", tmp_path / "a.onnx")
    export.to_onnx(inference.load(tmp_path / "m.fnn"), tmp_path / "b.onnx")
    export.to_onnx(model, tmp_path / "c.onnx")
    a, b, c = ((tmp_path / f"{x}.onnx").read_bytes() for x in "abc")
    assert a == b == c


@needs_onnx
def test_float64_model_exported_as_float32_runs_everywhere(tmp_path):
    model = random_model("gelu", "float64")
    proto = export.to_onnx(model, tmp_path / "m.onnx", dtype="float32")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    X = np.random.default_rng(1).normal(0, 2, (9, 7)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert_close(session.run(None, {"input": X})[0], model.predict(X), "float32", factor=4)


@needs_onnx
def test_identity_model_exports(tmp_path):
    model = fnn.Sequential([L.Activation("identity")], input_dim=3, device="reference")
    proto = export.to_onnx(model, tmp_path / "i.onnx")
    assert op_types(proto) == ["Identity"]
    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert_onnx_matches(tmp_path / "i.onnx", X, X, "float32")


# -------------------------------------------------------------- bad arguments
@needs_onnx
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(opset=12), ValueError, r"^fastnn.export.to_onnx: opset must be >= 13; got 12\.$"),
    (dict(opset=10_000), ValueError, r"^fastnn.export.to_onnx: opset must be <= \d+; got 10000\.$"),
    (dict(opset="17"), TypeError, r"^fastnn.export.to_onnx: opset must be an integer; got '17'\.$"),
    (dict(dtype="float16"), ValueError, r"^fastnn.export.to_onnx: dtype must be 'float32' or 'float64'"),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        export.to_onnx(random_model("relu", "float32"), tmp_path / "m.onnx", **kwargs)
    assert not os.listdir(tmp_path)


@needs_onnx
def test_bad_models(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(TypeError, match=r"^fastnn.export.to_onnx: model must be a fastnn.Sequential, an "
                                        r"InferenceModel or the path of a .fnn file; got int\.$"):
        export.to_onnx(3, out)
    with pytest.raises(ValueError, match=r"^InferenceModel.from_sequential: the model is not built yet"):
        export.to_onnx(fnn.Sequential([L.Dense(2)], device="reference"), out)
    with pytest.raises(FileNotFoundError, match=r"no file at"):
        export.to_onnx(tmp_path / "missing.fnn", out)
    (tmp_path / "text.fnn").write_text("not a model")
    with pytest.raises(fnn.ModelFormatError, match=r"is not a valid fastnn model file"):
        export.to_onnx(tmp_path / "text.fnn", out)
    model = random_model("relu", "float32")
    model.metadata = {"when": object()}
    with pytest.raises(TypeError, match=r"^fastnn.export.to_onnx: model.metadata must be JSON-serialisable"):
        export.to_onnx(model, out)
    with pytest.raises(ValueError, match=r"^fastnn.export.to_onnx: this InferenceModel computes in float32; load "
                                         r"it again with fastnn.inference.load\(path, dtype='float64'\)"):
        export.to_onnx(inference.InferenceModel.from_sequential(random_model("relu", "float32")), out,
                       dtype="float64")
    assert sorted(os.listdir(tmp_path)) == ["text.fnn"]


@needs_onnx
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    import fastnn._files

    def failing_fsync(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(fastnn._files.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        export.to_onnx(random_model("relu", "float32"), out)
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.onnx"]


def test_without_onnx_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"^fastnn.export.to_onnx needs the onnx package; install it with pip "
                                          r"install 'fastnn\[onnx\]'"):
        export.to_onnx(random_model("relu", "float32"), tmp_path / "m.onnx")
    model = random_model("relu", "float32")
    model.save(tmp_path / "m.fnn")
    assert main(["export", str(tmp_path / "m.fnn"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------ the command line
@needs_onnx
def test_cli_export(tmp_path, capsys):
    model, X = trained_classifier("tanh", "reference", "float64")
    model.save(tmp_path / "m.fnn")
    assert main(["export", str(tmp_path / "m.fnn"), "--onnx", str(tmp_path / "m.onnx"), "--opset", "20"]) == 0
    out = capsys.readouterr().out
    assert out == f"saved {tmp_path / 'm.onnx'}: opset 20, 5 nodes, input 'input' ['batch', 2], " \
                  f"output 'output' ['batch', 3]\n"
    assert_onnx_matches(tmp_path / "m.onnx", X, model.predict(X), "float64", "tanh")
    assert main(["export", str(tmp_path / "m.fnn"), "--onnx", str(tmp_path / "f.onnx"), "--dtype", "float32"]) == 0
    assert onnx.load(str(tmp_path / "f.onnx")).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@needs_onnx
@pytest.mark.parametrize("args, match", [
    (["{m}"], r"the following arguments are required: --onnx"),
    (["{d}/missing.fnn", "--onnx", "{d}/o.onnx"], r"fastnn.inference.load: no file at '.*missing.fnn'\."),
    (["{d}/text.fnn", "--onnx", "{d}/o.onnx"], r"is not a valid fastnn model file: the zip archive is damaged"),
    (["{m}", "--onnx", "{d}/o.onnx", "--opset", "9"], r"fastnn.export.to_onnx: opset must be >= 13; got 9\."),
    (["{m}", "--onnx", "{d}/o.onnx", "--opset", "x"], r"argument --opset: invalid int value: 'x'"),
    (["{m}", "--onnx", "{d}/o.onnx", "--dtype", "int8"], r"argument --dtype: invalid choice: 'int8'"),
    (["{m}", "--onnx", "{d}/no/such/folder/o.onnx"], r"--onnx .*o.onnx: the folder .*folder does not exist"),
])
def test_cli_export_errors_exit_2_with_one_line(tmp_path, capsys, args, match):
    random_model("relu", "float32").save(tmp_path / "m.fnn")
    (tmp_path / "text.fnn").write_text("not a model")
    argv = ["export"] + [a.format(m=tmp_path / "m.fnn", d=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastnn: error: ")
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "o.onnx").exists()


@needs_onnx
def test_cli_export_unwritable_target_exits_2(tmp_path, capsys, monkeypatch):
    random_model("relu", "float32").save(tmp_path / "m.fnn")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export, "atomic_write", refuse)
    assert main(["export", str(tmp_path / "m.fnn"), "--onnx", str(tmp_path / "o.onnx")]) == 2
    assert capsys.readouterr().err == f"fastnn: error: --onnx {tmp_path / 'o.onnx'}: cannot write the file " \
                                      f"(Permission denied)\n"
