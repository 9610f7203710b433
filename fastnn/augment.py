"""Minibatch augmentation: random transforms of each training batch, ``Trainer(augment=...)``.

The Trainer applies its augmentations, in the order given, to every training minibatch after
gathering it and before the forward pass; never in ``evaluate``, ``predict`` or validation. The
randomness comes from ``Trainer(seed=...)``: Gaussian noise is drawn inside a compiled kernel from
the counter-based Philox stream keyed by the Trainer's seed and the augmentation's position
(no array is drawn on the host), mixup draws its coefficient and partner rows from the Trainer's
generator. Every buffer is allocated when ``fit`` starts, so a training step allocates nothing.

>>> import fastnn as fnn
>>> X, y = fnn.datasets.load_iris()
>>> X = fnn.data.Standardizer().fit(X).transform(X)     # noise is in the units of the inputs
>>> model = fnn.Sequential([fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(3)], seed=0)
>>> trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.05, momentum=0.9), metrics=["accuracy"],
...                       seed=0, augment=[fnn.augment.GaussianNoise(0.1), fnn.augment.Mixup(0.2)])
>>> history = trainer.fit(X, y, epochs=30, verbose=0)
>>> trainer.evaluate(X, y)["accuracy"] > 0.9
True
"""

from __future__ import annotations

import numpy as np

from ._checks import check_float, check_int


