"""Model files (fastnn.io): round trip, layout, atomic writes, and rejection of every kind of
bad file with ModelFormatError, executing nothing, by both readers of model files
(fastnn.load and fastnn.inference.load share fastnn.io's checks)."""

import io
import json
import os
import pickle
import struct
import time
import zipfile
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest

import fastnn as fnn
import fastnn.inference
from fastnn.io import FORMAT_VERSION


from _helpers import CPU_BUILT, DEVICE, DEVICES, needs_cpu, npy_bytes, read_members, with_meta, write_zip  # noqa: F401
from fuzz_files import flag_names_utf8

L = fnn.layers
BAD = "is not a valid fastnn model file"


class Reader(NamedTuple):
    owner: str  # the name that starts its error messages
    load: Callable


READERS = [Reader("fastnn.load", lambda path: fnn.load(path, device="reference")),
           Reader("fastnn.inference.load", fastnn.inference.load)]


@pytest.fixture(params=READERS, ids=[r.owner for r in READERS])
def read(request):
    """Each reader of model files in turn: every bad file must be refused by both."""
    return request.param


def make_model(device=DEVICE, dtype="float32"):
    """A model using every serialised option, with non-trivial weights and metadata."""
    model = fnn.Sequential([
        L.Dense(6, activation="leaky_relu", alpha=0.2, init="he_uniform"),
        L.Activation("elu", alpha=0.5),
        L.Dense(5, activation="tanh", use_bias=False),
        L.Dense(3),
    ], input_dim=4, seed=3, device=device, dtype=dtype)
    model.layers[2].trainable = False
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    model.metadata = {"task": "classify", "classes": ["a", "b", "c"], "nested": {"x": [1.5, None, True]}}
    return model


def inputs(n=7):
    return np.random.default_rng(1).standard_normal((n, 4))


@pytest.fixture
def saved(tmp_path):
    """Path of a saved model (reference device, float32) and the model."""
    model = make_model("reference")
    path = tmp_path / "m.fnn"
    model.save(path)
    return path, model


# ------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(tmp_path, device, dtype):
    model = make_model(device, dtype)
    path = tmp_path / "model.fnn"
    model.save(path)
    loaded = fnn.load(path, device=device)

    assert loaded.device == device
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.input_dim == 4
    assert loaded.get_config() == model.get_config()
    assert [type(layer) for layer in loaded.layers] == [L.Dense, L.Activation, L.Dense, L.Dense]
    assert [layer.trainable for layer in loaded.layers] == [True, True, False, True]
    assert loaded.layers[0].activation == "leaky_relu" and loaded.layers[0].alpha == 0.2
    assert loaded.layers[0].init == "he_uniform"
    assert loaded.layers[1].name == "elu" and loaded.layers[1].alpha == 0.5
    assert loaded.layers[2].use_bias is False and loaded.layers[2].activation == "tanh"
    assert loaded.metadata == model.metadata
    before, after = model.get_weights(), loaded.get_weights()
    assert [w.shape for w in after] == [(4, 6), (6,), (6, 5), (5, 3), (3,)]
    for a, b in zip(before, after):
        assert b.dtype == np.dtype(dtype)
        assert a.tobytes() == b.tobytes()  # bit-identical
    X = inputs()
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_round_trip_keeps_the_model_trainable(saved):
    path, model = saved
    loaded = fnn.load(path, device="reference")
    X, y = inputs(20), np.arange(20) % 3
    trainer = fnn.Trainer(loaded, "cross_entropy", fnn.optim.SGD(0.1), seed=0)
    trainer.fit(X, y, epochs=2, verbose=0)
    frozen_before = model.layers[2].weights[0]
    assert np.array_equal(loaded.layers[2].weights[0], frozen_before)  # still frozen after loading
    assert not np.array_equal(loaded.layers[0].weights[0], model.layers[0].weights[0])


@pytest.mark.parametrize("src, dst", [pytest.param("reference", "cpu", marks=needs_cpu),
                                      pytest.param("cpu", "reference", marks=needs_cpu)])
def test_load_onto_another_device(tmp_path, src, dst):
    model = make_model(src, "float64")
    path = tmp_path / "m.fnn"
    model.save(path)
    loaded = fnn.load(path, device=dst)
    assert loaded.device == dst
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(loaded.predict(inputs()), model.predict(inputs()), rtol=1e-12, atol=1e-12)


