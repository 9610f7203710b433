"""BatchNorm, Dropout and augmentation kernels of each backend against the NumPy reference:
dtypes x shapes (0 rows, 1 row where allowed, 1 feature, odd, a few hundred wide), the
counter-based generator (known answers, CPU mask == reference mask bit for bit, statistics),
non-contiguous inputs through the fallback, and the errors of bad calls."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import REFERENCE, assert_close, host_only, layout
from fastnn.backends.base import dropout_threshold, philox_words

DTYPES = [np.float32, np.float64]
# (n_samples, n_features); training needs two rows
TRAIN_SHAPES = [(2, 1), (2, 13), (7, 1), (7, 13), (64, 300), (256, 300)]
EVAL_SHAPES = [(0, 3), (1, 1), (1, 13), (7, 13), (256, 300)]
SHAPES = [(0, 3), (1, 1), (1, 13), (7, 1), (7, 13), (256, 300)]


def _rand(rng, shape, dtype, scale=1.0, offset=0.0):
    return (offset + scale * rng.standard_normal(shape)).astype(dtype)


def _vectors(rng, m, dtype):
    """gamma, beta, running_mean, running_var for m features."""
    return (_rand(rng, m, dtype, 0.5, 1.0), _rand(rng, m, dtype), _rand(rng, m, dtype),
            rng.uniform(0.5, 2.0, m).astype(dtype))


# ------------------------------------------------------------------------- batchnorm
def _bn_forward(backend, x, vecs, training, **kw):
    """(out, running_mean, running_var, mean, inv_std) of one call, as NumPy arrays."""
    m = x.shape[1]
    gamma, beta, rm, rv = (backend.asarray(v.copy()) for v in vecs)
    mean, inv_std = backend.zeros((m,), x.dtype), backend.zeros((m,), x.dtype)
    out = backend.batchnorm_forward(backend.asarray(x), gamma, beta, rm, rv, training=training, mean=mean,
                                    inv_std=inv_std, **kw)
    return [backend.to_numpy(a) for a in (out, rm, rv, mean, inv_std)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, training", [(s, True) for s in TRAIN_SHAPES] + [(s, False) for s in EVAL_SHAPES],
                         ids=lambda v: {True: "train", False: "eval"}.get(v, str(v)))
def test_batchnorm_forward_matches_reference(backend, shape, dtype, training):
    rng = np.random.default_rng(0)
    x = _rand(rng, shape, dtype, 2.0, 0.5)
    vecs = _vectors(rng, shape[1], dtype)
    got = _bn_forward(backend, x, vecs, training, eps=1e-3, momentum=0.3)
    want = _bn_forward(REFERENCE, x, vecs, training, eps=1e-3, momentum=0.3)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        assert_close(g, w, dtype, factor=3)
    if not training:  # evaluation reads the running statistics and leaves them alone
        np.testing.assert_array_equal(got[1], vecs[2])
        np.testing.assert_array_equal(got[2], vecs[3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_statistics_are_stable_far_from_zero(backend, dtype):
    """A feature with mean 1e4 and std 1e-2: a float32 sum of squares would lose it all; the
    kernels accumulate in double (Welford), so the variance is right to float32 rounding."""
    rng = np.random.default_rng(1)
    x = _rand(rng, (500, 3), dtype, 1e-2, 1e4)
    vecs = (np.ones(3, dtype), np.zeros(3, dtype), np.zeros(3, dtype), np.ones(3, dtype))
    out, rm, rv, mean, inv_std = _bn_forward(backend, x, vecs, True, momentum=1.0, eps=1e-12)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(rv, x64.var(axis=0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(mean, x64.mean(axis=0), rtol=1e-7)
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-3)


def test_batchnorm_forward_without_outputs_for_the_backward(backend):
    rng = np.random.default_rng(2)
    x = _rand(rng, (9, 4), np.float32)
    vecs = _vectors(rng, 4, np.float32)
    want = _bn_forward(REFERENCE, x, vecs, True)[0]
    got = backend.batchnorm_forward(backend.asarray(x), *(backend.asarray(v.copy()) for v in vecs))
    assert_close(backend.to_numpy(got), want, np.float32)


@pytest.mark.parametrize("rows", [0, 1])
def test_batchnorm_training_needs_two_rows(backend, rows):
    vecs = [backend.asarray(v) for v in _vectors(np.random.default_rng(3), 4, np.float32)]
    before = [backend.to_numpy(v).copy() for v in vecs]
    with pytest.raises(ValueError, match=rf"batchnorm_forward: a training batch needs at least 2 rows .*got {rows}\."):
        backend.batchnorm_forward(backend.asarray(np.ones((rows, 4), np.float32)), *vecs)
    for v, b in zip(vecs, before):  # the running statistics were not touched
        np.testing.assert_array_equal(backend.to_numpy(v), b)


# which outputs are requested: (dgamma/dbeta, dx); dx may be written over dy
_BN_BACKWARD_CASES = {"all": (True, "own"), "dx-over-dy": (True, "alias"), "frozen": (False, "own"),
                      "first-layer": (True, None), "nothing": (False, None)}


@pytest.mark.parametrize("case", list(_BN_BACKWARD_CASES))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", TRAIN_SHAPES + [(0, 3), (1, 13)], ids=str)
def test_batchnorm_backward_matches_reference(backend, shape, dtype, training, case):
    grads, dx_kind = _BN_BACKWARD_CASES[case]
    n, m = shape
    rng = np.random.default_rng(4)
    x, dy = _rand(rng, shape, dtype, 2.0, 1.0), _rand(rng, shape, dtype)
    gamma = _rand(rng, m, dtype, 0.5, 1.0)
    mean, inv_std = _rand(rng, m, dtype), rng.uniform(0.5, 2.0, m).astype(dtype)
    want = {"dgamma": np.zeros(m), "dbeta": np.zeros(m), "dx": np.zeros(shape)}
    REFERENCE.batchnorm_backward(dy, x, gamma, mean, inv_std, training=training, **want)
    dev = {k: backend.asarray(v) for k, v in dict(dy=dy, x=x, gamma=gamma, mean=mean, inv_std=inv_std).items()}
    outs = {"dgamma": backend.zeros((m,), dtype) if grads else None,
            "dbeta": backend.zeros((m,), dtype) if grads else None,
            "dx": {"own": backend.zeros(shape, dtype), "alias": dev["dy"], None: None}[dx_kind]}
    ret = backend.batchnorm_backward(dev["dy"], dev["x"], dev["gamma"], dev["mean"], dev["inv_std"],
                                     training=training, **outs)
    assert ret is outs["dx"]
    for k, v in outs.items():
        if v is not None:
            assert_close(backend.to_numpy(v), want[k], dtype, factor=3 if n < 100 else 30)
    if dx_kind != "alias":
        np.testing.assert_array_equal(backend.to_numpy(dev["dy"]), dy)  # dy is read only


@pytest.mark.fallback
@pytest.mark.parametrize("kind", ["F", "strided"])
def test_batchnorm_accepts_non_contiguous(backend, kind):
    host_only(backend)
    rng = np.random.default_rng(5)
    x, dy = _rand(rng, (7, 13), np.float32), _rand(rng, (7, 13), np.float32)
    vecs = _vectors(rng, 13, np.float32)
    want = _bn_forward(REFERENCE, x, vecs, True)
    gamma, beta, rm, rv = (layout(v.copy(), "strided") for v in vecs)
    mean, inv_std = layout(np.zeros(13, np.float32), "strided"), layout(np.zeros(13, np.float32), "strided")
    out = backend.batchnorm_forward(layout(x, kind), gamma, beta, rm, rv, mean=mean, inv_std=inv_std)
    for g, w in zip((out, rm, rv, mean, inv_std), want):
        assert_close(g, w, np.float32)
    want_g = {"dgamma": np.zeros(13), "dbeta": np.zeros(13), "dx": np.zeros((7, 13))}
    REFERENCE.batchnorm_backward(dy, x, vecs[0], want[3], want[4], **want_g)
    got_g = {"dgamma": layout(np.zeros(13, np.float32), "strided"),
             "dbeta": layout(np.zeros(13, np.float32), "strided"), "dx": layout(np.zeros((7, 13), np.float32), kind)}
    backend.batchnorm_backward(layout(dy, kind), layout(x, kind), gamma, mean, inv_std, **got_g)
    for k in want_g:
        assert_close(got_g[k], want_g[k], np.float32)


def test_batchnorm_bad_calls_say_what_is_wrong(backend):
    if backend.name != "cpu":
        pytest.skip("the reference computes mixed dtypes in float64; fast backends refuse them")
    x = np.ones((4, 3), np.float32)
    vecs = [v.astype(np.float32) for v in _vectors(np.random.default_rng(6), 3, np.float32)]
    with pytest.raises(TypeError, match=r"batchnorm_forward: gamma is float64 but x is float32; "
                                        r"cast with gamma\.astype\(np\.float32\)\."):
        backend.batchnorm_forward(x, vecs[0].astype(np.float64), *vecs[1:])
    with pytest.raises(ValueError, match=r"batchnorm_forward: running_var must have shape \(3,\); got \(4,\)\."):
        backend.batchnorm_forward(x, *vecs[:3], np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"batchnorm_backward: dx must have shape \(4, 3\)"):
        backend.batchnorm_backward(x, x, *vecs[:3], dx=np.ones((3, 4), np.float32))


# --------------------------------------------------------------- the random generator
# Random123's known answers for philox4x32-10 (counter words, key words -> output words)
KAT = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
       ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]


@pytest.mark.parametrize("ctr, key, want", KAT)
def test_philox_known_answers(ctr, key, want):
    block, step, key64 = ctr[0] | ctr[1] << 32, ctr[2] | ctr[3] << 32, key[0] | key[1] << 32
    assert philox_words(key64, step, 4 * block, 4).tolist() == list(want)
    from _helpers import CPU_BUILT

    if CPU_BUILT:
        from fastnn._ext import dropout

        out = np.empty(4, np.uint32)
        dropout.random_words(key64, step, block, out)
        assert out.tolist() == list(want)


def test_compiled_words_equal_the_reference_across_chunks():
    pytest.importorskip("fastnn._ext.dropout", reason="compiled CPU backend not built")
    from fastnn._ext import dropout

    out = np.empty(4 * 1000, np.uint32)  # several 256-word chunks and a partial one
    dropout.random_words(2**63 + 12345, 2**40 + 7, 2**32 - 3, out)  # blocks cross a 32-bit boundary
    np.testing.assert_array_equal(out, philox_words(2**63 + 12345, 2**40 + 7, 4 * (2**32 - 3), 4000))
    # a window that starts inside a block
    np.testing.assert_array_equal(philox_words(5, 6, 3, 9), philox_words(5, 6, 0, 12)[3:])


def test_words_look_uniform_and_independent():
    w = philox_words(1, 0, 0, 1 << 18).astype(np.float64) / 2**32
    assert abs(w.mean() - 0.5) < 5 * np.sqrt(1 / 12 / w.size)
    counts = np.bincount((w * 64).astype(int), minlength=64)  # chi-square, 63 degrees of freedom
    chi2 = ((counts - w.size / 64) ** 2 / (w.size / 64)).sum()
    assert chi2 < 120  # p ~ 2e-5 under uniformity
    assert abs(np.corrcoef(w[:-1], w[1:])[0, 1]) < 5 / np.sqrt(w.size)
    other = philox_words(1, 1, 0, 1 << 18).astype(np.float64) / 2**32  # the next step
    assert abs(np.corrcoef(w, other)[0, 1]) < 5 / np.sqrt(w.size)


# ---------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dropout_mask_and_output_equal_the_reference_bit_for_bit(backend, shape, dtype, rate):
    rng = np.random.default_rng(7)
    x = _rand(rng, shape, dtype, 3.0)
    want_mask = np.zeros(shape, np.uint8)
    want = REFERENCE.dropout_forward(x, rate=rate, key=2**64 - 5, step=3, mask=want_mask)
    mask = backend.zeros(shape, np.uint8)
    got = backend.dropout_forward(backend.asarray(x), rate=rate, key=2**64 - 5, step=3, mask=mask)
    np.testing.assert_array_equal(backend.to_numpy(mask), want_mask)
    np.testing.assert_array_equal(backend.to_numpy(got), want)
    assert backend.to_numpy(got).dtype == dtype
    dy = _rand(rng, shape, dtype)
    want_dx = REFERENCE.dropout_backward(dy, want_mask, rate=rate)
    got_dx = backend.dropout_backward(backend.asarray(dy), mask, rate=rate)
    np.testing.assert_array_equal(backend.to_numpy(got_dx), want_dx)
    dev_dy = backend.asarray(dy.copy())  # the layer writes dx over dy
    assert backend.dropout_backward(dev_dy, mask, rate=rate, out=dev_dy) is dev_dy
    np.testing.assert_array_equal(backend.to_numpy(dev_dy), want_dx)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_right_fraction_and_scales_kept_values(backend, rate):
    x = np.ones((400, 250), np.float32)
    mask = backend.zeros(x.shape, np.uint8)
    out = backend.to_numpy(backend.dropout_forward(backend.asarray(x), rate=rate, key=11, step=0, mask=mask))
    kept = backend.to_numpy(mask).astype(bool)
    n = x.size
    assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)  # binomial, 5 sigma
    np.testing.assert_array_equal(out[kept], np.float32(1 / (1 - rate)))
    assert not out[~kept].any()
    # rows and columns are not patterned: every row keeps about the same share
    per_row = kept.mean(axis=1)
    assert abs(per_row - (1 - rate)).max() < 6 * np.sqrt(rate * (1 - rate) / x.shape[1])


def test_dropout_threshold_and_scale():
    assert dropout_threshold(0.0) == 0
    assert dropout_threshold(0.5) == 2**31
    assert dropout_threshold(np.nextafter(1.0, 0.0)) == 2**32 - 1
    x = np.full((2, 2), 3.0, np.float32)
    got = REFERENCE.dropout_forward(x, rate=0.0, key=1, step=1)
    np.testing.assert_array_equal(got, x)


def test_dropout_masks_depend_on_key_and_step(backend):
    x = backend.asarray(np.ones((32, 32), np.float32))

    def mask(key, step):
        m = backend.zeros((32, 32), np.uint8)
        backend.dropout_forward(x, rate=0.5, key=key, step=step, mask=m)
        return backend.to_numpy(m)

    np.testing.assert_array_equal(mask(1, 2), mask(1, 2))
    for other in (mask(1, 3), mask(2, 2)):
        assert 0.3 < (other != mask(1, 2)).mean() < 0.7  # about half the decisions differ


@pytest.mark.fallback
def test_dropout_accepts_non_contiguous_and_other_masks(backend):
    host_only(backend)
    rng = np.random.default_rng(8)
    x = _rand(rng, (7, 13), np.float32)
    want_mask = np.zeros(x.shape, np.uint8)
    want = REFERENCE.dropout_forward(x, rate=0.3, key=4, step=9, mask=want_mask)
    mask = np.zeros(x.shape, bool)  # another mask dtype
    out = layout(np.zeros_like(x), "strided")
    backend.dropout_forward(layout(x, "F"), rate=0.3, key=4, step=9, mask=mask, out=out)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(mask, want_mask.astype(bool))
    dy = _rand(rng, x.shape, np.float32)
    got = backend.dropout_backward(layout(dy, "strided"), layout(want_mask, "F"), rate=0.3)
    np.testing.assert_array_equal(got, REFERENCE.dropout_backward(dy, want_mask, rate=0.3))


# ----------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gaussian_noise_matches_reference(backend, shape, dtype):
    x = _rand(np.random.default_rng(9), shape, dtype)
    want = REFERENCE.gaussian_noise(x, std=0.3, key=17, step=5)
    got = backend.to_numpy(backend.gaussian_noise(backend.asarray(x), std=0.3, key=17, step=5))
    assert got.dtype == dtype
    assert_close(got, want, dtype)
    inplace = backend.asarray(x.copy())
    assert backend.gaussian_noise(inplace, std=0.3, key=17, step=5, out=inplace) is inplace
    assert_close(backend.to_numpy(inplace), want, dtype)


def test_gaussian_noise_is_standard_normal(backend):
    x = np.zeros((500, 301), np.float64)  # odd width: pairs of words straddle rows
    z = backend.to_numpy(backend.gaussian_noise(backend.asarray(x), std=2.0, key=3, step=1)) / 2.0
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.std() - 1.0) < 5 / np.sqrt(2 * n)
    assert abs((z**4).mean() - 3.0) < 0.05  # kurtosis of a normal
    frac = np.mean(np.abs(z) < 1.0)
    assert abs(frac - 0.682689) < 5 * np.sqrt(0.68 * 0.32 / n)
    other = backend.to_numpy(backend.gaussian_noise(backend.asarray(x), std=2.0, key=3, step=2)) / 2.0
    assert abs(np.corrcoef(z.ravel(), other.ravel())[0, 1]) < 5 / np.sqrt(n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (1, 13), (7, 1), (7, 13), (256, 300), (9,)], ids=str)
def test_mixup_matches_reference(backend, shape, dtype):
    rng = np.random.default_rng(10)
    x = _rand(rng, shape, dtype)
    idx = rng.permutation(shape[0]).astype(np.int64)
    want = REFERENCE.mixup(x, idx, 0.3)
    out = backend.zeros(shape, dtype)
    assert backend.mixup(backend.asarray(x), backend.asarray(idx), 0.3, out=out) is out
    assert_close(backend.to_numpy(out), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", [(0, 3), (1, 2), (7, 10), (300, 4)])
def test_mixup_labels_matches_reference(backend, n, k, dtype):
    rng = np.random.default_rng(11)
    labels, idx = rng.integers(0, k, n).astype(np.int64), rng.permutation(n).astype(np.int64)
    want = REFERENCE.mixup_labels(labels, idx, 0.7, out=np.zeros((n, k)))
    out = backend.asarray(np.full((n, k), np.nan, dtype))
    backend.mixup_labels(backend.asarray(labels), backend.asarray(idx), 0.7, out=out)
    assert_close(backend.to_numpy(out), want, dtype)
    np.testing.assert_allclose(backend.to_numpy(out).sum(axis=1), 1.0, rtol=1e-6)


def test_mixup_rejects_bad_indices_and_labels(backend):
    if backend.name != "cpu":
        pytest.skip("the reference indexes with NumPy (negative indices wrap)")
    x = np.ones((3, 2), np.float32)
    with pytest.raises(IndexError, match=r"mixup: index 3 is out of bounds for 3 rows"):
        backend.mixup(x, np.array([0, 3, 1], np.int64), 0.5, out=np.empty_like(x))
    with pytest.raises(ValueError, match=r"mixup_labels: labels must be in \[0, 2\); got 2"):
        backend.mixup_labels(np.array([0, 2, 1], np.int64), np.array([0, 1, 2], np.int64), 0.5,
                             out=np.empty((3, 2), np.float32))


@pytest.mark.fallback
def test_augmentation_kernels_accept_non_contiguous(backend):
    host_only(backend)
    rng = np.random.default_rng(12)
    x = _rand(rng, (7, 13), np.float32)
    idx = rng.permutation(7).astype(np.int64)
    assert_close(backend.gaussian_noise(layout(x, "F"), std=0.5, key=1, step=2),
                 REFERENCE.gaussian_noise(x, std=0.5, key=1, step=2), np.float32)
    assert_close(backend.mixup(layout(x, "strided"), layout(idx, "strided"), 0.4),
                 REFERENCE.mixup(x, idx, 0.4), np.float32)
    out = layout(np.zeros((7, 5), np.float32), "F")
    labels = rng.integers(0, 5, 7).astype(np.int32)  # not int64
    backend.mixup_labels(labels, idx, 0.4, out=out)
    assert_close(out, REFERENCE.mixup_labels(labels, idx, 0.4, out=np.zeros((7, 5))), np.float32)
