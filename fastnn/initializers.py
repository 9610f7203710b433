"""Weight initialization schemes: ``init(shape, fan_in, fan_out, rng, activation) -> float64 array``.

Fans are those of a Dense weight of shape (n_in, n_out): fan_in = n_in, fan_out = n_out.
A scheme named explicitly means its paper's formula, whatever the layer's activation:
xavier_* std sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio, 2010); he_* std
sqrt(2 / ((1 + a^2) fan_in)) with a the leaky_relu slope, else 0, i.e. sqrt(2 / fan_in) as Keras'
``he_normal`` and PyTorch's ``kaiming_normal_`` (He et al., 2015); lecun_normal std sqrt(1 / fan_in)
(LeCun et al., 1998); orthogonal scaled by the activation's gain (Saxe et al., 2014). The gains are
PyTorch's ``calculate_gain`` (ReLU sqrt(2), leaky ReLU sqrt(2 / (1 + alpha^2)), tanh 5/3, others 1).
A layer's default (no init given) picks by activation and keeps the tanh gain 5/3 on Xavier.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import check_choice

INITS = ("zeros", "normal", "uniform", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
         "lecun_normal", "orthogonal")
RELU_FAMILY = frozenset({"relu", "leaky_relu", "elu"})


def gain(activation, alpha=0.0):
    """Recommended gain for an activation (PyTorch's calculate_gain)."""
    if activation in ("relu", "elu"):
        return math.sqrt(2.0)
    if activation == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + alpha * alpha))
    if activation == "tanh":
        return 5.0 / 3.0
    return 1.0


def default_init(activation):
    """He for the ReLU family, Xavier (Glorot) otherwise."""
    return "he_normal" if activation in RELU_FAMILY else "xavier_uniform"


def initialize(name, shape, rng, *, activation="identity", alpha=0.0, std=0.01, limit=0.05, by_activation=False):
    """Draw a weight array of ``shape`` (n_in, n_out) for the scheme ``name`` (float64).

    ``by_activation`` (a layer's default init): Xavier takes the tanh gain 5/3; otherwise every
    scheme is its paper's formula (see the module docstring)."""
    fan_in, fan_out = shape[0], shape[-1]
    if name == "zeros":
        return np.zeros(shape)
    if name == "normal":
        return rng.normal(0.0, std, size=shape)
    if name == "uniform":
        return rng.uniform(-limit, limit, size=shape)
    g = gain(activation, alpha)
    if name in ("xavier_uniform", "xavier_normal"):
        g = g if by_activation and activation == "tanh" else 1.0
        s = g * math.sqrt(2.0 / (fan_in + fan_out))
        return rng.uniform(-s * math.sqrt(3.0), s * math.sqrt(3.0), size=shape) if name == "xavier_uniform" \
            else rng.normal(0.0, s, size=shape)
    if name in ("he_uniform", "he_normal"):
        a = alpha if activation == "leaky_relu" else 0.0  # He's formula; a = 0 but for a leaky slope
        s = math.sqrt(2.0 / ((1.0 + a * a) * fan_in))
        return rng.uniform(-s * math.sqrt(3.0), s * math.sqrt(3.0), size=shape) if name == "he_uniform" \
            else rng.normal(0.0, s, size=shape)
    if name == "lecun_normal":
        return rng.normal(0.0, 1.0 / math.sqrt(fan_in), size=shape)
    if name == "orthogonal":  # Saxe et al. (2014): QR of a Gaussian matrix, signs fixed
        rows, cols = fan_in, fan_out
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        return (q if rows >= cols else q.T).reshape(shape) * g
    check_choice("initialize", "init", name, INITS)
    raise AssertionError("unreachable")