def test_file_is_a_zip_of_json_and_npy(saved):
    path, model = saved
    assert zipfile.is_zipfile(path)
    members = read_members(path)
    names = list(members)
    assert names[0] == "model.json"
    arrays = sorted(n for n in names if n != "model.json")
    assert arrays == sorted(["arrays/0.w.npy", "arrays/0.b.npy", "arrays/2.w.npy", "arrays/3.w.npy",
                             "arrays/3.b.npy"])
    meta = json.loads(members["model.json"])
    assert meta["format"] == "fastnn.model"
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert meta["fastnn_version"] == fnn.__version__
    assert meta["model"]["dtype"] == "float32" and meta["model"]["input_dim"] == 4
    assert [layer["type"] for layer in meta["model"]["layers"]] == ["Dense", "Activation", "Dense", "Dense"]
    assert meta["metadata"] == model.metadata
    assert [(a["name"], a["shape"]) for a in meta["arrays"]] == [
        ("arrays/0.w.npy", [4, 6]), ("arrays/0.b.npy", [6]), ("arrays/2.w.npy", [6, 5]),
        ("arrays/3.w.npy", [5, 3]), ("arrays/3.b.npy", [3])]
    weights = model.get_weights()
    for entry, w in zip(meta["arrays"], weights):
        data = members[entry["name"]]
        assert data.startswith(b"\x93NUMPY")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        assert arr.dtype == np.float32 and np.array_equal(arr, w)


def test_save_needs_a_built_model_and_json_metadata(tmp_path):
    with pytest.raises(ValueError, match="Sequential.save: the model is not built yet"):
        fnn.Sequential([L.Dense(2)], device="reference").save(tmp_path / "a.fnn")
    model = make_model("reference")
    model.metadata = {"bad": object()}
    with pytest.raises(TypeError, match="Sequential.save: model.metadata must be JSON-serialisable"):
        model.save(tmp_path / "b.fnn")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------- atomic write
def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.fnn"
    old = make_model("reference")
    old.save(path)
    old_bytes = path.read_bytes()
    real = np.lib.format.write_array
    calls = []

    def failing_write_array(fp, array, *args, **kwargs):
        calls.append(path.read_bytes() == old_bytes)  # the target is untouched mid-write
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    new = make_model("reference", "float64")
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    assert calls == [True, True, True]
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["m.fnn"]
    loaded = fnn.load(path, device="reference")
    assert loaded.dtype == np.float32

    # a failed first save leaves nothing at all
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        new.save(tmp_path / "fresh.fnn")
    assert os.listdir(tmp_path) == ["m.fnn"]


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "m.fnn"
    make_model("reference", "float32").save(path)
    make_model("reference", "float64").save(path)
    assert os.listdir(tmp_path) == ["m.fnn"]
    assert fnn.load(path, device="reference").dtype == np.float64


# ----------------------------------------------------------------- not a model at all
def test_missing_path_is_file_not_found(read, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{read.owner}: no file at .*nope.fnn"):
        read.load(tmp_path / "nope.fnn")
    with pytest.raises(FileNotFoundError, match="no file at"):
        read.load(tmp_path)  # a folder


@pytest.mark.parametrize("content", [
    b"",
    bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
    b"epoch,loss\n1,0.5\n2,0.25\n",
    b"PK\x03\x04" + b"\x00" * 100,  # a zip signature and nothing valid behind it
], ids=["empty", "random-bytes", "text", "zip-magic-only"])
def test_not_a_zip(read, tmp_path, content):
    path = tmp_path / "m.fnn"
    path.write_bytes(content)
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: the zip archive is damaged or not a zip archive"):
        read.load(path)


def test_model_format_error_is_a_value_error():
    assert issubclass(fnn.ModelFormatError, ValueError)


def test_truncated_file(read, saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    cuts = [1, 4, 30, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 22, len(data) - 1]
    for cut in cuts:
        short = tmp_path / f"cut{cut}.fnn"
        short.write_bytes(data[:cut])
        with pytest.raises(fnn.ModelFormatError, match=BAD):
            read.load(short)


def _member_offset(path, name):
    """Offset in the file of the first byte of a stored member's data."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    n_name, n_extra = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + n_name + n_extra, info.compress_size


@pytest.mark.parametrize("name, where", [("arrays/0.w.npy", "data"), ("arrays/3.b.npy", "data"),
                                         ("arrays/0.w.npy", "header"), ("model.json", "data")])
def test_corrupted_member(read, saved, tmp_path, name, where):
    path, _ = saved
    start, size = _member_offset(path, name)
    raw = bytearray(path.read_bytes())
    pos = start + (20 if where == "header" else size - 3)
    raw[pos] ^= 0xFF
    raw[pos + 1] ^= 0x55
    bad = tmp_path / "bad.fnn"
    bad.write_bytes(bytes(raw))
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: the zip archive is damaged.*(CRC|Error|inflates)"):
        read.load(bad)


# ------------------------------------------------------------------- hostile content
class _Exploit:
    """Unpickling this runs a shell command that creates the sentinel file."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return os.system, (f"touch '{self.sentinel}'",)


def test_the_exploit_works_when_unpickled(tmp_path):
    # guards the tests below: the payload does run if anything unpickles it
    sentinel = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Exploit(sentinel)))
    assert sentinel.exists()


