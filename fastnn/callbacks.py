"""Callbacks and the training History.

A callback receives the Trainer's events; it can stop training by setting
``trainer.stop_training = True`` (checked after every batch and every epoch). Hooks:

- ``on_train_begin(logs)``: logs = {"epochs": epochs of this fit call, "initial_epoch": epochs
  trained before it, "batches": minibatches per epoch, "samples": training samples per epoch};
- ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``: epoch counts from 0 over
  the Trainer's life; the end logs hold loss, metrics, val_ quantities, lr, grad_norm and
  epoch_time;
- ``on_batch_begin(batch, logs)``: logs = None; ``on_batch_end(batch, logs)``: logs =
  {"size": rows of the batch, "seen": rows of the epoch so far, "loss": the epoch's running
  mean loss};
- ``on_train_end(logs)``: logs = {"interrupted": True when a KeyboardInterrupt ended fit}.

Batch hooks are called only for callbacks that define them (the per-batch loop is the hot
path), and only while ``wants_batches`` is true.

fit always runs a History (first, so that later callbacks see ``trainer.history`` up to date)
and a TerminateOnNaN (yours if you pass one); with ``verbose`` it adds a ProgressBar unless
you pass one.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
import warnings

import numpy as np

from ._checks import check_choice, check_float, check_int
from ._files import atomic_write
from .errors import TrainingDiverged
from .metrics import greater_is_better


class Callback:
    """Base class: every hook does nothing; ``trainer`` is set before training starts."""

    trainer = None
    #: False: the Trainer skips this callback's batch hooks (read after on_train_begin)
    wants_batches = True

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

    def state_dict(self):
        """JSON-able copy of the records (NaN as None, infinities as 'inf'/'-inf'): checkpoints save it."""
        def encode(v):
            return None if v != v else (("inf" if v > 0 else "-inf") if v in (math.inf, -math.inf) else v)

        return {"epoch": list(self.epoch), "history": {k: [encode(float(v)) for v in vs]
                                                       for k, vs in self.history.items()}}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned."""
        def decode(v):
            return math.nan if v is None else float(v)

        epochs = [int(e) for e in state["epoch"]]
        history = {str(k): [decode(v) for v in vs] for k, vs in state["history"].items()}
        if any(len(vs) != len(epochs) for vs in history.values()):
            raise ValueError("History.load_state_dict: every record must have one value per epoch.")
        self.epoch, self.history = epochs, history

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
        """Draw loss and each metric (train against validation) on one figure, saved to ``path``:
        one panel per quantity, side by side, each 5 x 3.6 inches at 100 dpi (a PNG of
        500 * panels x 360 pixels); epochs count from 1.

        Needs matplotlib (``pip install fastnn[plot]``).
        """
        from ._plot import pyplot, save_figure

        plt = pyplot("History.plot")
        from matplotlib.ticker import MaxNLocator

        skip = {"lr", "grad_norm", "epoch_time"}
        names = [k for k in self.history if not k.startswith("val_") and k not in skip]
        fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5 * max(len(names), 1), 3.6), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        marker = "o" if len(epochs) <= 30 else None  # a few epochs: show each one
        for ax, name in zip(axes[0], names):
            ax.plot(epochs, self.history[name], label=f"train {name}", marker=marker, markersize=3)
            if f"val_{name}" in self.history:
                ax.plot(epochs, self.history[f"val_{name}"], label=f"validation {name}", marker=marker, markersize=3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        save_figure(fig, path, dpi=100)


class _Monitor:
    """The improvement test shared by the callbacks that watch a logged quantity: ``monitor``
    ('val_loss', 'accuracy', ...), ``mode`` ('min', 'max', or 'auto': 'max' for a metric whose
    ``greater_is_better`` is True (the Trainer's instance, else fastnn.metrics.METRICS), else
    'min') and ``min_delta`` (an absolute margin, as in Keras)."""

    def __init__(self, owner, monitor, mode, min_delta, fallback=False):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{owner}: monitor must be the name of a logged quantity such as 'val_loss'; "
                            f"got {monitor!r}.")
        self.owner, self.requested = owner, monitor
        mode = check_choice(owner, "mode", mode, ("auto", "min", "max"))
        self.auto = mode == "auto"
        self.mode = ("max" if greater_is_better(monitor) else "min") if self.auto else mode
        self.min_delta = check_float(owner, "min_delta", min_delta, low=0.0)
        self.fallback = fallback
        self.reset()

    def reset(self, trainer=None):
        """Start watching afresh; with 'auto', the direction comes from the trainer's metric of
        that name (a custom Metric says its own greater_is_better)."""
        if self.auto and trainer is not None:
            self.mode = "max" if greater_is_better(self.requested, getattr(trainer, "metrics", ())) else "min"
        self.monitor = self.requested
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs):
        """The monitored value in this epoch's logs; a clear error when it is not logged. With
        ``fallback``, a missing 'val_<name>' falls back to '<name>' with a warning (once)."""
        logs = logs or {}
        name = self.monitor
        if name not in logs and self.fallback and name.startswith("val_") and name[4:] in logs:
            warnings.warn(f"{self.owner}: {name!r} is not logged because fit has no validation data; monitoring "
                          f"the training {name[4:]!r} instead. Pass validation= or validation_split= to fit, "
                          f"or monitor={name[4:]!r} to silence this.", UserWarning, stacklevel=2)
            self.monitor = name = name[4:]
        if name not in logs:
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
        'auto' maximises a metric whose greater_is_better is True (accuracy, top_k_accuracy,
        precision, recall, f1, r2, or a custom Metric saying so), and
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
        self._monitor.reset(self.trainer)
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


