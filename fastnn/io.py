"""Model files: one zip (``.fnn``) holding ``model.json`` and one ``.npy`` member per array.

Never pickle: arrays are read with ``allow_pickle=False`` after their header is checked
against the architecture, member sizes are bounded before anything is read, and any
deviation raises ``ModelFormatError``. Writes are atomic (temporary file, fsync, rename).
``read_model_file`` does all the reading and checking, once, for both readers: ``load`` builds a
Sequential from what it returns, ``fastnn.inference.load`` folds it for NumPy-only prediction.

Layout of ``model.json``::

    {"format": "fastnn.model", "format_version": 1, "fastnn_version": "...",
     "model": {"input_dim": 64, "dtype": "float32", "seed": 0,
               "layers": [{"type": "Dense", "config": {...}}, ...]},
     "arrays": [{"name": "arrays/0.w.npy", "layer": 0, "param": "w", "shape": [64, 128]}, ...],
     "metadata": {...}}   # model.metadata: free-form JSON (the CLI's columns, classes)
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from ._checks import check_dtype_name, check_int, check_seed
from ._files import atomic_write
from .errors import ModelFormatError

FORMAT = "fastnn.model"
FORMAT_VERSION = 1
_MAX_JSON_BYTES = 1 << 20
_MAX_NPY_HEADER = 1 << 16
#: A parameter name a file may choose itself (see LayerSpec): it becomes part of a member name.
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _array_entries(model):
    entries = []
    for i, layer in enumerate(model.layers):
        for name, shape, _ in layer.param_shapes():
            entries.append({"name": f"arrays/{i}.{name}.npy", "layer": i, "param": name, "shape": list(shape)})
    return entries


def save_model(model, path, extra=None):
    """Write ``model`` to ``path`` atomically (see the module docstring for the format).

    ``extra`` ({member name: JSON-able object or NumPy array}) adds members after the model's,
    as ``.json`` text or ``.npy`` arrays: training checkpoints (fastnn.checkpoint) use it.
    """
    with atomic_write(path) as f:
        write_model(model, f, extra)


def write_model(model, f, extra=None):
    """Write ``model`` (and ``extra``, as save_model) as a model file's bytes to the binary file
    object ``f`` (save_model writes a file with it; fastnn.ensemble stores its members with it)."""
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
    members = [("model.json", text)]
    members += [(e["name"], model.backend.to_numpy(model.layers[e["layer"]].params[e["param"]])) for e in entries]
    members += [(name, v if isinstance(v, np.ndarray) else json.dumps(v, indent=1, allow_nan=False))
                for name, v in (extra or {}).items()]
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, value in members:
            if isinstance(value, str):
                zf.writestr(name, value, compress_type=zipfile.ZIP_DEFLATED)
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, value, allow_pickle=False)
                zf.writestr(name, buf.getvalue())


def format_error(path, what, owner):
    """The ModelFormatError saying that ``path`` is not a valid model file, and why."""
    return ModelFormatError(f"{owner}: {path!s} is not a valid fastnn model file: {what}.")


def _fail(path, what, owner):
    raise format_error(path, what, owner)


def read_json_member(path, zf, member, owner, fmt=None, max_version=None, fail=None):
    """The JSON value of ``member`` of an open zip, checked: bounded size, valid JSON and, with
    ``fmt``, an object whose ``format`` is ``fmt`` and ``format_version`` in [1, max_version].
    Failures call ``fail(path, what, owner)`` (default: raise ModelFormatError for a model file)."""
    fail = _fail if fail is None else fail
    try:
        info = zf.getinfo(member)
    except KeyError:
        fail(path, f"it has no {member} member", owner)
    if info.file_size > _MAX_JSON_BYTES:
        fail(path, f"{member} is {info.file_size} bytes, over the {_MAX_JSON_BYTES} limit", owner)
    try:
        meta = json.loads(zf.read(info).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting bomb
        fail(path, f"{member} is not valid JSON ({exc})", owner)
    if fmt is None:
        return meta
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        fail(path, f"{member} does not declare the {fmt} format", owner)
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= max_version:
        fail(path, f"format_version {version!r} is not supported by this fastnn (it reads 1..{max_version}); "
                   f"upgrade fastnn", owner)
    return meta


def _read_meta(path, zf, owner):
    meta = read_json_member(path, zf, "model.json", owner, FORMAT, FORMAT_VERSION)
    if not isinstance(meta.get("model"), dict) or not isinstance(meta.get("arrays"), list):
        _fail(path, "model.json lacks the 'model' or 'arrays' section", owner)
    return meta


class LayerSpec(NamedTuple):
    """One layer of a model file, checked: what a reader needs to rebuild or run it.

    ``config`` is the layer's configuration with its defaults filled in; ``params`` lists
    ``(name, shape)`` of its arrays in storage order, where a name of None accepts the name
    the file gives (a plain identifier); ``layer`` is the fastnn.layers object that checked
    the config, or None when the reader described the layer itself.
    """

    kind: str
    config: dict
    n_in: int
    n_out: int
    params: list
    layer: object = None


def describe_layer(kind, config, n_in, dtype):
    """LayerSpec of a fastnn.layers layer, checked by building it (shapes only, nothing is
    allocated). Raises TypeError or ValueError for an invalid config."""
    from .layers import layer_from_config

    layer = layer_from_config(kind, config)
    n_out = layer.build(n_in, None, dtype)
    params = [(name, tuple(shape)) for name, shape, _ in layer.param_shapes()]
    return LayerSpec(kind, layer.get_config(), n_in, n_out, params, layer)


def layer_describers():
    """{type name: describe function} for every layer type of fastnn.layers."""
    from . import preprocessing  # noqa: F401  (registers Standardize and MinMaxScale in LAYER_TYPES)
    from .layers import LAYER_TYPES

    return dict.fromkeys(LAYER_TYPES, describe_layer)


class ModelFile(NamedTuple):
    """The checked content of a model file (see read_model_file)."""

    dtype: np.dtype
    input_dim: int
    seed: object
    layers: list      # LayerSpec per layer
    weights: list     # per layer, its arrays in storage order
    metadata: dict
    extra: object = None  # what read_model_file's ``extra`` reader returned


def _describe_layers(path, cfg, describers, owner):
    """Check the architecture and return (dtype, input_dim, seed, [LayerSpec])."""
    layers_cfg = cfg.get("layers")
    if not isinstance(layers_cfg, list) or not layers_cfg:
        _fail(path, "the model has no layers", owner)
    try:
        dtype = check_dtype_name("Sequential", cfg.get("dtype"))
        seed = check_seed("Sequential", cfg.get("seed"))
        input_dim = check_int("Sequential", "input_dim", cfg.get("input_dim"), low=1)
    except (TypeError, ValueError) as exc:
        _fail(path, f"invalid model settings ({exc})", owner)
    specs, n = [], input_dim
    for i, entry in enumerate(layers_cfg):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) or \
                entry["type"] not in describers or not isinstance(entry.get("config"), dict):
            _fail(path, f"layer {i} is not one of {', '.join(describers)} with a config", owner)
        try:
            spec = describers[entry["type"]](entry["type"], entry["config"], n, dtype)
        except (TypeError, ValueError) as exc:
            _fail(path, f"layer {i} has an invalid config ({exc})", owner)
        specs.append(spec)
        n = spec.n_out
    return dtype, input_dim, seed, specs


def _check_array_list(path, entries, specs, owner):
    """The file's array list must be exactly the architecture's, in storage order."""
    expected = [(i, name, list(shape)) for i, spec in enumerate(specs) for name, shape in spec.params]
    names = set()
    ok = len(entries) == len(expected)
    for entry, (i, name, shape) in zip(entries, expected) if ok else ():
        if name is None and isinstance(entry, dict) and isinstance(entry.get("param"), str) and \
                _PARAM_NAME.fullmatch(entry["param"]):
            name = entry["param"]  # a layer that takes its parameter names from the file
        ok = ok and entry == {"name": f"arrays/{i}.{name}.npy", "layer": i, "param": name, "shape": shape} \
            and entry["name"] not in names
        names.add(f"arrays/{i}.{name}.npy")
    if not ok:
        _fail(path, "the array list does not match the architecture", owner)
    return [entry["name"] for entry in entries]


def _read_array(path, zf, name, shape, dtype, owner):
    """Read one .npy member after checking its size and header against what is expected."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        _fail(path, f"the array member {name!r} is missing", owner)
    expected = int(np.prod(shape)) * dtype.itemsize
    if info.file_size > expected + _MAX_NPY_HEADER:
        _fail(path, f"{name} is {info.file_size} bytes; {list(shape)} {dtype} needs {expected}", owner)
    data = zf.read(info)
    f = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0(f) if major == 1 else np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        _fail(path, f"{name} is not a .npy array ({exc})", owner)
    got_shape, fortran, got_dtype = header
    if got_dtype != dtype or tuple(got_shape) != tuple(shape):
        _fail(path, f"{name} holds {got_dtype} {tuple(got_shape)}; the architecture needs {dtype} {tuple(shape)}",
              owner)
    f.seek(0)
    try:
        arr = np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as exc:
        _fail(path, f"{name} could not be read ({exc})", owner)
    if not np.isfinite(arr).all():
        _fail(path, f"{name} contains NaN or inf", owner)
    return arr