@pytest.mark.parametrize("how", ["pickle-in-place-of-npy", "object-npy", "extra-pickle-member",
                                 "pickle-as-model-json"])
def test_pickles_are_never_unpickled(read, saved, tmp_path, how):
    path, _ = saved
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(sentinel))
    members = read_members(path)
    if how == "pickle-in-place-of-npy":
        members["arrays/0.w.npy"] = payload
        match = r"arrays/0.w.npy is not a .npy array"
    elif how == "object-npy":
        obj = np.empty((4, 6), dtype=object)
        obj[0, 0] = _Exploit(sentinel)
        members["arrays/0.w.npy"] = npy_bytes(obj, allow_pickle=True)
        match = r"arrays/0.w.npy holds object \(4, 6\); the architecture needs float32 \(4, 6\)"
    elif how == "extra-pickle-member":
        members["arrays/4.w.pkl"] = payload
        match = r"unexpected members \['arrays/4.w.pkl'\]"
    else:
        members["model.json"] = payload
        match = "model.json is not valid JSON"
    bad = write_zip(tmp_path / "evil.fnn", members)
    with pytest.raises(fnn.ModelFormatError, match=match):
        read.load(bad)
    assert not sentinel.exists()


@pytest.mark.parametrize("member, arr, match", [
    ("arrays/0.w.npy", np.zeros((6, 4), np.float32),
     r"holds float32 \(6, 4\); the architecture needs float32 \(4, 6\)"),
    ("arrays/0.b.npy", np.zeros((1, 6), np.float32), r"holds float32 \(1, 6\); the architecture needs float32 \(6,\)"),
    ("arrays/0.w.npy", np.zeros((4, 6), np.float64), r"holds float64 \(4, 6\); the architecture needs float32"),
    ("arrays/0.w.npy", np.zeros((4, 6), np.int32), r"holds int32 \(4, 6\)"),
    ("arrays/0.w.npy", np.zeros((4, 6), ">f4"), r"holds >f4 \(4, 6\)"),
    ("arrays/3.b.npy", np.array([0.0, np.nan, 1.0], np.float32), "arrays/3.b.npy contains NaN or inf"),
    ("arrays/2.w.npy", np.full((6, 5), np.inf, np.float32), "arrays/2.w.npy contains NaN or inf"),
])
def test_wrong_array(read, saved, tmp_path, member, arr, match):
    path, _ = saved
    members = read_members(path)
    members[member] = npy_bytes(arr)
    with pytest.raises(fnn.ModelFormatError, match=match):
        read.load(write_zip(tmp_path / "bad.fnn", members))


def test_fortran_ordered_member_is_read_correctly(read, saved, tmp_path):
    path, model = saved  # the same weights, stored in Fortran order, give the same model
    members = read_members(path)
    w = model.get_weights()[0]
    members["arrays/0.w.npy"] = npy_bytes(np.asfortranarray(w))
    loaded = read.load(write_zip(tmp_path / "f.fnn", members))
    assert np.array_equal(loaded.predict(inputs()), read.load(path).predict(inputs()))


def test_deflated_members_are_read(read, saved, tmp_path):
    path, _ = saved
    other = write_zip(tmp_path / "deflated.fnn", read_members(path), zipfile.ZIP_DEFLATED)
    loaded = read.load(other)
    assert np.array_equal(loaded.predict(inputs()), read.load(path).predict(inputs()))