def _params_copy(model):
    """A NumPy copy of the model's flat parameters (with BatchNorm's running statistics)."""
    return model.backend.to_numpy(model.params).copy()


def _set_params(model, values):
    model.backend.copy(model.backend.asarray(values), model.params)


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs, and (with
    ``restore_best``) end with the weights of the best epoch.

    Parameters
    ----------
    monitor : str, default 'val_loss'
        A key of the epoch's logs. When fit has no validation data, a 'val_<name>' monitor falls
        back to the training '<name>' with a UserWarning (early stopping on the training loss
        still ends a stalled run).
    mode : {'auto', 'min', 'max'}, default 'auto'
        'auto' maximises a metric whose greater_is_better is True (accuracy, top_k_accuracy,
        precision, recall, f1, r2, or a custom Metric saying so), and minimises
        everything else.
    patience : int, default 5, >= 0
        Epochs without improvement before stopping (0: stop at the first one).
    min_delta : float, default 0, >= 0
        An improvement must beat the best value by more than this.
    restore_best : bool, default True
        At the end of fit (stopped early or not), set the model's parameters, BatchNorm's
        running statistics included, to those at the end of the best epoch. The optimizer
        state, the epoch count and the History are not rewound.
    verbose : int, default 0
        1 prints a line when training stops and when the best weights are restored.

    Attributes: ``best`` (the best value), ``best_epoch`` and ``stopped_epoch`` (0-based
    epochs, None when not reached), ``wait`` (epochs since the last improvement). The state
    restarts at every fit call.

    >>> import fastnn as fnn
    >>> X, y = fnn.datasets.load_iris()
    >>> model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)], seed=0)
    >>> stop = fnn.callbacks.EarlyStopping(patience=3)
    >>> h = fnn.Trainer(model, "cross_entropy", "adam", seed=0).fit(
    ...     X, y, epochs=200, validation_split=0.2, callbacks=[stop], verbose=0)
    >>> stop.best == min(h["val_loss"])
    True
    """

    def __init__(self, monitor="val_loss", mode="auto", patience=5, min_delta=0.0, restore_best=True, verbose=0):
        owner = "EarlyStopping"
        self.patience = check_int(owner, "patience", patience, low=0)
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"{owner}: restore_best must be True or False; got {restore_best!r}.")
        self.restore_best = bool(restore_best)
        self.verbose = check_int(owner, "verbose", verbose, low=0)
        self._monitor = _Monitor(owner, monitor, mode, min_delta, fallback=True)
        self.on_train_begin()

    @property
    def best(self):
        """The best monitored value of this fit call (inf or -inf before the first epoch)."""
        return self._monitor.best

    def on_train_begin(self, logs=None):
        self._monitor.reset(self.trainer)
        self.wait = 0
        self.best_epoch = self.stopped_epoch = None
        self._best_params = None

    def on_epoch_end(self, epoch, logs=None):
        if self._monitor.improved(self._monitor.value(logs)):
            self.wait, self.best_epoch = 0, epoch
            if self.restore_best:
                self._best_params = _params_copy(self.trainer.model)
            return
        self.wait += 1
        if self.wait > self.patience or self.patience == 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            if self.verbose:
                at = "-" if self.best_epoch is None else self.best_epoch + 1
                print(f"epoch {epoch + 1}: EarlyStopping: {self._monitor.monitor} has not improved for {self.wait} "
                      f"epochs (best {self.best:.6g} at epoch {at}); stopping.")

    def on_train_end(self, logs=None):
        if self.restore_best and self._best_params is not None:
            _set_params(self.trainer.model, self._best_params)
            if self.verbose:
                print(f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1}.")


class ModelCheckpoint(Callback):
    """Save the model (or, with ``full``, a resumable training checkpoint) after each epoch,
    or only when ``monitor`` improves. Every write is atomic: a failure leaves the previous file.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write; may name the epoch and logged values, e.g. 'ckpt-{epoch:03d}-{val_loss:.3f}.fnn'
        (epoch counts from 1).
    monitor : str, default 'val_loss'
        The quantity of ``save_best_only`` (falls back to the training value without
        validation data, with a warning, as EarlyStopping does).
    save_best_only : bool, default False
        Write only when ``monitor`` beats its best value (kept across fit calls).
    mode : {'auto', 'min', 'max'}, default 'auto'
    min_delta : float, default 0
    full : bool, default False
        False: the model file (``model.save``, read by ``fastnn.load``); True: the Trainer's
        checkpoint (``trainer.save_checkpoint``, read by ``Trainer.from_checkpoint``).
    verbose : int, default 0
        1 prints a line per write.

    Attribute ``last_path``: the last file written (None before the first).
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", min_delta=0.0, full=False,
                 verbose=0):
        owner = "ModelCheckpoint"
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise TypeError(f"{owner}: path must be a file path; got {path!r}.")
        self.path = os.fspath(path)
        for name, flag in (("save_best_only", save_best_only), ("full", full)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{owner}: {name} must be True or False; got {flag!r}.")
        self.save_best_only, self.full = bool(save_best_only), bool(full)
        self.verbose = check_int(owner, "verbose", verbose, low=0)
        self._monitor = _Monitor(owner, monitor, mode, min_delta, fallback=True)
        self.last_path = None

    def on_train_begin(self, logs=None):
        best, mode = self._monitor.best, self._monitor.mode
        self._monitor.reset(self.trainer)
        if self._monitor.mode == mode:
            self._monitor.best = best  # the best file so far stays the one to beat

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only and not self._monitor.improved(self._monitor.value(logs)):
            return
        try:
            path = self.path.format(epoch=epoch + 1, **(logs or {}))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: path {self.path!r} names {exc} which the logs do not have; "
                             f"use {{epoch}} or keys of {', '.join(logs or {})}.") from None
        if self.full:
            self.trainer.save_checkpoint(path)
        else:
            self.trainer.model.save(path)
        self.last_path = path
        if self.verbose:
            print(f"epoch {epoch + 1}: ModelCheckpoint saved {path}")


