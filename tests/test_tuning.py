"""fastnn.tuning: cross-validation on fastnn.data.kfold, grid and random search on iris with
stable, sensible scores, the result table, and the errors of bad spaces and builders."""

import csv
import math
import re

import numpy as np
import pytest

import fastnn as fnn
from fastnn.tuning import IntUniform, LogUniform, Uniform, cross_validate, grid_search, random_search

X, Y = fnn.datasets.load_iris()
CALLS = []


def build(p):
    CALLS.append(dict(p))
    model = fnn.Sequential([fnn.layers.Dense(p.get("hidden", 16), activation="relu"), fnn.layers.Dense(3)], seed=0)
    return fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(p.get("lr", 0.01)), metrics=["accuracy"], seed=0)


def test_cross_validate_uses_kfold_and_is_deterministic():
    CALLS.clear()
    cv = cross_validate(build, X, Y, k=5, params={"hidden": 16, "lr": 0.02}, epochs=30, scale=True, seed=0)
    assert len(CALLS) == 5 and CALLS[0] == {"hidden": 16, "lr": 0.02}
    assert cv["scoring"] == "accuracy" and len(cv["scores"]) == 5
    assert cv["score"] == pytest.approx(np.mean(cv["scores"])) and cv["std"] == pytest.approx(np.std(cv["scores"]))
    assert 0.9 <= cv["score"] <= 1.0 and set(cv["metrics"]) == {"loss", "accuracy"} and cv["time"] > 0
    again = cross_validate(build, X, Y, k=5, params={"hidden": 16, "lr": 0.02}, epochs=30, scale=True, seed=0)
    assert again["scores"] == cv["scores"]
    # the folds are fastnn.data.kfold's, stratified: fold i is scored on exactly those samples
    folds = fnn.data.kfold(150, k=5, stratify_y=Y, seed=0)
    train, val = folds[2]
    scaler = fnn.data.Standardizer().fit(X[train])
    t = build({"hidden": 16, "lr": 0.02})
    t.fit(scaler.transform(X[train]), Y[train], epochs=30, verbose=0)
    assert t.evaluate(scaler.transform(X[val]), Y[val])["accuracy"] == cv["scores"][2]


def test_cross_validate_loss_scoring_and_epochs_param():
    cv = cross_validate(build, X, Y, k=3, params={"epochs": 2, "lr": 1e-4}, epochs=50, scoring="loss", scale=True)
    assert cv["scoring"] == "loss" and cv["score"] > 0.8  # 2 epochs at 1e-4 learn almost nothing


def test_grid_search_on_iris_picks_a_sensible_best_and_refits():
    CALLS.clear()
    result = grid_search(build, {"hidden": [4, 32], "lr": [1e-4, 1e-2]}, X, Y, epochs=30, cv=3, scale=True)
    assert [r["params"] for r in sorted(result.results, key=lambda r: r["trial"])] == [
        {"hidden": 4, "lr": 1e-4}, {"hidden": 4, "lr": 1e-2}, {"hidden": 32, "lr": 1e-4}, {"hidden": 32, "lr": 1e-2}]
    assert len(CALLS) == 4 * 3 + 1  # every fold of every trial, then the refit
    scores = [r["score"] for r in result.results]
    assert scores == sorted(scores, reverse=True) and result.best_score == scores[0]
    assert result.best_params["lr"] == 1e-2 and result.best_score > 0.9
    assert min(r["score"] for r in result.results if r["params"]["lr"] == 1e-4) < 0.8
    assert all(r["time"] > 0 for r in result.results)
    assert result.best_model is result.best_trainer.model and result.best_trainer.epoch == 30
    # refitted on all of X, standardized by best_scaler (fitted on all of X too)
    np.testing.assert_allclose(result.best_scaler.mean_, X.mean(axis=0), rtol=1e-5)
    predicted = result.best_model.predict(result.best_scaler.transform(X)).argmax(axis=1)
    assert (predicted == Y).mean() > 0.9
    again = grid_search(build, {"hidden": [4, 32], "lr": [1e-4, 1e-2]}, X, Y, epochs=30, cv=3, scale=True)
    assert [r["score"] for r in again.results] == scores


def test_random_search_draws_from_distributions_reproducibly():
    space = {"hidden": IntUniform(4, 32), "lr": LogUniform(1e-3, 1e-1), "unused": ["a", "b"]}
    CALLS.clear()
    result = random_search(build, space, X, Y, n_trials=6, epochs=20, scale=True, seed=3, refit=False)
    drawn = CALLS[:]
    assert len(drawn) == 6 and result.best_trainer is None and result.best_model is None
    assert result.best_scaler is None
    assert all(4 <= p["hidden"] <= 32 and isinstance(p["hidden"], int) for p in drawn)
    assert all(1e-3 <= p["lr"] < 1e-1 for p in drawn) and {p["unused"] for p in drawn} <= {"a", "b"}
    assert len({p["lr"] for p in drawn}) == 6
    CALLS.clear()
    random_search(build, space, X, Y, n_trials=6, epochs=20, scale=True, seed=3, refit=False)
    assert CALLS == drawn
    assert result.best_score > 0.85