def read_array_member(path, zf, name, shape, dtype, owner):
    """A ``.npy`` member of known shape and dtype, checked as model arrays are (finite values)."""
    return _read_array(path, zf, name, shape, dtype, owner)


def read_model_file(path, owner="fastnn.load", describers=None, extra=None, stream=None):
    """Read and check a model file without building a model: the shared reader of
    ``fastnn.load`` and ``fastnn.inference.load``.

    ``describers`` maps each accepted layer type to a function ``(type, config, n_in, dtype)
    -> LayerSpec`` that checks the layer's config (default: the layers of fastnn.layers).
    Every failure raises ModelFormatError naming ``owner`` and the file; nothing in the file is
    executed. ``extra(zf, dtype, params)`` (training checkpoints) reads further members with
    read_json_member / read_array_member and returns (their names, a value): the names are
    allowed in the archive and the value becomes ModelFile.extra. ``stream``: a seekable binary
    file object holding the model file, read instead of opening ``path``, which then only names
    it in messages (fastnn.ensemble reads its members so). Returns a ModelFile.
    """
    path = os.fspath(path)
    if stream is None and not os.path.isfile(path):
        raise FileNotFoundError(f"{owner}: no file at {path!r}.")
    describers = layer_describers() if describers is None else describers
    size = os.path.getsize(path) if stream is None else stream.seek(0, io.SEEK_END)
    try:
        with zipfile.ZipFile(path if stream is None else stream) as zf:
            if any(info.flag_bits & 0x1 for info in zf.infolist()):
                _fail(path, "it has encrypted members", owner)
            meta = _read_meta(path, zf, owner)
            dtype, input_dim, seed, specs = _describe_layers(path, meta["model"], describers, owner)
            # A reader allocates what the architecture declares, so first bound the parameter
            # count by the bytes the file holds: its arrays are stored uncompressed.
            count = sum(math.prod(shape) for spec in specs for _, shape in spec.params)
            if count * dtype.itemsize > size:
                _fail(path, f"the architecture has {count} parameters, more than the file can hold", owner)
            names = _check_array_list(path, meta["arrays"], specs, owner)
            extra_names, extra_value = extra(zf, dtype, count) if extra is not None else ((), None)
            allowed = {"model.json", *names, *extra_names}
            unexpected = [n for n in zf.namelist() if n not in allowed]
            if unexpected:
                _fail(path, f"unexpected members {unexpected[:3]}", owner)
            members = iter(names)
            weights = [[_read_array(path, zf, next(members), shape, dtype, owner) for _, shape in spec.params]
                       for spec in specs]
            metadata = meta.get("metadata", {})
            if not isinstance(metadata, dict):
                _fail(path, "metadata is not a JSON object", owner)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        _fail(path, f"the zip archive is damaged or not a zip archive ({exc})", owner)
    content = ModelFile(dtype, input_dim, seed, specs, weights, metadata, extra_value)
    if extra is None:  # a model file of an older fastnn train: its input scaling becomes a layer
        from .preprocessing import upgrade_legacy

        content = upgrade_legacy(content, path, owner)
    return content


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
    return build_model(read_model_file(path), path, device)


def build_model(content, path, device="cpu", owner="fastnn.load"):
    """The Sequential a ModelFile (from read_model_file) describes, on ``device`` (load,
    Trainer.from_checkpoint, Ensemble.load)."""
    from .model import Sequential

    model = Sequential([spec.layer for spec in content.layers], seed=content.seed, device=device,
                       dtype=content.dtype)
    model._build(content.input_dim)
    try:
        model.set_weights([w for layer_weights in content.weights for w in layer_weights])
    except ValueError as exc:  # values a layer cannot hold (a negative BatchNorm variance)
        _fail(path, str(exc).rstrip("."), owner)
    model.metadata = content.metadata
    return model


__all__ = ["FORMAT_VERSION", "LayerSpec", "ModelFile", "build_model", "describe_layer", "format_error",
           "layer_describers", "load", "read_array_member", "read_json_member", "read_model_file", "save_model",
           "write_model"]
