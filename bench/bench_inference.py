"""Deployment footprint of fastnn's NumPy-only runtime beside PyTorch and ONNX Runtime.

    PYTHONPATH=. python bench/bench_inference.py                      # small and medium, 5 rounds
    PYTHONPATH=. python bench/bench_inference.py --rounds 9 --json inference.json
    PYTHONPATH=. python bench/bench_inference.py --quick              # smoke run: fastnn only

Measures, on this machine and in this run:

- import time: ``import X`` timed inside a fresh interpreter (so NumPy's import is part of
  ``import fastnn.inference``), for numpy, fastnn, fastnn.inference, torch and onnxruntime;
- installed size: the files that each distribution's RECORD lists, with its required
  dependencies (extras excluded); fastnn from its package folder when run from a checkout;
- prediction: one-row latency (median over blocks of calls of the mean time per call) and
  10,000-row throughput, float32, for bench/TARGETS.md's small (784-128-10) and medium
  (784-512-512-10) models with the same random weights, in fastnn.inference (its default
  engine, compiled), fastnn.inference[numpy] (``engine="numpy"``), fastnn's model
  (fastnn.load(path, device='cpu').predict), PyTorch eager (torch.inference_mode, from and to
  NumPy arrays) and ONNX Runtime (the file written by fastnn.export.to_onnx).

Every system runs in its own fresh process (thread pools that spin after a call, such as ONNX
Runtime's and OpenBLAS's, would otherwise slow the next system), with its default threads;
systems alternate within each round; the median over rounds is reported and, in brackets, the
best round (on a shared machine the best round is the better estimate of the cost itself).
Prints and never asserts (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _timing import per_call  # bench/_timing.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"small": [784, 128, 10], "medium": [784, 512, 512, 10]}
SYSTEMS = ("fastnn.inference", "fastnn.inference[numpy]", "fastnn.load", "torch", "onnxruntime")
IMPORTS = ("numpy", "fastnn", "fastnn.inference", "torch", "onnxruntime")
ROWS = 10_000


# ----------------------------------------------------------------- workers
def _predictor(system, folder, config):
    """A function X -> NumPy predictions for ``system``."""
    import numpy as np

    path = os.path.join(folder, config)
    if system in ("fastnn.inference", "fastnn.inference[numpy]"):
        import fastnn.inference

        return fastnn.inference.load(path + ".fnn", engine="numpy" if "numpy" in system else "auto").predict
    if system == "fastnn.load":
        import fastnn

        return fastnn.load(path + ".fnn", device="cpu").predict
    if system == "torch":
        import torch

        weights = np.load(path + ".npz")
        layers = []
        for i in range(len(weights.files) // 2):
            w, b = weights[f"w{i}"], weights[f"b{i}"]
            linear = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T))
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1]).eval()

        def predict(X):
            with torch.inference_mode():
                return model(torch.from_numpy(X)).numpy()
        return predict
    if system == "onnxruntime":
        import onnxruntime

        session = onnxruntime.InferenceSession(path + ".onnx", providers=["CPUExecutionProvider"])
        return lambda X: session.run(None, {"input": X})[0]
    raise ValueError(system)


def _breakdown(folder, config, one):
    """µs per call of each NumPy operation of fastnn.inference's one-row prediction (NumPy engine)."""
    import numpy as np

    import fastnn.inference
    from fastnn._checks import as_float_array

    model = fastnn.inference.load(os.path.join(folder, config) + ".fnn", engine="numpy")
    parts = {"input checks (as_float_array)": lambda: as_float_array("p", "X", one, np.float32),
             "result array (np.empty)": lambda: np.empty((1, model.n_outputs), np.float32)}
    x = one
    for i, step in enumerate(model.steps):
        y = np.empty((1, step.n_out), np.float32)
        parts[f"layer {i + 1}: np.dot {step.n_in}x{step.n_out}"] = (lambda x=x, y=y, w=step.weight:
                                                                   np.dot(x, w, out=y))
        parts[f"layer {i + 1}: bias (np.add)"] = lambda y=y, b=step.bias: np.add(y, b, out=y)
        if step.activation == "relu":
            parts[f"layer {i + 1}: relu (np.maximum)"] = lambda y=y: np.maximum(y, 0.0, out=y)
        x = y
    return {name: per_call(fn, 2000, 15) * 1e6 for name, fn in parts.items()}


