"""Record PyTorch's optimizer trajectories and layer outputs as golden files, so that the tests
compare fastnn with torch step by step in CI, where torch is not installed.

Run it by hand, where torch is installed (it imports torch and numpy only, never fastnn):

    python tests/golden/record_torch.py            # rewrites optim_torch.npz and layers_torch.npz
    python tests/golden/record_torch.py --check    # compares the files with this torch; writes nothing

Re-record after adding or changing an entry of optim_db.OPTIM_DB (the tests fail, asking for it,
when an entry has no trajectory or its recorded configuration differs). Everything is float64.

optim_torch.npz holds, for every OptimCase ``key``:
    ``{key}.config``          JSON of what torch ran (class, options, lr, gamma, steps)
    ``{key}.lr``              (STEPS,) the learning rate given to torch at each step
    ``{key}.params``          (STEPS, N_PARAMS) the parameters after each step
    ``{key}.state.{name}``    (STEPS, N_PARAMS) each per-parameter state buffer after each step
    ``{key}.scalar.{name}``   (STEPS,) each scalar state after each step (NAdam's mu_product)
and, shared by all: ``start`` (N_PARAMS,) and ``grads`` (STEPS, N_PARAMS), ``torch_version``.

layers_torch.npz holds torch.nn.init.calculate_gain for a few activations, the standard
deviation of a kaiming_normal_ draw, one Dense pass per activation: x @ w + b, then the
activation, forward and backward (torch.nn.functional, autograd), and BatchNorm1d over a few
training steps (outputs, gradients, running statistics) and one evaluation step.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

try:  # run as a script: this folder is on sys.path
    from optim_db import GAMMA, GOLDEN_FILE, N_PARAMS, OPTIM_DB, STEPS
except ImportError:  # loaded by tests/test_optim.py, with tests/ on sys.path
    from golden.optim_db import GAMMA, GOLDEN_FILE, N_PARAMS, OPTIM_DB, STEPS

HERE = os.path.dirname(os.path.abspath(__file__))

LAYERS_FILE = "layers_torch.npz"

#: (fastnn activation name, alpha, torch function of the pre-activation z)
ACTIVATIONS = [
    ("identity", 0.0, lambda z: z),
    ("sigmoid", 0.0, torch.sigmoid),
    ("tanh", 0.0, torch.tanh),
    ("relu", 0.0, F.relu),
    ("leaky_relu", 0.2, lambda z: F.leaky_relu(z, 0.2)),
    ("elu", 1.3, lambda z: F.elu(z, 1.3)),
    ("gelu", 0.0, F.gelu),  # exact (erf) form
    ("softplus", 0.0, F.softplus),  # beta 1; inputs stay far below its linear threshold (20)
    ("silu", 0.0, F.silu),
    ("softmax", 0.0, lambda z: F.softmax(z, dim=1)),
]
#: (fastnn activation name, alpha, torch nonlinearity name, its parameter)
GAINS = [("identity", 0.0, "linear", None), ("sigmoid", 0.0, "sigmoid", None), ("tanh", 0.0, "tanh", None),
         ("relu", 0.0, "relu", None), ("leaky_relu", 0.01, "leaky_relu", 0.01),
         ("leaky_relu", 0.2, "leaky_relu", 0.2)]
#: kaiming_normal_ draw: torch's (out, in) weight, so fan_in = KAIMING_SHAPE[1]
KAIMING_SHAPE, KAIMING_SEED = (300, 600), 0
#: Dense pass: n_samples, n_in, n_out
DENSE_SHAPE = (6, 4, 5)
#: BatchNorm1d: training steps, rows per batch, features, momentum, eps
BATCHNORM = dict(steps=3, rows=8, features=5, momentum=0.3, eps=1e-3)


def inputs():
    """Start and gradients shared by every trajectory: standard normal, the gradients shrinking
    by 0.9 a step (so that AMSGrad's running maximum and Adamax's infinity norm keep old
    values) and with a few exact zeros (a parameter without gradient for a step)."""
    rng = np.random.default_rng(2)
    start = rng.standard_normal(N_PARAMS)
    grads = rng.standard_normal((STEPS, N_PARAMS)) * 0.9 ** np.arange(STEPS)[:, None]
    grads[5, :4] = 0.0
    grads[17, ::3] = 0.0
    return start, grads


def record_case(case, start, grads):
    """One OptimCase's trajectory under torch from ``start`` with ``grads`` (one row a step):
    {'config', 'lr', 'params', 'state.{name}', 'scalar.{name}'} (see the module docstring).
    Run it inside ``float64_default()``."""
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = case.make_torch(torch, [p], case.lr)
    out = {"config": np.array(case.torch_config()), "lr": [], "params": []}
    for t, g in enumerate(grads):
        lr = case.lr * GAMMA ** t
        opt.param_groups[0]["lr"] = lr
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out["lr"].append(lr)
        out["params"].append(p.detach().numpy().copy())
        for name, value in opt.state[p].items():
            if name == "step" or value is None:  # SGD without momentum keeps a None buffer
                continue
            value = np.array(value.detach().numpy() if torch.is_tensor(value) else value, np.float64)
            kind = "state" if value.size == len(start) else "scalar"
            out.setdefault(f"{kind}.{name}", []).append(value.reshape(-1) if kind == "state" else float(value))
    return {k: np.asarray(v) for k, v in out.items()}


def record_optim():
    """{name: array} of every OptimCase's trajectory (see the module docstring)."""
    start, grads = inputs()
    out = {"start": start, "grads": grads, "torch_version": np.array(torch.__version__)}
    for case in OPTIM_DB:
        out.update({f"{case.key}.{k}": v for k, v in record_case(case, start, grads).items()})
    return out


