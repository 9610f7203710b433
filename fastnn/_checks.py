"""Argument and array checks shared by every public entry point.

Messages follow one form: ``{owner}: {what} must be {constraint}; got {value!r}.`` plus the
remedy when one is known, so a user can act on the error without reading the source.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: Arrays up to this many elements are checked for NaN/inf with a mask, larger ones screened
#: with a sum first (see check_finite).
_MASK_SIZE = 1 << 16


def _short(value):
    """repr of a value, shortened so that an error message stays one readable line."""
    if isinstance(value, np.generic):  # np.float64(0.5) -> 0.5
        value = value.item()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_choice(owner, name, value, choices):
    """Return ``value`` if it is one of ``choices`` (strings), else raise listing them."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{owner}: unknown {name} {_short(value)}; choose one of {listed}.")
    return value


def check_int(owner, name, value, *, low=None, high=None):
    """Return ``value`` as int if it is an integer (not bool) within [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an integer; got {_short(value)}.")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}; got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{owner}: {name} must be <= {high}; got {value!r}.")
    return value


def check_float(owner, name, value, *, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as float if it is a finite real number within the given bounds.

    ``low_open``/``high_open`` make the bound exclusive: (low, high] and so on.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number; got {_short(value)}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite; got {value!r}.")
    if low is not None and (value <= low if low_open else value < low):
        op = ">" if low_open else ">="
        raise ValueError(f"{owner}: {name} must be {op} {low}; got {value!r}.")
    if high is not None and (value >= high if high_open else value > high):
        op = "<" if high_open else "<="
        raise ValueError(f"{owner}: {name} must be {op} {high}; got {value!r}.")
    return value


def check_seed(owner, seed):
    """Return ``seed`` if it is None or a non-negative integer."""
    if seed is None:
        return None
    return check_int(owner, "seed", seed, low=0)


def check_dtype_name(owner, dtype):
    """Return the NumPy dtype for 'float32'/'float64' (names or dtypes), else raise."""
    try:
        dt = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would be float64
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:  # `None in FLOAT_DTYPES` is True: dtype('float64') == None
        raise ValueError(f"{owner}: dtype must be 'float32' or 'float64'; got {_short(dtype)}.")
    return dt


def _as_numeric_array(owner, name, value):
    """np.asarray with the dtype checks every numeric input shares."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{owner}: {name} must be an array of numbers; got a string {_short(value)}.")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise TypeError(f"{owner}: {name} must be a rectangular array of numbers; {exc}.") from None
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize < 4:
        raise TypeError(
            f"{owner}: {name} has dtype {arr.dtype}, which fastnn does not compute in; "
            f"cast with {name}.astype(np.float32)."
        )
    if kind not in "biuf":
        raise TypeError(
            f"{owner}: {name} must hold numbers (bool, int or float32/float64); got dtype {arr.dtype}; "
            f"convert with {name}.astype(np.float32)."
        )
    return arr


def probably_finite(arr):
    """True when the float array ``arr`` holds no NaN or inf; False when it does, and also,
    for large arrays, when a sum of finite values overflowed (check_finite then decides)."""
    # Large arrays: one summation screens them, NaN and inf propagating into the sum, in one
    # pass (min and max took two) and without an array-sized temporary (an np.isfinite mask of
    # a 20000 x 784 X is 15 MiB). Small arrays (one row to predict): the mask is cheaper than
    # the errstate the sum needs.
    if arr.size <= _MASK_SIZE:
        return bool(np.isfinite(arr).all())
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(np.add.reduce(arr, axis=None))


def check_finite(owner, name, arr):
    """Raise if a float array holds NaN or inf, naming where the first one is."""
    if arr.dtype.kind != "f" or not arr.size or probably_finite(arr):
        return
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        where = ", ".join(str(int(i)) for i in bad[0])
        raise ValueError(
            f"{owner}: {name} contains NaN or inf (first at index [{where}]: {_short(arr[tuple(bad[0])])}); "
            f"remove or impute those values first."
        )