def worker(system, folder, config, quick):
    """Measure one system on one configuration; prints one JSON line."""
    import numpy as np

    rng = np.random.default_rng(1)
    one = rng.standard_normal((1, CONFIGS[config][0])).astype(np.float32)
    many = rng.standard_normal((ROWS, CONFIGS[config][0])).astype(np.float32)
    predict = _predictor(system, folder, config)
    calls, blocks, big = (50, 3, 1) if quick else (1000, 25, 7)
    for _ in range(calls):  # warm-up: buffers, thread pools, caches
        predict(one)
    predict(many)
    result = {"one_row_us": per_call(lambda: predict(one), calls, blocks) * 1e6,
              "rows_per_s": ROWS / per_call(lambda: predict(many), 1, big),
              "output": predict(many[:4]).tolist()}
    if system == "fastnn.inference[numpy]" and not quick:
        result["breakdown_us"] = _breakdown(folder, config, one)
    print(json.dumps(result))


def import_time(module):
    """Seconds of ``import module`` in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    return float(out.stdout) if out.returncode == 0 else None


# ------------------------------------------------------------------- sizes
def _requirement_names(dist):
    """Names of the required (not extra) dependencies of a distribution."""
    names = []
    for text in dist.requires or ():
        try:
            from packaging.requirements import Requirement

            req = Requirement(text)
            if req.marker is not None and ("extra" in str(req.marker) or not req.marker.evaluate({"extra": ""})):
                continue
            names.append(req.name)
        except ImportError:  # no packaging: a plain parse, extras dropped
            if "extra ==" not in text:
                names.append(text.split(";")[0].strip().split(" ")[0].rstrip("<>=!~[").split("[")[0])
        except Exception:  # an unparsable requirement is left out of the sum
            continue
    return names


def _dist_bytes(dist):
    total = 0
    for f in dist.files or ():
        try:
            total += os.path.getsize(f.locate())
        except OSError:
            pass
    return total


def installed_size(name, seen=None):
    """Bytes of distribution ``name`` and of its required dependencies, each counted once, and
    the names counted; (None, []) when it is not installed."""
    import importlib.metadata as md

    seen = set() if seen is None else seen
    key = name.lower().replace("_", "-")
    if key in seen:
        return 0, []
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return None, []
    seen.add(key)
    total, names = _dist_bytes(dist), [dist.metadata["Name"]]
    for dep in _requirement_names(dist):
        size, more = installed_size(dep, seen)
        total += size or 0
        names += more
    return total, names


def fastnn_size():
    """Bytes of fastnn with numpy: the installed distribution, or the package folder of this
    checkout (source, data and compiled modules; no caches) plus numpy."""
    import importlib.metadata as md

    try:
        md.distribution("fastnn")
        return installed_size("fastnn")
    except md.PackageNotFoundError:
        pass
    total = 0
    for folder, dirs, files in os.walk(os.path.join(ROOT, "fastnn")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files if not f.endswith((".c", ".pyc")))
    numpy_bytes, names = installed_size("numpy")
    return total + (numpy_bytes or 0), ["fastnn (checkout)"] + names


# -------------------------------------------------------------------- main
def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def _available(module):
    return import_time(module) is not None


def prepare(folder, configs, systems):
    """Write each configuration's model (seed 0, He-scaled weights) as .fnn, .npz and .onnx."""
    import numpy as np

    import fastnn as fnn

    for name in configs:
        dims = CONFIGS[name]
        rng = np.random.default_rng(0)
        weights = []
        for n_in, n_out in zip(dims[:-1], dims[1:]):
            weights += [rng.normal(0, (2 / n_in) ** 0.5, (n_in, n_out)), rng.normal(0, 0.1, n_out)]
        layers = [fnn.layers.Dense(n, activation="relu") for n in dims[1:-1]] + [fnn.layers.Dense(dims[-1])]
        model = fnn.Sequential(layers, input_dim=dims[0], device="reference", dtype="float32")
        model.set_weights(weights)
        path = os.path.join(folder, name)
        model.save(path + ".fnn")
        np.savez(path + ".npz", **{f"{k}{i // 2}": w.astype(np.float32)
                                   for i, (k, w) in enumerate(zip("wb" * len(weights), weights))})
        if "onnxruntime" in systems:
            import fastnn.export

            fastnn.export.to_onnx(model, path + ".onnx")


