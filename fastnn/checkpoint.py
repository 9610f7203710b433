"""Training checkpoints: ``Trainer.save_checkpoint(path)`` and ``Trainer.from_checkpoint(path)``.

A checkpoint is a model file (fastnn.io: a zip of ``model.json`` and one ``.npy`` per
parameter, written atomically, read without pickle by fastnn._archive's reader) whose
``model.json`` says ``"kind": "checkpoint"``, with two more kinds of member:

- ``checkpoint.json``: {"format": "fastnn.checkpoint", "format_version": 1,
  "trainer": the Trainer's settings (loss, optimizer with its schedule and per-layer options,
  batch_size, metrics, l1, l2, clip_norm, clip_value, shuffle, seed, augmentations, precision),
  "state": the epoch count, the Trainer's generator state, the augmentations' keys and step
  counters, the layers' state (Dropout's step counters), the optimizer's step count, epoch,
  lr_scale and scalar state, "history": the History's records, "device": the model's device};
- ``optimizer/<name>.npy``: the optimizer's state buffers (momentum, Adam's moments, ...),
  each shaped like the flat parameter buffer, in the model's dtype.

The file is written from ``Trainer.state_dict()`` and the Trainer's public settings, and read
back as a ``Checkpoint`` (model, settings, state) that ``Trainer.from_checkpoint`` turns into a
Trainer with ``load_state_dict``: this module knows the file, the Trainer knows its state.
Everything a continued ``fit`` reads is restored, so N epochs, save, restore, M epochs gives
the same bits as N + M epochs without stopping (same device and thread count). Callbacks are
not saved: pass them again to ``fit``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import augment as _augment
from . import losses as _losses
from . import metrics as _metrics
from . import optim as _optim
from . import schedules as _schedules
from ._archive import format_error
from ._params import max_padded_size
from .io import build_model, read_model_file, save_model

FORMAT = "fastnn.checkpoint"
FORMAT_VERSION = 1

#: class name -> class of what a checkpoint may name, by kind
_KINDS = {
    "loss": {cls.__name__: cls for cls in _losses.LOSSES.values()},
    "optimizer": {cls.__name__: cls for cls in _optim.OPTIMIZERS.values() if isinstance(cls, type)},
    "schedule": {name: getattr(_schedules, name) for name in _schedules.__all__
                 if isinstance(getattr(_schedules, name), type) and issubclass(getattr(_schedules, name),
                                                                               _schedules.Schedule)
                 and name != "Schedule"},
    "metric": {cls.__name__: cls for cls in _metrics.METRICS.values()},
    "augmentation": {cls.__name__: getattr(_augment, cls.__name__) for cls in (_augment.GaussianNoise, _augment.Mixup)},
}

#: What rebuilding a Trainer from a checkpoint's fields raises for fields this fastnn does not
#: write (Trainer.from_checkpoint turns them into ModelFormatError with checkpoint_error).
CHECKPOINT_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, RecursionError)


def _spec(kind, obj, owner):
    """{'type': class name, 'config': get_config()} of a fastnn object a checkpoint can rebuild."""
    name = type(obj).__name__
    if _KINDS[kind].get(name) is not type(obj):
        raise TypeError(f"{owner}: the {kind} {obj!r} is not one of fastnn's ({', '.join(_KINDS[kind])}); a checkpoint "
                        f"stores fastnn's own classes by name and configuration only.")
    return {"type": name, "config": obj.get_config()}


def _build(kind, spec):
    cls = _KINDS[kind][spec["type"]]
    return cls(**spec["config"])


def save_checkpoint(trainer, path):
    """Write ``trainer``'s model, settings and ``state_dict()`` to ``path`` atomically (see the
    module docstring). Reads only the Trainer's public attributes."""
    owner = "Trainer.save_checkpoint"
    model, opt = trainer.model, trainer.optimizer
    if not model.built:
        raise ValueError(f"{owner}: the model is not built yet; give input_dim or train it first.")
    state = trainer.state_dict()
    history = state.pop("history")
    opt_state = state["optimizer"]
    layer_options = opt_state.pop("layer_options")
    buffers = opt_state.pop("state")
    optimizer = {"type": _spec("optimizer", opt, owner)["type"], "config": opt.get_config(),
                 "lr": _spec("schedule", opt.lr, owner), "layer_options": layer_options}
    settings = {"loss": _spec("loss", trainer.loss, owner), "optimizer": optimizer, "batch_size": trainer.batch_size,
                "metrics": [_spec("metric", m, owner) for m in trainer.metrics], "l1": trainer.l1, "l2": trainer.l2,
                "clip_norm": trainer.clip_norm, "clip_value": trainer.clip_value, "shuffle": trainer.shuffle,
                "seed": trainer.seed, "augment": [_spec("augmentation", a, owner) for a in trainer.augment],
                "precision": trainer.precision}
    arrays = {f"optimizer/{name}.npy": np.ascontiguousarray(value, dtype=model.dtype)
              for name, value in buffers.items()}
    opt_state["state"] = sorted(buffers)
    opt_state["shape"] = list(model.params.shape)
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "trainer": settings, "state": state,
                "history": history, "device": model.device}
    save_model(model, path, extra={"checkpoint.json": document, **arrays}, kind="checkpoint")


