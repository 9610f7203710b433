"""Callbacks and the training History.

A callback receives the Trainer's events; it can stop training by setting
``trainer.stop_training = True``. Hooks: on_train_begin/end(logs), on_epoch_begin(epoch),
on_epoch_end(epoch, logs), on_batch_begin(batch), on_batch_end(batch, logs).
"""

from __future__ import annotations

import csv
import io
import math

from ._checks import check_choice, check_float, check_int
from ._files import atomic_write


class Callback:
    """Base class: every hook does nothing; ``trainer`` is set before training starts."""

    trainer = None

    def set_trainer(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda e, logs: ...)``."""

    def __init__(self, **hooks):
        names = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_batch_begin",
                 "on_batch_end")
        for name, fn in hooks.items():
            if name not in names or not callable(fn):
                raise ValueError(f"LambdaCallback: {name!r} must be one of {', '.join(names)} with a callable.")
            setattr(self, name, fn)


class History(Callback):
    """Per-epoch records: ``history`` maps 'loss', 'val_loss', each metric and 'val_<metric>',
    'lr', 'grad_norm' (global gradient norm at the epoch's last update, before clipping)
    and 'epoch_time' (seconds) to lists with one value per epoch."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, [math.nan] * (len(self.epoch) - 1)).append(value)
        for values in self.history.values():  # keys missing this epoch get NaN
            if len(values) < len(self.epoch):
                values.append(math.nan)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        last = {k: v[-1] for k, v in self.history.items()} if self.epoch else {}
        return f"History(epochs={len(self.epoch)}, last={last})"

    def to_csv(self, path):
        """Write one row per epoch (column 'epoch' then every key), atomically."""
        keys = list(self.history)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["epoch", *keys])
        for i, epoch in enumerate(self.epoch):
            writer.writerow([epoch, *(repr(self.history[k][i]) for k in keys)])
        with atomic_write(path, "w") as f:
            f.write(buf.getvalue())

    def plot(self, path):
        """Draw loss and each metric (train against validation) on one figure, saved to ``path``.

        Needs matplotlib (``pip install fastnn[plot]``).
        """
        from ._plot import pyplot, save_figure

        plt = pyplot("History.plot")
        skip = {"lr", "grad_norm", "epoch_time"}
        names = [k for k in self.history if not k.startswith("val_") and k not in skip]
        fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5 * max(len(names), 1), 3.6), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, name in zip(axes[0], names):
            ax.plot(epochs, self.history[name], label=f"train {name}")
            if f"val_{name}" in self.history:
                ax.plot(epochs, self.history[f"val_{name}"], label=f"validation {name}")
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        save_figure(fig, path)


#: metric names where larger is better (mode='auto' maximises them, with or without 'val_')
_HIGHER_IS_BETTER = ("accuracy", "top_k_accuracy", "precision", "recall", "f1", "r2")


class _Monitor:
    """The improvement test shared by the callbacks that watch a logged quantity: ``monitor``
    ('val_loss', 'accuracy', ...), ``mode`` ('min', 'max', or 'auto': 'max' for the metrics in
    _HIGHER_IS_BETTER, else 'min') and ``min_delta`` (an absolute margin, as in Keras)."""

    def __init__(self, owner, monitor, mode, min_delta):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{owner}: monitor must be the name of a logged quantity such as 'val_loss'; "
                            f"got {monitor!r}.")
        self.owner, self.monitor = owner, monitor
        mode = check_choice(owner, "mode", mode, ("auto", "min", "max"))
        if mode == "auto":
            name = monitor[4:] if monitor.startswith("val_") else monitor
            mode = "max" if name in _HIGHER_IS_BETTER else "min"
        self.mode = mode
        self.min_delta = check_float(owner, "min_delta", min_delta, low=0.0)
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs):
        """The monitored value in this epoch's logs; a clear error when it is not logged."""
        if self.monitor not in (logs or {}):
            listed = ", ".join(repr(k) for k in (logs or {}))
            hint = "; pass validation data to fit for 'val_' quantities" if self.monitor.startswith("val_") else ""
            raise ValueError(f"{self.owner}: monitor {self.monitor!r} is not logged; the logs have {listed}{hint}.")
        return float(logs[self.monitor])

    def improved(self, value):
        """True (and the best value updated) when ``value`` beats the best by more than min_delta."""
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best = value
        return better


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs (Keras' callback of the same name; PyTorch's scheduler with
    threshold_mode='abs').

    It works with any optimizer and any schedule: it lowers ``optimizer.lr_scale``, a
    multiplier on the schedule's value, so a schedule keeps its shape at a lower level. The new
    rate is max(lr * factor, min_lr), taken at the moment of the reduction; nothing is done
    when the rate is already at or below min_lr (a decaying schedule may still go lower).

    Parameters
    ----------
    monitor : str, default 'val_loss'
        A key of the epoch's logs: 'loss', 'val_loss', a metric or 'val_<metric>'.
    factor : float, default 0.1, in (0, 1)
    patience : int, default 10, >= 0
        Epochs without improvement before a reduction.
    min_delta : float, default 1e-4, >= 0
        An improvement must beat the best value by more than this.
    cooldown : int, default 0, >= 0
        After a reduction, epochs without improvement are counted again only once this many
        epochs have passed (Keras' rule: the last of them already counts).
    min_lr : float, default 0, >= 0
    mode : {'auto', 'min', 'max'}, default 'auto'
        'auto' maximises accuracy, top_k_accuracy, precision, recall, f1 and r2, and
        minimises everything else.
    verbose : int, default 0
        1 prints a line at each reduction.

    >>> import fastnn as fnn
    >>> X, y = fnn.datasets.load_iris()
    >>> model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)], seed=0)
    >>> trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(0.01), seed=0)
    >>> h = trainer.fit(X, y, epochs=20, validation_split=0.2, verbose=0,
    ...                 callbacks=[fnn.callbacks.ReduceLROnPlateau(patience=2, factor=0.5)])
    >>> len(h.history["lr"])
    20
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0,
                 mode="auto", verbose=0):
        owner = "ReduceLROnPlateau"
        self.factor = check_float(owner, "factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int(owner, "patience", patience, low=0)
        self.cooldown = check_int(owner, "cooldown", cooldown, low=0)
        self.min_lr = check_float(owner, "min_lr", min_lr, low=0.0)
        self.verbose = check_int(owner, "verbose", verbose, low=0)
        self._monitor = _Monitor(owner, monitor, mode, min_delta)
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._monitor.reset()
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._monitor.value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improved(value):
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                self._reduce(epoch)

    def _reduce(self, epoch):
        optimizer = self.trainer.optimizer
        old = optimizer.current_lr()
        if old <= self.min_lr:
            return
        new = max(old * self.factor, self.min_lr)
        optimizer.lr_scale *= new / old
        self.cooldown_counter = self.cooldown
        self.wait = 0
        if self.verbose:
            print(f"epoch {epoch + 1}: ReduceLROnPlateau lowered the learning rate to {new:.3g}.")


__all__ = ["Callback", "History", "LambdaCallback", "ReduceLROnPlateau"]