def run_worker(system, folder, config, quick):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", system, folder, config] + (["--quick"] * quick)
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        print(f"  {system} on {config} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(value, unit):
    if value is None:
        return "–"
    if unit == "s":
        return f"{value * 1e3:.0f} ms"
    if unit == "MB":
        return f"{value / 1e6:.0f} MB"
    if unit == "us":
        return f"{value:.1f} µs" if value < 100 else f"{value:,.0f} µs"
    return f"{value:,.0f} rows/s"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="small,medium", help="comma list of small, medium")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of " + ", ".join(SYSTEMS))
    p.add_argument("--rounds", type=int, default=5, help="rounds of every measurement (median reported)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, fastnn.inference only, short timings")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", nargs=3, metavar=("SYSTEM", "FOLDER", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.quick)
        return 0
    configs = [c for c in args.configs.split(",") if c]
    systems = ["fastnn.inference"] if args.quick else [s for s in args.systems.split(",") if s]
    rounds = 1 if args.quick else args.rounds
    imports = ("numpy", "fastnn.inference") if args.quick else IMPORTS
    bad = [c for c in configs if c not in CONFIGS] + [s for s in systems if s not in SYSTEMS]
    if bad:
        p.error(f"unknown configuration or system {bad[0]!r}")
    for module, system in (("torch", "torch"), ("onnxruntime", "onnxruntime")):
        if system in systems and not _available(module):
            print(f"note: {module} is not installed; its column stays empty", file=sys.stderr)
            systems.remove(system)

    load0 = os.getloadavg()
    times = {m: [] for m in imports}
    results = {(s, c): [] for s in systems for c in configs}
    with tempfile.TemporaryDirectory() as folder:
        prepare(folder, configs, systems)
        for r in range(rounds):
            for module in imports[r % len(imports):] + imports[:r % len(imports)]:
                times[module].append(import_time(module))
            for config in configs:
                for system in systems[r % len(systems):] + systems[:r % len(systems)]:
                    results[system, config].append(run_worker(system, folder, config, args.quick))
    load1 = os.getloadavg()

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def best(values, key=min):
        values = [v for v in values if v is not None]
        return key(values) if values else None

    summary = {"imports_s": {m: med(v) for m, v in times.items()},
               "imports_best_s": {m: best(v) for m, v in times.items()}, "imports_all_s": times,
               "sizes_bytes": {}, "predict": {}, "loadavg": [list(load0), list(load1)], "rounds": rounds,
               "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    for label, (size, names) in (("fastnn + numpy", fastnn_size()), ("numpy", installed_size("numpy")),
                                 ("torch", installed_size("torch")),
                                 ("onnxruntime", installed_size("onnxruntime"))):
        summary["sizes_bytes"][label] = {"bytes": size, "distributions": names}
    for (system, config), runs in results.items():
        runs = [x for x in runs if x is not None]
        one, many = [x["one_row_us"] for x in runs], [x["rows_per_s"] for x in runs]
        summary["predict"][f"{system} / {config}"] = {
            "one_row_us": med(one), "one_row_best_us": best(one), "rows_per_s": med(many),
            "rows_per_s_best": best(many, max), "all_one_row_us": one, "all_rows_per_s": many,
            "breakdown_us": min(runs, key=lambda x: x["one_row_us"]).get("breakdown_us") if runs else None}

    import numpy as np

    print(f"# fastnn deployment footprint ({rounds} round(s); {os.cpu_count()} CPUs; loadavg before "
          f"{load0[0]:.2f}, after {load1[0]:.2f}; Python {sys.version.split()[0]}, NumPy {np.__version__})\n")
    print("| import (fresh interpreter, NumPy's import included) | median | best |\n|---|---|---|")
    for module, t in summary["imports_s"].items():
        print(f"| `import {module}` | {_fmt(t, 's')} | {_fmt(summary['imports_best_s'][module], 's')} |")
    print("\n| installed, with required dependencies | size | distributions |\n|---|---|---|")
    for label, s in summary["sizes_bytes"].items():
        print(f"| {label} | {_fmt(s['bytes'], 'MB')} | {', '.join(s['distributions']) or '–'} |")
    print(f"\n| model | system | one row: median (best) | {ROWS:,} rows: median (best) |\n|---|---|---|---|")
    for key, v in summary["predict"].items():
        system, config = key.split(" / ")
        dims = "-".join(map(str, CONFIGS[config]))
        print(f"| {config} {dims} | {system} | {_fmt(v['one_row_us'], 'us')} ({_fmt(v['one_row_best_us'], 'us')}) "
              f"| {_fmt(v['rows_per_s'], 'rows')} ({_fmt(v['rows_per_s_best'], 'rows')}) |")
    for key, v in summary["predict"].items():
        if v["breakdown_us"]:
            print(f"\nfastnn.inference[numpy], one row, {key.split(' / ')[1]}: µs per NumPy call (best round)")
            for name, us in v["breakdown_us"].items():
                print(f"  {us:6.2f}  {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
