"""Model files: one zip (``.fnn``) holding ``model.json`` and one ``.npy`` member per array.

Never pickle: the archive is read by fastnn._archive's hardened reader (every member inflated
with a cap, ``.npy`` headers checked against the architecture, strict JSON), and any deviation
raises ``ModelFormatError``. Writes are atomic (temporary file, fsync, rename).
``read_model_file`` does all the reading and checking, once, for both readers: ``load`` builds a
Sequential from what it returns, ``fastnn.inference.load`` folds it for NumPy-only prediction.

Layout of ``model.json``::

    {"format": "fastnn.model", "format_version": 1, "kind": "model", "fastnn_version": "...",
     "model": {"input_dim": 64, "dtype": "float32", "seed": 0,
               "layers": [{"type": "Dense", "config": {...}}, ...]},
     "arrays": [{"name": "arrays/0.w.npy", "layer": 0, "param": "w", "shape": [64, 128]}, ...],
     "metadata": {...}}   # model.metadata: free-form JSON (the CLI's columns, classes)

``kind`` is "model", or "checkpoint" for a training checkpoint (fastnn.checkpoint); files
written before it was recorded have none and are told apart by their members.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from ._archive import ArchiveReader, format_error
from ._checks import check_dtype_name, check_int, check_seed
from ._modelfile import FORMAT, FORMAT_VERSION, save_model, write_model

#: A parameter name a file may choose itself (see LayerSpec): it becomes part of a member name.
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _read_meta(ar):
    meta = ar.read_json("model.json", FORMAT, FORMAT_VERSION)
    if not isinstance(meta.get("model"), dict) or not isinstance(meta.get("arrays"), list):
        ar.fail("model.json lacks the 'model' or 'arrays' section")
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


def _describe_layers(ar, cfg, describers):
    """Check the architecture and return (dtype, input_dim, seed, [LayerSpec])."""
    layers_cfg = cfg.get("layers")
    if not isinstance(layers_cfg, list) or not layers_cfg:
        ar.fail("the model has no layers")
    try:
        dtype = check_dtype_name("Sequential", cfg.get("dtype"))
        seed = check_seed("Sequential", cfg.get("seed"))
        input_dim = check_int("Sequential", "input_dim", cfg.get("input_dim"), low=1)
    except (TypeError, ValueError, OverflowError) as exc:
        ar.fail(f"invalid model settings ({exc})")
    specs, n = [], input_dim
    for i, entry in enumerate(layers_cfg):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) or \
                entry["type"] not in describers or not isinstance(entry.get("config"), dict):
            ar.fail(f"layer {i} is not one of {', '.join(describers)} with a config")
        try:
            spec = describers[entry["type"]](entry["type"], entry["config"], n, dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            ar.fail(f"layer {i} has an invalid config ({exc})")
        specs.append(spec)
        n = spec.n_out
    return dtype, input_dim, seed, specs


def _check_array_list(ar, entries, specs):
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
        ar.fail("the array list does not match the architecture")
    return [entry["name"] for entry in entries]


def read_model_file(path, owner="fastnn.load", describers=None, extra=None, stream=None, kind="model"):
    """Read and check a model file without building a model: the shared reader of
    ``fastnn.load`` and ``fastnn.inference.load``.

    ``describers`` maps each accepted layer type to a function ``(type, config, n_in, dtype)
    -> LayerSpec`` that checks the layer's config (default: the layers of fastnn.layers).
    Every failure raises ModelFormatError naming ``owner`` and the file; nothing in the file is
    executed. ``extra(ar, dtype, n_params)`` (training checkpoints) reads further members with
    the open fastnn._archive.ArchiveReader ``ar`` and returns (their names, a value): the names
    are allowed in the archive and the value becomes ModelFile.extra. ``stream``: a seekable
    binary file object holding the model file, read instead of opening ``path``, which then only
    names it in messages (fastnn.ensemble reads its members so). ``kind``: the kind of file
    expected ('model' or 'checkpoint'); a file whose manifest declares another is refused.
    Returns a ModelFile.
    """
    describers = layer_describers() if describers is None else describers
    with ArchiveReader(path, owner, "model file", stream=stream) as ar:
        if "model.json" not in ar.names and "ensemble.json" in ar.names:
            ar.fail_kind("ensemble", kind, missing="model.json")
        meta = _read_meta(ar)
        found = ar.kind_of(meta, {"checkpoint.json": "checkpoint"}) or "model"
        if found != kind:
            ar.fail_kind(found, kind, missing="checkpoint.json" if kind == "checkpoint" else None)
        dtype, input_dim, seed, specs = _describe_layers(ar, meta["model"], describers)
        # A reader allocates what the architecture declares, so first bound the parameter
        # count by the bytes the file holds: its arrays are stored uncompressed.
        count = sum(math.prod(shape) for spec in specs for _, shape in spec.params)
        if count * dtype.itemsize > ar.size:
            ar.fail(f"the architecture has {count} parameters, more than the file can hold")
        names = _check_array_list(ar, meta["arrays"], specs)
        extra_names, extra_value = extra(ar, dtype, count) if extra is not None else ((), None)
        ar.check_members({"model.json", *names, *extra_names})
        members = iter(names)
        weights = [[ar.read_array(next(members), shape, dtype) for _, shape in spec.params] for spec in specs]
        metadata = meta.get("metadata", {})
        if not isinstance(metadata, dict):
            ar.fail("metadata is not a JSON object")
    content = ModelFile(dtype, input_dim, seed, specs, weights, metadata, extra_value)
    if extra is None:  # a model file of an older fastnn train: its input scaling becomes a layer
        content = upgrade_legacy(content, path, owner)
    return content


def upgrade_legacy(content, path, owner):
    """A ModelFile from ``read_model_file`` whose metadata holds the input scaling
    that ``fastnn train`` kept outside the model before the Standardize layer existed
    (``{"standardize": {"mean": [...], "scale": [...]}}``), with that scaling turned into a
    Standardize first layer, so every reader applies it; other files are returned as they are."""
    from .preprocessing import PREPROCESSING_TYPES

    std = content.metadata.get("standardize")
    if std is None or (content.layers and content.layers[0].kind in PREPROCESSING_TYPES):
        return content
    n = content.input_dim
    try:
        mean = np.asarray(std["mean"], np.float64)
        scale = np.asarray(std["scale"], np.float64)
        ok = mean.shape == scale.shape == (n,) and np.isfinite(mean).all() and np.isfinite(scale).all() \
            and (scale > 0).all()
    except (TypeError, ValueError, KeyError):
        ok = False
    if not ok:
        raise format_error(path, f"its metadata 'standardize' (the input scaling of an older fastnn train) is not {n} "
                           f"finite means and positive scales", owner)
    spec = describe_layer("Standardize", {"adapted": True}, n, content.dtype)
    arrays = [np.asarray(a, content.dtype) for a in (mean, 1.0 / scale, np.zeros(n))]
    metadata = {k: v for k, v in content.metadata.items() if k != "standardize"}
    return content._replace(layers=[spec, *content.layers], weights=[arrays, *content.weights], metadata=metadata)


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
    model.build(content.input_dim, initialize=False)  # set_weights fills every parameter next
    try:
        model.set_weights([w for layer_weights in content.weights for w in layer_weights])
    except ValueError as exc:  # values a layer cannot hold (a negative BatchNorm variance)
        raise format_error(path, str(exc).rstrip("."), owner) from None
    model.metadata = content.metadata
    return model


__all__ = ["FORMAT_VERSION", "LayerSpec", "ModelFile", "build_model", "describe_layer", "format_error",
           "layer_describers", "load", "read_model_file", "save_model",
           "write_model"]
