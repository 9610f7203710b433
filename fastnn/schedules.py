"""Learning-rate schedules: callables ``t -> lr``, checked when built.

t counts updates from 0, so ``schedule(0)`` is the base rate, as in PyTorch (the rate of the
first update). With ``per="epoch"``, t counts epochs instead: the Trainer tells the optimizer
the epoch, and every update of epoch e uses ``schedule(e)``.

Warmup (``Cosine`` and ``InverseSqrt``): the first ``warmup_steps`` values rise linearly,
lr * (t + 1) / warmup_steps, reaching lr at t = warmup_steps - 1. So with warmup,
``schedule(0)`` is lr / warmup_steps, not lr: the warmup starts low as PyTorch's LinearLR
and Keras' warmup do, but never at 0 (the first update is not wasted; HF-style warmups that
start at 0 make it a no-op). Without warmup every schedule starts at lr.

Any callable ``t -> lr`` may also be used as an optimizer's lr.
"""

from __future__ import annotations

import math
import numbers

from ._checks import check_choice, check_float, check_int


class Schedule:
    """Base class: ``lr`` (base rate, >= 0) and ``per`` ('step' or 'epoch').

    Subclasses define ``__call__(t) -> float`` and list their extra arguments in
    ``get_config``.
    """

    def __init__(self, lr, per="step"):
        owner = type(self).__name__
        self.base_lr = check_float(owner, "lr", lr, low=0.0)
        self.per = check_choice(owner, "per", per, ("step", "epoch"))

    def __call__(self, t):
        raise NotImplementedError  # every concrete schedule defines it

    def get_config(self):
        return {"lr": self.base_lr, "per": self.per}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _warmup(owner, warmup_steps, limit=None):
    """Check warmup_steps: an integer >= 0 (and < limit, the schedule's length, when given)."""
    warmup_steps = check_int(owner, "warmup_steps", warmup_steps, low=0)
    if limit is not None and warmup_steps >= limit:
        raise ValueError(f"{owner}: warmup_steps must be < total_steps ({limit}); got {warmup_steps!r}.")
    return warmup_steps


class Constant(Schedule):
    """lr(t) = lr.

    >>> Constant(0.1)(1000)
    0.1
    """

    def __call__(self, t):
        return self.base_lr


class Step(Schedule):
    """lr(t) = lr * gamma ** floor(t / step_size): multiply by gamma every step_size steps
    (PyTorch's StepLR; with per='epoch', every step_size epochs).

    Parameters
    ----------
    lr : float, >= 0
    step_size : int, >= 1
    gamma : float, default 0.1, in (0, 1]
    per : {'step', 'epoch'}, default 'step'

    >>> Step(0.1, step_size=10, gamma=0.5)(25)
    0.025
    """

    def __init__(self, lr, step_size, gamma=0.1, per="step"):
        super().__init__(lr, per)
        self.step_size = check_int("Step", "step_size", step_size, low=1)
        self.gamma = check_float("Step", "gamma", gamma, low=0.0, high=1.0, low_open=True)

    def __call__(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)

    def get_config(self):
        return {"lr": self.base_lr, "step_size": self.step_size, "gamma": self.gamma, "per": self.per}


class Exponential(Schedule):
    """lr(t) = lr * gamma ** t (PyTorch's ExponentialLR; the lectures' alpha_0 c^t).

    Parameters
    ----------
    lr : float, >= 0
    gamma : float, in (0, 1]
    per : {'step', 'epoch'}, default 'step'

    >>> round(Exponential(0.1, gamma=0.5)(3), 12)
    0.0125
    """

    def __init__(self, lr, gamma, per="step"):
        super().__init__(lr, per)
        self.gamma = check_float("Exponential", "gamma", gamma, low=0.0, high=1.0, low_open=True)

    def __call__(self, t):
        return self.base_lr * self.gamma ** t

    def get_config(self):
        return {"lr": self.base_lr, "gamma": self.gamma, "per": self.per}


