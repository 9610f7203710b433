"""Metrics, accumulated over the batches of an epoch: ``update(pred, target, weight)``, then
``result()``. ``pred`` is the model's output as a NumPy array (probabilities or raw scores:
the class decisions below are the same for both), ``target`` as the loss prepared it
(int labels, or 2-D one-hot/soft/regression targets)."""

from __future__ import annotations

import numpy as np

from ._checks import check_choice, check_int


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

    def get_config(self):
        """The constructor's arguments (checkpoints rebuild the metric from them)."""
        return {}

    def clone(self):
        """A fresh metric of the same type and configuration (``type(self)(**get_config())``):
        TopKAccuracy(k=1).clone() keeps k=1. A subclass whose constructor takes arguments
        returns them from get_config."""
        config = self.get_config()
        try:
            return type(self)(**config)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}.clone: the metric cannot be rebuilt from get_config() = "
                            f"{config!r} ({exc}); return the constructor's arguments from get_config().") from None


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


class TopKAccuracy(Metric):
    """Fraction of samples whose label is among the ``k`` largest outputs (weighted by sample
    weight); ties are broken by position, the lower class index first. With k >= the number
    of outputs every sample counts as correct.

    >>> import numpy as np
    >>> m = TopKAccuracy(k=2); m.update(np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]]), np.array([2, 2]))
    >>> m.result()
    0.5
    """

    name = "top_k_accuracy"

    def __init__(self, k=5):
        self.k = check_int("TopKAccuracy", "k", k, low=1)
        super().__init__()

    def update(self, pred, target, weight=None, logits=False):
        if pred.shape[1] < 2:
            raise ValueError("top_k_accuracy: needs one output per class (2 or more outputs); "
                             "use accuracy for a single binary output.")
        truth = _labels(target)
        if self.k >= pred.shape[1]:
            hit = np.ones(len(truth), dtype=bool)
        else:
            # the label is in the top k when fewer than k classes beat it (a tie with a lower
            # index also beats it, as a stable descending sort would rank it)
            score = pred[np.arange(len(truth)), truth][:, None]
            cols = np.arange(pred.shape[1])
            beats = (pred > score) | ((pred == score) & (cols < truth[:, None]))
            hit = beats.sum(axis=1) < self.k
        w = np.ones(len(hit)) if weight is None else weight
        self._num += float(np.dot(w, hit))
        self._den += float(w.sum())

    def get_config(self):
        return {"k": self.k}


class _ClassCounts(Metric):
    """Per-class weighted true positives, predicted and actual counts, from which precision,
    recall and F1 follow. One output is a binary classifier (threshold 0 on logits, 0.5 on
    probabilities) scored on the positive class 1; several outputs are multi-class (argmax),
    averaged over the classes present in the targets or the predictions:

    - 'macro' (default): the unweighted mean of the per-class scores;
    - 'weighted': their mean weighted by each class's (weighted) count in the targets;
    - 'micro': the score of the pooled counts (equal to accuracy for single-label data).

    A class whose score has a zero denominator scores 0, as scikit-learn's default
    (zero_division='warn') does, without the warning. The results equal scikit-learn's
    ``precision_score`` / ``recall_score`` / ``f1_score`` with ``average='binary'`` (one output)
    or the same ``average``.
    """

    def __init__(self, average="macro"):
        self.average = check_choice(type(self).__name__, "average", average, ("macro", "micro", "weighted"))
        super().__init__()

    def reset(self):
        self._tp = self._pred = self._true = np.zeros(0)
        self._binary = None

    def update(self, pred, target, weight=None, logits=False):
        binary = pred.shape[1] == 1
        guess = _decisions(pred, 0.0 if logits else 0.5)
        truth = (target[:, 0] > 0.5).astype(np.int64) if binary else _labels(target).astype(np.int64)
        w = np.ones(len(guess)) if weight is None else np.asarray(weight, np.float64)
        n = max(pred.shape[1], 2, len(self._tp))
        tp = np.bincount(truth[guess == truth], w[guess == truth], minlength=n)
        counts = (tp, np.bincount(guess, w, minlength=n), np.bincount(truth, w, minlength=n))
        self._tp, self._pred, self._true = (np.pad(old, (0, n - len(old))) + new for old, new in
                                            zip((self._tp, self._pred, self._true), counts))
        self._binary = binary

    def result(self):
        if self._binary is None:
            return float("nan")
        tp, pred, true = self._tp, self._pred, self._true
        if self._binary:  # the positive class only
            return self._score(tp[1:2], pred[1:2], true[1:2])
        present = (pred > 0) | (true > 0)
        if self.average == "micro":
            return self._score(tp[present].sum(keepdims=True), pred[present].sum(keepdims=True),
                               true[present].sum(keepdims=True))
        scores = self._scores(tp[present], pred[present], true[present])
        if self.average == "weighted":
            total = true[present].sum()
            return float(np.dot(scores, true[present]) / total) if total else 0.0
        return float(scores.mean()) if len(scores) else float("nan")

    def _score(self, tp, pred, true):
        return float(self._scores(tp, pred, true)[0])

    @staticmethod
    def _ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)

    def get_config(self):
        return {"average": self.average}


class Precision(_ClassCounts):
    """Precision TP / (TP + FP): binary on one output, else averaged over classes (``average``:
    'macro' by default, 'micro' or 'weighted'; see _ClassCounts)."""

    name = "precision"

    def _scores(self, tp, pred, true):
        return self._ratio(tp, pred)


class Recall(_ClassCounts):
    """Recall TP / (TP + FN): binary on one output, else averaged over classes (``average``:
    'macro' by default, 'micro' or 'weighted'; see _ClassCounts)."""

    name = "recall"

    def _scores(self, tp, pred, true):
        return self._ratio(tp, true)


class F1(_ClassCounts):
    """F1 = 2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall: binary on one
    output, else averaged over classes (``average``: 'macro' by default, 'micro' or 'weighted';
    see _ClassCounts)."""

    name = "f1"

    def _scores(self, tp, pred, true):
        return self._ratio(2 * tp, pred + true)


METRICS = {"accuracy": Accuracy, "top_k_accuracy": TopKAccuracy, "precision": Precision, "recall": Recall,
           "f1": F1, "mse": MeanSquaredError, "mae": MeanAbsoluteError, "r2": R2}


def greater_is_better(name, metrics=()):
    """True when larger values of the logged metric ``name`` (with or without 'val_') are better:
    the ``greater_is_better`` of the instance in ``metrics`` with that name, else of the class
    registered under it in METRICS; False for anything else (the loss, the lr, ...)."""
    name = name.removeprefix("val_")
    for m in metrics:
        if m.name == name:
            return bool(m.greater_is_better)
    cls = METRICS.get(name)
    return bool(cls.greater_is_better) if cls is not None else False


def get_metric(metric, owner="Trainer"):
    """A fresh Metric from a name (with its default options: top_k_accuracy k=5; precision,
    recall, f1 average='macro') or an instance (returned as is)."""
    if isinstance(metric, Metric):
        return metric
    check_choice(owner, "metric", metric, tuple(METRICS))
    return METRICS[metric]()


__all__ = ["Accuracy", "F1", "METRICS", "MeanAbsoluteError", "MeanSquaredError", "Metric", "Precision", "R2", "Recall",
           "TopKAccuracy", "get_metric", "greater_is_better"]
