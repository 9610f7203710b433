"""Tests for fastnn.datasets: the shipped iris and digits data and the spiral and moon generators."""

from importlib import resources

import numpy as np
import pytest

from fastnn.datasets import load_digits, load_iris, make_moons, make_spirals

# ---------------------------------------------------------------------------------------------
# Shipped data
# ---------------------------------------------------------------------------------------------


def test_iris_shape_dtype_and_classes():
    X, y = load_iris()
    assert X.shape == (150, 4) and X.dtype == np.float32
    assert y.shape == (150,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [50, 50, 50])
    np.testing.assert_array_equal(y, np.repeat([0, 1, 2], 50))


def test_iris_matches_the_documented_table():
    X, _ = load_iris()
    # first and last rows of Fisher's table, and its summary statistics (min, max, mean, sd in cm)
    np.testing.assert_array_equal(X[0], np.array([5.1, 3.5, 1.4, 0.2], np.float32))
    np.testing.assert_array_equal(X[-1], np.array([5.9, 3.0, 5.1, 1.8], np.float32))
    np.testing.assert_array_equal(X.min(axis=0), np.array([4.3, 2.0, 1.0, 0.1], np.float32))
    np.testing.assert_array_equal(X.max(axis=0), np.array([7.9, 4.4, 6.9, 2.5], np.float32))
    np.testing.assert_allclose(X.mean(axis=0, dtype=np.float64), [5.843, 3.057, 3.758, 1.199], atol=5e-4)
    np.testing.assert_allclose(X.std(axis=0, dtype=np.float64, ddof=1), [0.828, 0.436, 1.765, 0.762], atol=5e-4)
    # every measurement has 0.1 cm resolution
    np.testing.assert_allclose(X * 10, np.rint(X * 10), atol=1e-4)


def test_digits_shape_dtype_range_and_classes():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(X * 16, np.rint(X * 16))  # pixel counts 0..16, divided by 16
    np.testing.assert_array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    # the first image of scikit-learn's copy (a zero), row by row
    first = [
         0,  0,  5, 13,  9,  1,  0,  0,
         0,  0, 13, 15, 10, 15,  5,  0,
         0,  3, 15,  2,  0, 11,  8,  0,
         0,  4, 12,  0,  0,  8,  8,  0,
         0,  5,  8,  0,  0,  9,  8,  0,
         0,  4, 11,  0,  1, 12,  7,  0,
         0,  2, 14,  5, 10, 12,  0,  0,
         0,  0,  6, 13, 10,  0,  0,  0,
    ]
    np.testing.assert_array_equal(X[0] * 16, first)
    assert y[0] == 0


@pytest.mark.parametrize("loader", [load_iris, load_digits])
def test_loaders_return_fresh_arrays(loader):
    X, y = loader()
    X_again, y_again = loader()
    X[:] = -1
    y[:] = -1
    X_fresh, y_fresh = loader()
    np.testing.assert_array_equal(X_fresh, X_again)
    np.testing.assert_array_equal(y_fresh, y_again)
    assert X.flags.writeable and y.flags.writeable


@pytest.mark.parametrize("filename, shape", [("iris.npz", (150, 4)), ("digits.npz", (1797, 64))])
def test_shipped_files_are_compact_and_need_no_pickle(filename, shape):
    path = resources.files("fastnn.datasets") / "data" / filename
    with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["data", "target"]
        assert npz["data"].dtype == np.uint8 and npz["data"].shape == shape
        assert npz["target"].dtype == np.uint8 and npz["target"].shape == shape[:1]
    assert len(path.read_bytes()) < 100_000


# ---------------------------------------------------------------------------------------------
# make_spirals
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, classes, counts", [
    (300, 3, [100, 100, 100]), (301, 3, [101, 100, 100]), (302, 3, [101, 101, 100]), (10, 4, [3, 3, 2, 2]),
    (2, 2, [1, 1]),
])
def test_spirals_shape_dtype_and_even_classes(n, classes, counts):
    X, y = make_spirals(n=n, classes=classes, seed=0)
    assert X.shape == (n, 2) and X.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=classes), counts)
    assert np.all(np.diff(y) >= 0)  # ordered by class
    assert np.linalg.norm(X, axis=1).max() <= 1 + 1e-6  # radii run from 0 to 1


