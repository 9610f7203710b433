"""fastnn.Ensemble: probabilities (not logits) averaged, outputs for regressors, evaluate with
fastnn's losses and metrics, and one safe file that rejects anything malformed."""

import io
import json
import zipfile

import numpy as np
import pytest

import fastnn as fnn

L = fnn.layers
RNG = np.random.default_rng(0)
X = RNG.standard_normal((30, 4))
Y = np.arange(30) % 3


def member(seed, last=None, n_out=3, input_dim=4, dtype="float64"):
    return fnn.Sequential([L.Dense(5, activation="tanh"), L.Dense(n_out, activation=last)], input_dim=input_dim,
                          seed=seed, dtype=dtype)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-6), ("float64", 1e-12)])
def test_averages_probabilities_not_logits(dtype, tol):
    logit_models = [member(s, dtype=dtype) for s in range(3)]
    expected = np.mean([softmax(m.predict(X).astype(np.float64)) for m in logit_models], axis=0)
    ens = fnn.Ensemble(logit_models, output="softmax")
    got = ens.predict(X)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    # logits averaged would be a different, wrong answer
    assert not np.allclose(expected, softmax(np.mean([m.predict(X) for m in logit_models], axis=0)), atol=1e-4)
    # members ending in softmax, or logits of a model whose metadata names its fused loss: the same
    prob_models = [member(s, last="softmax", dtype=dtype) for s in range(3)]
    for a, b in zip(prob_models, logit_models):
        a.set_weights(b.get_weights())
    logit_models[0].metadata = {"loss": "cross_entropy"}
    mixed = fnn.Ensemble([logit_models[0], *prob_models[1:]])
    assert mixed.output == "softmax"
    np.testing.assert_allclose(mixed.predict(X), expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(ens.predict_classes(X), expected.argmax(axis=1))


def test_sigmoid_and_regression_members():
    binary = [member(s, last="sigmoid", n_out=1) for s in range(2)]
    p = np.mean([m.predict(X) for m in binary], axis=0)
    ens = fnn.Ensemble(binary)
    assert ens.output == "sigmoid" and ens.predict_classes(X).shape == (30,)
    np.testing.assert_allclose(ens.predict(X), p, rtol=1e-12)
    t = (X[:, :1] > 0).astype(float)
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert ens.evaluate(X, t, metrics=["accuracy"]) == pytest.approx(
        {"loss": bce, "accuracy": np.mean((p > 0.5) == t)}, rel=1e-9)
    reg = fnn.Ensemble([member(s, n_out=2) for s in range(3)])
    assert reg.output == "identity" and not reg.is_classifier
    target = RNG.standard_normal((30, 2))
    mean = np.mean([m.predict(X) for m in reg.models], axis=0)
    got = reg.evaluate(X, target, metrics=["mae"])
    assert got["loss"] == pytest.approx(np.mean((mean - target) ** 2), rel=1e-12)
    assert got["mae"] == pytest.approx(np.mean(np.abs(mean - target)), rel=1e-12)
    with pytest.raises(ValueError, match="has no classes"):
        reg.predict_classes(X)


def test_evaluate_cross_entropy_is_minus_log_of_the_averaged_probability():
    ens = fnn.Ensemble([member(s) for s in range(3)], output="softmax")
    p = ens.predict(X)
    got = ens.evaluate(X, Y, metrics=["accuracy"])
    assert got["loss"] == pytest.approx(-np.mean(np.log(p[np.arange(30), Y])), rel=1e-12)
    assert got["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == Y))


def test_an_ensemble_of_trained_models_is_at_least_as_good_on_average():
    X, y = fnn.datasets.load_iris()
    X = fnn.data.Standardizer().fit_transform(X)
    models, losses = [], []
    for s in range(3):
        m = fnn.Sequential([L.Dense(16, activation="relu"), L.Dense(3, activation="softmax")], seed=s)
        t = fnn.Trainer(m, "cross_entropy", fnn.optim.Adam(0.01), seed=s)
        t.fit(X, y, epochs=20, verbose=0)
        models.append(m)
        losses.append(t.evaluate(X, y)["loss"])
    # cross-entropy is convex in the probabilities: the ensemble's is at most the members' mean
    assert fnn.Ensemble(models).evaluate(X, y)["loss"] <= np.mean(losses) + 1e-6


def test_members_must_agree():
    with pytest.raises(ValueError, match=r"same number of features.*models\[1\] 5 -> 3"):
        fnn.Ensemble([member(0), member(1, input_dim=5)])
    with pytest.raises(ValueError, match=r"models\[1\] 4 -> 2"):
        fnn.Ensemble([member(0), member(1, n_out=2)])
    with pytest.raises(ValueError, match="disagree on what they output"):
        fnn.Ensemble([member(0, last="softmax"), member(1)])
    with pytest.raises(ValueError, match=r"models\[0\] ends in 'softmax'.*output='sigmoid'"):
        fnn.Ensemble([member(0, last="softmax")], output="sigmoid")
    with pytest.raises(TypeError, match="non-empty list"):
        fnn.Ensemble([])
    with pytest.raises(TypeError, match=r"models\[1\] must be a fastnn.Sequential"):
        fnn.Ensemble([member(0), "model"])
    with pytest.raises(ValueError, match="not built"):
        fnn.Ensemble([fnn.Sequential([L.Dense(3)])])
    with pytest.raises(ValueError, match="unknown output 'probs'"):
        fnn.Ensemble([member(0)], output="probs")
    ens = fnn.Ensemble([member(0)], output="softmax")
    with pytest.raises(ValueError, match="Ensemble.predict: X has 5 features; the ensemble takes 4"):
        ens.predict(np.ones((2, 5)))
    with pytest.raises(ValueError, match="Ensemble.evaluate: loss 'binary_cross_entropy' needs an ensemble of sigmoid"):
        ens.evaluate(X, np.zeros((30, 3)), loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="Ensemble.predict: X contains NaN"):
        ens.predict(np.full((1, 4), np.nan))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip(tmp_path, dtype):
    models = [member(s, dtype=dtype) for s in range(3)]
    models[1].add(L.Activation("softmax"))  # a member that ends in softmax among logits ones
    ens = fnn.Ensemble(models, output="softmax")
    path = tmp_path / "ens.fnn"
    ens.save(path)
    back = fnn.Ensemble.load(path)
    assert back.output == "softmax" and len(back.models) == 3
    np.testing.assert_array_equal(back.predict(X), ens.predict(X))
    on_reference = fnn.Ensemble.load(path, device="reference")
    assert on_reference.models[0].device == "reference"
    tol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(on_reference.predict(X), ens.predict(X), rtol=tol, atol=tol)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["ensemble.json", "members/0.fnn", "members/1.fnn", "members/2.fnn"]
        # each member is an ordinary model file
        (tmp_path / "m1.fnn").write_bytes(zf.read("members/1.fnn"))
    np.testing.assert_array_equal(fnn.load(tmp_path / "m1.fnn").predict(X), ens.models[1].predict(X))


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ens.fnn"
    fnn.Ensemble([member(0)]).save(path)
    before = path.read_bytes()
    import fastnn.io

    def broken(model, f):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(fastnn.io, "write_model", broken)
    with pytest.raises(OSError, match="disk full"):
        fnn.Ensemble([member(1)]).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ens.fnn"]


def rewrite(path, out, change=None, add=None, drop=None, meta=None, compress=None):
    """A copy of the ensemble file at ``path`` with members changed, added, dropped or its JSON replaced."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    if meta is not None:
        members["ensemble.json"] = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    for name, data in (change or {}).items():
        members[name] = data
    members.update(add or {})
    for name in drop or ():
        members.pop(name)
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data, compress_type=compress or zipfile.ZIP_STORED)
    return out


GOOD_META = {"format": "fastnn.ensemble", "format_version": 1, "output": "softmax",
             "members": ["members/0.fnn", "members/1.fnn"]}


@pytest.mark.parametrize("case, match", [
    ("not_zip", "the zip archive is damaged or not a zip archive"),
    ("no_json", "it has no ensemble.json member"),
    ("bad_json", "ensemble.json is not valid JSON"),
    ("model_file", "it has no ensemble.json member"),
    ("format", "does not declare the fastnn.ensemble format"),
    ("version", "format_version 2 is not supported"),
    ("output", "output 'logits' is not one of"),
    ("members_not_list", "the member list must be members/0.fnn"),
    ("members_path", "the member list must be members/0.fnn"),
    ("too_many", "the member list must be members/0.fnn"),
    ("missing_member", "it has no members/1.fnn member"),
    ("extra_member", "unexpected members"),
    ("garbage_member", r"ens.fnn:members/1.fnn is not a valid fastnn model file"),
    ("nan_member", r"members/0.fnn is not a valid fastnn model file: arrays/0.w.npy contains NaN"),
    ("disagree", "the members must map the same number of features"),
])
def test_malformed_files_raise_model_format_error(tmp_path, case, match):
    good = tmp_path / "good.fnn"
    fnn.Ensemble([member(0), member(1)], output="softmax").save(good)
    bad = tmp_path / "ens.fnn"
    other = tmp_path / "other.fnn"
    if case == "not_zip":
        bad.write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "no_json":
        rewrite(good, bad, drop=["ensemble.json"])
    elif case == "bad_json":
        rewrite(good, bad, meta=b"{not json")
    elif case == "model_file":
        member(0).save(bad)
    elif case == "format":
        rewrite(good, bad, meta={**GOOD_META, "format": "fastnn.model"})
    elif case == "version":
        rewrite(good, bad, meta={**GOOD_META, "format_version": 2})
    elif case == "output":
        rewrite(good, bad, meta={**GOOD_META, "output": "logits"})
    elif case == "members_not_list":
        rewrite(good, bad, meta={**GOOD_META, "members": "members/0.fnn"})
    elif case == "members_path":
        rewrite(good, bad, meta={**GOOD_META, "members": ["members/0.fnn", "../../etc/passwd"]})
    elif case == "too_many":
        rewrite(good, bad, meta={**GOOD_META, "members": [f"members/{i}.fnn" for i in range(2000)]})
    elif case == "missing_member":
        rewrite(good, bad, drop=["members/1.fnn"])
    elif case == "extra_member":
        rewrite(good, bad, add={"payload.py": b"import os"})
    elif case == "deflated_member":
        rewrite(good, bad, compress=zipfile.ZIP_DEFLATED)
    elif case == "garbage_member":
        rewrite(good, bad, change={"members/1.fnn": b"\x00" * 100})
    elif case == "nan_member":
        m = member(0)
        m.params[:] = np.nan
        buf = io.BytesIO()
        with zipfile.ZipFile(good) as zf:
            data = zf.read("members/0.fnn")
        # a valid member whose weight array holds NaN
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
            for name in src.namelist():
                payload = src.read(name)
                if name == "arrays/0.w.npy":
                    arr = np.full((4, 5), np.nan)
                    tmp = io.BytesIO()
                    np.save(tmp, arr)
                    payload = tmp.getvalue()
                dst.writestr(name, payload)
        rewrite(good, bad, change={"members/0.fnn": buf.getvalue()})
    elif case == "disagree":
        parts = tmp_path / "parts.fnn"
        fnn.Ensemble([member(0)], output="softmax").save(parts)
        fnn.Ensemble([member(1, input_dim=5)], output="softmax").save(other)
        with zipfile.ZipFile(other) as zf:
            second = zf.read("members/0.fnn")
        rewrite(parts, bad, add={"members/1.fnn": second}, meta=GOOD_META)
    with pytest.raises(fnn.ModelFormatError, match=match):
        fnn.Ensemble.load(bad)


def test_load_missing_file_and_bad_device(tmp_path):
    with pytest.raises(FileNotFoundError, match="Ensemble.load: no file at"):
        fnn.Ensemble.load(tmp_path / "nope.fnn")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        fnn.Ensemble.load(tmp_path / "nope.fnn", device="gpu")


def test_each_loader_names_the_loader_of_another_kind(tmp_path):
    """The manifests record their kind; a file of another kind is refused with the right loader named."""
    model = member(0)
    fnn.Ensemble([model]).save(tmp_path / "e.fnn")
    model.save(tmp_path / "m.fnn")
    fnn.Trainer(model, "mse").save_checkpoint(tmp_path / "c.fnn")
    with zipfile.ZipFile(tmp_path / "e.fnn") as zf:
        assert json.loads(zf.read("ensemble.json"))["kind"] == "ensemble"
    with pytest.raises(fnn.ModelFormatError,
                       match="it is a model file, not an ensemble file; read it with fastnn.load"):
        fnn.Ensemble.load(tmp_path / "m.fnn")
    with pytest.raises(fnn.ModelFormatError, match="it is a training checkpoint, not an ensemble file; read it with "
                                                   "fastnn.Trainer.from_checkpoint"):
        fnn.Ensemble.load(tmp_path / "c.fnn")
    for load in (fnn.load, fnn.Trainer.from_checkpoint, fastnn_inference_load):
        with pytest.raises(fnn.ModelFormatError, match="it is an ensemble file, not a .*; read it with "
                                                       "fastnn.Ensemble.load"):
            load(tmp_path / "e.fnn")
    from fastnn._archive import file_kind

    assert [file_kind(tmp_path / f"{k}.fnn") for k in "emc"] == ["ensemble", "model", "checkpoint"]


def fastnn_inference_load(path):
    import fastnn.inference

    return fastnn.inference.load(path)


def test_an_ensemble_without_kind_and_with_deflated_members_still_reads(tmp_path):
    good = tmp_path / "good.fnn"
    fnn.Ensemble([member(0), member(1)], output="softmax").save(good)
    with zipfile.ZipFile(good) as zf:
        meta = json.loads(zf.read("ensemble.json"))
    del meta["kind"]
    old = rewrite(good, tmp_path / "old.fnn", meta=meta, compress=zipfile.ZIP_DEFLATED)
    back = fnn.Ensemble.load(old)
    np.testing.assert_array_equal(back.predict(X), fnn.Ensemble.load(good).predict(X))


def test_issue17_a_deflated_member_may_not_inflate_past_its_bound(tmp_path):
    """A member is bounded by MEMBER_RATIO times the file's size (plus 1 MiB) before inflating."""
    from fastnn.ensemble import MEMBER_RATIO

    good = tmp_path / "good.fnn"
    fnn.Ensemble([member(0)]).save(good)
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w") as zf:
        zf.writestr("model.json", "{}")
        zf.writestr("pad", bytes(MEMBER_RATIO * 4 << 20))
    bad = rewrite(good, tmp_path / "ens.fnn", change={"members/0.fnn": big.getvalue()}, compress=zipfile.ZIP_DEFLATED)
    with pytest.raises(fnn.ModelFormatError, match=r"members/0.fnn is \d+ bytes, over the \d+ limit"):
        fnn.Ensemble.load(bad)
