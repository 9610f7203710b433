"""End-to-end training benchmark: the standard configurations of bench/TARGETS.md, timed through the
public API (``Trainer.fit``), next to the GEMM floor measured in the same run and, optionally,
PyTorch eager on the same data.

    fastnn bench [--config tiny,small|all] [--device cpu] [--n 20000] [--repeats 3]
                 [--threads N] [--optimizer sgd|adam|adamw] [--precision fp32|both] [--compare torch]
                 [--json results.json] [--quick]
    python bench/e2e.py ...                      # the same, from a checkout

For each configuration, in one process: build the model and its Trainer, train one warm-up
epoch, then time ``repeats`` epochs (``time.perf_counter`` around ``trainer.fit(X, y, epochs=1,
verbose=0)``), alternating, per repeat, with one epoch of the GEMM floor and (``--compare torch``)
one PyTorch epoch; the medians are reported. With ``--precision both`` (the default on the cpu
device) fastnn under ``Trainer(precision="bf16")`` joins the alternation, and with ``--compare
torch`` PyTorch under ``torch.autocast(bfloat16)`` too (PyTorch's fastest CPU mode on AMX). A
further, untimed epoch runs under tracemalloc to measure memory. The benchmark prints and writes
JSON; it never asserts a speed.

The GEMM floor: per Dense layer the forward X @ W and, backward, X.T @ dZ and dZ @ W.T (none
for the first layer), at exactly the shapes of each step of an epoch (the last partial batch
included), as NumPy float32 ``matmul`` into preallocated outputs, summed over the epoch.
fastnn never needs torch: it is imported only for ``--compare torch``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

from .._info import _cpu_name

SCHEMA = "fastnn-bench/1"

#: The standard configurations (bench/TARGETS.md). ``optimizer``: what they specify; what really runs
#: depends on what fastnn has (see _pick_optimizer).
CONFIGS = {
    "tiny": {"layers": (4, 16, 3), "batch": 16, "optimizer": ("adam", {"lr": 1e-3}), "loss": "cross_entropy"},
    "small": {"layers": (784, 128, 10), "batch": 64, "optimizer": ("adam", {"lr": 1e-3}), "loss": "cross_entropy"},
    "medium": {"layers": (784, 512, 512, 10), "batch": 128, "optimizer": ("adam", {"lr": 1e-3}),
               "loss": "cross_entropy"},
    "large": {"layers": (784, 1024, 1024, 1024, 10), "batch": 256,
              "optimizer": ("sgd", {"lr": 0.01, "momentum": 0.9}), "loss": "cross_entropy"},
    "bn": {"layers": (784, 256, 256, 10), "batch": 128, "optimizer": ("adamw", {"lr": 1e-3, "weight_decay": 1e-2}),
           "loss": "cross_entropy", "batchnorm": True, "dropout": 0.2},
    "regress": {"layers": (13, 64, 64, 1), "batch": 32, "optimizer": ("adam", {"lr": 1e-3}), "loss": "mse"},
}
#: What ``--optimizer`` runs instead of the configuration's own, in every configuration.
OPTIMIZERS = {"sgd": ("sgd", {"lr": 0.01, "momentum": 0.9}), "adam": ("adam", {"lr": 1e-3}),
              "adamw": ("adamw", {"lr": 1e-3, "weight_decay": 1e-2})}
#: Pause before each timed epoch, so that the previous system's spinning BLAS/OpenMP threads
#: have gone to sleep before the next one is timed (thread teams fight on 2 cores;
#: OpenBLAS workers spin for about 2**28 cycles, ~0.1 s, after their last job).
_SETTLE_S = 0.2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def build_parser():
    p = _Parser(prog="fastnn bench", description="End-to-end training benchmark of fastnn (the standard "
                "configurations): µs per step, samples/s, the GEMM floor of the same run, optionally PyTorch. "
                "Prints and writes JSON; never asserts.")
    p.add_argument("--config", default="all", help=f"comma list of {', '.join(CONFIGS)}, or 'all' (default)")
    p.add_argument("--device", default="cpu", choices=("cpu", "reference", "cuda"), help="fastnn device (default cpu)")
    p.add_argument("--n", type=int, default=None, help="samples per epoch (default 20000; 2000 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed epochs, median reported (default 3; 1 with "
                   "--quick)")
    p.add_argument("--threads", type=int, default=None, help="threads for fastnn (fastnn.set_num_threads) and "
                   "torch; default: leave as is")
    p.add_argument("--thread-policy", default=None, choices=("adaptive", "fixed"),
                   help="how fastnn's products use the pool (fastnn.backends.cpu.set_thread_policy): adaptive "
                   "(default) = one thread or the pool per product, whichever is faster; fixed = always the pool")
    p.add_argument("--optimizer", default=None, choices=tuple(OPTIMIZERS),
                   help="run every configuration (fastnn and torch) with this optimizer instead of the "
                   "configuration's own: sgd = SGD momentum 0.9 lr 0.01, adam = Adam lr 1e-3, "
                   "adamw = AdamW lr 1e-3 wd 1e-2")
    p.add_argument("--precision", default=None, choices=("fp32", "both"),
                   help="both: also time fastnn with Trainer(precision='bf16') (and, with --compare torch, PyTorch "
                   "under torch.autocast bfloat16) beside float32, in the same run; fp32: float32 only. Default: "
                   "both on the cpu device, fp32 elsewhere")
    p.add_argument("--compare", default=None, choices=("torch",), help="also time PyTorch eager (needs torch)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results here (atomically)")
    p.add_argument("--quick", action="store_true", help="CI smoke run: --n 2000 --repeats 1")
    return p


# ------------------------------------------------------------------ helpers
def _median(xs):
    return float(statistics.median(xs))


def _layers_text(cfg):
    return "-".join(str(w) for w in cfg["layers"]) + (" +BN/Dropout" if cfg.get("batchnorm") else "")


def _opt_label(spec):
    kind, kw = spec
    if kind == "sgd":
        return f"SGD m={kw['momentum']:g} lr={kw['lr']:g}"
    if kind == "adam":
        return f"Adam lr={kw['lr']:g}"
    return f"AdamW lr={kw['lr']:g} wd={kw['weight_decay']:g}"


def _pick_optimizer(fnn, cfg, override=None):
    """(spec really used, note or None): the configuration's own, or --optimizer's with a note."""
    spec, note = cfg["optimizer"], None
    if override is not None and OPTIMIZERS[override][0] != spec[0]:
        spec = OPTIMIZERS[override]
        note = f"--optimizer {override}: {_opt_label(spec)} runs instead of the configuration's optimizer"
    return spec, note


def _fastnn_optimizer(fnn, spec):
    kind, kw = spec
    if kind == "sgd":
        return fnn.optim.SGD(lr=kw["lr"], momentum=kw["momentum"])
    if kind == "adam":
        return fnn.optim.Adam(lr=kw["lr"])
    return fnn.optim.AdamW(lr=kw["lr"], weight_decay=kw["weight_decay"])


def _fastnn_model(fnn, cfg, device):
    widths = cfg["layers"]
    L = fnn.layers
    if cfg.get("batchnorm"):
        layers = []
        for w in widths[1:-1]:
            layers += [L.Dense(w), L.BatchNorm(), L.Activation("relu")]
            # the bn configuration: one Dropout, after the first block
            if not any(isinstance(x, L.Dropout) for x in layers):
                layers.append(L.Dropout(cfg["dropout"]))
        layers.append(L.Dense(widths[-1]))
    else:
        layers = [L.Dense(w, activation="relu") for w in widths[1:-1]] + [L.Dense(widths[-1])]
    return fnn.Sequential(layers, input_dim=widths[0], seed=0, device=device, dtype="float32")


def _data(cfg, n):
    """The configurations' synthetic data: X ~ N(0, 1) float32; labels uniform over the classes, or float
    targets N(0, 1) for the regression configuration."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, cfg["layers"][0]), dtype=np.float32)
    n_out = cfg["layers"][-1]
    if cfg["loss"] == "mse":
        y = rng.standard_normal((n, n_out), dtype=np.float32)
    else:
        y = rng.integers(0, n_out, size=n, dtype=np.int64)
    return X, y


