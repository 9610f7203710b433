"""Optimizer-update benchmark: fused update throughput against the machine's copy bandwidth, and
the update's share of a training step. Prints; never asserts.

    python setup.py build_ext --inplace
    PYTHONPATH=. python bench/bench_optim.py [--sizes 1e5,1e6,1e7] [--threads 2] [--repeats 7]

1. Throughput. For each size n (float32), ``optimizer.step()`` on an ``fnn.optim.Parameters``
   holder on the cpu device (the path training takes: schedule, per-step scalars, one kernel
   call) for SGD with momentum 0.9 and for Adam, as GB/s of the bytes the update must move: SGD
   momentum reads p, g, buf and writes p, buf (20 B/param); Adam reads p, g, m, v and writes p,
   m, v (28 B/param). Against it, the copy bandwidth of the same run: ``np.copyto`` of an n-element
   float32 buffer (8 B/param, read + write). bench/TARGETS.md's target: >= 70 % of copy at 1e6-1e7.
   Also timed: the separate passes a fused update could absorb (clipping by value, 8 B/param;
   the L1/L2 penalty gradient, 12 B/param), to size what folding them in would save.
2. Share. bench/TARGETS.md's medium configuration (784-512-512-10, batch 128, Adam, N = 20,000 synthetic
   samples): µs per training step (median epoch of ``Trainer.fit`` / steps) and µs per
   ``optimizer.step()`` on the same model; the share is their ratio.

Each figure is the median over ``repeats`` timings; compare figures only within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

try:
    import fastnn as fnn
except ImportError:  # run from a checkout: use the package beside this folder
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fastnn as fnn
from fastnn.tools.bench import _cpu_seconds
from _timing import calibrated_per_call  # bench/_timing.py, beside this script

#: bytes moved per float32 parameter (read + written)
BYTES = {"sgd momentum": 20, "adam": 28, "copy": 8, "clip_value": 8, "penalty grad": 12}


def _update(optimizer, n):
    x = fnn.optim.Parameters(np.random.default_rng(0).standard_normal(n), device="cpu", dtype="float32")
    x.grads[:] = np.random.default_rng(1).standard_normal(n)
    optimizer.bind(x)
    return optimizer.step


def throughput(sizes, repeats):
    backend = fnn.optim.Parameters([0.0], device="cpu").backend
    rows = []
    for n in sizes:
        src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
        w, g = np.random.default_rng(2).standard_normal((2, n)).astype(np.float32)
        cases = {
            "copy": lambda dst=dst, src=src: np.copyto(dst, src),
            "sgd momentum": _update(fnn.optim.SGD(lr=1e-3, momentum=0.9), n),
            "adam": _update(fnn.optim.Adam(lr=1e-6), n),
            "clip_value": lambda g=g: backend.clip_(g, 1.0),
            "penalty grad": lambda w=w, g=g: backend.penalty(w, g, l1=0.0, l2=1e-12),
        }
        seconds = {name: calibrated_per_call(fn, repeats) for name, fn in cases.items()}
        rows.append((n, {name: (s, BYTES[name] * n / s / 1e9) for name, s in seconds.items()}))
    return rows


def medium_share(n, repeats):
    """(params, µs per training step, µs per optimizer.step()) of bench/TARGETS.md's medium configuration,
    the two timed alternately so that a disturbance hits both."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 784)).astype(np.float32)
    y = rng.integers(0, 10, n)
    model = fnn.Sequential([fnn.layers.Dense(512, activation="relu"), fnn.layers.Dense(512, activation="relu"),
                            fnn.layers.Dense(10)], input_dim=784, seed=0, device="cpu")
    optimizer = fnn.optim.Adam(lr=1e-3)
    trainer = fnn.Trainer(model, "cross_entropy", optimizer, batch_size=128, seed=0)
    trainer.fit(X, y, epochs=1, verbose=0)  # warm-up
    steps = -(-n // 128)
    epochs, updates = [], []
    for _ in range(repeats):
        time.sleep(0.2)  # let OpenBLAS's workers settle between timings
        t0 = time.perf_counter()
        trainer.fit(X, y, epochs=1, verbose=0)
        epochs.append((time.perf_counter() - t0) / steps)
        updates.append(calibrated_per_call(optimizer.step, 1))
    return model.n_params, statistics.median(epochs), statistics.median(updates)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1e5,1e6,1e7", help="parameter counts, comma-separated")
    p.add_argument("--threads", type=int, default=2, help="BLAS threads for the training step (bench/TARGETS.md: 2)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--n", type=int, default=20_000, help="samples of the medium configuration")
    args = p.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    fnn.set_num_threads(args.threads)
    machine0, own0 = _cpu_seconds()
    info = fnn.info()
    print(f"fastnn {fnn.__version__}; {info.get('cpu', '?')}; BLAS threads {fnn.get_num_threads()}; "
          f"update kernels serial (no OpenMP); median of {args.repeats}")

    print("\n1. fused update throughput, float32 (GB/s = bytes moved / time; % = of copy bandwidth)")
    head = f"{'params':>10} | {'copy GB/s':>9} | {'SGD-mom µs':>10} {'GB/s':>6} {'%':>5} | " \
           f"{'Adam µs':>9} {'GB/s':>6} {'%':>5} | {'clip_ µs':>8} {'GB/s':>6} | {'penalty µs':>10} {'GB/s':>6}"
    print(head)
    print("-" * len(head))
    for n, r in throughput(sizes, args.repeats):
        copy = r["copy"][1]
        print(f"{n:>10,} | {copy:>9.1f} | {r['sgd momentum'][0] * 1e6:>10.1f} {r['sgd momentum'][1]:>6.1f} "
              f"{100 * r['sgd momentum'][1] / copy:>4.0f}% | {r['adam'][0] * 1e6:>9.1f} {r['adam'][1]:>6.1f} "
              f"{100 * r['adam'][1] / copy:>4.0f}% | {r['clip_value'][0] * 1e6:>8.1f} {r['clip_value'][1]:>6.1f} | "
              f"{r['penalty grad'][0] * 1e6:>10.1f} {r['penalty grad'][1]:>6.1f}")
    print("bytes per parameter: copy 8, SGD momentum 20, Adam 28, clip_ 8, penalty gradient 12")

    n_params, step, update = medium_share(args.n, max(3, args.repeats // 2))
    print(f"\n2. medium 784-512-512-10, batch 128, Adam, {args.threads} threads, N = {args.n:,}: {n_params:,} params")
    print(f"   training step {step * 1e6:,.0f} µs; optimizer.step() {update * 1e6:,.0f} µs "
          f"({28 * n_params / update / 1e9:.1f} GB/s) = {100 * update / step:.1f} % of the step")
    machine1, own1 = _cpu_seconds()
    if machine0 is not None and (machine1 - machine0) - (own1 - own0) > 0.5:
        print(f"! other processes used {(machine1 - machine0) - (own1 - own0):.1f} CPU-s during this run: the machine "
              f"was not quiet; the figures are suspect.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
