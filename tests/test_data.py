"""Tests for fastnn.data: split, kfold, the scalers, one_hot and batches."""

import numpy as np
import pytest

from fastnn.data import MinMaxScaler, Standardizer, batches, kfold, one_hot, split


def _ids(n):
    """X whose single column is the sample index, so that every sample can be traced."""
    return np.arange(n, dtype=np.float64).reshape(n, 1)


def _labels(counts, seed=0):
    """Shuffled integer labels with counts[c] samples of class c."""
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(y)


# ---------------------------------------------------------------------------------------------
# split
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, fractions, sizes", [
    (10, (0.8, 0.2), (8, 2)),
    (100, (0.7, 0.15, 0.15), (70, 15, 15)),
    (101, (0.7, 0.15, 0.15), (71, 15, 15)),   # the left-over sample goes to the largest remainder
    (7, (0.5, 0.5), (4, 3)),                  # a tie goes to the earlier part
    (3, (1 / 3, 1 / 3, 1 / 3), (1, 1, 1)),
])
@pytest.mark.parametrize("stratify", [False, True])
def test_split_sizes_and_every_sample_used_once(n, fractions, sizes, stratify):
    X = _ids(n)
    y = np.arange(n) % 2 if stratify else np.arange(n)
    parts = split(X, y, fractions=fractions, stratify=stratify, seed=0)
    assert tuple(len(Xp) for Xp, _ in parts) == sizes
    assert tuple(len(yp) for _, yp in parts) == sizes
    used = np.concatenate([Xp[:, 0] for Xp, _ in parts])
    np.testing.assert_array_equal(np.sort(used), np.arange(n))


def test_split_keeps_samples_and_targets_paired():
    X = _ids(50)
    y = np.arange(50) * 10
    for Xp, yp in split(X, y, fractions=(0.6, 0.2, 0.2), seed=3):
        np.testing.assert_array_equal(yp, Xp[:, 0].astype(np.int64) * 10)


def test_split_without_y_returns_only_feature_parts():
    parts = split(_ids(10), fractions=(0.6, 0.4), seed=0)
    assert len(parts) == 2
    assert all(isinstance(p, np.ndarray) for p in parts)
    assert [p.shape for p in parts] == [(6, 1), (4, 1)]


def test_split_is_deterministic_by_seed_and_shuffles():
    X, y = _ids(100), np.arange(100)
    a = split(X, y, seed=7)
    b = split(X, y, seed=7)
    c = split(X, y, seed=8)
    for (Xa, ya), (Xb, yb) in zip(a, b):
        np.testing.assert_array_equal(Xa, Xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][1], c[0][1])
    assert not np.array_equal(a[0][1], np.sort(a[0][1]))  # shuffled, not in input order


def test_split_returns_copies():
    X = _ids(10)
    (Xtr, _), _ = split(X, np.arange(10), seed=0)
    Xtr[:] = -1
    np.testing.assert_array_equal(X[:, 0], np.arange(10))