def _steps(n, batch):
    """Row counts of the steps of one epoch (full batches, then the partial one)."""
    bs = min(batch, n)
    return [bs] * (n // bs) + ([n % bs] if n % bs else [])


# ------------------------------------------------------------------ the floor
class GemmFloor:
    """One epoch of exactly the matrix products of the Dense layers, NumPy float32 matmul into
    preallocated outputs. Activations chain through the layers as in a real step (the output
    of layer l is the input of layer l+1; dX of layer l+1 is dZ of layer l)."""

    def __init__(self, widths, steps, seed=0):
        rng = np.random.default_rng(seed)
        shapes = list(zip(widths[:-1], widths[1:]))
        ws = [(rng.standard_normal((i, o), dtype=np.float32) / np.float32(math.sqrt(i))) for i, o in shapes]
        self.steps = steps
        self._calls = {}
        for b in sorted(set(steps)):
            x = rng.standard_normal((b, widths[0]), dtype=np.float32)
            fwd, acts = [], [x]
            for w in ws:
                y = np.empty((b, w.shape[1]), np.float32)
                fwd.append((acts[-1], w, y))
                acts.append(y)
            dz = rng.standard_normal((b, widths[-1]), dtype=np.float32) / np.float32(b)
            bwd = []
            for li in range(len(ws) - 1, -1, -1):
                w = ws[li]
                bwd.append((acts[li].T, dz, np.empty(w.shape, np.float32)))  # dW = X.T @ dZ
                if li > 0:
                    dx = np.empty((b, w.shape[0]), np.float32)
                    bwd.append((dz, w.T, dx))  # dX = dZ @ W.T
                    dz = dx
            self._calls[b] = fwd + bwd
        self.n_products = len(self._calls[steps[0]])

    def epoch(self):
        """Seconds for one epoch of the products."""
        mm = np.matmul
        calls = [self._calls[b] for b in self.steps]
        t0 = time.perf_counter()
        for step in calls:
            for a, b, out in step:
                mm(a, b, out=out)
        return time.perf_counter() - t0


# ------------------------------------------------------------------ memory
def _step_memory_callback(fnn):
    class StepMemory(fnn.callbacks.Callback):
        """Traced bytes (tracemalloc) allocated and live at once within each step, measured from
        the end of one step to the end of the next (the gather, forward, loss, backward and
        update of a step). The epoch's absolute peak is kept too."""

        def __init__(self):
            self.samples = []
            self.peak = 0
            self._base = None

        def on_batch_end(self, batch, logs=None):
            _, peak = tracemalloc.get_traced_memory()
            self.peak = max(self.peak, peak)
            if self._base is not None:
                self.samples.append(peak - self._base)
            tracemalloc.reset_peak()
            self._base = tracemalloc.get_traced_memory()[0]

    return StepMemory


def _measure_memory(fnn, trainer, X, y):
    """One untimed epoch under tracemalloc. NumPy reports its data buffers to tracemalloc, so
    this sees arrays as well as Python objects; it cannot see memory of other allocators."""
    cb_cls = _step_memory_callback(fnn)
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        # what the callback's own bookkeeping costs between two calls with nothing in between
        probe = cb_cls()
        for _ in range(32):
            probe.on_batch_end(0)
        overhead = min(probe.samples) if probe.samples else 0
        cb = cb_cls()
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        trainer.fit(X, y, epochs=1, verbose=0, callbacks=[cb])
        end, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    per_step = [max(s - overhead, 0) for s in cb.samples]
    return {
        "method": "tracemalloc (NumPy buffers + Python objects; one extra, untimed epoch)",
        "epoch_peak_bytes": int(max(peak, cb.peak) - start),
        "epoch_retained_bytes": int(end - start),
        "step_alloc_bytes_median": int(_median(per_step)) if per_step else 0,
        "step_alloc_bytes_max": int(max(per_step)) if per_step else 0,
        "steps_measured": len(per_step),
    }


# ------------------------------------------------------------------ torch
class TorchRunner:
    """PyTorch eager on the same data: nn.Sequential of Linear+ReLU (BatchNorm1d/Dropout for bn),
    the same optimizer (fused, else foreach), a torch.randperm shuffle per epoch, the same batch."""

    def __init__(self, torch, cfg, spec, X, y, device, bf16=False):
        self.torch = torch
        nn = torch.nn
        torch.manual_seed(0)
        self.device = torch.device("cuda" if device == "cuda" and torch.cuda.is_available() else "cpu")
        self.bf16 = bf16  # the forward (and so its backward) under torch.autocast(bfloat16); weights float32
        widths = cfg["layers"]
        mods = []
        for i, (a, b) in enumerate(zip(widths[:-2], widths[1:-1])):
            mods.append(nn.Linear(a, b))
            if cfg.get("batchnorm"):
                mods.append(nn.BatchNorm1d(b))
            mods.append(nn.ReLU())
            if cfg.get("batchnorm") and i == 0:
                mods.append(nn.Dropout(cfg["dropout"]))
        mods.append(nn.Linear(widths[-2], widths[-1]))
        self.model = nn.Sequential(*mods).to(self.device).train()
        self.loss_fn = nn.MSELoss() if cfg["loss"] == "mse" else nn.CrossEntropyLoss()
        self.X = torch.from_numpy(X).to(self.device)
        self.y = torch.from_numpy(y).to(self.device)
        self.batch = min(cfg["batch"], len(X))
        self.gen = torch.Generator().manual_seed(0)
        self.opt, self.opt_label = self._optimizer(spec)

    def _optimizer(self, spec):
        optim = self.torch.optim
        kind, kw = spec
        params = list(self.model.parameters())
        if kind == "sgd":
            cls, args = optim.SGD, {"lr": kw["lr"], "momentum": kw["momentum"]}
        elif kind == "adam":
            cls, args = optim.Adam, {"lr": kw["lr"]}
        else:
            cls, args = optim.AdamW, {"lr": kw["lr"], "weight_decay": kw["weight_decay"]}
        for flavour in ("fused", "foreach"):
            try:
                opt = cls(params, **args, **{flavour: True})
                if flavour == "fused":  # some builds accept fused=True and fail on the first step
                    self._check_step(opt)
                return opt, f"{cls.__name__} ({flavour})"
            except (RuntimeError, TypeError, ValueError):
                continue
        return cls(params, **args), f"{cls.__name__} (for-loop)"

    def _check_step(self, opt):
        snapshot = [p.detach().clone() for p in self.model.parameters()]
        self._step(self.X[: self.batch], self.y[: self.batch], opt)
        with self.torch.no_grad():
            for p, s in zip(self.model.parameters(), snapshot):
                p.copy_(s)
        opt.state.clear()

    def _step(self, xb, yb, opt):
        opt.zero_grad(set_to_none=True)
        if self.bf16:
            with self.torch.autocast(self.device.type, dtype=self.torch.bfloat16):
                loss = self.loss_fn(self.model(xb), yb)
        else:
            loss = self.loss_fn(self.model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    def epoch(self):
        torch = self.torch
        t0 = time.perf_counter()
        n, bs, X, y, opt = len(self.X), self.batch, self.X, self.y, self.opt
        perm = torch.randperm(n, generator=self.gen).to(self.device)
        for start in range(0, n, bs):
            idx = perm[start:start + bs]
            self._step(X[idx], y[idx], opt)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def _import_torch():
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install failing on import
        return None, f"{type(exc).__name__}: {exc}"
    return torch, None


# ------------------------------------------------------------------ machine
def _blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # show_config's layout is not a stable API
        return "unknown"


def _threads(fnn, requested):
    """(threads in use or None, how it was found, note or None); applies --threads."""
    note = None
    if requested is not None:
        try:
            fnn.set_num_threads(requested)
        except Exception as exc:  # e.g. the compiled CPU backend is not built
            note = f"fastnn.set_num_threads({requested}) failed ({type(exc).__name__}: {exc}); " \
                   f"NumPy's BLAS pool left as is"
    try:
        threads = fnn.get_num_threads()
    except Exception:  # the compiled CPU backend is not built
        threads = None
    if threads is not None:
        return int(threads), "fastnn.get_num_threads()", note
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip().isdigit():
            return int(os.environ[var]), var, note
    if requested is not None and note is None:
        return requested, "--threads", note
    try:
        return len(os.sched_getaffinity(0)), "CPUs available (OpenBLAS default)", note
    except AttributeError:
        return os.cpu_count(), "os.cpu_count() (OpenBLAS default)", note


def _thread_policy(device, requested):
    """The CPU backend's thread policy after applying --thread-policy, or None off the cpu device."""
    if device != "cpu":
        return None
    from ..backends import cpu

    if requested is not None:
        cpu.set_thread_policy(requested)
    return cpu.get_thread_policy()


def _cpu_seconds():
    """(CPU seconds used by the whole machine, by this process) so far; the machine's is None
    where /proc/stat is missing. Their difference over a run is what other processes took."""
    own = os.times()
    own = own.user + own.system
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy
        busy = sum(fields[:8]) - fields[3] - fields[4]
        return busy / os.sysconf("SC_CLK_TCK"), own
    except (OSError, ValueError, IndexError, AttributeError):
        return None, own


def _fastnn_blas(fnn):
    """fastnn.info()'s BLAS entry (which route the CPU kernels' products take), or None."""
    try:
        return fnn.info().get("blas")
    except Exception:  # the compiled backend is not built, or info() is not there yet
        return None


def _loadavg():
    """1, 5 and 15-minute load averages (another busy process skews every figure), or None."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _gpu_name(fnn):
    """The GPU's name, or why there is none (numba's simulator)."""
    info = fnn.cuda.device_info()
    return info.get("name") or info.get("reason")


def _machine(fnn, device, threads, thread_source, torch):
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    load = _loadavg()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "cores_available": available,
        "threads": threads,
        "threads_source": thread_source,
        "loadavg": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas_name(),
        "fastnn": getattr(fnn, "__version__", "?"),
        "fastnn_path": os.path.dirname(os.path.abspath(fnn.__file__)),
        "fastnn_blas": _fastnn_blas(fnn),
        "device": device,
        "gpu": _gpu_name(fnn) if device == "cuda" else None,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
    }


# ------------------------------------------------------------------ one configuration
def run_config(fnn, name, cfg, args, torch):
    spec, note = _pick_optimizer(fnn, cfg, args.optimizer)
    X, y = _data(cfg, args.n)
    steps = _steps(args.n, cfg["batch"])
    bf16 = args.precision == "both"

    def make_trainer(precision):
        return fnn.Trainer(_fastnn_model(fnn, cfg, args.device), "mse" if cfg["loss"] == "mse" else "cross_entropy",
                           _fastnn_optimizer(fnn, spec), batch_size=cfg["batch"], shuffle=True, seed=0,
                           precision=precision)

    trainer = make_trainer("fp32")
    model = trainer.model
    trainer_bf16 = make_trainer("bf16") if bf16 else None
    floor = GemmFloor(cfg["layers"], steps)
    tr = TorchRunner(torch, cfg, spec, X, y, args.device) if torch is not None else None
    tr_bf16 = TorchRunner(torch, cfg, spec, X, y, args.device, bf16=True) if torch is not None and bf16 else None

    def epoch_of(t):
        def fastnn_epoch():
            t0 = time.perf_counter()
            t.fit(X, y, epochs=1, verbose=0)
            return time.perf_counter() - t0
        return fastnn_epoch

    fastnn_epoch = epoch_of(trainer)
    (machine0, own0), wall0 = _cpu_seconds(), time.perf_counter()
    systems = [("fastnn", fastnn_epoch), ("floor", floor.epoch)] + ([("torch", tr.epoch)] if tr else [])
    if trainer_bf16 is not None:
        systems.append(("fastnn_bf16", epoch_of(trainer_bf16)))
    if tr_bf16 is not None:
        systems.append(("torch_bf16", tr_bf16.epoch))
    times = {s: [] for s, _ in systems}
    for _, fn in systems:  # warm-up: builds buffers, first-touch pages, BLAS thread start-up
        fn()
    for r in range(args.repeats):  # alternate the systems, rotating who goes first
        k = r % len(systems)
        for s, fn in systems[k:] + systems[:k]:
            time.sleep(_SETTLE_S)
            times[s].append(fn())
    machine1, own1 = _cpu_seconds()
    wall = time.perf_counter() - wall0
    launches = _launches_per_step(model.backend, fastnn_epoch, len(steps))
    others = None if machine0 is None or machine1 is None else max((machine1 - machine0) - (own1 - own0), 0.0)
    memory = _measure_memory(fnn, trainer, X, y)
    load_end = _loadavg()

    n_steps = len(steps)
    fast_s = _median(times["fastnn"])
    floor_s = _median(times["floor"])
    res = {
        "config": name,
        "status": "ok",
        "layers": list(cfg["layers"]),
        "layers_text": _layers_text(cfg),
        "batch": cfg["batch"],
        "loss": cfg["loss"],
        "optimizer_specified": _opt_label(cfg["optimizer"]),
        "optimizer": _opt_label(spec),
        "optimizer_note": note,
        "n": args.n,
        "steps_per_epoch": n_steps,
        "repeats": args.repeats,
        "epoch_s": times["fastnn"],
        "us_per_step": fast_s / n_steps * 1e6,
        "us_per_step_min": min(times["fastnn"]) / n_steps * 1e6,
        "samples_per_s": args.n / fast_s,
        "floor_epoch_s": times["floor"],
        "floor_us_per_step": floor_s / n_steps * 1e6,
        "floor_products_per_step": floor.n_products,
        "x_floor": fast_s / floor_s,
        "launches_per_step": launches,
        "memory": memory,
        "loadavg_after": load_end,
        "timing_wall_s": wall,
        "other_processes_cpu_s": others,  # CPU time other processes took while this config was timed
        "torch": None,
        "bf16": None,
        "torch_bf16": None,
    }
    for key in ("fastnn_bf16", "torch_bf16"):
        if key in times:
            t_s = _median(times[key])
            res[key.replace("fastnn_", "")] = {
                "epoch_s": times[key],
                "us_per_step": t_s / n_steps * 1e6,
                "us_per_step_min": min(times[key]) / n_steps * 1e6,
                "samples_per_s": args.n / t_s,
                "x_floor": t_s / floor_s,  # the float32 GEMM floor
                "speedup_vs_fastnn_fp32": fast_s / t_s,
            }
    if trainer_bf16 is not None:
        res["bf16"]["path"] = fnn.info()["bf16"]["path"]
    if tr_bf16 is not None:
        res["torch_bf16"]["fastnn_bf16_speedup"] = res["torch_bf16"]["us_per_step"] / res["bf16"]["us_per_step"]
    if tr is not None:
        torch_s = _median(times["torch"])
        res["torch"] = {
            "optimizer": tr.opt_label,
            "epoch_s": times["torch"],
            "us_per_step": torch_s / n_steps * 1e6,
            "us_per_step_min": min(times["torch"]) / n_steps * 1e6,
            "samples_per_s": args.n / torch_s,
            "x_floor": torch_s / floor_s,
            "speedup": torch_s / fast_s,  # > 1: fastnn is faster
        }
    return res


def _launches_per_step(backend, epoch, n_steps):
    """Kernel launches per training step over one more epoch, for a backend that counts them
    (CudaBackend.launches); None for the host backends."""
    if not hasattr(backend, "launches"):
        return None
    before = backend.launches
    epoch()
    return (backend.launches - before) / n_steps


# ------------------------------------------------------------------ output
def _fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def _us(v):
    if v is None:
        return "–"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def format_table(results, machine, settings):
    head = ["config", "optimizer", "layers", "batch", "µs/step", "samples/s", "floor µs/step", "× floor",
            "torch µs/step", "speed-up", "bf16 µs/step", "torch bf16", "bf16 speed-up", "step alloc B", "peak MiB"]
    rows = []
    notes = []
    for r in results:
        if r["status"] != "ok":
            rows.append([r["config"], "–", r.get("layers_text", "–"), _fmt(r.get("batch")),
                         f"{r['status']}: {r['reason']}"])
            continue
        opt = r["optimizer"] + ("*" if r["optimizer_note"] else "")
        if r["optimizer_note"] and r["optimizer_note"] not in notes:
            notes.append(r["optimizer_note"])
        t = r["torch"] or {}
        rows.append([r["config"], opt, r["layers_text"], _fmt(r["batch"]), _us(r["us_per_step"]),
                     _fmt(r["samples_per_s"]), _us(r["floor_us_per_step"]), f"{r['x_floor']:.2f}×",
                     _us(t.get("us_per_step")), f"{t['speedup']:.2f}×" if t else "–",
                     _us((r.get("bf16") or {}).get("us_per_step")), _us((r.get("torch_bf16") or {}).get("us_per_step")),
                     f"{r['torch_bf16']['fastnn_bf16_speedup']:.2f}×" if r.get("torch_bf16") else "–",
                     _fmt(r["memory"]["step_alloc_bytes_median"]),
                     f"{r['memory']['epoch_peak_bytes'] / 2**20:.2f}"])
    widths = [max([len(head[i])] + [len(row[i]) for row in rows if len(row) == len(head) or i < 4])
              for i in range(len(head))]
    right = set(range(3, len(head)))
    lines = []
    m = machine
    lines.append(f"fastnn {m['fastnn']} bench — device {m['device']}"
                 + (f" ({m['gpu']})" if m.get("gpu") else "") + f", {m['date']}")
    lines.append(f"cpu: {m['cpu']}; {m['cores']} cores ({m['cores_available']} available); threads {m['threads']} "
                 f"({m['threads_source']}), policy {m.get('thread_policy') or '–'}; loadavg {m['loadavg']}")
    lines.append(f"python {m['python']}, numpy {m['numpy']} ({m['blas']}), torch {m['torch'] or 'not used'}"
                 + (f" ({m['torch_threads']} threads)" if m["torch"] else ""))
    lines.append(f"n={settings['n']} samples, {settings['repeats']} timed epochs after 1 warm-up, median; "
                 f"systems alternated per repeat")
    lines.append("")

    def fmt_row(row):
        if len(row) < len(head):  # an error: free text after the batch column
            cells = [row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i]) for i in range(4)]
            return "  ".join(cells + [row[4]])
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines.append(fmt_row(head))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt_row(row) for row in rows)
    lines.append("")
    for note in notes:
        lines.append(f"* {note}")
    for r in results:
        if r.get("launches_per_step") is not None:
            lines.append(f"{r['config']}: {r['launches_per_step']:.1f} kernel launches per training step.")
        others = r.get("other_processes_cpu_s")
        if others is not None and others > 0.1 * r["timing_wall_s"]:
            lines.append(f"! {r['config']}: other processes used {others:.1f} CPU-s during its "
                         f"{r['timing_wall_s']:.1f} s of timing: the machine was not quiet; its figures are suspect.")
    lines.append("floor: NumPy float32 matmul of each Dense layer's X@W, X.T@dZ, dZ@W.T (no dX for the first layer) "
                 "at every step's shapes, same run. × floor = fastnn step time / floor.")
    if any(r.get("torch") for r in results):
        t_opts = sorted({r["torch"]["optimizer"] for r in results if r.get("torch")})
        lines.append(f"torch: eager nn.Sequential, optimizer {', '.join(t_opts)}; speed-up = torch time / fastnn time "
                     f"(> 1: fastnn faster).")
    if any(r.get("bf16") for r in results):
        path = next(r["bf16"]["path"] for r in results if r.get("bf16"))
        lines.append(f"bf16: fastnn Trainer(precision='bf16') (products on {path}); torch bf16: the same model under "
                     f"torch.autocast(bfloat16); bf16 speed-up = torch bf16 time / fastnn bf16 time.")
    lines.append("step alloc B: median traced bytes (tracemalloc: NumPy buffers + Python objects) newly live within "
                 "one step; peak MiB: tracemalloc peak over one epoch above its start (fit() included).")
    return "\n".join(lines)


def _write_json(path, payload):
    from .._files import atomic_write  # temporary file in the same folder, fsync, os.replace

    with atomic_write(path, "w") as f:
        json.dump(payload, f, indent=1, allow_nan=False)
        f.write("\n")


# ------------------------------------------------------------------ entry point
def main(argv=None):
    """Run the benchmark; returns the exit status (0 ok, 1 a configuration failed, 2 bad usage)."""
    argv = sys.argv[1:] if argv is None else [os.fspath(a) for a in argv]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"fastnn bench: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if args.n is None:
        args.n = 2000 if args.quick else 20000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.precision is None:
        args.precision = "both" if args.device == "cpu" else "fp32"
    problems = [f"--{k} must be >= 1; got {v}" for k, v in (("n", args.n), ("repeats", args.repeats),
                                                            ("threads", args.threads)) if v is not None and v < 1]
    if args.config.strip() == "all":
        names = list(CONFIGS)
    else:
        names = [c.strip() for c in args.config.split(",") if c.strip()]
        unknown = [c for c in names if c not in CONFIGS]
        if unknown or not names:
            problems.append(f"unknown --config {', '.join(unknown) or repr(args.config)}; choose from "
                            f"{', '.join(CONFIGS)} or 'all'")
    if problems:
        print(f"fastnn bench: error: {'; '.join(problems)}", file=sys.stderr)
        return 2

    import fastnn as fnn
    from ..backends import get_backend

    try:
        get_backend(args.device, "fastnn bench")
    except Exception as exc:  # ImportError while fastnn._ext is not built; RuntimeError for cuda
        hint = " (build it with `python setup.py build_ext --inplace`, or use --device reference)" \
            if args.device == "cpu" else ""
        print(f"fastnn bench: error: device {args.device!r} is not usable: {type(exc).__name__}: {exc}{hint}",
              file=sys.stderr)
        return 2

    threads, thread_source, thread_note = _threads(fnn, args.threads)
    policy = _thread_policy(args.device, args.thread_policy)
    if thread_note:
        print(f"fastnn bench: note: {thread_note}", file=sys.stderr)
    torch = None
    if args.compare == "torch":
        torch, why = _import_torch()
        if torch is None:
            print(f"fastnn bench: note: --compare torch skipped: torch cannot be imported ({why})", file=sys.stderr)
        elif threads is not None:
            torch.set_num_threads(threads)

    machine = _machine(fnn, args.device, threads, thread_source, torch)
    machine["thread_policy"] = policy
    settings = {"configs": names, "device": args.device, "n": args.n, "repeats": args.repeats, "warmup_epochs": 1,
                "threads_requested": args.threads, "compare": args.compare if torch is not None else None,
                "quick": args.quick, "optimizer": args.optimizer, "thread_policy": args.thread_policy,
                "precision": args.precision}
    results = []
    status = 0
    for name in names:
        cfg = CONFIGS[name]
        base = {"config": name, "layers": list(cfg["layers"]), "layers_text": _layers_text(cfg), "batch": cfg["batch"]}
        print(f"fastnn bench: {name} ...", file=sys.stderr, flush=True)
        try:
            results.append(run_config(fnn, name, cfg, args, torch))
        except Exception as exc:  # report and go on with the other configurations
            status = 1
            results.append({**base, "status": "error", "reason": f"{type(exc).__name__}: {exc}"})
            print(f"fastnn bench: {name}: error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    print(format_table(results, machine, settings), flush=True)
    if args.json:
        _write_json(args.json, {"schema": SCHEMA, "machine": machine, "settings": settings, "results": results})
        print(f"wrote {args.json}")
    return status


__all__ = ["CONFIGS", "GemmFloor", "build_parser", "main", "run_config"]


if __name__ == "__main__":
    sys.exit(main())
