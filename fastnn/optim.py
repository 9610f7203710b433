"""Optimizers: a learning rate (float or schedule) + an update rule run as one fused kernel
pass over the model's flat parameter, gradient and state buffers.

Every rule is PyTorch's (the algorithm boxes of the torch.optim documentation), step for step
and state for state, with PyTorch's defaults; where the lecture notes write a rule differently
the class docstring says how. The flat buffers are cut into *segments*: maximal runs of
parameters that share the same options (learning-rate multiplier, weight decay). Most models
have one segment, so an update is one kernel call; frozen layers (``trainable=False``) are in
no segment at all. Scalars that depend only on the step (bias corrections, Adagrad's decayed
rate, NAdam's momentum products) are computed here in Python, once per update.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math

import numpy as np

from ._checks import as_float_array, check_choice, check_dtype_name, check_float, check_int
from .backends import get_backend
from .backends._adapter import add_operation
from .backends._ops import In, InOut
from .backends.base import Array, adam_moments
from ._params import ParamInfo as _ParamInfo
from .schedules import as_schedule


class _Segment:
    """A contiguous range [start, stop) of the flat buffers updated with the same options."""

    __slots__ = ("start", "stop", "lr_scale", "weight_decay", "views")

    def __init__(self, start, stop, lr_scale, weight_decay):
        self.start, self.stop, self.lr_scale, self.weight_decay = start, stop, lr_scale, weight_decay
        self.views = None  # (params, grads, {state name: buffer}) slices, made once per layout


def _check_betas(owner, betas):
    """(beta1, beta2), each a float in [0, 1)."""
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"{owner}: betas must be a pair (beta1, beta2); got {betas!r}.")
    out = []
    for name, beta in zip(("beta1", "beta2"), betas):
        beta = check_float(owner, name, beta)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{owner}: {name} must be in [0, 1); got {beta!r}.")
        out.append(beta)
    return tuple(out)


def _check_eps(owner, eps):
    return check_float(owner, "eps", eps, low=0.0, low_open=True)


def _check_bool(owner, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False; got {value!r}.")
    return bool(value)


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One name of the optimizer registry (REGISTRY): everything about an optimizer that is not
    its math, written once, beside its class (``@register``).

    Parameters
    ----------
    name : str
        The name ``get_optimizer``, the CLI's ``--optimizer`` and the estimators accept.
    cls : type
        The Optimizer subclass.
    cli_lr : float
        The default ``--lr`` of ``fastnn train`` for this name: a rate for its 30-epoch runs on
        small standardised data (each reaches >= 0.97 test accuracy on digits in 30 epochs, mean
        of 5 seeds; for Adam and AdamW 3e-3 rather than the class default 1e-3, which is slow
        over so few updates). The class's own default applies in the API.
    kernels : tuple of str
        The backend operations its update runs (each a spec in fastnn.backends).
    preset : dict
        Options fixed for this name ('momentum' is SGD with momentum=0.9).
    """

    name: str
    cls: type
    cli_lr: float
    kernels: tuple[str, ...]
    preset: dict = dataclasses.field(default_factory=dict)

    def make(self, **kwargs):
        """The optimizer with this entry's preset and ``kwargs``."""
        return self.cls(**{**self.preset, **kwargs})

    @property
    def factory(self):
        """The class, or the class with the preset bound (what OPTIMIZERS maps the name to)."""
        return functools.partial(self.cls, **self.preset) if self.preset else self.cls

    @property
    def defaults(self) -> dict:
        """Hyper-parameter defaults of this name (the constructor's, preset applied)."""
        sig = inspect.signature(self.cls)
        found = {k: p.default for k, p in sig.parameters.items() if p.default is not p.empty}
        return {**found, **self.preset}

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state buffers it keeps with its default options."""
        return tuple(self.make().state_names)


#: name -> OptimizerEntry, in the order the names are offered (CLI, error messages, docs)
REGISTRY: dict[str, OptimizerEntry] = {}


def register(name, *, cli_lr, kernels, variants=None):
    """Class decorator: record ``name`` (and each of ``variants``, {name: (cli_lr, preset)}) in
    REGISTRY. ``kernels``: the backend operations the update runs."""
    def record(cls):
        for key, lr, preset in [(name, cli_lr, {})] + [(k, v[0], v[1]) for k, v in (variants or {}).items()]:
            if key in REGISTRY:
                raise ValueError(f"register: optimizer name {key!r} is taken by {REGISTRY[key].cls.__name__}.")
            REGISTRY[key] = OptimizerEntry(key, cls, float(lr), tuple(kernels), dict(preset))
        return cls
    return record


class Optimizer:
    """Base class. Subclasses name their state buffers in ``state_names``, define ``_update``
    (one kernel call per segment) and, when the rule has per-step scalars, ``_begin_step``.

    Parameters
    ----------
    lr : float or schedule
        Learning rate, >= 0; a callable ``step -> lr`` (fastnn.schedules) is evaluated at each
        update (at each epoch for a schedule with ``per="epoch"``).
    weight_decay : float, default 0
        Applied to weights only (not biases) unless a layer option says otherwise.

    Attributes
    ----------
    step_count : int
        Updates applied so far (the schedule's t).
    epoch : int
        The epoch being trained, set by the Trainer; schedules with ``per="epoch"`` read it.
    lr_scale : float
        A multiplier on the schedule's value (1.0; ReduceLROnPlateau lowers it).
    """

    state_names: tuple[str, ...] = ()
    #: names of scalar attributes that are optimizer state (saved by state_dict)
    scalar_state: tuple[str, ...] = ()
    #: initial value of a state buffer when it is not 0
    initial_state: dict[str, float] = {}

    def __init__(self, lr, weight_decay=0.0):
        owner = type(self).__name__
        self.lr = as_schedule(lr, owner)
        self.weight_decay = check_float(owner, "weight_decay", weight_decay, low=0.0)
        self.step_count = 0
        self.epoch = 0
        self.lr_scale = 1.0
        self.model = None
        self.state = {}
        self._layer_options = {}
        self._segments = None
        self._bound_version = None

    # --------------------------------------------------------------- options
    def set_layer_options(self, layer, lr=None, weight_decay=None):
        """Per-layer options: ``lr`` multiplies the learning rate of this layer's parameters
        (1.0 = unchanged), ``weight_decay`` replaces the decay of its weights."""
        owner = f"{type(self).__name__}.set_layer_options"
        opts = dict(self._layer_options.get(id(layer), {}))
        if lr is not None:
            opts["lr"] = check_float(owner, "lr", lr, low=0.0)
        if weight_decay is not None:
            opts["weight_decay"] = check_float(owner, "weight_decay", weight_decay, low=0.0)
        self._layer_options[id(layer)] = opts
        self._segments = None
        return self

    def current_lr(self):
        """Learning rate of the next update: the schedule at the current step (at the current
        epoch for a schedule with ``per="epoch"``), times ``lr_scale``."""
        t = self.epoch if getattr(self.lr, "per", "step") == "epoch" else self.step_count
        return float(self.lr(t)) * self.lr_scale

    # --------------------------------------------------------------- binding
    def bind(self, model):
        """Attach to the parameters to update and allocate the state buffers (zeros, or
        ``initial_state``), each shaped like the flat parameter buffer.

        ``model`` is a built Sequential or any object with the same attributes: ``params`` and
        ``grads`` (flat buffers of one shape), ``param_info`` (entries with ``layer`` (which has
        ``trainable``), ``kind`` ('weight' gets weight decay), ``start`` and ``stop``),
        ``backend``, ``dtype`` and ``version`` (bumped when the buffers are re-made), such as
        fastnn.optim.Parameters. Binding again after ``version`` changed restarts the state
        buffers; the step count (the schedule's position) goes on.
        """
        if self.model is model and self._bound_version == model.version:
            return
        self.model = model
        backend = model.backend
        self.state = {}
        for name in self.state_names:
            buf = backend.zeros(model.params.shape, model.dtype)
            if self.initial_state.get(name, 0.0):
                backend.fill(buf, self.initial_state[name])
            self.state[name] = buf
        self._bound_version = model.version
        self._segments = None

    def segments(self):
        """The update segments of the bound model, rebuilt when options or freezing change."""
        info = self.model.param_info
        key = tuple(p.trainable for p in info)
        if self._segments is None or self._segments[0] != key:
            segs = []
            adjacent = False  # was the previous parameter in storage order put in a segment?
            for p in info:
                if not p.trainable:  # a frozen layer, or a buffer (BatchNorm's running statistics)
                    adjacent = False
                    continue
                opts = self._layer_options.get(id(p.layer), {})
                wd = opts.get("weight_decay", self.weight_decay) if p.kind == "weight" else 0.0
                lr_scale = opts.get("lr", 1.0)
                last = segs[-1] if segs else None
                # the alignment padding between parameters is zero in params and grads, and
                # every update keeps a zero parameter with a zero gradient at zero
                if adjacent and last.lr_scale == lr_scale and last.weight_decay == wd:
                    last.stop = p.stop
                else:
                    segs.append(_Segment(p.start, p.stop, lr_scale, wd))
                adjacent = True
            for seg in segs:
                cut = slice(seg.start, seg.stop)
                seg.views = (self.model.params[cut], self.model.grads[cut],
                             {k: v[cut] for k, v in self.state.items()})
            self._segments = (key, segs)
        return self._segments[1]

    # --------------------------------------------------------------- stepping
    def step(self):
        """Apply one update to the bound parameters from their gradients."""
        model = self.model
        if self._bound_version != model.version:
            self.bind(model)
        lr = self.current_lr()
        self._begin_step(self.step_count + 1)
        backend = model.backend
        for seg in self.segments():
            p, g, state = seg.views
            self._update(backend, p, g, state, lr * seg.lr_scale, seg.weight_decay)
        self.step_count += 1

    def _begin_step(self, t):
        """Per-update scalar work before the segments are updated; ``t`` counts updates from 1."""

    def _update(self, backend, p, g, state, lr, weight_decay):
        raise NotImplementedError  # every concrete optimizer defines it

    # ------------------------------------------------------------------ state
    def get_config(self):
        """The constructor's arguments other than lr."""
        return {"weight_decay": self.weight_decay}

    def state_dict(self):
        """Step count, epoch, lr_scale, scalar state, NumPy copies of the state buffers and the
        per-layer options ({layer index in the bound model's ``layers``: options}; JSON-able)."""
        backend = self.model.backend if self.model is not None else None
        index = {id(layer): i for i, layer in enumerate(getattr(self.model, "layers", None) or ())}
        return {"step_count": self.step_count, "epoch": self.epoch, "lr_scale": self.lr_scale,
                "scalars": {k: getattr(self, k) for k in self.scalar_state},
                "state": {k: backend.to_numpy(v).copy() for k, v in self.state.items()},
                "layer_options": {str(index[k]): dict(v) for k, v in self._layer_options.items() if k in index}}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned (the optimizer must be bound to the same model);
        per-layer options, when given, replace the current ones."""
        owner = f"{type(self).__name__}.load_state_dict"
        for k, v in state["state"].items():
            if k not in self.state or self.state[k].shape != np.shape(v):
                raise ValueError(f"{owner}: state {k!r} does not match this model's parameters.")
        layers = getattr(self.model, "layers", None) or ()
        options = state.get("layer_options")
        for key in options or ():
            if not isinstance(key, str) or not key.isdigit() or int(key) >= len(layers):
                raise ValueError(f"{owner}: layer key {key!r} is not a layer of the bound model "
                                 f"(0..{len(layers) - 1}).")
        if options is not None:
            self._layer_options = {}
            for key, opts in options.items():
                self.set_layer_options(layers[int(key)], **opts)
        self.step_count = int(state["step_count"])
        self.epoch = int(state.get("epoch", 0))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        for k, v in state.get("scalars", {}).items():
            if k in self.scalar_state:
                setattr(self, k, float(v))
        backend = self.model.backend
        for k, v in state["state"].items():
            backend.copy(backend.asarray(np.asarray(v, self.model.dtype)), self.state[k])

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}(lr={self.lr!r}, {args})"


@register("sgd", cli_lr=0.1, kernels=("sgd_update",),
          variants={"momentum": (0.05, {"momentum": 0.9}),
                    "nesterov": (0.05, {"momentum": 0.9, "nesterov": True})})
class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    PyTorch's rule (torch.optim.SGD): g = g + wd * p; with momentum m,
    b = g on the first step, else b = m * b + (1 - dampening) * g; g = g + m * b (Nesterov)
    or g = b; p = p - lr * g. The lectures write momentum as v = m v - lr g, p = p + v, which
    is the same trajectory for a constant lr, and Nesterov as a look-ahead gradient at
    p + m v; PyTorch's form (used here) evaluates the gradient at p and reaches the same
    iterates after a change of variables.

    Parameters
    ----------
    lr : float or schedule, default 0.01, >= 0
    momentum : float, default 0, in [0, 1)
    nesterov : bool, default False (needs momentum > 0 and dampening 0)
    dampening : float, default 0, in [0, 1]
    weight_decay : float, default 0, >= 0 (L2 added to the gradient; weights only)

    >>> import fastnn as fnn
    >>> opt = fnn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True)
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, dampening=0.0, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = check_float("SGD", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.dampening = check_float("SGD", "dampening", dampening, low=0.0, high=1.0)
        self.nesterov = _check_bool("SGD", "nesterov", nesterov)
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0; "
                             f"got momentum={self.momentum!r}, dampening={self.dampening!r}.")
        self.state_names = ("momentum_buffer",) if self.momentum else ()

    def _update(self, backend, p, g, state, lr, weight_decay):
        backend.sgd_update(p, g, state.get("momentum_buffer"), lr=lr, momentum=self.momentum,
                           dampening=self.dampening, nesterov=self.nesterov, weight_decay=weight_decay,
                           first_step=self.step_count == 0)

    def get_config(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov, "dampening": self.dampening,
                "weight_decay": self.weight_decay}


@register("adagrad", cli_lr=0.03, kernels=("adagrad_update",))
class Adagrad(Optimizer):
    """Adagrad: s = s + g^2; p = p - lr_t * g / (sqrt(s) + eps), lr_t = lr / (1 + (t - 1) lr_decay).

    PyTorch's rule (torch.optim.Adagrad), t counting updates from 1: g = g + wd * p;
    state_sum starts at ``initial_accumulator_value``. The lectures put eps inside the square
    root, sqrt(s + eps); PyTorch (and this class) adds it after the root.

    Parameters
    ----------
    lr : float or schedule, default 0.01, >= 0
    lr_decay : float, default 0, >= 0
    weight_decay : float, default 0, >= 0 (L2 added to the gradient; weights only)
    initial_accumulator_value : float, default 0, >= 0
    eps : float, default 1e-10, > 0

    Reference: Duchi, Hazan and Singer, "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization", JMLR 2011.

    >>> import fastnn as fnn
    >>> opt = fnn.optim.Adagrad(lr=0.05, initial_accumulator_value=0.1)
    """

    state_names = ("sum",)

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(lr, weight_decay)
        self.lr_decay = check_float("Adagrad", "lr_decay", lr_decay, low=0.0)
        self.initial_accumulator_value = check_float("Adagrad", "initial_accumulator_value",
                                                     initial_accumulator_value, low=0.0)
        self.initial_state = {"sum": self.initial_accumulator_value}
        self.eps = _check_eps("Adagrad", eps)
        self._decay = 1.0

    def _begin_step(self, t):
        self._decay = 1.0 / (1.0 + (t - 1) * self.lr_decay)

    def _update(self, backend, p, g, state, lr, weight_decay):
        backend.adagrad_update(p, g, state["sum"], lr=lr * self._decay, eps=self.eps,
                               weight_decay=weight_decay)

    def get_config(self):
        return {"lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}


@register("adadelta", cli_lr=1.0, kernels=("adadelta_update",))
class Adadelta(Optimizer):
    """Adadelta: v = rho v + (1 - rho) g^2; delta = sqrt(u + eps) / sqrt(v + eps) * g;
    u = rho u + (1 - rho) delta^2; p = p - lr * delta.

    PyTorch's rule (torch.optim.Adadelta), with g = g + wd * p; v (square_avg) and u
    (acc_delta) start at zero. Zeiler's paper has no lr (lr = 1, the default here).

    Parameters
    ----------
    lr : float or schedule, default 1.0, >= 0
    rho : float, default 0.9, in [0, 1]
    eps : float, default 1e-6, > 0
    weight_decay : float, default 0, >= 0 (L2 added to the gradient; weights only)

    Reference: Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.

    >>> import fastnn as fnn
    >>> opt = fnn.optim.Adadelta(rho=0.95)
    """

    state_names = ("square_avg", "acc_delta")

    def __init__(self, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.rho = check_float("Adadelta", "rho", rho, low=0.0, high=1.0)
        self.eps = _check_eps("Adadelta", eps)

    def _update(self, backend, p, g, state, lr, weight_decay):
        backend.adadelta_update(p, g, state["square_avg"], state["acc_delta"], lr=lr, rho=self.rho, eps=self.eps,
                                weight_decay=weight_decay)

    def get_config(self):
        return {"rho": self.rho, "eps": self.eps, "weight_decay": self.weight_decay}


@register("rmsprop", cli_lr=1e-3, kernels=("rmsprop_update",))
class RMSprop(Optimizer):
    """RMSprop: v = alpha v + (1 - alpha) g^2; p = p - lr * g / (sqrt(v) + eps).

    PyTorch's rule (torch.optim.RMSprop), with g = g + wd * p. ``centered``: also
    a = alpha a + (1 - alpha) g and the denominator is sqrt(v - a^2) + eps. ``momentum`` m > 0:
    b = m b + g / denom (b starts at zero) and p = p - lr * b. The lectures call alpha beta and
    put eps inside the root, sqrt(v + eps); PyTorch (and this class) adds it after the root.

    Parameters
    ----------
    lr : float or schedule, default 0.01, >= 0
    alpha : float, default 0.99, in [0, 1]
    eps : float, default 1e-8, > 0
    weight_decay : float, default 0, >= 0 (L2 added to the gradient; weights only)
    momentum : float, default 0, in [0, 1)
    centered : bool, default False

    Reference: Hinton, Srivastava and Swersky, "Neural Networks for Machine Learning",
    lecture 6e, 2012.

    >>> import fastnn as fnn
    >>> opt = fnn.optim.RMSprop(lr=1e-3, momentum=0.9, centered=True)
    """

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(lr, weight_decay)
        self.alpha = check_float("RMSprop", "alpha", alpha, low=0.0, high=1.0)
        self.eps = _check_eps("RMSprop", eps)
        self.momentum = check_float("RMSprop", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.centered = _check_bool("RMSprop", "centered", centered)
        self.state_names = (("square_avg",) + (("grad_avg",) if self.centered else ())
                            + (("momentum_buffer",) if self.momentum else ()))

    def _update(self, backend, p, g, state, lr, weight_decay):
        backend.rmsprop_update(p, g, state["square_avg"], state.get("grad_avg"), state.get("momentum_buffer"), lr=lr,
                               alpha=self.alpha, eps=self.eps, weight_decay=weight_decay, momentum=self.momentum,
                               centered=self.centered)

    def get_config(self):
        return {"alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay,
                "momentum": self.momentum, "centered": self.centered}


@register("adam", cli_lr=3e-3, kernels=("adam_update",))
class Adam(Optimizer):
    """Adam: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p = p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps).

    PyTorch's rule (torch.optim.Adam), t counting updates from 1, with g = g + wd * p (L2 in
    the gradient, "coupled"; AdamW decouples it). ``amsgrad``: v_max = max(v_max, v) replaces v
    in the denominator. The lectures write the denominator sqrt(v_hat + eps), eps inside the
    root; PyTorch (and this class) adds eps after it, as the paper does.

    Parameters
    ----------
    lr : float or schedule, default 1e-3, >= 0
    betas : (float, float), default (0.9, 0.999), each in [0, 1)
    eps : float, default 1e-8, > 0
    weight_decay : float, default 0, >= 0 (L2 added to the gradient; weights only)
    amsgrad : bool, default False

    Reference: Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015;
    Reddi, Kale and Kumar, "On the Convergence of Adam and Beyond", ICLR 2018 (AMSGrad).

    >>> import fastnn as fnn
    >>> opt = fnn.optim.Adam(lr=fnn.schedules.Cosine(3e-3, total_steps=20_000, warmup_steps=500))
    """

    #: AdamW sets it: weight decay multiplies p by 1 - lr * wd instead of entering the gradient
    decoupled_weight_decay = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        owner = type(self).__name__
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2 = _check_betas(owner, betas)
        self.eps = _check_eps(owner, eps)
        self.amsgrad = _check_bool(owner, "amsgrad", amsgrad)
        self.state_names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())
        self._corrections = (1.0, 1.0)

    def _begin_step(self, t):
        self._corrections = (1.0 - self.beta1 ** t, 1.0 - self.beta2 ** t)

    def _update(self, backend, p, g, state, lr, weight_decay):
        bc1, bc2 = self._corrections
        backend.adam_update(p, g, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"), lr=lr,
                            beta1=self.beta1, beta2=self.beta2, eps=self.eps, weight_decay=weight_decay,
                            amsgrad=self.amsgrad, decoupled_weight_decay=self.decoupled_weight_decay,
                            bias_correction1=bc1, bias_correction2=bc2)

    def get_config(self):
        return {"betas": (self.beta1, self.beta2), "eps": self.eps, "weight_decay": self.weight_decay,
                "amsgrad": self.amsgrad}


@register("adamw", cli_lr=3e-3, kernels=("adam_update",))
class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, p = p * (1 - lr * wd) before the Adam step.

    PyTorch's rule (torch.optim.AdamW): the decay does not pass through m and v, so it acts as
    a plain shrinkage of the weights whatever the gradient's scale. Applied to weights only
    (not biases) unless set_layer_options says otherwise.

    Parameters
    ----------
    lr : float or schedule, default 1e-3, >= 0
    betas : (float, float), default (0.9, 0.999), each in [0, 1)
    eps : float, default 1e-8, > 0
    weight_decay : float, default 1e-2, >= 0
    amsgrad : bool, default False

    Reference: Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    >>> import fastnn as fnn
    >>> opt = fnn.optim.AdamW(lr=1e-3, weight_decay=0.05)
    """

    decoupled_weight_decay = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