def test_distributions_sample_their_ranges():
    rng = np.random.default_rng(0)
    u = [Uniform(-1, 2).sample(rng) for _ in range(2000)]
    assert -1 <= min(u) and max(u) < 2 and abs(np.mean(u) - 0.5) < 0.1
    logs = np.log10([LogUniform(1e-4, 1).sample(rng) for _ in range(2000)])
    assert abs(np.mean(logs) + 2) < 0.1  # uniform in the exponent
    ints = [IntUniform(1, 3).sample(rng) for _ in range(300)]
    assert set(ints) == {1, 2, 3}
    with pytest.raises(ValueError, match="LogUniform: low must be > 0.0; got 0.0"):
        LogUniform(0, 1)
    with pytest.raises(ValueError, match="Uniform: high must be > low"):
        Uniform(2, 1)
    with pytest.raises(ValueError, match="IntUniform: high must be >= low"):
        IntUniform(3, 1)


def test_holdout_validation_and_explicit_validation():
    (Xtr, ytr), (Xva, yva) = fnn.data.split(X, Y, fractions=(0.8, 0.2), stratify=True, seed=1)
    result = grid_search(build, {"lr": [1e-4, 3e-2]}, Xtr, ytr, validation=(Xva, yva), epochs=30)
    assert result.best_params == {"lr": 3e-2} and result.results[0]["std"] == 0.0
    split = grid_search(build, {"lr": [1e-4, 3e-2]}, X, Y, validation_split=0.25, epochs=30, scoring="loss")
    assert split.best_params == {"lr": 3e-2} and not split.greater_is_better
    assert split.results[0]["score"] < split.results[1]["score"]  # a loss: lower is better


def test_a_diverging_trial_ranks_last_with_its_error():
    def diverging(p):
        model = fnn.Sequential([fnn.layers.Dense(3)], seed=0)
        return fnn.Trainer(model, "mse", fnn.optim.SGD(p["lr"]), metrics=["r2"], seed=0)

    Xr = np.random.default_rng(0).standard_normal((60, 4)) * 100
    yr = Xr[:, :3] * 100
    result = grid_search(diverging, {"lr": [1e6, 1e-6]}, Xr, yr, epochs=5, refit=False)
    assert result.best_params == {"lr": 1e-6}
    error = result.results[-1]["error"]  # the loss or, first, an update's parameters became non-finite
    assert math.isnan(result.results[-1]["score"]) and re.search(r"(loss|parameters) became .* at epoch", error)
    with pytest.raises(fnn.TrainingDiverged, match="every trial diverged"):
        grid_search(diverging, {"lr": [1e6]}, Xr, yr, epochs=5)


def test_table_and_csv(tmp_path):
    result = grid_search(build, {"hidden": [4, 8], "lr": [1e-2]}, X, Y, epochs=5, scale=True, refit=False)
    text = str(result)
    lines = text.splitlines()
    assert lines[0].split() == ["rank", "hidden", "lr", "accuracy", "std", "time_s"]
    assert len(lines) == 2 + 2 and lines[2].split()[0] == "1"
    assert "best_params" in repr(result)
    path = tmp_path / "results.csv"
    result.to_csv(path)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in rows] == [1, 2]
    assert float(rows[0]["accuracy"]) == result.best_score and int(rows[0]["hidden"]) == result.best_params["hidden"]


def test_bad_spaces_builders_and_options_raise_naming_them():
    with pytest.raises(TypeError, match="grid_search: space must be a non-empty dict"):
        grid_search(build, {}, X, Y)
    with pytest.raises(TypeError, match=r"grid_search: space\['lr'\] is LogUniform\(0.001, 0.1\); a grid needs a list"):
        grid_search(build, {"lr": LogUniform(1e-3, 1e-1)}, X, Y)
    with pytest.raises(TypeError, match=r"random_search: space\['lr'\] must be a non-empty list"):
        random_search(build, {"lr": []}, X, Y)
    with pytest.raises(TypeError, match="build\\(params\\) must return a fresh fastnn.Trainer; got Sequential"):
        grid_search(lambda p: fnn.Sequential([fnn.layers.Dense(3)]), {"lr": [1]}, X, Y)
    with pytest.raises(ValueError, match="scoring 'f1' is not computed by the trainer"):
        cross_validate(build, X, Y, scoring="f1")
    with pytest.raises(ValueError, match=r"kfold: k must be in \[2, n\]"):
        cross_validate(build, X, Y, k=151)
    with pytest.raises(ValueError, match="give cv or validation, not both"):
        grid_search(build, {"lr": [1e-2]}, X, Y, cv=3, validation=(X, Y))
    with pytest.raises(ValueError, match="validation_split must be < 1.0"):
        grid_search(build, {"lr": [1e-2]}, X, Y, validation_split=1.0)
    with pytest.raises(ValueError, match="random_search: n_trials must be >= 1"):
        random_search(build, {"lr": [1e-2]}, X, Y, n_trials=0)
    with pytest.raises(ValueError, match="cross_validate: inputs must have the same number of samples"):
        cross_validate(build, X, Y[:10])
    with pytest.raises(ValueError, match="stratify=True needs 1-D integer class labels"):
        cross_validate(build, X, Y.astype(float), stratify=True)
    with pytest.raises(ValueError, match="cross_validate: epochs must be >= 1"):
        cross_validate(build, X, Y, epochs=0)
