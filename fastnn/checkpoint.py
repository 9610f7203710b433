"""Training checkpoints: ``Trainer.save_checkpoint(path)`` and ``Trainer.from_checkpoint(path)``.

A checkpoint is a model file (fastnn.io: a zip of ``model.json`` and one ``.npy`` per
parameter, written atomically, read without pickle by fastnn._archive's reader) whose
``model.json`` says ``"kind": "checkpoint"``, with two more kinds of member:

- ``checkpoint.json``: {"format": "fastnn.checkpoint", "format_version": 1,
  "trainer": the Trainer's settings (loss, optimizer with its schedule and per-layer options,
  batch_size, metrics, l1, l2, clip_norm, clip_value, shuffle, seed, augmentations),
  "state": the epoch count, the Trainer's generator state, the augmentations' keys and step
  counters, the layers' state (Dropout's step counters), the optimizer's step count, epoch,
  lr_scale and scalar state, "history": the History's records, "device": the model's device};
- ``optimizer/<name>.npy``: the optimizer's state buffers (momentum, Adam's moments, ...),
  each shaped like the flat parameter buffer, in the model's dtype.

Everything a continued ``fit`` reads is restored, so N epochs, save, restore, M epochs gives
the same bits as N + M epochs without stopping (same device and thread count). Callbacks are
not saved: pass them again to ``fit``.
"""

from __future__ import annotations

import numpy as np

from . import augment as _augment
from . import losses as _losses
from . import metrics as _metrics
from . import optim as _optim
from . import schedules as _schedules
from ._archive import format_error
from .errors import ModelFormatError
from .io import build_model, read_model_file, save_model
from .model import _ALIGN

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
    """Write ``trainer``'s model and training state to ``path`` atomically (see the module docstring)."""
    owner = "Trainer.save_checkpoint"
    model, opt = trainer.model, trainer.optimizer
    if not model.built:
        raise ValueError(f"{owner}: the model is not built yet; give input_dim or train it first.")
    opt.bind(model)  # a Trainer that has not trained yet: its state buffers exist (zeros)
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    layer_options = {str(index[k]): v for k, v in opt._layer_options.items() if k in index}
    optimizer = {"type": _spec("optimizer", opt, owner)["type"], "config": opt.get_config(),
                 "lr": _spec("schedule", opt.lr, owner), "layer_options": layer_options}
    settings = {"loss": _spec("loss", trainer.loss, owner), "optimizer": optimizer, "batch_size": trainer.batch_size,
                "metrics": [_spec("metric", m, owner) for m in trainer.metrics], "l1": trainer.l1, "l2": trainer.l2,
                "clip_norm": trainer.clip_norm, "clip_value": trainer.clip_value, "shuffle": trainer.shuffle,
                "seed": trainer.seed, "augment": [_spec("augmentation", a, owner) for a in trainer.augment]}
    opt_state = opt.state_dict()
    buffers = opt_state.pop("state")
    arrays = {f"optimizer/{name}.npy": np.ascontiguousarray(value, dtype=model.dtype)
              for name, value in buffers.items()}
    opt_state["state"] = sorted(buffers)
    opt_state["shape"] = list(model.params.shape)
    state = {"epoch": trainer.epoch, "rng": trainer.rng.bit_generator.state, "augment_keys": trainer._augment_keys,
             "augment": [a.state_dict() for a in trainer.augment],
             "layers": {str(i): layer.state_dict() for i, layer in enumerate(model.layers) if layer.state_dict()},
             "optimizer": opt_state}
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "trainer": settings, "state": state,
                "history": trainer.history.state_dict(), "device": model.device}
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
        # the flat buffer holds the parameters, each padded to _ALIGN elements (fastnn.model)
        if len(shape) != 1 or not isinstance(shape[0], int) or not n_params <= shape[0] <= n_params * (1 + _ALIGN):
            ar.fail(f"the optimizer state shape {list(shape)!r} does not fit the model's {n_params} parameters")
        if len(names) * n_params * dtype.itemsize > ar.size:
            ar.fail(f"{len(names)} optimizer buffers of {n_params} parameters are more than the file can hold")
        members = [f"optimizer/{n}.npy" for n in names]
        arrays = {n: ar.read_array(m, shape, dtype) for n, m in zip(names, members)}
        return ["checkpoint.json", *members], (doc, arrays)

    return extra


