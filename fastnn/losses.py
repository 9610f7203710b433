"""Losses: target checking, normalisation, and the fused kernel that computes both the loss
and its gradient in one pass.

Every loss is a mean: over samples for ``cross_entropy``, over all elements (samples x
outputs) for the others, as PyTorch's ``reduction="mean"``. With sample weights w_i the
loss is sum_i w_i l_i divided by the same count (Keras' convention), so weights scale each
sample's contribution without changing the meaning of the unweighted mean.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, as_label_array, check_choice, check_float


class Loss:
    """Base class: a loss declares here, once, what the rest of fastnn reads about it.

    ``name``: its registry name (LOSSES). ``fuses``: the output activation its kernel computes
    itself from logits ('softmax', 'sigmoid'; None: none): a model ending in that activation is
    trained on its logits (Trainer), and a model ending in logits that was trained with this
    loss stands for that activation's probabilities (Ensemble, fused_activation).
    ``default_for``: the output activations for which it is the loss to use when none is named
    (DEFAULT_LOSS). ``per_element``: the mean runs over all outputs (True) or over samples only.
    """

    name = "loss"
    fuses: str | None = None
    default_for: tuple[str, ...] = ()
    per_element = True

    def prepare_target(self, y, n_out, dtype, owner):
        """Validate targets for a model with ``n_out`` outputs; returns a C-contiguous array."""
        y = as_float_array(owner, "y", y, dtype, ndim=None)
        if y.ndim == 1 and n_out == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_out:
            raise ValueError(f"{owner}: y must have shape (n_samples, {n_out}) for a model with {n_out} outputs; "
                             f"got {y.shape}.")
        return y

    def count(self, n_samples, n_out):
        """Number of terms the mean divides by, for ``n_samples`` rows."""
        return n_samples * n_out if self.per_element else n_samples

    def __call__(self, backend, pred, target, *, weight=None, scale=1.0, loss_out, grad=None):
        raise NotImplementedError  # every concrete loss defines it

    def get_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MSE(Loss):
    """Mean squared error: mean((pred - y)^2)."""

    name = "mse"
    default_for = ("identity",)

    def __call__(self, backend, pred, target, *, weight=None, scale=1.0, loss_out, grad=None):
        return backend.mse(pred, target, weight=weight, scale=scale, loss_out=loss_out, grad=grad)


class MAE(Loss):
    """Mean absolute error: mean(|pred - y|)."""

    name = "mae"

    def __call__(self, backend, pred, target, *, weight=None, scale=1.0, loss_out, grad=None):
        return backend.mae(pred, target, weight=weight, scale=scale, loss_out=loss_out, grad=grad)


class Huber(Loss):
    """Huber loss: d^2/2 for |d| <= delta, delta (|d| - delta/2) beyond (PyTorch's HuberLoss).

    Parameters
    ----------
    delta : float, default 1.0, > 0
    """

    name = "huber"

    def __init__(self, delta=1.0):
        self.delta = check_float("Huber", "delta", delta, low=0.0, low_open=True)

    def __call__(self, backend, pred, target, *, weight=None, scale=1.0, loss_out, grad=None):
        return backend.huber(pred, target, delta=self.delta, weight=weight, scale=scale, loss_out=loss_out, grad=grad)

    def get_config(self):
        return {"delta": self.delta}


class BinaryCrossEntropy(Loss):
    """Sigmoid + binary cross-entropy on logits, fused and stable; multi-label allowed.

    Targets in [0, 1], shape (n_samples, n_out) (or (n_samples,) for one output).
    """

    name = "binary_cross_entropy"
    fuses = "sigmoid"
    default_for = ("sigmoid",)

    def prepare_target(self, y, n_out, dtype, owner):
        y = super().prepare_target(y, n_out, dtype, owner)
        if y.size and (y.min() < 0 or y.max() > 1):
            bad = y.min() if y.min() < 0 else y.max()
            raise ValueError(f"{owner}: y must be in [0, 1] for binary_cross_entropy; got {float(bad)!r}.")
        return y

    def __call__(self, backend, pred, target, *, weight=None, scale=1.0, loss_out, grad=None):
        return backend.binary_cross_entropy(pred, target, weight=weight, scale=scale, loss_out=loss_out, grad=grad)


class CrossEntropy(Loss):
    """Softmax + cross-entropy on logits, fused and stable: mean_i -sum_k t_ik log softmax(z_i)_k.

    Parameters
    ----------
    label_smoothing : float, default 0.0, in [0, 1)
        Targets become (1 - eps) t + eps / n_classes (PyTorch's convention).

    Targets: integer labels (n_samples,) in [0, n_classes), or one-hot / soft targets
    (n_samples, n_classes) with non-negative rows.
    """

    name = "cross_entropy"
    fuses = "softmax"
    default_for = ("softmax",)
    per_element = False

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = check_float("CrossEntropy", "label_smoothing", label_smoothing,
                                           low=0.0, high=1.0, high_open=True)

    def prepare_target(self, y, n_out, dtype, owner):
        arr = np.asarray(y) if not isinstance(y, (str, bytes)) else y
        if getattr(arr, "ndim", 1) == 2:
            t = as_float_array(owner, "y", arr, dtype)
            if t.shape[1] != n_out:
                raise ValueError(f"{owner}: one-hot/soft y must have {n_out} columns for a model with "
                                 f"{n_out} outputs; got {t.shape[1]}.")
            if t.size and t.min() < 0:
                raise ValueError(f"{owner}: soft targets y must be non-negative; got {float(t.min())!r}.")
            return t
        if n_out < 2:
            raise ValueError(f"{owner}: cross_entropy needs a model with at least 2 outputs (one per class); "
                             f"this one has {n_out}; for a single output use binary_cross_entropy.")
        return as_label_array(owner, "y", y, n_out)

    def __call__(self, backend, pred, target, *, weight=None, scale=1.0, loss_out, grad=None):
        return backend.cross_entropy(pred, target, label_smoothing=self.label_smoothing, weight=weight,
                                     scale=scale, loss_out=loss_out, grad=grad)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing}


#: The losses by name: the registry every other module reads (Trainer, checkpoints, Ensemble).
LOSSES = {cls.name: cls for cls in (MSE, MAE, Huber, BinaryCrossEntropy, CrossEntropy)}
#: output activation -> the name of its default loss, from each loss's ``default_for``.
DEFAULT_LOSS = {act: cls.name for cls in LOSSES.values() for act in cls.default_for}


def fused_activation(loss):
    """The output activation that ``loss`` (a name in LOSSES or a Loss) computes inside its
    kernel: 'softmax', 'sigmoid', or None (an unknown name: None)."""
    cls = loss if isinstance(loss, Loss) else LOSSES.get(loss)
    return None if cls is None else cls.fuses


def get_loss(loss, owner="Trainer"):
    """A Loss from a name or an instance."""
    if isinstance(loss, Loss):
        return loss
    check_choice(owner, "loss", loss, tuple(LOSSES))
    return LOSSES[loss]()


__all__ = ["BinaryCrossEntropy", "CrossEntropy", "DEFAULT_LOSS", "Huber", "LOSSES", "Loss", "MAE", "MSE",
           "fused_activation", "get_loss"]
