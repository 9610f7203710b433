"""Layers: thin owners of parameter views and workspaces; all math goes through the backend.

A layer is built by its model (``build``), which hands it views into the model's flat
parameter and gradient buffers (``bind``). Forward and backward write into workspaces that
are allocated once for the largest batch seen and reused, so a training step allocates nothing.

The protocol a model drives (see Layer): ``build`` -> ``param_shapes`` -> ``bind`` ->
``reset_parameters``, then ``forward(x, training, skip_activation)`` and, after a training
forward, ``backward(dy, need_dx)``; ``fused_dense_step`` lets a layer join a stack that the
backend runs in one call (``Backend.dense_chain``).
"""

from __future__ import annotations

import threading

import numpy as np

from ._checks import check_choice, check_float, check_int
from .backends.base import ACTIVATIONS, DEFAULT_ALPHA, NEEDS_INPUT
from .initializers import INITS, default_init, initialize


def _check_activation(owner, name, alpha):
    """Validate an activation name and its alpha; returns (name, alpha)."""
    name = "identity" if name is None else name
    check_choice(owner, "activation", name, ACTIVATIONS)
    if alpha is None:
        alpha = DEFAULT_ALPHA.get(name, 0.0)
    if name == "leaky_relu":
        alpha = check_float(owner, "alpha", alpha, low=0.0)
    elif name == "elu":
        alpha = check_float(owner, "alpha", alpha, low=0.0, low_open=True)
    else:
        alpha = check_float(owner, "alpha", alpha)
    return name, alpha


class _Workspace:
    """Named (rows, width) buffers of one layer, grown to the largest batch seen, one set per
    thread.

    ``widths`` maps a name to a width (the layer's dtype) or to (width, dtype). ``get(n)``
    returns a dict of C-contiguous row views ``buffer[:n]`` of the calling thread's buffers,
    cached per n so that the steady state creates no arrays at all. Buffers live in a
    ``threading.local``, so several threads predicting with one model never write into each
    other's outputs (issue 17); a thread's buffers go when the thread ends. At most
    ``MAX_SIZES`` row counts keep their views (the oldest is dropped first), so predicting
    with 20,000 distinct sizes keeps 16 small dicts, not 20,000.
    """

    MAX_SIZES = 16

    def __init__(self, widths=None):
        self.widths = dict(widths or {})
        self._local = threading.local()

    def get(self, backend, dtype, n):
        local = self._local
        try:
            views = local.views.get(n)
        except AttributeError:  # this thread's first call
            local.capacity, local.full, local.views = 0, {}, {}
            views = None
        if views is None:
            if n > local.capacity:
                local.capacity = n
                local.full = {k: backend.empty((n, w), dtype) if isinstance(w, int)
                              else backend.empty((n, w[0]), w[1]) for k, w in self.widths.items()}
                local.views = {}
            elif len(local.views) >= self.MAX_SIZES:
                del local.views[next(iter(local.views))]  # the oldest size first
            views = local.views[n] = {k: buf[:n] for k, buf in local.full.items()}
        return views

    def __len__(self):
        """Row counts whose views the calling thread keeps (bounded by MAX_SIZES)."""
        return len(getattr(self._local, "views", ()))

    def __getstate__(self):  # copies and pickles carry the widths, not the buffers
        return {"widths": self.widths}

    def __setstate__(self, state):
        self.__init__(state["widths"])


