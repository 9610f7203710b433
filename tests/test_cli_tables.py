"""Issue 16 and issue 17 finding 6: the CLI on real tables. A CLI-trained model predicts the same
through fnn.load, fastnn.inference and ONNX Runtime on raw inputs; columns are matched by name;
categories, missing values and string labels behave as documented; regression targets are
scaled; bad files and output paths give one line, never a traceback. Plus bounded fuzz tests of
the CSV/NPZ readers."""

import csv
import json
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fnn
import fastnn.inference
from fastnn.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    return code, lines[:lines.index("timing:")] if "timing:" in lines else lines, err.splitlines()


def write_csv(path, header, rows, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = np.array(["setosa", "versicolor", "virginica"])


@pytest.fixture
def iris_table(tmp_path):
    """Iris with named columns and string labels."""
    X, y = fnn.datasets.load_iris()
    rows = [[f"{v:.2f}" for v in x] + [SPECIES[t]] for x, t in zip(X.tolist(), y)]
    return write_csv(tmp_path / "iris.csv", IRIS_NAMES + ["species"], rows), X, SPECIES[y]


def test_issue16_cli_model_predicts_the_same_everywhere_on_raw_inputs(capsys, tmp_path, iris_table):
    path, X, labels = iris_table
    code, out, _ = run(capsys, "train", "--data", path, "--epochs", 30, "--out", tmp_path / "m.fnn")
    assert code == 0
    model = fnn.load(tmp_path / "m.fnn")
    X = X.astype(np.float32).round(2)
    api = model.predict(X)
    classes = np.array(model.metadata["classes"])
    assert list(classes) == list(SPECIES)
    assert np.mean(classes[api.argmax(axis=1)] == labels) > 0.9  # raw features, no hand scaling
    np.testing.assert_allclose(fastnn.inference.load(tmp_path / "m.fnn").predict(X), api, rtol=1e-4, atol=1e-4)
    code, out, _ = run(capsys, "predict", tmp_path / "m.fnn", "--data", path)
    assert code == 0 and out == classes[api.argmax(axis=1)].tolist()  # string labels mapped back
    ort = pytest.importorskip("onnxruntime")
    assert main(["export", str(tmp_path / "m.fnn"), "--onnx", str(tmp_path / "m.onnx")]) == 0
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": X})[0]
    np.testing.assert_allclose(got, api, rtol=1e-4, atol=1e-4)


def test_issue16_reordered_columns_are_matched_by_name(capsys, tmp_path, iris_table):
    path, X, labels = iris_table
    assert run(capsys, "train", "--data", path, "--epochs", 5, "--out", tmp_path / "m.fnn")[0] == 0
    code, expected, _ = run(capsys, "predict", tmp_path / "m.fnn", "--data", path)
    order = [3, "species", 0, 2, 1]
    rows = [[f"{x[i]:.2f}" if i != "species" else t for i in order] for x, t in zip(X.tolist(), labels)]
    shuffled = write_csv(tmp_path / "shuffled.csv", [IRIS_NAMES[i] if i != "species" else i for i in order], rows)
    code, got, _ = run(capsys, "predict", tmp_path / "m.fnn", "--data", shuffled)
    assert code == 0 and got == expected
    code, a, _ = run(capsys, "evaluate", tmp_path / "m.fnn", "--data", path)
    code, b, _ = run(capsys, "evaluate", tmp_path / "m.fnn", "--data", shuffled)
    assert json.loads(a[0]) == json.loads(b[0])
    # without the target column
    rows = [[f"{v:.2f}" for v in x] for x in X.tolist()]
    code, got, _ = run(capsys, "predict", tmp_path / "m.fnn", "--data",
                       write_csv(tmp_path / "features.csv", IRIS_NAMES, rows))
    assert code == 0 and got == expected


@pytest.mark.parametrize("header, match", [
    (["sepal_length", "sepal_width", "petal_length"], r"has no column 'petal_width', which the model was trained on"),
    (IRIS_NAMES + ["id"], r"has a column 'id' the model was not trained on; drop it"),
])
def test_issue16_missing_or_extra_column_is_named(capsys, tmp_path, iris_table, header, match):
    path, X, _ = iris_table
    assert run(capsys, "train", "--data", path, "--epochs", 1, "--out", tmp_path / "m.fnn")[0] == 0
    rows = [[1.0] * len(header) for _ in range(3)]
    code, out, err = run(capsys, "predict", tmp_path / "m.fnn", "--data", write_csv(tmp_path / "p.csv", header, rows))
    assert code == 2 and out == [] and len(err) == 1 and re.search(match, err[0]), err


@pytest.fixture
def mixed_table(tmp_path):
    """A numeric, a categorical column with missing cells, and a label that depends on both."""
    rng = np.random.default_rng(0)
    n = 400
    a = rng.standard_normal(n)
    colour = rng.choice(["red", "green", "blue"], n)
    y = ((a > 0) ^ (colour == "red")).astype(int)
    rows = [[f"{v:.4f}" if i % 17 else "", c if i % 23 else "", ["no", "yes"][t]]
            for i, (v, c, t) in enumerate(zip(a, colour, y))]
    return write_csv(tmp_path / "mixed.csv", ["a", "colour", "label"], rows)


def test_issue16_categories_one_hot_and_missing_values_imputed(capsys, tmp_path, mixed_table):
    code, out, err = run(capsys, "train", "--data", mixed_table, "--epochs", 30, "--out", tmp_path / "m.fnn")
    assert code == 0 and err == []
    assert "4 features, 2 classes" in out[0]  # a + colour=blue, colour=green, colour=red
    acc = float(out[-2].split("accuracy ")[1])
    assert acc > 0.85
    meta = fnn.load(tmp_path / "m.fnn").metadata
    cols = {c["name"]: c for c in meta["features"]["columns"]}
    assert cols["colour"]["categories"] == ["blue", "green", "red"] and cols["a"]["kind"] == "numeric"
    # an empty cell is imputed with the training mean (numeric) or all zeros (categorical)
    rows = [["", "red"], ["0.5", ""], [str(cols["a"]["fill"]), "red"]]
    code, out, _ = run(capsys, "predict", tmp_path / "m.fnn", "--data", write_csv(tmp_path / "p.csv", ["a", "colour"],
                                                                                     rows))
    assert code == 0 and len(out) == 3 and set(out) <= {"no", "yes"} and out[0] == out[2]
    # an unseen category is an error naming column, value and row
    code, out, err = run(capsys, "predict", tmp_path / "m.fnn", "--data",
                         write_csv(tmp_path / "q.csv", ["a", "colour"], [["1", "red"], ["2", "purple"]]))
    assert code == 2 and re.search(r"row 2, column 'colour': category 'purple' was not seen in training", err[0])
    # a word in a numeric column names row and column
    code, out, err = run(capsys, "predict", tmp_path / "m.fnn", "--data",
                         write_csv(tmp_path / "r.csv", ["a", "colour"], [["x1", "red"]]))
    assert code == 2 and re.search(r"row 1, column 'a': 'x1' is not a number", err[0])


def _diabetes_csv(path):
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_diabetes(scaled=False)
    return write_csv(path, list(d.feature_names) + ["progression"], np.column_stack([d.data, d.target]).tolist())


def test_issue16_regression_with_defaults_reaches_a_sane_r2_in_the_targets_units(capsys, tmp_path):
    path = _diabetes_csv(tmp_path / "diabetes.csv")  # target mean 152: unscaled it ended at R2 -0.69
    code, out, _ = run(capsys, "train", "--data", path, "--out", tmp_path / "d.fnn", "--early-stopping", 5)
    assert code == 0
    assert float(out[-2].split("r2 ")[1]) > 0.3
    model = fnn.load(tmp_path / "d.fnn")
    assert type(model.layers[-1]).__name__ == "Standardize" and model.layers[-1].inverse
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    pred = model.predict(data[:, :-1])[:, 0]
    assert 100 < pred.mean() < 200  # in the target's units
    code, out, _ = run(capsys, "predict", tmp_path / "d.fnn", "--data", path)
    np.testing.assert_allclose(np.array(out, float), pred, rtol=1e-5)
    code, out, err = run(capsys, "evaluate", tmp_path / "d.fnn", "--data", path, "--split", "test")
    assert code == 0 and "the 66 test rows" in err[0] and json.loads(out[0])["r2"] > 0.3


def test_evaluate_split_test_scores_the_held_out_rows_train_reported(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "--data", "iris", "--epochs", 5, "--out", tmp_path / "m.fnn", "--seed", 4)
    test_line = out[-2]
    code, out, err = run(capsys, "evaluate", tmp_path / "m.fnn", "--data", "iris", "--split", "test")
    assert code == 0 and "scoring the 22 test rows of iris" in err[0]
    got = json.loads(out[0])
    assert f"accuracy {got['accuracy']:.4f}" in test_line and f"loss {got['loss']:.4f}" in test_line


def test_train_flags_for_regularization_build_the_model(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "--data", "iris", "--epochs", 3, "--hidden", "8,8", "--batch-norm",
                       "--dropout", 0.2, "--l2", 1e-3, "--early-stopping", 2, "--out", tmp_path / "m.fnn")
    assert code == 0
    kinds = [type(layer).__name__ for layer in fnn.load(tmp_path / "m.fnn").layers]
    assert kinds == ["Standardize"] + ["Dense", "BatchNorm", "Activation", "Dropout"] * 2 + ["Dense"]


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "(default: 30)" in text and "(default: adam)" in text and "--early-stopping" in text


# ------------------------------------------------------- issue 17 finding 6: no tracebacks
@pytest.mark.parametrize("argv", [
    ["train", "--data", "iris", "--out", "{d}"], ["train", "--data", "iris", "--plot", "{d}"],
    ["train", "--data", "iris", "--checkpoint", "{d}"], ["predict", "{m}", "--data", "iris", "--out", "{d}"],
    ["tune", "--data", "iris", "--grid", "lr=1e-3", "--results", "{d}"], ["landscape", "--out", "{d}"],
    ["export", "{m}", "--onnx", "{d}"],
])
def test_output_path_that_is_a_directory_is_refused_before_training(capsys, tmp_path, argv):
    fnn.Sequential([fnn.layers.Dense(3)], input_dim=4, seed=0).save(tmp_path / "m.fnn")
    capsys.readouterr()
    argv = [a.format(d=tmp_path, m=tmp_path / "m.fnn") for a in argv]
    code, out, err = run(capsys, *argv, "--epochs", 1) if argv[0] in ("train", "tune") else run(capsys, *argv)
    assert code == 2 and out == [] and len(err) == 1 and "is a directory" in err[0], err


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "long.csv").write_text("a,label\n" + "1" * 140_000 + ",0\n2,1\n")
    (tmp_path / "ragged.csv").write_text("a,b,label\n1,2,0\n3,1\n")
    (tmp_path / "latin1.csv").write_bytes("caf\xe9,label\n1,0\n2,1\n".encode("latin-1"))
    (tmp_path / "text.npz").write_text("X,y\n1,2\n")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    return tmp_path


