"""fastnn.inference: NumPy-only prediction from model files. The same outputs as
Sequential.predict for every layer and activation, BatchNorm folding and Dropout removal
(on hand-written files: this branch has no BatchNorm layer), batching and per-thread buffers,
input checks, and no compiled kernels needed. Bad files are refused by the shared reader:
tests/test_io.py runs every hostile file through fastnn.inference.load too."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn as fnn
import fastnn.inference as inference
from fastnn import _chain
from fastnn.backends.base import ACTIVATIONS

from _helpers import (DEVICES, REFERENCE, assert_close, npy_bytes, read_members, with_meta, write_model_file,
                      write_zip)
from _models import (batchnorm, dense, dropout, folding_cases, numpy_forward, trained_classifier,
                     trained_regressor)

L = fnn.layers
BAD = "is not a valid fastnn model file"


def saved_model(tmp_path, model, name="m.fnn"):
    path = tmp_path / name
    model.save(path)
    return path


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("build", [trained_classifier, trained_regressor])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_round_trip_predicts_as_the_model(tmp_path, build, device, dtype, activation):
    model, X = build(activation, device, dtype)
    loaded = inference.load(saved_model(tmp_path, model))
    got = loaded.predict(X)
    assert got.dtype == np.dtype(dtype) and got.shape == (len(X), model.n_out)
    assert_close(got, model.predict(X), dtype, factor=4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, alpha", [(a, None) for a in ACTIVATIONS] + [
    ("leaky_relu", 0.0), ("leaky_relu", 1.0), ("leaky_relu", 3.0), ("elu", 0.2), ("elu", 4.0)])
@pytest.mark.filterwarnings("error")  # no overflow or invalid-value warning at the extremes
def test_activations_match_the_reference_at_extremes(dtype, name, alpha):
    edges = [-1e4, -700.0, -100.0, -30.0, -5.0, -1e-3, -0.0, 0.0, 1e-7, 1e-3, 0.5, 5.0, 30.0, 100.0, 700.0, 1e4]
    X = np.array([edges, edges[::-1], np.linspace(-6, 6, len(edges))], dtype=dtype)
    model = fnn.Sequential([L.Activation(name, alpha=alpha)], input_dim=X.shape[1], device="reference",
                           dtype=dtype)
    got = inference.InferenceModel.from_sequential(model).predict(X)
    alpha = model.layers[0].alpha
    assert_close(got, REFERENCE.activation(name, X.astype(np.float64), alpha=alpha), dtype)


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def engine(request, monkeypatch):
    """Every test here runs on both engines: with the compiled one hidden, 'auto' (the default of
    inference.load and Sequential.predict's choice) takes NumPy's."""
    if request.param == "numpy":
        monkeypatch.setattr(_chain, "module", lambda: None)
    return request.param


def test_file_attributes_and_description(tmp_path, engine):
    model = fnn.Sequential([L.Dense(6, activation="elu", alpha=0.5), L.Activation("identity"),
                            L.Dense(4, use_bias=False), L.Activation("softmax")],
                           input_dim=5, seed=0, device="reference")
    model.metadata = {"classes": ["a", "b", "c", "d"], "scale": [1.5]}
    loaded = inference.load(saved_model(tmp_path, model))
    assert (loaded.n_features, loaded.n_outputs, loaded.dtype) == (5, 4, np.float32)
    assert loaded.metadata == model.metadata
    assert [(d["type"], d["n_in"], d["n_out"]) for d in loaded.layers] == [
        ("Dense", 5, 6), ("Activation", 6, 6), ("Dense", 6, 4), ("Activation", 4, 4)]
    assert loaded.layers[0]["config"]["alpha"] == 0.5 and loaded.layers[2]["config"]["use_bias"] is False
    # the identity disappears and the softmax joins the Dense layer before it
    assert [(s.kind, s.n_in, s.n_out, s.activation, s.alpha) for s in loaded.steps] == [
        ("dense", 5, 6, "elu", 0.5), ("dense", 6, 4, "softmax", 0.0)]
    assert loaded.steps[1].bias is None
    assert all(s.weight.dtype == np.float32 and s.weight.flags.c_contiguous for s in loaded.steps)
    assert loaded.engine == engine
    assert loaded.kernels in (("fastnn-avx512", "openblas") if engine == "compiled" else ("numpy",))
    assert repr(loaded) == (f"InferenceModel(5 -> dense 6 elu -> dense 4 softmax, dtype='float32', "
                            f"engine='{engine}', kernels='{loaded.kernels}')")


@pytest.mark.parametrize("file_dtype, dtype", [("float32", "float64"), ("float64", "float32")])
def test_dtype_argument_sets_the_computation(tmp_path, file_dtype, dtype):
    model, X = trained_classifier("gelu", "reference", file_dtype)
    loaded = inference.load(saved_model(tmp_path, model), dtype=dtype)
    assert loaded.dtype == np.dtype(dtype) and loaded.steps[0].weight.dtype == np.dtype(dtype)
    got = loaded.predict(X)
    assert got.dtype == np.dtype(dtype)
    assert_close(got, model.predict(X), "float32", factor=4)


def test_from_sequential_copies_the_weights():
    model, X = trained_regressor("tanh", "reference", "float64")
    folded = inference.InferenceModel.from_sequential(model)
    before = folded.predict(X)
    assert_close(before, model.predict(X), "float64")
    model.set_weights([w + 1.0 for w in model.get_weights()])
    assert np.array_equal(folded.predict(X), before)
    assert inference.InferenceModel.from_sequential(model, dtype="float32").predict(X).dtype == np.float32


def test_from_sequential_refuses_what_it_cannot_fold():
    with pytest.raises(TypeError, match=r"^InferenceModel.from_sequential: expected a fastnn.Sequential; got 3\.$"):
        inference.InferenceModel.from_sequential(3)
    with pytest.raises(ValueError, match=r"^InferenceModel.from_sequential: the model is not built yet"):
        inference.InferenceModel.from_sequential(fnn.Sequential([L.Dense(2)], device="reference"))

    class Scale(L.Activation):  # a layer type without an inference rule
        pass

    model = fnn.Sequential([Scale("relu")], input_dim=2, device="reference")
    with pytest.raises(TypeError, match=r"no inference rule for layer type 'Scale'"):
        inference.InferenceModel.from_sequential(model)


# ------------------------------------------------------------------- batching
@pytest.fixture
def small(tmp_path):
    model, X = trained_classifier("relu", "reference", "float64")
    return inference.load(saved_model(tmp_path, model)), model, X


def test_batch_size_does_not_change_the_result(small):
    loaded, model, X = small
    want = model.predict(X)
    for batch_size in (1, 7, 64, len(X), 10 * len(X)):
        assert_close(loaded.predict(X, batch_size=batch_size), want, "float64")
    rows = np.concatenate([loaded.predict(X[i:i + 1]) for i in range(len(X))])
    assert_close(rows, want, "float64")


def test_large_inputs_are_computed_in_chunks(small, monkeypatch, engine):
    loaded, model, X = small
    monkeypatch.setattr(inference, "_CHUNK", 50)
    X = np.tile(X, (3, 1))  # 720 rows: 15 chunks of 50 and one of 20
    assert_close(loaded.predict(X), model.predict(X), "float64")
    if engine == "numpy":
        local = loaded._local
        assert local.capacity == 50 and {n for n, _ in local.plans} == {50, 20}
    else:  # the scratch of one chunk, reused
        assert loaded._runner._local.buf.size == loaded._runner.chain.scratch_size(50)


def test_results_are_fresh_arrays_and_inputs_are_untouched(small):
    loaded, _, X = small
    first = loaded.predict(X[:1])
    keep = first.copy()
    second = loaded.predict(X[1:2])
    assert np.array_equal(first, keep) and not np.shares_memory(first, second)
    Xf = np.asfortranarray(X)
    Xkeep = Xf.copy()
    loaded.predict(Xf)
    assert np.array_equal(Xf, Xkeep)


def test_an_activation_first_leaves_the_input_untouched():
    X = np.linspace(-3, 3, 12).reshape(3, 4)
    for name in ACTIVATIONS:
        model = fnn.Sequential([L.Activation(name), L.Dense(2)], input_dim=4, seed=0, device="reference",
                               dtype="float64")
        Xc = X.copy()
        inference.InferenceModel.from_sequential(model).predict(Xc)
        assert np.array_equal(Xc, X), name


def test_threads_share_a_model_safely(small):
    loaded, model, X = small
    want = {n: model.predict(X[:n]) for n in (1, 3, 17, 240)}
    errors = []

    def work(seed):
        order = np.random.default_rng(seed).permutation(np.repeat(list(want), 30))
        for n in order:
            if not np.allclose(loaded.predict(X[:n]), want[n], rtol=1e-12, atol=1e-12):
                errors.append(n)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_many_batch_sizes_keep_the_buffer_cache_bounded(small, engine):
    loaded, model, X = small
    for n in range(1, 60):
        loaded.predict(X[:n])
    if engine == "numpy":
        assert len(loaded._local.plans) <= inference._MAX_PLANS
    else:  # one scratch buffer per thread, grown to the largest batch
        assert loaded._runner._local.buf.size == loaded._runner.chain.scratch_size(59)
    assert_close(loaded.predict(X[:33]), model.predict(X[:33]), "float64")


@pytest.mark.parametrize("X, batch_size, error, match", [
    (np.ones(2), None, ValueError, r"^InferenceModel.predict: X must be 2-D; got 1-D with shape \(2,\); for one "),
    (np.ones((3, 5)), None, ValueError, r"^InferenceModel.predict: X has 5 features; the model takes 2\.$"),
    (np.zeros((0, 2)), None, ValueError, r"^InferenceModel.predict: X is empty"),
    ([[1.0, np.nan]], None, ValueError, r"^InferenceModel.predict: X contains NaN or inf \(first at index \[0, 1\]"),
    ("12", None, TypeError, r"^InferenceModel.predict: X must be an array of numbers; got a string"),
    (np.ones((3, 2), np.float16), None, TypeError, r"^InferenceModel.predict: X has dtype float16"),
    (np.ones((3, 2)), 0, ValueError, r"^InferenceModel.predict: batch_size must be >= 1; got 0\.$"),
    (np.ones((3, 2)), 2.5, TypeError, r"^InferenceModel.predict: batch_size must be an integer; got 2.5\.$"),
])
def test_bad_inputs(small, X, batch_size, error, match):
    with pytest.raises(error, match=match):
        small[0].predict(X, batch_size=batch_size)


def test_lists_ints_and_bools_are_accepted(small):
    loaded, _, _ = small
    ints = np.array([[1, -2], [0, 3]])
    assert np.array_equal(loaded.predict(ints.tolist()), loaded.predict(ints.astype(np.float64)))
    assert np.array_equal(loaded.predict(ints > 0), loaded.predict((ints > 0).astype(np.float64)))


def test_bad_dtype_argument(small, tmp_path):
    path = saved_model(tmp_path, small[1])
    with pytest.raises(ValueError, match=r"^fastnn.inference.load: dtype must be 'float32' or 'float64'; got 'int8'"):
        inference.load(path, dtype="int8")


# ------------------------------------------------------ BatchNorm and Dropout
CASES = folding_cases()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_batchnorm_is_folded_and_dropout_removed(tmp_path, case, dtype):
    layers, n_in, steps = CASES[case]
    path = write_model_file(tmp_path / "bn.fnn", layers, n_in, dtype=dtype)
    loaded = inference.load(path)
    assert [(s.kind, s.activation) for s in loaded.steps] == steps
    X = np.random.default_rng(1).normal(0, 2, (50, n_in))
    assert_close(loaded.predict(X), numpy_forward(layers, X, dtype), dtype, factor=4)
    assert loaded.n_outputs == numpy_forward(layers, X, dtype).shape[1]
    assert [d["type"] for d in loaded.layers] == [kind for kind, _, _ in layers]


def test_batchnorm_arrays_are_taken_by_order_not_by_name(tmp_path):
    rng = np.random.default_rng(3)
    layers = [dense(4, 6, rng, "relu"), batchnorm(6, rng), dense(6, 2, rng)]
    renamed = [layers[0], batchnorm(6, np.random.default_rng(0), names=("scale", "shift", "m", "v")), layers[2]]
    renamed[1][2].update(zip(renamed[1][2], layers[1][2].values()))  # same arrays, other names
    X = rng.normal(size=(9, 4))
    a = inference.load(write_model_file(tmp_path / "a.fnn", layers, 4, dtype="float64")).predict(X)
    b = inference.load(write_model_file(tmp_path / "b.fnn", renamed, 4, dtype="float64")).predict(X)
    assert np.array_equal(a, b)
    swapped = [layers[0], ("BatchNorm", layers[1][1], dict(zip(("beta", "gamma", "running_mean", "running_var"),
                                                               [layers[1][2][k] for k in ("beta", "gamma",
                                                                                          "running_mean",
                                                                                          "running_var")]))),
               layers[2]]
    c = inference.load(write_model_file(tmp_path / "c.fnn", swapped, 4, dtype="float64")).predict(X)
    assert not np.allclose(a, c)  # the first array is gamma, whatever its name


def test_batchnorm_defaults_fill_a_short_config(tmp_path):
    rng = np.random.default_rng(0)
    kind, _, arrays = batchnorm(3, rng)
    layers = [(kind, {}, arrays)]
    loaded = inference.load(write_model_file(tmp_path / "bn.fnn", layers, 3, dtype="float64"))
    assert loaded.layers[0]["config"] == {"momentum": 0.1, "eps": 1e-5, "trainable": True}
    X = rng.normal(size=(4, 3))
    want = numpy_forward([(kind, {"eps": 1e-5}, arrays)], X, "float64")
    assert_close(loaded.predict(X), want, "float64")


def _bn_file(tmp_path, edit=None, var=None, eps=1e-3, dtype="float32"):
    rng = np.random.default_rng(0)
    layers = [dense(3, 4, rng, "relu"), batchnorm(4, rng, eps=eps), dropout(), dense(4, 2, rng)]
    if var is not None:
        layers[1][2]["running_var"] = var
    path = write_model_file(tmp_path / "bn.fnn", layers, 3, dtype=dtype)
    return path if edit is None else with_meta(path, tmp_path / "bad.fnn", edit)


def _edit_config(layer, key, value):
    def edit(meta):
        if value is KeyError:
            del meta["model"]["layers"][layer]["config"][key]
        else:
            meta["model"]["layers"][layer]["config"][key] = value
    return edit


def _edit_arrays(fn):
    def edit(meta):
        fn(meta["arrays"])
    return edit


BAD_FILES = [
    (_edit_config(1, "eps", 0.0), r"layer 1 has an invalid config \(BatchNorm: eps must be > 0.0; got 0.0\.\)"),
    (_edit_config(1, "eps", "1e-3"), r"layer 1 has an invalid config \(BatchNorm: eps must be a real number"),
    (_edit_config(1, "eps", float("nan")), r"model.json is not valid JSON \(NaN is not a JSON number"),
    (_edit_config(1, "momentum", 1.5), r"layer 1 has an invalid config \(BatchNorm: momentum must be <= 1.0"),
    (_edit_config(1, "axis", 1), r"layer 1 has an invalid config \(BatchNorm: unknown config key 'axis'; it takes "
                                 r"eps, momentum, trainable\.\)"),
    (_edit_config(1, "trainable", "yes"), r"layer 1 has an invalid config \(BatchNorm: trainable must be True or"),
    (_edit_config(2, "rate", 1.0), r"layer 2 has an invalid config \(Dropout: rate must be < 1.0; got 1.0\.\)"),
    (_edit_config(2, "rate", -0.1), r"layer 2 has an invalid config \(Dropout: rate must be >= 0.0; got -0.1"),
    (_edit_config(2, "rate", KeyError), r"layer 2 has an invalid config \(Dropout: the config lacks 'rate'\.\)"),
    (_edit_config(2, "seed", 3), r"layer 2 has an invalid config \(Dropout: unknown config key 'seed'; it takes "
                                 r"rate, trainable"),
    (_edit_arrays(lambda a: a.pop(5)), "the array list does not match the architecture"),  # three BN arrays
    (_edit_arrays(lambda a: a[2].update(shape=[5])), "the array list does not match the architecture"),
    (_edit_arrays(lambda a: a[3].update(param="gamma", name="arrays/1.gamma.npy")),  # a name twice
     "the array list does not match the architecture"),
    (_edit_arrays(lambda a: a[2].update(param="../../x", name="arrays/1.../../x.npy")),
     "the array list does not match the architecture"),
    (_edit_arrays(lambda a: a[2].update(param="gamma.npy", name="arrays/1.gamma.npy.npy")),
     "the array list does not match the architecture"),
    (_edit_arrays(lambda a: a[2].update(layer=2, name="arrays/2.gamma.npy")),
     "the array list does not match the architecture"),
]


@pytest.mark.parametrize("edit, match", BAD_FILES, ids=[f"{i}" for i in range(len(BAD_FILES))])
def test_bad_batchnorm_and_dropout_files(tmp_path, edit, match):
    with pytest.raises(fnn.ModelFormatError, match=f"^fastnn.inference.load: .* {BAD}: {match}"):
        inference.load(_bn_file(tmp_path, edit))


def test_bad_batchnorm_arrays(tmp_path):
    with pytest.raises(fnn.ModelFormatError, match=rf"{BAD}: layer 1 \(BatchNorm\) has a negative running "
                                                   rf"variance -0.5\.$"):
        inference.load(_bn_file(tmp_path, var=np.array([1.0, -0.5, 2.0, 1.0])))
    members = read_members(_bn_file(tmp_path))  # the parameters are named by the file, the data still checked
    members["arrays/1.running_var.npy"] = members["arrays/1.running_var.npy"][:-4]
    with pytest.raises(fnn.ModelFormatError, match=BAD):
        inference.load(write_zip(tmp_path / "short.fnn", members))


@pytest.mark.filterwarnings("error")
def test_folding_beyond_float32_is_refused_and_float64_computes_it(tmp_path):
    path = _bn_file(tmp_path, var=np.zeros(4), eps=1e-90, dtype="float64")  # scales the weights by 1e45
    with pytest.raises(fnn.ModelFormatError, match=rf"{BAD}: folding the BatchNorm layers gives weights beyond "
                                                   rf"the range of float32\.$"):
        inference.load(path, dtype="float32")
    assert np.isfinite(inference.load(path).predict(np.ones((2, 3)) * 1e-50)).all()
    beyond_float64 = _bn_file(tmp_path, var=np.zeros(4), eps=1e-300, dtype="float64")  # s = 1e150, w 1e160
    members = read_members(beyond_float64)
    members["arrays/3.w.npy"] = npy_bytes(np.full((4, 2), 1e160))
    with pytest.raises(fnn.ModelFormatError, match=r"folding the BatchNorm layers gives weights beyond the range "
                                                   r"of float64\.$"):
        inference.load(write_zip(tmp_path / "huge.fnn", members))


# ------------------------------------------------------ no compiled extensions
BLOCK = """
import sys

class Refuse:
    '''Acts as if the compiled kernels, numba and scipy were not installed.'''
    def find_spec(self, name, path=None, target=None):
        if name.startswith("fastnn._ext") or name.split(".")[0] in ("numba", "scipy"):
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)")
        return None