def record_layers():
    """{name: array}: gains, the kaiming_normal_ draw's std and a Dense pass per activation."""
    out = {"torch_version": np.array(torch.__version__)}
    for activation, alpha, name, param in GAINS:
        out[f"gain.{activation}.{alpha}"] = np.array(torch.nn.init.calculate_gain(name, param))
    w = torch.empty(*KAIMING_SHAPE)
    torch.nn.init.kaiming_normal_(w, nonlinearity="relu", generator=torch.Generator().manual_seed(KAIMING_SEED))
    out["kaiming_normal.std"] = np.array(float(w.std()))
    out["kaiming_normal.shape"] = np.array(KAIMING_SHAPE)
    rng = np.random.default_rng(5)
    n, n_in, n_out = DENSE_SHAPE
    x, w, b, dy = (rng.standard_normal(s) for s in ((n, n_in), (n_in, n_out), (n_out,), (n, n_out)))
    out.update({"dense.x": x, "dense.w": w, "dense.b": b, "dense.dy": dy})
    for activation, alpha, fn in ACTIVATIONS:
        tx, tw, tb = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w, b))
        y = fn(tx @ tw + tb)
        y.backward(torch.tensor(dy))
        out[f"dense.{activation}.alpha"] = np.array(alpha)
        for name, value in (("y", y), ("dx", tx.grad), ("dw", tw.grad), ("db", tb.grad)):
            out[f"dense.{activation}.{name}"] = value.detach().numpy().copy()
    out.update(record_batchnorm())
    return out


def record_batchnorm():
    """torch.nn.BatchNorm1d (float64, gamma and beta random): BATCHNORM['steps'] training steps
    (each a forward and a backward of a random dy: y, dx, dgamma, dbeta, then the running
    statistics), then one step in evaluation mode, under ``batchnorm.*`` keys."""
    cfg = BATCHNORM
    rng = np.random.default_rng(7)
    n, k = cfg["rows"], cfg["features"]
    gamma, beta = rng.uniform(0.5, 2.0, k), rng.standard_normal(k)
    x = rng.normal(3.0, 2.0, (cfg["steps"] + 1, n, k))  # far from zero mean and unit variance
    dy = rng.standard_normal((cfg["steps"] + 1, n, k))
    bn = torch.nn.BatchNorm1d(k, eps=cfg["eps"], momentum=cfg["momentum"], dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
    out = {"batchnorm.momentum": np.array(cfg["momentum"]), "batchnorm.eps": np.array(cfg["eps"]),
           "batchnorm.gamma": gamma, "batchnorm.beta": beta, "batchnorm.x": x, "batchnorm.dy": dy}
    rows = {name: [] for name in ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var")}
    for t in range(cfg["steps"] + 1):
        bn.train(t < cfg["steps"])  # the last step evaluates
        bn.zero_grad()
        tx = torch.tensor(x[t], requires_grad=True)
        y = bn(tx)
        y.backward(torch.tensor(dy[t]))
        for name, value in (("y", y), ("dx", tx.grad), ("dgamma", bn.weight.grad), ("dbeta", bn.bias.grad),
                            ("running_mean", bn.running_mean), ("running_var", bn.running_var)):
            rows[name].append(value.detach().numpy().copy())
    out.update({f"batchnorm.{name}": np.array(values) for name, values in rows.items()})
    return out


@contextlib.contextmanager
def float64_default():
    """torch's default dtype float64 inside (else torch keeps scalar state, NAdam's mu_product,
    in float32)."""
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(default_dtype)


def compare(path, new):
    """Differences between the golden file at ``path`` and freshly recorded arrays, as lines."""
    old = dict(np.load(path))
    lines = [f"{k}: only in the file" for k in sorted(set(old) - set(new))]
    lines += [f"{k}: not in the file" for k in sorted(set(new) - set(old))]
    for k in sorted(set(old) & set(new)):
        if k == "torch_version":
            continue
        a, b = old[k], new[k]
        if a.dtype.kind in "US" or b.dtype.kind in "US":
            if str(a) != str(b):
                lines.append(f"{k}: {a} != {b}")
        elif a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=1e-14):
            lines.append(f"{k}: max difference {np.max(np.abs(a - b)) if a.shape == b.shape else 'shape'}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare the files with this torch; write nothing")
    args = parser.parse_args(argv)
    with float64_default():
        files = {GOLDEN_FILE: record_optim(), LAYERS_FILE: record_layers()}
    status = 0
    for name, arrays in files.items():
        path = os.path.join(HERE, name)
        if args.check:
            lines = compare(path, arrays)
            print(f"{name}: {'matches' if not lines else 'DIFFERS'} torch {torch.__version__}")
            for line in lines:
                print("  " + line)
            status |= bool(lines)
        else:
            np.savez_compressed(path, **arrays)
            print(f"wrote {path} ({os.path.getsize(path)} bytes, torch {torch.__version__})")
    return status


if __name__ == "__main__":
    sys.exit(main())
