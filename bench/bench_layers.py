"""Throughput of the BatchNorm and Dropout kernels (fastnn's CPU backend), forward + backward,
in GB/s of the memory they must move, next to the copy bandwidth measured in the same run.

    PYTHONPATH=. python bench/bench_layers.py [--shapes 128x256,256x1024,1024x1024]
                                              [--dtype float32] [--repeats 7] [--compare torch]

Bytes per element (4 per float32 value, 1 per mask byte), the least each pass must move:
BatchNorm forward reads x twice (statistics, then normalize) and writes y: 3 values; backward
reads dy and x twice (sums, then dx) and writes dx: 5 values. Dropout forward reads x, writes y
and the uint8 mask; backward reads dy and the mask and writes dx (in place over dy, as the layer
does). Copy: np.copyto of an array of the same size (read + write), and of 64 MiB (the DRAM
bandwidth). With ``--compare torch``, torch.nn.functional's batch_norm and dropout, forward and
autograd backward, on one thread as fastnn's kernels. Also timed: the mask generator alone
(Philox4x32-10, ns per word), and the forward without storing the mask, which is what a backward
that regenerated the mask would cost.
Each figure is the median over ``repeats`` runs of a loop of calls lasting ~50 ms. Prints, never
asserts.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

try:
    import fastnn  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout: use the package beside this folder
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastnn._ext import dropout as _dropout  # noqa: E402
from fastnn.backends import get_backend  # noqa: E402
from _timing import calibrated_per_call  # noqa: E402  (bench/_timing.py, beside this script)


def copy_gbs(nbytes, repeats):
    """GB/s of np.copyto between two arrays of nbytes each (bytes read + written)."""
    a = np.ones(nbytes // 4, np.float32)
    b = np.empty_like(a)
    return 2 * a.nbytes / calibrated_per_call(lambda: np.copyto(b, a), repeats) / 1e9


def fastnn_kernels(be, n, m, dtype, repeats):
    """{name: (seconds per call, bytes moved)} of the BatchNorm and Dropout passes at (n, m)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, m)).astype(dtype)
    dy = rng.standard_normal((n, m)).astype(dtype)
    gamma, beta = np.ones(m, dtype), np.zeros(m, dtype)
    rm, rv = np.zeros(m, dtype), np.ones(m, dtype)
    mean, inv_std = np.empty(m, dtype), np.empty(m, dtype)
    y, dx = np.empty_like(x), np.empty_like(x)
    dgamma, dbeta = np.empty(m, dtype), np.empty(m, dtype)
    mask = np.empty((n, m), np.uint8)
    v, e = np.dtype(dtype).itemsize, n * m
    step = iter(range(10**9))

    def bn_fwd():
        be.batchnorm_forward(x, gamma, beta, rm, rv, training=True, mean=mean, inv_std=inv_std, out=y)

    def bn_bwd():
        be.batchnorm_backward(dy, x, gamma, mean, inv_std, dgamma=dgamma, dbeta=dbeta, dx=dx)

    def do_fwd(with_mask=True):
        be.dropout_forward(x, rate=0.2, key=1, step=next(step), mask=mask if with_mask else None, out=y)

    def do_bwd():
        be.dropout_backward(dx, mask, rate=0.2, out=dx)

    words = np.empty(4 * ((e + 3) // 4), np.uint32)
    out = {
        "batchnorm forward": (calibrated_per_call(bn_fwd, repeats), 3 * v * e),
        "batchnorm backward": (calibrated_per_call(bn_bwd, repeats), 5 * v * e),
        "dropout forward": (calibrated_per_call(do_fwd, repeats), (2 * v + 1) * e),
        "dropout backward": (calibrated_per_call(do_bwd, repeats), (2 * v + 1) * e),
        "dropout forward, no mask": (calibrated_per_call(lambda: do_fwd(False), repeats), 2 * v * e),
        "philox words": (calibrated_per_call(lambda: _dropout.random_words(1, next(step), 0, words), repeats),
                         4 * words.size),
    }
    out["batchnorm fwd+bwd"] = tuple(map(sum, zip(out["batchnorm forward"], out["batchnorm backward"])))
    out["dropout fwd+bwd"] = tuple(map(sum, zip(out["dropout forward"], out["dropout backward"])))
    return out


def torch_kernels(torch, n, m, dtype, repeats):
    """Seconds per forward + backward of torch's batch_norm and dropout (autograd, same shape)."""
    tdtype = getattr(torch, np.dtype(dtype).name)
    x = torch.randn(n, m, dtype=tdtype, requires_grad=True)
    dy = torch.randn(n, m, dtype=tdtype)
    gamma = torch.ones(m, dtype=tdtype, requires_grad=True)
    beta = torch.zeros(m, dtype=tdtype, requires_grad=True)
    rm, rv = torch.zeros(m, dtype=tdtype), torch.ones(m, dtype=tdtype)
    F = torch.nn.functional

    def bn():
        F.batch_norm(x, rm, rv, gamma, beta, training=True).backward(dy)

    def do():
        F.dropout(x, 0.2, training=True).backward(dy)

    return {"batchnorm fwd+bwd": calibrated_per_call(bn, repeats),
            "dropout fwd+bwd": calibrated_per_call(do, repeats)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="128x256,256x1024,1024x1024", help="comma list of ROWSxFEATURES")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--compare", default=None, choices=("torch",), help="also time PyTorch (if importable)")
    args = p.parse_args(argv)
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")]
    be = get_backend("cpu")
    torch = None
    if args.compare == "torch":
        try:
            import torch
        except ImportError as exc:
            print(f"note: --compare torch skipped ({exc})")
    if torch is not None:  # fastnn's elementwise kernels run on one thread: compare like with like
        torch.set_num_threads(1)
    print(f"fastnn {fastnn.__version__} layer kernels, {args.dtype}, CPU backend, one thread"
          f"{' (torch too)' if torch is not None else ''}; median of {args.repeats}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"copy bandwidth (np.copyto, 64 MiB): {copy_gbs(64 << 20, args.repeats):.1f} GB/s\n")
    head = f"{'shape':>10}  {'kernel':<26}{'µs':>10}{'GB/s':>8}{'× copy':>8}{'ns/elem':>9}"
    if torch is not None:
        head += f"{'torch µs':>10}{'speed-up':>10}"
    print(head)
    for n, m in shapes:
        e = n * m
        copy = copy_gbs(e * np.dtype(args.dtype).itemsize, args.repeats)
        ours = fastnn_kernels(be, n, m, args.dtype, args.repeats)
        theirs = torch_kernels(torch, n, m, args.dtype, args.repeats) if torch is not None else {}
        print(f"{f'{n}x{m}':>10}  {'copy (same size)':<26}{'':>10}{copy:8.1f}{1.0:8.2f}")
        for name, (sec, nbytes) in ours.items():
            gbs = nbytes / sec / 1e9
            line = f"{'':>10}  {name:<26}{sec * 1e6:10.1f}{gbs:8.1f}{gbs / copy:8.2f}{sec / e * 1e9:9.2f}"
            if name in theirs:
                line += f"{theirs[name] * 1e6:10.1f}{theirs[name] / sec:9.2f}×"
            print(line)
    print("\nGB/s: bytes each pass must move (see the module docstring) / time; × copy: that over np.copyto's "
          "GB/s at the same size. 'dropout forward, no mask' is what regenerating the mask in the backward "
          "would cost instead of reading it back ('dropout backward').")


if __name__ == "__main__":
    main()
