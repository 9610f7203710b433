"""Writing model files: the model's half of fastnn.io that Sequential.save needs.

The format (a zip of ``model.json`` and one ``.npy`` per parameter; see fastnn.io, which reads
it and re-exports these names) is written here, below fastnn.model, so that the model can save
itself without importing the reader, which builds models. ``model`` is anything with
Sequential's ``built``, ``layers`` (each with ``param_shapes()`` and ``params``), ``backend``,
``get_config()`` and ``metadata``.
"""

from __future__ import annotations

import json

import numpy as np

from ._archive import write_archive_to, write_check
from ._files import atomic_write
from ._version import __version__

FORMAT = "fastnn.model"
FORMAT_VERSION = 1


def array_entries(model):
    """model.json's array list: per parameter, its member name, layer index, name and shape."""
    entries = []
    for i, layer in enumerate(model.layers):
        for name, shape, _ in layer.param_shapes():
            entries.append({"name": f"arrays/{i}.{name}.npy", "layer": i, "param": name, "shape": list(shape)})
    return entries


def save_model(model, path, extra=None, kind="model"):
    """Write ``model`` to ``path`` atomically (see fastnn.io for the format).

    ``extra`` ({member name: JSON-able object or NumPy array}) adds members after the model's,
    as ``.json`` text or ``.npy`` arrays, and ``kind`` is the manifest's kind: training
    checkpoints (fastnn.checkpoint) use them.
    """
    owner = "Sequential.save" if kind == "model" else "Trainer.save_checkpoint"
    members = model_members(model, extra, kind)
    write_check(members, owner)  # before the file is opened: a save that fails leaves nothing
    with atomic_write(path, owner=owner) as f:
        write_archive_to(f, members)


def write_model(model, f, extra=None, kind="model"):
    """Write ``model`` (and ``extra``, ``kind``, as save_model) as a model file's bytes to the
    binary file object ``f`` (fastnn.ensemble stores its members with it)."""
    members = model_members(model, extra, kind)
    write_check(members, "Sequential.save")
    write_archive_to(f, members)


def model_members(model, extra=None, kind="model"):
    """The archive members [(name, JSON text or array)] of ``model`` (and ``extra``, ``kind``)."""
    if not model.built:
        raise ValueError("Sequential.save: the model is not built yet; give input_dim or train it first.")
    entries = array_entries(model)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "fastnn_version": __version__,
            "model": model.get_config(), "arrays": entries, "metadata": model.metadata}
    try:
        text = json.dumps(meta, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Sequential.save: model.metadata must be JSON-serialisable; {exc}.") from None
    members = [("model.json", text)]
    members += [(e["name"], model.backend.to_numpy(model.layers[e["layer"]].params[e["param"]])) for e in entries]
    members += [(name, v if isinstance(v, np.ndarray) else json.dumps(v, indent=1, allow_nan=False))
                for name, v in (extra or {}).items()]
    return members


__all__ = ["FORMAT", "FORMAT_VERSION", "array_entries", "model_members", "save_model", "write_model"]