@pytest.mark.parametrize("counts, fractions", [
    ((60, 30, 10), (0.7, 0.15, 0.15)),
    ((50, 50, 50), (0.8, 0.2)),
    ((90, 7, 3), (0.5, 0.5)),
    ((33, 21, 17, 5), (0.6, 0.2, 0.2)),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_stratified_keeps_class_proportions(counts, fractions, seed):
    y = _labels(counts, seed)
    parts = split(_ids(len(y)), y, fractions=fractions, stratify=True, seed=seed)
    got = np.array([np.bincount(yp, minlength=len(counts)) for _, yp in parts])
    np.testing.assert_array_equal(got.sum(axis=0), counts)  # every sample of every class used once
    expected = np.outer(fractions, counts)
    assert np.abs(got - expected).max() < 2, got  # within one sample of the exact share (+ rounding)


def test_split_stratified_exact_when_proportions_divide():
    y = np.repeat([0, 1, 2], 50)
    (_, ytr), (_, yte) = split(np.zeros((150, 2)), y, fractions=(0.8, 0.2), stratify=True, seed=0)
    np.testing.assert_array_equal(np.bincount(ytr), [40, 40, 40])
    np.testing.assert_array_equal(np.bincount(yte), [10, 10, 10])


def test_split_stratified_is_deterministic_and_shuffled():
    y = _labels((40, 40))
    a = split(_ids(80), y, stratify=True, seed=5)
    b = split(_ids(80), y, stratify=True, seed=5)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[0][0][:, 0], np.sort(a[0][0][:, 0]))
    assert np.any(np.diff(a[0][1]) < 0)  # classes mixed within a part, not one block after another


def test_split_stratified_accepts_whole_float_labels():
    y = np.array([0.0, 1.0] * 10)
    (_, ytr), (_, yte) = split(np.zeros((20, 1)), y, fractions=(0.5, 0.5), stratify=True, seed=0)
    assert ytr.dtype == np.float64  # the targets keep their dtype
    np.testing.assert_array_equal(np.bincount(yte.astype(int)), [5, 5])


@pytest.mark.parametrize("dtype, expected", [
    (np.float32, np.float32), (np.float64, np.float64), (np.int64, np.float32), (bool, np.float32),
])
def test_split_feature_dtypes(dtype, expected):
    X = np.ones((10, 3), dtype=dtype)
    (Xtr, ytr), _ = split(X, np.arange(10, dtype=np.int32), seed=0)
    assert Xtr.dtype == expected
    assert ytr.dtype == np.int32


def test_split_accepts_images_and_lists():
    parts = split(np.zeros((10, 4, 4), np.float32), fractions=(0.5, 0.5), seed=0)
    assert parts[0].shape == (5, 4, 4)
    (Xtr, ytr), _ = split([[1.0], [2.0], [3.0], [4.0]], [0, 1, 0, 1], fractions=(0.5, 0.5), seed=0)
    assert Xtr.dtype == np.float32 and ytr.dtype.kind == "i"


def test_split_accepts_fractions_within_tolerance():
    parts = split(_ids(10), fractions=(0.7, 0.3 + 5e-7), seed=0)
    assert [len(p) for p in parts] == [7, 3]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(fractions=(0.8, 0.3)), ValueError, r"split: fractions must sum to 1; got \(0\.8, 0\.3\)"),
    (dict(fractions=(0.5, 0.4)), ValueError, "which sums to 0.9"),
    (dict(fractions=(1.0,)), ValueError, "fractions must be a tuple of 2 or 3 positive numbers"),
    (dict(fractions=(0.25, 0.25, 0.25, 0.25)), ValueError, "tuple of 2 or 3"),
    (dict(fractions=0.8), ValueError, "tuple of 2 or 3"),
    (dict(fractions=(1.2, -0.2)), ValueError, r"fractions\[1\] must be > 0; got -0\.2"),
    (dict(fractions=(1.0, 0.0)), ValueError, r"fractions\[1\] must be > 0"),
    (dict(fractions=(0.5, float("nan"))), ValueError, r"fractions\[1\] must be finite"),
    (dict(fractions=("a", "b")), TypeError, r"fractions\[0\] must be a real number"),
    (dict(stratify="yes"), TypeError, "split: stratify must be True or False; got 'yes'"),
    (dict(seed=-1), ValueError, "split: seed must be >= 0"),
    (dict(seed=1.5), TypeError, "split: seed must be an integer"),
])
def test_split_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        split(_ids(10), np.arange(10), **kwargs)