sys.meta_path.insert(0, Refuse())
"""


def run_python(code, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(fnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.dirname(os.path.abspath(__file__))])
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_predicts_without_the_compiled_kernels_numba_or_scipy(tmp_path):
    rng = np.random.default_rng(0)
    layers = [dense(6, 8, rng, "gelu"), batchnorm(8, rng), dropout(), dense(8, 3, rng, "softmax")]
    write_model_file(tmp_path / "m.fnn", layers, 6)
    X = rng.normal(size=(5, 6))
    np.save(tmp_path / "X.npy", X)
    code = BLOCK + textwrap.dedent("""
        import json
        try:
            import fastnn._ext.dense
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker did not block")
        import numpy as np
        import fastnn.inference
        model = fastnn.inference.load("m.fnn")
        np.save("out.npy", model.predict(np.load("X.npy")))
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("fastnn", "numba", "scipy"))))
    """)
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert not [m for m in modules if m.startswith(("fastnn._ext", "numba", "scipy"))]
    assert not {"fastnn.backends.cpu", "fastnn.trainer", "fastnn.model"} & set(modules)
    assert_close(np.load(tmp_path / "out.npy"), numpy_forward(layers, X, "float32"), "float32", factor=4)


def test_the_blocker_blocks_the_cpu_backend(tmp_path):
    # guards the test above: with the blocker, the compiled backend really is unavailable
    code = BLOCK + "import fastnn as fnn\nfnn.Sequential([fnn.layers.Dense(2)], input_dim=2, device='cpu')\n"
    result = run_python(code, tmp_path)
    assert result.returncode != 0 and "refused by the test" in result.stderr


# ------------------------------------------------------------------ NaN/inf screening
# predict finds NaN/inf in X through the first step's product (every output of a row with a NaN
# or inf input is NaN or inf), so these place them where a product could hide them.
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("first", ["dense", "dense_zero_column", "batchnorm", "activation"])
@pytest.mark.parametrize("rows, bad_row, batch_size", [(1, 0, None), (7, 6, None), (50, 37, 8), (50, 3, 8),
                                                      (14_000, 13_999, None), (14_000, 5, 1000)])  # > 65536 values
def test_nan_and_inf_anywhere_in_X_are_refused_with_their_index(first, value, rows, bad_row, batch_size):
    layers = {"dense": [L.Dense(4, activation="relu")],
              "dense_zero_column": [L.Dense(4, activation="relu")],
              "batchnorm": [L.BatchNorm(), L.Activation("relu"), L.Dense(2)],
              "activation": [L.Activation("sigmoid"), L.Dense(2)]}[first]
    model = fnn.Sequential(layers + [L.Dense(2, activation="softmax")], input_dim=5, seed=0, device="reference")
    if first == "dense_zero_column":
        weights = model.get_weights()
        weights[0][3] = 0.0  # input feature 3 meets only zero weights
        model.set_weights(weights)
    loaded = inference.InferenceModel.from_sequential(model)
    X = np.random.default_rng(0).standard_normal((rows, 5))
    X[bad_row, 3] = value
    with pytest.raises(ValueError, match=rf"^InferenceModel.predict: X contains NaN or inf \(first at index "
                                         rf"\[{bad_row}, 3\]"):
        loaded.predict(X, batch_size=batch_size)
    X[bad_row, 3] = 0.0
    assert_close(loaded.predict(X, batch_size=batch_size), model.predict(X), "float32")  # buffers still fine


@pytest.mark.parametrize("rows, batch_size", [(1, None), (1, 2), (40_000, None), (40_000, 5000)])
def test_a_finite_X_whose_first_product_overflows_is_computed_not_refused(rows, batch_size):
    model = fnn.Sequential([L.Dense(3, activation="tanh"), L.Dense(2)], input_dim=2, seed=0, device="reference",
                           dtype="float32")
    weights = model.get_weights()
    # each column's two weights share a sign, so an overflowing row sums inf + inf, never inf - inf, in any
    # summation order (a BLAS that adds two products of opposite infinite sign would rightly give NaN)
    weights[0] = np.array([[1.5, -1.25, 2.0], [0.75, -2.0, 1.0]], np.float32)
    model.set_weights(weights)
    X = np.tile(np.array([[3e38, 3e38], [1.0, -1.0], [-3e38, -3e38]], np.float32), (rows, 1))
    loaded = inference.InferenceModel.from_sequential(model)
    with np.errstate(over="ignore", invalid="ignore"):
        got, expected = loaded.predict(X, batch_size=batch_size), model.predict(X)
    assert np.isfinite(got).all()  # tanh(+-inf) = +-1
    assert_close(got, expected, "float32")
