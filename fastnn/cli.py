"""The ``fastnn`` command: train, tune, evaluate, predict, export, landscape, bench, info.

Exit status 0 on success, 2 on bad arguments or data (one line on stderr), 1 when training
diverges.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .errors import ModelFormatError, TrainingDiverged

BUILTIN = ("iris", "digits", "spirals", "moons")


def _optimizer_lr():
    """--optimizer choices with the default --lr of ``fastnn train`` for each, from the optimizer
    registry (fastnn.optim.REGISTRY: each optimizer's ``cli_lr``, beside its class)."""
    from .optim import REGISTRY

    return {name: entry.cli_lr for name, entry in REGISTRY.items()}


def __getattr__(name):  # OPTIMIZER_LR is derived from the registry on first use (PEP 562)
    if name == "OPTIMIZER_LR":
        return _optimizer_lr()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UsageError(Exception):
    """Bad arguments or data: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


class _DefaultsFormatter(argparse.HelpFormatter):
    """--help shows every option's default (those that have one)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, "", argparse.SUPPRESS) \
                and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


# ------------------------------------------------------------------- data
def _usage(exc):
    """A UsageError from a reader's ValueError, without the reader's name."""
    text = str(exc)
    for owner in ("fastnn.data.read_csv: ", "fastnn.data.read_npz: ", "TableEncoder.transform: ",
                  "TableEncoder.fit: "):
        text = text.replace(owner, "")
    return UsageError(text.rstrip("."))


def read_table(spec, target=None, seed=0):
    """(Table, name of its target column) of --data: a built-in name (columns x0.., 'target'), a
    CSV (header row; target: --target name or index, default the last column) or an NPZ (array
    X, columns x0.., and the target array y or --target). ``target`` 'none' means no target."""
    from . import data, datasets

    builtin = {"iris": datasets.load_iris, "digits": datasets.load_digits,
               "spirals": lambda: datasets.make_spirals(n=900, classes=3, noise=0.2, seed=seed),
               "moons": lambda: datasets.make_moons(n=1000, noise=0.2, seed=seed)}
    if spec in builtin:
        X, y = builtin[spec]()
        names = [f"x{i}" for i in range(X.shape[1])]
        return data.Table(names + ["target"], {**dict(zip(names, X.T)), "target": y}, spec), "target"
    if os.path.isdir(spec):
        raise UsageError(f"--data {spec!r} is a directory; give a .csv or .npz file")
    if not os.path.isfile(spec):
        raise UsageError(f"--data {spec!r} is neither one of {', '.join(BUILTIN)} nor an existing .csv/.npz file")
    if spec.endswith(".npz"):
        try:
            arrays = data.read_npz(spec)
        except ValueError as exc:
            raise _usage(exc) from None
        ykey = target or "y"
        if "X" not in arrays or (ykey not in arrays and target != "none"):
            raise UsageError(f"{spec}: needs arrays 'X' and {ykey!r}; it has {', '.join(arrays)}")
        X = arrays["X"]
        if X.ndim != 2:
            raise UsageError(f"{spec}: X must be 2-D (rows, features); it has shape {X.shape}")
        names = [f"x{i}" for i in range(X.shape[1])]
        columns = dict(zip(names, X.T))
        if target == "none":
            return data.Table(names, columns, spec), None
        y = arrays[ykey]
        if y.ndim != 1 or len(y) != len(X):
            raise UsageError(f"{spec}: {ykey} must be 1-D with one value per row of X; shapes {y.shape}, {X.shape}")
        return data.Table(names + [ykey], {**columns, ykey: y}, spec), ykey
    if not spec.endswith(".csv"):
        raise UsageError(f"--data {spec!r}: use a .csv or .npz file")
    try:
        table = data.read_csv(spec)
    except ValueError as exc:
        raise _usage(exc) from None
    header = table.names
    if target == "none":
        return table, None
    if target is None:
        col = header[-1]
    elif target in header:
        col = target
    elif target.lstrip("-").isdigit() and -len(header) <= int(target) < len(header):
        col = header[int(target)]
    else:
        raise UsageError(f"--target {target!r} is not a column of {spec}; columns: {', '.join(header)}")
    return table, col


def _subset(table, idx):
    from .data import Table

    return Table(table.names, {k: v[idx] for k, v in table.columns.items()}, table.source)


def _target_values(table, name, classify):
    """The target column: numbers for regression (a missing or non-number cell is an error
    naming its row), labels for classification (numbers when every label is one)."""
    from .data import _as_numbers, _is_missing

    values = table.columns[name]
    missing = _is_missing(values)
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise UsageError(f"{table.source}: row {row}: the target {name!r} is missing; drop the rows without one")
    nums = _as_numbers(values)
    if nums is not None:
        if not np.isfinite(nums).all():
            raise UsageError(f"{table.source}: the target {name!r} holds inf")
        if classify is not False and np.all(nums == np.round(nums)):
            return nums.astype(np.int64)
        return nums
    if classify is False:
        bad = next(i for i, v in enumerate(values.tolist()) if _as_numbers(np.array([v], object)) is None)
        raise UsageError(f"{table.source}: row {bad + 1}: the target {name!r} is {values[bad]!r}, not a number; "
                         f"a regression target must be numeric (or use --task classify)")
    return np.array([str(v).strip() for v in values.tolist()], dtype=object)


def load_data(spec, target=None, seed=0):
    """(X, y) of --data with every feature column numeric: the arrays of a built-in dataset,
    a CSV or an NPZ (see read_table)."""
    from .data import TableEncoder

    table, col = read_table(spec, target, seed)
    try:
        X = TableEncoder(col).fit(table).transform(table)
    except ValueError as exc:
        raise _usage(exc) from None
    return X, _target_values(table, col, None)


def _is_classification(y, task):
    if task != "auto":
        return task == "classify"
    y = np.asarray(y)
    if y.dtype.kind in "OUS":  # string labels
        return True
    if y.ndim != 1 or y.dtype.kind not in "biuf" or not np.isfinite(y).all():
        return False
    return bool(np.all(y == np.round(y)) and len(np.unique(y)) <= max(2, min(100, len(y) // 5)))


def _check_device(device):
    """Fail early, as a usage error, on a device that is unknown or not usable here."""
    from .backends import get_backend

    try:
        get_backend(device, "--device")
    except RuntimeError as exc:  # e.g. device='cuda' without a GPU
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------- commands
def _parse_hidden(option, text, sep=","):
    """Hidden widths from 'W1<sep>W2...' (e.g. 128,64), each an integer >= 1."""
    try:
        hidden = [int(h) for h in text.split(sep) if h.strip()] if text else []
    except ValueError:
        raise UsageError(f"{option} {text!r}: give integer widths separated by {sep!r}, e.g. 128{sep}64") from None
    if any(h < 1 for h in hidden):
        raise UsageError(f"{option} {text!r}: every width must be >= 1")
    return hidden


def _check_train_options(command, args):
    """Check the options ``train`` and ``tune`` share, before any data is loaded; returns --hidden's widths."""
    from ._checks import check_float, check_int

    check_int(command, "--epochs", args.epochs, low=1)
    check_int(command, "--batch-size", args.batch_size, low=1)
    check_float(command, "--l2", args.l2, low=0.0)
    check_float(command, "--dropout", args.dropout, low=0.0, high=1.0, high_open=True)
    check_int(command, "--early-stopping", args.early_stopping, low=0)
    hidden = _parse_hidden("--hidden", args.hidden)
    _check_device(args.device)
    return hidden


def _split_indices(n, labels, classify, seed):
    """Row indices of the 70/15/15 split (stratified for classes) that train and evaluate share."""
    import fastnn as fnn

    idx = np.arange(n, dtype=np.float64)[:, None]
    parts = fnn.data.split(idx, labels, fractions=(0.7, 0.15, 0.15), stratify=classify, seed=seed)
    return [part[0][:, 0].astype(np.int64) for part in parts]


class _Task:
    """What ``train`` and ``tune`` learn from --data: the splits (features encoded, targets as
    trained: class indices, or standardized regression targets) and what the model file keeps."""

    def __init__(self, classify, classes, encoder, parts, target_scaler, table_target):
        self.classify, self.classes, self.encoder, self.parts = classify, classes, encoder, parts
        self.target_scaler, self.table_target = target_scaler, table_target

    def raw_y(self, i):
        """The targets of part i in their own units (regression: undo the standardization)."""
        y = self.parts[i][1]
        return y if self.target_scaler is None else self.target_scaler.inverse_transform(y[:, None])[:, 0]


def _load_task(args, task=None, target_scaling=None):
    """--data split 70/15/15 (stratified for classes): a _Task. Class labels are mapped to
    0..k-1; regression targets are standardized on the training rows (or by ``target_scaling``,
    {mean, scale} of a resumed checkpoint). ``task`` ('classify' or 'regress', from a resumed
    checkpoint) overrides --task."""
    import fastnn as fnn

    table, col = read_table(args.data, args.target, args.seed)
    if col is None:
        raise UsageError("--target none: training needs a target column")
    y = _target_values(table, col, None if task is None and args.task == "auto" else
                       (task or args.task) == "classify")
    classify = _is_classification(y, args.task) if task is None else task == "classify"
    classes = None
    if classify:
        classes, labels = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise UsageError(f"--data {args.data}: the target has a single class; nothing to learn")
        y = labels
    else:
        y = np.asarray(y, np.float64)
    idx = _split_indices(len(y), y, classify, args.seed)
    encoder = fnn.data.TableEncoder(col)
    try:
        encoder.fit(_subset(table, idx[0]), categories_from=table)
        parts = [(encoder.transform(_subset(table, i)), y[i]) for i in idx]
    except ValueError as exc:
        raise _usage(exc) from None
    scaler = None
    if not classify:
        scaler = fnn.data.Standardizer()
        if target_scaling is None:
            scaler.fit(parts[0][1][:, None])
        else:
            scaler.mean_, scaler.scale_ = (np.asarray(target_scaling[k], np.float64) for k in ("mean", "scale"))
            scaler.n_features_in_ = 1
        parts = [(X, scaler.transform(t[:, None])[:, 0]) for X, t in parts]
    return _Task(classify, classes, encoder, parts, scaler, col)


def _make_trainer(args, n_in, n_out, classify, hidden, activation, optimizer, lr, batch_size, owner):
    """The model and Trainer that ``fastnn train`` trains, for these hyperparameters: a
    Standardize layer (adapted by fit on the training rows), the hidden layers (with
    --batch-norm and --dropout) and the output layer."""
    import fastnn as fnn

    from .preprocessing import Standardize

    layers = [Standardize()]
    for h in hidden:
        if args.batch_norm:
            layers += [fnn.layers.Dense(h), fnn.layers.BatchNorm(), fnn.layers.Activation(activation)]
        else:
            layers.append(fnn.layers.Dense(h, activation=activation))
        if args.dropout:
            layers.append(fnn.layers.Dropout(args.dropout))
    layers.append(fnn.layers.Dense(n_out))
    model = fnn.Sequential(layers, input_dim=n_in, seed=args.seed, device=args.device)
    loss = "cross_entropy" if classify else "mse"
    lr = lr if lr is not None else _optimizer_lr()[optimizer]
    optimizer = fnn.optim.get_optimizer(optimizer, lr=lr, owner=owner)
    metrics = ["accuracy"] if classify else ["r2"]
    return fnn.Trainer(model, loss, optimizer, batch_size=batch_size, metrics=metrics, seed=args.seed, l2=args.l2,
                       precision=args.precision)


#: The layout of the CLI's model metadata (2: inputs scaled inside the model, named columns).
CLI_METADATA_VERSION = 2


def _train_metadata(trainer, task, split_seed):
    """What evaluate/predict (task, loss, classes, columns, target scaling) and --resume (split
    seed) need, kept in the model's metadata."""
    meta = {"fastnn_cli": CLI_METADATA_VERSION, "task": "classify" if task.classify else "regress",
            "loss": trainer.loss.name, "classes": None if task.classes is None else task.classes.tolist(),
            "features": task.encoder.to_dict(), "split_seed": split_seed}
    if task.target_scaler is not None:
        meta["target_scaling"] = {"mean": task.target_scaler.mean_.tolist(),
                                  "scale": task.target_scaler.scale_.tolist()}
    return meta


def _add_output_scaling(model):
    """Append Standardize(inverse=True) from the metadata's target scaling (regression), so the
    model predicts in the target's units; a model that has it already is left alone."""
    from .preprocessing import Standardize

    scaling = (getattr(model, "metadata", None) or {}).get("target_scaling")
    if scaling is None or getattr(model.layers[-1], "inverse", False):
        return model
    layer = Standardize(inverse=True)
    layer._pending = (np.zeros(1), np.asarray(scaling["scale"], np.float64), np.asarray(scaling["mean"], np.float64))
    layer.adapted = True
    return model.add(layer)


def _describe_data(command, args, n_features, sizes, classify, n_out):
    return (f"fastnn {command}: {args.data}: {sizes[0]} train / {sizes[1]} validation / {sizes[2]} test samples, "
            f"{n_features} features, {'%d classes' % n_out if classify else 'regression'}")


def cmd_train(args):
    import fastnn as fnn

    # check the arguments before loading data or printing anything
    hidden = _check_train_options("fastnn train", args)
    for option in ("plot", "checkpoint", "out"):
        _check_folder(f"--{option}", getattr(args, option))
    if args.plot:
        from ._plot import check_figure_path

        try:
            check_figure_path("--plot", args.plot)
        except (ImportError, ValueError) as exc:
            raise UsageError(str(exc).rstrip(".")) from None
    _distributed_ranks(args)
    trainer = None
    task_name = scaling = None
    if args.resume:  # the model, its settings and the split seed come from the checkpoint
        trainer = fnn.Trainer.from_checkpoint(args.resume, device=args.device)
        meta = trainer.model.metadata
        if not isinstance(meta.get("split_seed"), int) or meta.get("task") not in ("classify", "regress"):
            raise UsageError(f"--resume {args.resume}: not a checkpoint written by fastnn train --checkpoint")
        if meta.get("fastnn_cli") != CLI_METADATA_VERSION:
            raise UsageError(f"--resume {args.resume}: a checkpoint of an older fastnn train, which scaled its "
                             f"inputs outside the model; train again without --resume")
        args.seed, task_name, scaling = meta["split_seed"], meta["task"], meta.get("target_scaling")
    task = _load_task(args, task_name, scaling)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = task.parts
    classify, classes = task.classify, task.classes
    if trainer is not None and classify and classes.tolist() != trainer.model.metadata["classes"]:
        raise UsageError(f"--data {args.data}: its classes differ from those of the checkpoint {args.resume}")
    if trainer is not None and trainer.model.metadata.get("features") != task.encoder.to_dict():
        raise UsageError(f"--data {args.data}: its columns differ from those of the checkpoint {args.resume}")
    n_out = len(classes) if classify else 1
    if trainer is None:
        trainer = _make_trainer(args, Xtr.shape[1], n_out, classify, hidden, args.activation, args.optimizer,
                                args.lr, args.batch_size, "fastnn train")
        trainer.model.metadata = _train_metadata(trainer, task, args.seed)
    trainer.distributed = args.distributed  # --distributed mpi: data-parallel over mpiexec's ranks
    model = trainer.model
    if model.input_dim != Xtr.shape[1] or model.n_out != n_out:
        raise UsageError(f"--data {args.data}: {Xtr.shape[1]} features and {n_out} outputs; the checkpoint "
                         f"{args.resume} has a model of {model.input_dim} features and {model.n_out} outputs")
    epochs = max(args.epochs - trainer.epoch, 0)
    print(_describe_data("train", args, Xtr.shape[1], (len(Xtr), len(Xva), len(Xte)), classify, n_out)
          + f"; {model.n_params:,} parameters on {model.device}")
    if args.resume:
        print(f"resumed {args.resume} after epoch {trainer.epoch}; {epochs} more to reach --epochs {args.epochs}")
    callbacks = [fnn.callbacks.ModelCheckpoint(args.checkpoint, full=True)] if args.checkpoint else []
    if args.early_stopping:
        callbacks.append(fnn.callbacks.EarlyStopping(patience=args.early_stopping, restore_best=True))
    history = trainer.fit(Xtr, ytr, epochs=epochs, validation=(Xva, yva), callbacks=callbacks, verbose=1)
    if args.checkpoint and epochs == 0:
        trainer.save_checkpoint(args.checkpoint)
    if not classify:  # from here on the model predicts in the target's units
        _add_output_scaling(model)
        yte = task.raw_y(2)
    scores = trainer.evaluate(Xte, yte)
    print("test " + " - ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    if args.checkpoint:
        print(f"saved {args.checkpoint} (checkpoint after epoch {trainer.epoch})")
    if args.out:
        model.save(args.out)
        print(f"saved {args.out}")
    if args.plot:
        history.plot(args.plot)
        print(f"saved {args.plot}")
    print(timing_report(trainer, model.device))
    return 0


def _distributed_ranks(args):
    """--distributed mpi: every rank trains; only rank 0 prints and writes files."""
    if args.distributed is None:
        return
    from .distributed import world

    if world()[0] != 0:
        args.out = args.plot = args.checkpoint = None
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the rest of this process)


def _tune_executor(command, args):
    """The executor of --workers N (local processes) or --scheduler ADDRESS (a Dask scheduler), or None."""
    from ._checks import check_int

    if args.workers is not None and args.scheduler is not None:
        raise UsageError("give --workers or --scheduler, not both")
    if args.workers is not None:
        import concurrent.futures
        import multiprocessing

        workers = check_int(command, "--workers", args.workers, low=1)  # spawned: forking BLAS threads can hang
        return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    if args.scheduler is not None:
        try:
            from distributed import Client
        except ImportError:
            raise UsageError("--scheduler needs dask.distributed; install it with pip install 'fastnn[dask]'") from None
        try:
            return Client(args.scheduler, timeout=30)
        except OSError as exc:
            raise UsageError(f"--scheduler {args.scheduler}: no Dask scheduler answered ({exc})") from None
    return None


class _TuneBuild:
    """``fastnn tune``'s build(params): a module-level callable, so that --workers processes can receive it."""

    def __init__(self, args, defaults, n_in, n_out, classify, command):
        self.args, self.defaults, self.n_in, self.n_out, self.classify = args, defaults, n_in, n_out, classify
        self.command = command

    def __call__(self, params):
        p = {**self.defaults, **params}
        if "optimizer" in params and "lr" not in params:
            p["lr"] = None  # each optimizer's own default rate
        widths = p["hidden"]  # a list (--hidden), '64+32' (--grid) or an int (a range)
        widths = [widths] if isinstance(widths, int) else _parse_hidden("hidden", widths, sep="+") \
            if isinstance(widths, str) else widths
        return _make_trainer(self.args, self.n_in, self.n_out, self.classify, widths, p["activation"],
                             p["optimizer"], p["lr"], p["batch_size"], self.command)


def _check_folder(option, path):
    """A file option must name a file in an existing folder (checked before training, not after)."""
    if path:
        from ._files import check_target

        try:
            check_target(path, f"{option} {path}")
        except OSError as exc:
            raise UsageError(str(exc).rstrip(".")) from None


def _seconds(t):
    return f"{t:.2f}s" if t >= 1 else f"{t * 1e3:.1f}ms"


def timing_report(trainer, device):
    """The closing lines of fastnn train: train and test time and throughput, and the machine."""
    from ._info import collect

    fit, test = trainer.timing.get("fit", {}), trainer.timing.get("evaluate", {})
    info = collect()
    blas = info["blas"]
    blas_text = blas.get("config") or blas.get("route") or blas.get("error") or "unknown"
    lines = ["timing:",
             f"  train  {_seconds(fit.get('seconds', 0.0))} for {fit.get('epochs', 0)} epochs, "
             f"{fit.get('samples', 0):,} samples, {fit.get('samples_per_s', float('nan')):,.0f} samples/s "
             f"(validation included)",
             f"  test   {_seconds(test.get('seconds', 0.0))} for {test.get('samples', 0):,} samples, "
             f"{test.get('samples_per_s', float('nan')):,.0f} samples/s",
             f"  device {device}; CPU {info['cpu']}, {info['cores']} cores, {info['threads']} threads; "
             f"BLAS {blas_text}"]
    if getattr(trainer, "precision", "fp32") == "bf16":
        lines.append(f"  precision bf16: Dense products on {info['bf16']['path']}")
    return "\n".join(lines)


def _load_model(path, device):
    """The model of a model file, or of a training checkpoint (fastnn train --checkpoint)."""
    import fastnn as fnn

    from ._archive import file_kind

    try:
        kind = file_kind(path)
    except (OSError, fnn.ModelFormatError):
        kind = "model"  # fnn.load says what is wrong
    if kind == "checkpoint":
        model = fnn.Trainer.from_checkpoint(path, device=device).model
        if "standardize" in model.metadata:  # inputs scaled outside the model: refused, never silently wrong
            raise UsageError(f"{path}: a checkpoint of an older fastnn train, which scaled its inputs outside the "
                             f"model; use the model file it saved (--out) or train again")
        return model
    return fnn.load(path, device=device)


#: ``fastnn tune --grid`` keys: the ``train`` option each stands for, and how a value is read
_TUNE_KEYS = {"lr": "--lr", "hidden": "--hidden", "activation": "--activation", "optimizer": "--optimizer",
              "epochs": "--epochs", "batch_size": "--batch-size"}


def _tune_value(key, text):
    """One value of a --grid key, checked."""
    from .backends.base import ACTIVATIONS

    where = f"--grid {key}={text!r}"
    if key == "hidden":  # kept as text ('64+32'), which the table shows as one cell
        return "+".join(map(str, _parse_hidden("--grid hidden", text, sep="+")))
    if key in ("epochs", "batch_size"):
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{where}: give whole numbers") from None
        if value < 1:
            raise UsageError(f"{where}: every value must be >= 1")
        return value
    if key == "lr":
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{where}: give numbers, e.g. lr=1e-3,1e-2") from None
        if not np.isfinite(value) or value <= 0:
            raise UsageError(f"{where}: every learning rate must be > 0")
        return value
    choices = _optimizer_lr() if key == "optimizer" else [a for a in ACTIVATIONS if a != "softmax"]
    if text not in choices:
        raise UsageError(f"{where}: unknown {key}; choose from {', '.join(choices)}")
    return text


def _tune_range(key, text, search):
    """A LOW:HIGH (uniform) or log:LOW:HIGH (log-uniform) range of a --grid key (random search only)."""
    from . import tuning

    where = f"--grid {key}={text!r}"
    if search != "random":
        raise UsageError(f"{where}: ranges need --search random; list values for a grid")
    parts = text.split(":")
    log = parts[0] == "log"
    if log:
        parts = parts[1:]
    if len(parts) != 2 or key not in ("lr", "epochs", "batch_size", "hidden"):
        raise UsageError(f"{where}: a range is LOW:HIGH or log:LOW:HIGH, for lr, hidden, epochs or batch_size")
    low, high = (_tune_value("epochs" if key == "hidden" else key, v) for v in parts)
    try:
        if key == "lr":
            return (tuning.LogUniform if log else tuning.Uniform)(low, high)
        if log:
            raise UsageError(f"{where}: log ranges are for lr; give LOW:HIGH for whole numbers")
        return tuning.IntUniform(low, high)
    except ValueError as exc:
        raise UsageError(f"{where}: {str(exc).split(': ', 1)[1].rstrip('.')}") from None


def _parse_grid(items, search):
    """--grid KEY=V1,V2 ... -> the search space {key: [values] or a distribution}."""
    space = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not text.strip():
            raise UsageError(f"--grid {item!r}: write KEY=VALUE1,VALUE2,... e.g. lr=1e-3,1e-2")
        if key not in _TUNE_KEYS:
            raise UsageError(f"--grid {item!r}: unknown key {key!r}; choose from {', '.join(_TUNE_KEYS)}")
        if key in space:
            raise UsageError(f"--grid {item!r}: {key} is given twice")
        if ":" in text:
            space[key] = _tune_range(key, text, search)
        else:
            space[key] = [_tune_value(key, v.strip()) for v in text.split(",") if v.strip()]
    return space


def cmd_tune(args):
    import fastnn as fnn

    from ._checks import check_int

    command = "fastnn tune"
    hidden = _check_train_options(command, args)
    space = _parse_grid(args.grid, args.search)
    check_int(command, "--epochs", args.epochs, low=1)
    trials = check_int(command, "--trials", args.trials, low=1)
    if args.cv is not None:
        check_int(command, "--cv", args.cv, low=2)
    executor = _tune_executor(command, args)
    for option in ("results", "out"):
        _check_folder(f"--{option}", getattr(args, option))
    task = _load_task(args)
    classify, classes, ((Xtr, ytr), (Xva, yva), (Xte, yte)) = task.classify, task.classes, task.parts
    n_out = len(classes) if classify else 1
    defaults = {"hidden": hidden, "activation": args.activation, "optimizer": args.optimizer, "lr": args.lr,
                "epochs": args.epochs, "batch_size": args.batch_size}

    build = _TuneBuild(args, defaults, Xtr.shape[1], n_out, classify, command)

    sizes = (len(Xtr), len(Xva), len(Xte))
    scored_on = f"{args.cv}-fold cross-validation of train + validation" if args.cv else "validation"
    n_trials = trials if args.search == "random" else int(np.prod([len(v) for v in space.values()]))
    print(_describe_data("tune", args, Xtr.shape[1], sizes, classify, n_out)
          + f"; {args.search} search, {n_trials} trials scored on {scored_on}")
    # scale=False: the Standardize layer is in the model
    common = dict(epochs=args.epochs, scale=False, seed=args.seed, verbose=1, executor=executor)
    if args.cv:
        common.update(cv=args.cv)
        data = (np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva]))
    else:
        common.update(validation=(Xva, yva))
        data = (Xtr, ytr)
    try:
        if args.search == "random":
            result = fnn.tuning.random_search(build, space, *data, n_trials=trials, **common)
        else:
            result = fnn.tuning.grid_search(build, space, *data, **common)
    finally:
        if executor is not None:
            executor.close() if args.scheduler is not None else executor.shutdown()
    print(result)
    best = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
    print(f"best {best} - {result.scoring} {result.best_score:.4f}")
    chosen = result.best_trainer
    chosen.model.metadata = _train_metadata(chosen, task, args.seed)
    if not classify:  # the model predicts in the target's units
        _add_output_scaling(chosen.model)
        yte = task.raw_y(2)
    scores = chosen.evaluate(Xte, yte)
    print("test " + " - ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    if args.results:
        result.to_csv(args.results)
        print(f"saved {args.results}")
    if args.out:
        chosen.model.save(args.out)
        print(f"saved {args.out}")
    return 0


def _load_with_data(args, need_target):
    """(model, X, y or None, metadata, table) for evaluate/predict: --data's feature columns
    encoded as in training (matched by name), y its target column when it has one."""
    from .data import TableEncoder

    _check_device(args.device)
    model = _add_output_scaling(_load_model(args.model, args.device))
    meta = getattr(model, "metadata", {}) or {}
    features = meta.get("features")
    if features is None:  # a model of an older fastnn train or of the API: columns by position
        table, col = read_table(args.data, args.target, getattr(args, "seed", 0))
        encoder = TableEncoder(col)
        try:
            X = encoder.fit(table).transform(table)
        except ValueError as exc:
            raise _usage(exc) from None
        words = [c["name"] for c in encoder.columns_ if c["kind"] != "numeric"]
        if words:  # no training categories to encode them with
            raise UsageError(f"--data {args.data}: column {words[0]!r} is not numeric, and {args.model} records no "
                             f"columns (not written by this fastnn train); give numbers only")
        if X.shape[1] != model.input_dim:
            raise UsageError(f"--data {args.data}: X has shape {X.shape}; the model {args.model} takes "
                             f"{model.input_dim} features")
    else:
        try:
            encoder = TableEncoder.from_dict(features)
        except ValueError:
            raise UsageError(f"{args.model}: its metadata 'features' is damaged") from None
        col = encoder.target
        seed = meta.get("split_seed", 0) if isinstance(meta.get("split_seed"), int) else 0
        key = args.target or col
        npz_target = args.data.endswith(".npz") and need_target
        table, _ = read_table(args.data, key if npz_target else "none", seed)
        if args.target and args.target in table.columns and args.target != col:  # the target under another name
            table.columns[col] = table.columns.pop(args.target)
            table.names = [col if n == args.target else n for n in table.names]
        try:
            X = encoder.transform(table)
        except ValueError as exc:
            raise _usage(exc) from None
    if need_target and (col is None or col not in table.columns):
        raise UsageError(f"--data {args.data} has no target column {col!r} to score against")
    y = None
    if col is not None and col in table.columns and need_target:
        y = _target_values(table, col, meta.get("task") == "classify" if meta.get("task") else None)
    return model, X, y, meta, table


def cmd_evaluate(args):
    import fastnn as fnn

    model, X, y, meta, _ = _load_with_data(args, need_target=True)
    classify = meta.get("task", "classify" if model.n_out > 1 else "regress") == "classify"
    if classify and meta.get("classes") is not None:
        lookup = {c: i for i, c in enumerate(meta["classes"])}
        try:
            y = np.array([lookup[v] for v in np.asarray(y).tolist()])
        except KeyError as exc:
            raise UsageError(f"--data {args.data}: label {exc.args[0]!r} was not seen in training") from None
    rows = f"all {len(y)} rows of {args.data}"
    if args.split != "all":
        seed = meta.get("split_seed")
        if not isinstance(seed, int):
            raise UsageError(f"--split {args.split}: {args.model} records no split (not written by fastnn train)")
        labels = np.unique(y, return_inverse=True)[1] if classify else y
        idx = _split_indices(len(y), labels, classify, seed)[("train", "validation", "test").index(args.split)]
        X, y = X[idx], y[idx]
        rows = (f"the {len(y)} {args.split} rows of {args.data} (fastnn train's 70/15/15 split, seed {seed}; "
                f"the same only for the same data)")
    elif meta.get("split_seed") is not None:
        rows += " (training rows included; --split test scores the held-out rows only)"
    print(f"fastnn evaluate: scoring {rows}", file=sys.stderr)
    loss = meta.get("loss", "cross_entropy" if classify else "mse")
    trainer = fnn.Trainer(model, loss, metrics=["accuracy"] if classify else ["r2"])
    print(json.dumps(trainer.evaluate(X, y)))
    return 0


def cmd_predict(args):
    _check_folder("--out", args.out)
    model, X, _, meta, _ = _load_with_data(args, need_target=False)
    out = model.predict(X)
    if meta.get("task") == "classify" or (not meta and out.shape[1] > 1):
        idx = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0).astype(int)
        classes = meta.get("classes")
        values = [classes[i] for i in idx] if classes else idx.tolist()
    else:
        values = out[:, 0].tolist() if out.shape[1] == 1 else out.tolist()
    lines = "\n".join(str(v) for v in values) + "\n"
    if args.out:
        from ._files import atomic_write

        with atomic_write(args.out, "w") as f:
            f.write("prediction\n" + lines)
    else:
        sys.stdout.write(lines)
    return 0


def _floats(option, text, counts):
    """The comma-separated numbers of an option, as many as one of ``counts`` allows."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{option} {text!r}: give numbers separated by commas") from None
    if len(values) not in counts:
        raise UsageError(f"{option} {text!r}: give {' or '.join(map(str, sorted(set(counts))))} values")
    return values


def cmd_landscape(args):
    import fastnn as fnn
    from ._checks import check_int
    from .tools.landscapes import plot_paths

    # check everything before printing anything
    steps = check_int("fastnn landscape", "--steps", args.steps, low=0)
    _check_folder("--out", args.out)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in fnn.optim.OPTIMIZERS]
    if not names or unknown:
        raise UsageError(f"--optimizers {args.optimizers!r}: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                         f"choose from {', '.join(fnn.optim.OPTIMIZERS)}")
    lrs = _floats("--lr", args.lr, (1, len(names)))
    lrs = lrs * len(names) if len(lrs) == 1 else lrs
    optimizers = [fnn.optim.get_optimizer(n, lr=lr, owner="fastnn landscape") for n, lr in zip(names, lrs)]
    land = fnn.landscapes.get_landscape(args.function, "--function")
    start = land.start if args.start is None else _floats("--start", args.start, (2,))

    print(f"fastnn landscape: {land.name}, {land.description}; {steps} steps from ({start[0]:g}, {start[1]:g}); "
          f"global minimum f = {land.min_value:.6g} at ({land.minimum[0]:.4g}, {land.minimum[1]:.4g})")
    paths = []
    width = max(len(n) for n in names)
    for name, lr, opt in zip(names, lrs, optimizers):
        path = fnn.optim.trace(opt, land, start, steps)
        x, y = path[-1]
        print(f"{name:<{width}}  lr {lr:<8g} final f = {float(land(x, y)):.6g} at ({x:.4g}, {y:.4g})")
        paths.append((f"{name} lr={lr:g}", path))
    if args.out:
        plot_paths(land, paths, args.out)
        print(f"saved {args.out}")
    return 0


def cmd_export(args):
    from .export import to_onnx

    _check_folder("--onnx", args.onnx)
    try:
        proto = to_onnx(args.model, args.onnx, opset=args.opset, dtype=args.dtype)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UsageError(f"--onnx {args.onnx}: cannot write the file ({exc.strerror or exc})") from None
    shape = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
             for v in (proto.graph.input[0], proto.graph.output[0])]
    print(f"saved {args.onnx}: opset {args.opset}, {len(proto.graph.node)} nodes, "
          f"input 'input' {shape[0]}, output 'output' {shape[1]}")
    return 0


def cmd_bench(args):
    from .tools import bench

    return bench.main(args.bench_args)


def cmd_info(args):
    import fastnn as fnn

    info = fnn.info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = " ".join(map(str, value))
        print(f"{key:13} {value}")
    return 0


def _add_train_options(p, out_help="save the trained model here (.fnn)"):
    """The options of ``train``, which ``tune`` takes too (as defaults of what it does not search)."""
    p.add_argument("--data", default="digits", help="iris, digits, spirals, moons, PATH.csv or PATH.npz")
    p.add_argument("--target", default=None, help="target column (CSV name or index; NPZ key), default last / 'y'")
    p.add_argument("--task", default="auto", choices=("auto", "classify", "regress"),
                   help="auto: classify when the target holds strings or few whole numbers, else regress")
    p.add_argument("--hidden", default="128", help="hidden widths, comma-separated, e.g. 128,64")
    p.add_argument("--activation", default="relu", help="activation of the hidden layers")
    p.add_argument("--optimizer", default="adam", choices=tuple(_optimizer_lr()), help="the update rule")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default by optimizer)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the training rows, >= 1")
    p.add_argument("--batch-size", type=int, default=64, help="rows per update")
    p.add_argument("--device", default="cpu", help="cpu, cuda or reference")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16: the Dense products in bfloat16 with float32 sums (mixed precision; AMX or "
                        "AVX512-BF16 where the CPU has them, see fastnn info); weights and the saved model stay "
                        "float32")
    p.add_argument("--out", default=None, help=out_help)
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initialization and the shuffling")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty on the weights: l2 * sum w^2 added to the loss")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout rate after each hidden layer, in [0, 1)")
    p.add_argument("--batch-norm", action="store_true", help="batch normalization before each hidden activation")
    p.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE",
                   help="stop when the validation loss has not improved for PATIENCE epochs and keep the best "
                        "weights (0: off)")


def build_parser():
    p = _Parser(prog="fastnn", description="Fast neural-network training on CPU (and NVIDIA GPUs).")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    show_defaults = {"formatter_class": _DefaultsFormatter}

    t = sub.add_parser("train", help="train an MLP (default: the built-in digits)", **show_defaults)
    _add_train_options(t)
    t.add_argument("--plot", default=None, help="save the loss/metric curves here (.png; needs matplotlib)")
    t.add_argument("--checkpoint", default=None,
                   help="write a resumable training checkpoint here after every epoch (.fnn)")
    t.add_argument("--resume", default=None,
                   help="continue a --checkpoint file up to --epochs in all (model and settings from the file)")
    t.add_argument("--distributed", default=None, choices=("mpi",),
                   help="data-parallel over the ranks of mpiexec -n K (--batch-size per rank; rank 0 prints and saves)")
    t.set_defaults(func=cmd_train)

    u = sub.add_parser("tune", help="grid or random search over the train options, on validation or k-fold CV",
                       **show_defaults)
    _add_train_options(u, out_help="save the best model, refitted, here (.fnn)")
    u.add_argument("--grid", nargs="+", required=True, metavar="KEY=VALUES",
                   help="values to try, e.g. lr=1e-3,1e-2 hidden=32,64+32 optimizer=adam,sgd; with --search "
                        "random also ranges lr=log:1e-4:1e-1 hidden=16:128 (keys: " + ", ".join(_TUNE_KEYS) + ")")
    u.add_argument("--search", default="grid", choices=("grid", "random"), help="every combination, or draws")
    u.add_argument("--trials", type=int, default=10, help="parameter sets a random search draws")
    u.add_argument("--cv", type=int, default=None,
                   help="score by K-fold cross-validation instead of the validation part")
    u.add_argument("--results", default=None, help="write the table of trials here (.csv)")
    u.add_argument("--workers", type=int, default=None, help="run the trials in N local processes at once")
    u.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the trials on the Dask cluster of this scheduler (tcp://host:8786; needs dask)")
    u.set_defaults(func=cmd_tune)

    for name, func, helptext in (("evaluate", cmd_evaluate, "loss and metrics of a saved model on data"),
                                 ("predict", cmd_predict, "predictions of a saved model")):
        c = sub.add_parser(name, help=helptext, **show_defaults)
        c.add_argument("model", help="a .fnn model (fastnn train --out, model.save) or checkpoint (--checkpoint)")
        c.add_argument("--data", required=True, help="iris, digits, spirals, moons, PATH.csv or PATH.npz; columns "
                                                     "are matched by the names the model was trained on")
        c.add_argument("--target", default=None,
                       help="the target column if named otherwise than in training (CSV name; NPZ key); models of "
                            "older versions: as in train, 'none' for a table without one")
        c.add_argument("--device", default="cpu", help="cpu, cuda or reference")
        if name == "predict":
            c.add_argument("--out", default=None, help="write predictions to this CSV instead of stdout")
        else:
            c.add_argument("--split", default="all", choices=("all", "train", "validation", "test"),
                           help="rows to score: all, or one part of fastnn train's 70/15/15 split (same data)")
        c.set_defaults(func=func)

    from .tools.landscapes import LANDSCAPES

    s = sub.add_parser("landscape", help="optimizers' paths on a 2-D test function, drawn over its contours",
                       **show_defaults)
    s.add_argument("--function", default="rosenbrock", choices=tuple(LANDSCAPES), help="the test function")
    s.add_argument("--optimizers", default="sgd,momentum,rmsprop,adam",
                   help="comma-separated names, e.g. sgd,momentum,nesterov,adagrad,rmsprop,adam")
    s.add_argument("--lr", default="1e-3", help="learning rate: one for all, or one per optimizer (commas)")
    s.add_argument("--steps", type=int, default=500, help="optimizer steps")
    s.add_argument("--start", default=None, help="starting point x,y (default: the function's own)")
    s.add_argument("--out", default="landscape.png", help="the picture (.png; needs matplotlib); '' for none")
    s.set_defaults(func=cmd_landscape)

    e = sub.add_parser("export", help="write a saved model as an ONNX file (needs the onnx package)",
                       **show_defaults)
    e.add_argument("model", help="a .fnn file written by fastnn train --out or model.save")
    e.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset (GELU is one operator from 20)")
    e.add_argument("--dtype", default=None, choices=("float32", "float64"), help="element type (default the model's)")
    e.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="end-to-end training benchmark (see fastnn bench -h)", add_help=False)
    b.add_argument("bench_args", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="versions, BLAS, threads, CPU features, devices")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "bench":  # bench parses its own options: argparse.REMAINDER would
            from .tools import bench    # reject a leading one ('fastnn bench --quick')

            return bench.main(argv[1:])
        args = parser.parse_args(argv or ["train"])
        if args.command is None:
            args = parser.parse_args(["train", *argv])
        return args.func(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError, ModelFormatError, ImportError) as exc:
        print(f"fastnn: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"fastnn: training diverged: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