@register("adamax", cli_lr=1e-2, kernels=("adamax_update",))
class Adamax(Optimizer):
    """Adamax: m = b1 m + (1 - b1) g; u = max(b2 u, |g| + eps); p = p - lr / (1 - b1^t) * m / u.

    PyTorch's rule (torch.optim.Adamax), t counting updates from 1, with g = g + wd * p. The
    paper's u = max(b2 u, |g|) has no eps; PyTorch adds it inside the max, which keeps u > 0.

    Parameters
    ----------
    lr : float or schedule, default 2e-3, >= 0
    betas : (float, float), default (0.9, 0.999), each in [0, 1)
    eps : float, default 1e-8, > 0
    weight_decay : float, default 0, >= 0 (L2 added to the gradient; weights only)

    Reference: Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, section 7.

    >>> import fastnn as fnn
    >>> opt = fnn.optim.Adamax(betas=(0.9, 0.99))
    """

    state_names = ("exp_avg", "exp_inf")

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2 = _check_betas("Adamax", betas)
        self.eps = _check_eps("Adamax", eps)
        self._correction = 1.0

    def _begin_step(self, t):
        self._correction = 1.0 - self.beta1 ** t

    def _update(self, backend, p, g, state, lr, weight_decay):
        backend.adamax_update(p, g, state["exp_avg"], state["exp_inf"], lr=lr, beta1=self.beta1, beta2=self.beta2,
                              eps=self.eps, weight_decay=weight_decay, bias_correction1=self._correction)

    def get_config(self):
        return {"betas": (self.beta1, self.beta2), "eps": self.eps, "weight_decay": self.weight_decay}