class Layer:
    """Base class of every layer.

    Attributes: ``trainable`` (False freezes the layer: no weight gradient, no update),
    ``built``, ``n_in``/``n_out`` once built, ``params``/``grads`` (dicts of views into the
    model's flat buffers), ``on_trainable_change`` (None, or a callable the model sets to be
    told when ``trainable`` changes).

    The running contract, which Sequential relies on and a new layer implements:

    - ``forward(x, training=False, skip_activation=False) -> y``: x (n_samples, n_in) and y
      (n_samples, n_out) are backend arrays of the model's dtype; y is written into the
      layer's workspace (``self._ws``, one set per thread, reused per row count) or is x
      itself, and stays valid until the next forward of the same row count in the same
      thread. ``training`` selects the training behaviour (batch statistics, dropout) and
      makes the layer keep what its backward reads; an evaluation forward keeps nothing, so
      it never disturbs a training step. ``skip_activation`` (the last layer, when the loss
      fuses the activation) returns the pre-activation.
    - ``backward(dy, need_dx=True) -> dx or None``: only after ``forward(training=True)`` on
      the same rows. Writes the parameter gradients into ``grads`` (unless frozen) and returns
      dL/dx, or None when ``need_dx`` is False (nothing below needs it). ``dy`` belongs to the
      layer above (or the loss) and may be overwritten; dx may be ``dy`` itself.
    - ``fused_dense_step(rows, skip_activation, need_dx)``: this layer as one step of a fused
      Dense stack, or None (the default) when it cannot join one.
    """

    # Parameter kinds (param_shapes): "weight" is penalised (l1/l2) and decayed; "bias" and
    # "norm" (BatchNorm's gamma, beta) are trained without either; "buffer" (running statistics)
    # lives in the flat buffers, so it is saved and moved with the model, but no optimizer
    # updates it and its gradient stays zero.

    #: Rows a training batch needs (BatchNorm: 2, to estimate a variance).
    min_train_rows = 1
    #: Precision of this layer's products in training passes ('fp32' or 'bf16'), set for the
    #: length of a fit by the model (Trainer(precision=...)); evaluation passes use the dtype's.
    precision = "fp32"

    def __init__(self):
        self.on_trainable_change = None
        self.trainable = True
        self.built = False
        self.n_in = self.n_out = None
        self.params = {}
        self.grads = {}
        self.backend = None
        self.dtype = None
        self._rng = None
        self._key = 0
        self._ws = _Workspace()

    @property
    def trainable(self):
        """False freezes the layer (no weight gradient, no update)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = value
        hook = getattr(self, "on_trainable_change", None)  # None before Layer.__init__ ran
        if hook is not None:  # the model drops what it derived from the old value
            hook()

    # ------------------------------------------------------------- building
    def build(self, n_in, backend, dtype):
        """Fix the input width; returns the output width."""
        self.n_in, self.backend, self.dtype = n_in, backend, dtype
        self._ws = _Workspace()
        self.n_out = self._output_width(n_in)
        self.built = True
        return self.n_out

    def _output_width(self, n_in):
        """Output width for an input width; also declares the workspace buffers' widths."""
        return n_in

    def param_shapes(self):
        """[(name, shape, kind)] of the parameters, in storage order."""
        return []

    def bind(self, params, grads, rng, key=0):
        """Receive views into the model's flat buffers, the model's random generator
        (initialization) and the 64-bit key of the layer's counter-based random stream."""
        self.params, self.grads, self._rng, self._key = params, grads, rng, key

    def reset_parameters(self, seed=None):
        """Re-draw the parameters with the layer's init; ``seed`` makes it reproducible,
        None draws from the model's generator."""

    def check_weight(self, name, value):
        """Raise ValueError when a NumPy array cannot be parameter ``name`` (set_weights, load)."""

    def state_dict(self):
        """State other than parameters that training changes (JSON-able; checkpoints save it)."""
        return {}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned."""

    @property
    def weights(self):
        """NumPy copies of the parameters, in the order of ``get_weights``."""
        return [self.backend.to_numpy(self.params[name]).copy() for name, _, _ in self.param_shapes()]

    # -------------------------------------------------------------- running
    def forward(self, x, training=False, skip_activation=False):
        """y = f(x) for a batch x (n_samples, n_in); see the class docstring for the contract."""
        raise NotImplementedError  # every concrete layer defines it

    def backward(self, dy, need_dx=True):
        """Fill the gradients from dL/dy and return dL/dx (or None); see the class docstring."""
        raise NotImplementedError  # every concrete layer defines it

    def fused_dense_step(self, rows, skip_activation=False, need_dx=True):
        """This layer as one step of a fused Dense stack (``Backend.dense_chain``) for training
        batches of ``rows`` rows: the tuple (w, b, activation, alpha, z, y, dw, db, dx) of its
        parameters, workspaces and gradient outputs, or None when the layer cannot join one
        (the default: only Dense can)."""
        return None

    def inference_step(self):
        """This layer in evaluation as one step of the compiled inference chain (fastnn._chain,
        which Sequential.predict uses on the cpu backend): (kind, n_in, n_out, activation,
        alpha, weight, bias) over its live parameters (kind 'dense', 'affine' or 'activation'),
        () when it is the identity in evaluation, or None when it cannot join (the default; the
        model then predicts layer by layer)."""
        return None

    def _replaced(self, cls):
        """forward or backward replaced (by a subclass or on the instance): fused paths would bypass it."""
        return (type(self).forward is not cls.forward or type(self).backward is not cls.backward
                or "forward" in vars(self) or "backward" in vars(self))

    def fused_forward_done(self, x, step):
        """Told that a fused stack ran this layer's training forward on ``x`` with the buffers
        of ``step`` (from ``fused_dense_step``): keep what ``backward`` reads, as ``forward``
        would have, so that a backward layer by layer can follow."""
        raise NotImplementedError  # every layer whose fused_dense_step returns a step defines it

    @property
    def output_activation(self):
        """Name of the activation applied last by this layer ('identity' if none)."""
        return "identity"

    def get_config(self):
        return {"trainable": self.trainable}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "trainable")
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer: y = activation(x @ w + b).

    Parameters
    ----------
    units : int
        Output width, >= 1. The input width is taken from the previous layer.
    activation : str or None, default None
        One of fastnn.backends.ACTIVATIONS; None is identity. It is fused into the same pass
        over the output as the bias.
    init : str or callable, default by activation
        One of 'zeros', 'normal', 'uniform', 'xavier_uniform', 'xavier_normal', 'he_uniform',
        'he_normal', 'lecun_normal', 'orthogonal'; default 'he_normal' for relu/leaky_relu/elu
        and 'xavier_uniform' otherwise (gain 5/3 for tanh). A name given explicitly means its
        paper's formula whatever the activation (he_normal: std sqrt(2 / fan_in), with
        (1 + alpha^2) in the denominator for leaky_relu; see fastnn.initializers). A callable
        ``init(shape, rng) -> array`` is used as is.
    use_bias : bool, default True
    alpha : float, optional
        Slope of leaky_relu (default 0.01, >= 0) or scale of elu (default 1.0, > 0).

    Shape: x (n_samples, n_in) -> y (n_samples, units); w (n_in, units), b (units,).

    >>> import numpy as np, fastnn as fnn
    >>> m = fnn.Sequential([fnn.layers.Dense(2)], input_dim=4, seed=0)
    >>> m.predict(np.ones((3, 4), np.float32)).shape
    (3, 2)
    """

    def __init__(self, units, activation=None, init=None, use_bias=True, alpha=None):
        super().__init__()
        self.units = check_int("Dense", "units", units, low=1)
        self.activation, self.alpha = _check_activation("Dense", activation, alpha)
        self._init_by_activation = init is None  # the default: Xavier keeps the tanh gain
        if init is None:
            init = default_init(self.activation)
        elif not callable(init):
            check_choice("Dense", "init", init, INITS)
        self.init = init
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"Dense: use_bias must be True or False; got {use_bias!r}.")
        self.use_bias = bool(use_bias)
        self._x = self._y = self._z = None

    def _output_width(self, n_in):
        self._ws.widths = {"y": self.units, "dx": n_in}
        if self.activation in NEEDS_INPUT:
            self._ws.widths["z"] = self.units
        return self.units

    def param_shapes(self):
        shapes = [("w", (self.n_in, self.units), "weight")]
        if self.use_bias:
            shapes.append(("b", (self.units,), "bias"))
        return shapes

    def reset_parameters(self, seed=None):
        if not self.built:
            return
        rng = np.random.default_rng(seed) if seed is not None or self._rng is None else self._rng
        shape = (self.n_in, self.units)
        if callable(self.init):
            w = np.asarray(self.init(shape, rng), dtype=np.float64)
            if w.shape != shape or not np.isfinite(w).all():
                raise ValueError(
                    f"Dense: the init callable must return finite values of shape {shape}; got shape {w.shape}."
                )
        else:
            w = initialize(self.init, shape, rng, activation=self.activation, alpha=self.alpha,
                           by_activation=self._init_by_activation)
        self.backend.copy(self.backend.asarray(w.astype(self.dtype)), self.params["w"])
        if self.use_bias:
            self.backend.fill(self.params["b"], 0.0)

    @property
    def output_activation(self):
        return self.activation

    def forward(self, x, training=False, skip_activation=False):
        """y = f(x @ w + b) into the workspace; ``skip_activation`` gives the logits."""
        ws = self._ws.get(self.backend, self.dtype, x.shape[0])
        act = "identity" if skip_activation else self.activation
        z = ws.get("z") if act in NEEDS_INPUT else None
        precision = self.precision if training else "fp32"
        y = self.backend.dense_forward(x, self.params["w"], self.params.get("b"), act,
                                       alpha=self.alpha, z=z, out=ws["y"], precision=precision)
        if training:
            self._x, self._y, self._z, self._act, self._precision = x, y, z, act, precision
        return y

    def fused_dense_step(self, rows, skip_activation=False, need_dx=True):
        """(w, b, activation, alpha, z, y, dw, db, dx) for Backend.dense_chain: the same kernels,
        workspaces and gradient outputs as forward and backward; None when forward or backward
        is replaced (by a subclass or on the instance), which the fused call would bypass."""
        if self._replaced(Dense):
            return None
        ws = self._ws.get(self.backend, self.dtype, rows)
        act = "identity" if skip_activation else self.activation
        train = self.trainable
        return (self.params["w"], self.params.get("b"), act, self.alpha, ws.get("z") if act in NEEDS_INPUT else None,
                ws["y"], self.grads["w"] if train else None, self.grads["b"] if train and self.use_bias else None,
                ws["dx"] if need_dx else None)

    def fused_forward_done(self, x, step):
        self._x, self._y, self._z, self._act, self._precision = x, step[5], step[4], step[2], self.precision

    def inference_step(self):
        if self._replaced(Dense):
            return None
        return ("dense", self.n_in, self.n_out, self.activation, self.alpha, self.params["w"], self.params.get("b"))

    def backward(self, dy, need_dx=True):
        """Fill the weight gradients (unless frozen) and return dL/dx (or None)."""
        ws = self._ws.get(self.backend, self.dtype, dy.shape[0])
        train = self.trainable
        return self.backend.dense_backward(
            dy, self._x, self.params["w"], self._y, self._z, self._act, alpha=self.alpha,
            dw=self.grads["w"] if train else None,
            db=self.grads["b"] if train and self.use_bias else None,
            dx=ws["dx"] if need_dx else None,
            dz=dy,  # dy is a workspace of the next layer or the loss, free to overwrite
            precision=getattr(self, "_precision", "fp32"),  # the forward's
        )

    def get_config(self):
        cfg = {"units": self.units, "activation": self.activation}
        if self.activation in DEFAULT_ALPHA:
            cfg["alpha"] = self.alpha
        if isinstance(self.init, str) and not self._init_by_activation:
            cfg["init"] = self.init  # a default init is re-chosen by activation when loaded
        cfg["use_bias"] = self.use_bias
        cfg["trainable"] = self.trainable
        return cfg