class Augmentation:
    """Base class of a batch transform. The Trainer drives it through this protocol:

    - ``bind(key, capacity)`` when fit starts: the key of the augmentation's random stream
      (from the Trainer's seed and the augmentation's position) and the largest batch.
    - ``buffer_shapes(n_features, n_out, dtype, weighted)``: {name: (row shape, dtype)} of the
      batch buffers it writes; the Trainer allocates them once ((capacity, *row shape)).
    - ``apply(backend, rng, out, x, y, w) -> (x, y, w)`` per training batch: backend arrays
      (x (rows, n_features), y the loss's targets, w (rows,) or None); the results are new
      arrays written into ``out`` (``buffer_shapes``' names, sliced to the batch's rows) or the
      inputs themselves; ``rng`` is the Trainer's generator. It must allocate nothing.
    - ``state_dict()`` / ``load_state_dict(state)``: what training changes, for checkpoints.
    """

    def bind(self, key, capacity):
        """Before training: the key of this augmentation's random stream (a 64-bit int from the
        Trainer's seed and its position) and the largest batch it will see."""

    def buffer_shapes(self, n_features, n_out, dtype, weighted):
        """{name: (row shape, dtype)} of the batch buffers ``apply`` receives as ``out``."""
        return {}

    def apply(self, backend, rng, out, x, y, w):
        """Transform one batch: returns (x, y, w), new arrays written into ``out`` or the inputs."""
        raise NotImplementedError  # every concrete augmentation defines it

    def state_dict(self):
        """State that training changes (JSON-able; checkpoints save it): the key is the
        Trainer's (``Trainer.state_dict``), so only counters belong here."""
        return {}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned; raises ValueError for a value it cannot hold."""

    def get_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class GaussianNoise(Augmentation):
    """Additive Gaussian input noise: x' = x + std * z, z ~ N(0, 1) drawn per element and batch.

    Parameters
    ----------
    std : float, >= 0
        Standard deviation, in the units of the inputs (standardize them first).

    The noise comes from Philox4x32-10 (Box-Muller on its words) under a key derived from
    ``Trainer(seed=...)`` and the augmentation's position, and a step counter that advances per
    batch (``state_dict()``), so a seed gives the same noise on every device.

    >>> import fastnn as fnn
    >>> fnn.augment.GaussianNoise(0.1)
    GaussianNoise(std=0.1)

    Reference: Bishop, "Training with noise is equivalent to Tikhonov regularization", Neural
    Computation 7(1), 1995.
    """

    def __init__(self, std):
        self.std = check_float("GaussianNoise", "std", std, low=0.0)
        self.step = 0
        self._key = 0

    def bind(self, key, capacity):
        self._key = key

    def buffer_shapes(self, n_features, n_out, dtype, weighted):
        return {"x": ((n_features,), dtype)}

    def apply(self, backend, rng, out, x, y, w):
        x = backend.gaussian_noise(x, std=self.std, key=self._key, step=self.step, out=out["x"])
        self.step += 1
        return x, y, w

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or "step" not in state:
            raise ValueError(f"GaussianNoise.load_state_dict: state must be a dict with a 'step'; got {state!r}.")
        self.step = check_int("GaussianNoise.load_state_dict", "step", state["step"], low=0, high=2**64 - 1)

    def get_config(self):
        return {"std": self.std}


class Mixup(Augmentation):
    """Mixup: x' = lam x_i + (1 - lam) x_j and y' = lam y_i + (1 - lam) y_j, j = perm(i).

    Per batch, lam ~ Beta(alpha, alpha) and perm is a random permutation of the batch's rows,
    both from the Trainer's generator. Integer labels (``cross_entropy``) become the mixed
    one-hot soft targets lam onehot(y_i) + (1 - lam) onehot(y_j); one-hot, soft and regression
    targets mix as they are; sample (and class) weights mix the same way. The reported training
    loss and metrics are those of the mixed batches.

    Parameters
    ----------
    alpha : float, default 0.2, > 0
        Beta distribution parameter; small values keep lam near 0 or 1 (mild mixing).

    >>> import fastnn as fnn
    >>> fnn.augment.Mixup(alpha=0.4)
    Mixup(alpha=0.4)

    Reference: Zhang, Cisse, Dauphin & Lopez-Paz, "mixup: beyond empirical risk minimization",
    ICLR 2018.
    """

    def __init__(self, alpha=0.2):
        self.alpha = check_float("Mixup", "alpha", alpha, low=0.0, low_open=True)
        self._order = self._perm = None
        self._views = {}

    def bind(self, key, capacity):
        if self._order is None or len(self._order) < capacity:
            self._order = np.arange(capacity, dtype=np.int64)
            self._perm = np.empty(capacity, dtype=np.int64)
            self._views = {}

    def buffer_shapes(self, n_features, n_out, dtype, weighted):
        shapes = {"x": ((n_features,), dtype), "y": ((n_out,), dtype)}
        if weighted:
            shapes["w"] = ((), dtype)
        return shapes

    def _partners(self, rng, n):
        """A random permutation of range(n) in the host buffer (reset, then shuffled in place)."""
        views = self._views.get(n)
        if views is None:
            views = self._views[n] = (self._order[:n], self._perm[:n])
        order, perm = views
        np.copyto(perm, order)
        rng.shuffle(perm)
        return perm

    def apply(self, backend, rng, out, x, y, w):
        lam = float(rng.beta(self.alpha, self.alpha))
        idx = backend.asarray(self._partners(rng, x.shape[0]))
        x = backend.mixup(x, idx, lam, out=out["x"])
        if y.ndim == 1:  # integer labels: mixed one-hot targets
            y = backend.mixup_labels(y, idx, lam, out=out["y"])
        else:
            y = backend.mixup(y, idx, lam, out=out["y"])
        if w is not None:
            w = backend.mixup(w, idx, lam, out=out["w"])
        return x, y, w

    def get_config(self):
        return {"alpha": self.alpha}


def as_augmentations(augment, owner="Trainer"):
    """A list of augmentations from None, one augmentation, or a list/tuple of them."""
    if augment is None:
        return []
    items = list(augment) if isinstance(augment, (list, tuple)) else [augment]
    for item in items:
        if not isinstance(item, Augmentation):
            raise TypeError(f"{owner}: augment must be a fastnn.augment augmentation or a list of them "
                            f"(GaussianNoise, Mixup); got {item!r}.")
    return items


__all__ = ["Augmentation", "GaussianNoise", "Mixup", "as_augmentations"]
