"""Thread settings side by side: fastnn's training step on the pool with the 'fixed' policy, the
pool with the 'adaptive' policy (the default), and one thread, alternated in one process.

    PYTHONPATH=. python bench/bench_threads.py [--config small,medium|all] [--n 5000] [--rounds 5]
                                               [--threads 2]

Per configuration (bench/TARGETS.md's model, optimizer and batch, shuffled synthetic data): one warm-up
epoch, then ``rounds`` rounds; each round runs every arm, starting with a different one each
round, as one settling epoch (the adaptive policy measures both choices in it) and one timed
epoch. Prints µs per step, median and best over the rounds. Run it on a quiet machine, and again
with another busy process (e.g. ``python -c "while True: pass" &``): bench/TARGETS.md asks that a run on a
loaded machine be no slower than the same run on one thread. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

try:
    import fastnn as fnn
except ImportError:  # run from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fastnn as fnn

from fastnn.backends import cpu  # noqa: E402
from fastnn.tools.bench import CONFIGS, _data, _fastnn_model, _fastnn_optimizer, _loadavg, _steps  # noqa: E402


def _arms(pool):
    return [(f"fixed {pool}", pool, "fixed"), (f"adaptive {pool}", pool, "adaptive"), ("1 thread", 1, "fixed")]


def run(name, n, rounds, pool):
    cfg = CONFIGS[name]
    X, y = _data(cfg, n)
    model = _fastnn_model(fnn, cfg, "cpu")
    trainer = fnn.Trainer(model, "mse" if cfg["loss"] == "mse" else "cross_entropy",
                          _fastnn_optimizer(fnn, cfg["optimizer"]), batch_size=cfg["batch"], shuffle=True, seed=0)
    steps = len(_steps(n, cfg["batch"]))
    trainer.fit(X, y, epochs=1, verbose=0)
    arms = _arms(pool)
    times = {label: [] for label, _, _ in arms}
    for r in range(rounds):
        k = r % len(arms)
        for label, threads, policy in arms[k:] + arms[:k]:
            fnn.set_num_threads(threads)
            cpu.set_thread_policy(policy)
            trainer.fit(X, y, epochs=1, verbose=0)  # settle: thread wake-up, the adaptive policy's timings
            t0 = time.perf_counter()
            trainer.fit(X, y, epochs=1, verbose=0)
            times[label].append((time.perf_counter() - t0) / steps * 1e6)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="all", help="comma list of configurations, or 'all'")
    ap.add_argument("--n", type=int, default=5000, help="samples per epoch (default 5000)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="pool size of the first two arms (default: "
                    "fastnn.get_num_threads())")
    args = ap.parse_args(argv)
    pool = args.threads or fnn.get_num_threads() or 2
    policy0, threads0 = cpu.get_thread_policy(), fnn.get_num_threads()
    names = list(CONFIGS) if args.config == "all" else [c.strip() for c in args.config.split(",")]
    print(f"µs per step, median (best) of {args.rounds} alternated rounds, n={args.n}; loadavg {_loadavg()}")
    print(f"{'config':8}" + "".join(f"{label:>24}" for label, _, _ in _arms(pool)))
    try:
        for name in names:
            times = run(name, args.n, args.rounds, pool)
            cells = [f"{statistics.median(v):,.1f} ({min(v):,.1f})" for v in times.values()]
            print(f"{name:8}" + "".join(f"{c:>24}" for c in cells), flush=True)
    finally:
        fnn.set_num_threads(threads0)
        cpu.set_thread_policy(policy0)
    print(f"loadavg {_loadavg()}")


if __name__ == "__main__":
    sys.exit(main())