class Activation(Layer):
    """Elementwise (softmax: row-wise) activation layer: y = f(x).

    Parameters
    ----------
    name : str
        One of 'identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'elu', 'gelu',
        'softplus', 'silu', 'softmax'.
    alpha : float, optional
        Slope of leaky_relu (default 0.01) or scale of elu (default 1.0).

    Shape: x (n_samples, n) -> y (n_samples, n).

    >>> import numpy as np, fastnn as fnn
    >>> m = fnn.Sequential([fnn.layers.Activation("relu")], input_dim=2)
    >>> m.predict(np.array([[-1.0, 2.0]], np.float32)).tolist()
    [[0.0, 2.0]]
    """

    def __init__(self, name, alpha=None):
        super().__init__()
        self.name, self.alpha = _check_activation("Activation", name, alpha)
        self._x = self._y = None
        self._skipped = False

    def _output_width(self, n_in):
        self._ws.widths = {"y": n_in, "dx": n_in}
        return n_in

    def inference_step(self):
        if self._replaced(Activation):
            return None
        return ("activation", self.n_in, self.n_out, self.name, self.alpha, None, None)

    @property
    def output_activation(self):
        return self.name

    def forward(self, x, training=False, skip_activation=False):
        if training:
            self._skipped = skip_activation
        if skip_activation:  # the loss applies this activation itself (fused logits path)
            return x
        ws = self._ws.get(self.backend, self.dtype, x.shape[0])
        y = self.backend.activation(self.name, x, alpha=self.alpha, out=ws["y"])
        if training:
            self._x, self._y = x, y
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        if self._skipped:
            return dy
        ws = self._ws.get(self.backend, self.dtype, dy.shape[0])
        x = self._x if self.name in NEEDS_INPUT else None
        return self.backend.activation_backward(self.name, dy, x, self._y, alpha=self.alpha, out=ws["dx"])

    def get_config(self):
        cfg = {"name": self.name}
        if self.name in DEFAULT_ALPHA:
            cfg["alpha"] = self.alpha
        cfg["trainable"] = self.trainable
        return cfg


