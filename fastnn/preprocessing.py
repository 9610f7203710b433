"""Preprocessing layers: feature scaling that lives inside the model, so every reader of the
model file (``fastnn.load``, ``fastnn.inference``, the ONNX export, the CLI) applies it.

Both layers are fixed per-feature affine maps, y = (x - center) * factor + offset, whose three
arrays are fitted from data (``layer.adapt(X)``, or ``Trainer.fit`` on its training rows when
the layer has not been adapted), stored in the model file as non-trainable buffers, and folded
into the next Dense layer by ``fastnn.inference`` and ``fastnn.export``. They run through the
backend's BatchNorm kernel in evaluation mode (gamma = factor, beta = offset, running mean =
center, running variance = 1, eps = 0), so they cost one pass over the input.

- ``Standardize``: z = (x - mean) / scale (scale: population standard deviation, 1 for a
  constant feature). With ``inverse=True`` the map is undone, y = z * scale + mean: put it last
  in a regression model trained on standardized targets and the model predicts in the target's
  own units (``fastnn train`` does this for regression).
- ``MinMaxScale``: x' = lo + (x - min) / (max - min) * (hi - lo).

Importing this module registers both layer types with the model-file readers.

>>> import numpy as np, fastnn as fnn
>>> from fastnn.preprocessing import Standardize
>>> X = np.array([[1.0, 10.0], [3.0, 30.0]], np.float32)
>>> m = fnn.Sequential([Standardize().adapt(X)], input_dim=2)
>>> m.predict(X).tolist()
[[-1.0, -1.0], [1.0, 1.0]]
"""

from __future__ import annotations

import numpy as np

from ._checks import check_float
from .data import MinMaxScaler, Standardizer
from .layers import LAYER_TYPES, Layer


