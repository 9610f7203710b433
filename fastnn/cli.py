"""The ``fastnn`` command: train, evaluate, predict, export, landscape, bench, info.

Exit status 0 on success, 2 on bad arguments or data (one line on stderr), 1 when training
diverges.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

from .errors import ModelFormatError, TrainingDiverged

BUILTIN = ("iris", "digits", "spirals", "moons")
#: --optimizer choices with the default --lr of ``fastnn train`` for each: rates for its 30-epoch runs on
#: small standardised data (each reaches >= 0.97 test accuracy on digits in 30 epochs, mean of 5 seeds);
#: for Adam and AdamW 3e-3 rather than the class default 1e-3, which is slow over so few updates
OPTIMIZER_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.03, "adadelta": 1.0, "rmsprop": 1e-3,
                "adam": 3e-3, "adamw": 3e-3, "adamax": 1e-2, "nadam": 2e-3}


class UsageError(Exception):
    """Bad arguments or data: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


# ------------------------------------------------------------------- data
def _read_csv(path, target):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise UsageError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if target is None:
        col = len(header) - 1
    elif target in header:
        col = header.index(target)
    elif target.lstrip("-").isdigit() and -len(header) <= int(target) < len(header):
        col = int(target) % len(header)
    else:
        raise UsageError(f"--target {target!r} is not a column of {path}; columns: {', '.join(header)}")
    try:
        data = np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise UsageError(f"{path}: every value must be a number ({exc})") from None
    if data.ndim != 2 or data.shape[1] != len(header):
        raise UsageError(f"{path}: every row must have {len(header)} values")
    return np.delete(data, col, axis=1), data[:, col]


def _read_npz(path, target):
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        ykey = target or "y"
        if "X" not in keys or ykey not in keys:
            raise UsageError(f"{path}: needs arrays 'X' and {ykey!r}; it has {', '.join(keys)}")
        return np.asarray(z["X"]), np.asarray(z[ykey])


def load_data(spec, target=None, seed=0):
    """(X, y) from a built-in name, a CSV (header row; target = last column or --target) or an
    NPZ (arrays X and y)."""
    from . import datasets

    if spec == "iris":
        return datasets.load_iris()
    if spec == "digits":
        return datasets.load_digits()
    if spec == "spirals":
        return datasets.make_spirals(n=900, classes=3, noise=0.2, seed=seed)
    if spec == "moons":
        return datasets.make_moons(n=1000, noise=0.2, seed=seed)
    if not os.path.isfile(spec):
        raise UsageError(f"--data {spec!r} is neither one of {', '.join(BUILTIN)} nor an existing .csv/.npz file")
    if spec.endswith(".csv"):
        return _read_csv(spec, target)
    if spec.endswith(".npz"):
        return _read_npz(spec, target)
    raise UsageError(f"--data {spec!r}: use a .csv or .npz file")