def _read_extra(path, owner):
    """The reader of checkpoint.json and the optimizer arrays, for read_model_file: each state
    buffer must be shaped like the flat parameter buffer, so what it allocates is bounded by the
    parameter count, itself bounded by the file's size."""
    def extra(ar, dtype, n_params):
        doc = ar.read_json("checkpoint.json")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            ar.fail("it is not a training checkpoint (no fastnn.checkpoint checkpoint.json); "
                    "a model file is read with fastnn.load")
        if doc.get("format_version") != FORMAT_VERSION:
            ar.fail(f"checkpoint format_version {doc.get('format_version')!r} is not supported "
                    f"(this fastnn reads {FORMAT_VERSION})")
        try:
            names = list(doc["state"]["optimizer"]["state"])
            shape = tuple(doc["state"]["optimizer"]["shape"])
            if not all(isinstance(n, str) and n.isidentifier() for n in names) or len(set(names)) != len(names) \
                    or len(names) > 16:
                raise ValueError("bad optimizer state")
        except (KeyError, TypeError, ValueError):
            ar.fail("checkpoint.json lacks a valid optimizer state list and shape")
        # the flat buffer holds the parameters, each padded (fastnn._params)
        if len(shape) != 1 or not isinstance(shape[0], int) or not n_params <= shape[0] <= max_padded_size(n_params):
            ar.fail(f"the optimizer state shape {list(shape)!r} does not fit the model's {n_params} parameters")
        if len(names) * n_params * dtype.itemsize > ar.size:
            ar.fail(f"{len(names)} optimizer buffers of {n_params} parameters are more than the file can hold")
        members = [f"optimizer/{n}.npy" for n in names]
        arrays = {n: ar.read_array(m, shape, dtype) for n, m in zip(names, members)}
        return ["checkpoint.json", *members], (doc, arrays)

    return extra


class Checkpoint(NamedTuple):
    """A checkpoint's content, checked and rebuilt: what ``Trainer.from_checkpoint`` makes a
    Trainer of, as ``Trainer(model, **settings)`` then ``trainer.load_state_dict(state)``."""

    model: object     # the Sequential, on the device asked for
    settings: dict    # the Trainer's keyword arguments: loss, optimizer (with its per-layer options), ...
    state: dict       # Trainer.state_dict() as saved, the optimizer's buffers and the History included


def checkpoint_error(path, exc, owner):
    """The ModelFormatError for a checkpoint whose fields describe no Trainer (``exc``: what
    rebuilding raised, one of CHECKPOINT_ERRORS)."""
    return format_error(path, f"checkpoint.json does not describe a Trainer this fastnn can rebuild "
                              f"({type(exc).__name__}: {exc})", owner)


def read_checkpoint(path, device=None, owner="Trainer.from_checkpoint"):
    """The Checkpoint saved by ``save_checkpoint`` at ``path``, its model on ``device`` (default:
    the one it was saved from). Raises ModelFormatError for a file that is not an intact
    checkpoint: one whose fields (its device, settings, optimizer state) are not what this
    fastnn writes is refused here (the Trainer's load_state_dict checks the rest); a bad
    ``device`` argument raises ValueError."""
    from .backends import DEVICES, get_backend

    if device is not None:
        get_backend(device, owner)  # a bad device argument is the caller's error, not the file's
    content = read_model_file(path, owner, extra=_read_extra(path, owner), kind="checkpoint")
    doc, arrays = content.extra
    if device is None:
        device = doc.get("device", "cpu")
        if not isinstance(device, str) or device not in DEVICES:
            raise format_error(path, f"its \"device\" field {device!r} is not one of {', '.join(DEVICES)}", owner)
        get_backend(device, owner)
    model = build_model(content, path, device, owner)
    try:
        settings, state = doc["trainer"], doc["state"]
        spec = settings["optimizer"]
        optimizer = _KINDS["optimizer"][spec["type"]](lr=_build("schedule", spec["lr"]), **spec["config"])
        kwargs = {"loss": _build("loss", settings["loss"]), "optimizer": optimizer,
                  "batch_size": settings["batch_size"], "metrics": [_build("metric", m) for m in settings["metrics"]],
                  "l1": settings["l1"], "l2": settings["l2"], "clip_norm": settings["clip_norm"],
                  "clip_value": settings["clip_value"], "shuffle": settings["shuffle"], "seed": settings["seed"],
                  "augment": [_build("augmentation", a) for a in settings["augment"]] or None,
                  "precision": settings.get("precision", "fp32")}  # absent: written before bf16 training
        state = {**state, "history": doc["history"],
                 "optimizer": {**state["optimizer"], "state": arrays, "layer_options": spec["layer_options"]}}
    except CHECKPOINT_ERRORS as exc:
        raise checkpoint_error(path, exc, owner) from None
    return Checkpoint(model, kwargs, state)


__all__ = ["CHECKPOINT_ERRORS", "Checkpoint", "FORMAT_VERSION", "checkpoint_error", "read_checkpoint",
           "save_checkpoint"]
