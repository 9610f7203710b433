"""Trainer.save_checkpoint / Trainer.from_checkpoint: resuming gives the bits of an uninterrupted
run; the file is a safe, atomic model file with training state; bad files are refused."""

import json
import os
import zipfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn.checkpoint import FORMAT


@pytest.fixture(scope="module")
def digits():
    X, y = fnn.datasets.load_digits()
    return fnn.data.Standardizer().fit_transform(X)[:300], y[:300]


def build(kind, dtype="float32"):
    """A Trainer of the given kind, freshly seeded (the same every call)."""
    hidden = [fnn.layers.Dense(24, activation="relu")]
    augment = None
    if kind == "sgd-momentum":
        optimizer = fnn.optim.SGD(0.05, momentum=0.9)
    elif kind == "adam-cosine-dropout":
        optimizer = fnn.optim.Adam(lr=fnn.schedules.Cosine(3e-3, total_steps=150, warmup_steps=10))
        hidden.append(fnn.layers.Dropout(0.3))
        augment = fnn.augment.GaussianNoise(0.1)
    elif kind == "batchnorm-nadam-mixup":
        optimizer = fnn.optim.NAdam(2e-3, weight_decay=1e-4)
        hidden += [fnn.layers.BatchNorm(), fnn.layers.Dropout(0.2)]
        augment = [fnn.augment.Mixup(0.3)]
    model = fnn.Sequential(hidden + [fnn.layers.Dense(10)], input_dim=64, seed=0, dtype=dtype)
    if kind == "sgd-momentum":
        optimizer.set_layer_options(model.layers[0], lr=0.5)
    return fnn.Trainer(model, "cross_entropy", optimizer, batch_size=32, metrics=["accuracy", "f1"], l2=1e-4,
                       clip_norm=5.0, seed=0, augment=augment)


def weights_equal(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.model.get_weights(), b.model.get_weights()))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["sgd-momentum", "adam-cosine-dropout", "batchnorm-nadam-mixup"])
def test_ten_epochs_save_resume_ten_more_is_bit_identical_to_twenty(tmp_path, digits, kind, dtype):
    X, y = digits
    straight = build(kind, dtype)
    straight.fit(X, y, epochs=10, validation=(X[:50], y[:50]), verbose=0)
    straight.fit(X, y, epochs=10, validation=(X[:50], y[:50]), verbose=0)
    first = build(kind, dtype)
    first.fit(X, y, epochs=10, validation=(X[:50], y[:50]), verbose=0)
    path = tmp_path / "ckpt.fnn"
    first.save_checkpoint(path)
    resumed = fnn.Trainer.from_checkpoint(path)
    assert resumed.epoch == 10 and resumed.optimizer.step_count == first.optimizer.step_count
    resumed.fit(X, y, epochs=10, validation=(X[:50], y[:50]), verbose=0)
    assert weights_equal(straight, resumed)
    assert resumed.optimizer.state_dict()["step_count"] == straight.optimizer.state_dict()["step_count"]
    for key in ("loss", "val_loss", "accuracy", "f1", "lr"):
        assert resumed.history[key] == straight.history[key]
    # a control that can fail: the same weights without the training state do not continue alike
    fresh = build(kind, dtype)
    fresh.model.set_weights(first.model.get_weights())
    fresh.fit(X, y, epochs=10, validation=(X[:50], y[:50]), verbose=0)
    assert not weights_equal(straight, fresh)


def test_the_checkpoint_restores_every_setting_and_counter(tmp_path, digits):
    X, y = digits
    trainer = build("adam-cosine-dropout")
    trainer.fit(X, y, epochs=2, verbose=0)
    path = tmp_path / "c.fnn"
    trainer.save_checkpoint(path)
    back = fnn.Trainer.from_checkpoint(path)
    assert repr(back.optimizer) == repr(trainer.optimizer) and repr(back.optimizer.lr) == repr(trainer.optimizer.lr)
    assert (back.batch_size, back.l1, back.l2, back.clip_norm, back.clip_value, back.shuffle, back.seed) == \
        (trainer.batch_size, trainer.l1, trainer.l2, trainer.clip_norm, trainer.clip_value, trainer.shuffle, 0)
    assert [m.name for m in back.metrics] == ["accuracy", "f1"] and back.loss.name == "cross_entropy"
    assert back.model.layers[1].state_dict() == trainer.model.layers[1].state_dict()  # Dropout step counter
    assert back.model.layers[1].step == 2 * 10
    assert back.augment[0].state_dict() == trainer.augment[0].state_dict() == {"step": 20}
    assert back.rng.bit_generator.state == trainer.rng.bit_generator.state
    assert back.state_dict()["augment_keys"] == trainer.state_dict()["augment_keys"]
    assert back.history.history == trainer.history.history
    # the file is a zip of JSON and .npy, no pickle
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
        doc = json.loads(zf.read("checkpoint.json"))
    assert names == ["arrays/0.b.npy", "arrays/0.w.npy", "arrays/2.b.npy", "arrays/2.w.npy", "checkpoint.json",
                     "model.json", "optimizer/exp_avg.npy", "optimizer/exp_avg_sq.npy"]
    assert doc["format"] == FORMAT and doc["state"]["epoch"] == 2


