"""Learning-rate schedules: values equal their closed forms (warmup and restart boundaries
included), per='epoch' in the Trainer, ReduceLROnPlateau, bad arguments."""

import math

import numpy as np
import pytest

import fastnn as fnn
from _helpers import DEVICE

S = fnn.schedules


def _cosine(lr, min_lr, progress):
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


# schedule, {t: value from its formula}
CLOSED_FORMS = [
    (S.Constant(0.3), {0: 0.3, 1: 0.3, 10**6: 0.3}),
    (S.Step(0.1, step_size=3, gamma=0.5), {0: 0.1, 2: 0.1, 3: 0.05, 5: 0.05, 6: 0.025, 30: 0.1 * 0.5 ** 10}),
    (S.Exponential(0.2, gamma=0.9), {0: 0.2, 1: 0.18, 10: 0.2 * 0.9 ** 10}),
    (S.InverseTime(0.1, decay=0.5), {0: 0.1, 1: 0.1 / 1.5, 10: 0.1 / 6}),
    (S.InverseSqrt(0.1), {0: 0.1, 3: 0.05, 99: 0.01}),
    # warmup 4: (t + 1) / 4 up to t = 3, then sqrt(4 / (t + 1))
    (S.InverseSqrt(0.1, warmup_steps=4), {0: 0.025, 1: 0.05, 3: 0.1, 4: 0.1 * math.sqrt(4 / 5), 15: 0.05}),
    (S.Polynomial(0.1, total_steps=10), {0: 0.1, 5: 0.05, 9: 0.01, 10: 0.0, 20: 0.0}),
    (S.Polynomial(0.1, total_steps=10, power=2.0, end_lr=0.01), {0: 0.1, 5: 0.09 * 0.25 + 0.01, 10: 0.01, 11: 0.01}),
    (S.Cosine(0.1, total_steps=100), {0: 0.1, 25: _cosine(0.1, 0, 0.25), 50: 0.05, 100: 0.0, 10**5: 0.0}),
    (S.Cosine(0.1, total_steps=100, min_lr=0.02), {0: 0.1, 50: 0.06, 100: 0.02, 200: 0.02}),
    # warmup 10: lr (t + 1) / 10 for t < 10, then cosine over the remaining 90 steps
    (S.Cosine(0.1, total_steps=100, warmup_steps=10), {0: 0.01, 4: 0.05, 9: 0.1, 10: 0.1, 55: 0.05, 100: 0.0}),
    # restarts every 10 steps
    (S.Cosine(0.1, total_steps=50, restarts=True, cycle_steps=10),
     {0: 0.1, 5: 0.05, 9: _cosine(0.1, 0, 0.9), 10: 0.1, 15: 0.05, 20: 0.1, 1000: 0.1}),
    # cycles of 10, 20, 40 after 5 warmup steps: restarts at t = 5, 15, 35, 75
    (S.Cosine(0.1, total_steps=50, warmup_steps=5, restarts=True, cycle_steps=10, cycle_mult=2, min_lr=0.01),
     {0: 0.02, 4: 0.1, 5: 0.1, 14: _cosine(0.1, 0.01, 0.9), 15: 0.1, 25: _cosine(0.1, 0.01, 0.5), 34:
      _cosine(0.1, 0.01, 19 / 20), 35: 0.1, 55: _cosine(0.1, 0.01, 0.5), 75: 0.1}),
    # default cycle = total_steps - warmup_steps
    (S.Cosine(0.1, total_steps=20, restarts=True), {0: 0.1, 10: 0.05, 20: 0.1, 30: 0.05}),
]


@pytest.mark.parametrize("schedule, values", CLOSED_FORMS, ids=[repr(c[0]) for c in CLOSED_FORMS])
def test_values_equal_the_closed_forms(schedule, values):
    for t, want in values.items():
        assert schedule(t) == pytest.approx(want, rel=1e-12, abs=1e-15), f"t={t}"


def test_every_schedule_without_warmup_starts_at_the_base_rate():
    for schedule in (S.Constant(0.1), S.Step(0.1, 5), S.Exponential(0.1, 0.5), S.InverseTime(0.1, 2.0),
                     S.InverseSqrt(0.1), S.Polynomial(0.1, 10), S.Cosine(0.1, 10), S.Cosine(0.1, 10, restarts=True)):
        assert schedule(0) == 0.1, schedule


@pytest.mark.parametrize("mult", [1.0, 1.5, 2.0, 3.0])
def test_cosine_restart_cycles_match_a_step_by_step_count(mult):
    schedule = S.Cosine(1.0, total_steps=7, restarts=True, cycle_steps=7, cycle_mult=mult)
    start, length = 0.0, 7.0
    for t in range(3000):
        while t >= start + length:  # walk the cycles one by one
            start, length = start + length, length * mult
        assert schedule(t) == pytest.approx(_cosine(1.0, 0.0, (t - start) / length), abs=1e-9), f"t={t}"