def _is_classification(y, task):
    if task != "auto":
        return task == "classify"
    y = np.asarray(y)
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
def cmd_train(args):
    import fastnn as fnn
    from ._checks import check_int

    # check the arguments before loading data or printing anything
    check_int("fastnn train", "--epochs", args.epochs, low=0)
    check_int("fastnn train", "--batch-size", args.batch_size, low=1)
    try:
        hidden = [int(h) for h in args.hidden.split(",") if h.strip()] if args.hidden else []
    except ValueError:
        raise UsageError(f"--hidden {args.hidden!r}: give integer widths separated by commas, e.g. 128,64") from None
    if any(h < 1 for h in hidden):
        raise UsageError(f"--hidden {args.hidden!r}: every width must be >= 1")
    for option in ("plot", "checkpoint", "out"):
        _check_folder(f"--{option}", getattr(args, option))
    _check_device(args.device)
    trainer = None
    if args.resume:  # the model, its settings and the split seed come from the checkpoint
        trainer = fnn.Trainer.from_checkpoint(args.resume, device=args.device)
        meta = trainer.model.metadata
        if not isinstance(meta.get("split_seed"), int) or meta.get("task") not in ("classify", "regress"):
            raise UsageError(f"--resume {args.resume}: not a checkpoint written by fastnn train --checkpoint")
        args.seed = meta["split_seed"]
    X, y = load_data(args.data, args.target, args.seed)
    classify = _is_classification(y, args.task) if trainer is None else trainer.model.metadata["task"] == "classify"
    classes = None
    if classify:
        classes, y = np.unique(np.asarray(y), return_inverse=True)
        if len(classes) < 2:
            raise UsageError(f"--data {args.data}: the target has a single class; nothing to learn")
        if trainer is not None and classes.tolist() != trainer.model.metadata["classes"]:
            raise UsageError(f"--data {args.data}: its classes differ from those of the checkpoint {args.resume}")
    fractions = (0.7, 0.15, 0.15)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = fnn.data.split(X, y, fractions=fractions, stratify=classify,
                                                        seed=args.seed)
    scaler = fnn.data.Standardizer().fit(Xtr)
    Xtr, Xva, Xte = (scaler.transform(a) for a in (Xtr, Xva, Xte))
    n_out = len(classes) if classify else 1
    loss = "cross_entropy" if classify else "mse"
    if trainer is None:
        layers = [fnn.layers.Dense(h, activation=args.activation) for h in hidden] + [fnn.layers.Dense(n_out)]
        model = fnn.Sequential(layers, input_dim=Xtr.shape[1], seed=args.seed, device=args.device)
        lr = args.lr if args.lr is not None else OPTIMIZER_LR[args.optimizer]
        optimizer = fnn.optim.get_optimizer(args.optimizer, lr=lr, owner="fastnn train")
        metrics = ["accuracy"] if classify else ["r2"]
        trainer = fnn.Trainer(model, loss, optimizer, batch_size=args.batch_size, metrics=metrics, seed=args.seed)
        model.metadata = {"task": "classify" if classify else "regress", "loss": loss,
                          "classes": None if classes is None else classes.tolist(),
                          "standardize": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
                          "split_seed": args.seed}
    model = trainer.model
    if model.input_dim != Xtr.shape[1] or model.n_out != n_out:
        raise UsageError(f"--data {args.data}: {Xtr.shape[1]} features and {n_out} outputs; the checkpoint "
                         f"{args.resume} has a model of {model.input_dim} features and {model.n_out} outputs")
    epochs = max(args.epochs - trainer.epoch, 0)
    print(f"fastnn train: {args.data}: {len(Xtr)} train / {len(Xva)} validation / {len(Xte)} test samples, "
          f"{X.shape[1]} features, {'%d classes' % n_out if classify else 'regression'}; "
          f"{model.n_params:,} parameters on {model.device}")
    if args.resume:
        print(f"resumed {args.resume} after epoch {trainer.epoch}; {epochs} more to reach --epochs {args.epochs}")
    callbacks = [fnn.callbacks.ModelCheckpoint(args.checkpoint, full=True)] if args.checkpoint else []
    history = trainer.fit(Xtr, ytr, epochs=epochs, validation=(Xva, yva), callbacks=callbacks, verbose=1)
    scores = trainer.evaluate(Xte, yte)
    print("test " + " - ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    if args.checkpoint and epochs == 0:
        trainer.save_checkpoint(args.checkpoint)
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


def _check_folder(option, path):
    """A file option's folder must exist (checked before training, not after)."""
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise UsageError(f"{option} {path}: the folder {folder} does not exist")


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
    return "\n".join(lines)


def _load_model(path, device):
    """The model of a model file, or of a training checkpoint (fastnn train --checkpoint)."""
    import zipfile

    import fastnn as fnn

    try:
        with zipfile.ZipFile(path) as zf:
            checkpoint = "checkpoint.json" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        checkpoint = False  # fnn.load says what is wrong
    if checkpoint:
        return fnn.Trainer.from_checkpoint(path, device=device).model
    return fnn.load(path, device=device)


def _load_with_data(args):
    _check_device(args.device)
    model = _load_model(args.model, args.device)
    X, y = load_data(args.data, args.target)
    meta = getattr(model, "metadata", {}) or {}
    std = meta.get("standardize")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != model.input_dim:
        raise UsageError(f"--data {args.data}: X has shape {X.shape}; the model {args.model} takes "
                         f"{model.input_dim} features")
    if std is not None:
        X = (X - np.asarray(std["mean"])) / np.asarray(std["scale"])
    return model, X, y, meta


def cmd_evaluate(args):
    import fastnn as fnn

    model, X, y, meta = _load_with_data(args)
    classify = meta.get("task", "classify" if model.n_out > 1 else "regress") == "classify"
    if classify and meta.get("classes") is not None:
        lookup = {c: i for i, c in enumerate(meta["classes"])}
        try:
            y = np.array([lookup[v] for v in np.asarray(y).tolist()])
        except KeyError as exc:
            raise UsageError(f"--data {args.data}: label {exc.args[0]!r} was not seen in training") from None
    loss = meta.get("loss", "cross_entropy" if classify else "mse")
    trainer = fnn.Trainer(model, loss, metrics=["accuracy"] if classify else ["r2"])
    print(json.dumps(trainer.evaluate(X, y)))
    return 0


def cmd_predict(args):
    model, X, _, meta = _load_with_data(args)
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
    from .landscapes import plot_paths

    # check everything before printing anything
    steps = check_int("fastnn landscape", "--steps", args.steps, low=0)
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

    folder = os.path.dirname(os.path.abspath(args.onnx))
    if not os.path.isdir(folder):
        raise UsageError(f"--onnx {args.onnx}: the folder {folder} does not exist")
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
    from . import bench

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


def build_parser():
    p = _Parser(prog="fastnn", description="Fast neural-network training on CPU (and NVIDIA GPUs).")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train an MLP (default: the built-in digits)")
    t.add_argument("--data", default="digits", help="iris, digits, spirals, moons, PATH.csv or PATH.npz")
    t.add_argument("--target", default=None, help="target column (CSV name or index; NPZ key), default last / 'y'")
    t.add_argument("--task", default="auto", choices=("auto", "classify", "regress"))
    t.add_argument("--hidden", default="128", help="hidden widths, comma-separated, e.g. 128,64")
    t.add_argument("--activation", default="relu")
    t.add_argument("--optimizer", default="adam", choices=tuple(OPTIMIZER_LR))
    t.add_argument("--lr", type=float, default=None, help="learning rate (default by optimizer)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--device", default="cpu")
    t.add_argument("--out", default=None, help="save the trained model here (.fnn)")
    t.add_argument("--plot", default=None, help="save the loss/metric curves here (.png; needs matplotlib)")
    t.add_argument("--checkpoint", default=None,
                   help="write a resumable training checkpoint here after every epoch (.fnn)")
    t.add_argument("--resume", default=None,
                   help="continue a --checkpoint file up to --epochs in all (model and settings from the file)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)

    for name, func, helptext in (("evaluate", cmd_evaluate, "loss and metrics of a saved model on data"),
                                 ("predict", cmd_predict, "predictions of a saved model")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("model", help="a .fnn model (fastnn train --out, model.save) or checkpoint (--checkpoint)")
        c.add_argument("--data", required=True, help="iris, digits, spirals, moons, PATH.csv or PATH.npz")
        c.add_argument("--target", default=None)
        c.add_argument("--device", default="cpu")
        if name == "predict":
            c.add_argument("--out", default=None, help="write predictions to this CSV instead of stdout")
        c.set_defaults(func=func)

    from .landscapes import LANDSCAPES

    s = sub.add_parser("landscape", help="optimizers' paths on a 2-D test function, drawn over its contours")
    s.add_argument("--function", default="rosenbrock", choices=tuple(LANDSCAPES))
    s.add_argument("--optimizers", default="sgd,momentum,rmsprop,adam",
                   help="comma-separated names, e.g. sgd,momentum,nesterov,adagrad,rmsprop,adam")
    s.add_argument("--lr", default="1e-3", help="learning rate: one for all, or one per optimizer (commas)")
    s.add_argument("--steps", type=int, default=500)
    s.add_argument("--start", default=None, help="starting point x,y (default: the function's own)")
    s.add_argument("--out", default="landscape.png", help="the picture (.png; needs matplotlib); '' for none")
    s.set_defaults(func=cmd_landscape)

    e = sub.add_parser("export", help="write a saved model as an ONNX file (needs the onnx package)")
    e.add_argument("model", help="a .fnn file written by fastnn train --out or model.save")
    e.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; GELU is one operator from 20)")
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
            from . import bench          # reject a leading one ('fastnn bench --quick')

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
