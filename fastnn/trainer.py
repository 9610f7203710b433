"""The minibatch Trainer: full-batch, minibatch and stochastic gradient descent.

One training step is: gather the minibatch into a reused buffer, the augmentations (if any),
forward through the layers' workspaces, the fused loss kernel (loss and gradient in one pass),
backward into the flat gradient buffer, penalties and clipping on that buffer, and one fused
optimizer update. Every buffer is allocated before the first step, so the steady state
allocates nothing.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

from ._checks import as_float_array, check_float, check_int, check_same_length, check_seed
from ._random import stream_key
from .augment import as_augmentations
from .callbacks import Callback, History, ProgressBar, TerminateOnNaN
from .checkpoint import CHECKPOINT_ERRORS, checkpoint_error, read_checkpoint, save_checkpoint
from .distributed import as_distributed
from .errors import ModelFormatError
from .losses import get_loss
from .metrics import get_metric
from .model import Sequential, check_precision
from .optim import SGD, get_optimizer
from .preprocessing import adapt_unfitted


class _Buffers:
    """Host-side minibatch buffers (x, y, weight, loss gradient) with row views cached per n."""

    def __init__(self, backend, capacity, shapes):
        self.full = {k: backend.empty((capacity, *shape), dtype) for k, (shape, dtype) in shapes.items()}
        self._views = {}

    def get(self, n):
        views = self._views.get(n)
        if views is None:
            views = self._views[n] = {k: v[:n] for k, v in self.full.items()}
        return views


def _hooks(callbacks, name):
    """The bound ``name`` hooks of the callbacks that define it (not Callback's no-op) and want
    batch events: the per-batch loop calls only these."""
    base = getattr(Callback, name)
    return [getattr(cb, name) for cb in callbacks
            if cb.wants_batches and getattr(getattr(cb, name), "__func__", None) is not base]


class _DeferredInterrupt:
    """While fit runs in the main thread with Python's default SIGINT handler, a first Ctrl-C
    sets ``caught`` and ``trainer.stop_training`` (fit stops after the current batch) and puts
    the default handler back, so a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self, trainer):
        self.trainer, self.caught, self._installed = trainer, False, False

    def _handler(self, signum, frame):
        self.caught = True
        self.trainer.stop_training = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc):
        if self._installed and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return False


class _EpochOutputs:
    """A device-resident Trainer's per-batch outputs, targets and weights, copied into epoch-long
    device buffers (rows in batch order) and handed to the metrics in one download per epoch."""

    def __init__(self, backend, n):
        self.backend, self.n, self.buffers = backend, n, None

    def add(self, start, out, y, w):
        arrays = (out, y) if w is None else (out, y, w)
        if self.buffers is None:
            self.buffers = [self.backend.empty((self.n, *a.shape[1:]), a.dtype) for a in arrays]
        for a, buf in zip(arrays, self.buffers):
            self.backend.copy(a, buf[start:start + a.shape[0]])

    def update(self, metrics, logits, rows):
        """Hand the first ``rows`` rows (the batches done this epoch) to the metrics."""
        host = [self.backend.to_numpy(b[:rows]) for b in self.buffers]
        for m in metrics:
            m.update(host[0], host[1], host[2] if len(host) == 3 else None, logits=logits)


