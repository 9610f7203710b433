"""Preparing arrays for training: splits, cross-validation folds, scalers, one-hot codes, mini-batches.

Features (``X``) keep a float32 or float64 dtype and become float32 otherwise (ints, bools,
lists), the dtype the rest of fastnn computes in. Targets (``y``) keep their own dtype, so
integer labels stay integers. All randomness comes from ``np.random.default_rng(seed)``: the
same seed gives the same result.
"""

from __future__ import annotations

import numbers
import re

import numpy as np

from fastnn._checks import (
    FLOAT_DTYPES,
    as_float_array,
    as_label_array,
    check_dtype_name,
    check_float,
    check_int,
    check_same_length,
    check_seed,
)

__all__ = ["split", "kfold", "Standardizer", "MinMaxScaler", "one_hot", "batches", "read_csv", "read_npz", "Table",
           "TableEncoder", "MISSING"]


# ---------------------------------------------------------------------------------------------
# Private checks shared by the functions below
# ---------------------------------------------------------------------------------------------

def _check_not_scalar(owner, name, value):
    """Raise for a number or 0-d array, which np.ascontiguousarray would quietly turn into one sample."""
    if isinstance(value, (numbers.Number, np.generic)) or getattr(value, "ndim", None) == 0:
        raise ValueError(
            f"{owner}: {name} must be an array with one entry per sample; got the scalar {value!r}."
        )


def _as_features(owner, X, *, ndim=2, allow_empty=False):
    """Validated features: float32/float64 kept, any other numbers become float32.

    ``ndim=None`` accepts any array of samples (1-D or more), e.g. images of shape (n, 8, 8).
    """
    _check_not_scalar(owner, "X", X)
    dtype = getattr(X, "dtype", None)
    # `dtype in FLOAT_DTYPES` alone is not enough: NumPy compares None equal to float64.
    if not isinstance(dtype, np.dtype) or dtype not in FLOAT_DTYPES:
        dtype = np.float32
    return as_float_array(owner, "X", X, dtype=dtype, ndim=ndim, allow_empty=allow_empty)


def _as_targets(owner, y):
    """Validated targets of any numeric dtype and shape (1-D or more), with the dtype kept."""
    _check_not_scalar(owner, "y", y)
    # dtype=None keeps y's own dtype (integer labels stay integers); the checks still reject
    # strings, objects, float16 and NaN/inf.
    return as_float_array(owner, "y", y, dtype=None, ndim=None, allow_empty=True)


