"""Optimizers: the fused update equals the published rule step by step, state included, and
torch.optim's trajectories (recorded in tests/golden, so without torch too; live where torch is
installed); per-layer options, frozen layers, weight decay on weights only."""

import dataclasses
import functools
import importlib.util
import os
import pathlib

import numpy as np
import pytest

import fastnn as fnn
from _helpers import DEVICE, DEVICES
from golden.optim_db import GAMMA, GOLDEN_FILE, N_PARAMS, OPTIM_DB, STEPS

#: the options of every SGD configuration of the optimizer table
SGD_CASES = [case.kwargs for case in OPTIM_DB if case.name == "SGD"]


def sgd_rule(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD's documented algorithm, written out independently."""
    buf = None
    trajectory = []
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        trajectory.append((p.copy(), None if buf is None else buf.copy()))
    return trajectory


@pytest.mark.parametrize("kwargs", SGD_CASES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_sgd_matches_the_published_rule_step_by_step(backend, kwargs, dtype, tol):
    rng = np.random.default_rng(0)
    model = fnn.Sequential([fnn.layers.Dense(7, use_bias=False)], input_dim=5, seed=0, device=backend, dtype=dtype)
    opt = fnn.optim.SGD(lr=0.05, **kwargs)
    opt.bind(model)
    p0 = model.get_weights()[0].astype(np.float64)
    grads = [rng.standard_normal((5, 7)) for _ in range(20)]
    expected = sgd_rule(p0, grads, 0.05, **kwargs)
    for g, (p_exp, buf_exp) in zip(grads, expected):
        model.layers[0].grads["w"][...] = backend.asarray(g.astype(dtype))
        opt.step()
        np.testing.assert_allclose(model.get_weights()[0], p_exp, rtol=tol, atol=tol)
        if buf_exp is not None:
            buf = backend.to_numpy(opt.state_dict()["state"]["momentum_buffer"])[:35].reshape(5, 7)
            np.testing.assert_allclose(buf, buf_exp, rtol=tol, atol=tol)
    assert opt.step_count == 20


def test_weight_decay_skips_biases_and_layer_options_apply():
    model = fnn.Sequential([fnn.layers.Dense(2), fnn.layers.Dense(2)], input_dim=2, seed=0, device="reference",
                           dtype="float64")
    w0 = model.get_weights()
    opt = fnn.optim.SGD(lr=0.1, weight_decay=0.5)
    opt.set_layer_options(model.layers[1], lr=0.1)  # the head learns 10 times slower
    opt.bind(model)
    model.grads[:] = 0.0
    opt.step()  # zero gradients: only the decay moves the weights
    w1 = model.get_weights()
    np.testing.assert_allclose(w1[0], w0[0] * (1 - 0.1 * 0.5))
    np.testing.assert_array_equal(w1[1], w0[1])  # bias: no decay
    np.testing.assert_allclose(w1[2], w0[2] * (1 - 0.01 * 0.5))
    opt.set_layer_options(model.layers[0], weight_decay=0.0)
    opt.step()
    np.testing.assert_array_equal(model.get_weights()[0], w1[0])


def test_frozen_layer_is_skipped_and_segments_do_not_span_it():
    model = fnn.Sequential([fnn.layers.Dense(3), fnn.layers.Dense(3), fnn.layers.Dense(3)], input_dim=3, seed=0,
                           device="reference")
    model.layers[1].trainable = False
    opt = fnn.optim.SGD(lr=1.0)
    opt.bind(model)
    segments = opt.segments()
    frozen = [p for p in model.param_info if p.layer is model.layers[1]]
    for seg in segments:
        for p in frozen:
            assert seg.stop <= p.start or seg.start >= p.stop
    before = model.layers[1].weights
    model.grads[:] = 1.0
    opt.step()
    for a, b in zip(before, model.layers[1].weights):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.layers[0].weights[0], before[0])


def test_state_dict_round_trip():
    model = fnn.Sequential([fnn.layers.Dense(3)], input_dim=2, seed=0, device="reference")
    opt = fnn.optim.SGD(lr=0.1, momentum=0.9)
    opt.bind(model)
    model.grads[:] = 0.5
    opt.step()
    state = opt.state_dict()
    opt2 = fnn.optim.SGD(lr=0.1, momentum=0.9)
    opt2.bind(model)
    opt2.load_state_dict(state)
    assert opt2.step_count == 1
    np.testing.assert_array_equal(opt2.state["momentum_buffer"], opt.state["momentum_buffer"])


def test_optimizer_rebinds_after_the_model_changes():
    X, y = fnn.datasets.make_moons(n=40, seed=0)
    model = fnn.Sequential([fnn.layers.Dense(4, activation="relu"), fnn.layers.Dense(2)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9), batch_size=8)
    trainer.fit(X, y, epochs=1, verbose=0)
    model.pop()
    model.add(fnn.layers.Dense(2))  # a new head: new flat buffers
    trainer.fit(X, y, epochs=1, verbose=0)
    assert trainer.optimizer.state["momentum_buffer"].shape == model.params.shape


# ------------------------------------------------------------------ every optimizer, against torch
# OPTIM_DB (tests/golden/optim_db.py) lists every configuration of every rule, each with its fastnn and
# torch.optim constructors; golden/optim_torch.npz holds torch's trajectory for each (golden/record_torch.py
# records it), so that the step-by-step agreement runs without torch; where torch is installed the same
# table also runs against it live.
GOLDEN_DIR = pathlib.Path(__file__).parent / "golden"
#: devices of the comparisons with torch; in the CUDA run (NUMBA_ENABLE_CUDASIM set: 1 the simulator,
#: 0 a GPU, as for tests/cuda) the CUDA kernels too
TORCH_DEVICES = DEVICES + (["cuda"] if "NUMBA_ENABLE_CUDASIM" in os.environ and importlib.util.find_spec("numba")
                           else [])
#: every optimizer class of fastnn, once
OPTIMIZER_NAMES = list(dict.fromkeys(case.name for case in OPTIM_DB))


def _needs(name):
    """Skip when fastnn.optim has no class ``name``: an entry may be recorded before its optimizer
    lands (every optimizer fastnn registers must have an entry: see the coverage test below)."""
    if not hasattr(fnn.optim, name):
        pytest.skip(f"fastnn.optim has no {name} (yet)")


@functools.cache
def _golden_file():
    with np.load(GOLDEN_DIR / GOLDEN_FILE) as data:
        return {k: data[k] for k in data.files}


def _golden(case):
    """torch's recorded trajectory of ``case``: {'lr', 'params', 'state.{name}', 'scalar.{name}'}."""
    data = _golden_file()
    remedy = "run `python tests/golden/record_torch.py` where torch is installed and commit the .npz"
    if f"{case.key}.config" not in data:
        pytest.fail(f"{GOLDEN_FILE} has no trajectory for {case.key!r}; {remedy}.")
    if str(data[f"{case.key}.config"]) != case.torch_config():
        pytest.fail(f"{GOLDEN_FILE}: {case.key!r} was recorded as {data[f'{case.key}.config']}, the table now says "
                    f"{case.torch_config()}; {remedy}.")
    prefix = case.key + "."
    return {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix) and k != prefix + "config"}


