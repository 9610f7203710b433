"""The optimizer table of the tests (after PyTorch's ``optim_db``): one entry per optimizer
configuration, each naming its fastnn constructor, its torch.optim constructor and its key in
the golden file ``optim_torch.npz``.

The same table drives ``record_torch.py`` (which needs torch and numpy only, never fastnn) and
``tests/test_optim.py`` (which needs fastnn and numpy only; torch is used where installed).
Adding an optimizer to the tests is one ``OptimCase`` here (with ``converge``), then a re-recording
(``python tests/golden/record_torch.py`` where torch is installed) to write its trajectory.

Every trajectory starts from the same 12 values, takes STEPS steps with the same gradients and
follows an exponentially decaying learning rate ``lr * GAMMA ** t`` at step t (fastnn:
``fastnn.schedules.Exponential(lr, GAMMA)``; torch: the value written into its param group).
"""

from __future__ import annotations

import dataclasses
import json

#: the golden file, beside this module
GOLDEN_FILE = "optim_torch.npz"
#: size of the parameter vector (also a (4, 3) Dense kernel), steps per trajectory, lr decay per step
N_PARAMS, STEPS, GAMMA = 12, 30, 0.95


@dataclasses.dataclass(frozen=True)
class OptimCase:
    """One optimizer configuration: ``name(lr, **kwargs)`` in fastnn.optim, and
    ``torch_name(params, lr, **torch_kwargs)`` in torch.optim (by default the same name and
    options), recorded under ``key``.

    Parameters
    ----------
    key : str
        Golden key: letters, digits and '-' only; unique in OPTIM_DB.
    name : str
        Class name in fastnn.optim.
    lr : float
        Learning rate at step 0 (it then decays by GAMMA per step).
    kwargs : dict
        Options of the fastnn constructor.
    torch_name, torch_kwargs : str and dict, optional
        Class name and options in torch.optim, where they differ from fastnn's.
    converge : tuple, optional
        For the convergence test of tests/test_optim.py (not recorded): options per toy problem
        (quadratic, logistic, spirals), merged over ``kwargs``, the lr defaulting to the class's;
        a 4th item {problem: (updates, tolerance)} overrides the problem's budget. Every
        optimizer class needs one entry with it.
    """

    key: str
    name: str
    lr: float
    kwargs: dict = dataclasses.field(default_factory=dict)
    torch_name: str | None = None
    torch_kwargs: dict | None = None
    converge: tuple | None = dataclasses.field(default=None, compare=False)

    def make_fastnn(self, fnn, lr):
        """The fastnn optimizer; ``lr`` a float or a schedule."""
        return getattr(fnn.optim, self.name)(lr=lr, **self.kwargs)

    def make_torch(self, torch, params, lr):
        """The torch.optim optimizer over ``params`` (a list of tensors)."""
        kwargs = self.kwargs if self.torch_kwargs is None else self.torch_kwargs
        return getattr(torch.optim, self.torch_name or self.name)(params, lr=lr, **kwargs)

    def torch_config(self):
        """What the recording ran, as JSON: stored beside the trajectory, so that an entry
        changed after recording is caught (the test then asks for a re-recording)."""
        kwargs = self.kwargs if self.torch_kwargs is None else self.torch_kwargs
        return json.dumps({"torch_name": self.torch_name or self.name, "lr": self.lr, "gamma": GAMMA,
                           "steps": STEPS, "kwargs": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in sorted(kwargs.items())}}, sort_keys=True)


OPTIM_DB = [
    OptimCase("sgd", "SGD", 0.05, converge=(dict(lr=0.3), dict(lr=1.0), dict(lr=0.1))),
    OptimCase("sgd-momentum", "SGD", 0.05, dict(momentum=0.9),
              converge=(dict(lr=0.1), dict(lr=0.1), dict(lr=0.01))),
    OptimCase("sgd-dampening", "SGD", 0.05, dict(momentum=0.9, dampening=0.5)),
    OptimCase("sgd-nesterov", "SGD", 0.05, dict(momentum=0.8, nesterov=True),
              converge=(dict(lr=0.1, momentum=0.9), dict(lr=0.1, momentum=0.9), dict(lr=0.01, momentum=0.9))),
    OptimCase("sgd-momentum-wd", "SGD", 0.05, dict(momentum=0.9, weight_decay=0.1)),
    OptimCase("sgd-nesterov-wd", "SGD", 0.05, dict(momentum=0.9, nesterov=True, weight_decay=0.05)),
    OptimCase("sgd-wd", "SGD", 0.05, dict(weight_decay=0.3)),
    OptimCase("adagrad", "Adagrad", 0.1, converge=(dict(lr=1.0), dict(lr=1.0), dict(lr=0.03))),
    OptimCase("adagrad-options", "Adagrad", 0.1,
              dict(lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.3, eps=1e-6)),
    # Adadelta's steps grow from sqrt(eps) (no lr in the paper): slow on the quadratic
    OptimCase("adadelta", "Adadelta", 1.0,
              converge=(dict(eps=1e-4), dict(eps=1e-3), dict(), {"quadratic": (500, 0.02)})),
    OptimCase("adadelta-options", "Adadelta", 1.0, dict(rho=0.7, eps=1e-5, weight_decay=0.1)),
    OptimCase("rmsprop", "RMSprop", 0.01, converge=(dict(lr=0.1), dict(lr=0.1), dict(lr=0.003))),
    OptimCase("rmsprop-alpha-wd", "RMSprop", 0.01, dict(alpha=0.9, weight_decay=0.1)),
    OptimCase("rmsprop-momentum", "RMSprop", 0.01, dict(momentum=0.9)),
    OptimCase("rmsprop-centered", "RMSprop", 0.01, dict(centered=True)),
    OptimCase("rmsprop-all", "RMSprop", 0.01, dict(momentum=0.5, centered=True, weight_decay=0.05, eps=1e-6)),
    OptimCase("adam", "Adam", 0.05, converge=(dict(lr=0.1), dict(lr=1.0), dict(lr=0.01))),
    OptimCase("adam-betas-wd", "Adam", 0.05, dict(betas=(0.8, 0.99), weight_decay=0.1)),
    OptimCase("adam-amsgrad", "Adam", 0.05, dict(amsgrad=True)),
    OptimCase("adam-amsgrad-wd", "Adam", 0.05, dict(amsgrad=True, weight_decay=0.1, eps=1e-6)),
    OptimCase("adamw", "AdamW", 0.05, converge=(dict(lr=0.1), dict(lr=1.0), dict(lr=0.01))),
    OptimCase("adamw-amsgrad", "AdamW", 0.05, dict(weight_decay=0.3, amsgrad=True)),
    OptimCase("adamax", "Adamax", 0.05, converge=(dict(lr=0.3), dict(lr=1.0), dict(lr=0.01))),
    OptimCase("adamax-options", "Adamax", 0.05, dict(betas=(0.5, 0.9), weight_decay=0.1)),
    OptimCase("nadam", "NAdam", 0.05, converge=(dict(lr=0.1), dict(lr=1.0), dict(lr=0.01))),
    OptimCase("nadam-options", "NAdam", 0.05, dict(weight_decay=0.1, momentum_decay=0.05, betas=(0.8, 0.99))),
    OptimCase("radam", "RAdam", 0.05, converge=(dict(lr=0.2), dict(lr=1.0), dict(lr=0.01))),
    OptimCase("radam-options", "RAdam", 0.05, dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    OptimCase("radam-decoupled", "RAdam", 0.05, dict(weight_decay=0.3, decoupled_weight_decay=True)),
]