@register("nadam", cli_lr=2e-3, kernels=("nadam_update",))
class NAdam(Optimizer):
    """NAdam: Adam with Nesterov momentum, mu_t = b1 (1 - 0.5 * 0.96^(t psi));
    p = p - lr * [(1 - mu_t) / (1 - prod_{i<=t} mu_i) * g + mu_{t+1} / (1 - prod_{i<=t+1} mu_i) * m]
    / (sqrt(v / (1 - b2^t)) + eps).

    PyTorch's rule (torch.optim.NAdam), t counting updates from 1, with g = g + wd * p;
    m and v as in Adam, psi = momentum_decay. The running product of the mu_t
    (``mu_product``) is scalar state, saved by state_dict. Dozat's paper uses a constant mu;
    the decaying schedule is PyTorch's (and Keras') "momentum cache".

    Parameters
    ----------
    lr : float or schedule, default 2e-3, >= 0
    betas : (float, float), default (0.9, 0.999), each in [0, 1)
    eps : float, default 1e-8, > 0
    weight_decay : float, default 0, >= 0 (L2 added to the gradient; weights only)
    momentum_decay : float, default 4e-3, >= 0

    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.

    >>> import fastnn as fnn
    >>> opt = fnn.optim.NAdam(lr=1e-3)
    """

    state_names = ("exp_avg", "exp_avg_sq")
    scalar_state = ("mu_product",)

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3):
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2 = _check_betas("NAdam", betas)
        self.eps = _check_eps("NAdam", eps)
        self.momentum_decay = check_float("NAdam", "momentum_decay", momentum_decay, low=0.0)
        self.mu_product = 1.0
        self._scalars = {}

    def _mu(self, t):
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def _begin_step(self, t):
        mu = self._mu(t)
        self.mu_product *= mu
        self._scalars = {"mu": mu, "mu_next": self._mu(t + 1), "mu_product": self.mu_product,
                         "bias_correction2": 1.0 - self.beta2 ** t}

    def _update(self, backend, p, g, state, lr, weight_decay):
        backend.nadam_update(p, g, state["exp_avg"], state["exp_avg_sq"], lr=lr, beta1=self.beta1, beta2=self.beta2,
                             eps=self.eps, weight_decay=weight_decay, **self._scalars)

    def get_config(self):
        return {"betas": (self.beta1, self.beta2), "eps": self.eps, "weight_decay": self.weight_decay,
                "momentum_decay": self.momentum_decay}


