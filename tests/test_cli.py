"""The ``fastnn`` command (fastnn.cli): train / evaluate / predict / info / bench, in-process
through ``main(argv)`` and as a real subprocess; bad arguments exit 2 with one line on stderr."""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn.cli import OPTIMIZER_LR, main

from _helpers import CPU_BUILT, DEVICE, DEVICES, needs_cpu  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(fnn.__file__)))


def run(capsys, *argv):
    """main(argv) in-process -> (exit status, stdout lines, stderr lines), stdout without the
    closing timing report of ``fastnn train`` (test_train_ends_with_a_timing_report checks it)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, without_report(out.splitlines()), err.splitlines()


def without_report(lines):
    """The lines before 'timing:', the first line of fastnn train's closing report."""
    return lines[:lines.index("timing:")] if "timing:" in lines else lines


def check_epoch_lines(lines, epochs, metric):
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(" - ")[0].split()[1] for line in epoch_lines] == [str(e) for e in range(1, epochs + 1)]
    for line in epoch_lines:
        assert " - loss " in line and f" - {metric} " in line and " - val_loss " in line
        assert f" - val_{metric} " in line and " - lr " in line
    return epoch_lines


def scores(line):
    """'test loss 0.1 - accuracy 0.9' -> {'loss': 0.1, 'accuracy': 0.9}."""
    assert line.startswith("test ")
    pairs = (part.split() for part in line[len("test "):].split(" - "))
    return {k: float(v) for k, v in pairs}


@pytest.fixture
def iris_csv(tmp_path):
    """Iris as CSV with a header; the label column ('species') sits in the middle (index 2)."""
    X, y = fnn.datasets.load_iris()
    path = tmp_path / "iris.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sepal_length", "sepal_width", "species", "petal_length", "petal_width"])
        for row, label in zip(X.tolist(), y.tolist()):
            w.writerow([f"{row[0]:.6g}", f"{row[1]:.6g}", label, f"{row[2]:.6g}", f"{row[3]:.6g}"])
    return path


@pytest.fixture
def regression_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.05 * rng.standard_normal(300)
    path = tmp_path / "reg.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "target"])
        w.writerows(np.column_stack([X, y]).tolist())
    return path


# ---------------------------------------------------------------------------- train
@pytest.mark.parametrize("device", DEVICES)
def test_train_iris_prints_one_line_per_epoch_and_a_test_line(capsys, device):
    # 5 epochs of 2 updates: a higher rate than the default's
    code, out, err = run(capsys, "train", "--data", "iris", "--epochs", 5, "--hidden", 16, "--device", device,
                         "--lr", 0.03)
    assert code == 0
    assert err == []
    assert out[0].startswith("fastnn train: iris: 105 train / 23 validation / 22 test samples, 4 features, "
                             "3 classes; 143 parameters on " + device)
    check_epoch_lines(out, 5, "accuracy")
    assert len(out) == 1 + 5 + 1
    s = scores(out[-1])
    assert set(s) == {"loss", "accuracy"}
    assert 0 < s["loss"] < 1.2 and 0.6 <= s["accuracy"] <= 1.0


def test_train_is_reproducible_with_a_seed(capsys):
    args = ("train", "--data", "spirals", "--epochs", 2, "--hidden", "8,8", "--device", DEVICE, "--seed", 3)
    _, first, _ = run(capsys, *args)
    _, second, _ = run(capsys, *args)
    strip = [line.rsplit(" - ", 1)[0] for line in first]  # the last field is the epoch time
    assert strip == [line.rsplit(" - ", 1)[0] for line in second]
    assert "129 parameters" in first[0]  # Standardize 3*2, 2*8+8 + 8*8+8 + 8*3+3