def test_an_unseeded_trainer_resumes_identically_too(tmp_path, digits):
    X, y = digits
    model = fnn.Sequential([fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(10)], seed=1)
    trainer = fnn.Trainer(model, "cross_entropy", "adam", augment=fnn.augment.GaussianNoise(0.1))  # seed=None
    trainer.fit(X, y, epochs=1, verbose=0)
    trainer.save_checkpoint(tmp_path / "c.fnn")
    other = fnn.Trainer.from_checkpoint(tmp_path / "c.fnn")
    trainer.fit(X, y, epochs=2, verbose=0)
    other.fit(X, y, epochs=2, verbose=0)
    assert weights_equal(trainer, other)


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, digits, monkeypatch):
    X, y = digits
    trainer = build("sgd-momentum")
    trainer.fit(X, y, epochs=1, verbose=0)
    path = tmp_path / "ckpt.fnn"
    trainer.save_checkpoint(path)
    before = path.read_bytes()
    trainer.fit(X, y, epochs=1, verbose=0)
    calls = []
    real = np.lib.format.write_array

    def failing(*args, **kwargs):  # the third array of the archive fails
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.fnn"]  # no temporary left
    assert fnn.Trainer.from_checkpoint(path).epoch == 1


def test_unsavable_settings_are_refused_before_writing(tmp_path):
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(lambda t: 0.1))
    with pytest.raises(TypeError, match=r"^Trainer.save_checkpoint: the schedule <function .*> is not one of "
                                        r"fastnn's \(Constant, .*\); a checkpoint stores fastnn's own classes"):
        trainer.save_checkpoint(tmp_path / "c.fnn")
    assert not os.listdir(tmp_path)
    with pytest.raises(ValueError, match="the model is not built yet"):
        fnn.Trainer(fnn.Sequential([fnn.layers.Dense(2)]), "mse").save_checkpoint(tmp_path / "c.fnn")


