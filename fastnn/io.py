"""Model files: one zip (``.fnn``) holding ``model.json`` and one ``.npy`` member per array.

Never pickle: arrays are read with ``allow_pickle=False`` after their header is checked
against the architecture, member sizes are bounded before anything is read, and any
deviation raises ``ModelFormatError``. Writes are atomic (temporary file, fsync, rename).

Layout of ``model.json``::

    {"format": "fastnn.model", "format_version": 1, "fastnn_version": "...",
     "model": {"input_dim": 64, "dtype": "float32", "seed": 0,
               "layers": [{"type": "Dense", "config": {...}}, ...]},
     "arrays": [{"name": "arrays/0.w.npy", "layer": 0, "param": "w", "shape": [64, 128]}, ...],
     "metadata": {...}}   # model.metadata: free-form JSON (the CLI keeps its scaler there)
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib

import numpy as np

from ._checks import check_int
from ._files import atomic_write
from .errors import ModelFormatError

FORMAT = "fastnn.model"
FORMAT_VERSION = 1
_MAX_JSON_BYTES = 1 << 20
_MAX_NPY_HEADER = 1 << 16


def _array_entries(model):
    entries = []
    for i, layer in enumerate(model.layers):
        for name, shape, _ in layer.param_shapes():
            entries.append({"name": f"arrays/{i}.{name}.npy", "layer": i, "param": name, "shape": list(shape)})
    return entries


def save_model(model, path):
    """Write ``model`` to ``path`` atomically (see the module docstring for the format)."""
    from . import __version__

    if not model.built:
        raise ValueError("Sequential.save: the model is not built yet; give input_dim or train it first.")
    entries = _array_entries(model)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "fastnn_version": __version__,
            "model": model.get_config(), "arrays": entries, "metadata": model.metadata}
    try:
        text = json.dumps(meta, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Sequential.save: model.metadata must be JSON-serialisable; {exc}.") from None
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("model.json", text, compress_type=zipfile.ZIP_DEFLATED)
        for entry in entries:
            layer = model.layers[entry["layer"]]
            buf = io.BytesIO()
            np.lib.format.write_array(buf, model.backend.to_numpy(layer.params[entry["param"]]),
                                      allow_pickle=False)
            zf.writestr(entry["name"], buf.getvalue())


def _fail(path, what):
    raise ModelFormatError(f"fastnn.load: {path!s} is not a valid fastnn model file: {what}.")


def _read_meta(path, zf):
    try:
        info = zf.getinfo("model.json")
    except KeyError:
        _fail(path, "it has no model.json member")
    if info.file_size > _MAX_JSON_BYTES:
        _fail(path, f"model.json is {info.file_size} bytes, over the {_MAX_JSON_BYTES} limit")
    try:
        meta = json.loads(zf.read(info).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting bomb
        _fail(path, f"model.json is not valid JSON ({exc})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        _fail(path, "model.json does not declare the fastnn.model format")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        _fail(path, f"format_version {version!r} is not supported by this fastnn (it reads 1..{FORMAT_VERSION}); "
                    f"upgrade fastnn")
    if not isinstance(meta.get("model"), dict) or not isinstance(meta.get("arrays"), list):
        _fail(path, "model.json lacks the 'model' or 'arrays' section")
    return meta


def _build_model(path, cfg, device):
    from .layers import LAYER_TYPES, layer_from_config
    from .model import Sequential

    layers_cfg = cfg.get("layers")
    if not isinstance(layers_cfg, list) or not layers_cfg:
        _fail(path, "the model has no layers")
    layers = []
    for i, entry in enumerate(layers_cfg):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) or \
                entry["type"] not in LAYER_TYPES or not isinstance(entry.get("config"), dict):
            _fail(path, f"layer {i} is not one of {', '.join(LAYER_TYPES)} with a config")
        try:
            layers.append(layer_from_config(entry["type"], entry["config"]))
        except (TypeError, ValueError) as exc:
            _fail(path, f"layer {i} has an invalid config ({exc})")
    try:
        model = Sequential(layers, seed=cfg.get("seed"), device=device, dtype=cfg.get("dtype"))
        input_dim = check_int("Sequential", "input_dim", cfg.get("input_dim"), low=1)
    except (TypeError, ValueError) as exc:
        _fail(path, f"invalid model settings ({exc})")
    # Building allocates (and initializes) every parameter, so first bound the parameter count
    # by the bytes the file holds: its arrays are stored uncompressed.
    n, count = input_dim, 0
    for layer in layers:
        n = layer.build(n, model.backend, model.dtype)  # shapes only; allocates nothing
        count += sum(math.prod(shape) for _, shape, _ in layer.param_shapes())
    if count * model.dtype.itemsize > os.path.getsize(path):
        _fail(path, f"the architecture has {count} parameters, more than the file can hold")
    model._build(input_dim)
    return model


def _read_array(path, zf, name, shape, dtype):
    """Read one .npy member after checking its size and header against what is expected."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        _fail(path, f"the array member {name!r} is missing")
    expected = int(np.prod(shape)) * dtype.itemsize
    if info.file_size > expected + _MAX_NPY_HEADER:
        _fail(path, f"{name} is {info.file_size} bytes; {shape} {dtype} needs {expected}")
    data = zf.read(info)
    f = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0(f) if major == 1 else np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        _fail(path, f"{name} is not a .npy array ({exc})")
    got_shape, fortran, got_dtype = header
    if got_dtype != dtype or tuple(got_shape) != tuple(shape):
        _fail(path, f"{name} holds {got_dtype} {tuple(got_shape)}; the architecture needs {dtype} {tuple(shape)}")
    f.seek(0)
    try:
        arr = np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as exc:
        _fail(path, f"{name} could not be read ({exc})")
    if not np.isfinite(arr).all():
        _fail(path, f"{name} contains NaN or inf")
    return arr