def _fastnn_trajectory(case, device, holder, dtype):
    """Run ``case``'s fastnn optimizer from the golden start on the golden gradients in ``dtype``;
    yields (lr given, params, {state name: buffer}, optimizer) after each step. ``holder``:
    'parameters' (a free vector) or 'model' (the kernel of a Dense(3) layer on 4 inputs)."""
    start, grads = _golden_file()["start"], _golden_file()["grads"]
    schedule = fnn.schedules.Exponential(case.lr, gamma=GAMMA)
    opt = case.make_fastnn(fnn, schedule)
    if holder == "parameters":
        x = fnn.optim.Parameters(start, device=device, dtype=dtype)
        backend = x.backend

        def write(g):
            x.grads[:] = backend.asarray(g.astype(dtype))

        def read():
            return backend.to_numpy(x.params)
    else:
        x = fnn.Sequential([fnn.layers.Dense(3, use_bias=False)], input_dim=4, seed=0, device=device,
                           dtype=dtype)
        x.set_weights([start.reshape(4, 3)])
        backend = x.layers[0].backend

        def write(g):
            x.layers[0].grads["w"][...] = backend.asarray(g.reshape(4, 3).astype(dtype))

        def read():
            return x.get_weights()[0].ravel()
    opt.bind(x)
    for t, g in enumerate(grads):
        write(g)
        opt.step()
        # the model's flat buffers may be padded past the kernel's 12 values
        state = {name: backend.to_numpy(buf)[:N_PARAMS] for name, buf in opt.state.items()}
        yield schedule(t), read(), state, opt