class BatchNorm(Layer):
    """Batch normalization per feature: y = gamma * (x - mean) / sqrt(var + eps) + beta.

    In training, mean and var are the batch's (biased variance) and the running statistics
    move: running = (1 - momentum) * running + momentum * batch, with the unbiased variance
    var * n / (n - 1) (PyTorch's convention); in evaluation (``predict``, ``evaluate``,
    validation) the running statistics are used and left alone. Put it after a Dense layer
    without activation and before the nonlinearity. The forward and the closed-form backward
    are fused compiled kernels (two passes each).

    Parameters
    ----------
    momentum : float, default 0.1, in [0, 1]
        Weight of the current batch in the running statistics.
    eps : float, default 1e-5, > 0
        Added to the variance before the square root.

    Parameters in the model: gamma (ones) and beta (zeros), trained without weight decay or
    l1/l2 penalty; running_mean (zeros) and running_var (ones), saved with the model but never
    trained. ``get_weights`` order: [gamma, beta, running_mean, running_var].
    ``trainable=False`` freezes gamma and beta *and* normalizes with the running statistics,
    which then stay fixed (as Keras does when fine-tuning), so a frozen model behaves in
    training as it does in evaluation.

    A training batch needs at least 2 rows; the Trainer merges a last partial batch of one row
    into the previous batch.

    Shape: x (n_samples, n) -> y (n_samples, n); each parameter (n,).

    >>> import numpy as np, fastnn as fnn
    >>> m = fnn.Sequential([fnn.layers.Dense(4), fnn.layers.BatchNorm(), fnn.layers.Activation("relu")],
    ...                    input_dim=3, seed=0)
    >>> [w.shape for w in m.layers[1].weights]
    [(4,), (4,), (4,), (4,)]

    Reference: Ioffe & Szegedy, "Batch normalization: accelerating deep network training by
    reducing internal covariate shift", ICML 2015.
    """

    def __init__(self, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = check_float("BatchNorm", "momentum", momentum, low=0.0, high=1.0)
        self.eps = check_float("BatchNorm", "eps", eps, low=0.0, low_open=True)
        self._x = None
        self._stats = None  # (mean, 1 / sqrt(var + eps)) of the last training batch, for the backward
        self._batch_stats = True

    @property
    def min_train_rows(self):
        return 2 if self.trainable else 1

    def _output_width(self, n_in):
        self._ws.widths = {"y": n_in}
        self._stats = None
        return n_in

    def param_shapes(self):
        n = (self.n_in,)
        return [("gamma", n, "norm"), ("beta", n, "norm"), ("running_mean", n, "buffer"),
                ("running_var", n, "buffer")]

    def reset_parameters(self, seed=None):
        """gamma = 1, beta = 0, running_mean = 0, running_var = 1 (``seed`` is not needed)."""
        if not self.built:
            return
        for name, value in (("gamma", 1.0), ("beta", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.backend.fill(self.params[name], value)

    def check_weight(self, name, value):
        if name == "running_var" and value.size and value.min() < 0:
            raise ValueError(f"BatchNorm.set_weights: running_var must be >= 0; got {float(value.min())!r}.")

    def forward(self, x, training=False, skip_activation=False):
        """Normalize with the batch statistics (training, trainable) or the running ones."""
        p = self.params
        batch_stats = training and self.trainable
        if batch_stats and x.shape[0] < 2:
            raise ValueError(
                f"BatchNorm: a training batch needs at least 2 rows to estimate the batch variance; got "
                f"{x.shape[0]}. Use batch_size >= 2 (fastnn's Trainer merges a last partial batch of one row "
                f"into the previous one), or freeze the layer (trainable=False) to normalize with its running "
                f"statistics.")
        mean = inv_std = None
        if training:  # keep the statistics for the backward; evaluation must not overwrite them
            if self._stats is None:
                stats = self.backend.empty((2, self.n_in), self.dtype)
                self._stats = (stats[0], stats[1])
            mean, inv_std = self._stats
            self._x, self._batch_stats = x, batch_stats
        ws = self._ws.get(self.backend, self.dtype, x.shape[0])
        return self.backend.batchnorm_forward(x, p["gamma"], p["beta"], p["running_mean"], p["running_var"],
                                              eps=self.eps, momentum=self.momentum, training=batch_stats,
                                              mean=mean, inv_std=inv_std, out=ws["y"])

    def backward(self, dy, need_dx=True):
        """Fill dgamma and dbeta (unless frozen) and return dL/dx (or None), written over dy."""
        train = self.trainable
        return self.backend.batchnorm_backward(
            dy, self._x, self.params["gamma"], *self._stats, training=self._batch_stats,
            dgamma=self.grads["gamma"] if train else None, dbeta=self.grads["beta"] if train else None,
            dx=dy if need_dx else None)  # dy is a workspace of the next layer or the loss, free to overwrite

    def get_config(self):
        return {"momentum": self.momentum, "eps": self.eps, "trainable": self.trainable}


class Dropout(Layer):
    """Inverted dropout: y = x * keep / (1 - rate) in training, y = x in evaluation.

    Each element is kept with probability 1 - rate. The mask is drawn inside the compiled
    kernel from a counter-based generator (Philox4x32-10 of the layer's key, its step counter
    and the element's position; see docs/DECISIONS.md), never as a NumPy array: the key derives
    from the model's seed and the layer's position, so the same seed gives the same masks on
    every device, and the step counter (``state_dict()``) advances by one per training batch.

    Parameters
    ----------
    rate : float, in [0, 1)
        Probability of dropping an element; 0 makes the layer the identity.

    Shape: x (n_samples, n) -> y (n_samples, n).

    >>> import numpy as np, fastnn as fnn
    >>> m = fnn.Sequential([fnn.layers.Dropout(0.5)], input_dim=4, seed=0)
    >>> m.predict(np.ones((2, 4), np.float32)).tolist()   # evaluation: the identity
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]

    Reference: Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, "Dropout: a simple way
    to prevent neural networks from overfitting", JMLR 15, 2014.
    """

    def __init__(self, rate):
        super().__init__()
        self.rate = check_float("Dropout", "rate", rate, low=0.0, high=1.0, high_open=True)
        self.step = 0
        self._dropped = False

    def _output_width(self, n_in):
        self._ws.widths = {"y": n_in, "mask": (n_in, np.uint8)}
        return n_in

    def inference_step(self):
        return None if self._replaced(Dropout) else ()  # the identity in evaluation

    def forward(self, x, training=False, skip_activation=False):
        """Drop and rescale (training, rate > 0) into the workspace, else return x itself."""
        dropped = training and self.rate > 0
        if training:
            self._dropped = dropped
        if not dropped:
            return x
        ws = self._ws.get(self.backend, self.dtype, x.shape[0])
        y = self.backend.dropout_forward(x, rate=self.rate, key=self._key, step=self.step, mask=ws["mask"],
                                         out=ws["y"])
        self.step += 1
        return y

    def backward(self, dy, need_dx=True):
        """dL/dx = dy * mask / (1 - rate), written over dy (or None)."""
        if not need_dx:
            return None
        if not self._dropped:
            return dy
        mask = self._ws.get(self.backend, self.dtype, dy.shape[0])["mask"]
        return self.backend.dropout_backward(dy, mask, rate=self.rate, out=dy)

    def state_dict(self):
        """{"key": the stream's 64-bit key, "step": training batches seen}: with them a resumed
        run draws the masks an uninterrupted one would."""
        return {"key": self._key, "step": self.step}

    def load_state_dict(self, state):
        self._key = check_int("Dropout.load_state_dict", "key", state["key"], low=0, high=2**64 - 1)
        self.step = check_int("Dropout.load_state_dict", "step", state["step"], low=0, high=2**64 - 1)

    def get_config(self):
        return {"rate": self.rate, "trainable": self.trainable}


#: Layer classes by the name stored in model files.
LAYER_TYPES = {"Dense": Dense, "Activation": Activation, "BatchNorm": BatchNorm, "Dropout": Dropout}


def layer_from_config(kind, config):
    """Rebuild a layer from ``(type name, get_config())``; used by fastnn.load."""
    cls = LAYER_TYPES[kind]
    config = dict(config)
    trainable = config.pop("trainable", True)
    if not isinstance(trainable, bool):
        raise TypeError(f"{kind}: trainable must be True or False; got {trainable!r}.")
    layer = cls(**config)
    layer.trainable = trainable
    return layer


__all__ = ["Activation", "BatchNorm", "Dense", "Dropout", "Layer"]