def _check_bool(owner, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False; got {value!r}.")
    return bool(value)


class _AffineMap(Layer):
    """y = (x - center) * factor + offset per feature, with fitted, non-trainable arrays.

    Subclasses compute (center, factor, offset) in float64 from data in ``_statistics(X)``.
    """

    def __init__(self, adapted=False):
        super().__init__()
        self.adapted = _check_bool(type(self).__name__, "adapted", adapted)
        self.trainable = False  # fitted from data, never by an optimizer
        self._pending = None  # (center, factor, offset) adapted before the layer was built
        self._ones = None
        self._x = None

    def _output_width(self, n_in):
        if self._pending is not None and len(self._pending[0]) != n_in:
            name = type(self).__name__
            raise ValueError(f"{name}: it was adapted on {len(self._pending[0])} features; the model gives it "
                             f"{n_in}. Adapt it on data of the model's input width.")
        self._ws.widths = {"y": n_in}
        return n_in

    def param_shapes(self):
        n = (self.n_in,)
        return [("center", n, "buffer"), ("factor", n, "buffer"), ("offset", n, "buffer")]

    def bind(self, params, grads, rng, key=0):
        super().bind(params, grads, rng, key)
        self._ones = self.backend.zeros((self.n_in,), self.dtype)
        self.backend.fill(self._ones, 1.0)

    def reset_parameters(self, seed=None):
        """The adapted statistics when ``adapt`` ran before the build, else the identity map."""
        if not self.built:
            return
        if self._pending is not None:
            self._write(*self._pending)
            return
        for name, value in (("center", 0.0), ("factor", 1.0), ("offset", 0.0)):
            self.backend.fill(self.params[name], value)

    def _write(self, center, factor, offset):
        for name, value in (("center", center), ("factor", factor), ("offset", offset)):
            self.backend.copy(self.backend.asarray(np.ascontiguousarray(value, dtype=self.dtype)),
                              self.params[name])

    def check_weight(self, name, value):
        if name == "factor" and value.size and not (value != 0).all():
            raise ValueError(f"{type(self).__name__}.set_weights: factor must be nonzero; got 0.")

    def adapt(self, X):
        """Fit the statistics to ``X`` (n_samples, n_features): the training rows only.

        Returns the layer. Raises ValueError for an empty X, NaN/inf, or a width other than the
        built layer's."""
        owner = f"{type(self).__name__}.adapt"
        from ._checks import as_float_array

        X = as_float_array(owner, "X", X, np.float64)
        if self.built and X.shape[1] != self.n_in:
            raise ValueError(f"{owner}: X has {X.shape[1]} features; the layer takes {self.n_in}.")
        center, factor, offset = self._statistics(X)
        dtype = np.float32 if self.dtype is None else self.dtype
        if not np.isfinite(np.asarray(factor, dtype)).all():
            raise ValueError(f"{owner}: the scale of X is beyond the range of {np.dtype(dtype).name}; rescale X.")
        self._pending = (center, factor, offset)
        if self.built:
            self._write(center, factor, offset)
        self.adapted = True
        return self

    # ---------------------------------------------------------------- running
    def forward(self, x, training=False, skip_activation=False):
        """y = (x - center) * factor + offset into the workspace."""
        ws = self._ws.get(self.backend, self.dtype, x.shape[0])
        p = self.params
        if training:
            self._x = x
        return self.backend.batchnorm_forward(x, p["factor"], p["offset"], p["center"], self._ones, eps=0.0,
                                              training=False, out=ws["y"])

    def backward(self, dy, need_dx=True):
        """dL/dx = dy * factor, written over dy (or None): the map has no trainable parameters."""
        if not need_dx:
            return None
        p = self.params
        return self.backend.batchnorm_backward(dy, self._x, p["factor"], p["center"], self._ones, training=False,
                                               dx=dy)

    def _host(self, name):
        if not self.built:
            if self._pending is None:
                raise AttributeError(f"{type(self).__name__}: not adapted yet; call adapt(X) first.")
            return np.asarray(self._pending[("center", "factor", "offset").index(name)], np.float64)
        return self.backend.to_numpy(self.params[name]).astype(np.float64)

    def get_config(self):
        return {"adapted": self.adapted, "trainable": self.trainable}


class Standardize(_AffineMap):
    """Standard scores per feature inside the model: z = (x - mean) / scale.

    ``scale`` is the population standard deviation of the adapted data (1 for a constant
    feature, which maps to 0). With ``inverse=True``: y = z * scale + mean, the inverse map,
    for the output of a regression model trained on standardized targets.

    Parameters
    ----------
    inverse : bool, default False
        Undo the standardization instead of applying it.
    adapted : bool, default False
        Whether the statistics are set (True for a layer read from a model file). ``Trainer.fit``
        adapts a layer with ``adapted=False`` at the bottom of the model on its training rows.

    Stored arrays (buffers, never trained): center, factor, offset (each (n,)), with
    y = (x - center) * factor + offset. Attributes ``mean_`` and ``scale_`` (float64) read them.

    Shape: x (n_samples, n) -> y (n_samples, n).

    >>> import numpy as np, fastnn as fnn
    >>> from fastnn.preprocessing import Standardize
    >>> X = np.array([[0.0, 5.0], [2.0, 5.0]], np.float32)
    >>> layer = Standardize().adapt(X)
    >>> layer.mean_.tolist(), layer.scale_.tolist()
    ([1.0, 5.0], [1.0, 1.0])
    >>> fnn.Sequential([layer], input_dim=2).predict(X).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """

    def __init__(self, inverse=False, adapted=False):
        super().__init__(adapted)
        self.inverse = _check_bool("Standardize", "inverse", inverse)

    def _statistics(self, X):
        s = Standardizer().fit(X)
        if self.inverse:
            return np.zeros_like(s.mean_), s.scale_, s.mean_
        return s.mean_, 1.0 / s.scale_, np.zeros_like(s.mean_)

    @property
    def mean_(self):
        """Per-feature mean (float64)."""
        return self._host("offset") if self.inverse else self._host("center")

    @property
    def scale_(self):
        """Per-feature scale (float64)."""
        factor = self._host("factor")
        return factor if self.inverse else 1.0 / factor

    def get_config(self):
        return {"inverse": self.inverse, **super().get_config()}


class MinMaxScale(_AffineMap):
    """Rescale each feature to [lo, hi] inside the model: x' = lo + (x - min) / (max - min) * (hi - lo).

    A constant feature maps to ``lo``; values outside the adapted range map outside
    ``feature_range`` (nothing is clipped).

    Parameters
    ----------
    feature_range : pair of float, default (0.0, 1.0)
        ``(lo, hi)``, finite, lo < hi.
    adapted : bool, default False
        As for Standardize.

    Shape: x (n_samples, n) -> y (n_samples, n).

    >>> import numpy as np, fastnn as fnn
    >>> from fastnn.preprocessing import MinMaxScale
    >>> X = np.array([[0.0, 10.0], [4.0, 30.0]], np.float32)
    >>> fnn.Sequential([MinMaxScale().adapt(X)], input_dim=2).predict(X).tolist()
    [[0.0, 0.0], [1.0, 1.0]]
    """

    def __init__(self, feature_range=(0.0, 1.0), adapted=False):
        super().__init__(adapted)
        bad = f"MinMaxScale: feature_range must be a pair (lo, hi) with lo < hi; got {feature_range!r}."
        if not isinstance(feature_range, (tuple, list)) or len(feature_range) != 2:
            raise ValueError(bad)
        lo, hi = (check_float("MinMaxScale", f"feature_range[{i}]", v) for i, v in enumerate(feature_range))
        if not lo < hi:
            raise ValueError(bad)
        self.feature_range = (lo, hi)

    def _statistics(self, X):
        s = MinMaxScaler(self.feature_range).fit(X)
        lo, hi = self.feature_range
        return s.data_min_, (hi - lo) / s._span(), np.full_like(s.data_min_, lo)

    def get_config(self):
        return {"feature_range": list(self.feature_range), **super().get_config()}


#: The preprocessing layer types, registered with the model-file readers on import.
PREPROCESSING_TYPES = {"Standardize": Standardize, "MinMaxScale": MinMaxScale}
LAYER_TYPES.update(PREPROCESSING_TYPES)


def adapt_unfitted(model, X):
    """Adapt the preprocessing layers at the bottom of ``model`` (before any other layer) that
    have not been adapted, on ``X``: the hook ``Trainer.fit`` calls with its training rows.
    Each layer is adapted on the output of those below it. Returns the model."""
    leading = []
    for layer in model.layers:
        if not isinstance(layer, _AffineMap) or getattr(layer, "inverse", False):
            break
        leading.append(layer)
    if all(layer.adapted for layer in leading):
        return model
    X = np.asarray(X, np.float64)
    for i, layer in enumerate(leading):
        if not layer.adapted:
            layer.adapt(X)
        if i + 1 < len(leading):
            center, factor, offset = (layer._host(name) for name in ("center", "factor", "offset"))
            X = (X - center) * factor + offset
    return model


__all__ = ["MinMaxScale", "Standardize", "adapt_unfitted"]