@pytest.mark.parametrize("name, match", [
    ("long.csv", r"long.csv: line 2: field larger than field limit.*131,072 characters"),
    ("ragged.csv", r"ragged.csv: line 3 has 2 values; the header has 3 columns"),
    ("latin1.csv", r"latin1.csv is not UTF-8 text \(byte 0xe9 .*\); save it as UTF-8"),
    ("text.npz", r"text.npz is not an NPZ archive \(it does not start with a zip signature\)"),
    ("corrupt.npz", r"corrupt.npz is a damaged NPZ archive"),
    ("single.npz", r"single.npz is a single .npy array, not an NPZ archive"),
])
def test_bad_data_files_give_one_clear_line(capsys, bad_files, name, match):
    code, out, err = run(capsys, "train", "--data", bad_files / name, "--epochs", 1)
    assert code == 2 and out == [] and len(err) == 1, err
    assert re.search(match, err[0]), err[0]
    assert "allow_pickle" not in err[0]


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\n1,2\n")
    assert fnn.data.read_csv(path).names == ["a", "b"]


# ----------------------------------------------------------------- fuzzing the readers
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(st.binary(max_size=300))
def test_fuzz_read_csv_raises_only_value_error(tmp_path, blob):
    path = tmp_path / "f.csv"
    path.write_bytes(blob)
    try:
        table = fnn.data.read_csv(path)
    except ValueError:
        return
    assert table.n_rows >= 1 and len(table.names) == len(set(table.names))