class CSVLogger(Callback):
    """After every epoch, write ``trainer.history`` to ``path`` as CSV (History.to_csv: column
    'epoch', counted from 0, then every logged key; one row per epoch this Trainer has trained,
    across fit calls and resumed checkpoints), atomically: the file is always complete."""

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise TypeError(f"CSVLogger: path must be a file path; got {path!r}.")
        self.path = os.fspath(path)

    def on_epoch_end(self, epoch, logs=None):
        self.trainer.history.to_csv(self.path)


def _predicts_finite(model, X, chunk=4096):
    """True when the model's evaluation-mode output on the backend array X is all finite."""
    backend = model.backend
    with np.errstate(all="ignore"):
        for start in range(0, X.shape[0], chunk):
            out = model.forward(X[start:start + chunk], training=False)
            if not np.isfinite(backend.to_numpy(out)).all():
                return False
    return True


class TerminateOnNaN(Callback):
    """Stop training that diverges, leave weights that predict finite values, and raise
    ``fastnn.TrainingDiverged`` naming the epoch and batch.

    It stops at the first non-finite loss, at non-finite parameters at an epoch's end, and at a
    divergence whose loss stays finite: an epoch's training loss above ``max_loss_ratio`` times
    the loss of the initial weights (measured by the Trainer in evaluation mode on the first 256
    training rows, before its first update on those data) for ``patience`` epochs in a row. The
    reference and the count are kept on the Trainer, so they carry over fit calls on the same
    data (the estimators train one epoch per call); data whose first rows differ (a checksum)
    get a new reference. The test costs that one small forward pass and a comparison per
    epoch; it is skipped when the initial loss is 0.

    Parameters
    ----------
    max_loss_ratio : float or None, default 1e4, > 1
        None switches the finite-loss test off. A healthy run does not end epoch after epoch
        ten thousand times worse than its untrained start; runs at lr=1e3 do (losses of 1e8
        to 1e116 with weights of 1e58 were seen, finishing without a word before).
    patience : int, default 2, >= 1
        Consecutive epochs above the ratio before stopping.

    fit always runs one (this one when passed in ``callbacks``). The Trainer checks the loss of
    every batch before its update and calls ``diverged``. The weights left are the first of
    these that predict finite values on the training data (checked only when stopping): those
    before the failing batch's update (not for a finite-loss divergence); those at the end of
    the last epoch whose parameters were finite and whose loss was within the ratio; those at
    the start of fit. A finite-loss divergence never keeps the current weights.

    >>> import fastnn as fnn
    >>> X, y = fnn.datasets.load_iris()
    >>> model = fnn.Sequential([fnn.layers.Dense(3)], seed=0)
    >>> guard = fnn.callbacks.TerminateOnNaN(max_loss_ratio=1e3, patience=3)
    >>> _ = fnn.Trainer(model, "cross_entropy", "adam", seed=0).fit(X, y, epochs=2, callbacks=[guard], verbose=0)
    """

    wants_batches = False

    def __init__(self, max_loss_ratio=1e4, patience=2):
        owner = "TerminateOnNaN"
        self.max_loss_ratio = None if max_loss_ratio is None else check_float(
            owner, "max_loss_ratio", max_loss_ratio, low=1.0, low_open=True)
        self.patience = check_int(owner, "patience", patience, low=1)
        self._snapshot = self._initial = self._data = None

    def on_train_begin(self, logs=None):
        self._snapshot = None
        self._keep_if_finite()
        model = self.trainer.model
        self._initial = model.backend.empty(model.params.shape, model.params.dtype)
        model.backend.copy(model.params, self._initial)
        self._data = getattr(self.trainer, "_fit_data", None)

    def on_train_end(self, logs=None):
        self._snapshot = self._initial = self._data = None

    def _params_finite(self):
        """True when every parameter is finite: the compiled sum of squares first, NumPy only
        to confirm an overflow."""
        model = self.trainer.model
        backend, params = model.backend, model.params
        return math.isfinite(backend.sum_squares(params)) or bool(np.isfinite(backend.to_numpy(params)).all())

    def _keep_if_finite(self):
        """Copy the parameters into the snapshot when they are all finite; False otherwise.
        The snapshot is an array of the model's backend (on a GPU it never leaves the device)."""
        if not self._params_finite():
            return False
        model = self.trainer.model
        backend, params = model.backend, model.params
        snap = self._snapshot
        if snap is None or snap.shape != params.shape or snap.dtype != params.dtype or \
                type(snap) is not type(params):
            self._snapshot = snap = backend.empty(params.shape, params.dtype)
        backend.copy(params, snap)
        return True

    def first_loss(self, value, key=None):
        """The Trainer hands the loss of the weights before training on a data set (the divergence
        test's reference) and the data's fingerprint ``key``: new data, a new reference."""
        self.trainer._divergence = {"start": value if math.isfinite(value) else None, "strikes": 0, "key": key}

    def _state(self):
        state = getattr(self.trainer, "_divergence", None)
        if state is None:
            state = self.trainer._divergence = {"start": None, "strikes": 0, "key": None}
        return state

    def on_epoch_end(self, epoch, logs=None):
        if not self._params_finite():
            self.diverged(epoch, None, "the parameters became non-finite")
        loss = (logs or {}).get("loss", math.nan)
        start = self._state()["start"] if self.max_loss_ratio is not None else None
        if start is None or start <= 0 or not math.isfinite(loss) or loss <= self.max_loss_ratio * start:
            if start is not None:
                self._state()["strikes"] = 0
            self._keep_if_finite()  # a sound epoch: its weights are the ones to fall back on
            return
        state = self._state()
        state["strikes"] += 1
        if state["strikes"] >= self.patience:
            self.diverged(epoch, None, f"the loss ran away ({loss:.4g}, over {self.max_loss_ratio:.4g} times the "
                                       f"{start:.4g} of the initial weights, for {self.patience} epochs)",
                          where="found at the epoch's end", keep_current=False)

    def diverged(self, epoch, batch, what, where=None, keep_current=True):
        """Leave weights that predict finite values and raise TrainingDiverged. ``what`` says
        what went wrong ('loss became nan'); ``batch`` None: found at the epoch's end (``where``
        says how); ``keep_current`` False: the current weights are not a candidate."""
        model = self.trainer.model
        backend = model.backend
        data = self._data
        candidates = [("current", "the weights are those before that batch's update")] if keep_current else []
        candidates += [(self._snapshot, "the weights were restored to the last finite ones (the end of an earlier "
                                        "epoch or the start of fit)"),
                       (self._initial, "the weights were restored to those at the start of fit")]
        kept = "no weights known predict finite values on the training data (not even those at the start of fit)"
        for snap, text in candidates:
            if snap is None:
                continue
            if not isinstance(snap, str):  # "current": the weights as they are
                backend.copy(snap, model.params)
            if np.isfinite(backend.to_numpy(model.params)).all() and (data is None or _predicts_finite(model, data)):
                kept = text
                break
        if where is None:
            where = f"batch {batch + 1}" if batch is not None else "an update of that epoch (the loss stayed finite)"
        self.trainer.stop_training = True
        self._data = self.trainer._fit_data = None  # fit ends here: hold no reference to its data
        raise TrainingDiverged(f"{what} at epoch {epoch + 1}, {where}; {kept}; lower lr, clip gradients "
                               f"(clip_norm=) or scale the inputs.")


