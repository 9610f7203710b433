"""Metrics, accumulated over the batches of an epoch: ``update(pred, target, weight)``, then
``result()``. ``pred`` is the model's output as a NumPy array (probabilities or raw scores:
the class decisions below are the same for both), ``target`` as the loss prepared it
(int labels, or 2-D one-hot/soft/regression targets)."""

from __future__ import annotations

import numpy as np

from ._checks import check_choice


def _labels(target):
    """Class labels from int labels or 2-D one-hot/soft targets."""
    return target if target.ndim == 1 else target.argmax(axis=1)


def _decisions(pred, threshold):
    """Predicted classes: argmax over several outputs, threshold on a single output."""
    if pred.shape[1] == 1:
        return (pred[:, 0] > threshold).astype(np.int64)
    return pred.argmax(axis=1)


class Metric:
    name = "metric"
    #: True: larger is better (EarlyStopping infers the mode from it).
    greater_is_better = True

    def __init__(self):
        self.reset()

    def reset(self):
        self._num = 0.0
        self._den = 0.0

    def result(self):
        return float(self._num / self._den) if self._den else float("nan")

    def update(self, pred, target, weight=None, logits=False):
        raise NotImplementedError  # every concrete metric defines it


class Accuracy(Metric):
    """Fraction of samples whose predicted class equals the label (weighted by sample weight).

    A single output is a binary classifier: the decision threshold is 0 on logits, 0.5 on
    probabilities; targets are then 0/1.
    """

    name = "accuracy"

    def update(self, pred, target, weight=None, logits=False):
        guess = _decisions(pred, 0.0 if logits else 0.5)
        truth = (target[:, 0] > 0.5).astype(np.int64) if pred.shape[1] == 1 else _labels(target)
        w = np.ones(len(guess)) if weight is None else weight
        self._num += float(np.dot(w, guess == truth))
        self._den += float(w.sum())


class MeanSquaredError(Metric):
    """Mean of (pred - y)^2 over every element."""

    name = "mse"
    greater_is_better = False

    def update(self, pred, target, weight=None, logits=False):
        d = pred.astype(np.float64) - target.reshape(pred.shape)
        w = np.ones(len(d)) if weight is None else weight
        self._num += float(np.dot(w, (d * d).sum(axis=1)))
        self._den += float(w.sum()) * pred.shape[1]


class MeanAbsoluteError(Metric):
    """Mean of |pred - y| over every element."""

    name = "mae"
    greater_is_better = False

    def update(self, pred, target, weight=None, logits=False):
        d = np.abs(pred.astype(np.float64) - target.reshape(pred.shape))
        w = np.ones(len(d)) if weight is None else weight
        self._num += float(np.dot(w, d.sum(axis=1)))
        self._den += float(w.sum()) * pred.shape[1]


class R2(Metric):
    """Coefficient of determination 1 - SS_res / SS_tot, averaged over outputs
    (scikit-learn's ``r2_score`` with 'uniform_average'); sample weights respected."""

    name = "r2"

    def reset(self):
        self._w = 0.0
        self._sy = self._syy = self._sres = 0.0

    def update(self, pred, target, weight=None, logits=False):
        t = target.reshape(pred.shape).astype(np.float64)
        w = (np.ones(len(t)) if weight is None else weight)[:, None]
        self._w += float(w.sum())
        self._sy = self._sy + (w * t).sum(axis=0)
        self._syy = self._syy + (w * t * t).sum(axis=0)
        self._sres = self._sres + (w * (t - pred) ** 2).sum(axis=0)

    def result(self):
        if not self._w:
            return float("nan")
        tot = self._syy - self._sy ** 2 / self._w
        with np.errstate(divide="ignore", invalid="ignore"):
            # a constant target: 1 when predicted exactly, else 0, as scikit-learn does
            r2 = np.where(tot > 0, 1.0 - self._sres / np.where(tot > 0, tot, 1.0),
                          np.where(self._sres == 0, 1.0, 0.0))
        return float(np.mean(r2))


METRICS = {"accuracy": Accuracy, "mse": MeanSquaredError, "mae": MeanAbsoluteError, "r2": R2}


def get_metric(metric, owner="Trainer"):
    """A fresh Metric from a name or an instance."""
    if isinstance(metric, Metric):
        return metric
    check_choice(owner, "metric", metric, tuple(METRICS))
    return METRICS[metric]()


__all__ = ["Accuracy", "METRICS", "MeanAbsoluteError", "MeanSquaredError", "Metric", "R2", "get_metric"]
