"""``fastnn tune``: grid and random search over the train options, on the validation part or
k-fold cross-validation; the best model refitted, tested, saved; bad input exits 2 with one line."""

import csv
import json

import pytest

from fastnn.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def table(lines):
    """The rows of the printed table, as lists of cells (header first)."""
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["rank"])
    end = next(i for i, line in enumerate(lines) if line.startswith("best "))
    return [lines[start].split()] + [line.split() for line in lines[start + 2:end]]


def test_grid_on_validation_prints_a_sorted_table_tests_and_saves(capsys, tmp_path):
    model, results = tmp_path / "best.fnn", tmp_path / "trials.csv"
    code, out, err = run(capsys, "tune", "--data", "iris", "--grid", "lr=1e-4,1e-2", "hidden=8,32+16", "--epochs", 20,
                         "--out", model, "--results", results)
    assert code == 0, err
    assert out[0].startswith("fastnn tune: iris: 105 train / 23 validation / 22 test samples, 4 features, 3 classes; "
                             "grid search, 4 trials scored on validation")
    rows = table(out)
    assert rows[0] == ["rank", "hidden", "lr", "accuracy", "std", "time_s"]
    assert sorted((r[1], float(r[2])) for r in rows[1:]) == [("32+16", 1e-4), ("32+16", 1e-2), ("8", 1e-4),
                                                               ("8", 1e-2)]
    accuracies = [float(r[3]) for r in rows[1:]]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > 0.9
    best = next(line for line in out if line.startswith("best "))
    assert "lr=0.01" in best and f"accuracy {accuracies[0]:.4f}" in best
    test = next(line for line in out if line.startswith("test "))
    assert float(test.split(" - accuracy ")[1]) > 0.8
    with open(results) as f:
        assert len(list(csv.DictReader(f))) == 4
    # the saved best model works with fastnn evaluate (its scaler and classes travel with it)
    code, out, err = run(capsys, "evaluate", model, "--data", "iris")
    assert code == 0, err and json.loads(out[0])["accuracy"] > 0.9


def test_random_search_with_cv_and_ranges_is_deterministic(capsys):
    argv = ["tune", "--data", "iris", "--grid", "lr=log:1e-3:1e-1", "hidden=4:32", "activation=relu,tanh",
            "--search", "random", "--trials", 3, "--cv", 3, "--epochs", 10]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "random search, 3 trials scored on 3-fold cross-validation of train + validation" in out[0]
    rows = table(out)
    assert len(rows) == 4 and all(4 <= int(r[2]) <= 32 and 1e-3 <= float(r[3]) < 1e-1 for r in rows[1:])
    assert all(float(r[5]) > 0 for r in rows[1:])  # the std over folds
    again = run(capsys, *argv)[1]
    assert [r[:5] for r in table(again)] == [r[:5] for r in rows]


def test_regression_scores_r2(capsys):
    code, out, err = run(capsys, "tune", "--data", "iris", "--task", "regress", "--grid", "optimizer=adam,sgd",
                         "--epochs", 5)
    assert code == 0, err
    assert table(out)[0][2] == "r2" and "regression" in out[0]


@pytest.mark.parametrize("argv, message", [
    (["--grid", "lr"], "--grid 'lr': write KEY=VALUE1,VALUE2"),
    (["--grid", "momentum=0.9"], "unknown key 'momentum'; choose from lr, hidden"),
    (["--grid", "lr=fast"], "--grid lr='fast': give numbers"),
    (["--grid", "lr=0,1e-3"], "--grid lr='0': every learning rate must be > 0"),
    (["--grid", "hidden=32+x"], "--grid hidden '32+x': give integer widths separated by '+'"),
    (["--grid", "hidden=0"], "every width must be >= 1"),
    (["--grid", "optimizer=lbfgs"], "--grid optimizer='lbfgs': unknown optimizer; choose from sgd"),
    (["--grid", "activation=softmax"], "unknown activation"),
    (["--grid", "epochs=0"], "--grid epochs='0': every value must be >= 1"),
    (["--grid", "lr=1e-3", "lr=1e-2"], "lr is given twice"),
    (["--grid", "lr=log:1e-4:1e-1"], "ranges need --search random"),
    (["--grid", "lr=1:2:3", "--search", "random"], "a range is LOW:HIGH or log:LOW:HIGH"),
    (["--grid", "lr=log:1e-1:1e-4", "--search", "random"], "high must be > low"),
    (["--grid", "hidden=log:4:8", "--search", "random"], "log ranges are for lr"),
    (["--grid", "lr=1e-3", "--cv", 1], "--cv must be >= 2"),
    (["--grid", "lr=1e-3", "--trials", 0], "--trials must be >= 1"),
    (["--grid", "lr=1e-3", "--epochs", -1], "--epochs must be >= 1"),
    (["--grid", "lr=1e-3", "--epochs", 0], "--epochs must be >= 1"),
    (["--grid", "lr=1e-3", "--hidden", "a"], "--hidden 'a': give integer widths"),
    (["--grid", "lr=1e-3", "--search", "bayes"], "invalid choice: 'bayes'"),
    (["--grid", "lr=1e-3", "--data", "nope.csv"], "--data 'nope.csv' is neither"),
    ([], "the following arguments are required: --grid"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, "tune", "--data", "iris", *argv)
    assert code == 2 and out == [] and len(err) == 1
    assert err[0].startswith("fastnn: error: ") and message in err[0], err


def test_every_trial_diverging_exits_1(capsys, tmp_path):
    import numpy as np

    path = tmp_path / "big.npz"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3)) * 1e3
    np.savez(path, X=X, y=X[:, 0] * 1e6)
    code, out, err = run(capsys, "tune", "--data", path, "--task", "regress", "--grid", "lr=1e3", "optimizer=sgd",
                         "--epochs", 3)
    assert code == 1 and "every trial diverged" in err[0]