def format_epoch(epoch, total, logs):
    """The one-line summary of an epoch: 'epoch 3 - loss 0.1234 - accuracy 0.9500 - lr 0.001 - 12.3ms'."""
    parts = [f"epoch {epoch + 1:>{len(str(total))}}"]
    for k, v in logs.items():
        if k not in ("lr", "grad_norm", "epoch_time"):
            parts.append(f"{k} {v:.4f}")
    if "lr" in logs:
        parts.append(f"lr {logs['lr']:.3g}")
    if "epoch_time" in logs:
        t = logs["epoch_time"]
        parts.append(f"{t:.2f}s" if t >= 1 else f"{t * 1e3:.1f}ms")
    return " - ".join(parts)


def _duration(seconds):
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class ProgressBar(Callback):
    """Progress of fit: on a terminal, a bar within each epoch (batches done, samples/s, ETA)
    redrawn at most every ``interval`` seconds, then one summary line per epoch; elsewhere
    (a file, a pipe, a notebook's captured output) only the summary lines.

    fit adds one with ``verbose=1`` (``verbose=2``: summary lines only). No dependency: it
    writes plain text with carriage returns.

    Parameters
    ----------
    stream : file, optional
        Where to write (default sys.stdout at the start of fit).
    interval : float, default 0.1, > 0
        Least seconds between two redraws of the bar.
    bar : bool, optional
        Draw the bar: default True when ``stream`` is a terminal.
    """

    def __init__(self, stream=None, interval=0.1, bar=None):
        self.stream = stream
        self.interval = check_float("ProgressBar", "interval", interval, low=0.0, low_open=True)
        if bar is not None and not isinstance(bar, (bool, np.bool_)):
            raise TypeError(f"ProgressBar: bar must be True, False or None; got {bar!r}.")
        self.bar = bar

    def on_train_begin(self, logs=None):
        logs = logs or {}
        self._out = self.stream if self.stream is not None else sys.stdout
        isatty = getattr(self._out, "isatty", None)
        self.wants_batches = bool(self.bar) if self.bar is not None else bool(isatty and isatty())
        self._total = logs.get("initial_epoch", 0) + logs.get("epochs", 0)
        self._batches = max(int(logs.get("batches", 1)), 1)
        self._drawn = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._t0 = time.perf_counter()
        self._next = self._t0 + self.interval

    def on_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval
        done = batch + 1
        elapsed = now - self._t0
        rate = logs["seen"] / elapsed if elapsed > 0 else 0.0
        eta = elapsed * (self._batches - done) / done
        width = 24
        fill = int(width * done / self._batches)
        line = (f"epoch {self._epoch + 1}/{self._total} [{'=' * fill}{'>' if fill < width else ''}"
                f"{'.' * (width - fill - 1)}] {done}/{self._batches} - loss {logs['loss']:.4f} - "
                f"{rate:,.0f} samples/s - ETA {_duration(eta)}")
        self._out.write("\r" + line.ljust(self._drawn))
        self._out.flush()
        self._drawn = len(line)

    def on_epoch_end(self, epoch, logs=None):
        line = format_epoch(epoch, self._total, logs or {})
        if self._drawn:
            line, self._drawn = "\r" + line.ljust(self._drawn), 0
        self._out.write(line + "\n")
        self._out.flush()


__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LambdaCallback", "ModelCheckpoint", "ProgressBar",
           "ReduceLROnPlateau", "TerminateOnNaN", "format_epoch"]