@_FUZZ
@given(st.binary(max_size=200), st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_fuzz_read_npz_raises_only_value_error(tmp_path, prefix, cut, noise):
    import io

    buf = io.BytesIO()
    np.savez(buf, X=np.arange(6.0).reshape(3, 2), y=np.arange(3))
    good = buf.getvalue()
    blob = good[:cut] + noise + good[cut + len(noise):] if prefix == b"" else prefix
    path = tmp_path / "f.npz"
    path.write_bytes(blob)
    try:
        arrays = fnn.data.read_npz(path)
    except ValueError:
        return
    assert all(isinstance(a, np.ndarray) for a in arrays.values())


@_FUZZ
@given(st.lists(st.lists(st.sampled_from(["", "1", "2.5", "x", "NA", "-3e2", "red", " "]), min_size=3, max_size=3),
                min_size=1, max_size=20))
def test_fuzz_table_encoder_raises_only_value_error(rows):
    cols = {name: np.array([r[j] for r in rows], object) for j, name in enumerate(["a", "b", "t"])}
    try:
        enc = fnn.data.TableEncoder("t").fit(cols)
        X = enc.transform(cols)
    except ValueError:
        return
    assert X.shape == (len(rows), len(enc.feature_names_)) and np.isfinite(X).all()


def test_corrupt_npz_member_is_a_value_error(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, X=np.zeros((2, 2)), y=np.zeros(2))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("X.npy").header_offset + 40
    data[offset:offset + 20] = b"\xff" * 20
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="c.npz"):
        fnn.data.read_npz(path)