def radam_update(self, p: Array, g: Array, exp_avg: Array, exp_avg_sq: Array, *, lr: float, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-08, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False, bias_correction1: float, bias_correction2: float,
                 rect: float) -> None:
    """RAdam: p = p (1 - lr wd) when decoupled, else d = g + wd p; m, v as in Adam;
    p -= lr rect (m / bc1) sqrt(bc2) / (sqrt(v) + eps) when rect > 0, else (the first
    updates, while the variance estimate is intractable) p -= lr m / bc1."""
    p64, m, v = adam_moments(p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, weight_decay, decoupled_weight_decay)
    if rect > 0.0:
        p[...] = p64 - lr * rect * math.sqrt(bias_correction2) / bias_correction1 * m / (np.sqrt(v) + eps)
    else:
        p[...] = p64 - lr / bias_correction1 * m


add_operation(radam_update, InOut("p", "n", required="p must be an array"),
              In("g", "n", required="g must be an array like p"),
              InOut("exp_avg", "n", required="exp_avg must be an array like p"),
              InOut("exp_avg_sq", "n", required="exp_avg_sq must be an array like p"), anchor="p")


@register("radam", cli_lr=3e-3, kernels=("radam_update",))
class RAdam(Optimizer):
    """RAdam: Adam with its adaptive step rectified while the variance estimate is unreliable.

    m and v as in Adam (g = g + wd * p first, or p = p (1 - lr wd) with
    decoupled_weight_decay), bc_i = 1 - b_i^t, rho_inf = 2 / (1 - b2) - 1,
    rho_t = rho_inf - 2 t b2^t / bc2. While rho_t <= 5 (the first few updates):
    p = p - lr * m / bc1, momentum without the adaptive scale. After:
    p = p - lr * r_t * m / bc1 * sqrt(bc2) / (sqrt(v) + eps), with the rectification
    r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)).

    PyTorch's rule (torch.optim.RAdam), t counting updates from 1. The scalars (bc1, bc2, r_t)
    are computed here once per update; the fused pass is the operation ``radam_update``
    defined above (its NumPy reference), with a compiled kernel of the same name in
    csrc/optim.pyx and a CUDA kernel in fastnn/backends/_cuda_kernels.py.

    Parameters
    ----------
    lr : float or schedule, default 1e-3, >= 0
    betas : (float, float), default (0.9, 0.999), each in [0, 1)
    eps : float, default 1e-8, > 0
    weight_decay : float, default 0, >= 0 (weights only)
    decoupled_weight_decay : bool, default False
        False: L2 added to the gradient (torch's default); True: AdamW-style decay of the
        weights, p = p (1 - lr wd), before the update.

    Reference: Liu, Jiang, He, Chen, Liu, Gao and Han, "On the Variance of the Adaptive Learning
    Rate and Beyond", ICLR 2020.

    >>> import fastnn as fnn
    >>> opt = fnn.optim.RAdam(lr=1e-3)
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False):
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2 = _check_betas("RAdam", betas)
        self.eps = _check_eps("RAdam", eps)
        self.decoupled_weight_decay = _check_bool("RAdam", "decoupled_weight_decay", decoupled_weight_decay)
        self._scalars = {"bias_correction1": 1.0, "bias_correction2": 1.0, "rect": 0.0}

    def _begin_step(self, t):
        bc1, bc2 = 1.0 - self.beta1 ** t, 1.0 - self.beta2 ** t
        rho_inf = 2.0 / (1.0 - self.beta2) - 1.0
        rho_t = rho_inf - 2.0 * t * self.beta2 ** t / bc2
        rect = 0.0
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        self._scalars = {"bias_correction1": bc1, "bias_correction2": bc2, "rect": rect}

    def _update(self, backend, p, g, state, lr, weight_decay):
        backend.radam_update(p, g, state["exp_avg"], state["exp_avg_sq"], lr=lr, beta1=self.beta1, beta2=self.beta2,
                             eps=self.eps, weight_decay=weight_decay,
                             decoupled_weight_decay=self.decoupled_weight_decay, **self._scalars)

    def get_config(self):
        return {"betas": (self.beta1, self.beta2), "eps": self.eps, "weight_decay": self.weight_decay,
                "decoupled_weight_decay": self.decoupled_weight_decay}


#: name -> factory taking the constructor's keyword arguments ('momentum' and 'nesterov' are
#: SGD with momentum 0.9, without and with Nesterov's correction): derived from REGISTRY
OPTIMIZERS = {name: entry.factory for name, entry in REGISTRY.items()}


def get_optimizer(optimizer, lr=None, owner="Trainer"):
    """An Optimizer from an instance (returned as is) or a name in OPTIMIZERS, with its default
    options and ``lr`` (its default when None)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    check_choice(owner, "optimizer", optimizer, tuple(OPTIMIZERS))
    return OPTIMIZERS[optimizer](**({} if lr is None else {"lr": lr}))