def load(path, device="cpu"):
    """Load a model written by ``model.save``. Raises ModelFormatError for anything that is
    not an intact fastnn model file; nothing in the file is executed.

    >>> import fastnn as fnn, os, tempfile
    >>> m = fnn.Sequential([fnn.layers.Dense(3)], input_dim=2, seed=0)
    >>> p = os.path.join(tempfile.mkdtemp(), "m.fnn"); m.save(p)
    >>> [w.shape for w in fnn.load(p).get_weights()]
    [(2, 3), (3,)]
    """
    from .backends import get_backend

    get_backend(device, "fastnn.load")  # a bad device is the caller's error, not the file's
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"fastnn.load: no file at {path!r}.")
    try:
        with zipfile.ZipFile(path) as zf:
            if any(info.flag_bits & 0x1 for info in zf.infolist()):
                _fail(path, "it has encrypted members")
            meta = _read_meta(path, zf)
            model = _build_model(path, meta["model"], device)
            expected = _array_entries(model)
            if meta["arrays"] != expected:
                _fail(path, "the array list does not match the architecture")
            allowed = {"model.json"} | {e["name"] for e in expected}
            extra = [n for n in zf.namelist() if n not in allowed]
            if extra:
                _fail(path, f"unexpected members {extra[:3]}")
            weights = [_read_array(path, zf, e["name"], e["shape"], model.dtype) for e in expected]
            metadata = meta.get("metadata", {})
            if not isinstance(metadata, dict):
                _fail(path, "metadata is not a JSON object")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        _fail(path, f"the zip archive is damaged or not a zip archive ({exc})")
    try:
        model.set_weights(weights)
    except ValueError as exc:  # values a layer cannot hold (a negative BatchNorm variance)
        _fail(path, str(exc).rstrip("."))
    model.metadata = metadata
    return model


__all__ = ["FORMAT_VERSION", "load", "save_model"]