def _assert_follows(case, device, holder, want, dtype="float64"):
    """fastnn's trajectory equals ``want`` (torch's, float64) at every step: parameters, every
    state buffer (the same names as torch's) and the scalar state. In float32, to float32's
    accuracy: 1e-5 relative (and of the buffer's largest value)."""
    _needs(case.name)

    def close(got, expected, what):
        if dtype == "float64":
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=what)
        else:
            assert got.dtype == np.float32, what
            scale = np.abs(expected).max()  # where terms cancel, relative to the buffer's largest value
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale, err_msg=what)

    states = sorted(k[len("state."):] for k in want if k.startswith("state."))
    steps = 0
    for t, (lr, params, state, opt) in enumerate(_fastnn_trajectory(case, device, holder, dtype)):
        where = f"{case.key} ({holder}, {device}, {dtype}), step {t + 1}"
        assert lr == pytest.approx(want["lr"][t], rel=1e-14), f"{where}: lr"
        close(params, want["params"][t], f"{where}: params")
        assert sorted(state) == states, f"{where}: state buffers"
        for name in states:
            close(state[name], want[f"state.{name}"][t], f"{where}: state {name!r}")
        for key in (k for k in want if k.startswith("scalar.")):
            assert getattr(opt, key[len("scalar."):]) == pytest.approx(want[key][t], rel=1e-12), f"{where}: {key}"
        steps += 1
    assert steps == STEPS == len(want["params"])


@pytest.mark.parametrize("holder", ["parameters", "model"])
@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda case: case.key)
def test_matches_the_recorded_torch_trajectory_step_by_step(case, device, holder):
    """fastnn and torch.optim (recorded) from the same start and gradients, float64, with a
    decaying lr (the schedule's value at each step was given to torch as its group lr)."""
    _assert_follows(case, device, holder, _golden(case))


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda case: case.key)
def test_float32_follows_the_recorded_torch_trajectory(case, device):
    """The float32 kernels (compiled on cpu) along the same float64 trajectory."""
    _assert_follows(case, device, "parameters", _golden(case), dtype="float32")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda case: case.key)
def test_matches_pytorch_step_by_step_when_installed(case, device):
    """The same comparison against the installed torch, run now."""
    pytest.importorskip("torch")
    record_torch = _record_torch()
    with record_torch.float64_default():
        want = record_torch.record_case(case, _golden_file()["start"], _golden_file()["grads"])
    _assert_follows(case, device, "parameters", want)


def test_golden_files_match_the_installed_torch():
    """The committed trajectories and layer outputs are what the installed torch computes."""
    pytest.importorskip("torch")
    record_torch = _record_torch()
    with record_torch.float64_default():
        files = {GOLDEN_FILE: record_torch.record_optim(), record_torch.LAYERS_FILE: record_torch.record_layers()}
    for name, arrays in files.items():
        assert record_torch.compare(GOLDEN_DIR / name, arrays) == [], f"{name}: re-record with this torch?"


