"""Optimizers: a learning rate (float or schedule) + an update rule run as one fused kernel
pass over the model's flat parameter, gradient and state buffers.

The flat buffers are cut into *segments*: maximal runs of parameters that share the same
options (learning-rate multiplier, weight decay). Most models have one segment, so an
update is one kernel call; frozen layers (``trainable=False``) are in no segment at all.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_float
from .schedules import as_schedule


class _Segment:
    """A contiguous range [start, stop) of the flat buffers updated with the same options."""

    __slots__ = ("start", "stop", "lr_scale", "weight_decay", "views")

    def __init__(self, start, stop, lr_scale, weight_decay):
        self.start, self.stop, self.lr_scale, self.weight_decay = start, stop, lr_scale, weight_decay
        self.views = None  # (params, grads, {state name: buffer}) slices, made once per layout


class Optimizer:
    """Base class. Subclasses name their state buffers in ``state_names`` and define ``_update``.

    Parameters
    ----------
    lr : float or schedule
        Learning rate; a callable ``step -> lr`` (fastnn.schedules) is evaluated at each update.
    weight_decay : float, default 0
        Applied to weights only (not biases) unless a layer option says otherwise.
    """

    state_names = ()

    def __init__(self, lr, weight_decay=0.0):
        owner = type(self).__name__
        self.lr = as_schedule(lr, owner)
        self.weight_decay = check_float(owner, "weight_decay", weight_decay, low=0.0)
        self.step_count = 0
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
        """Learning rate of the next update."""
        return float(self.lr(self.step_count))

    # --------------------------------------------------------------- binding
    def bind(self, model):
        """Attach to a built model: allocate state buffers like ``model.params`` (zeros)."""
        if self.model is model and self._bound_version == model.version:
            return
        self.model = model
        self.state = {name: model.backend.zeros(model.params.shape, model.dtype) for name in self.state_names}
        self._bound_version = model.version
        self._segments = None

    def segments(self):
        """The update segments of the bound model, rebuilt when options or freezing change."""
        key = tuple(layer.trainable for layer in self.model.layers)
        if self._segments is None or self._segments[0] != key:
            segs = []
            adjacent = False  # was the previous parameter in storage order put in a segment?
            for p in self.model.param_info:
                if not p.trainable:  # a frozen layer, or a buffer (BatchNorm's running statistics)
                    adjacent = False
                    continue
                opts = self._layer_options.get(id(p.layer), {})
                wd = opts.get("weight_decay", self.weight_decay) if p.kind == "weight" else 0.0
                lr_scale = opts.get("lr", 1.0)
                last = segs[-1] if segs else None
                # the alignment padding between parameters is zero in params and grads, so
                # extending a segment over it leaves it zero
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
        """Apply one update to the bound model's parameters from its gradients."""
        model = self.model
        if self._bound_version != model.version:
            self.bind(model)
        lr = self.current_lr()
        for seg in self.segments():
            p, g, state = seg.views
            self._update(model.backend, p, g, state, lr * seg.lr_scale, seg.weight_decay)
        self.step_count += 1

    def _update(self, backend, p, g, state, lr, weight_decay):
        raise NotImplementedError  # every concrete optimizer defines it

    # ------------------------------------------------------------------ state
    def get_config(self):
        return {"weight_decay": self.weight_decay}

    def state_dict(self):
        """Step count and NumPy copies of the state buffers."""
        backend = self.model.backend if self.model is not None else None
        return {"step_count": self.step_count,
                "state": {k: backend.to_numpy(v).copy() for k, v in self.state.items()}}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned (the optimizer must be bound to the same model)."""
        owner = f"{type(self).__name__}.load_state_dict"
        self.step_count = int(state["step_count"])
        for k, v in state["state"].items():
            if k not in self.state or self.state[k].shape != np.shape(v):
                raise ValueError(f"{owner}: state {k!r} does not match this model's parameters.")
            self.model.backend.copy(self.model.backend.asarray(np.asarray(v, self.model.dtype)), self.state[k])

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}(lr={self.lr!r}, {args})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    PyTorch's rule (torch.optim.SGD): g = g + wd * p; with momentum m,
    b = g on the first step, else b = m * b + (1 - dampening) * g; g = g + m * b (Nesterov)
    or g = b; p = p - lr * g. The lectures write momentum as v = m v - lr g, p = p + v, which
    is the same trajectory for a constant lr.

    Parameters
    ----------
    lr : float or schedule, default 0.01, >= 0
    momentum : float, default 0, in [0, 1)
    dampening : float, default 0, in [0, 1]
    nesterov : bool, default False (needs momentum > 0 and dampening 0)
    weight_decay : float, default 0, >= 0 (L2 added to the gradient; weights only)

    >>> import fastnn as fnn
    >>> opt = fnn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True)
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, dampening=0.0, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = check_float("SGD", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.dampening = check_float("SGD", "dampening", dampening, low=0.0, high=1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD: nesterov must be True or False; got {nesterov!r}.")
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0; "
                             f"got momentum={self.momentum!r}, dampening={self.dampening!r}.")
        self.nesterov = bool(nesterov)
        self.state_names = ("momentum_buffer",) if self.momentum else ()

    def _update(self, backend, p, g, state, lr, weight_decay):
        backend.sgd_update(p, g, state.get("momentum_buffer"), lr=lr, momentum=self.momentum,
                           dampening=self.dampening, nesterov=self.nesterov, weight_decay=weight_decay,
                           first_step=self.step_count == 0)

    def get_config(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov, "dampening": self.dampening,
                "weight_decay": self.weight_decay}


OPTIMIZERS = {"sgd": SGD}


def get_optimizer(optimizer, lr=None, owner="Trainer"):
    """An Optimizer from an instance or a name ('sgd', or 'momentum' for SGD with 0.9)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    from ._checks import check_choice

    names = tuple(OPTIMIZERS) + ("momentum", "nesterov")
    check_choice(owner, "optimizer", optimizer, names)
    kw = {} if lr is None else {"lr": lr}
    if optimizer == "momentum":
        return SGD(momentum=0.9, **kw)
    if optimizer == "nesterov":
        return SGD(momentum=0.9, nesterov=True, **kw)
    return OPTIMIZERS[optimizer](**kw)


__all__ = ["Optimizer", "OPTIMIZERS", "SGD", "get_optimizer"]