def test_split_rejects_bad_arrays():
    mismatch = "split: inputs must have the same number of samples; X has 10, y has 9"
    with pytest.raises(ValueError, match=mismatch):
        split(_ids(10), np.arange(9))
    X = _ids(10)
    X[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"split: X contains NaN or inf \(first at index \[3, 0\]"):
        split(X)
    with pytest.raises(ValueError, match="split: y contains NaN or inf"):
        split(_ids(3), [0.0, np.inf, 1.0], fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="split: X is empty"):
        split(np.zeros((0, 2)))
    scalar = "must be an array with one entry per sample; got the scalar"
    with pytest.raises(ValueError, match=f"split: X {scalar}"):
        split(np.float32(3.0))
    with pytest.raises(ValueError, match=rf"split: y {scalar} 1\."):
        split(_ids(4), 1)
    with pytest.raises(TypeError, match="split: X must hold numbers"):
        split(np.array([["a"], ["b"]]))


def test_split_rejects_an_empty_part():
    with pytest.raises(ValueError, match=r"every part must get at least one sample; .* of 3 samples "
                                         r"give part sizes \(3, 0\); use more samples or larger fractions"):
        split(_ids(3), fractions=(0.9, 0.1))
    with pytest.raises(ValueError, match=r"part sizes \(2, 0, 0\)"):
        split(_ids(2), fractions=(0.8, 0.1, 0.1))


def test_split_stratify_needs_integer_labels():
    with pytest.raises(ValueError, match="split: stratify=True needs the class labels y"):
        split(_ids(10), stratify=True)
    with pytest.raises(ValueError, match="split: y must be 1-D integer labels"):
        split(_ids(10), np.zeros((10, 2)), stratify=True)
    with pytest.raises(ValueError, match=r"split: y must hold integer class labels; got .*0\.5"):
        split(_ids(10), np.full(10, 0.5), stratify=True)


# ---------------------------------------------------------------------------------------------
# kfold
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, k", [(2, 2), (10, 2), (10, 3), (11, 5), (7, 7), (100, 10)])
@pytest.mark.parametrize("stratified", [False, True])
def test_kfold_folds_are_disjoint_and_cover_range(n, k, stratified):
    labels = np.arange(n) % 3 if stratified else None
    folds = kfold(n, k=k, stratify_y=labels, seed=0)
    assert len(folds) == k
    vals = [val for _, val in folds]
    np.testing.assert_array_equal(np.sort(np.concatenate(vals)), np.arange(n))  # disjoint, covering
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    for train, val in folds:
        assert train.dtype == np.int64 and val.dtype == np.int64
        assert np.intersect1d(train, val).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))


@pytest.mark.parametrize("counts, k", [((50, 30, 20), 5), ((13, 8, 2), 4), ((40, 40), 3)])
def test_kfold_stratified_balances_every_class(counts, k):
    y = _labels(counts)
    folds = kfold(len(y), k=k, stratify_y=y, seed=1)
    per_fold = np.array([np.bincount(y[val], minlength=len(counts)) for _, val in folds])
    np.testing.assert_array_equal(per_fold.sum(axis=0), counts)
    assert (per_fold.max(axis=0) - per_fold.min(axis=0)).max() <= 1, per_fold


def test_kfold_leave_one_out():
    folds = kfold(4, k=4, seed=0)
    assert sorted(int(val[0]) for _, val in folds) == [0, 1, 2, 3]
    assert all(len(val) == 1 and len(train) == 3 for train, val in folds)


