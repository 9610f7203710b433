"""Callbacks and the training History.

A callback receives the Trainer's events; it can stop training by setting
``trainer.stop_training = True``. Hooks: on_train_begin/end(logs), on_epoch_begin(epoch),
on_epoch_end(epoch, logs), on_batch_begin(batch), on_batch_end(batch, logs).
"""

from __future__ import annotations

import csv
import io
import math

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
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib; install it with pip install 'fastnn[plot]'.") from None
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
        suffix = str(path).rsplit(".", 1)[-1] if "." in str(path) else "png"
        with atomic_write(path) as f:
            fig.savefig(f, format=suffix)
        plt.close(fig)


__all__ = ["Callback", "History", "LambdaCallback"]