def _set(keys, value):
    def edit(meta):
        target = meta
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


def _delete(keys):
    def edit(meta):
        target = meta
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return edit


BAD_META = [
    (lambda m: "{not json", "model.json is not valid JSON"),
    (lambda m: b"\xff\xfe{}", "model.json is not valid JSON"),
    (lambda m: "[" * 100_000 + "]" * 100_000, "model.json is not valid JSON"),  # nesting bomb
    (lambda m: "[1, 2]", "model.json does not declare the fastnn.model format"),
    (lambda m: '"fastnn.model"', "model.json does not declare the fastnn.model format"),
    (_set(["format"], "keras.model"), "model.json does not declare the fastnn.model format"),
    (_delete(["format"]), "model.json does not declare the fastnn.model format"),
    (_set(["format_version"], 2), r"format_version 2 is not supported by this fastnn \(it reads 1..1\); upgrade"),
    (_set(["format_version"], 0), "format_version 0 is not supported"),
    (_set(["format_version"], "1"), "format_version '1' is not supported"),
    (_set(["format_version"], True), "format_version True is not supported"),
    (_set(["format_version"], 1.0), "format_version 1.0 is not supported"),
    (_delete(["model"]), "model.json lacks the 'model' or 'arrays' section"),
    (_set(["arrays"], {}), "model.json lacks the 'model' or 'arrays' section"),
    (_set(["model", "layers"], []), "the model has no layers"),
    (_set(["model", "layers"], "Dense"), "the model has no layers"),
    (_set(["model", "layers", 1, "type"], "Conv2D"), "layer 1 is not one of Dense, Activation.* with a config"),
    (_set(["model", "layers", 1, "type"], "Layer"), "layer 1 is not one of Dense, Activation"),
    (_set(["model", "layers", 0, "type"], ["Dense"]), "layer 0 is not one of Dense, Activation"),
    (_set(["model", "layers", 0, "type"], {"a": 1}), "layer 0 is not one of Dense, Activation"),
    (_set(["model", "layers", 0, "config"], [6]), "layer 0 is not one of Dense, Activation.* with a config"),
    (_set(["model", "layers", 0], "Dense"), "layer 0 is not one of Dense, Activation"),
    (_set(["model", "layers", 0, "config", "units"], 0), r"layer 0 has an invalid config \(Dense: units must be >= 1"),
    (_set(["model", "layers", 0, "config", "units"], "6"), r"layer 0 has an invalid config \(Dense: units must be an"),
    (_set(["model", "layers", 0, "config", "activation"], "swish"),
     r"layer 0 has an invalid config \(Dense: unknown activation 'swish'"),
    (_set(["model", "layers", 0, "config", "alpha"], -1.0),
     r"layer 0 has an invalid config \(Dense: alpha must be >= 0"),
    (_set(["model", "layers", 0, "config", "init"], "os.system"),
     r"layer 0 has an invalid config \(Dense: unknown init"),
    (_set(["model", "layers", 0, "config", "bogus"], 1), r"layer 0 has an invalid config \(.*bogus"),
    (_set(["model", "layers", 2, "config", "trainable"], "no"),
     r"layer 2 has an invalid config \(Dense: trainable must be True or False; got 'no'"),
    (_set(["model", "layers", 1, "config", "name"], "__import__"),
     r"layer 1 has an invalid config \(Activation: unknown activation"),
    (_set(["model", "dtype"], "float16"),
     r"invalid model settings \(Sequential: dtype must be 'float32' or 'float64'; got 'float16'"),
    (_set(["model", "dtype"], "object"), r"invalid model settings \(Sequential: dtype must be"),
    (_delete(["model", "dtype"]),
     r"invalid model settings \(Sequential: dtype must be 'float32' or 'float64'; got None"),
    (_set(["model", "input_dim"], 0), r"invalid model settings \(Sequential: input_dim must be >= 1"),
    (_set(["model", "input_dim"], None), r"invalid model settings \(Sequential: input_dim must be an integer"),
    (_set(["model", "seed"], -3), r"invalid model settings \(Sequential: seed must be >= 0"),
    (_set(["model", "input_dim"], 5), "the array list does not match the architecture"),
    (_set(["model", "layers", 3, "config", "units"], 4), "the array list does not match the architecture"),
    (_set(["arrays", 0, "name"], "../../etc/passwd"), "the array list does not match the architecture"),
    (_set(["arrays"], []), "the array list does not match the architecture"),
    (_set(["metadata"], [1, 2]), "metadata is not a JSON object"),
]


