"""The error function and its complement for NumPy arrays, which NumPy lacks.

W. J. Cody's rational Chebyshev approximations (the three intervals of his CALERF), evaluated
elementwise in float64: erf and erfc within a few units in the last place of float64 (float32
results are rounded once from them), erfc with that relative accuracy in its tail too, where
1 - erf would lose every digit. GELU needs erfc: gelu(x) = x/2 * erfc(-x/sqrt 2), exact for very negative x.

Reference: W. J. Cody, "Rational Chebyshev approximations for the error function",
Mathematics of Computation 23 (1969), 631-637; coefficients as in his SPECFUN CALERF (1990).
"""

from __future__ import annotations

import numpy as np

# erf(x) = x P(x^2) / Q(x^2) for |x| <= 0.46875
_P_SMALL = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
            3.77485237685302021e02, 3.20937758913846947e03)
_Q_SMALL = (1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
            2.84423683343917062e03)
# erfc(y) = exp(-y^2) P(y) / Q(y) for 0.46875 < y <= 4
_P_MID = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
          6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
          1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
_Q_MID = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
# erfc(y) = exp(-y^2) / y * (1/sqrt(pi) - z P(z) / Q(z)), z = 1/y^2, for y > 4
_P_BIG = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
          1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_Q_BIG = (1.0, 2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_INV_SQRT_PI = 5.6418958354775628695e-1
_SMALL = 0.46875
#: erfc(y) underflows to 0 beyond this in float64 (and long before in float32); clipping y
#: here keeps inf out of the arithmetic (inf - inf) without changing any result.
_Y_MAX = 28.0


def _ratio(p, q, t):
    """P(t) / Q(t) by Horner's rule; coefficients from the highest power down."""
    num = np.full_like(t, p[0])
    den = np.full_like(t, q[0])
    for c in p[1:]:
        num *= t
        num += c
    for c in q[1:]:
        den *= t
        den += c
    return num / den


def _exp_minus_square(y):
    """exp(-y^2) without the rounding error of y*y: y = h + d with h = trunc(16 y) / 16, so
    h*h is exact and exp(-y^2) = exp(-h^2) exp(-(y - h)(y + h)) (Cody's device)."""
    h = np.trunc(y * 16.0) / 16.0
    return np.exp(-h * h) * np.exp(-(y - h) * (y + h))


def _erfc_tail(y):
    """erfc(y) for y > 0.46875 (a 1-D array; NaN stays NaN)."""
    y = np.minimum(y, _Y_MAX)
    out = np.empty_like(y)
    mid = y <= 4.0
    ym = y[mid]
    out[mid] = _exp_minus_square(ym) * _ratio(_P_MID, _Q_MID, ym)
    yb = y[~mid]
    z = 1.0 / (yb * yb)
    out[~mid] = _exp_minus_square(yb) * ((_INV_SQRT_PI - z * _ratio(_P_BIG, _Q_BIG, z)) / yb)
    return out


def _prepare(x):
    """(flat float64 copy of x, |x|, the dtype to return): float32 is computed in float64 and
    rounded once at the end, so that its results are correctly rounded as a rule."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype == np.float32 else np.dtype(np.float64)
    flat = x.astype(np.float64).ravel()
    return flat, np.abs(flat), dtype


def erf(x):
    """Error function erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, elementwise.

    Returns float32 for float32 input and float64 for anything else.

    >>> erf(np.array([0.0, 0.5, -3.0])).round(6).tolist()
    [0.0, 0.5205, -0.999978]
    """
    flat, y, dtype = _prepare(x)
    out = np.empty_like(flat)
    small = y <= _SMALL
    xs = flat[small]
    out[small] = xs * _ratio(_P_SMALL, _Q_SMALL, xs * xs)
    big = ~small
    tail = _erfc_tail(y[big])
    out[big] = np.copysign((0.5 - tail) + 0.5, flat[big])
    return out.astype(dtype, copy=False).reshape(np.shape(x))


def erfc(x):
    """Complementary error function erfc(x) = 1 - erf(x), elementwise, accurate in relative
    terms where it is tiny (x large) as well.

    >>> [f"{v:.6g}" for v in erfc(np.array([0.0, 2.0, 10.0]))]
    ['1', '0.00467773', '2.08849e-45']
    """
    flat, y, dtype = _prepare(x)
    out = np.empty_like(flat)
    small = y <= _SMALL
    xs = flat[small]
    out[small] = 1.0 - xs * _ratio(_P_SMALL, _Q_SMALL, xs * xs)
    big = ~small
    tail = _erfc_tail(y[big])
    out[big] = np.where(flat[big] < 0, 2.0 - tail, tail)
    return out.astype(dtype, copy=False).reshape(np.shape(x))


__all__ = ["erf", "erfc"]
