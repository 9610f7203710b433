"""Where a training step's time goes, phase by phase, for bench/TARGETS.md's configurations.

    PYTHONPATH=. python bench/profile_step.py [--config medium,large|all] [--threads 2] [--steps 300]
                                              [--precision fp32|bf16]

Replays the Trainer's step on the compiled CPU backend with a timer around each phase: the
gather of the shuffled minibatch, the forward pass, the fused loss, the backward pass and the
optimizer update; beside them the forward and backward GEMMs alone (NumPy matmul at the same
shapes: the GEMM floor split by pass) and a bare copy of the parameters (the bandwidth an
update is bound by: Adam moves 28 bytes per float32 parameter, SGD with momentum 20). Medians
over the steps, µs. The phases are timed separately, so their sum exceeds a real step by the
timer calls (~0.1 µs each). Prints; never asserts.
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
except ImportError:  # run from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fastnn as fnn

from fastnn.tools.bench import CONFIGS, GemmFloor, _data, _fastnn_model, _fastnn_optimizer  # noqa: E402

PHASES = ("gather", "forward", "loss", "backward", "update")
#: bytes an update moves per parameter: reads and writes of p, g and the state
_UPDATE_BYTES = {"sgd": 20, "adam": 28, "adamw": 28}


def profile(name, steps, seed=0, precision="fp32"):
    cfg = CONFIGS[name]
    n = max(steps, 4) * cfg["batch"]
    X, y = _data(cfg, n)
    model = _fastnn_model(fnn, cfg, "cpu")
    opt = _fastnn_optimizer(fnn, cfg["optimizer"])
    trainer = fnn.Trainer(model, "mse" if cfg["loss"] == "mse" else "cross_entropy", opt,
                          batch_size=cfg["batch"], shuffle=True, seed=seed, precision=precision)
    trainer.fit(X, y, epochs=1, verbose=0)  # builds buffers, optimizer state
    be, bs = model.backend, cfg["batch"]
    buffers, _ = trainer._get_buffers(bs, X, y, None)
    views = buffers.get(bs)
    acc = trainer._loss_acc
    scale = 1.0 / trainer.loss.count(bs, model.n_out)
    order = np.random.default_rng(seed).permutation(n)
    times = {p: [] for p in PHASES}
    clock = time.perf_counter
    scope = model.training_precision(precision)  # as Trainer.fit does for its length
    scope.__enter__()
    span = be.solo_span(model.n_params)  # as Trainer.fit does for each epoch
    span.__enter__()
    for s in range(n // bs):
        idx = order[s * bs:(s + 1) * bs]
        t0 = clock()
        xb = be.take_rows(X, idx, out=views["x"])
        yb = be.take_rows(y, idx, out=views["y"])
        t1 = clock()
        out = model.forward(xb, training=True, logits=trainer._fused)
        t2 = clock()
        trainer.loss(be, out, yb, scale=scale, loss_out=acc, grad=views["grad"])
        t3 = clock()
        model.backward(views["grad"])
        t4 = clock()
        opt.step()
        t5 = clock()
        for p, a, b in zip(PHASES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
            times[p].append((b - a) * 1e6)
    span.__exit__(None, None, None)
    scope.__exit__(None, None, None)
    res = {p: statistics.median(v) for p, v in times.items()}
    floor = GemmFloor(cfg["layers"], [bs] * 50)
    fwd_n = len(cfg["layers"]) - 1
    fwd, bwd = [], []
    for _ in range(7):
        calls = floor._calls[bs]
        for part, lst in ((calls[:fwd_n], fwd), (calls[fwd_n:], bwd)):
            t0 = clock()
            for _ in range(20):
                for a, b, o in part:
                    np.matmul(a, b, out=o)
            lst.append((clock() - t0) / 20 * 1e6)
    res["gemm_forward"], res["gemm_backward"] = statistics.median(fwd), statistics.median(bwd)
    src, dst = np.ones(model.params.size, np.float32), np.empty(model.params.size, np.float32)
    cp = []
    for _ in range(21):
        t0 = clock()
        np.copyto(dst, src)
        cp.append((clock() - t0) * 1e6)
    res["copy_params"] = statistics.median(cp)
    res["params"] = model.n_params
    res["update_bytes"] = _UPDATE_BYTES[cfg["optimizer"][0]] * model.n_params
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="all")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="the Trainer's precision (bf16: the Dense products in bfloat16; the floor stays float32)")
    args = ap.parse_args(argv)
    if args.threads:
        fnn.set_num_threads(args.threads)
    names = list(CONFIGS) if args.config == "all" else args.config.split(",")
    head = ["config", *PHASES, "step", "gemm fwd", "gemm bwd", "floor", "outside GEMMs", "params",
            "update GB/s", "copy GB/s"]
    print(f"threads {fnn.get_num_threads()}; µs, median over the steps")
    print("  ".join(f"{h:>10}" for h in head))
    for name in names:
        r = profile(name, args.steps, precision=args.precision)
        step = sum(r[p] for p in PHASES)
        floor = r["gemm_forward"] + r["gemm_backward"]
        cells = [name] + [f"{r[p]:.1f}" for p in PHASES] + [f"{step:.1f}", f"{r['gemm_forward']:.1f}",
                                                            f"{r['gemm_backward']:.1f}", f"{floor:.1f}",
                                                            f"{step - floor:.1f}", f"{r['params']:,}",
                                                            f"{r['update_bytes'] / r['update'] / 1e3:.1f}",
                                                            f"{8 * r['params'] / r['copy_params'] / 1e3:.1f}"]
        print("  ".join(f"{c:>10}" for c in cells), flush=True)


if __name__ == "__main__":
    sys.exit(main())
