"""Data-parallel training over MPI on this machine: time per epoch of one process x T threads
against K ranks x 1 thread (same global batch), and the allreduce's share of a step.

    python bench/bench_mpi.py                      # medium and large, 1 x 2 threads against 2 x 1
    python bench/bench_mpi.py --config medium --ranks 1,2,3 --rows 4096 --epochs 1

The driver launches ``mpiexec -n K python bench/bench_mpi.py --worker ...`` for each row of the
table; each worker trains synthetic data (the bench configurations of fastnn.tools.bench,
float32), and rank 0 reports seconds per epoch and the mean time of an allreduce of the flat
gradient buffer (timed apart, after training). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np


def worker(args):
    from mpi4py import MPI

    import fastnn as fnn
    from fastnn.tools.bench import CONFIGS

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    fnn.set_num_threads(args.threads)
    cfg = CONFIGS[args.config]
    sizes = cfg["layers"]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], args.rows)
    layers = [fnn.layers.Dense(h, activation="relu") for h in sizes[1:-1]] + [fnn.layers.Dense(sizes[-1])]
    model = fnn.Sequential(layers, input_dim=sizes[0], seed=0)
    name, options = cfg["optimizer"]
    batch = cfg["batch"] // size  # the same global batch for every K
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.OPTIMIZERS[name](**options), batch_size=batch, seed=0,
                          distributed="mpi" if size > 1 else None)
    trainer.fit(X, y, epochs=1, verbose=0)  # warm-up: buffers, BLAS, the communicator
    comm.Barrier()
    t0 = time.perf_counter()
    trainer.fit(X, y, epochs=args.epochs, verbose=0)
    comm.Barrier()
    per_epoch = (time.perf_counter() - t0) / args.epochs
    steps = -(-args.rows // cfg["batch"])
    grads = model.grads
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(args.reduces):
        comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
    allreduce = (time.perf_counter() - t0) / args.reduces if size > 1 else 0.0
    if rank == 0:
        print(json.dumps({"config": args.config, "ranks": size, "threads": args.threads, "epoch_s": per_epoch,
                          "step_ms": per_epoch / steps * 1e3, "allreduce_ms": allreduce * 1e3,
                          "bytes": int(grads.nbytes), "rows_per_s": args.rows / per_epoch}), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="medium,large", help="comma list of bench configurations")
    p.add_argument("--ranks", default="1,2", help="comma list of K; K = 1 runs with --threads-single threads")
    p.add_argument("--threads-single", type=int, default=2, help="threads of the one-process run (default 2)")
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--reduces", type=int, default=20, help="allreduces timed after training")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.config = args.config.split(",")[0]
        return worker(args)
    mpiexec = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        sys.exit("bench_mpi: no mpiexec; pip install 'fastnn[mpi]'")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    print(f"{'config':<8} {'K x threads':>11} {'s/epoch':>8} {'rows/s':>9} {'step ms':>8} {'allreduce ms':>13} "
          f"{'share':>6} {'grad MB':>8}")
    for config in args.config.split(","):
        for k in (int(v) for v in args.ranks.split(",")):
            threads = args.threads_single if k == 1 else 1
            cmd = [mpiexec, "-n", str(k), sys.executable, os.path.abspath(__file__), "--worker", "--config", config,
                   "--threads", str(threads), "--rows", str(args.rows), "--epochs", str(args.epochs),
                   "--reduces", str(args.reduces)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
            if out.returncode:
                sys.exit(f"bench_mpi: {' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            share = r["allreduce_ms"] / r["step_ms"]
            print(f"{config:<8} {f'{k} x {threads}':>11} {r['epoch_s']:8.3f} {r['rows_per_s']:9,.0f} "
                  f"{r['step_ms']:8.2f} {r['allreduce_ms']:13.3f} {share:6.1%} {r['bytes'] / 1e6:8.2f}", flush=True)


if __name__ == "__main__":
    main()
