"""fastnn._special: the vectorised erf and erfc against Python's math.erf and math.erfc."""

import math

import numpy as np
import pytest

from fastnn._special import erf, erfc

# every interval of the approximation, its boundaries on both sides, the tails, tiny and
# subnormal arguments, and where erfc underflows
POINTS = np.concatenate([
    np.linspace(-8.0, 8.0, 4001),
    np.geomspace(1e-300, 30.0, 2000),
    -np.geomspace(1e-300, 30.0, 2000),
    [0.0, -0.0, 5e-324, 1e-10, 0.46875, np.nextafter(0.46875, 1.0), np.nextafter(0.46875, 0.0), 4.0,
     np.nextafter(4.0, 5.0), -4.0, 5.9, 6.0, 10.0, 26.0, 26.6, 27.3, 28.0, 40.0, 1e10, 1e300],
])
FUNCTIONS = [pytest.param(erf, math.erf, id="erf"), pytest.param(erfc, math.erfc, id="erfc")]


def exact(fn, x):
    return np.array([fn(float(v)) for v in x])


@pytest.mark.parametrize("fn, want_fn", FUNCTIONS)
def test_float64_is_accurate_to_a_few_ulp(fn, want_fn):
    got, want = fn(POINTS), exact(want_fn, POINTS)
    assert got.dtype == np.float64 and got.shape == POINTS.shape
    # relative accuracy everywhere, including erfc's tail down to 1e-300 (subnormals: absolute)
    np.testing.assert_allclose(got, want, rtol=2e-15, atol=1e-305)


@pytest.mark.parametrize("fn, want_fn", FUNCTIONS)
def test_float32_is_correctly_rounded(fn, want_fn):
    x = POINTS[np.abs(POINTS) < 1e30].astype(np.float32)
    got, want = fn(x), exact(want_fn, x)
    assert got.dtype == np.float32
    # within one unit in the last place of float32 (computed in float64, rounded once)
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    ulp = np.spacing(np.abs(want[normal]).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got[normal] - want[normal]) / ulp) <= 1.0
    assert np.all(np.abs(got[~normal] - want[~normal]) <= np.finfo(np.float32).smallest_subnormal)


def test_erfc_keeps_relative_accuracy_where_one_minus_erf_loses_it():
    x = np.array([6.0, 10.0, 20.0, 26.0])
    got, want = erfc(x), exact(math.erfc, x)
    np.testing.assert_allclose(got, want, rtol=2e-15)
    assert np.all(1.0 - erf(x) == 0.0)  # the naive form has no digit left here
    np.testing.assert_allclose(erfc(-x), 2.0 - want, rtol=1e-16)


def test_special_values():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0])
    np.testing.assert_array_equal(erf(x), [1.0, -1.0, np.nan, 0.0, -0.0])
    np.testing.assert_array_equal(erfc(x), [0.0, 2.0, np.nan, 1.0, 1.0])
    assert np.signbit(erf(x)[4])


@pytest.mark.parametrize("fn", [erf, erfc])
def test_shapes_and_input_types(fn):
    grid = np.linspace(-3, 3, 12).reshape(3, 4)
    assert fn(grid).shape == (3, 4)
    np.testing.assert_array_equal(fn(grid), fn(grid.ravel()).reshape(3, 4))
    np.testing.assert_array_equal(fn(grid.T), fn(np.ascontiguousarray(grid.T)))  # any memory order
    assert fn(np.float64(0.5)).shape == ()
    assert fn(np.zeros((0, 3), np.float32)).shape == (0, 3)
    ints = fn(np.array([0, 1, -2]))
    assert ints.dtype == np.float64
    np.testing.assert_array_equal(ints, fn(np.array([0.0, 1.0, -2.0])))
    assert fn([0.25, 1.5]).dtype == np.float64
