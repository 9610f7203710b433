"""Small datasets for examples and tests: two classic tables shipped inside the package, two generators.

``load_iris`` and ``load_digits`` read compressed files in ``fastnn/datasets/data`` (see the
README there for their source and licence); nothing is downloaded. Every call returns fresh
arrays, which the caller may modify freely. All functions return ``(X, y)`` with float32
features and int64 class labels, ordered by class; ``fastnn.data.split`` and
``fastnn.data.batches`` shuffle them.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from fastnn._checks import check_float, check_int, check_seed

__all__ = ["load_iris", "load_digits", "make_spirals", "make_moons"]


def _load(filename):
    """The ``data`` and ``target`` arrays of a shipped .npz file, as stored (uint8)."""
    path = resources.files(__name__) / "data" / filename
    with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        return npz["data"], npz["target"]


def load_iris():
    """Fisher's iris data: 150 flowers, 4 measurements in cm, 3 species (50 each).

    Features: sepal length, sepal width, petal length, petal width. Classes: 0 setosa,
    1 versicolor, 2 virginica. This is Fisher's table as in R and scikit-learn, which differs
    from the UCI copy in two data points.

    Returns
    -------
    X : ndarray of float32, shape (150, 4)
    y : ndarray of int64, shape (150,), values in {0, 1, 2}

    References
    ----------
    R. A. Fisher, "The use of multiple measurements in taxonomic problems", Annals of Eugenics
    7(2), 179-188 (1936).

    Examples
    --------
    >>> X, y = load_iris()
    >>> X.shape, X.dtype, np.bincount(y)
    ((150, 4), dtype('float32'), array([50, 50, 50]))
    >>> X[0]
    array([5.1, 3.5, 1.4, 0.2], dtype=float32)
    """
    millimetres, target = _load("iris.npz")
    return millimetres.astype(np.float32) / np.float32(10), target.astype(np.int64)


def load_digits():
    """Hand-written digits: 1797 images of 8x8 pixels, classes 0..9.

    The test set of the UCI "Optical Recognition of Handwritten Digits" data (as shipped by
    scikit-learn). Each pixel counts the ink in a 4x4 block of a 32x32 bitmap (0..16); here it
    is divided by 16, so features lie in [0, 1]. Rows are the images flattened row by row; use
    ``X.reshape(-1, 8, 8)`` for images.

    Returns
    -------
    X : ndarray of float32, shape (1797, 64), values in [0, 1]
    y : ndarray of int64, shape (1797,), values in 0..9

    References
    ----------
    E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning
    Repository (1998), https://archive.ics.uci.edu/ml/datasets/Optical+Recognition+of+Handwritten+Digits.

    Examples
    --------
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, float(X.min()), float(X.max())
    ((1797, 64), dtype('float32'), 0.0, 1.0)
    >>> np.bincount(y)
    array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    """
    pixels, target = _load("digits.npz")
    return pixels.astype(np.float32) / np.float32(16), target.astype(np.int64)


def _class_sizes(n, classes):
    """``n`` samples shared over ``classes`` as evenly as possible, the first classes one larger."""
    return [n // classes + (j < n % classes) for j in range(classes)]


def make_spirals(n=300, classes=3, noise=0.2, seed=None):
    """Interleaved spiral arms, one per class (the CS231n toy problem that no linear model solves).

    Class j's i-th point has radius r = i / (n_j - 1) and angle t = 4 (j + r) + noise * N(0, 1)
    radians, at (r sin t, r cos t); so every arm runs from the origin to radius 1.

    Parameters
    ----------
    n : int, default 300
        Total number of samples, >= classes; shared out as evenly as possible (the first
        ``n % classes`` classes get one more).
    classes : int, default 3
        Number of arms, >= 2.
    noise : float, default 0.2
        Standard deviation of the angle noise in radians, >= 0.
    seed : int >= 0 or None, default None
        Seed of ``np.random.default_rng``; the same seed gives the same data.

    Returns
    -------
    X : ndarray of float32, shape (n, 2), within the unit disc
    y : ndarray of int64, shape (n,), in 0..classes-1, ordered by class

    References
    ----------
    A. Karpathy, CS231n "Putting it together: minimal neural network case study",
    https://cs231n.github.io/neural-networks-case-study/.

    Examples
    --------
    >>> X, y = make_spirals(n=301, classes=3, seed=0)
    >>> X.shape, X.dtype, np.bincount(y)
    ((301, 2), dtype('float32'), array([101, 100, 100]))
    """
    owner = "make_spirals"
    classes = check_int(owner, "classes", classes, low=2)
    n = check_int(owner, "n", n)
    if n < classes:
        raise ValueError(
            f"{owner}: n must be >= classes ({classes}) so that every class gets a sample; got {n}."
        )
    noise = check_float(owner, "noise", noise, low=0)
    rng = np.random.default_rng(check_seed(owner, seed))

    X, y = [], []
    for j, size in enumerate(_class_sizes(n, classes)):
        r = np.linspace(0.0, 1.0, size)
        t = np.linspace(4.0 * j, 4.0 * (j + 1), size) + noise * rng.standard_normal(size)
        X.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
        y.append(np.full(size, j, dtype=np.int64))
    return np.concatenate(X).astype(np.float32), np.concatenate(y)


def make_moons(n=200, noise=0.1, seed=None):
    """Two interleaving half circles, as scikit-learn's ``make_moons``.

    Class 0 is the upper arc (cos s, sin s) and class 1 the lower arc (1 - cos s, 0.5 - sin s),
    s evenly spaced in [0, pi]; Gaussian noise of standard deviation ``noise`` is added to both
    coordinates.

    Parameters
    ----------
    n : int, default 200
        Total number of samples, >= 2; class 0 gets ``n // 2`` and class 1 the rest.
    noise : float, default 0.1
        Standard deviation of the noise, >= 0.
    seed : int >= 0 or None, default None
        Seed of ``np.random.default_rng``; the same seed gives the same data.

    Returns
    -------
    X : ndarray of float32, shape (n, 2)
    y : ndarray of int64, shape (n,), in {0, 1}, ordered by class

    Examples
    --------
    >>> X, y = make_moons(n=101, noise=0.0)
    >>> X.shape, X.dtype, np.bincount(y)
    ((101, 2), dtype('float32'), array([50, 51]))
    """
    owner = "make_moons"
    n = check_int(owner, "n", n, low=2)
    noise = check_float(owner, "noise", noise, low=0)
    rng = np.random.default_rng(check_seed(owner, seed))

    n_upper = n // 2
    s_upper = np.linspace(0.0, np.pi, n_upper)
    s_lower = np.linspace(0.0, np.pi, n - n_upper)
    X = np.concatenate([
        np.column_stack([np.cos(s_upper), np.sin(s_upper)]),
        np.column_stack([1.0 - np.cos(s_lower), 0.5 - np.sin(s_lower)]),
    ])
    X += noise * rng.standard_normal(X.shape)
    y = np.repeat(np.array([0, 1], dtype=np.int64), [n_upper, n - n_upper])
    return X.astype(np.float32), y
