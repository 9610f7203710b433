"""Landscapes (value, gradient, minimum, window), fnn.optim.trace and the Parameters holder,
plot_paths and ``fastnn landscape``."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.cli import main
from fastnn.tools.landscapes import LANDSCAPES

NAMES = list(LANDSCAPES)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_central_differences(name):
    land = LANDSCAPES[name]
    rng = np.random.default_rng(0)
    (x0, x1), (y0, y1) = land.window
    h = 1e-6
    for x, y in zip(rng.uniform(x0, x1, 20), rng.uniform(y0, y1, 20)):
        numeric = [(land(x + h, y) - land(x - h, y)) / (2 * h), (land(x, y + h) - land(x, y - h)) / (2 * h)]
        np.testing.assert_allclose(land.gradient(x, y), numeric, rtol=1e-6, atol=1e-6 * (1 + np.abs(numeric).max()))


@pytest.mark.parametrize("name", NAMES)
def test_the_minimum_is_stationary_and_lowest_in_the_window(name):
    land = LANDSCAPES[name]
    np.testing.assert_allclose(land.gradient(*land.minimum), 0.0, atol=1e-12)
    (x0, x1), (y0, y1) = land.window
    gx, gy = np.meshgrid(np.linspace(x0, x1, 401), np.linspace(y0, y1, 401))
    assert land(gx, gy).min() >= land.min_value - 1e-12
    assert x0 < land.minimum[0] < x1 and y0 < land.minimum[1] < y1
    assert x0 <= land.start[0] <= x1 and y0 <= land.start[1] <= y1
    assert land(*land.start) > land.min_value + 1.0  # the start is somewhere to come down from


def test_the_landscapes_are_the_named_functions():
    assert LANDSCAPES["rosenbrock"](0.0, 0.0) == 1.0 and LANDSCAPES["rosenbrock"].minimum == (1.0, 1.0)
    assert LANDSCAPES["beale"](3.0, 0.5) == 0.0 and LANDSCAPES["beale"](0.0, 0.0) == 1.5 ** 2 + 2.25 ** 2 + 2.625 ** 2
    assert LANDSCAPES["saddle"].min_value == -0.25 and LANDSCAPES["saddle"].gradient(0.0, 0.0).tolist() == [0, 0]
    well = LANDSCAPES["double_well"]
    assert well.minimum[0] == pytest.approx(-1.0356, abs=1e-4)
    assert well(0.96, 0.0) > well.min_value + 0.5  # the other, local, minimum is higher
    quad = LANDSCAPES["quadratic"]
    assert quad(1.0, 0.0) == 0.1 and quad(0.0, 1.0) == 2.0


# -------------------------------------------------------------------------------- trace
def test_trace_returns_the_path_start_first():
    path = fnn.optim.trace(fnn.optim.SGD(lr=0.1), "quadratic", start=(3.0, -1.0), steps=4)
    assert path.shape == (5, 2) and path.dtype == np.float64
    # gradient descent on 0.1 x^2 + 2 y^2: x *= 1 - 0.1 * 0.2, y *= 1 - 0.1 * 4
    np.testing.assert_allclose(path, [[3.0 * 0.98 ** k, -1.0 * 0.6 ** k] for k in range(5)], rtol=1e-14)


def test_trace_runs_a_fresh_copy_and_equals_a_manual_loop():
    opt = fnn.optim.Adam(lr=0.05, amsgrad=True)
    land = LANDSCAPES["rosenbrock"]
    path = fnn.optim.trace(opt, land, steps=50)
    assert opt.model is None and opt.step_count == 0  # the instance given is untouched
    x = fnn.optim.Parameters(land.start)
    manual = fnn.optim.Adam(lr=0.05, amsgrad=True)
    manual.bind(x)
    for k in range(50):
        x.grads[:] = land.gradient(*x.params)
        manual.step()
        np.testing.assert_array_equal(path[k + 1], x.params)
    np.testing.assert_array_equal(fnn.optim.trace("adam", land, steps=3), fnn.optim.trace(fnn.optim.Adam(), land,
                                                                                          steps=3))


def test_a_diverging_path_is_returned_without_warnings():
    with np.errstate(all="raise"):
        path = fnn.optim.trace(fnn.optim.SGD(lr=1.0), "rosenbrock", steps=50)
    assert not np.isfinite(path[-1]).all() and np.isfinite(path[0]).all()


def test_momentum_leaves_the_local_minimum_that_gradient_descent_falls_into():
    """The lectures' point: on the tilted double well, plain gradient descent from (1.8, 1) stops
    in the local minimum; momentum carries the iterate over the barrier to the global one."""
    land = LANDSCAPES["double_well"]
    sgd = fnn.optim.trace(fnn.optim.SGD(lr=0.01), land, steps=300)[-1]
    momentum = fnn.optim.trace(fnn.optim.SGD(lr=0.01, momentum=0.9), land, steps=300)[-1]
    assert sgd[0] == pytest.approx(0.96, abs=0.01)
    np.testing.assert_allclose(momentum, land.minimum, atol=1e-4)


def test_adaptive_methods_cross_the_saddle_faster():
    land = LANDSCAPES["saddle"]
    sgd = fnn.optim.trace(fnn.optim.SGD(lr=0.01), land, steps=300)
    adam = fnn.optim.trace(fnn.optim.Adam(lr=0.01), land, steps=300)
    assert land(*adam[-1]) < land(*sgd[-1]) - 0.05  # SGD is still near the saddle's level


def test_parameters_on_the_cpu_backend():
    x = fnn.optim.Parameters([1.0, -2.0, 3.0], device="cpu", dtype="float32")
    assert x.params.dtype == np.float32 and x.backend.name == "cpu"
    opt = fnn.optim.SGD(lr=0.5)
    opt.bind(x)
    x.grads[:] = [1.0, 1.0, 1.0]
    opt.step()
    np.testing.assert_array_equal(x.params, [0.5, -2.5, 2.5])
    assert repr(x) == "Parameters([0.5, -2.5, 2.5])"


@pytest.mark.parametrize("call, error, message", [
    (lambda: fnn.optim.trace("adam", "himmelblau"), ValueError,
     r"^trace: unknown landscape 'himmelblau'; choose one of 'quadratic', 'saddle', 'rosenbrock', 'beale', "
     r"'double_well'\.$"),
    (lambda: fnn.optim.trace("adamm", "beale"), ValueError, r"^trace: unknown optimizer 'adamm'; choose one of"),
    (lambda: fnn.optim.trace("adam", "beale", start=(1.0,)), ValueError,
     r"^trace: start must be a point \(x, y\); got \(1\.0,\)\.$"),
    (lambda: fnn.optim.trace("adam", "beale", start=(1.0, np.inf)), ValueError, r"^trace: start must be finite"),
    (lambda: fnn.optim.trace("adam", "beale", steps=-1), ValueError, r"^trace: steps must be >= 0; got -1\.$"),
])
def test_trace_rejects_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------------- plot
def test_plot_paths_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    land = LANDSCAPES["beale"]
    paths = {"sgd": fnn.optim.trace("sgd", land, steps=20), "diverged": fnn.optim.trace(fnn.optim.SGD(10.0), land,
                                                                                         steps=20)}
    out = tmp_path / "paths.png"
    fnn.landscapes.plot_paths(land, paths, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["paths.png"]  # no temporary file left behind


def test_cli_prints_each_final_loss_and_draws(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "paths.png"
    code = main(["landscape", "--function", "rosenbrock", "--optimizers", "sgd,momentum,rmsprop,adam", "--lr", "1e-3",
                 "--steps", "500", "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].startswith("fastnn landscape: rosenbrock, ") and "500 steps from (-1.2, 1)" in lines[0]
    land = LANDSCAPES["rosenbrock"]
    for line, name in zip(lines[1:5], ["sgd", "momentum", "rmsprop", "adam"]):
        path = fnn.optim.trace(fnn.optim.get_optimizer(name, lr=1e-3), land, steps=500)
        assert line.split()[0] == name
        assert float(line.split("final f = ")[1].split()[0]) == pytest.approx(float(land(*path[-1])), rel=1e-5)
    assert lines[5] == f"saved {out}" and out.read_bytes()[:4] == b"\x89PNG"


def test_cli_per_optimizer_rates_and_start_without_a_picture(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["landscape", "--function", "quadratic", "--optimizers", "sgd,adam", "--lr", "0.1,0.3", "--steps", "5",
                 "--start", "2,-1", "--out", ""])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 3 and list(tmp_path.iterdir()) == []
    assert "5 steps from (2, -1)" in lines[0]
    assert lines[1].startswith("sgd   lr 0.1 ") and lines[2].startswith("adam  lr 0.3 ")
