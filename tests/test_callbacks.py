"""fastnn.callbacks in fit: EarlyStopping, ModelCheckpoint, CSVLogger, TerminateOnNaN, ProgressBar,
the hooks and their dispatch, stopping from a callback, Ctrl-C, History.plot / to_csv, timing."""

import csv
import io
import os
import signal
import struct
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn.callbacks import (CSVLogger, Callback, EarlyStopping, LambdaCallback, ModelCheckpoint, ProgressBar,
                              TerminateOnNaN)
from fastnn.trainer import _hooks


def iris_trainer(lr=0.01, batch_size=16, metrics=("accuracy",), layers=None):
    """Iris, standardised but not shuffled: validation_split=0.2 holds out class 2 only, so the
    validation loss soon rises while the training loss falls."""
    X, y = fnn.datasets.load_iris()
    X = fnn.data.Standardizer().fit_transform(X)
    layers = layers or [fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)]
    model = fnn.Sequential(layers, seed=0)
    return fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(lr), batch_size=batch_size, metrics=list(metrics),
                       seed=0), X, y


def same_weights(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


# ------------------------------------------------------------------ EarlyStopping
def test_early_stopping_restores_the_best_epoch_like_a_checkpoint_of_it(tmp_path):
    trainer, X, y = iris_trainer()
    stop = EarlyStopping(patience=3)
    best = ModelCheckpoint(tmp_path / "best.fnn", save_best_only=True)
    h = trainer.fit(X, y, epochs=200, validation_split=0.2, callbacks=[stop, best], verbose=0)
    val = h["val_loss"]
    assert len(val) < 200 and stop.stopped_epoch == len(val) - 1          # it stopped early
    assert stop.best_epoch == int(np.argmin(val)) == len(val) - 1 - 4      # patience 3: 4 epochs later
    assert stop.best == min(val)
    assert same_weights(trainer.model, fnn.load(tmp_path / "best.fnn"))  # the best epoch's weights
    assert trainer.evaluate(X[-30:], y[-30:])["loss"] == pytest.approx(min(val))


def test_early_stopping_without_restore_keeps_the_last_weights(tmp_path):
    trainer, X, y = iris_trainer()
    last = ModelCheckpoint(tmp_path / "last.fnn")
    trainer.fit(X, y, epochs=200, validation_split=0.2, verbose=0,
                callbacks=[EarlyStopping(patience=3, restore_best=False), last])
    assert same_weights(trainer.model, fnn.load(tmp_path / "last.fnn"))
    assert trainer.evaluate(X[-30:], y[-30:])["loss"] > min(trainer.history["val_loss"])


def test_early_stopping_patience_zero_and_max_mode():
    trainer, X, y = iris_trainer()
    stop = EarlyStopping(monitor="val_accuracy", patience=0, restore_best=False)
    assert stop._monitor.mode == "max"
    h = trainer.fit(X, y, epochs=100, validation_split=0.2, callbacks=[stop], verbose=0)
    acc = h["val_accuracy"]
    assert acc[-1] <= max(acc[:-1]) and all(b > a for a, b in zip(acc[:-1], acc[1:-1]))  # first non-improvement


def test_early_stopping_without_validation_falls_back_to_the_training_loss_with_a_warning():
    trainer, X, y = iris_trainer(lr=0.5)
    stop = EarlyStopping(patience=2)
    with pytest.warns(UserWarning, match=r"EarlyStopping: 'val_loss' is not logged because fit has no validation "
                                         r"data; monitoring the training 'loss' instead"):
        h = trainer.fit(X, y, epochs=3, callbacks=[stop], verbose=0)
    assert stop.best == min(h["loss"])
    with pytest.raises(ValueError, match=r"EarlyStopping: monitor 'f1' is not logged"):
        trainer.fit(X, y, epochs=1, callbacks=[EarlyStopping(monitor="f1")], verbose=0)


@pytest.mark.parametrize("kwargs, error", [
    ({"patience": -1}, r"^EarlyStopping: patience must be >= 0"),
    ({"restore_best": "yes"}, r"^EarlyStopping: restore_best must be True or False"),
    ({"mode": "up"}, r"^EarlyStopping: unknown mode 'up'"),
    ({"monitor": 3}, r"^EarlyStopping: monitor must be the name"),
])
def test_early_stopping_bad_options(kwargs, error):
    with pytest.raises((TypeError, ValueError), match=error):
        EarlyStopping(**kwargs)


# ---------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_every_epoch_with_a_pattern_and_full_checkpoints(tmp_path):
    trainer, X, y = iris_trainer()
    every = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{loss:.3f}.fnn"))
    full = ModelCheckpoint(tmp_path / "ckpt.fnn", full=True)
    h = trainer.fit(X, y, epochs=3, callbacks=[every, full], verbose=0)
    names = sorted(os.listdir(tmp_path))
    assert names == ["ckpt.fnn"] + [f"m-{e:02d}-{loss:.3f}.fnn" for e, loss in zip((1, 2, 3), h["loss"])]
    assert every.last_path.endswith(names[-1])
    assert same_weights(fnn.load(every.last_path), trainer.model)
    assert fnn.Trainer.from_checkpoint(tmp_path / "ckpt.fnn").epoch == 3
    with pytest.raises(ValueError, match=r"ModelCheckpoint: path '.*' names 'val_f1' which the logs do not have"):
        trainer.fit(X, y, epochs=1, callbacks=[ModelCheckpoint(str(tmp_path / "{val_f1}.fnn"))], verbose=0)


# --------------------------------------------------------------------- CSVLogger
def test_csv_logger_writes_the_whole_history_after_every_epoch(tmp_path):
    trainer, X, y = iris_trainer()
    path = tmp_path / "log.csv"
    rows_seen = []
    peek = LambdaCallback(on_epoch_end=lambda e, logs: rows_seen.append(len(list(csv.reader(open(path)))) - 1))
    trainer.fit(X, y, epochs=2, validation_split=0.2, callbacks=[CSVLogger(path), peek], verbose=0)
    trainer.fit(X, y, epochs=1, validation_split=0.2, callbacks=[CSVLogger(path)], verbose=0)
    rows = list(csv.DictReader(open(path)))
    assert rows_seen == [1, 2] and [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert [float(r["val_loss"]) for r in rows] == trainer.history["val_loss"]
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm",
                             "epoch_time"]


# ---------------------------------------------------------------- TerminateOnNaN
def test_divergence_with_a_huge_lr_raises_and_leaves_finite_weights():
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([fnn.layers.Dense(16, activation="relu"), fnn.layers.Dense(3)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(1e20), batch_size=8, seed=0)
    with pytest.raises(fnn.TrainingDiverged, match=r"^loss became (nan|inf) at epoch \d+, batch \d+; the weights"):
        trainer.fit(X, y, epochs=20, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_an_update_that_makes_weights_infinite_with_a_finite_loss_is_rolled_back():
    # an overflowing update, simulated: the last batch of epoch 2 leaves an infinite weight of
    # a unit that a ReLU silences, so no loss is non-finite; the epoch's end check catches it
    trainer, X, y = iris_trainer(batch_size=50)
    kept = {}

    def after_batch(b, logs):
        if trainer.epoch == 1 and b == 2:
            trainer.model.params[0] = np.inf

    spy = LambdaCallback(on_epoch_end=lambda e, logs: kept.setdefault(e, trainer.model.get_weights()),
                         on_batch_end=after_batch)
    with pytest.raises(fnn.TrainingDiverged, match=r"^the parameters became non-finite at epoch 2, an update of "
                                                   r"that epoch \(the loss stayed finite\); the weights were "
                                                   r"restored to the last finite ones"):
        trainer.fit(X, y, epochs=5, callbacks=[spy], verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(trainer.model.get_weights(), kept[0]))


def test_batchnorm_running_statistics_are_finite_after_divergence():
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([fnn.layers.Dense(16), fnn.layers.BatchNorm(), fnn.layers.Dense(3)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(1e30), batch_size=8, seed=0)
    with pytest.raises(fnn.TrainingDiverged):
        trainer.fit(X, y, epochs=20, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_one_terminate_on_nan_runs_yours_when_given():
    trainer, X, y = iris_trainer()
    mine = TerminateOnNaN()
    seen = []
    spy = LambdaCallback(on_train_begin=lambda logs: seen.append([type(c).__name__ for c in trainer._callbacks(
        "t", [mine], 1)]))
    trainer.fit(X, y, epochs=1, callbacks=[spy], verbose=0)
    assert seen == [["History", "TerminateOnNaN", "ProgressBar"]]
    assert trainer._callbacks("t", [mine], 0)[1] is mine


# -------------------------------------------------------------- hooks and stopping
class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin", dict(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_batch_begin(self, batch, logs=None):
        self.events.append(("batch_begin", batch))

    def on_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, logs["size"], logs["seen"]))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", logs))


def test_hooks_order_and_logs():
    trainer, X, y = iris_trainer(batch_size=100)
    rec = Recorder()
    trainer.fit(X, y, epochs=1, callbacks=[rec], verbose=0)
    trainer.fit(X, y, epochs=1, callbacks=[rec], verbose=0)
    keys = ["accuracy", "epoch_time", "grad_norm", "loss", "lr"]
    one = [("train_begin", {"epochs": 1, "initial_epoch": 0, "batches": 2, "samples": 150}), ("epoch_begin", 0),
           ("batch_begin", 0), ("batch_end", 0, 100, 100), ("batch_begin", 1), ("batch_end", 1, 50, 150),
           ("epoch_end", 0, keys), ("train_end", {"interrupted": False})]
    assert rec.events[:8] == one
    assert rec.events[8] == ("train_begin", {"epochs": 1, "initial_epoch": 1, "batches": 2, "samples": 150})
    assert rec.events[9] == ("epoch_begin", 1)


def test_batch_hooks_go_only_to_callbacks_that_define_and_want_them():
    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    rec, lam, bar = Recorder(), LambdaCallback(on_batch_end=lambda b, logs: None), ProgressBar(stream=io.StringIO())
    bar.on_train_begin({})  # not a terminal: no bar, no batch hooks
    hooks = _hooks([EpochOnly(), rec, lam, bar, TerminateOnNaN()], "on_batch_end")
    assert hooks == [rec.on_batch_end, lam.on_batch_end]
    assert _hooks([EpochOnly(), lam], "on_batch_begin") == []


def test_a_callback_stops_training_after_a_batch_or_an_epoch():
    trainer, X, y = iris_trainer(batch_size=10)
    stopper = LambdaCallback(on_batch_end=lambda b, logs: setattr(trainer, "stop_training", b == 2))
    h = trainer.fit(X, y, epochs=5, callbacks=[stopper], verbose=0)
    assert len(h["loss"]) == 1 and trainer.optimizer.step_count == 3   # the epoch of 3 batches is logged
    h = trainer.fit(X, y, epochs=5, verbose=0,
                    callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: setattr(trainer, "stop_training", True))])
    assert len(h["loss"]) == 2 and trainer.optimizer.step_count == 3 + 15


@pytest.fixture
def default_sigint():
    """Python's default SIGINT handler for the test, whatever this process inherited (a process
    started in the background by a non-interactive shell has SIGINT ignored, and fit then rightly
    leaves it alone)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_finishes_the_batch_and_returns_the_history(capsys, default_sigint):
    def interrupt_at(trainer, epoch, batch):
        def hook(b, logs):
            if trainer.epoch == epoch and b == batch:
                signal.raise_signal(signal.SIGINT)  # to this thread: handled before it returns
        return LambdaCallback(on_batch_end=hook)

    trainer, X, y = iris_trainer(batch_size=10)
    h = trainer.fit(X, y, epochs=5, callbacks=[interrupt_at(trainer, 1, 4)], verbose=0)
    assert len(h["loss"]) == 1 and trainer.epoch == 1 and trainer.optimizer.step_count == 15 + 5
    assert "Trainer.fit: interrupted in epoch 2 after batch 5;" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # the same weights as a run stopped after that batch by a callback
    other, _, _ = iris_trainer(batch_size=10)
    other.fit(X, y, epochs=5, verbose=0, callbacks=[LambdaCallback(
        on_batch_end=lambda b, logs: setattr(other, "stop_training", other.epoch == 1 and b == 4))])
    assert same_weights(trainer.model, other.model)
    # a KeyboardInterrupt raised between batches (by a callback) also returns the history
    h = trainer.fit(X, y, epochs=5, verbose=0, callbacks=[LambdaCallback(
        on_epoch_begin=lambda e, logs=None: (_ for _ in ()).throw(KeyboardInterrupt) if e == 2 else None)])
    assert len(h["loss"]) == 2 and "interrupted after epoch 2" in capsys.readouterr().out


# ------------------------------------------------------------------- ProgressBar
def test_progress_bar_on_a_terminal_draws_batches_then_the_epoch_line():
    out = io.StringIO()
    trainer, X, y = iris_trainer(batch_size=10)
    trainer.fit(X, y, epochs=2, callbacks=[ProgressBar(stream=out, interval=1e-9, bar=True)], verbose=1)
    text = out.getvalue()
    assert text.count("\n") == 2 and "\r" in text
    assert "epoch 1/2 [" in text and " samples/s - ETA " in text and "15/15" in text
    lines = [part for part in text.replace("\r", "\n").split("\n") if part.startswith("epoch ") and " - loss " in part
             and "[" not in part]
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1", "epoch 2"]


def test_verbose_two_and_a_pipe_print_only_epoch_lines(capsys):
    trainer, X, y = iris_trainer(batch_size=10)
    trainer.fit(X, y, epochs=2, verbose=2)
    trainer.fit(X, y, epochs=1, verbose=1)  # capsys is not a terminal
    out = capsys.readouterr().out
    assert "\r" not in out and [line.split(" - ")[0] for line in out.splitlines()] == ["epoch 1", "epoch 2", "epoch 3"]
    with pytest.raises(ValueError, match=r"^Trainer.fit: verbose must be <= 2; got 3"):
        trainer.fit(X, y, epochs=1, verbose=3)


# ----------------------------------------------------------------- History, timing
def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_history_plot_png_has_one_panel_per_quantity(tmp_path):
    pytest.importorskip("matplotlib")
    trainer, X, y = iris_trainer(metrics=("accuracy", "f1"))
    h = trainer.fit(X, y, epochs=5, validation_split=0.2, verbose=0)
    path = tmp_path / "curves.png"
    h.plot(path)
    assert os.path.getsize(path) > 10_000
    assert png_size(path) == (1500, 360)  # loss, accuracy, f1: 3 panels of 500 x 360


def test_history_to_csv_and_state_round_trip(tmp_path):
    trainer, X, y = iris_trainer()
    h = trainer.fit(X, y, epochs=2, verbose=0)
    h.history["grad_norm"][0] = float("nan")
    h.history["loss"][1] = float("inf")
    copy = fnn.callbacks.History()
    copy.load_state_dict(h.state_dict())
    assert copy.epoch == [0, 1] and np.isnan(copy["grad_norm"][0]) and copy["loss"][1] == float("inf")
    h.to_csv(tmp_path / "h.csv")
    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    assert [r["loss"] for r in rows] == [repr(h["loss"][0]), "inf"]


def test_fit_evaluate_predict_record_their_wall_time():
    trainer, X, y = iris_trainer(batch_size=50)
    trainer.fit(X, y, epochs=3, verbose=0)
    trainer.evaluate(X, y)
    trainer.predict(X[:10])
    fit = trainer.timing["fit"]
    assert fit["samples"] == 450 and fit["epochs"] == 3 and fit["seconds"] > 0
    assert fit["samples_per_s"] == pytest.approx(450 / fit["seconds"])
    assert trainer.timing["evaluate"]["samples"] == 150 and trainer.timing["predict"]["samples"] == 10


def test_no_warning_with_validation():
    trainer, X, y = iris_trainer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(X, y, epochs=1, validation_split=0.2, callbacks=[EarlyStopping()], verbose=0)


def test_auto_mode_reads_greater_is_better_from_the_trainers_metric():
    # 'auto' takes the direction from the metric itself, not from a list of names in callbacks.py
    class Misses(fnn.metrics.Metric):
        name = "misses"
        greater_is_better = False

        def update(self, pred, target, weight=None, logits=False):
            self._num += float((pred.argmax(axis=1) != target).sum())
            self._den += len(target)

    class Hits(Misses):
        greater_is_better = True

    X, y = fnn.datasets.load_iris()
    for metric, mode in ((Misses(), "min"), (Hits(), "max")):
        model = fnn.Sequential([fnn.layers.Dense(3)], seed=0)
        stop = EarlyStopping(monitor="misses", patience=50)
        fnn.Trainer(model, "cross_entropy", metrics=[metric], seed=0).fit(X, y, epochs=1, callbacks=[stop],
                                                                           verbose=0)
        assert stop._monitor.mode == mode
    assert EarlyStopping(monitor="val_accuracy")._monitor.mode == "max"
    assert EarlyStopping(monitor="val_loss")._monitor.mode == "min"


# ------------------------------------------------- divergence whose loss stays finite (issue 17)
def _lr1e3_cases():
    L = fnn.layers
    rng = np.random.default_rng(0)
    Xr = rng.standard_normal((60, 5))
    yr = Xr @ rng.standard_normal(5) + 0.1 * rng.standard_normal(60)
    Xi, yi = fnn.datasets.load_iris()
    return [
        ("ce-relu", lambda: [L.Dense(16, activation="relu"), L.Dense(3)], "cross_entropy", Xi, yi),
        ("ce-tanh-softmax", lambda: [L.Dense(16, activation="tanh"), L.Dense(3, activation="softmax")],
         "cross_entropy", Xi, yi),
        ("mse-relu", lambda: [L.Dense(16, activation="relu"), L.Dense(1)], "mse", Xr, yr),
        ("huber-bn", lambda: [L.Dense(16), L.BatchNorm(), L.Activation("relu"), L.Dense(1)], "huber", Xr, yr),
        ("ce-bn", lambda: [L.Dense(16), L.BatchNorm(), L.Activation("relu"), L.Dense(3)], "cross_entropy", Xi, yi),
        ("mae-sigmoid", lambda: [L.Dense(8, activation="sigmoid"), L.Dense(1)], "mae", Xr, yr),
    ]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lr_1e3_runs_that_raise_leave_weights_predicting_finite_values(seed, dtype):
    # finding 5: in 527 of 812 runs that raised TrainingDiverged the restored "finite" weights
    # still predicted non-finite values; and runs with l2 ended at losses like 1e116 silently
    for name, layers, loss, X, y in _lr1e3_cases():
        for l2 in (0.0, 1e-3):
            model = fnn.Sequential(layers(), seed=seed, dtype=dtype)
            trainer = fnn.Trainer(model, loss, fnn.optim.SGD(1e3), batch_size=16, l2=l2, seed=seed)
            try:
                history = trainer.fit(X, y, epochs=30, verbose=0)
            except fnn.TrainingDiverged:
                pass
            else:  # a run may end without a word only at a loss within the ratio of its start
                assert history["loss"][-1] <= 1e4 * trainer._divergence["start"], (name, l2)
            assert np.isfinite(model.predict(X)).all(), (name, l2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_finite_runaway_loss_stops_with_training_diverged(seed):
    # this run ended at a loss near 1e9 (1e9 times its start) without a word before
    L = fnn.layers
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([L.Dense(16, activation="tanh"), L.Dense(3, activation="softmax")], seed=seed)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(1e3), batch_size=16, l2=1e-3, seed=seed)
    with pytest.raises(fnn.TrainingDiverged, match=r"^the loss ran away \(.*, over 1e\+04 times the .* of the "
                                                   r"initial weights, for 2 epochs\) at epoch \d+, found at the "
                                                   r"epoch's end; the weights were restored"):
        trainer.fit(X, y, epochs=30, verbose=0)
    assert np.isfinite(model.predict(X)).all()
    assert trainer.evaluate(X, y)["loss"] < 1e4 * trainer._divergence["start"]
    # switched off, the same run ends without a word, as before
    model = fnn.Sequential([L.Dense(16, activation="tanh"), L.Dense(3, activation="softmax")], seed=seed)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(1e3), batch_size=16, l2=1e-3, seed=seed)
    history = trainer.fit(X, y, epochs=30, callbacks=[TerminateOnNaN(max_loss_ratio=None)], verbose=0)
    assert history["loss"][-1] > 1e6


def test_the_runaway_test_spans_fit_calls_of_one_epoch():
    L = fnn.layers
    X, y = fnn.datasets.load_iris()
    model = fnn.Sequential([L.Dense(16, activation="tanh"), L.Dense(3, activation="softmax")], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(1e3), batch_size=16, l2=1e-3, seed=0)
    with pytest.raises(fnn.TrainingDiverged, match="the loss ran away"):
        for _ in range(30):  # as the estimators train: one epoch per call
            trainer.fit(X, y, epochs=1, verbose=0)
    assert np.isfinite(model.predict(X)).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_healthy_runs_are_not_stopped(seed):
    L = fnn.layers
    X, y = fnn.datasets.load_iris()
    X = fnn.data.Standardizer().fit_transform(X)
    rng = np.random.default_rng(seed)
    Xr = rng.standard_normal((200, 5))
    yr = Xr @ rng.standard_normal(5) * 100 + 1e3  # large targets: the loss starts near 1e6 and falls
    runs = [
        (fnn.Sequential([L.Dense(16, activation="relu"), L.Dense(3)], seed=seed), "cross_entropy",
         fnn.optim.SGD(0.05, momentum=0.9), X, y, 1),
        (fnn.Sequential([L.Dense(16), L.BatchNorm(), L.Activation("relu"), L.Dense(3)], seed=seed),
         "cross_entropy", fnn.optim.Adam(0.01), X, y, 4),
        (fnn.Sequential([L.Dense(1)], seed=seed, dtype="float64"), "mse", fnn.optim.SGD(0.05), Xr, yr, 8),
        (fnn.Sequential([L.Dense(32, activation="relu"), L.Dense(1)], seed=seed), "mse", fnn.optim.Adam(0.1),
         Xr, yr, 16),
    ]
    for model, loss, opt, Xs, ys, bs in runs:
        history = fnn.Trainer(model, loss, opt, batch_size=bs, seed=seed).fit(Xs, ys, epochs=40, verbose=0)
        assert len(history["loss"]) == 40 and history["loss"][-1] < history["loss"][0]


def test_terminate_on_nan_options_are_checked():
    with pytest.raises(ValueError, match=r"TerminateOnNaN: max_loss_ratio must be > 1.0; got 0.5"):
        TerminateOnNaN(max_loss_ratio=0.5)
    with pytest.raises(ValueError, match=r"TerminateOnNaN: patience must be >= 1; got 0"):
        TerminateOnNaN(patience=0)
    with pytest.raises(TypeError, match=r"TerminateOnNaN: max_loss_ratio must be a real number; got 'big'"):
        TerminateOnNaN(max_loss_ratio="big")


def test_new_data_get_a_new_divergence_reference():
    # fine-tuning on data of another scale is not a runaway: the reference is re-measured
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    w = rng.standard_normal(3)
    model = fnn.Sequential([fnn.layers.Dense(1)], seed=0, dtype="float64")
    trainer = fnn.Trainer(model, "mse", fnn.optim.SGD(0.05), batch_size=10, seed=0)
    trainer.fit(X, X @ w, epochs=20, verbose=0)
    small = trainer._divergence["start"]
    history = trainer.fit(X, X @ w * 1e4 + 1e4, epochs=5, verbose=0)  # a loss ~1e8 times the first start
    assert len(history["loss"]) == 25 and trainer._divergence["start"] > 1e6 * small
