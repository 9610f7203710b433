"""Learning-rate schedules: callables ``step -> lr``, checked when built.

Steps count updates from 0, so ``schedule(0)`` is the base rate (as in PyTorch). With
``per="epoch"`` the Trainer passes the epoch number instead of the update number.
"""

from __future__ import annotations

import numbers

from ._checks import check_choice, check_float


class Schedule:
    """Base class: ``lr`` (base rate) and ``per`` ('step' or 'epoch')."""

    def __init__(self, lr, per="step"):
        owner = type(self).__name__
        self.base_lr = check_float(owner, "lr", lr, low=0.0)
        self.per = check_choice(owner, "per", per, ("step", "epoch"))

    def __call__(self, step):
        raise NotImplementedError  # every concrete schedule defines it

    def get_config(self):
        return {"lr": self.base_lr, "per": self.per}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """lr(t) = lr.

    >>> Constant(0.1)(1000)
    0.1
    """

    def __call__(self, step):
        return self.base_lr


def as_schedule(lr, owner="optimizer"):
    """A Schedule from a number (Constant) or a schedule/callable (returned as is)."""
    if isinstance(lr, Schedule) or (callable(lr) and not isinstance(lr, numbers.Number)):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"{owner}: lr must be a number or a schedule; got {lr!r}.")
    return Constant(check_float(owner, "lr", lr, low=0.0))


__all__ = ["Constant", "Schedule", "as_schedule"]