class InverseTime(Schedule):
    """lr(t) = lr / (1 + decay * t) (Keras' InverseTimeDecay with decay_steps=1; the lectures'
    1 / (1 + decay * epoch) decay with per='epoch').

    Parameters
    ----------
    lr : float, >= 0
    decay : float, >= 0
    per : {'step', 'epoch'}, default 'step'

    >>> InverseTime(0.1, decay=0.5)(2)
    0.05
    """

    def __init__(self, lr, decay, per="step"):
        super().__init__(lr, per)
        self.decay = check_float("InverseTime", "decay", decay, low=0.0)

    def __call__(self, t):
        return self.base_lr / (1.0 + self.decay * t)

    def get_config(self):
        return {"lr": self.base_lr, "decay": self.decay, "per": self.per}


class InverseSqrt(Schedule):
    """lr(t) = lr * min((t + 1) / w, sqrt(w / (t + 1))) with w = max(warmup_steps, 1): a
    linear warmup to lr at t = w - 1, then decay as 1 / sqrt(t) (the Transformer's schedule);
    without warmup lr / sqrt(t + 1).

    Parameters
    ----------
    lr : float, >= 0
        The peak rate.
    warmup_steps : int, default 0, >= 0
    per : {'step', 'epoch'}, default 'step'

    >>> s = InverseSqrt(0.1, warmup_steps=4)
    >>> [round(s(t), 4) for t in (0, 3, 15)]
    [0.025, 0.1, 0.05]
    """

    def __init__(self, lr, warmup_steps=0, per="step"):
        super().__init__(lr, per)
        self.warmup_steps = _warmup("InverseSqrt", warmup_steps)

    def __call__(self, t):
        w = max(self.warmup_steps, 1)
        return self.base_lr * min((t + 1) / w, math.sqrt(w / (t + 1)))

    def get_config(self):
        return {"lr": self.base_lr, "warmup_steps": self.warmup_steps, "per": self.per}


class Polynomial(Schedule):
    """lr(t) = (lr - end_lr) * (1 - min(t, T) / T) ** power + end_lr with T = total_steps
    (Keras' PolynomialDecay; power 1 is the lectures' linear decay), then end_lr.

    Parameters
    ----------
    lr : float, >= 0
    total_steps : int, >= 1
    power : float, default 1.0, > 0
    end_lr : float, default 0, >= 0
    per : {'step', 'epoch'}, default 'step'

    >>> Polynomial(0.1, total_steps=10, power=2.0)(5)
    0.025
    """

    def __init__(self, lr, total_steps, power=1.0, end_lr=0.0, per="step"):
        super().__init__(lr, per)
        self.total_steps = check_int("Polynomial", "total_steps", total_steps, low=1)
        self.power = check_float("Polynomial", "power", power, low=0.0, low_open=True)
        self.end_lr = check_float("Polynomial", "end_lr", end_lr, low=0.0)

    def __call__(self, t):
        left = 1.0 - min(t, self.total_steps) / self.total_steps
        return (self.base_lr - self.end_lr) * left ** self.power + self.end_lr

    def get_config(self):
        return {"lr": self.base_lr, "total_steps": self.total_steps, "power": self.power, "end_lr": self.end_lr,
                "per": self.per}