# --------------------------------------------------------------------------- landscapes
class Parameters:
    """A free parameter vector that an optimizer can update without a model: ``params`` holds
    the values and ``grads`` receives their gradient, both flat.

    Bind an optimizer to it, write the gradient of your objective into ``grads`` and call
    ``step()``; fastnn.optim.trace does this on 2-D landscapes. Weight decay applies to every
    value (they count as weights).

    Parameters
    ----------
    values : array-like of numbers, 1-D, finite
        Initial values (copied).
    device : {'reference', 'cpu'}, default 'reference'
    dtype : {'float64', 'float32'}, default 'float64'

    >>> import numpy as np, fastnn as fnn
    >>> x = fnn.optim.Parameters([3.0, -2.0])
    >>> opt = fnn.optim.Adam(lr=0.1)
    >>> opt.bind(x)
    >>> for _ in range(300):
    ...     x.grads[:] = 2.0 * x.params        # gradient of |x|^2
    ...     opt.step()
    >>> bool(np.abs(x.params).max() < 0.05)
    True
    """

    trainable = True

    def __init__(self, values, device="reference", dtype="float64"):
        self.dtype = check_dtype_name("Parameters", dtype)
        self.backend = get_backend(device, "Parameters")
        values = as_float_array("Parameters", "values", values, self.dtype, ndim=1)
        self.params = self.backend.asarray(values.copy())
        self.grads = self.backend.zeros(values.shape, self.dtype)
        self.param_info = [_ParamInfo(self, "values", "weight", values.shape, 0, len(values))]
        self.version = 0

    def __repr__(self):
        return f"Parameters({self.backend.to_numpy(self.params).tolist()!r})"