def test_kfold_is_deterministic_by_seed():
    a, b, c = kfold(30, k=3, seed=4), kfold(30, k=3, seed=4), kfold(30, k=3, seed=5)
    for (ta, va), (tb, vb) in zip(a, b):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(va, vb)
    assert any(not np.array_equal(va, vc) for (_, va), (_, vc) in zip(a, c))


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((10,), dict(k=1), ValueError, r"kfold: k must be in \[2, n\] = \[2, 10\]; got 1"),
    ((10,), dict(k=11), ValueError, r"kfold: k must be in \[2, n\] = \[2, 10\]; got 11; every fold needs"),
    ((10,), dict(k=2.0), TypeError, "kfold: k must be an integer"),
    ((1,), dict(k=2), ValueError, "kfold: n must be >= 2; got 1"),
    ((10.0,), dict(), TypeError, "kfold: n must be an integer"),
    ((10,), dict(k=2, stratify_y=np.zeros(9, int)), ValueError,
     "kfold: stratify_y must hold n=10 labels, one per sample; got 9"),
    ((4,), dict(k=2, stratify_y=[0, 1, 0.5, 1]), ValueError, "kfold: stratify_y must hold integer class"),
    ((10,), dict(seed=-3), ValueError, "kfold: seed must be >= 0"),
])
def test_kfold_rejects_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        kfold(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Standardizer and MinMaxScaler
# ---------------------------------------------------------------------------------------------

def _features(dtype=np.float64, n=200, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 100.0, -5.0, 2.0]).astype(dtype)


def test_standardizer_statistics_match_numpy():
    X = _features()
    scaler = Standardizer().fit(X)
    np.testing.assert_allclose(scaler.mean_, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.scale_, X.std(axis=0), rtol=1e-12)
    assert scaler.mean_.dtype == np.float64 and scaler.scale_.dtype == np.float64
    assert scaler.n_features_in_ == 4
    Z = scaler.transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)