def as_float_array(owner, name, value, dtype=np.float32, *, ndim=2, allow_empty=False, copy=False,
                   finite=True):
    """Validate ``value`` and return it as a C-contiguous array of ``dtype``.

    Accepts lists, any integer, bool or float32/float64 array, in any memory order (copied
    when needed). Rejects float16, complex, object and string data, the wrong number of
    dimensions, empty arrays (unless ``allow_empty``) and NaN/inf. ``finite=False`` leaves the
    NaN/inf check to a caller that screens a product of the array instead (fastnn.inference).
    """
    arr = _as_numeric_array(owner, name, value)
    if ndim is not None and arr.ndim != ndim:
        hint = ""
        if ndim == 2 and arr.ndim == 1:
            hint = f"; for one feature use {name}.reshape(-1, 1), for one sample {name}.reshape(1, -1)"
        raise ValueError(
            f"{owner}: {name} must be {ndim}-D; got {arr.ndim}-D with shape {arr.shape}{hint}."
        )
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{owner}: {name} is empty (shape {arr.shape}); pass at least one sample.")
    if finite:
        check_finite(owner, name, arr)
    narrowing = arr.dtype.kind == "f" and arr.dtype.itemsize > np.dtype(dtype).itemsize
    if narrowing:  # float64 -> float32: values beyond float32's range become inf (checked below)
        with np.errstate(over="ignore"):
            out = np.array(arr, dtype=dtype, order="C", copy=True) if copy else np.ascontiguousarray(arr, dtype=dtype)
        if finite and out.size:
            check_range(owner, name, arr, out)
        return out
    return np.array(arr, dtype=dtype, order="C", copy=True) if copy else np.ascontiguousarray(arr, dtype=dtype)


def check_range(owner, name, arr, out):
    """Raise when finite values of ``arr`` became inf in its narrower cast ``out`` (float64
    beyond float32's range), naming the first such index: the cast would hand inf to the model."""
    if probably_finite(out):
        return
    bad = np.argwhere(~np.isfinite(out))
    where = ", ".join(str(int(i)) for i in bad[0])
    limit = float(np.finfo(out.dtype).max)
    raise ValueError(
        f"{owner}: {name} holds {_short(arr[tuple(bad[0])])} at index [{where}], beyond {out.dtype}'s range "
        f"(|x| <= {limit:.4g}), which the model computes in; scale the inputs (e.g. fnn.data.Standardizer) "
        f"or build the model with dtype='float64'."
    )


def as_label_array(owner, name, value, n_classes=None):
    """Validate integer class labels: 1-D, whole numbers, in [0, n_classes). Returns int64."""
    arr = _as_numeric_array(owner, name, value)
    if arr.ndim != 1:
        raise ValueError(f"{owner}: {name} must be 1-D integer labels; got shape {arr.shape}.")
    if arr.dtype.kind == "f":
        check_finite(owner, name, arr)
        if arr.size and not np.array_equal(arr, np.round(arr)):
            first = arr[arr != np.round(arr)][0]
            raise ValueError(
                f"{owner}: {name} must hold integer class labels; got the non-integer value {_short(first)}; "
                f"for soft or one-hot targets pass a 2-D array."
            )
    if arr.size and arr.dtype.kind in "fu":  # 1e30 or 2**64 - 1 would wrap in int64: check before the cast
        top = n_classes if n_classes is not None else 2.0 ** 63
        outside = (arr < 0) | (arr >= top)
        if outside.any():
            index = int(np.argmax(outside))
            bad = arr[index]
            within = (f"[0, {n_classes}) for a model with {n_classes} outputs" if n_classes is not None
                      else "non-negative integers below 2**63")
            remedy = (f"map labels to 0..{n_classes - 1} or widen the last layer" if n_classes is not None
                      else "map labels to 0..n_classes - 1")
            raise ValueError(f"{owner}: {name} must be in {within}; got the label {_short(bad)} at index "
                             f"{index}; {remedy}.")
    labels = arr.astype(np.int64)
    if n_classes is not None and labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{owner}: {name} must be in [0, {n_classes}) for a model with {n_classes} outputs; "
                f"got the label {bad}; map labels to 0..{n_classes - 1} or widen the last layer."
            )
    return labels


def check_same_length(owner, **arrays):
    """Raise unless every given array (None is skipped) has the same first dimension."""
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(f"{owner}: inputs must have the same number of samples; {listed}.")