def rewrite(path, out, change, keep=lambda name: True):
    """Copy the members of the checkpoint at ``path`` that ``keep`` accepts to ``out``, with
    checkpoint.json changed by ``change(doc)``."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist() if keep(n)}
    doc = json.loads(members["checkpoint.json"])
    change(doc)
    members["checkpoint.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def _set(keys, value):
    def change(doc):
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set(["format"], "other"), "it is not a training checkpoint"),
    (_set(["format_version"], 9), "checkpoint format_version 9 is not supported"),
    (_set(["state", "optimizer", "state"], ["../x"]), "lacks a valid optimizer state list and shape"),
    (_set(["state", "optimizer", "state"], ["momentum_buffer", "extra"]),
     "the array member 'optimizer/extra.npy' is missing"),
    (_set(["state", "optimizer", "shape"], [7]), "the optimizer state shape \\[7\\] does not fit the model's 8 par"),
    (_set(["state", "optimizer", "shape"], [40]),
     "optimizer/momentum_buffer.npy holds float32 \\(32,\\); the architecture needs float32 \\(40,\\)"),
    # issue 17: a checkpoint's shape is bounded by the file's size (3.64 TiB asked by a 2.7 KB file)
    (_set(["state", "optimizer", "shape"], [2**40]), "the optimizer state shape \\[1099511627776\\] does not fit"),
    (_set(["state", "optimizer", "state"], ["momentum_buffer"] * 2), "lacks a valid optimizer state list"),
    # issue 17: negative counts and out-of-range augmentation keys are refused at load, not in fit
    (_set(["state", "epoch"], -1), "the epoch must be an integer in \\[0, 18446744073709551615\\]; got -1"),
    (_set(["state", "epoch"], 2.5), "the epoch must be an integer"),
    (_set(["state", "optimizer", "step_count"], -3), "the optimizer's step_count must be an integer in"),
    (_set(["state", "optimizer", "epoch"], -1), "the optimizer's epoch must be an integer in"),
    (_set(["state", "optimizer", "lr_scale"], -1.0), "lr_scale must be a positive finite number"),
    (_set(["state", "layers"], {"-1": {}}), "layer key '-1' is not a layer of the model"),
    (_set(["history", "epoch"], [-2]), "a History epoch must be an integer in"),
    (_set(["state", "optimizer", "state"], []), "unexpected members \\['optimizer/momentum_buffer.npy'\\]"),
    (_set(["trainer", "optimizer", "type"], "Evil"), "does not describe a Trainer this fastnn can rebuild"),
    (_set(["trainer", "loss", "config"], {"delta": -1}), "does not describe a Trainer this fastnn can rebuild"),
    (_set(["state", "rng"], {"bit_generator": "MT19937"}), "does not describe a Trainer this fastnn can rebuild"),
    (_set(["history", "epoch"], [0, 1, 2, 3]), "does not describe a Trainer this fastnn can rebuild"),
])
def test_damaged_checkpoints_raise_model_format_error(tmp_path, change, message):
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(0.1, momentum=0.9))
    trainer.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=1, verbose=0)
    trainer.save_checkpoint(tmp_path / "c.fnn")
    bad = rewrite(tmp_path / "c.fnn", tmp_path / "bad.fnn", change)
    with pytest.raises(fnn.ModelFormatError, match=r"^Trainer.from_checkpoint: .*bad.fnn is not a valid fastnn model "
                                                   r"file: .*" + message):
        fnn.Trainer.from_checkpoint(bad)


def test_missing_optimizer_state_is_refused(tmp_path):
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    fnn.Trainer(model, "mse", fnn.optim.SGD(0.1, momentum=0.9)).save_checkpoint(tmp_path / "c.fnn")
    bad = rewrite(tmp_path / "c.fnn", tmp_path / "bad.fnn", _set(["state", "optimizer", "state"], []),
                  keep=lambda name: not name.startswith("optimizer/"))
    with pytest.raises(fnn.ModelFormatError, match=r"the optimizer state has \[\]; SGD needs \['momentum_buffer'\]"):
        fnn.Trainer.from_checkpoint(bad)


def test_a_model_file_is_not_a_checkpoint_and_a_checkpoint_is_not_a_model_file(tmp_path):
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    model.save(tmp_path / "m.fnn")
    with pytest.raises(fnn.ModelFormatError, match="it is a model file, not a training checkpoint; read it with "
                                                   "fastnn.load"):
        fnn.Trainer.from_checkpoint(tmp_path / "m.fnn")
    fnn.Trainer(model, "mse").save_checkpoint(tmp_path / "c.fnn")
    with pytest.raises(fnn.ModelFormatError, match="it is a training checkpoint, not a model file; read it with "
                                                   "fastnn.Trainer.from_checkpoint"):
        fnn.load(tmp_path / "c.fnn")
    with zipfile.ZipFile(tmp_path / "c.fnn") as zf:
        assert json.loads(zf.read("model.json"))["kind"] == "checkpoint"


def test_a_checkpoint_without_kind_still_reads(tmp_path):
    """Files written before the manifest recorded its kind are told apart by their members."""
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    fnn.Trainer(model, "mse", fnn.optim.SGD(0.1, momentum=0.9)).save_checkpoint(tmp_path / "c.fnn")
    with zipfile.ZipFile(tmp_path / "c.fnn") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(members["model.json"])
    del meta["kind"]
    members["model.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(tmp_path / "old.fnn", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert fnn.Trainer.from_checkpoint(tmp_path / "old.fnn").optimizer.momentum == 0.9
    with pytest.raises(fnn.ModelFormatError, match="it is a training checkpoint"):
        fnn.load(tmp_path / "old.fnn")


def test_issue17_unknown_device_in_the_file_is_the_files_fault(tmp_path):
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    fnn.Trainer(model, "mse").save_checkpoint(tmp_path / "c.fnn")
    bad = rewrite(tmp_path / "c.fnn", tmp_path / "bad.fnn", _set(["device"], "tpu"))
    with pytest.raises(fnn.ModelFormatError, match="bad.fnn is not a valid fastnn model file: its \"device\" field "
                                                   "'tpu' is not one of cpu, cuda, reference"):
        fnn.Trainer.from_checkpoint(bad)
    assert fnn.Trainer.from_checkpoint(bad, device="reference").model.device == "reference"
    with pytest.raises(ValueError, match="unknown device 'gpu'") as info:
        fnn.Trainer.from_checkpoint(tmp_path / "c.fnn", device="gpu")
    assert not isinstance(info.value, fnn.ModelFormatError)


@pytest.mark.parametrize("text", ["1e400", "-Infinity", "NaN", "1" + "0" * 400])
def test_issue17_overflowing_json_numbers_are_format_errors(tmp_path, text):
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    trainer = fnn.Trainer(model, "mse", augment=fnn.augment.GaussianNoise(0.1))
    trainer.save_checkpoint(tmp_path / "c.fnn")
    with zipfile.ZipFile(tmp_path / "c.fnn") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    doc = json.loads(members["checkpoint.json"])
    doc["state"]["epoch"] = "@@"
    members["checkpoint.json"] = json.dumps(doc).replace('"@@"', text).encode()
    with zipfile.ZipFile(tmp_path / "bad.fnn", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(fnn.ModelFormatError, match="checkpoint.json is not valid JSON"):
        fnn.Trainer.from_checkpoint(tmp_path / "bad.fnn")


@pytest.mark.parametrize("key", [-1, 2**64, "7"])
def test_issue17_out_of_range_augmentation_keys_are_refused_at_load(tmp_path, key):
    model = fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0)
    fnn.Trainer(model, "mse", augment=fnn.augment.GaussianNoise(0.1)).save_checkpoint(tmp_path / "c.fnn")
    bad = rewrite(tmp_path / "c.fnn", tmp_path / "bad.fnn", _set(["state", "augment_keys"], [key]))
    with pytest.raises(fnn.ModelFormatError, match="an augmentation key must be an integer in"):
        fnn.Trainer.from_checkpoint(bad)