@pytest.mark.parametrize("edit, match", BAD_META,
                         ids=[f"{i}-{m.split('(')[0].strip()[:40]}" for i, (_, m) in enumerate(BAD_META)])
def test_bad_model_json(read, saved, tmp_path, edit, match):
    path, _ = saved
    bad = with_meta(path, tmp_path / "bad.fnn", edit)
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: {match}"):
        read.load(bad)


def test_missing_members(read, saved, tmp_path):
    path, _ = saved
    members = read_members(path)
    del members["arrays/3.b.npy"]
    with pytest.raises(fnn.ModelFormatError, match=r"the array member 'arrays/3.b.npy' is missing"):
        read.load(write_zip(tmp_path / "a.fnn", members))
    members = read_members(path)
    del members["model.json"]
    with pytest.raises(fnn.ModelFormatError, match="it has no model.json member"):
        read.load(write_zip(tmp_path / "b.fnn", members))


@pytest.mark.parametrize("extra", ["arrays/9.w.npy", "notes.txt", "../evil.npy", "model.json/"])
def test_extra_members(read, saved, tmp_path, extra):
    path, _ = saved
    members = read_members(path)
    members[extra] = npy_bytes(np.zeros(3, np.float32))
    with pytest.raises(fnn.ModelFormatError, match=r"unexpected members \[.*"):
        read.load(write_zip(tmp_path / "x.fnn", members))