def _check_bool(owner, name, value):
    """Return ``value`` as bool if it is True or False (NumPy bools too), else raise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False; got {value!r}.")
    return bool(value)


def _check_fractions(owner, fractions):
    """Return ``fractions`` as a tuple of 2 or 3 floats > 0 that sum to 1 (within 1e-6)."""
    if not isinstance(fractions, (tuple, list, np.ndarray)) or len(fractions) not in (2, 3):
        raise ValueError(
            f"{owner}: fractions must be a tuple of 2 or 3 positive numbers summing to 1; "
            f"got {fractions!r}; e.g. (0.8, 0.2) or (0.7, 0.15, 0.15)."
        )
    values = tuple(
        check_float(owner, f"fractions[{i}]", f, low=0, low_open=True) for i, f in enumerate(fractions)
    )
    total = sum(values)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(
            f"{owner}: fractions must sum to 1; got {tuple(fractions)!r}, which sums to {total:.6g}; "
            f"e.g. (0.8, 0.2) or (0.7, 0.15, 0.15)."
        )
    return values


def _apportion(total, weights):
    """Integer counts that sum to ``total``, proportional to ``weights``.

    Largest-remainder rounding: each count is the floor of its quota, and the units left over go
    to the largest fractional parts (ties to the earlier entry).
    """
    weights = np.asarray(weights, dtype=np.float64)
    quota = total * weights / weights.sum()
    counts = np.floor(quota).astype(np.int64)
    left_over = total - int(counts.sum())
    order = np.argsort(counts - quota, kind="stable")  # largest fractional part first
    counts[order[:left_over]] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# Splits and folds
# ---------------------------------------------------------------------------------------------

def split(X, y=None, fractions=(0.8, 0.2), stratify=False, seed=None):
    """Shuffle the samples and split them into 2 or 3 parts of the given fractions.

    Part sizes are rounded (largest remainder) so that every sample lands in exactly one part.
    With ``stratify=True`` each class is divided across the parts in the same proportions, so
    every part keeps the class balance of ``y`` (to about one sample per class and part).

    Parameters
    ----------
    X : array_like, shape (n_samples, ...)
        Features, 1-D or more, finite. float32/float64 are kept; other numbers become float32.
    y : array_like, shape (n_samples, ...) or None, default None
        Targets, split along with ``X``; their dtype is kept. Integer class labels when
        ``stratify=True``.
    fractions : tuple of float, default (0.8, 0.2)
        2 or 3 numbers > 0 that sum to 1 (within 1e-6), e.g. (0.7, 0.15, 0.15) for
        train/validation/test.
    stratify : bool, default False
        Keep the class proportions of ``y`` in every part.
    seed : int >= 0 or None, default None
        Seed of ``np.random.default_rng``; the same seed gives the same split.

    Returns
    -------
    tuple
        One ``(X_part, y_part)`` pair per fraction, in the order of ``fractions``; just the
        ``X_part`` arrays when ``y`` is None. Every part is a shuffled copy.

    Raises
    ------
    ValueError
        If a part would get no sample, if ``X`` and ``y`` differ in length, if ``X`` or ``y``
        holds NaN/inf, or if ``fractions`` are invalid.

    Examples
    --------
    >>> X = np.arange(40, dtype=np.float32).reshape(20, 2)
    >>> y = np.array([0] * 10 + [1] * 10)
    >>> (X_train, y_train), (X_test, y_test) = split(X, y, fractions=(0.8, 0.2), stratify=True, seed=0)
    >>> X_train.shape, X_test.shape
    ((16, 2), (4, 2))
    >>> np.bincount(y_test)
    array([2, 2])
    """
    owner = "split"
    X = _as_features(owner, X, ndim=None)
    if y is not None:
        y = _as_targets(owner, y)
        check_same_length(owner, X=X, y=y)
    fractions = _check_fractions(owner, fractions)
    stratify = _check_bool(owner, "stratify", stratify)
    if stratify and y is None:
        raise ValueError(f"{owner}: stratify=True needs the class labels y; pass y or use stratify=False.")
    labels = as_label_array(owner, "y", y) if stratify else None
    rng = np.random.default_rng(check_seed(owner, seed))

    n = len(X)
    sizes = _apportion(n, fractions)
    if sizes.min() < 1:
        raise ValueError(
            f"{owner}: every part must get at least one sample; fractions {fractions!r} of {n} samples "
            f"give part sizes {tuple(int(s) for s in sizes)}; use more samples or larger fractions."
        )

    if stratify:
        parts = _stratified_parts(labels, sizes, rng)
    else:
        parts = np.split(rng.permutation(n), np.cumsum(sizes)[:-1])

    if y is None:
        return tuple(X[idx] for idx in parts)
    return tuple((X[idx], y[idx]) for idx in parts)


def _stratified_parts(labels, sizes, rng):
    """Shuffled index arrays of the given sizes, each holding every class in proportion.

    Part after part, the part's size is shared out among the classes in proportion to what is
    left of each (as scikit-learn's StratifiedShuffleSplit does); the last part takes the rest.
    Since a share never exceeds what is left of a class, this always adds up.
    """
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    left = np.array([len(m) for m in members], dtype=np.int64)

    shares = []  # shares[p][c]: how many samples of class c go to part p
    for size in sizes[:-1]:
        share = _apportion(size, left)
        shares.append(share)
        left -= share
    shares.append(left)

    ends = np.cumsum(shares, axis=0)  # ends[p][c]: where part p's slice of class c ends
    parts = []
    for p in range(len(sizes)):
        starts = ends[p - 1] if p else np.zeros(len(classes), dtype=np.int64)
        idx = np.concatenate([m[s:e] for m, s, e in zip(members, starts, ends[p])])
        parts.append(rng.permutation(idx))
    return parts


def kfold(n, k=5, stratify_y=None, seed=None):
    """Indices for k-fold cross-validation: k (train, validation) pairs over range(n).

    The validation folds are disjoint, cover range(n), and differ in size by at most one. With
    ``stratify_y`` the samples of each class are dealt round-robin over the folds, so every fold
    keeps the class proportions (each class's count differs by at most one between folds).

    Parameters
    ----------
    n : int
        Number of samples, >= 2.
    k : int, default 5
        Number of folds, in [2, n].
    stratify_y : array_like of int, shape (n,), or None, default None
        Class labels to stratify by.
    seed : int >= 0 or None, default None
        Seed of ``np.random.default_rng``, which assigns samples to folds.

    Returns
    -------
    list of tuple of ndarray
        ``k`` pairs ``(train_idx, val_idx)`` of sorted int64 indices; ``val_idx`` is fold i and
        ``train_idx`` every other sample.

    Examples
    --------
    >>> folds = kfold(10, k=3, seed=0)
    >>> [len(val) for _, val in folds]
    [4, 3, 3]
    >>> np.array_equal(np.sort(np.concatenate([val for _, val in folds])), np.arange(10))
    True
    """
    owner = "kfold"
    n = check_int(owner, "n", n, low=2)
    k = check_int(owner, "k", k)
    if not 2 <= k <= n:
        raise ValueError(
            f"{owner}: k must be in [2, n] = [2, {n}]; got {k}; every fold needs at least one sample."
        )
    rng = np.random.default_rng(check_seed(owner, seed))

    order = rng.permutation(n)
    if stratify_y is not None:
        labels = as_label_array(owner, "stratify_y", stratify_y)
        if len(labels) != n:
            raise ValueError(
                f"{owner}: stratify_y must hold n={n} labels, one per sample; got {len(labels)}."
            )
        order = order[np.argsort(labels[order], kind="stable")]  # grouped by class, shuffled within
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % k  # dealt round-robin, so every fold gets its share of each class

    return [
        (np.flatnonzero(fold_of != i).astype(np.int64), np.flatnonzero(fold_of == i).astype(np.int64))
        for i in range(k)
    ]


# ---------------------------------------------------------------------------------------------
# Scalers
# ---------------------------------------------------------------------------------------------

class _Scaler:
    """fit / transform / inverse_transform shared by the scalers.

    Subclasses compute their statistics in ``_fit(X)`` and map arrays in ``_forward(X)`` and
    ``_inverse(X)``; all three see float64. Results are cast back to the input's float dtype.
    """

    def fit(self, X):
        """Learn the statistics of ``X`` (n_samples, n_features); return self."""
        X = _as_features(f"{type(self).__name__}.fit", X)
        self._fit(X.astype(np.float64, copy=False))
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        """Scale ``X`` (n_samples, n_features) with the fitted statistics."""
        return self._apply("transform", X, self._forward)

    def inverse_transform(self, X):
        """Undo ``transform``: map scaled data back to the original units."""
        return self._apply("inverse_transform", X, self._inverse)

    def fit_transform(self, X):
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def _apply(self, method, X, mapping):
        name = type(self).__name__
        owner = f"{name}.{method}"
        if not hasattr(self, "n_features_in_"):
            raise RuntimeError(f"{owner}: this {name} is not fitted yet; call fit first.")
        X = _as_features(owner, X, allow_empty=True)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{owner}: X has {X.shape[1]} features; the {name} was fitted on {self.n_features_in_}."
            )
        return mapping(X.astype(np.float64, copy=False)).astype(X.dtype, copy=False)


class Standardizer(_Scaler):
    """Standard scores per feature: z = (x - mean_) / scale_.

    ``scale_`` is the population standard deviation (ddof=0). Statistics are computed in
    float64; ``transform`` keeps float32/float64 input as it is and turns other numbers into
    float32. A constant feature gets ``scale_`` 1, so it maps to exactly 0 instead of dividing
    by zero.

    Attributes
    ----------
    mean_ : ndarray of float64, shape (n_features,)
    scale_ : ndarray of float64, shape (n_features,)
        Standard deviation, or 1 for constant features.
    n_features_in_ : int

    Examples
    --------
    >>> X = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    >>> scaler = Standardizer().fit(X)
    >>> scaler.mean_, scaler.scale_
    (array([2., 5.]), array([1., 1.]))
    >>> scaler.transform(X)
    array([[-1.,  0.],
           [ 1.,  0.]], dtype=float32)
    """

    def _fit(self, X):
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        constant = X.min(axis=0) == X.max(axis=0)
        # The float64 mean of equal numbers may be off by a rounding error; the value itself makes
        # a constant feature come out as exactly 0.
        mean[constant] = X[0, constant]
        self.mean_ = mean
        self.scale_ = np.where(constant | ~(std > 0), 1.0, std)  # std can underflow to 0

    def _forward(self, X):
        return (X - self.mean_) / self.scale_

    def _inverse(self, X):
        return X * self.scale_ + self.mean_


class MinMaxScaler(_Scaler):
    """Rescale each feature to [lo, hi]: x' = lo + (x - data_min_) / (data_max_ - data_min_) * (hi - lo).

    Statistics are computed in float64; ``transform`` keeps float32/float64 input as it is and
    turns other numbers into float32. A constant feature maps to ``lo`` (scikit-learn's
    convention), never dividing by zero. Data outside the fitted range maps outside
    ``feature_range``; nothing is clipped.

    Parameters
    ----------
    feature_range : tuple of float, default (0, 1)
        ``(lo, hi)``, finite, with lo < hi.

    Attributes
    ----------
    data_min_, data_max_ : ndarray of float64, shape (n_features,)
        Per-feature minimum and maximum of the fitted data.
    n_features_in_ : int

    Examples
    --------
    >>> X = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    >>> MinMaxScaler(feature_range=(-1, 1)).fit_transform(X)
    array([[-1., -1.],
           [ 0.,  1.],
           [ 1.,  0.]])
    """

    def __init__(self, feature_range=(0, 1)):
        owner = "MinMaxScaler"
        bad = f"{owner}: feature_range must be a pair (lo, hi) with lo < hi; got {feature_range!r}."
        if not isinstance(feature_range, (tuple, list)) or len(feature_range) != 2:
            raise ValueError(bad)
        lo, hi = (check_float(owner, f"feature_range[{i}]", v) for i, v in enumerate(feature_range))
        if not lo < hi:
            raise ValueError(bad)
        self.feature_range = (lo, hi)

    def _fit(self, X):
        self.data_min_ = X.min(axis=0)
        self.data_max_ = X.max(axis=0)

    def _span(self):
        """data_max_ - data_min_, with 1 for constant features so that they map to lo."""
        span = self.data_max_ - self.data_min_
        return np.where(span > 0, span, 1.0)

    def _forward(self, X):
        lo, hi = self.feature_range
        return (X - self.data_min_) / self._span() * (hi - lo) + lo

    def _inverse(self, X):
        lo, hi = self.feature_range
        return (X - lo) / (hi - lo) * self._span() + self.data_min_


# ---------------------------------------------------------------------------------------------
# Labels and batches
# ---------------------------------------------------------------------------------------------

def one_hot(y, n_classes=None, dtype=np.float32):
    """One-hot codes: out[i, y[i]] = 1, every other entry 0.

    Parameters
    ----------
    y : array_like of int, shape (n_samples,)
        Class labels in [0, n_classes); whole-numbered floats are accepted.
    n_classes : int >= 1 or None, default None
        Number of columns; None means ``max(y) + 1``.
    dtype : {np.float32, np.float64, 'float32', 'float64'}, default np.float32

    Returns
    -------
    ndarray, shape (n_samples, n_classes)

    Examples
    --------
    >>> one_hot([0, 2, 1])
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]], dtype=float32)
    """
    owner = "one_hot"
    labels = as_label_array(owner, "y", y)
    dtype = check_dtype_name(owner, dtype)
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"{owner}: y must hold labels >= 0; got the label {int(labels.min())}; "
            f"map labels to 0..n_classes-1 first."
        )
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    else:
        n_classes = check_int(owner, "n_classes", n_classes, low=1)
        if labels.size and labels.max() >= n_classes:
            raise ValueError(
                f"{owner}: y must be in [0, {n_classes}) for n_classes={n_classes}; got the label "
                f"{int(labels.max())}; raise n_classes or map labels to 0..{n_classes - 1}."
            )
    out = np.zeros((labels.size, n_classes), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out


def batches(X, y=None, batch_size=32, shuffle=True, seed=None):
    """Iterate over mini-batches that together hold every sample exactly once.

    The inputs are checked when ``batches`` is called, not when the first batch is drawn.

    Parameters
    ----------
    X : array_like, shape (n_samples, ...)
        Features, 1-D or more, finite. float32/float64 are kept; other numbers become float32.
    y : array_like, shape (n_samples, ...) or None, default None
        Targets, batched along with ``X``; their dtype is kept.
    batch_size : int >= 1 or None, default 32
        Samples per batch; the last batch holds the remainder and may be smaller. None gives one
        batch of all samples.
    shuffle : bool, default True
        Draw the samples in a random order (``np.random.default_rng(seed)``); otherwise in order,
        and the batches are views of the validated ``X`` and ``y``.
    seed : int >= 0 or None, default None

    Yields
    ------
    Xb or (Xb, yb)
        ``(Xb, yb)`` pairs when ``y`` is given, else ``Xb`` arrays.

    Examples
    --------
    >>> X, y = np.zeros((10, 3)), np.arange(10)
    >>> [len(yb) for _, yb in batches(X, y, batch_size=4, seed=0)]
    [4, 4, 2]
    >>> [yb.tolist() for _, yb in batches(X, y, batch_size=4, shuffle=False)]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """
    owner = "batches"
    X = _as_features(owner, X, ndim=None)
    if y is not None:
        y = _as_targets(owner, y)
        check_same_length(owner, X=X, y=y)
    batch_size = len(X) if batch_size is None else check_int(owner, "batch_size", batch_size, low=1)
    shuffle = _check_bool(owner, "shuffle", shuffle)
    seed = check_seed(owner, seed)
    order = np.random.default_rng(seed).permutation(len(X)) if shuffle else None
    return _iter_batches(X, y, batch_size, order)


def _iter_batches(X, y, batch_size, order):
    """The generator behind ``batches``: ``order`` is a permutation, or None for slices in order."""
    for start in range(0, len(X), batch_size):
        if order is None:
            idx = slice(start, start + batch_size)
        else:
            idx = order[start:start + batch_size]
        yield X[idx] if y is None else (X[idx], y[idx])



# ---------------------------------------------------------------------------------------------
# Tables: CSV/NPZ files and column-named data (pandas optional)
# ---------------------------------------------------------------------------------------------

#: Cells read as a missing value (after stripping spaces), in CSV files and string columns.
MISSING = frozenset({"", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "?"})


class Table:
    """Named columns of a table as read: ``names`` (list of str, in file order) and ``columns``
    ({name: 1-D array}); CSV cells stay strings (see TableEncoder), NPZ arrays keep their dtype.
    ``source`` names the file (or 'DataFrame') in messages; ``n_rows`` rows."""

    def __init__(self, names, columns, source="table"):
        self.names, self.columns, self.source = list(names), dict(columns), source
        self.n_rows = len(next(iter(self.columns.values()))) if self.columns else 0

    @classmethod
    def from_any(cls, data, owner="Table"):
        """A Table from a Table, a pandas DataFrame or a dict {name: 1-D values} (no pandas needed)."""
        if isinstance(data, Table):
            return data
        if hasattr(data, "columns") and hasattr(data, "__getitem__") and not isinstance(data, dict):  # DataFrame
            names = [str(c) for c in data.columns]
            return cls(names, {str(c): np.asarray(data[c]) for c in data.columns}, "DataFrame")
        if isinstance(data, dict):
            cols = {str(k): np.asarray(v) for k, v in data.items()}
            lengths = {len(v) for v in cols.values()}
            if any(v.ndim != 1 for v in cols.values()) or len(lengths) > 1:
                raise ValueError(f"{owner}: every column must be 1-D and of the same length; got lengths "
                                 f"{sorted(lengths)}.")
            return cls(list(cols), cols, "dict")
        raise TypeError(f"{owner}: data must be a fastnn.data.Table, a pandas DataFrame or a dict of columns; "
                        f"got {type(data).__name__}.")

    def __repr__(self):
        return f"Table({self.n_rows} rows, columns {self.names}, from {self.source})"


def read_csv(path):
    """Read a CSV file (UTF-8, a header row, comma-separated) into a Table of string columns.

    A UTF-8 byte-order mark is dropped; blank lines are skipped. Raises ValueError with one line
    naming the file (and the line) for text that is not UTF-8, a row with more or fewer values
    than the header, a field over the csv module's limit, a duplicate or empty column name, or
    no data row; FileNotFoundError for a missing file. Needs no pandas.
    """
    import csv

    owner = "fastnn.data.read_csv"
    path = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header, rows = None, []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if header is None:
                    header = [h.strip() for h in row]
                    continue
                if len(row) != len(header):
                    raise ValueError(f"{owner}: {path}: line {reader.line_num} has {len(row)} values; the header "
                                     f"has {len(header)} columns. Every row needs one value per column.")
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{owner}: {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                         f"{exc.start}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8).") from None
    except csv.Error as exc:
        raise ValueError(f"{owner}: {path}: line {reader.line_num}: {exc} (fields are limited to "
                         f"{csv.field_size_limit():,} characters).") from None
    except IsADirectoryError:
        raise ValueError(f"{owner}: {path} is a directory; give a .csv file.") from None
    if header is None or not rows:
        raise ValueError(f"{owner}: {path}: needs a header row and at least one data row.")
    blank = [i for i, h in enumerate(header) if not h]
    if blank:
        raise ValueError(f"{owner}: {path}: column {blank[0] + 1} of the header has no name.")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"{owner}: {path}: the header names {dup[0]!r} more than once; column names must be unique.")
    columns = {h: np.array([r[j].strip() for r in rows], dtype=object) for j, h in enumerate(header)}
    return Table(header, columns, path)


def read_npz(path, keys=None):
    """Read the arrays of an NPZ archive ({key: array}) without ever unpickling.

    Raises ValueError naming the file for a file that is not an NPZ archive (text, a single
    .npy, a damaged zip) or that holds object arrays."""
    import zipfile
    import zlib

    owner = "fastnn.data.read_npz"
    path = str(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except IsADirectoryError:
        raise ValueError(f"{owner}: {path} is a directory; give a .npz file.") from None
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(f"{owner}: {path} is a single .npy array, not an NPZ archive; save X and y with "
                         f"numpy.savez(path, X=X, y=y).")
    if not magic.startswith(b"PK"):
        raise ValueError(f"{owner}: {path} is not an NPZ archive (it does not start with a zip signature); "
                         f"save X and y with numpy.savez(path, X=X, y=y).")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.keys())
            return {k: np.asarray(z[k]) for k in (names if keys is None else [k for k in keys if k in names])}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"{owner}: {path} holds object arrays, which fastnn never unpickles; save numeric "
                             f"(or fixed-width string) arrays.") from None
        raise ValueError(f"{owner}: {path} is a damaged NPZ archive ({exc}).") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, NotImplementedError,
            RuntimeError) as exc:
        raise ValueError(f"{owner}: {path} is a damaged NPZ archive ({type(exc).__name__}: {exc}).") from None


def _is_missing(values):
    """Boolean mask of missing cells of a 1-D array (strings in MISSING, None, or float NaN)."""
    if values.dtype.kind in "fc":
        return np.isnan(values)
    if values.dtype.kind in "biu":
        return np.zeros(len(values), bool)
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in MISSING
                     for v in values.tolist()], dtype=bool)


_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+")


def _as_numbers(values):
    """float64 array of a column, NaN where missing; None when a present cell is not a number."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    try:  # fast path: every cell a number (or NaN), converted in C
        return values.astype(np.float64)
    except (TypeError, ValueError):
        pass
    missing = _is_missing(values)
    out = np.full(len(values), np.nan)
    try:
        out[~missing] = [float(v) for v in values[~missing].tolist()]
    except (TypeError, ValueError):
        return None
    return out