def _regression_csv(path, n=300):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    y = 150 + 40 * (X @ np.array([1.5, -2.0, 0.5])) + rng.standard_normal(n)
    return write_csv(path, ["a", "b", "c", "target"], np.column_stack([X, y]).tolist())


def test_regression_checkpoint_resume_and_folding(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _regression_csv(tmp_path / "reg.csv")
    common = ("train", "--data", path, "--hidden", 16, "--seed", 1)
    assert run(capsys, *common, "--epochs", 6, "--out", "straight.fnn")[0] == 0
    assert run(capsys, *common, "--epochs", 3, "--checkpoint", "ckpt.fnn")[0] == 0
    code, out, err = run(capsys, *common, "--epochs", 6, "--resume", "ckpt.fnn", "--out", "resumed.fnn")
    assert code == 0 and err == []
    a, b = fnn.load("straight.fnn"), fnn.load("resumed.fnn")
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    # a checkpoint (no output layer yet) predicts in the target's units too
    code, p1, _ = run(capsys, "predict", "ckpt.fnn", "--data", path)
    assert code == 0 and 100 < np.mean(np.array(p1, float)) < 200
    folded = fastnn.inference.load("resumed.fnn")
    assert [s.kind for s in folded.steps] == ["dense", "dense"]  # both scalings folded away
    data = np.loadtxt(path, delimiter=",", skiprows=1)[:, :3]
    np.testing.assert_allclose(folded.predict(data), b.predict(data), rtol=1e-4)
    ort = pytest.importorskip("onnxruntime")
    assert main(["export", "resumed.fnn", "--onnx", "r.onnx"]) == 0
    got = ort.InferenceSession("r.onnx").run(None, {"input": data.astype(np.float32)})[0]
    np.testing.assert_allclose(got, b.predict(data), rtol=1e-4)


def test_tune_regression_saves_a_model_in_the_targets_units(capsys, tmp_path):
    path = _regression_csv(tmp_path / "reg.csv")
    code, out, _ = run(capsys, "tune", "--data", path, "--grid", "hidden=8,16", "--epochs", 5,
                       "--out", tmp_path / "t.fnn")
    assert code == 0
    model = fnn.load(tmp_path / "t.fnn")
    assert type(model.layers[0]).__name__ == "Standardize" and model.layers[-1].inverse
    assert 100 < model.predict(np.zeros((1, 3)))[0, 0] < 200


def test_issue16_old_cli_model_file_is_read_with_its_scaling(capsys, tmp_path):
    X, y = fnn.datasets.load_iris()
    scaler = fnn.data.Standardizer().fit(X)
    m = fnn.Sequential([fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(3)], input_dim=4, seed=0)
    fnn.Trainer(m, "cross_entropy", fnn.optim.Adam(1e-2)).fit(scaler.transform(X), y, epochs=40, verbose=0)
    m.metadata = {"task": "classify", "loss": "cross_entropy", "classes": [0, 1, 2], "split_seed": 0,
                  "standardize": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}}
    m.save(tmp_path / "old.fnn")
    expected = m.predict(scaler.transform(X)).argmax(axis=1)
    code, out, _ = run(capsys, "predict", tmp_path / "old.fnn", "--data", "iris")
    assert code == 0 and [int(v) for v in out] == expected.tolist()
    np.testing.assert_array_equal(fastnn.inference.load(tmp_path / "old.fnn").predict(X).argmax(axis=1), expected)
    # an old checkpoint cannot be resumed: its inputs were scaled outside the model
    t = fnn.Trainer(m, "cross_entropy")
    t.save_checkpoint(tmp_path / "old_ckpt.fnn")
    code, out, err = run(capsys, "train", "--data", "iris", "--resume", tmp_path / "old_ckpt.fnn")
    assert code == 2 and "a checkpoint of an older fastnn train" in err[0]
    code, out, err = run(capsys, "predict", tmp_path / "old_ckpt.fnn", "--data", "iris")
    assert code == 2 and "a checkpoint of an older fastnn train" in err[0]