class Cosine(Schedule):
    """lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * s / S)) / 2 after an optional warmup:
    cosine decay from lr to min_lr over the S = total_steps - warmup_steps steps after the
    warmup (s = t - warmup_steps), then min_lr (as Keras' CosineDecay; PyTorch's
    CosineAnnealingLR would rise again).

    With ``restarts=True`` (SGDR, PyTorch's CosineAnnealingWarmRestarts): after the warmup the
    decay runs in cycles; the first lasts ``cycle_steps`` (default total_steps - warmup_steps),
    each next one ``cycle_mult`` times longer, and each starts again at lr.

    Parameters
    ----------
    lr : float, >= 0
        The peak rate.
    total_steps : int, >= 1
    min_lr : float, default 0, in [0, lr]
    warmup_steps : int, default 0, in [0, total_steps)
        Linear warmup lr * (t + 1) / warmup_steps first (see the module docstring).
    restarts : bool, default False
    cycle_steps : int, optional, >= 1 (only with restarts)
    cycle_mult : float, default 1, >= 1 (only with restarts)
    per : {'step', 'epoch'}, default 'step'

    References: Loshchilov and Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017.

    >>> s = Cosine(0.1, total_steps=100)
    >>> [round(s(t), 6) for t in (0, 50, 100, 150)]
    [0.1, 0.05, 0.0, 0.0]
    >>> s = Cosine(0.1, total_steps=100, restarts=True, cycle_steps=10, cycle_mult=2)
    >>> [round(s(t), 6) for t in (0, 5, 10, 20, 30)]
    [0.1, 0.05, 0.1, 0.05, 0.1]
    """

    def __init__(self, lr, total_steps, min_lr=0.0, warmup_steps=0, restarts=False, cycle_steps=None,
                 cycle_mult=1.0, per="step"):
        super().__init__(lr, per)
        self.total_steps = check_int("Cosine", "total_steps", total_steps, low=1)
        self.min_lr = check_float("Cosine", "min_lr", min_lr, low=0.0, high=self.base_lr)
        self.warmup_steps = _warmup("Cosine", warmup_steps, self.total_steps)
        if not isinstance(restarts, bool):
            raise TypeError(f"Cosine: restarts must be True or False; got {restarts!r}.")
        self.restarts = restarts
        if not restarts and (cycle_steps is not None or cycle_mult != 1):
            raise ValueError("Cosine: cycle_steps and cycle_mult need restarts=True; "
                             f"got cycle_steps={cycle_steps!r}, cycle_mult={cycle_mult!r}.")
        decay_steps = self.total_steps - self.warmup_steps
        self.cycle_steps = decay_steps if cycle_steps is None else check_int("Cosine", "cycle_steps", cycle_steps,
                                                                              low=1)
        self.cycle_mult = check_float("Cosine", "cycle_mult", cycle_mult, low=1.0)

    def _progress(self, s):
        """Fraction in [0, 1] of the current decay (cycle) reached after s post-warmup steps."""
        if not self.restarts:
            return min(s / self.cycle_steps, 1.0)
        length, mult = float(self.cycle_steps), self.cycle_mult
        if mult == 1.0:
            return (s % self.cycle_steps) / length
        # cycle i starts at length (mult^i - 1) / (mult - 1): find it in closed form, then
        # correct the floating-point rounding at the boundaries
        i = int(math.log1p(s * (mult - 1.0) / length) / math.log(mult))
        start = length * (mult ** i - 1.0) / (mult - 1.0)
        while start > s:
            i -= 1
            start = length * (mult ** i - 1.0) / (mult - 1.0)
        while s >= start + length * mult ** i:
            start += length * mult ** i
            i += 1
        return (s - start) / (length * mult ** i)

    def __call__(self, t):
        w = self.warmup_steps
        if t < w:
            return self.base_lr * (t + 1) / w
        cosine = 0.5 * (1.0 + math.cos(math.pi * self._progress(t - w)))
        return self.min_lr + (self.base_lr - self.min_lr) * cosine

    def get_config(self):
        config = {"lr": self.base_lr, "total_steps": self.total_steps, "min_lr": self.min_lr,
                  "warmup_steps": self.warmup_steps, "restarts": self.restarts}
        if self.restarts:
            config.update(cycle_steps=self.cycle_steps, cycle_mult=self.cycle_mult)
        config["per"] = self.per
        return config


def as_schedule(lr, owner="optimizer"):
    """A Schedule from a number (Constant) or a schedule/callable (returned as is)."""
    if isinstance(lr, Schedule) or (callable(lr) and not isinstance(lr, numbers.Number)):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"{owner}: lr must be a number or a schedule; got {lr!r}.")
    return Constant(check_float(owner, "lr", lr, low=0.0))


__all__ = ["Constant", "Cosine", "Exponential", "InverseSqrt", "InverseTime", "Polynomial", "Schedule", "Step",
           "as_schedule"]