def _refuse_stray_text(owner, table, name, values):
    """Raise for a column that is numbers but for a few cells (a typo such as '1.7o', or decimal
    commas such as '2,43'), instead of silently encoding it as hundreds of categories that new
    data would then fall outside of."""
    present = [(i, str(v).strip()) for i, (v, m) in enumerate(zip(values.tolist(), _is_missing(values))) if not m]
    bad = []
    for i, v in present:
        try:
            float(v)
        except ValueError:
            bad.append((i, v))
    if not bad or not present:
        return
    row, value = bad[0]
    if all(_DECIMAL_COMMA.fullmatch(v) for _, v in bad):
        raise ValueError(f"{owner}: {table.source}: column {name!r} writes numbers with decimal commas (row {row + 1}: "
                         f"{value!r}); write them with decimal points ({value.replace(',', '.')!r}).")
    if len(bad) <= 0.1 * len(present):
        raise ValueError(f"{owner}: {table.source}: column {name!r} holds numbers but for {len(bad)} of its "
                         f"{len(present)} cells (row {row + 1}: {value!r}); correct them, or leave them empty to have "
                         f"them imputed.")


class TableEncoder:
    """Turn named table columns into the float matrix a model takes, the same way at training
    and at prediction time: columns matched by name, numeric columns as they are, categorical
    (non-numeric) columns one-hot encoded from the training categories, missing cells imputed.

    Behaviour, decided at ``fit`` and kept in ``to_dict()`` (the CLI stores it in the model):

    - Columns are matched by name, in any order. A feature column missing from the data raises
      ValueError naming it; so does an extra column, unless it is ``target`` or listed in
      ``ignore`` of transform.
    - A column is numeric when every present cell is a number, else categorical. A categorical
      column becomes one 0/1 column per training category (sorted); a category not seen in
      training raises ValueError naming the column, the value and the row.
    - Missing cells (see MISSING; NaN) of a numeric column are imputed with the training mean
      of that column; of a categorical column they encode as all zeros. A numeric column with
      no value at all in training raises ValueError.

    Parameters
    ----------
    target : str, optional
        The target column's name: excluded from the features.

    >>> enc = TableEncoder(target="y").fit({"a": ["1", "", "3"], "c": ["x", "y", "x"], "y": [0, 1, 0]})
    >>> enc.feature_names_, enc.transform({"c": ["y"], "a": ["5"]}).tolist()
    (['a', 'c=x', 'c=y'], [[5.0, 0.0, 1.0]])
    """

    def __init__(self, target=None):
        if target is not None and not isinstance(target, str):
            raise TypeError(f"TableEncoder: target must be a column name (str) or None; got {target!r}.")
        self.target = target

    def fit(self, data, categories_from=None):
        """Learn the columns, their kinds, categories and imputation values from training rows.

        ``categories_from`` (a table with the same columns, e.g. all rows of the file the
        training rows come from) supplies the categories instead, so that a category present
        only in the validation rows is not an error; the imputation means stay the training
        rows'."""
        owner = "TableEncoder.fit"
        table = Table.from_any(data, owner)
        source = table if categories_from is None else Table.from_any(categories_from, owner)
        self.columns_ = []
        for name in table.names:
            if name == self.target:
                continue
            values = table.columns[name]
            numbers_ = _as_numbers(values) if source is table or _as_numbers(source.columns[name]) is not None \
                else None
            if numbers_ is not None:
                present = numbers_[~np.isnan(numbers_)]
                if present.size == 0:
                    raise ValueError(f"{owner}: {table.source}: column {name!r} has no value in the training rows; "
                                     f"drop it.")
                if not np.isfinite(present).all():
                    raise ValueError(f"{owner}: {table.source}: column {name!r} holds inf.")
                self.columns_.append({"name": name, "kind": "numeric", "fill": float(present.mean())})
            else:
                values = source.columns[name]
                _refuse_stray_text(owner, source, name, values)
                cats = sorted({str(v).strip() for v, m in zip(values.tolist(), _is_missing(values)) if not m})
                self.columns_.append({"name": name, "kind": "categorical", "categories": cats})
        if not self.columns_:
            raise ValueError(f"{owner}: {table.source}: no feature column besides the target {self.target!r}.")
        return self

    @property
    def feature_names_(self):
        """Names of the output columns: a numeric column's name, 'name=category' per category."""
        return [c["name"] if c["kind"] == "numeric" else f"{c['name']}={k}"
                for c in self.columns_ for k in ([None] if c["kind"] == "numeric" else c["categories"])]

    @property
    def input_names_(self):
        """Names of the feature columns the data must have."""
        return [c["name"] for c in self.columns_]

    def transform(self, data, ignore=()):
        """The float64 matrix (n_rows, len(feature_names_)) of ``data`` (Table, DataFrame, dict)."""
        owner = "TableEncoder.transform"
        if not hasattr(self, "columns_"):
            raise RuntimeError(f"{owner}: this TableEncoder is not fitted yet; call fit first.")
        table = Table.from_any(data, owner)
        need = self.input_names_
        missing = [n for n in need if n not in table.columns]
        if missing:
            raise ValueError(f"{owner}: {table.source} has no column {missing[0]!r}, which the model was trained "
                             f"on; its columns: {', '.join(table.names)}.")
        extra = [n for n in table.names if n not in need and n != self.target and n not in ignore]
        if extra:
            hint = ""
            if len(extra) == 1 and self.target is not None and self.target not in table.columns:
                hint = (f", or, if it holds the target the model calls {self.target!r}, name it so or pass "
                        f"--target {extra[0]}")
            raise ValueError(f"{owner}: {table.source} has a column {extra[0]!r} the model was not trained on; "
                             f"drop it{hint} (the model takes {', '.join(need)}).")
        parts = []
        for col in self.columns_:
            name, values = col["name"], table.columns[col["name"]]
            if col["kind"] == "numeric":
                nums = _as_numbers(values)
                if nums is None:
                    absent = _is_missing(values)
                    bad = next(i for i, v in enumerate(values.tolist())
                               if not absent[i] and not _is_number(v))
                    raise ValueError(f"{owner}: {table.source}: row {bad + 1}, column {name!r}: "
                                     f"{str(values[bad])!r} is not a number (the column was numeric in training).")
                if np.isinf(nums).any():
                    bad = int(np.flatnonzero(np.isinf(nums))[0])
                    raise ValueError(f"{owner}: {table.source}: row {bad + 1}, column {name!r} is inf.")
                parts.append(np.where(np.isnan(nums), col["fill"], nums)[:, None])
            else:
                absent = _is_missing(values)
                index = {c: i for i, c in enumerate(col["categories"])}
                block = np.zeros((len(values), len(index)))
                for i, (v, m) in enumerate(zip(values.tolist(), absent)):
                    if m:
                        continue
                    j = index.get(str(v).strip())
                    if j is None:
                        raise ValueError(f"{owner}: {table.source}: row {i + 1}, column {name!r}: category {v!r} was "
                                         f"not seen in training (known: {', '.join(col['categories'][:10])}).")
                    block[i, j] = 1.0
                parts.append(block)
        return np.concatenate(parts, axis=1) if parts else np.zeros((table.n_rows, 0))

    def fit_transform(self, data):
        """``fit(data)`` then ``transform(data)``."""
        return self.fit(data).transform(data)

    def to_dict(self):
        """JSON-able description (model metadata); ``from_dict`` rebuilds the encoder."""
        return {"target": self.target, "columns": self.columns_}

    @classmethod
    def from_dict(cls, d):
        """The encoder ``to_dict`` described; ValueError for anything else."""
        owner = "TableEncoder.from_dict"
        try:
            enc = cls(d.get("target"))
            cols = d["columns"]
            ok = isinstance(cols, list) and all(
                isinstance(c, dict) and isinstance(c.get("name"), str) and
                ((c.get("kind") == "numeric" and isinstance(c.get("fill"), (int, float))) or
                 (c.get("kind") == "categorical" and isinstance(c.get("categories"), list) and
                  all(isinstance(k, str) for k in c["categories"]))) for c in cols) and cols
        except (AttributeError, KeyError, TypeError):
            ok = False
        if not ok:
            raise ValueError(f"{owner}: not a TableEncoder description; got {str(d)[:80]!r}.")
        enc.columns_ = cols
        return enc


def _is_number(v):
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True