def _fresh(optimizer):
    """A new, unbound optimizer with the options and learning rate of ``optimizer``."""
    return type(optimizer)(lr=optimizer.lr, **optimizer.get_config())


def trace(optimizer, landscape, start=None, steps=100):
    """The path of an optimizer on a 2-D landscape: an array (steps + 1, 2) of the points
    visited, ``start`` first.

    Parameters
    ----------
    optimizer : Optimizer or str
        An instance (a fresh copy with its options and lr runs, so the instance is not
        modified) or a name of OPTIMIZERS with its default options.
    landscape : fastnn.landscapes.Landscape or str
        A landscape or the name of a built-in one (fastnn.landscapes.LANDSCAPES).
    start : (float, float), optional
        Starting point; the landscape's ``start`` when None.
    steps : int, default 100, >= 0

    The optimizer runs in float64 on the reference backend through the same Optimizer
    classes that train models (bound to a 2-value fastnn.optim.Parameters). A path that
    diverges continues as inf/NaN.

    >>> import fastnn as fnn
    >>> path = fnn.optim.trace(fnn.optim.Adam(lr=0.05), "rosenbrock", start=(-1.2, 1.0), steps=2000)
    >>> path.shape, bool(abs(path[-1, 0] - 1.0) < 0.05)
    ((2001, 2), True)
    """
    from .tools.landscapes import get_landscape

    land = get_landscape(landscape, "trace")
    opt = _fresh(get_optimizer(optimizer, owner="trace"))
    steps = check_int("trace", "steps", steps, low=0)
    start = land.start if start is None else start
    if isinstance(start, (str, bytes)) or np.shape(start) != (2,):
        raise ValueError(f"trace: start must be a point (x, y); got {start!r}.")
    point = Parameters([check_float("trace", "start", v) for v in start])
    opt.bind(point)
    path = np.empty((steps + 1, 2))
    path[0] = point.params
    with np.errstate(all="ignore"):  # a diverging path is a result to show, not an error
        for i in range(1, steps + 1):
            point.grads[:] = land.gradient(point.params[0], point.params[1])
            opt.step()
            path[i] = point.params
    return path


__all__ = ["OPTIMIZERS", "REGISTRY", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "Optimizer",
           "OptimizerEntry", "Parameters", "RAdam", "RMSprop", "get_optimizer", "register", "trace"]