def _record_torch():
    spec = importlib.util.spec_from_file_location("record_torch", GOLDEN_DIR / "record_torch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_covers_every_optimizer_and_the_golden_file_every_entry():
    """A new optimizer in fastnn.optim.OPTIMIZERS needs an OptimCase (then a recording); an
    entry renamed or removed must be re-recorded too."""
    registered = {getattr(cls, "func", cls).__name__ for cls in fnn.optim.OPTIMIZERS.values()}
    assert registered <= set(OPTIMIZER_NAMES), f"no OptimCase in tests/golden/optim_db.py for " \
                                               f"{sorted(registered - set(OPTIMIZER_NAMES))}"
    keys = [case.key for case in OPTIM_DB]
    assert len(keys) == len(set(keys)) and all(k.replace("-", "").isalnum() for k in keys)
    recorded = {k[:-len(".config")] for k in _golden_file() if k.endswith(".config")}
    assert recorded == set(keys), "re-record: python tests/golden/record_torch.py"
    assert _golden_file()["grads"].shape == (STEPS, N_PARAMS)
    assert sum(path.stat().st_size for path in GOLDEN_DIR.glob("*.npz")) < 1_000_000, "keep the golden files small"


def test_an_entry_without_a_current_recording_fails_and_says_how_to_record():
    """A new or changed OptimCase cannot pass silently on a missing or stale trajectory."""
    new = dataclasses.replace(OPTIM_DB[0], key="lion", name="Lion")
    with pytest.raises(pytest.fail.Exception, match=r"has no trajectory for 'lion'; run `python tests/golden/rec"):
        _golden(new)
    changed = dataclasses.replace(OPTIM_DB[1], kwargs=dict(momentum=0.5))
    with pytest.raises(pytest.fail.Exception, match=r"'sgd-momentum' was recorded as .*\"momentum\": 0\.9.*"
                                                    r"\"momentum\": 0\.5.*record_torch\.py"):
        _golden(changed)


def _two_steps(opt, device, g1=0.5, g2=-0.01, p0=1.0):
    x = fnn.optim.Parameters([p0], device=device)
    opt.bind(x)
    out = []
    for g in (g1, g2):
        x.grads[:] = g
        opt.step()
        out.append(float(x.params[0]))
    return out


# The first two updates from p0 = 1 with gradients 0.5 then -0.01, worked out by hand from
# each documented rule (m, v: first and second moments; bc: bias corrections 1 - beta^t).
_mu = [0.9 * (1 - 0.5 * 0.96 ** (t * 0.004)) for t in (1, 2, 3)]  # NAdam's momentum schedule
_ada1 = 1 - 1e-6 ** 0.5 / (0.025 + 1e-6) ** 0.5 * 0.5           # Adadelta: delta_1 = sqrt(eps / (v + eps)) g
_ada_u1 = 0.1 * (1e-6 ** 0.5 / (0.025 + 1e-6) ** 0.5 * 0.5) ** 2
_rms_b1 = 0.5 / ((0.0025 - 0.005 ** 2) ** 0.5 + 1e-8)           # RMSprop centered: v1 = 0.0025, a1 = 0.005
HAND = {
    # b1 = 0.5; b2 = 0.9 * 0.5 - 0.01 = 0.44
    "sgd-momentum": (fnn.optim.SGD(0.1, momentum=0.9), [0.95, 0.95 - 0.1 * 0.44]),
    # s1 = 0.25, s2 = 0.2501
    "adagrad": (fnn.optim.Adagrad(0.1), [1 - 0.1 * 0.5 / (0.5 + 1e-10),
                                         1 - 0.1 * 0.5 / (0.5 + 1e-10) + 0.1 * 0.01 / (0.2501 ** 0.5 + 1e-10)]),
    # lr_t = lr / (1 + (t - 1) lr_decay): 0.1 then 0.1 / 1.5; weight decay: g1 = 0.5 + 0.2 * 1
    "adagrad-decay": (fnn.optim.Adagrad(0.1, lr_decay=0.5, weight_decay=0.2),
                      [1 - 0.1 * 0.7 / (0.7 + 1e-10), None]),
    # v1 = 0.1 * 0.25 = 0.025; v2 = 0.9 * 0.025 + 0.1 * 0.0001 = 0.02251
    "adadelta": (fnn.optim.Adadelta(), [_ada1, _ada1 + (_ada_u1 + 1e-6) ** 0.5 / (0.02251 + 1e-6) ** 0.5 * 0.01]),
    # v1 = 0.01 * 0.25 = 0.0025; v2 = 0.99 * 0.0025 + 0.01 * 0.0001 = 0.002476
    "rmsprop": (fnn.optim.RMSprop(0.01), [1 - 0.01 * 0.5 / (0.05 + 1e-8),
                                          1 - 0.01 * 0.5 / (0.05 + 1e-8) + 0.01 * 0.01 / (0.002476 ** 0.5 + 1e-8)]),
    # a2 = 0.99 * 0.005 - 0.0001 = 0.00485; b2 = 0.9 b1 - 0.01 / (sqrt(v2 - a2^2) + eps)
    "rmsprop-centered-momentum": (fnn.optim.RMSprop(0.01, momentum=0.9, centered=True),
                                  [1 - 0.01 * _rms_b1,
                                   1 - 0.01 * _rms_b1 - 0.01 * (0.9 * _rms_b1 - 0.01 / ((0.002476 - 0.00485 ** 2) ** 0.5
                                                                                        + 1e-8))]),
    # m1 = 0.05, v1 = 0.00025: m1/bc1 = 0.5, v1/bc2 = 0.25; m2 = 0.044, v2 = 0.00024985
    "adam": (fnn.optim.Adam(0.1), [1 - 0.1 * 0.5 / (0.5 + 1e-8),
                                   1 - 0.1 * 0.5 / (0.5 + 1e-8)
                                   - 0.1 * (0.044 / 0.19) / ((0.00024985 / 0.001999) ** 0.5 + 1e-8)]),
    # v2 < v1, so the max keeps v1 = 0.00025
    "adam-amsgrad": (fnn.optim.Adam(0.1, amsgrad=True),
                     [1 - 0.1 * 0.5 / (0.5 + 1e-8),
                      1 - 0.1 * 0.5 / (0.5 + 1e-8) - 0.1 * (0.044 / 0.19) / ((0.00025 / 0.001999) ** 0.5 + 1e-8)]),
    # decoupled: p shrinks by 1 - lr wd = 0.99 first, the moments see the raw gradient
    "adamw": (fnn.optim.AdamW(0.1, weight_decay=0.1), [0.99 - 0.1 * 0.5 / (0.5 + 1e-8),
                                                       (0.99 - 0.1 * 0.5 / (0.5 + 1e-8)) * 0.99
                                                       - 0.1 * (0.044 / 0.19) / ((0.00024985 / 0.001999) ** 0.5
                                                                                 + 1e-8)]),
    # coupled: g1 = 0.5 + 0.1 * 1 = 0.6, m1/bc1 = 0.6, v1/bc2 = 0.36
    "adam-wd": (fnn.optim.Adam(0.1, weight_decay=0.1), [1 - 0.1 * 0.6 / (0.6 + 1e-8), None]),
    # u1 = |g1| + eps; u2 = max(0.999 u1, 0.01 + eps) = 0.999 u1
    "adamax": (fnn.optim.Adamax(0.1), [1 - 0.1 * 0.5 / (0.5 + 1e-8),
                                       1 - 0.1 * 0.5 / (0.5 + 1e-8) - 0.1 / 0.19 * 0.044 / (0.999 * (0.5 + 1e-8))]),
    # p -= lr (1 - mu_t) / (1 - prod mu_1..t) g / d + lr mu_t+1 / (1 - prod mu_1..t+1) m / d,
    # d = sqrt(v / bc2) + eps: 0.5 + eps, then sqrt(0.00024985 / 0.001999) + eps
    "nadam": (fnn.optim.NAdam(0.1), [
        1 - 0.1 * 0.5 / (0.5 + 1e-8) - 0.1 * _mu[1] / (1 - _mu[0] * _mu[1]) * 0.05 / (0.5 + 1e-8),
        1 - 0.1 * 0.5 / (0.5 + 1e-8) - 0.1 * _mu[1] / (1 - _mu[0] * _mu[1]) * 0.05 / (0.5 + 1e-8)
        - (0.1 * (1 - _mu[1]) / (1 - _mu[0] * _mu[1]) * -0.01
           + 0.1 * _mu[2] / (1 - _mu[0] * _mu[1] * _mu[2]) * 0.044) / ((0.00024985 / 0.001999) ** 0.5 + 1e-8)]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(HAND))
def test_first_two_steps_match_the_hand_computed_values(case, device):
    opt, expected = HAND[case]
    got = _two_steps(_fresh(opt), device)
    for i, (g, e) in enumerate(zip(got, expected)):
        if e is not None:
            assert g == pytest.approx(e, rel=1e-13, abs=1e-15), f"step {i + 1}"


def _fresh(opt):
    return type(opt)(lr=opt.lr, **opt.get_config())


# ------------------------------------------------------------------ convergence table
def _quadratic(opt, steps):
    """f at the end of the path on the ill-conditioned quadratic 0.1 x^2 + 2 y^2 from (-5, 2.5) (f = 15)."""
    land = fnn.landscapes.get_landscape("quadratic")
    return float(land(*fnn.optim.trace(opt, land, steps=steps)[-1]))


def _logistic(opt, steps):
    """Training loss of logistic regression on a linearly separable set, full batch."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 1, (100, 2)), rng.normal(2, 1, (100, 2))]).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.float32).reshape(-1, 1)  # two blobs, labelled by a line
    model = fnn.Sequential([fnn.layers.Dense(1)], input_dim=2, seed=0, device=DEVICE)
    trainer = fnn.Trainer(model, "binary_cross_entropy", opt, batch_size=None, seed=0)
    trainer.fit(X, y, epochs=steps, verbose=0)
    return trainer.evaluate(X, y)["loss"]


def _spirals(opt, steps):
    """1 - training accuracy of a 2-32-32-3 ReLU MLP on 3 spirals (300 points), batch 30."""
    X, y = fnn.datasets.make_spirals(n=300, classes=3, noise=0.1, seed=0)
    model = fnn.Sequential([fnn.layers.Dense(32, activation="relu"), fnn.layers.Dense(32, activation="relu"),
                            fnn.layers.Dense(3)], input_dim=2, seed=0, device=DEVICE)
    trainer = fnn.Trainer(model, "cross_entropy", opt, batch_size=30, metrics=["accuracy"], seed=0)
    trainer.fit(X, y, epochs=steps // 10, verbose=0)
    return 1.0 - trainer.evaluate(X, y)["accuracy"]


#: problem: (function -> error, updates, error tolerance)
PROBLEMS = {"quadratic": (_quadratic, 300, 1e-6), "logistic": (_logistic, 200, 0.01),
            "spirals": (_spirals, 1000, 0.03)}
#: the entries of OPTIM_DB with convergence options (see OptimCase.converge)
CONVERGENCE = [case for case in OPTIM_DB if case.converge is not None]


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("case", CONVERGENCE, ids=lambda case: case.key)
def test_converges_on_the_toy_problems(case, problem):
    _needs(case.name)
    func, steps, tol = PROBLEMS[problem]
    steps, tol = case.converge[3].get(problem, (steps, tol)) if len(case.converge) > 3 else (steps, tol)
    opt = getattr(fnn.optim, case.name)(**{**case.kwargs, **case.converge[list(PROBLEMS).index(problem)]})
    error = func(opt, steps)
    assert error < tol, f"{case.key} on {problem}: {error:.3g} after {steps} updates (tolerance {tol})"


def test_every_optimizer_has_convergence_options():
    missing = [name for name in OPTIMIZER_NAMES if hasattr(fnn.optim, name)
               and not any(case.name == name for case in CONVERGENCE)]
    assert not missing, f"give one OptimCase of {missing} its converge options (tests/golden/optim_db.py)"


# ------------------------------------------------------------------ options, state, errors
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_decays_weights_only_and_honours_layer_options(name, device):
    _needs(name)
    kwargs = dict(weight_decay=0.1)
    model = fnn.Sequential([fnn.layers.Dense(3), fnn.layers.Dense(2), fnn.layers.Dense(2)], input_dim=2, seed=0,
                           device=device, dtype="float64")
    before = model.get_weights()
    opt = getattr(fnn.optim, name)(lr=0.1, **kwargs)
    opt.set_layer_options(model.layers[1], lr=0.0)            # this layer does not move
    opt.set_layer_options(model.layers[2], weight_decay=0.0)  # nor this one: no gradient, no decay
    opt.bind(model)
    model.grads[:] = 0.0
    for _ in range(3):
        opt.step()  # zero gradients: only the weight decay moves anything
    after = model.get_weights()
    assert np.all(np.abs(after[0]) < np.abs(before[0]))  # layer 0's weights shrink
    for i in (1, 2, 3, 4, 5):  # biases, the frozen-by-lr layer, the layer without decay
        np.testing.assert_array_equal(after[i], before[i], err_msg=f"array {i}")


@pytest.mark.parametrize("name", ["Adam", "RMSprop", "NAdam"])
def test_frozen_layers_keep_their_weights_and_zero_state(name):
    model = fnn.Sequential([fnn.layers.Dense(3), fnn.layers.Dense(3)], input_dim=3, seed=0, device=DEVICE)
    model.layers[0].trainable = False
    opt = getattr(fnn.optim, name)(lr=0.1)
    opt.bind(model)
    before = model.get_weights()
    model.grads[:] = 1.0
    opt.step()
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.array_equal(after[2], before[2])
    frozen = slice(model.param_info[0].start, model.param_info[1].stop)
    for buf in opt.state.values():
        assert not buf[frozen].any()


@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda case: case.key)
def test_state_dict_round_trip_continues_identically(case):
    _needs(case.name)
    rng = np.random.default_rng(3)
    grads = rng.standard_normal((8, 6))
    holders, opts = [], []
    for _ in range(2):
        holders.append(fnn.optim.Parameters(np.linspace(-1, 1, 6), device=DEVICE))
        opts.append(case.make_fastnn(fnn, fnn.schedules.Exponential(0.05, 0.9)))
        opts[-1].bind(holders[-1])
    a, b = opts
    for g in grads[:4]:
        holders[0].grads[:] = g
        a.step()
    a.epoch, a.lr_scale = 2, 0.5
    holders[1].params[:] = holders[0].params
    b.load_state_dict(a.state_dict())
    assert (b.step_count, b.epoch, b.lr_scale) == (4, 2, 0.5)
    for g in grads[4:]:
        for x, opt in zip(holders, opts):
            x.grads[:] = g
            opt.step()
    np.testing.assert_array_equal(holders[1].params, holders[0].params)
    assert set(a.state_dict()["state"]) == set(a.state_names)


def test_load_state_dict_rejects_another_model():
    opt = fnn.optim.Adam()
    opt.bind(fnn.optim.Parameters(np.ones(4)))
    state = opt.state_dict()
    other = fnn.optim.Adam()
    other.bind(fnn.optim.Parameters(np.ones(5)))
    with pytest.raises(ValueError, match=r"^Adam\.load_state_dict: state 'exp_avg' does not match this model's "
                                         r"parameters\.$"):
        other.load_state_dict(state)
    assert other.step_count == 0


def test_adagrad_state_starts_at_the_initial_accumulator_value():
    opt = fnn.optim.Adagrad(initial_accumulator_value=0.25)
    opt.bind(fnn.optim.Parameters(np.ones(3)))
    np.testing.assert_array_equal(opt.state["sum"], 0.25)


def test_names_build_the_documented_optimizers():
    for name, cls in [("sgd", fnn.optim.SGD), ("adagrad", fnn.optim.Adagrad), ("adadelta", fnn.optim.Adadelta),
                      ("rmsprop", fnn.optim.RMSprop), ("adam", fnn.optim.Adam), ("adamw", fnn.optim.AdamW),
                      ("adamax", fnn.optim.Adamax), ("nadam", fnn.optim.NAdam)]:
        opt = fnn.optim.get_optimizer(name)
        assert type(opt) is cls and opt.current_lr() == cls().current_lr()
    momentum, nesterov = fnn.optim.get_optimizer("momentum", lr=0.2), fnn.optim.get_optimizer("nesterov")
    assert (momentum.momentum, momentum.nesterov, momentum.current_lr()) == (0.9, False, 0.2)
    assert (nesterov.momentum, nesterov.nesterov) == (0.9, True)
    # PyTorch's defaults
    assert fnn.optim.AdamW().weight_decay == 0.01 and fnn.optim.Adam().weight_decay == 0.0
    assert (fnn.optim.Adamax().current_lr(), fnn.optim.NAdam().momentum_decay) == (2e-3, 4e-3)
    assert repr(fnn.optim.Adam()) == ("Adam(lr=Constant(lr=0.001, per='step'), betas=(0.9, 0.999), eps=1e-08, "
                                      "weight_decay=0.0, amsgrad=False)")


ERRORS = [
    (lambda: fnn.optim.Adam(lr=-1e-3), ValueError, r"^Adam: lr must be >= 0\.0; got -0\.001\.$"),
    (lambda: fnn.optim.Adam(betas=(0.9, 1.0)), ValueError, r"^Adam: beta2 must be in \[0, 1\); got 1\.0\.$"),
    (lambda: fnn.optim.AdamW(betas=(-0.1, 0.9)), ValueError, r"^AdamW: beta1 must be in \[0, 1\); got -0\.1\.$"),
    (lambda: fnn.optim.NAdam(betas=0.9), TypeError, r"^NAdam: betas must be a pair \(beta1, beta2\); got 0\.9\.$"),
    (lambda: fnn.optim.Adamax(betas=(0.9, "x")), TypeError, r"^Adamax: beta2 must be a real number; got 'x'\.$"),
    (lambda: fnn.optim.Adam(eps=0.0), ValueError, r"^Adam: eps must be > 0\.0; got 0\.0\.$"),
    (lambda: fnn.optim.Adagrad(eps=-1e-10), ValueError, r"^Adagrad: eps must be > 0\.0; got -1e-10\.$"),
    (lambda: fnn.optim.Adagrad(lr_decay=-0.1), ValueError, r"^Adagrad: lr_decay must be >= 0\.0; got -0\.1\.$"),
    (lambda: fnn.optim.Adagrad(initial_accumulator_value=-1), ValueError,
     r"^Adagrad: initial_accumulator_value must be >= 0\.0; got -1\.0\.$"),
    (lambda: fnn.optim.Adadelta(rho=1.5), ValueError, r"^Adadelta: rho must be <= 1\.0; got 1\.5\.$"),
    (lambda: fnn.optim.RMSprop(momentum=-0.9), ValueError, r"^RMSprop: momentum must be >= 0\.0; got -0\.9\.$"),
    (lambda: fnn.optim.RMSprop(alpha=1.01), ValueError, r"^RMSprop: alpha must be <= 1\.0; got 1\.01\.$"),
    (lambda: fnn.optim.RMSprop(centered=1), TypeError, r"^RMSprop: centered must be True or False; got 1\.$"),
    (lambda: fnn.optim.Adam(amsgrad="yes"), TypeError, r"^Adam: amsgrad must be True or False; got 'yes'\.$"),
    (lambda: fnn.optim.Adam(weight_decay=-0.1), ValueError, r"^Adam: weight_decay must be >= 0\.0; got -0\.1\.$"),
    (lambda: fnn.optim.NAdam(momentum_decay=-1.0), ValueError, r"^NAdam: momentum_decay must be >= 0\.0; got -1\.0\.$"),
    (lambda: fnn.optim.SGD(0.1, nesterov=True), ValueError, r"^SGD: nesterov=True needs momentum > 0"),
    (lambda: fnn.optim.get_optimizer("adamm"), ValueError,
     r"^Trainer: unknown optimizer 'adamm'; choose one of 'sgd', 'momentum', 'nesterov', 'adagrad', 'adadelta', "
     r"'rmsprop', 'adam', 'adamw', 'adamax', 'nadam', 'radam'\.$"),
    (lambda: fnn.optim.Adam().set_layer_options(None, lr=-1.0), ValueError,
     r"^Adam\.set_layer_options: lr must be >= 0\.0; got -1\.0\.$"),
    (lambda: fnn.optim.Parameters([[1.0, 2.0]]), ValueError, r"^Parameters: values must be 1-D; got 2-D"),
    (lambda: fnn.optim.Parameters([1.0, np.nan]), ValueError, r"^Parameters: values contains NaN or inf"),
]


@pytest.mark.parametrize("make, error, message", ERRORS, ids=[e[2][1:40] for e in ERRORS])
def test_bad_options_are_rejected_when_built(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("module", ["fastnn.optim", "fastnn.schedules", "fastnn.tools.landscapes", "fastnn.callbacks"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    if module == "fastnn.callbacks" and DEVICE != "cpu":
        pytest.skip("the example trains on the default device, cpu, which is not built")
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------ the registry
def _registry_problems(registry, backends, case_names):
    """What an optimizer registry lacks: for each name, its kernels must be operations with a
    spec that every backend class in ``backends`` implements itself, and its class an OptimCase."""
    from fastnn.backends import _adapter
    from fastnn.backends._ops import SPECS

    problems = []
    for name, entry in registry.items():
        for kernel in entry.kernels:
            if kernel not in SPECS:
                problems.append(f"{name}: {kernel} is not an operation of the kernel interface")
                continue
            for cls in backends:
                if kernel not in _adapter.registered(cls):
                    problems.append(f"{name}: {cls.__name__} has no kernel for {kernel}")
        if entry.cls.__name__ not in case_names:
            problems.append(f"{name}: no OptimCase for {entry.cls.__name__} in tests/golden/optim_db.py")
    return problems


def _fast_backends():
    from fastnn.backends.cpu import CpuBackend

    classes = [CpuBackend]
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or importlib.util.find_spec("numba") is not None:
        try:
            from fastnn.backends.cuda import CudaBackend
        except Exception:  # no usable numba-cuda here: the CUDA suite checks it where there is one
            return classes
        classes.append(CudaBackend)
    return classes


def test_every_registered_optimizer_has_its_kernels_on_every_backend_and_a_test_entry():
    assert _registry_problems(fnn.optim.REGISTRY, _fast_backends(), set(OPTIMIZER_NAMES)) == []


def test_an_optimizer_registered_without_kernels_or_test_entry_is_caught():
    from fastnn.backends.cpu import CpuBackend

    class Lion(fnn.optim.Optimizer):
        def _update(self, backend, p, g, state, lr, weight_decay):
            backend.lion_update(p, g, state["exp_avg"], lr=lr)

    registry = {}
    entry = fnn.optim.OptimizerEntry("lion", Lion, 1e-4, ("lion_update",))
    registry["lion"] = entry
    assert _registry_problems(registry, [CpuBackend], set(OPTIMIZER_NAMES)) == [
        "lion: lion_update is not an operation of the kernel interface",
        "lion: no OptimCase for Lion in tests/golden/optim_db.py"]
    registry["lion"] = dataclasses.replace(entry, cls=fnn.optim.Adam, kernels=("adam_update", "mse"))
    assert _registry_problems(registry, [CpuBackend, fnn.backends.Backend], set(OPTIMIZER_NAMES)) == [
        "lion: Backend has no kernel for adam_update", "lion: Backend has no kernel for mse"]


def test_the_registry_is_the_one_list_of_optimizer_names():
    from fastnn import cli

    names = list(fnn.optim.REGISTRY)
    assert names[:3] == ["sgd", "momentum", "nesterov"] and "radam" in names
    assert list(fnn.optim.OPTIMIZERS) == names == list(cli.OPTIMIZER_LR)
    assert cli.OPTIMIZER_LR["adam"] == 3e-3 and fnn.optim.REGISTRY["adam"].defaults["lr"] == 1e-3
    assert fnn.optim.REGISTRY["nesterov"].defaults["nesterov"] is True
    assert fnn.optim.REGISTRY["adam"].state_names == ("exp_avg", "exp_avg_sq")
    assert fnn.optim.REGISTRY["momentum"].state_names == ("momentum_buffer",)
    opt = fnn.optim.get_optimizer("nesterov", lr=0.2)
    assert isinstance(opt, fnn.optim.SGD) and opt.nesterov and opt.momentum == 0.9
    with pytest.raises(ValueError, match=r"unknown optimizer 'lion'; choose one of 'sgd', .*'radam'\."):
        fnn.optim.get_optimizer("lion")
    with pytest.raises(ValueError, match=r"register: optimizer name 'adam' is taken by Adam"):
        fnn.optim.register("adam", cli_lr=1.0, kernels=())(fnn.optim.SGD)
    api = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "API.md").read_text()
    missing = [n for n in names if f"`{n}`" not in api]
    assert not missing, f"docs/API.md does not list {missing}"