def test_schedules_are_monotone_where_they_should_be():
    for schedule in (S.Step(0.1, 3), S.Exponential(0.1, 0.97), S.InverseTime(0.1, 0.1), S.InverseSqrt(0.1, 20),
                     S.Polynomial(0.1, 50, power=0.5), S.Cosine(0.1, 60, warmup_steps=10)):
        values = np.array([schedule(t) for t in range(80)])
        peak = int(values.argmax())
        assert np.all(np.diff(values[:peak + 1]) >= 0) and np.all(np.diff(values[peak:]) <= 1e-15), schedule


# --------------------------------------------------------------- through the Trainer
def _fit(lr, epochs=5, fits=1, callbacks=(), batch_size=10, validation=True):
    X, y = fnn.datasets.make_moons(n=40, seed=0)
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(2)], seed=0, device=DEVICE)
    trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.SGD(lr), batch_size=batch_size, seed=0)
    seen = []  # the lr of every update
    record = fnn.callbacks.LambdaCallback(on_batch_begin=lambda b, logs=None: seen.append(
        trainer.optimizer.current_lr()))
    for _ in range(fits):
        trainer.fit(X, y, epochs=epochs, callbacks=[record, *callbacks], verbose=0,
                    validation=(X, y) if validation else None)
    return trainer, seen


def test_per_epoch_schedules_count_epochs_and_history_records_them():
    schedule = S.Step(0.1, step_size=2, gamma=0.5, per="epoch")
    trainer, seen = _fit(schedule)
    assert trainer.history["lr"] == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert seen == [lr for lr in trainer.history["lr"] for _ in range(4)]  # every update of an epoch


def test_per_step_schedules_count_updates():
    schedule = S.Exponential(0.1, gamma=0.9)
    trainer, seen = _fit(schedule)
    assert seen == [schedule(t) for t in range(20)]
    assert trainer.history["lr"] == [schedule(4 * e) for e in range(5)]  # the rate at each epoch's start


@pytest.mark.parametrize("per", ["step", "epoch"])
def test_fit_calls_continue_the_schedule(per):
    schedule = S.Cosine(0.1, total_steps=12 if per == "step" else 6, warmup_steps=2, per=per)
    once, seen_once = _fit(schedule, epochs=6)
    twice, seen_twice = _fit(schedule, epochs=2, fits=3)
    assert seen_twice == seen_once and twice.history["lr"] == once.history["lr"]


# --------------------------------------------------------------- ReduceLROnPlateau
class _Stub:
    """Stands in for the Trainer: the callback only touches trainer.optimizer."""

    def __init__(self, optimizer):
        self.optimizer = optimizer


def _feed(callback, optimizer, values, monitor="val_loss"):
    callback.set_trainer(_Stub(optimizer))
    callback.on_train_begin()
    lrs = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {monitor: value, "loss": 1.0})
        lrs.append(optimizer.current_lr())
    return lrs


def test_reduce_lr_on_plateau_waits_patience_epochs_then_multiplies():
    opt = fnn.optim.Adam(lr=0.1)
    lrs = _feed(fnn.callbacks.ReduceLROnPlateau(patience=2, factor=0.5), opt, [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8])
    # best 0.9 at epoch 1; epochs 2, 3 do not improve: reduce; 4 none; 5 improves; 6, 7 do not: reduce
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025])


def test_reduce_lr_on_plateau_min_delta_cooldown_and_min_lr():
    opt = fnn.optim.SGD(lr=1.0)
    cb = fnn.callbacks.ReduceLROnPlateau(patience=1, factor=0.1, min_delta=0.1, cooldown=2, min_lr=0.005)
    # 0.95 and 0.9 are not better than 1.0 by more than min_delta: reduce at once (patience 1);
    # cooldown 2 (Keras' count): the next epoch is skipped, the one after counts again; min_lr
    # stops the third reduction at 0.005 and the fourth
    lrs = _feed(cb, opt, [1.0, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert lrs == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005, 0.005])


def test_reduce_lr_on_plateau_maximises_accuracy_in_auto_mode():
    opt = fnn.optim.SGD(lr=1.0)
    lrs = _feed(fnn.callbacks.ReduceLROnPlateau("val_accuracy", patience=1), opt, [0.5, 0.6, 0.7, 0.7],
                monitor="val_accuracy")
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.1])
    lrs = _feed(fnn.callbacks.ReduceLROnPlateau("val_accuracy", patience=1, mode="min"), fnn.optim.SGD(lr=1.0),
                [0.5, 0.6], monitor="val_accuracy")
    assert lrs == pytest.approx([1.0, 0.1])