def test_standardizer_computes_float32_statistics_in_float64():
    X = _features(np.float32) + np.float32(1000)
    scaler = Standardizer().fit(X)
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(scaler.mean_, X64.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(scaler.scale_, X64.std(axis=0), rtol=1e-10)


@pytest.mark.parametrize("scaler_cls", [Standardizer, MinMaxScaler])
@pytest.mark.parametrize("dtype, expected, tol", [
    (np.float32, np.float32, 1e-5), (np.float64, np.float64, 1e-12), (np.int64, np.float32, 1e-5),
])
def test_scaler_round_trip_and_dtype(scaler_cls, dtype, expected, tol):
    X = (_features() * 10).astype(dtype)
    scaler = scaler_cls()
    Z = scaler.fit_transform(X)
    assert Z.dtype == expected and Z.shape == X.shape
    back = scaler.inverse_transform(Z)
    assert back.dtype == expected
    np.testing.assert_allclose(back, X, rtol=tol, atol=tol * np.abs(X).max())
    np.testing.assert_array_equal(Z, scaler_cls().fit(X).transform(X))  # fit_transform == fit + transform


def test_standardizer_constant_feature_gets_scale_one_and_maps_to_zero():
    X = np.column_stack([np.arange(7.0), np.full(7, 0.1), np.full(7, -3.0)])
    scaler = Standardizer().fit(X)
    np.testing.assert_array_equal(scaler.scale_[1:], [1.0, 1.0])
    np.testing.assert_array_equal(scaler.mean_[1:], [0.1, -3.0])
    Z = scaler.transform(X)
    assert np.isfinite(Z).all()
    np.testing.assert_array_equal(Z[:, 1:], 0.0)
    np.testing.assert_array_equal(scaler.inverse_transform(Z)[:, 1:], X[:, 1:])
    single = Standardizer().fit(np.array([[2.0, 5.0]]))  # one sample: every feature is constant
    np.testing.assert_array_equal(single.scale_, [1.0, 1.0])


def test_minmax_statistics_and_range():
    X = _features()
    scaler = MinMaxScaler().fit(X)
    np.testing.assert_array_equal(scaler.data_min_, X.min(axis=0))
    np.testing.assert_array_equal(scaler.data_max_, X.max(axis=0))
    Z = scaler.transform(X)
    np.testing.assert_allclose(Z.min(axis=0), 0.0, atol=1e-15)
    np.testing.assert_allclose(Z.max(axis=0), 1.0, rtol=1e-15)
    np.testing.assert_allclose(Z, (X - X.min(0)) / (X.max(0) - X.min(0)), rtol=1e-12, atol=1e-15)


def test_minmax_feature_range_and_constant_feature():
    X = np.array([[0.0, 10.0, 7.0], [2.0, 30.0, 7.0], [4.0, 20.0, 7.0]])
    scaler = MinMaxScaler(feature_range=(-1, 1))
    Z = scaler.fit_transform(X)
    np.testing.assert_allclose(Z, [[-1, -1, -1], [0, 1, -1], [1, 0, -1]], atol=1e-15)
    np.testing.assert_allclose(scaler.inverse_transform(Z), X, atol=1e-14)
    assert scaler.feature_range == (-1.0, 1.0)
    # new data outside the fitted range is not clipped
    np.testing.assert_allclose(scaler.transform([[6.0, 40.0, 8.0]]), [[2.0, 2.0, 1.0]])


@pytest.mark.parametrize("scaler_cls", [Standardizer, MinMaxScaler])
def test_scaler_transform_of_zero_rows(scaler_cls):
    scaler = scaler_cls().fit(_features())
    assert scaler.transform(np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize("scaler_cls", [Standardizer, MinMaxScaler])
@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_scaler_before_fit_raises(scaler_cls, method):
    name = scaler_cls.__name__
    with pytest.raises(RuntimeError, match=f"{name}.{method}: this {name} is not fitted yet; call fit first"):
        getattr(scaler_cls(), method)(np.ones((2, 2)))


@pytest.mark.parametrize("scaler_cls", [Standardizer, MinMaxScaler])
@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_scaler_feature_count_mismatch_names_both_counts(scaler_cls, method):
    scaler = scaler_cls().fit(_features())
    name = scaler_cls.__name__
    with pytest.raises(ValueError, match=f"{name}.{method}: X has 3 features; the {name} was fitted on 4"):
        getattr(scaler, method)(np.ones((5, 3)))


@pytest.mark.parametrize("scaler_cls", [Standardizer, MinMaxScaler])
def test_scaler_rejects_bad_input(scaler_cls):
    name = scaler_cls.__name__
    X = _features()
    X[5, 2] = np.inf
    with pytest.raises(ValueError, match=rf"{name}.fit: X contains NaN or inf \(first at index \[5, 2\]"):
        scaler_cls().fit(X)
    with pytest.raises(ValueError, match=f"{name}.fit: X must be 2-D; got 1-D .* use X.reshape"):
        scaler_cls().fit(np.arange(5.0))
    with pytest.raises(ValueError, match=f"{name}.fit: X is empty"):
        scaler_cls().fit(np.zeros((0, 3)))
    with pytest.raises(TypeError, match=f"{name}.fit: X has dtype float16"):
        scaler_cls().fit(np.ones((3, 3), np.float16))


@pytest.mark.parametrize("feature_range, error, match", [
    ((1, 0), ValueError, r"MinMaxScaler: feature_range must be a pair \(lo, hi\) with lo < hi; got \(1, 0\)"),
    ((0, 0), ValueError, "with lo < hi"),
    ((0,), ValueError, "must be a pair"),
    (1.0, ValueError, "must be a pair"),
    ((0, float("inf")), ValueError, r"feature_range\[1\] must be finite"),
    (("a", 1), TypeError, r"feature_range\[0\] must be a real number"),
])
def test_minmax_rejects_bad_feature_range(feature_range, error, match):
    with pytest.raises(error, match=match):
        MinMaxScaler(feature_range=feature_range)


# ---------------------------------------------------------------------------------------------
# one_hot
# ---------------------------------------------------------------------------------------------

def test_one_hot_values_and_round_trip():
    y = np.array([2, 0, 1, 2])
    out = one_hot(y)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[y])
    np.testing.assert_array_equal(out.argmax(axis=1), y)


def test_one_hot_n_classes_dtype_and_float_labels():
    out = one_hot([0.0, 1.0], n_classes=4, dtype="float64")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1, 0, 0, 0], [0, 1, 0, 0]])
    assert one_hot(np.array([], dtype=np.int64), n_classes=3).shape == (0, 3)