def test_issue16_regression_far_from_zero_with_cli_defaults(capsys, tmp_path):
    """Target mean 150, std ~100, no option but --data: the targets are standardized for training."""
    path = _regression_csv(tmp_path / "reg.csv")
    code, out, _ = run(capsys, "train", "--data", path)
    assert code == 0 and float(out[-1].split("r2 ")[1]) > 0.95


def test_a_plot_format_matplotlib_cannot_write_is_refused_before_training(capsys, tmp_path):
    out = tmp_path / "m.fnn"
    assert main(["train", "--data", "iris", "--plot", str(tmp_path / "p.txt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastnn: error: --plot: cannot write a figure as .txt")
    assert not out.exists()  # nothing trained, nothing saved


def test_a_renamed_target_column_is_named_with_the_fix(capsys, tmp_path):
    rows = ["a,b,target"] + [f"{i % 7},{i % 3},{i % 2}" for i in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "u.csv").write_text("\n".join(["a,b,label"] + rows[1:]) + "\n")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--epochs", "1", "--out", str(tmp_path / "m.fnn")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m.fnn"), "--data", str(tmp_path / "u.csv")]) == 2
    assert "pass --target label" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "m.fnn"), "--data", str(tmp_path / "u.csv"), "--target", "label"]) == 0