def test_reduce_lr_on_plateau_scales_a_schedule():
    schedule = S.Cosine(0.1, total_steps=100)
    opt = fnn.optim.Adam(lr=schedule)
    _feed(fnn.callbacks.ReduceLROnPlateau(patience=0, factor=0.5), opt, [1.0, 1.0])  # reduce at the first plateau
    opt.step_count = 40
    assert opt.current_lr() == pytest.approx(0.5 * schedule(40))


def test_reduce_lr_on_plateau_in_training():
    cb = fnn.callbacks.ReduceLROnPlateau(monitor="loss", patience=2, min_delta=1e9)  # nothing counts as better
    trainer, _ = _fit(0.1, epochs=6, callbacks=[cb], validation=False)
    assert trainer.history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001])


def test_reduce_lr_on_plateau_names_a_missing_quantity():
    with pytest.raises(ValueError, match=r"^ReduceLROnPlateau: monitor 'val_loss' is not logged; the logs have "
                                         r"'loss', .*; pass validation data to fit for 'val_' quantities\.$"):
        _fit(0.1, epochs=1, callbacks=[fnn.callbacks.ReduceLROnPlateau()], validation=False)


# ---------------------------------------------------------------------------- errors
ERRORS = [
    (lambda: S.Step(0.1, step_size=0), ValueError, r"^Step: step_size must be >= 1; got 0\.$"),
    (lambda: S.Step(0.1, step_size=2.5), TypeError, r"^Step: step_size must be an integer; got 2\.5\.$"),
    (lambda: S.Step(0.1, 2, gamma=0.0), ValueError, r"^Step: gamma must be > 0\.0; got 0\.0\.$"),
    (lambda: S.Exponential(0.1, gamma=1.5), ValueError, r"^Exponential: gamma must be <= 1\.0; got 1\.5\.$"),
    (lambda: S.Exponential(-0.1, gamma=0.5), ValueError, r"^Exponential: lr must be >= 0\.0; got -0\.1\.$"),
    (lambda: S.InverseTime(0.1, decay=-1), ValueError, r"^InverseTime: decay must be >= 0\.0; got -1\.0\.$"),
    (lambda: S.InverseSqrt(0.1, warmup_steps=-1), ValueError, r"^InverseSqrt: warmup_steps must be >= 0; got -1\.$"),
    (lambda: S.Polynomial(0.1, total_steps=0), ValueError, r"^Polynomial: total_steps must be >= 1; got 0\.$"),
    (lambda: S.Polynomial(0.1, 10, power=0), ValueError, r"^Polynomial: power must be > 0\.0; got 0\.0\.$"),
    (lambda: S.Cosine(0.1, 100, min_lr=0.2), ValueError, r"^Cosine: min_lr must be <= 0\.1; got 0\.2\.$"),
    (lambda: S.Cosine(0.1, 100, warmup_steps=100), ValueError,
     r"^Cosine: warmup_steps must be < total_steps \(100\); got 100\.$"),
    (lambda: S.Cosine(0.1, 100, cycle_steps=10), ValueError,
     r"^Cosine: cycle_steps and cycle_mult need restarts=True; got cycle_steps=10, cycle_mult=1\.0\.$"),
    (lambda: S.Cosine(0.1, 100, restarts=True, cycle_mult=0.5), ValueError,
     r"^Cosine: cycle_mult must be >= 1\.0; got 0\.5\.$"),
    (lambda: S.Cosine(0.1, 100, restarts="yes"), TypeError, r"^Cosine: restarts must be True or False; got 'yes'\.$"),
    (lambda: S.Constant(0.1, per="batch"), ValueError, r"^Constant: unknown per 'batch'; choose one of 'step', "
                                                       r"'epoch'\.$"),
    (lambda: fnn.callbacks.ReduceLROnPlateau(factor=1.0), ValueError,
     r"^ReduceLROnPlateau: factor must be < 1\.0; got 1\.0\.$"),
    (lambda: fnn.callbacks.ReduceLROnPlateau(patience=-1), ValueError,
     r"^ReduceLROnPlateau: patience must be >= 0; got -1\.$"),
    (lambda: fnn.callbacks.ReduceLROnPlateau(mode="up"), ValueError,
     r"^ReduceLROnPlateau: unknown mode 'up'; choose one of 'auto', 'min', 'max'\.$"),
    (lambda: fnn.callbacks.ReduceLROnPlateau(monitor=3), TypeError,
     r"^ReduceLROnPlateau: monitor must be the name of a logged quantity such as 'val_loss'; got 3\.$"),
]


@pytest.mark.parametrize("make, error, message", ERRORS, ids=[e[2][1:40] for e in ERRORS])
def test_bad_arguments_are_rejected_when_built(make, error, message):
    with pytest.raises(error, match=message):
        make()