def _check_count(owner, name, value, high=2**64 - 1):
    """A step or epoch count of a state dict: an int in [0, high] (bools refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise ValueError(f"{owner}: {name} must be an integer in [0, {high}]; got {value!r}")
    return value


def _layer_index(owner, key, n_layers):
    """A layer index a state dict gives as a string key: "0" ... str(n_layers - 1)."""
    if not isinstance(key, str) or not key.isdigit() or int(key) >= n_layers:
        raise ValueError(f"{owner}: layer key {key!r} is not a layer of the model (0..{n_layers - 1})")
    return int(key)


@dataclass(slots=True)
class _FitRun:
    """What one fit call fixes before its first batch (set by Trainer._begin_fit), and its
    running totals: the training data where the backend keeps them, the batch layout and
    buffers, the switches and hooks the batch loop reads."""

    model: Sequential
    backend: object
    Xd: object  # the training arrays, on the model's device
    yd: object
    wd: object  # per-sample weights, or None
    val: tuple | None  # validated (X, y, w) evaluated after each epoch
    n: int  # rows per epoch (this rank's)
    bs: int  # rows per batch (the last batch takes the rest)
    n_batches: int
    bounds: list  # (start, stop) rows of each batch (this rank's)
    dist: object  # the distributed session, or None
    buffers: _Buffers  # gather targets and the loss gradient, row views per batch size
    augment: list  # [(augmentation, its _Buffers)]
    loss_acc: object  # the epoch's float64 loss sum, where the data are
    weight_params: list  # (param, grad) views the penalties apply to
    penalize: bool
    fused: bool  # the loss applies the final activation
    count: object  # the loss's count(n_samples, n_out)
    nan_guard: TerminateOnNaN
    on_device: bool  # the backend keeps arrays on a device: loss read once per epoch
    seen: _EpochOutputs | None  # a device's per-batch outputs, for the metrics
    callbacks: list
    batch_begin: list  # bound on_batch_begin hooks of the callbacks that define one
    batch_end: list
    initial_epoch: int
    sigint: _DeferredInterrupt | None = None
    samples: int = 0  # training rows processed
    interrupted: tuple | None = None  # (epoch, batch or None) where Ctrl-C stopped fit


@dataclass(slots=True)
class _EpochState:
    """The epoch being trained: its number, start time, learning rate, row order (None: in
    order), the batch being trained and the end of its rows."""

    number: int
    t0: float
    lr: float = math.nan
    order: object = None
    batch: int = 0
    stop: int = 0


class Trainer:
    """Minibatch gradient-descent training of a Sequential model.

    Parameters
    ----------
    model : Sequential
    loss : str or Loss
        'mse', 'mae', 'huber', 'binary_cross_entropy' or 'cross_entropy' (or an instance).
        A final softmax (sigmoid) layer with cross_entropy (binary_cross_entropy) is trained
        through the fused logits path.
    optimizer : Optimizer or str, default SGD(lr=0.01)
        An instance, or a name in fastnn.optim.OPTIMIZERS ('adam', 'momentum', ...) with its defaults.
    batch_size : int or None, default 32
        None: full-batch gradient descent; 1: pure stochastic gradient descent. With a
        trainable BatchNorm, which needs 2 rows per batch, a last partial batch of one row is
        merged into the previous batch.
    metrics : sequence of str or Metric, default ()
        Any of 'accuracy', 'top_k_accuracy', 'precision', 'recall', 'f1', 'mse', 'mae', 'r2',
        or fastnn.metrics instances (TopKAccuracy(k=3), F1(average="micro"), ...).
    l1, l2 : float, default 0
        Penalty l1 * sum|w| + l2 * sum w^2 over the weights of trainable layers (not biases),
        added to the loss and its gradient.
    clip_norm : float, optional
        Rescale the gradient so that its global norm is at most this (PyTorch's clip_grad_norm_).
    clip_value : float, optional
        Clip each gradient element to [-clip_value, clip_value].
    shuffle : bool, default True
        Reshuffle the training set every epoch.
    seed : int, optional
        Seed of the Trainer's randomness: the shuffling and the augmentations.
    augment : Augmentation or list of them, optional
        fastnn.augment transforms (GaussianNoise, Mixup) applied, in order, to every training
        batch; never in evaluation.
    distributed : None, 'mpi' or fastnn.distributed.MPI, default None
        'mpi': data-parallel training over the ranks of ``mpiexec -n K``; ``batch_size`` is per
        rank (see fastnn.distributed and docs/distributed.md).
    precision : {'fp32', 'bf16'}, default 'fp32'
        The Dense layers' products in training. 'fp32': the model's own dtype. 'bf16' (mixed
        precision; a float32 model on the cpu, reference or cuda device): the forward product
        and both backward products take their operands rounded to bfloat16 (round to nearest
        even) and sum in float32, on this CPU's AMX or AVX512-BF16 units where it has them
        (``fnn.info()['bf16']``); the weights, gradients, optimizer state, the loss, BatchNorm and
        every update stay float32, and so do evaluation, predict and saved models.

    >>> import fastnn as fnn
    >>> X, y = fnn.datasets.load_iris()
    >>> X = fnn.data.Standardizer().fit_transform(X)
    >>> model = fnn.Sequential([fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(3)], seed=0)
    >>> trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(0.1, momentum=0.9), seed=0)
    >>> history = trainer.fit(X, y, epochs=30, verbose=0)
    >>> trainer.evaluate(X, y)["loss"] < 0.3
    True
    """

    def __init__(self, model, loss, optimizer=None, batch_size=32, metrics=(), l1=0.0, l2=0.0,
                 clip_norm=None, clip_value=None, shuffle=True, seed=None, augment=None, distributed=None,
                 precision="fp32"):
        if not isinstance(model, Sequential):
            raise TypeError(f"Trainer: model must be a fastnn.Sequential; got {type(model).__name__}.")
        self.model = model
        self.precision = check_precision("Trainer", precision, model)
        self.loss = get_loss(loss, "Trainer")
        self.optimizer = SGD(lr=0.01) if optimizer is None else get_optimizer(optimizer, owner="Trainer")
        self.batch_size = None if batch_size is None else check_int("Trainer", "batch_size", batch_size, low=1)
        if isinstance(metrics, str):
            metrics = (metrics,)
        self.metrics = [get_metric(m, "Trainer") for m in metrics]
        self.l1 = check_float("Trainer", "l1", l1, low=0.0)
        self.l2 = check_float("Trainer", "l2", l2, low=0.0)
        self.clip_norm = None if clip_norm is None else check_float("Trainer", "clip_norm", clip_norm,
                                                                    low=0.0, low_open=True)
        self.clip_value = None if clip_value is None else check_float("Trainer", "clip_value", clip_value,
                                                                      low=0.0, low_open=True)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"Trainer: shuffle must be True or False; got {shuffle!r}.")
        self.shuffle = bool(shuffle)
        self.seed = check_seed("Trainer", seed)
        self.rng = np.random.default_rng(self.seed)
        self.augment = as_augmentations(augment, "Trainer")
        entropy = self.rng.bit_generator.seed_seq.entropy
        self._augment_keys = [stream_key(entropy, i) for i in range(len(self.augment))]
        self.history = History()
        self.epoch = 0
        self.stop_training = False
        #: wall times of the last fit, evaluate and predict calls (see fit)
        self.timing = {}
        self._buffers = None
        self._augment_buffers = []
        self._buffer_key = None
        self._loss_acc = None
        self._fit_data = None
        #: TerminateOnNaN's finite-divergence state ({'start', 'best', 'strikes'}), kept across fit calls
        self._divergence = None
        #: None, or fastnn.distributed.MPI: data-parallel training over MPI (see fastnn.distributed)
        self.distributed = as_distributed(distributed)
        self._dist = None  # the distributed session of the fit in progress

    # ---------------------------------------------------------------- helpers
    @property
    def _fused(self):
        """True when the model's final activation is computed inside the loss kernel."""
        return self.loss.fuses is not None and self.model.output_activation == self.loss.fuses

    def _prepare(self, owner, X, y, sample_weight=None, class_weight=None):
        """Validate X, y and weights against the model (building it if needed)."""
        model = self.model
        if not model.layers:
            raise ValueError(f"{owner}: the model has no layers; add one with model.add(...).")
        X = as_float_array(owner, "X", X, model.dtype)
        model.ensure_built(X.shape[1], owner)
        y = self.loss.prepare_target(y, model.n_out, model.dtype, owner)
        check_same_length(owner, X=X, y=y)
        weight = self._sample_weights(owner, y, sample_weight, class_weight)
        return X, y, weight

    def _sample_weights(self, owner, y, sample_weight, class_weight):
        """Per-sample weights (model dtype) from sample_weight x class_weight, or None."""
        w = None
        if sample_weight is not None:
            w = as_float_array(owner, "sample_weight", sample_weight, np.float64, ndim=1)
            check_same_length(owner, y=y, sample_weight=w)
            if w.min() < 0:
                raise ValueError(f"{owner}: sample_weight must be >= 0; got {float(w.min())!r}.")
        if class_weight is not None:
            labels = self._class_labels(owner, y)
            n_classes = max(int(labels.max()) + 1, self.model.n_out)
            if isinstance(class_weight, str):
                if class_weight != "balanced":
                    raise ValueError(f"{owner}: class_weight must be a dict or 'balanced'; got {class_weight!r}.")
                counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
                table = np.where(counts > 0, len(labels) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
            elif isinstance(class_weight, dict):
                table = np.ones(n_classes)
                for cls, value in class_weight.items():
                    cls = check_int(owner, "a class_weight key", cls, low=0, high=n_classes - 1)
                    table[cls] = check_float(owner, f"class_weight[{cls}]", value, low=0.0)
            else:
                raise TypeError(f"{owner}: class_weight must be a dict or 'balanced'; got {class_weight!r}.")
            cw = table[labels]
            w = cw if w is None else w * cw
        # in the model's dtype, refusing weights beyond its range rather than turning them into inf
        return None if w is None else as_float_array(owner, "sample_weight", w, self.model.dtype, ndim=1)

    def _class_labels(self, owner, y):
        if y.ndim == 1:
            return y
        if y.shape[1] == 1:
            return (y[:, 0] > 0.5).astype(np.int64)
        if self.loss.fuses == "softmax":  # one class per row: one-hot or soft targets
            return y.argmax(axis=1)
        raise ValueError(f"{owner}: class_weight needs class labels; use it with cross_entropy or a single "
                         f"binary output.")

    def _split_validation(self, owner, X, y, w, validation, validation_split):
        validation_split = check_float(owner, "validation_split", validation_split, low=0.0, high=1.0,
                                       high_open=True)
        if validation is not None and validation_split:
            raise ValueError(f"{owner}: give validation or validation_split, not both.")
        if validation_split:
            n_val = int(round(len(X) * validation_split))
            if n_val < 1 or n_val >= len(X):
                raise ValueError(f"{owner}: validation_split={validation_split!r} leaves {n_val} of {len(X)} samples "
                                 f"for validation; it must leave at least one sample on each side.")
            # the last samples, before any shuffling, as Keras does
            val = (X[-n_val:], y[-n_val:], None if w is None else w[-n_val:])
            return X[:-n_val], y[:-n_val], None if w is None else w[:-n_val], val
        if validation is None:
            return X, y, w, None
        if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
            raise TypeError(f"{owner}: validation must be a tuple (X_val, y_val) or (X_val, y_val, sample_weight).")
        Xv, yv, wv = self._prepare(owner + " (validation)", validation[0], validation[1],
                                   validation[2] if len(validation) == 3 else None)
        return X, y, w, (Xv, yv, wv)

    # ---------------------------------------------------------------- training
    def fit(self, X, y, epochs=1, validation=None, validation_split=0.0, callbacks=(), sample_weight=None,
            class_weight=None, verbose=1):
        """Train for ``epochs`` more epochs; returns the History (cumulative over fit calls).

        X : (n_samples, n_features) numbers; y : targets as the loss expects them.
        validation : (X_val, y_val[, w_val]) evaluated after every epoch, or
        validation_split : fraction of the last samples held out for validation.
        callbacks : fastnn.callbacks.Callback instances (see that module for the hooks).
        sample_weight : (n_samples,) >= 0; class_weight : {class: weight} or 'balanced'.
        verbose : 0 silent; 1 a ProgressBar (a bar within each epoch on a terminal, and one line
        per epoch); 2 one line per epoch only.

        A non-finite loss, or a finite one that runs away (10^4 times the initial loss for two
        epochs by default), stops training with TrainingDiverged and weights that predict finite
        values (fastnn.callbacks.TerminateOnNaN; pass one to configure it).
        Ctrl-C (KeyboardInterrupt) ends fit after the batch being trained: the model holds the
        weights after that batch, the unfinished epoch is not recorded (nor counted), a line is
        printed and the History so far is returned.
        ``trainer.timing['fit']`` records {'seconds': wall time of the call (validation
        included), 'samples': training rows processed, 'samples_per_s', 'epochs'}.

        The steps, each a method: ``_begin_fit`` (buffers, callbacks, the divergence
        reference), per epoch ``_begin_epoch`` (order, accumulators), ``_train_batch`` per batch
        (gather, augmentations, forward, loss, backward, penalties, clipping, the optimizer's
        update) and ``_end_epoch`` (the epoch's logs, validation, the callbacks), then
        ``_end_fit``; the epoch's state is an _EpochState, the call's a _FitRun.
        """
        owner = "Trainer.fit"
        if self.distributed is not None and self._dist is None:  # under fastnn.distributed's failure guard
            from .distributed import fit_distributed

            return fit_distributed(self, self.fit, X, y, epochs=epochs, validation=validation,
                                   validation_split=validation_split, callbacks=callbacks,
                                   sample_weight=sample_weight, class_weight=class_weight, verbose=verbose)
        t_start = time.perf_counter()
        epochs = check_int(owner, "epochs", epochs, low=0)
        verbose = check_int(owner, "verbose", int(verbose) if isinstance(verbose, (bool, np.bool_)) else verbose,
                            low=0, high=2)
        X, y, w = self._prepare(owner, X, y, sample_weight, class_weight)
        X, y, w, val = self._split_validation(owner, X, y, w, validation, validation_split)
        adapt_unfitted(self.model, X)  # Standardize/MinMaxScale never adapted: training rows only
        callbacks = self._callbacks(owner, callbacks, verbose)
        check_precision(owner, self.precision, self.model)  # the model's dtype may have changed since
        run = self._begin_fit(X, y, w, val, callbacks, epochs)
        # the epochs (validation and callbacks included: a NumPy product between epochs would wake
        # OpenBLAS's own workers, which then spin through the next epoch) in the backend's solo span
        with _DeferredInterrupt(self) as run.sigint, self.model.training_precision(self.precision), \
                run.backend.solo_span(self.model.n_params):
            try:
                for _ in range(epochs):
                    epoch = self._begin_epoch(run)
                    for batch in range(run.n_batches):
                        self._train_batch(run, epoch, batch)
                        if self.stop_training:
                            break
                    if run.sigint.caught and epoch.stop < run.n:  # Ctrl-C: the unfinished epoch is not recorded
                        run.interrupted = (epoch.number, epoch.batch)
                        break
                    self._end_epoch(run, epoch)
                    if self.stop_training:
                        break
            except KeyboardInterrupt:  # raised by a callback between batches, or a second Ctrl-C
                if run.dist is not None:  # the other ranks cannot stop here: fastnn.distributed ends them all
                    raise
                run.interrupted = (self.epoch, None)
            if run.sigint.caught and run.interrupted is None:  # during an epoch's end: that epoch is recorded
                run.interrupted = (self.epoch, None)
        return self._end_fit(run, t_start)

    def _begin_fit(self, X, y, w, val, callbacks, epochs):
        """Everything fixed for the whole fit call, as a _FitRun: the optimizer bound, the data
        where the backend keeps them, the batch layout and buffers, the divergence reference;
        then the callbacks' on_train_begin."""
        model, backend = self.model, self.model.backend
        self.optimizer.bind(model)
        backend.fill(model.grads, 0.0)  # frozen layers keep zero gradients
        n = len(X)
        dist = self._dist
        if dist is not None:  # rank 0's state everywhere; n: this rank's rows per epoch
            callbacks = dist.begin(self, X, y, w, callbacks)
            n = dist.rows
        bs = n if self.batch_size is None else min(self.batch_size, n)
        n_batches = self._n_batches(n, bs) if dist is None else dist.n_batches
        buffers, augment = self._get_buffers(max(bs, n - (n_batches - 1) * bs) if dist is None else dist.capacity,
                                             X, y, w)
        nan_guard = next(cb for cb in callbacks if isinstance(cb, TerminateOnNaN))
        on_device = backend.device_resident  # read the loss once per epoch, gather metrics there
        run = _FitRun(
            model=model, backend=backend, Xd=backend.asarray(X), yd=backend.asarray(y),
            wd=None if w is None else backend.asarray(w), val=val, n=n, bs=bs, n_batches=n_batches,
            bounds=[(b * bs, n if b == n_batches - 1 else (b + 1) * bs) for b in range(n_batches)] if dist is None
            else list(dist.local), dist=dist,
            buffers=buffers, augment=augment, loss_acc=self._loss_acc, weight_params=self._penalized(),
            penalize=self.l1 > 0 or self.l2 > 0, fused=self._fused, count=self.loss.count, nan_guard=nan_guard,
            on_device=on_device, seen=_EpochOutputs(backend, n) if on_device and self.metrics else None,
            callbacks=callbacks, batch_begin=_hooks(callbacks, "on_batch_begin"),
            batch_end=_hooks(callbacks, "on_batch_end"), initial_epoch=self.epoch)
        self.stop_training = False
        self._fit_data = run.Xd  # TerminateOnNaN checks that the weights it leaves predict finite values on it
        if nan_guard.max_loss_ratio is not None:
            # the divergence test's reference: the loss of the weights before training on these
            # data (their first rows, fingerprinted), measured once and kept over fit calls
            rows = min(len(X), 256)
            key = (X.shape[1], float(X[:rows].sum(dtype=np.float64)), float(y[:rows].sum(dtype=np.float64)))
            if self._divergence is None or self._divergence["key"] != key:
                nan_guard.first_loss(self._evaluate_arrays(X[:rows], y[:rows], None if w is None else w[:rows],
                                                           metrics=False)["loss"], key)
        for cb in callbacks:
            cb.on_train_begin({"epochs": epochs, "initial_epoch": run.initial_epoch, "batches": n_batches,
                               "samples": n})
        return run

    def _begin_epoch(self, run):
        """Start epoch ``self.epoch``: the callbacks' on_epoch_begin, its learning rate and row
        order, zeroed accumulators and metrics; returns its _EpochState."""
        epoch = _EpochState(self.epoch, time.perf_counter())
        self.optimizer.epoch = epoch.number  # schedules with per="epoch" count epochs
        for cb in run.callbacks:
            cb.on_epoch_begin(epoch.number)
        epoch.lr = self.optimizer.current_lr()
        if run.dist is None:
            order = self.rng.permutation(run.n) if self.shuffle and run.n_batches > 1 else None
        else:
            order = run.dist.epoch_order(self)
        backend = run.backend
        epoch.order = None if order is None else backend.asarray(order)  # one upload per epoch on a device
        backend.fill(run.loss_acc, 0.0)
        backend.fill(self._norm, math.nan)  # nan unless a norm is measured this epoch
        if run.penalize:
            backend.fill(self._penalty_acc, 0.0)
        for m in self.metrics:
            m.reset()
        return epoch

    def _train_batch(self, run, epoch, batch):
        """One training step on batch ``batch`` of the epoch: gather, augment, forward, the fused
        loss (and its gradient), backward, penalties, clipping, the optimizer's update; the batch
        hooks around it. One method, the steps in sections: each helper call cost ~0.3 us a
        step (tiny: 16.3 us per step inlined against 17.1 with _gather and _apply_gradients)."""
        model, backend, dist = run.model, run.backend, run.dist
        start, stop = run.bounds[batch]
        epoch.batch, epoch.stop = batch, stop
        rows = stop - start
        views = run.buffers.get(rows)
        order = epoch.order
        if order is None:  # gather: contiguous rows are views, no copy
            xb, yb = run.Xd[start:stop], run.yd[start:stop]
            wb = None if run.wd is None else run.wd[start:stop]
        else:
            idx = order[start:stop]
            xb = backend.take_rows(run.Xd, idx, out=views["x"])
            yb = backend.take_rows(run.yd, idx, out=views["y"])
            wb = None if run.wd is None else backend.take_rows(run.wd, idx, out=views["w"])
        for aug, aug_buffers in run.augment:  # augment, in order
            xb, yb, wb = aug.apply(backend, self.rng, aug_buffers.get(rows), xb, yb, wb)
        for hook in run.batch_begin:
            hook(batch)
        grad = views["grad"]  # forward, the loss and its gradient, backward
        out = model.forward(xb, training=True, logits=run.fused)
        scale_rows = rows if dist is None else dist.global_rows[batch]  # row-weighted
        loss_acc = run.loss_acc
        self.loss(backend, out, yb, weight=wb, scale=1.0 / run.count(scale_rows, model.n_out), loss_out=loss_acc,
                  grad=grad)
        if not run.on_device and not math.isfinite(loss_acc[0]):
            run.nan_guard.diverged(epoch.number, batch, f"loss became {loss_acc[0]}")
        if run.seen is not None:
            run.seen.add(start, out, yb, wb)
        else:
            for m in self.metrics:
                m.update(backend.to_numpy(out), backend.to_numpy(yb), None if wb is None else backend.to_numpy(wb),
                         logits=run.fused)
        model.backward(grad)
        if dist is not None:  # the global batch's gradient on every rank
            dist.allreduce_grads(model.grads)
        # penalties, clipping (and the epoch's gradient norm, on its last batch), the update
        if run.penalize:  # summed where the data are (on a device: read with the loss)
            for p, g in run.weight_params:
                backend.penalty_into(p, g, l1=self.l1, l2=self.l2, scale=rows, loss_out=self._penalty_acc)
        if self.clip_value is not None:
            backend.clip_(model.grads, self.clip_value)
        if self.clip_norm is not None or stop == run.n:  # on a device, the norm stays there
            backend.clip_grad_norm_(model.grads, self.clip_norm, norm_out=self._norm)
        self.optimizer.step()
        run.samples += rows
        if run.batch_end:
            batch_logs = {"size": rows, "seen": stop, "loss": self._epoch_loss(stop, run.penalize)}
            for hook in run.batch_end:
                hook(batch, batch_logs)
        if dist is not None:  # every rank stops at the same batch
            dist.agree(self, run.sigint)

    def _end_epoch(self, run, epoch):
        """The epoch's logs (loss, metrics, validation, lr, grad_norm, epoch_time), the epoch
        counted, then the callbacks' on_epoch_end."""
        backend, dist = run.backend, run.dist
        seen_rows = epoch.stop if dist is None else dist.end_epoch(self, run.penalize)  # summed over ranks
        logs = {"loss": self._epoch_loss(seen_rows, run.penalize)}
        if run.on_device and not math.isfinite(logs["loss"]):  # a device's loss is read once per epoch
            run.nan_guard.diverged(epoch.number, None, f"the loss became {logs['loss']}",
                                   where="found at the epoch's end: the device reads its loss once per epoch")
        if run.seen is not None:
            run.seen.update(self.metrics, run.fused, epoch.stop)
        for m in self.metrics:
            logs[m.name] = m.result()
        if run.val is not None:
            val = self._evaluate_arrays(*run.val) if dist is None else dist.evaluate(self, run.val)
            for k, v in val.items():
                logs[f"val_{k}"] = v
        logs["lr"] = epoch.lr
        logs["grad_norm"] = float(backend.to_numpy(self._norm)[0])
        logs["epoch_time"] = time.perf_counter() - epoch.t0
        self.epoch += 1
        for cb in run.callbacks:
            cb.on_epoch_end(epoch.number, logs)

    def _end_fit(self, run, t_start):
        """Timing, the interruption notice and the callbacks' on_train_end; returns the History."""
        self._fit_data = None
        self._record_time("fit", t_start, run.samples)
        self.timing["fit"]["epochs"] = self.epoch - run.initial_epoch
        if run.interrupted is not None:
            epoch, batch = run.interrupted
            at = f"in epoch {epoch + 1} after batch {batch + 1}" if batch is not None else f"after epoch {epoch}"
            print(f"Trainer.fit: interrupted {at}; the model holds the weights of the last completed batch "
                  f"and the History its {len(self.history.epoch)} completed epochs.", flush=True)
        for cb in run.callbacks:
            cb.on_train_end({"interrupted": run.interrupted is not None})
        return self.history

    def _callbacks(self, owner, callbacks, verbose):
        """fit's callbacks: the History first, a TerminateOnNaN, the user's, then a ProgressBar
        (with verbose), each bound to this Trainer."""
        callbacks = list(callbacks) if callbacks else []
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"{owner}: callbacks must be fastnn.callbacks.Callback instances; got {cb!r}.")
        if any(isinstance(cb, History) and cb is not self.history for cb in callbacks):
            raise ValueError(f"{owner}: fit records into trainer.history; do not pass another History.")
        callbacks = [self.history] + [cb for cb in callbacks if cb is not self.history]
        if not any(isinstance(cb, TerminateOnNaN) for cb in callbacks):
            callbacks.insert(1, TerminateOnNaN())
        if verbose and not any(isinstance(cb, ProgressBar) for cb in callbacks):
            callbacks.append(ProgressBar(bar=None if verbose == 1 else False))
        for cb in callbacks:
            cb.set_trainer(self)
        return callbacks

    def _epoch_loss(self, seen, penalize):
        """Mean loss (with the penalty when ``penalize``) over the first ``seen`` rows of the
        epoch, from the epoch's accumulators."""
        to_numpy = self.model.backend.to_numpy
        penalty = float(to_numpy(self._penalty_acc)[0]) if penalize else 0.0
        return float(to_numpy(self._loss_acc)[0]) / self.loss.count(seen, self.model.n_out) + penalty / seen

    # ------------------------------------------------------------- state
    def state_dict(self):
        """Everything a continued ``fit`` reads besides the model's parameters and the Trainer's
        settings: {"epoch", "rng" (the generator's state), "augment_keys" (each augmentation's
        stream key), "augment" (their state_dict()), "layers" ({layer index: state_dict()} of
        the layers that have one: Dropout's step counters), "optimizer" (its state_dict(), which
        binds it to the model), "history"}. JSON-able apart from the optimizer's NumPy state
        buffers; fastnn.checkpoint writes it, ``load_state_dict`` restores it.
        """
        model = self.model
        if not model.built:
            raise ValueError("Trainer.state_dict: the model is not built yet; give input_dim or train it first.")
        self.optimizer.bind(model)  # a Trainer that has not trained yet: its state buffers exist (zeros)
        layers = {str(i): layer.state_dict() for i, layer in enumerate(model.layers)}
        return {"epoch": self.epoch, "rng": self.rng.bit_generator.state, "augment_keys": list(self._augment_keys),
                "augment": [aug.state_dict() for aug in self.augment],
                "layers": {k: v for k, v in layers.items() if v}, "optimizer": self.optimizer.state_dict(),
                "history": self.history.state_dict()}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned, for a Trainer with the same settings on a model of
        the same architecture. Every field is checked before it is used: a count that is not a
        non-negative integer, a layer index outside the model, optimizer buffers unlike the
        optimizer's raise ValueError (or TypeError, KeyError for a missing or mistyped field)."""
        owner = "Trainer.load_state_dict"
        model = self.model
        if not isinstance(state, dict):
            raise TypeError(f"{owner}: state must be a dict from Trainer.state_dict(); got {type(state).__name__}.")
        if not model.built:
            raise ValueError(f"{owner}: the model is not built yet; give input_dim or load its weights first.")
        for key, value in state["layers"].items():
            model.layers[_layer_index(owner, key, len(model.layers))].load_state_dict(value)
        opt, opt_state = self.optimizer, state["optimizer"]
        _check_count(owner, "the optimizer's step_count", opt_state["step_count"])
        _check_count(owner, "the optimizer's epoch", opt_state.get("epoch", 0))
        lr_scale = opt_state.get("lr_scale", 1.0)
        if isinstance(lr_scale, bool) or not isinstance(lr_scale, (int, float)) or not 0 < lr_scale < math.inf:
            raise ValueError(f"{owner}: the optimizer's lr_scale must be a positive finite number; got {lr_scale!r}.")
        opt.bind(model)
        if set(opt_state["state"]) != set(opt.state):
            raise ValueError(f"{owner}: the optimizer state has {sorted(opt_state['state'])}; {type(opt).__name__} "
                             f"needs {sorted(opt.state)}")
        opt.load_state_dict(opt_state)
        keys = [_check_count(owner, "an augmentation key", k) for k in state["augment_keys"]]
        if len(keys) != len(self.augment) or len(state["augment"]) != len(self.augment):
            raise ValueError(f"{owner}: one key and one state per augmentation ({len(self.augment)}); got "
                             f"{len(keys)} and {len(state['augment'])}")
        self.rng.bit_generator.state = state["rng"]
        self._augment_keys = keys
        for aug, aug_state in zip(self.augment, state["augment"]):
            aug.load_state_dict(aug_state)
        self.epoch = _check_count(owner, "the epoch", state["epoch"])
        for e in state["history"]["epoch"]:
            _check_count(owner, "a History epoch", e)
        self.history.load_state_dict(state["history"])

    def save_checkpoint(self, path):
        """Write the model and everything training continues from (optimizer state, schedule
        position, epoch, generator state, Dropout and augmentation counters, History) to
        ``path``, atomically; see fastnn.checkpoint. Callbacks are not saved.

        >>> import fastnn as fnn, os, tempfile
        >>> X, y = fnn.datasets.load_iris()
        >>> model = fnn.Sequential([fnn.layers.Dense(3)], seed=0)
        >>> trainer = fnn.Trainer(model, "cross_entropy", "adam", seed=0)
        >>> _ = trainer.fit(X, y, epochs=2, verbose=0)
        >>> p = os.path.join(tempfile.mkdtemp(), "ckpt.fnn"); trainer.save_checkpoint(p)
        >>> resumed = fnn.Trainer.from_checkpoint(p)
        >>> resumed.epoch, len(resumed.history["loss"])
        (2, 2)
        """
        save_checkpoint(self, path)

    @classmethod
    def from_checkpoint(cls, path, device=None):
        """The Trainer written by ``save_checkpoint``, ready to ``fit`` on (``device``: default
        the one it was saved from): continuing gives the same weights, bit for bit, as never
        stopping, on the same device and thread count. Raises ModelFormatError for a file that
        is not an intact checkpoint, ValueError for a bad ``device``."""
        owner = "Trainer.from_checkpoint"
        ckpt = read_checkpoint(path, device, owner)
        try:
            trainer = cls(ckpt.model, **ckpt.settings)
            trainer.load_state_dict(ckpt.state)
        except ModelFormatError:
            raise
        except CHECKPOINT_ERRORS as exc:
            raise checkpoint_error(path, exc, owner) from None
        return trainer

    def _n_batches(self, n, bs):
        """Minibatches per epoch: ceil(n / bs), one fewer when the last would have fewer rows than
        the model needs in training (2 with a trainable BatchNorm): they join the previous batch."""
        count = -(-n // bs)
        if count > 1 and n - (count - 1) * bs < self.model.min_train_rows:
            count -= 1
        return count

    def _get_buffers(self, capacity, X, y, w):
        """Minibatch buffers for this batch size and target layout, and [(augmentation, its
        buffers)], kept across fit calls."""
        model, dtype = self.model, self.model.dtype
        key = (capacity, X.shape[1], y.shape[1:], y.dtype, w is not None, model.n_out, dtype, model.device)
        if self._buffer_key != key:
            shapes = {"x": ((X.shape[1],), dtype), "y": (y.shape[1:], y.dtype), "grad": ((model.n_out,), dtype)}
            if w is not None:
                shapes["w"] = ((), dtype)
            self._buffers = _Buffers(model.backend, capacity, shapes)
            self._augment_buffers = [
                (aug, _Buffers(model.backend, capacity,
                               aug.buffer_shapes(X.shape[1], model.n_out, dtype, w is not None)))
                for aug in self.augment]
            self._loss_acc = model.backend.zeros((1,), np.float64)
            self._norm = model.backend.zeros((1,), np.float64)
            self._penalty_acc = model.backend.zeros((1,), np.float64)
            self._buffer_key = key
        for aug, stream in zip(self.augment, self._augment_keys):
            aug.bind(stream, capacity)
        return self._buffers, self._augment_buffers

    # -------------------------------------------------------------- evaluation
    def _evaluate_arrays(self, X, y, w, metrics=True):
        """Loss (with the penalty) and metrics (unless ``metrics`` is False) on validated arrays,
        in evaluation mode."""
        model, backend = self.model, self.model.backend
        fused = self._fused
        acc = backend.zeros((1,), np.float64)
        # fresh state, same configuration (TopKAccuracy's k)
        metrics = [m.clone() for m in self.metrics] if metrics else []
        chunk = max(self.batch_size or len(X), 1024)
        for start in range(0, len(X), chunk):
            stop = min(start + chunk, len(X))
            xb, yb = backend.asarray(X[start:stop]), backend.asarray(y[start:stop])
            wb = None if w is None else backend.asarray(w[start:stop])
            out = model.forward(xb, training=False, logits=fused)
            self.loss(backend, out, yb, weight=wb, loss_out=acc)
            for m in metrics:
                m.update(backend.to_numpy(out), y[start:stop], None if w is None else w[start:stop], logits=fused)
        penalty = self._penalty() if self.l1 or self.l2 else 0.0
        result = {"loss": float(backend.to_numpy(acc)[0]) / self.loss.count(len(X), model.n_out) + penalty}
        result.update({m.name: m.result() for m in metrics})
        return result

    def _penalized(self):
        """(parameter, gradient) views of what l1/l2 penalise: the weights of trainable layers."""
        model = self.model
        return [(model.params[p.start:p.stop], model.grads[p.start:p.stop]) for p in model.param_info
                if p.kind == "weight" and p.layer.trainable]

    def _penalty(self):
        """l1 * sum|w| + l2 * sum w^2 over every penalised weight (evaluate's penalty term; fit
        adds the penalty and its gradient with backend.penalty_into)."""
        backend = self.model.backend
        return sum(backend.penalty(p, None, l1=self.l1, l2=self.l2) for p, _ in self._penalized())

    def evaluate(self, X, y, sample_weight=None):
        """{'loss': ..., <metric>: ...} on (X, y) in evaluation mode (no update);
        ``trainer.timing['evaluate']`` records its wall time (see _record_time).

        Thread-safe like Sequential.predict (per-thread workspaces, a fresh clone of each metric
        per call), but not while fit runs."""
        t0 = time.perf_counter()
        X, y, w = self._prepare("Trainer.evaluate", X, y, sample_weight)
        result = self._evaluate_arrays(X, y, w)
        self._record_time("evaluate", t0, len(X))
        return result

    def predict(self, X, batch_size=None):
        """The model's output for X (see Sequential.predict, thread-safe with per-thread
        workspaces); ``trainer.timing['predict']`` records its wall time."""
        t0 = time.perf_counter()
        out = self.model.predict(X, batch_size=batch_size)
        self._record_time("predict", t0, len(out))
        return out

    def _record_time(self, what, t0, samples):
        """timing[what] = {'seconds', 'samples', 'samples_per_s'} of a call begun at ``t0``."""
        seconds = time.perf_counter() - t0
        self.timing[what] = {"seconds": seconds, "samples": samples,
                             "samples_per_s": samples / seconds if seconds > 0 else math.nan}


__all__ = ["Trainer"]