def test_spirals_default_and_classic_formula():
    X, y = make_spirals()
    assert X.shape == (300, 2)
    np.testing.assert_array_equal(np.bincount(y), [100, 100, 100])
    X, y = make_spirals(n=30, classes=3, noise=0.0)
    r = np.tile(np.linspace(0, 1, 10), 3)
    t = np.concatenate([np.linspace(4 * j, 4 * (j + 1), 10) for j in range(3)])
    np.testing.assert_allclose(X, np.column_stack([r * np.sin(t), r * np.cos(t)]), atol=1e-6)


def test_spirals_noise_moves_the_angle_only():
    X0, _ = make_spirals(n=60, noise=0.0)
    X1, _ = make_spirals(n=60, noise=0.5, seed=1)
    np.testing.assert_allclose(np.linalg.norm(X1, axis=1), np.linalg.norm(X0, axis=1), atol=1e-6)
    assert np.abs(X1 - X0).max() > 0.05


def test_spirals_deterministic_by_seed():
    a, b, c = make_spirals(seed=3), make_spirals(seed=3), make_spirals(seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(classes=1), ValueError, "make_spirals: classes must be >= 2; got 1"),
    (dict(n=2, classes=3), ValueError,
     r"make_spirals: n must be >= classes \(3\) so that every class gets a sample; got 2"),
    (dict(n=100.0), TypeError, "make_spirals: n must be an integer"),
    (dict(classes=True), TypeError, "make_spirals: classes must be an integer"),
    (dict(noise=-0.1), ValueError, "make_spirals: noise must be >= 0; got -0.1"),
    (dict(noise=float("nan")), ValueError, "make_spirals: noise must be finite"),
    (dict(seed=-1), ValueError, "make_spirals: seed must be >= 0"),
])
def test_spirals_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_spirals(**kwargs)


# ---------------------------------------------------------------------------------------------
# make_moons
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, counts", [(200, [100, 100]), (201, [100, 101]), (2, [1, 1])])
def test_moons_shape_dtype_and_classes(n, counts):
    X, y = make_moons(n=n, seed=0)
    assert X.shape == (n, 2) and X.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), counts)


def test_moons_without_noise_lie_on_two_half_circles():
    X, y = make_moons(n=101, noise=0.0)
    upper, lower = X[y == 0].astype(np.float64), X[y == 1].astype(np.float64)
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0, atol=1e-6)
    assert upper[:, 1].min() >= -1e-6 and lower[:, 1].max() <= 0.5 + 1e-6
    # end points as in scikit-learn: upper arc from (1, 0) to (-1, 0), lower arc from (0, 0.5) to (2, 0.5)
    np.testing.assert_allclose(upper[[0, -1]], [[1, 0], [-1, 0]], atol=1e-6)
    np.testing.assert_allclose(lower[[0, -1]], [[0, 0.5], [2, 0.5]], atol=1e-6)


def test_moons_noise_has_the_requested_scale_and_seed_determinism():
    clean, _ = make_moons(n=4000, noise=0.0)
    noisy, _ = make_moons(n=4000, noise=0.3, seed=0)
    assert abs(float((noisy - clean).std()) - 0.3) < 0.01
    np.testing.assert_array_equal(noisy, make_moons(n=4000, noise=0.3, seed=0)[0])
    assert not np.array_equal(noisy, make_moons(n=4000, noise=0.3, seed=1)[0])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=1), ValueError, "make_moons: n must be >= 2; got 1"),
    (dict(n="200"), TypeError, "make_moons: n must be an integer"),
    (dict(noise=-1.0), ValueError, "make_moons: noise must be >= 0; got -1.0"),
    (dict(noise="0.1"), TypeError, "make_moons: noise must be a real number"),
    (dict(seed=2.0), TypeError, "make_moons: seed must be an integer"),
])
def test_moons_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_moons(**kwargs)