def _patch_central_size(path, name, size):
    """Rewrite the uncompressed size that the central directory declares for ``name``."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(b"PK\x01\x02")
    while pos >= 0:
        n_name = struct.unpack("<H", raw[pos + 28:pos + 30])[0]
        if raw[pos + 46:pos + 46 + n_name] == name.encode():
            raw[pos + 24:pos + 28] = struct.pack("<I", size)
            path.write_bytes(bytes(raw))
            return
        pos = raw.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"{name} not found")


@pytest.mark.parametrize("name, match", [
    ("arrays/0.w.npy", r"arrays/0.w.npy is 4000000000 bytes; \[4, 6\] float32 needs 96"),
    ("model.json", "model.json is 4000000000 bytes, over the 1048576 limit"),
])
def test_oversize_member_declared(read, saved, tmp_path, name, match):
    path, _ = saved
    bad = tmp_path / "big.fnn"
    bad.write_bytes(path.read_bytes())
    _patch_central_size(bad, name, 4_000_000_000)
    with pytest.raises(fnn.ModelFormatError, match=match):
        read.load(bad)


def test_oversize_members_really_present(read, saved, tmp_path):
    path, _ = saved
    members = read_members(path)
    members["arrays/0.w.npy"] += b"\0" * 70_000  # padding beyond any .npy header allowance
    with pytest.raises(fnn.ModelFormatError, match=r"arrays/0.w.npy is 70224 bytes"):
        read.load(write_zip(tmp_path / "a.fnn", members))
    members = read_members(path)
    meta = json.loads(members["model.json"])
    meta["padding"] = " " * (1 << 20)
    members["model.json"] = json.dumps(meta)
    with pytest.raises(fnn.ModelFormatError, match="over the 1048576 limit"):
        read.load(write_zip(tmp_path / "b.fnn", members, zipfile.ZIP_DEFLATED))


def test_huge_declared_architecture_is_rejected_before_allocating(read, saved, tmp_path):
    # a few hundred bytes declaring 4e10 parameters must not try to allocate 160 GB
    path, _ = saved

    def edit(meta):
        meta["model"]["input_dim"] = 200_000
        meta["model"]["layers"][0]["config"]["units"] = 200_000

    bad = with_meta(path, tmp_path / "huge.fnn", edit)
    t0 = time.perf_counter()
    with pytest.raises(fnn.ModelFormatError, match=r"the architecture has 40001200018 parameters, more than the file"):
        read.load(bad)
    assert time.perf_counter() - t0 < 2.0


def test_encrypted_members_are_rejected(read, saved, tmp_path):
    path, _ = saved
    raw = bytearray(path.read_bytes())
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = raw.find(sig)
        while pos >= 0:
            raw[pos + flag_at] |= 0x1
            pos = raw.find(sig, pos + 4)
    bad = tmp_path / "enc.fnn"
    bad.write_bytes(bytes(raw))
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: it has encrypted members"):
        read.load(bad)


def test_unsupported_compression_is_a_format_error(read, saved, tmp_path):
    path, _ = saved
    raw = bytearray(path.read_bytes())
    for sig, method_at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        pos = raw.find(sig)
        while pos >= 0:
            raw[pos + method_at:pos + method_at + 2] = struct.pack("<H", 99)  # AES: not supported
            pos = raw.find(sig, pos + 4)
    bad = tmp_path / "aes.fnn"
    bad.write_bytes(bytes(raw))
    with pytest.raises(fnn.ModelFormatError, match=BAD):
        read.load(bad)


def test_error_names_the_file(read, saved, tmp_path):
    path, _ = saved
    bad = with_meta(path, tmp_path / "named-file.fnn", _set(["format_version"], 7))
    with pytest.raises(fnn.ModelFormatError) as info:
        read.load(str(bad))
    assert str(info.value).startswith(f"{read.owner}: {bad} is not a valid fastnn model file: ")
    assert str(info.value).endswith(".")


# ------------------------------------------------------------------- BatchNorm and Dropout
def bn_model(device=DEVICE, dtype="float32"):
    model = fnn.Sequential([L.Dense(6), L.BatchNorm(momentum=0.2, eps=1e-3), L.Activation("relu"), L.Dropout(0.25),
                            L.Dense(3)], input_dim=4, seed=7, device=device, dtype=dtype)
    X, y = inputs(40), np.arange(40) % 3
    fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9), batch_size=8, seed=0).fit(
        X, y, epochs=3, verbose=0)
    return model


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_keeps_batchnorm_statistics_and_dropout(tmp_path, device, dtype):
    model = bn_model(device, dtype)
    model.layers[1].trainable = False
    assert not np.array_equal(model.layers[1].weights[2], 0)  # trained running statistics
    path = tmp_path / "bn.fnn"
    model.save(path)
    loaded = fnn.load(path, device=device)
    assert [type(layer) for layer in loaded.layers] == [L.Dense, L.BatchNorm, L.Activation, L.Dropout, L.Dense]
    assert loaded.get_config() == model.get_config()
    bn, dropout = loaded.layers[1], loaded.layers[3]
    assert (bn.momentum, bn.eps, bn.trainable, dropout.rate) == (0.2, 1e-3, False, 0.25)
    with zipfile.ZipFile(path) as zf:
        assert {"arrays/1.running_mean.npy", "arrays/1.running_var.npy"} <= set(zf.namelist())
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert a.tobytes() == b.tobytes()
    X = inputs(9)
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_negative_running_variance_is_a_format_error(tmp_path):
    model = bn_model("reference")
    model.save(tmp_path / "bn.fnn")
    members = read_members(tmp_path / "bn.fnn")
    buf = io.BytesIO()
    np.save(buf, -np.ones(6, np.float32))
    members["arrays/1.running_var.npy"] = buf.getvalue()
    bad = write_zip(tmp_path / "bad.fnn", members)
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: BatchNorm.set_weights: running_var must be >= 0; got -1.0"):
        fnn.load(bad, device="reference")
    with pytest.raises(ValueError, match="running_var must be >= 0"):
        model.set_weights(model.get_weights()[:5] + [-np.ones(6)] + model.get_weights()[6:])


# ------------------------------------------------------------------ issue 17: hostile bytes
def test_issue17_member_name_that_is_not_utf8(read, saved, tmp_path):
    path, _ = saved
    bad = tmp_path / "name.fnn"
    bad.write_bytes(flag_names_utf8(path.read_bytes(), 0xFF, every=True))
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: damaged content \\(UnicodeDecodeError"):
        read.load(bad)


@pytest.mark.parametrize("offset", [0xFFFFFFF0, 3])
def test_issue17_corrupt_central_directory_offset(read, saved, tmp_path, offset):
    path, _ = saved
    raw = bytearray(path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    struct.pack_into("<I", raw, end + 16, offset)
    bad = tmp_path / "cd.fnn"
    bad.write_bytes(bytes(raw))
    with pytest.raises(fnn.ModelFormatError, match=BAD):
        read.load(bad)


@pytest.mark.parametrize("header", [
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (4,",  # tokenize.TokenError on main
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 6), 'x': __import__('os')}",
    b"\xff\xfe\xfd",
])
def test_issue17_broken_npy_headers(read, saved, tmp_path, header):
    path, _ = saved
    members = read_members(path)
    npy = members["arrays/0.w.npy"]
    members["arrays/0.w.npy"] = npy[:8] + struct.pack("<H", len(header) + 1) + header + b"\n" + npy[128:]
    bad = write_zip(tmp_path / "npy.fnn", members)
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: arrays/0.w.npy is not a .npy array"):
        read.load(bad)


@pytest.mark.parametrize("text", ["1e400", "-Infinity", "Infinity", "NaN", "1" + "0" * 400])
def test_issue17_overflowing_json_numbers(read, saved, tmp_path, text):
    path, _ = saved
    members = read_members(path)
    meta = json.loads(members["model.json"])
    meta["model"]["layers"][0]["config"]["alpha"] = "@@"
    members["model.json"] = json.dumps(meta).replace('"@@"', text)
    bad = write_zip(tmp_path / "num.fnn", members)
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: model.json is not valid JSON"):
        read.load(bad)


@pytest.mark.parametrize("member", ["model.json", "arrays/0.w.npy"])
def test_issue17_duplicate_member_names_are_refused(read, saved, tmp_path, member):
    """Two readers could see two models (zipfile keeps the last of two equal names)."""
    import warnings

    path, _ = saved
    members = read_members(path)
    bad = tmp_path / "dup.fnn"
    with warnings.catch_warnings(), zipfile.ZipFile(bad, "w") as zf:
        warnings.simplefilter("ignore")
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr(member, members[member])
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: the member name '{member}' occurs twice"):
        read.load(bad)


def test_the_manifest_records_the_kind_and_old_files_without_it_still_read(read, saved, tmp_path):
    from fastnn._archive import file_kind

    path, _ = saved
    assert json.loads(read_members(path)["model.json"])["kind"] == "model"
    assert file_kind(path) == "model"
    old = with_meta(path, tmp_path / "old.fnn", lambda meta: meta.pop("kind") and None)
    assert "kind" not in json.loads(read_members(old)["model.json"])
    assert file_kind(old) == "model"
    read.load(old)
    bad = with_meta(path, tmp_path / "other.fnn", _set(["kind"], "weights"))
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: kind 'weights' is not one of model, checkpoint"):
        read.load(bad)


# ------------------------------------------------------------------ issue 17: file writing
def test_issue17_saving_to_a_directory_is_a_clear_error(tmp_path, monkeypatch):
    model = make_model("reference")
    monkeypatch.chdir(tmp_path)
    for target in (".", tmp_path, "sub"):
        os.makedirs(tmp_path / "sub", exist_ok=True)
        with pytest.raises(IsADirectoryError, match=r"^Sequential.save: .* is a directory; give a file name, such as"):
            model.save(target)
    assert sorted(os.listdir(tmp_path)) == ["sub"]
    with pytest.raises(FileNotFoundError, match=r"^Sequential.save: the folder .*nowhere.* does not exist"):
        model.save(tmp_path / "nowhere" / "m.fnn")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_issue17_saved_files_follow_the_umask(tmp_path, umask):
    """main wrote every file with mode 600 (mkstemp's) whatever the umask."""
    old = os.umask(umask)
    try:
        make_model("reference").save(tmp_path / "m.fnn")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.fnn").st_mode & 0o777 == 0o666 & ~umask


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.fnn"
    make_model("reference").save(path)
    os.chmod(path, 0o640)
    make_model("reference").save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_issue17_stale_temporaries_of_a_killed_save_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "m.fnn"
    stale = [tmp_path / ".fastnn-tmp-abcd1234-m.fnn", tmp_path / ".tmp-x_9y8z7w-m.fnn"]  # new and old patterns
    kept = [tmp_path / ".fastnn-tmp-abcd1234-other.fnn",  # another target's
            tmp_path / ".tmp-abc-m.fnn",  # not the random part mkstemp makes
            tmp_path / "notes-m.fnn", tmp_path / ".fastnn-tmp-fresh123-m.fnn"]  # ... and one newer than the save
    for p in stale + kept:
        p.write_bytes(b"x" * 100)
    past = time.time() - 3600
    for p in stale + kept[:-1]:
        os.utime(p, (past, past))
    future = time.time() + 3600  # a save that started after ours: left alone
    os.utime(kept[-1], (future, future))
    make_model("reference").save(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.fnn", *(p.name for p in kept)])


def test_failed_saves_leave_no_temporary_for_every_kind(tmp_path, monkeypatch):
    import fastnn._archive as archive
    import fastnn._modelfile as model_file

    model = make_model("reference")
    trainer = fnn.Trainer(model, "mse")

    def broken(f, members):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(archive, "write_archive_to", broken)
    monkeypatch.setattr(model_file, "write_archive_to", broken)
    for save in (model.save, trainer.save_checkpoint, fnn.Ensemble([model]).save):
        with pytest.raises(KeyboardInterrupt):
            save(tmp_path / "x.fnn")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_a_permission_error_not_a_format_error(read, saved):
    path, _ = saved
    os.chmod(path, 0)
    try:
        with pytest.raises(PermissionError):
            read.load(path)
    finally:
        os.chmod(path, 0o644)


def test_issue17_a_save_killed_with_sigkill_leaves_debris_the_next_save_removes(tmp_path):
    """The real thing: a process killed (SIGKILL) in the middle of a save cannot clean up; the
    next save to the same path removes its temporary (main left 74 of them, 9.3 GiB)."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "m.fnn"
    script = (
        "import sys, time, fastnn as fnn, fastnn._modelfile as io_\n"
        "def stuck(f, members):\n"
        "    f.write(b'x' * 100000); f.flush(); print('ready', flush=True); time.sleep(120)\n"
        "io_.write_archive_to = stuck\n"
        f"fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0).save({str(path)!r})\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(fnn.__file__)))  # the fastnn under test
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=root)
    try:
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    debris = [name for name in os.listdir(tmp_path) if name != "m.fnn"]
    assert len(debris) == 1 and debris[0].startswith(".fastnn-tmp-") and debris[0].endswith("-m.fnn")
    # older than the next save: file times tick coarsely (a few ms), and a temporary from the same
    # tick as the running save is rightly left alone (it could be a concurrent save's)
    stale = tmp_path / debris[0]
    os.utime(stale, (stale.stat().st_atime - 1, stale.stat().st_mtime - 1))
    make_model("reference").save(path)
    assert os.listdir(tmp_path) == ["m.fnn"]
    assert fnn.load(path, device="reference").input_dim == 4


@pytest.mark.parametrize("metadata, match", [
    ({"blob": "x" * (1 << 20)}, r"model.json would be \d+ bytes, over the 1048576 a reader accepts"),
    ({"id": 10**50}, r"model.json would hold a value no reader accepts \(an integer of 51 digits"),
])
def test_what_save_writes_load_reads(tmp_path, metadata, match):
    """A save refuses, before opening the file, what every reader would refuse (main wrote a
    model whose 1 MiB of metadata no loader read back)."""
    model = make_model("reference")
    model.metadata = metadata
    with pytest.raises(ValueError, match="^Sequential.save: " + match):
        model.save(tmp_path / "m.fnn")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", [["model"], {"a": 1}, 3, "Model"])
def test_a_kind_of_the_wrong_type_is_named(read, saved, tmp_path, kind):
    path, _ = saved
    bad = with_meta(path, tmp_path / "k.fnn", _set(["kind"], kind))
    with pytest.raises(fnn.ModelFormatError, match=f"{BAD}: kind .* is not one of model, checkpoint, ensemble"):
        read.load(bad)


def test_load_sets_the_weights_without_drawing_an_initialization_first(tmp_path, monkeypatch):
    """Loading fills every parameter from the file: the random initialization a new model would
    draw is skipped (it was half of the load time of a 2.9M-parameter model)."""
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.BatchNorm(), fnn.layers.Dense(3)],
                           input_dim=5, seed=0)
    model.save(tmp_path / "m.fnn")

    def no_draw(self, seed=None):
        raise AssertionError(f"{type(self).__name__}.reset_parameters ran during load")

    for cls in (fnn.layers.Dense, fnn.layers.BatchNorm):
        monkeypatch.setattr(cls, "reset_parameters", no_draw)
    loaded = fnn.load(tmp_path / "m.fnn")
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