def test_train_as_a_subprocess(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "fastnn.cli", "train", "--data", "iris", "--epochs", "3",
                           "--hidden", "8", "--device", DEVICE, "--out", "m.fnn"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = without_report(proc.stdout.splitlines())
    check_epoch_lines(lines, 3, "accuracy")
    assert lines[-2].startswith("test loss ") and lines[-1] == "saved m.fnn"
    assert fnn.load(tmp_path / "m.fnn", device="reference").n_params == 3 * 4 + 4 * 8 + 8 + 8 * 3 + 3

    bad = subprocess.run([sys.executable, "-m", "fastnn.cli", "train", "--data", "nosuch", "--device", DEVICE],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1
    assert bad.stderr.startswith("fastnn: error: --data 'nosuch' is neither one of iris, digits")


@needs_cpu
def test_no_arguments_trains_on_digits(capsys, monkeypatch):
    import fastnn.trainer

    # keep it short: the command's default is 30 epochs
    real_fit = fastnn.trainer.Trainer.fit
    monkeypatch.setattr(fastnn.trainer.Trainer, "fit", lambda self, *a, **k: real_fit(self, *a, **{**k, "epochs": 1}))
    code, out, err = run(capsys)
    assert code == 0 and err == []
    assert out[0].startswith("fastnn train: digits: ")
    assert "64 features, 10 classes" in out[0] and out[0].endswith("parameters on cpu")
    check_epoch_lines(out, 1, "accuracy")
    assert " - lr 0.003 - " in out[1]  # Adam, the default optimizer, at the command's default rate
    assert out[-1].startswith("test loss ")


@pytest.mark.parametrize("name", list(OPTIMIZER_LR))
def test_every_optimizer_name_trains_at_its_default_rate(capsys, name):
    code, out, err = run(capsys, "train", "--data", "iris", "--epochs", 2, "--hidden", 8, "--optimizer", name,
                         "--device", DEVICE)
    assert code == 0 and err == []
    assert f" - lr {OPTIMIZER_LR[name]:.3g} - " in check_epoch_lines(out, 2, "accuracy")[0]


# ------------------------------------------------------- train, save, evaluate, predict
def test_digits_train_save_evaluate_predict(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "train", "--data", "digits", "--epochs", 2, "--out", "m.fnn", "--device", DEVICE)
    assert code == 0 and err == []
    check_epoch_lines(out, 2, "accuracy")
    assert out[-1] == "saved m.fnn"
    train_scores = scores(out[-2])
    assert train_scores["accuracy"] > 0.85

    model = fnn.load("m.fnn", device="reference")
    assert model.input_dim == 64 and model.n_out == 10
    assert type(model.layers[0]).__name__ == "Standardize" and model.layers[0].mean_.shape == (64,)
    assert [layer.units for layer in model.layers[1:]] == [128, 10]
    assert model.metadata["task"] == "classify" and model.metadata["loss"] == "cross_entropy"
    assert model.metadata["classes"] == list(range(10))
    assert "standardize" not in model.metadata  # the scaling is a layer of the model now

    code, out, err = run(capsys, "evaluate", "m.fnn", "--data", "digits", "--device", DEVICE)
    assert code == 0 and err == ["fastnn evaluate: scoring all 1797 rows of digits (training rows included; "
                                 "--split test scores the held-out rows only)"]
    assert len(out) == 1
    result = json.loads(out[0])
    assert set(result) == {"loss", "accuracy"}
    assert result["accuracy"] > 0.85 and 0 < result["loss"] < 0.6

    code, out, err = run(capsys, "predict", "m.fnn", "--data", "digits", "--out", "p.csv", "--device", DEVICE)
    assert code == 0 and err == [] and out == []
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "prediction"
    _, y = fnn.datasets.load_digits()
    pred = np.array([int(v) for v in lines[1:]])
    assert len(pred) == len(y) == 1797
    assert set(pred) <= set(range(10))
    assert np.mean(pred == y) == pytest.approx(result["accuracy"], abs=1e-12)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []

    code, out, err = run(capsys, "predict", "m.fnn", "--data", "digits", "--device", DEVICE)  # to stdout
    assert code == 0 and err == []
    assert out == lines[1:]


def test_saved_model_predicts_like_the_api(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "train", "--data", "iris", "--epochs", 3, "--hidden", 8, "--out", "m.fnn",
               "--device", DEVICE)[0] == 0
    model = fnn.load("m.fnn", device="reference")
    X, _ = fnn.datasets.load_iris()
    expected = model.predict(X).argmax(axis=1)  # raw features: the model standardizes them itself
    code, out, _ = run(capsys, "predict", "m.fnn", "--data", "iris", "--device", "reference")
    assert code == 0
    assert [int(v) for v in out] == expected.tolist()


# -------------------------------------------------------------------- CSV and NPZ data
@pytest.mark.parametrize("target", ["species", "2", "-3"])
def test_csv_with_header_and_target(capsys, iris_csv, target):
    code, out, err = run(capsys, "train", "--data", iris_csv, "--target", target, "--epochs", 3, "--hidden", 8,
                         "--device", DEVICE)
    assert code == 0 and err == []
    assert "150" not in out[0] and "105 train / 23 validation / 22 test samples, 4 features, 3 classes" in out[0]
    check_epoch_lines(out, 3, "accuracy")
    assert scores(out[-1])["accuracy"] > 0.5


def test_csv_target_by_name_and_by_index_agree(capsys, iris_csv):
    runs = []
    for target in ("species", "2"):
        code, out, _ = run(capsys, "train", "--data", iris_csv, "--target", target, "--epochs", 2, "--hidden", 4,
                           "--device", DEVICE)
        assert code == 0
        runs.append([line.rsplit(" - ", 1)[0] for line in out])  # drop the epoch times
    assert runs[0] == runs[1]


def test_csv_default_target_is_the_last_column(capsys, tmp_path):
    X, y = fnn.datasets.load_iris()
    path = tmp_path / "last.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,d,label", comments="", fmt="%.6g")
    code, out, _ = run(capsys, "train", "--data", path, "--epochs", 2, "--hidden", 4, "--device", DEVICE)
    assert code == 0
    assert "4 features, 3 classes" in out[0]


@pytest.mark.parametrize("target", [None, "labels"])
def test_npz_data(capsys, tmp_path, target):
    X, y = fnn.datasets.load_iris()
    path = tmp_path / "iris.npz"
    key = target or "y"
    np.savez(path, X=X, **{key: y + 10})  # labels need not start at 0
    argv = ["train", "--data", path, "--epochs", 3, "--hidden", 8, "--device", DEVICE, "--out", tmp_path / "m.fnn"]
    if target:
        argv += ["--target", target]
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == []
    assert "4 features, 3 classes" in out[0]
    check_epoch_lines(out, 3, "accuracy")
    assert fnn.load(tmp_path / "m.fnn", device="reference").metadata["classes"] == [10, 11, 12]

    code, out, _ = run(capsys, "predict", tmp_path / "m.fnn", "--data", path, "--device", DEVICE,
                       *(["--target", target] if target else []))
    assert code == 0
    assert set(int(v) for v in out) <= {10, 11, 12} and len(out) == 150


def test_regression_on_csv_reports_r2(capsys, regression_csv, tmp_path):
    model_path = tmp_path / "reg.fnn"
    code, out, err = run(capsys, "train", "--data", regression_csv, "--epochs", 8, "--hidden", 16, "--lr", 0.03,
                         "--device", DEVICE, "--out", model_path)
    assert code == 0 and err == []
    assert "3 features, regression" in out[0]
    check_epoch_lines(out, 8, "r2")
    s = scores(out[-2])
    assert set(s) == {"loss", "r2"}
    assert s["r2"] > 0.8

    model = fnn.load(model_path, device="reference")
    assert model.n_out == 1 and model.metadata["task"] == "regress" and model.metadata["classes"] is None

    code, out, _ = run(capsys, "evaluate", model_path, "--data", regression_csv, "--device", DEVICE)
    assert code == 0
    result = json.loads(out[0])
    assert set(result) == {"loss", "r2"} and result["r2"] > 0.8

    code, out, _ = run(capsys, "predict", model_path, "--data", regression_csv, "--device", DEVICE)
    assert code == 0
    pred = np.array([float(v) for v in out])
    data = np.loadtxt(regression_csv, delimiter=",", skiprows=1)
    assert len(pred) == 300
    assert np.corrcoef(pred, data[:, 3])[0, 1] > 0.9


# ------------------------------------------------------------------------- info, bench
def _info_works():
    try:
        fnn.info()
    except ImportError:
        return False
    return True


needs_info = pytest.mark.skipif(not _info_works(), reason="fnn.info() needs the CPU backend, not built yet")


@needs_info
def test_info(capsys):
    code, out, err = run(capsys, "info")
    assert code == 0 and err == []
    assert out[0].split() == ["fastnn", fnn.__version__]
    keys = [line.split()[0] for line in out]
    assert {"fastnn", "python", "numpy", "blas", "threads", "devices"} <= set(keys)


@needs_info
def test_info_json(capsys):
    code, out, err = run(capsys, "info", "--json")
    assert code == 0 and err == []
    info = json.loads("\n".join(out))
    assert info["fastnn"] == fnn.__version__
    assert info["numpy"] == np.__version__
    assert info["devices"]["cpu"] is True and info["devices"]["reference"] is True
    assert isinstance(info["threads"], int) and info["threads"] >= 1


def _bench_exists():
    try:
        import fastnn.tools.bench  # noqa: F401  (written by someone else; may not exist yet)
    except ImportError:
        return False
    return True


needs_bench = pytest.mark.skipif(not _bench_exists(), reason="fastnn.tools.bench is not written yet")


@needs_bench
def test_bench_help(capsys):
    code = main(["bench", "--help"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.startswith("usage: fastnn bench") and "--config" in out


@needs_bench
def test_bench_quick_run_with_options(capsys, tmp_path):
    # options right after 'bench' reach the benchmark (argparse.REMAINDER alone would reject them)
    path = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--config", "tiny", "--device", "reference", "--n", "64", "--json", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "tiny" in out
    result = json.loads(path.read_text())
    assert result["schema"] == "fastnn-bench/1"
    assert result["settings"]["configs"] == ["tiny"] and result["settings"]["device"] == "reference"


@needs_bench
def test_bench_bad_config_exits_2(capsys):
    code = main(["bench", "--config", "nope", "--device", "reference"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "unknown --config nope" in err


# ------------------------------------------------- report, checkpoint, resume, plot
def test_train_ends_with_a_timing_report(capsys):
    code = main(["train", "--data", "iris", "--epochs", "2", "--hidden", "8", "--device", DEVICE])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[-4] == "timing:"
    assert re.fullmatch(r"  train  [\d.]+m?s for 2 epochs, 210 samples, [\d,]+ samples/s \(validation included\)",
                        lines[-3]), lines[-3]
    assert re.fullmatch(r"  test   [\d.]+m?s for 22 samples, [\d,]+ samples/s", lines[-2]), lines[-2]
    info = fnn.info()
    assert lines[-1].startswith(f"  device {DEVICE}; CPU {info['cpu']}, {info['cores']} cores, "
                                f"{info['threads']} threads; BLAS ")


def test_checkpoint_then_resume_equals_an_uninterrupted_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ("train", "--data", "spirals", "--hidden", "16", "--device", DEVICE, "--seed", 2, "--batch-size", 32)
    code, straight, _ = run(capsys, *common, "--epochs", 6, "--out", "straight.fnn")
    assert code == 0
    code, first, _ = run(capsys, *common, "--epochs", 3, "--checkpoint", "ckpt.fnn")
    assert code == 0 and first[-1] == "saved ckpt.fnn (checkpoint after epoch 3)"
    # the architecture, optimizer and split come from the checkpoint: other --hidden/--seed are ignored
    code, second, err = run(capsys, "train", "--data", "spirals", "--hidden", "99", "--seed", 7, "--device", DEVICE,
                            "--epochs", 6, "--resume", "ckpt.fnn", "--checkpoint", "ckpt.fnn", "--out", "resumed.fnn",
                            "--plot", "curves.png")
    assert code == 0 and err == []
    assert second[1] == "resumed ckpt.fnn after epoch 3; 3 more to reach --epochs 6"
    assert [line.split(" - ")[0] for line in second if line.startswith("epoch ")] == ["epoch 4", "epoch 5", "epoch 6"]
    assert [line.rsplit(" - ", 1)[0] for line in second if line.startswith("epoch ")] == \
        [line.rsplit(" - ", 1)[0] for line in straight if line.startswith("epoch ")][3:]
    a, b = fnn.load("straight.fnn", device="reference"), fnn.load("resumed.fnn", device="reference")
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert fnn.Trainer.from_checkpoint("ckpt.fnn").epoch == 6 and os.path.getsize("curves.png") > 0
    # --epochs already reached: nothing more to train; a checkpoint evaluates like a model
    code, third, _ = run(capsys, *common, "--epochs", 6, "--resume", "ckpt.fnn")
    assert code == 0 and third[1] == "resumed ckpt.fnn after epoch 6; 0 more to reach --epochs 6"
    code, out, _ = run(capsys, "evaluate", "ckpt.fnn", "--data", "spirals", "--device", DEVICE)
    code2, out2, _ = run(capsys, "evaluate", "resumed.fnn", "--data", "spirals", "--device", DEVICE)
    assert code == code2 == 0 and json.loads(out[0]) == json.loads(out2[0])


RESUME_ARGS = [
    (["train", "--data", "iris", "--resume", "nothere.fnn"], r"Trainer.from_checkpoint: no file at 'nothere.fnn'"),
    (["train", "--data", "iris", "--resume", "m64.fnn"], r"m64.fnn is not a valid fastnn model file: it has no "
                                                         r"checkpoint.json member"),
    (["train", "--data", "iris", "--resume", "api.fnn"], r"--resume api.fnn: not a checkpoint written by fastnn "
                                                         r"train --checkpoint"),
    (["train", "--data", "moons", "--resume", "iris.fnn"], r"--data moons: its classes differ from those of the "
                                                           r"checkpoint iris.fnn"),
    (["train", "--data", "iris", "--checkpoint", "no/such/dir/c.fnn"], r"--checkpoint no/such/dir/c.fnn: the folder "
                                                                       r".* does not exist"),
    (["train", "--data", "iris", "--plot", "no/dir/p.png"], r"--plot no/dir/p.png: the folder .* does not exist"),
]


@pytest.mark.parametrize("argv, match", RESUME_ARGS, ids=[" ".join(a) for a, _ in RESUME_ARGS])
def test_bad_resume_and_checkpoint_arguments_exit_2(capsys, files, monkeypatch, argv, match):
    monkeypatch.chdir(files)
    model = fnn.Sequential([fnn.layers.Dense(3)], input_dim=4, seed=0)
    fnn.Trainer(model, "cross_entropy").save_checkpoint("api.fnn")
    assert main(["train", "--data", "iris", "--epochs", "1", "--checkpoint", "iris.fnn", "--device", DEVICE]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, *argv, "--device", DEVICE)
    assert code == 2 and out == [] and len(err) == 1
    assert re.search(match, err[0]), err[0]


# ---------------------------------------------------------------------- bad arguments
@pytest.fixture
def files(tmp_path):
    (tmp_path / "text.csv").write_text("a,b,label\n1,x,0\n3,4,1\n")
    (tmp_path / "ragged.csv").write_text("a,b,label\n1,2\n3,4,1\n")
    (tmp_path / "header_only.csv").write_text("a,b,label\n")
    (tmp_path / "one_class.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},1\n" for i in range(40)))
    (tmp_path / "data.txt").write_text("1 2 3\n")
    (tmp_path / "not_a_model.fnn").write_text("hello")
    np.savez(tmp_path / "nox.npz", features=np.zeros((3, 2)), y=np.zeros(3))
    fnn.Sequential([fnn.layers.Dense(3)], input_dim=64, seed=0, device="reference").save(tmp_path / "m64.fnn")
    return tmp_path


BAD_ARGS = [
    (["train", "--data", "nosuch"], r"--data 'nosuch' is neither one of iris, digits, spirals, moons nor an "
                                    r"existing \.csv/\.npz file"),
    (["train", "--data", "missing.csv"], r"--data 'missing.csv' is neither one of iris"),
    (["train", "--data", "data.txt"], r"--data 'data.txt': use a \.csv or \.npz file"),
    (["train", "--data", "text.csv"], r"split: every part must get at least one sample"),
    (["train", "--data", "ragged.csv"], r"ragged.csv: line 2 has 2 values; the header has 3 columns"),
    (["train", "--data", "header_only.csv"], r"header_only.csv: needs a header row and at least one data row"),
    (["train", "--data", "one_class.csv"], r"the target has a single class"),
    (["train", "--data", "text.csv", "--target", "zzz"], r"--target 'zzz' is not a column of text.csv; "
                                                         r"columns: a, b, label"),
    (["train", "--data", "text.csv", "--target", "3"], r"--target '3' is not a column of text.csv"),
    (["train", "--data", "text.csv", "--target", "-4"], r"--target '-4' is not a column of text.csv"),
    (["train", "--data", "nox.npz"], r"nox.npz: needs arrays 'X' and 'y'; it has features, y"),
    (["train", "--data", "iris", "--epochs", "-1"], r"--epochs must be >= 1; got -1"),
    (["train", "--data", "iris", "--epochs", "0"], r"--epochs must be >= 1; got 0"),
    (["train", "--data", "iris", "--l2", "-1"], r"--l2 must be >= 0.0; got -1.0"),
    (["train", "--data", "iris", "--dropout", "1"], r"--dropout must be < 1.0; got 1.0"),
    (["train", "--data", "iris", "--early-stopping", "-2"], r"--early-stopping must be >= 0; got -2"),
    (["train", "--data", "iris", "--epochs", "x"], r"argument --epochs: invalid int value: 'x'"),
    (["train", "--data", "iris", "--batch-size", "0"], r"--batch-size must be >= 1; got 0"),
    (["train", "--data", "iris", "--batch-size", "-5"], r"--batch-size must be >= 1; got -5"),
    (["train", "--data", "iris", "--hidden", "0"], r"--hidden '0': every width must be >= 1"),
    (["train", "--data", "iris", "--hidden", "a,b"], r"--hidden 'a,b': give integer widths"),
    (["train", "--data", "iris", "--activation", "rleu"], r"unknown activation 'rleu'; choose one of 'identity', "
                                                          r"'sigmoid'.*'relu'"),
    (["train", "--data", "iris", "--optimizer", "lbfgs"], r"argument --optimizer: invalid choice: 'lbfgs' "
                                                          r"\(choose from .*'sgd'.*'nadam'"),
    (["train", "--data", "iris", "--lr", "-0.1"], r"lr must be >= 0.0; got -0.1"),
    (["train", "--data", "iris", "--device", "gpu"], r"unknown device 'gpu'; choose one of 'cpu', 'cuda', "
                                                     r"'reference'"),
    (["train", "--data", "iris", "--task", "guess"], r"argument --task: invalid choice: 'guess'"),
    (["train", "--bogus-flag"], r"unrecognized arguments: --bogus-flag"),
    (["frobnicate"], r"invalid choice: 'frobnicate'"),
    (["evaluate", "nothere.fnn", "--data", "iris"], r"fastnn.load: no file at 'nothere.fnn'"),
    (["evaluate", "not_a_model.fnn", "--data", "iris"], r"not_a_model.fnn is not a valid fastnn model file"),
    (["evaluate", "m64.fnn"], r"the following arguments are required: --data"),
    (["predict", "m64.fnn", "--data", "iris"], r"--data iris: X has shape \(150, 4\); the model m64.fnn takes "
                                               r"64 features"),
    (["predict", "m64.fnn", "--data", "nosuch"], r"--data 'nosuch' is neither one of"),
    (["landscape", "--function", "himmelblau"], r"argument --function: invalid choice: 'himmelblau'"),
    (["landscape", "--optimizers", "sgd,lbfgs"], r"--optimizers 'sgd,lbfgs': unknown 'lbfgs'; choose from sgd, "
                                                 r"momentum, nesterov, adagrad, adadelta, rmsprop, adam, adamw, "
                                                 r"adamax, nadam, radam$"),
    (["landscape", "--lr", "0.1,0.2"], r"--lr '0.1,0.2': give 1 or 4 values$"),
    (["landscape", "--lr", "fast"], r"--lr 'fast': give numbers separated by commas$"),
    (["landscape", "--lr", "-1"], r"SGD: lr must be >= 0\.0; got -1\.0\.$"),
    (["landscape", "--start", "1"], r"--start '1': give 2 values$"),
    (["landscape", "--steps", "-1"], r"--steps must be >= 0; got -1"),
]


@pytest.mark.parametrize("argv, match", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_exit_2_with_one_line(capsys, files, monkeypatch, argv, match):
    monkeypatch.chdir(files)
    if "--device" not in argv and argv[0] in ("train", "evaluate", "predict"):
        argv = [*argv, "--device", DEVICE]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == []  # nothing is printed before the arguments are checked
    assert len(err) == 1, err
    assert err[0].startswith("fastnn: error: ")
    assert re.search(match, err[0]), err[0]


def test_unavailable_cuda_device_is_a_usage_error(capsys):
    from fastnn.backends import get_backend

    try:
        get_backend("cuda")
    except RuntimeError:
        pass
    else:
        pytest.skip("a CUDA device is available")
    code, out, err = run(capsys, "train", "--data", "iris", "--epochs", 1, "--device", "cuda")
    assert code == 2 and out == []
    assert len(err) == 1 and err[0].startswith("fastnn: error: ") and "cuda" in err[0]