@pytest.mark.parametrize("y, kwargs, error, match", [
    ([0, 3], dict(n_classes=3), ValueError,
     r"one_hot: y must be in \[0, 3\) for n_classes=3; got the label 3; raise n_classes or map labels to 0..2"),
    ([0, -1], dict(), ValueError, "one_hot: y must hold labels >= 0; got the label -1"),
    ([0, 1.5], dict(), ValueError, r"one_hot: y must hold integer class labels; got the non-integer .*1\.5"),
    ([[0, 1]], dict(), ValueError, r"one_hot: y must be 1-D integer labels; got shape \(1, 2\)"),
    ([0, 1], dict(n_classes=0), ValueError, "one_hot: n_classes must be >= 1; got 0"),
    ([0, 1], dict(n_classes=2.0), TypeError, "one_hot: n_classes must be an integer"),
    ([0, 1], dict(dtype=np.int32), ValueError, "one_hot: dtype must be 'float32' or 'float64'"),
    ("01", dict(), TypeError, "one_hot: y must be an array of numbers; got a string"),
])
def test_one_hot_rejects_bad_labels(y, kwargs, error, match):
    with pytest.raises(error, match=match):
        one_hot(y, **kwargs)


# ---------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, batch_size, sizes", [
    (10, 3, [3, 3, 3, 1]), (10, 5, [5, 5]), (10, 32, [10]), (10, None, [10]), (3, 1, [1, 1, 1]),
])
@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_sample_once(n, batch_size, sizes, shuffle):
    X, y = _ids(n), np.arange(n) * 10
    got = list(batches(X, y, batch_size=batch_size, shuffle=shuffle, seed=0))
    assert [len(Xb) for Xb, _ in got] == sizes
    for Xb, yb in got:
        np.testing.assert_array_equal(yb, Xb[:, 0].astype(np.int64) * 10)  # rows stay paired
    seen = np.concatenate([Xb[:, 0] for Xb, _ in got])
    np.testing.assert_array_equal(np.sort(seen), np.arange(n))
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(n))


def test_batches_shuffle_is_deterministic_by_seed():
    def order(seed):
        return np.concatenate(list(batches(_ids(50), batch_size=8, seed=seed)))[:, 0]

    np.testing.assert_array_equal(order(3), order(3))
    assert not np.array_equal(order(3), order(4))
    assert not np.array_equal(order(3), np.arange(50))


def test_batches_without_y_and_dtypes():
    got = list(batches(np.ones((5, 2), np.int64), batch_size=2, shuffle=False))
    assert all(isinstance(Xb, np.ndarray) and Xb.dtype == np.float32 for Xb in got)
    (Xb, yb), = batches(np.ones((4, 2, 2), np.float64), np.arange(4, dtype=np.int32), batch_size=None)
    assert Xb.shape == (4, 2, 2) and Xb.dtype == np.float64 and yb.dtype == np.int32


@pytest.mark.parametrize("X, y, kwargs, error, match", [
    (np.ones((5, 2)), None, dict(batch_size=0), ValueError, "batches: batch_size must be >= 1; got 0"),
    (np.ones((5, 2)), None, dict(batch_size=2.5), TypeError, "batches: batch_size must be an integer"),
    (np.ones((5, 2)), np.arange(4), dict(), ValueError, "batches: inputs must have the same number of samples"),
    (np.full((5, 2), np.nan), None, dict(), ValueError, "batches: X contains NaN or inf"),
    (np.ones((5, 2)), None, dict(shuffle="no"), TypeError, "batches: shuffle must be True or False"),
    (np.ones((5, 2)), None, dict(seed=-1), ValueError, "batches: seed must be >= 0"),
    (np.zeros((0, 2)), None, dict(), ValueError, "batches: X is empty"),
])
def test_batches_rejects_bad_input_when_called(X, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        batches(X, y, **kwargs)  # raised at the call, before the first batch is drawn