def _layer_index(key, model):
    """A layer index the file gives as a string key: "0" ... str(len(model.layers) - 1)."""
    if not isinstance(key, str) or not key.isdigit() or int(key) >= len(model.layers):
        raise ValueError(f"layer key {key!r} is not a layer of the model (0..{len(model.layers) - 1})")
    return int(key)


def _check_count(name, value, high=2**64 - 1):
    """A step or epoch count from the file: an int in [0, high] (bools refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise ValueError(f"{name} must be an integer in [0, {high}]; got {value!r}")
    return value


def load_checkpoint(path, device=None):
    """The Trainer saved by ``save_checkpoint`` at ``path``, on ``device`` (default: the one it
    was saved from). Raises ModelFormatError for a file that is not an intact checkpoint: one
    whose fields (its device, counts, keys, optimizer state) are not what this fastnn writes is
    refused here, not later in ``fit``; a bad ``device`` argument raises ValueError."""
    from .backends import DEVICES, get_backend
    from .trainer import Trainer

    owner = "Trainer.from_checkpoint"
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
        for key, value in state["layers"].items():
            model.layers[_layer_index(key, model)].load_state_dict(value)
        spec = settings["optimizer"]
        optimizer = _KINDS["optimizer"][spec["type"]](lr=_build("schedule", spec["lr"]), **spec["config"])
        for key, options in spec["layer_options"].items():
            optimizer.set_layer_options(model.layers[_layer_index(key, model)], **options)
        trainer = Trainer(model, _build("loss", settings["loss"]), optimizer, batch_size=settings["batch_size"],
                          metrics=[_build("metric", m) for m in settings["metrics"]], l1=settings["l1"],
                          l2=settings["l2"], clip_norm=settings["clip_norm"], clip_value=settings["clip_value"],
                          shuffle=settings["shuffle"], seed=settings["seed"],
                          augment=[_build("augmentation", a) for a in settings["augment"]] or None)
        optimizer.bind(model)
        optimizer.load_state_dict({**state["optimizer"], "state": arrays})
        if set(arrays) != set(optimizer.state):
            raise ValueError(f"the optimizer state has {sorted(arrays)}; {spec['type']} needs "
                             f"{sorted(optimizer.state)}")
        opt_state = state["optimizer"]
        _check_count("the optimizer's step_count", opt_state["step_count"])
        _check_count("the optimizer's epoch", opt_state.get("epoch", 0))
        lr_scale = opt_state.get("lr_scale", 1.0)
        if isinstance(lr_scale, bool) or not isinstance(lr_scale, (int, float)) or not 0 < lr_scale < float("inf"):
            raise ValueError(f"the optimizer's lr_scale must be a positive finite number; got {lr_scale!r}")
        trainer.rng.bit_generator.state = state["rng"]
        keys = [_check_count("an augmentation key", k) for k in state["augment_keys"]]
        if len(keys) != len(trainer.augment) or len(state["augment"]) != len(trainer.augment):
            raise ValueError("one key and one state per augmentation")
        trainer._augment_keys = keys
        for aug, aug_state in zip(trainer.augment, state["augment"]):
            aug.load_state_dict(aug_state)
        trainer.epoch = _check_count("the epoch", state["epoch"])
        for e in doc["history"]["epoch"]:
            _check_count("a History epoch", e)
        trainer.history.load_state_dict(doc["history"])
    except ModelFormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
        raise format_error(path, f"checkpoint.json does not describe a Trainer this fastnn can rebuild "
                                 f"({type(exc).__name__}: {exc})", owner) from None
    return trainer


__all__ = ["FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]
