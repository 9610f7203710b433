"""Sequential: a stack of layers whose parameters live in one flat buffer.

All parameters of a model are views into ``model.params`` (one flat array) and all gradients
views into ``model.grads``, so an optimizer update, a global gradient norm or a clip is one
kernel call whatever the depth of the model.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from . import _chain
from ._checks import as_float_array, check_choice, check_dtype_name, check_int, check_seed
from ._modelfile import save_model
from ._params import layout
from ._random import stream_key
from .backends import get_backend
from .backends.base import PRECISIONS
from .layers import Layer

#: Rows per chunk in predict when no batch size is given (bounded workspace memory).
_PREDICT_CHUNK = 4096
#: Serialises the lazy build on a first predict/fit (see ensure_built).
_BUILD_LOCK = threading.Lock()


class Sequential:
    """A feed-forward stack of layers: y = f_L(... f_1(x)).

    Parameters
    ----------
    layers : sequence of Layer, default ()
    input_dim : int, optional
        Number of input features; when None it is inferred on the first fit/predict.
    seed : int, optional
        Seed of the model's generator (initialization) and of its layers' random streams
        (Dropout masks); None draws fresh entropy.
    device : {'cpu', 'cuda', 'reference'}, default 'cpu'
    dtype : {'float32', 'float64'}, default 'float32'

    Attributes: ``layers``, ``params`` and ``grads`` (flat buffers, once built), ``n_params``.

    >>> import numpy as np, fastnn as fnn
    >>> m = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)],
    ...                    input_dim=4, seed=0)
    >>> m.n_params, m.predict(np.zeros((2, 4), np.float32)).shape
    (67, (2, 3))
    """

    def __init__(self, layers=(), input_dim=None, seed=None, device="cpu", dtype="float32"):
        self.seed = check_seed("Sequential", seed)
        self.dtype = check_dtype_name("Sequential", dtype)
        self.backend = get_backend(device, "Sequential")
        self.input_dim = None if input_dim is None else check_int("Sequential", "input_dim", input_dim, low=1)
        self._rng = np.random.default_rng(self.seed)
        self._entropy = self._rng.bit_generator.seed_seq.entropy  # the seed, or the entropy drawn for None
        self.layers = []
        self.params = self.grads = None
        self.param_info = []
        self.version = 0  # bumped whenever the flat buffers are re-made (optimizers re-bind)
        self.metadata = {}  # JSON-able notes saved with the model (e.g. the CLI's columns and classes)
        self._chains = {}  # (rows, logits, precision) -> (compiled Dense chain, its steps) or None
        self._precision = "fp32"  # of the Dense products in training (Trainer(precision=...))
        self._chain = None  # the chain whose forward ran last (its backward follows)
        self._chain_steps = None  # the steps whose outputs the layers last recorded
        self._chain_input = None  # and the input the first layer recorded
        self._predictor = None  # (key, fastnn._chain.Runner or None): predict's compiled chain
        if isinstance(layers, Layer) or not hasattr(layers, "__iter__"):
            raise TypeError(f"Sequential: layers must be a list of layers; got {layers!r}.")
        for layer in layers:
            self._append(layer)
        if self.input_dim is not None and self.layers:
            self.build(self.input_dim)

    # ------------------------------------------------------------------ shape
    @property
    def device(self):
        return self.backend.name

    @property
    def built(self):
        return self.params is not None

    @property
    def n_out(self):
        """Output width (after build)."""
        return self.layers[-1].n_out if self.built else None

    @property
    def n_params(self):
        """Number of parameters (trainable or not), padding excluded."""
        return sum(int(np.prod(p.shape)) for p in self.param_info)

    @property
    def output_activation(self):
        """Activation applied last by the model ('identity' for logits)."""
        return self.layers[-1].output_activation if self.layers else "identity"

    @property
    def min_train_rows(self):
        """Rows every training batch needs (2 with a trainable BatchNorm, else 1)."""
        return max((layer.min_train_rows for layer in self.layers), default=1)

    def _append(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential: expected a fastnn layer; got {layer!r}.")
        if any(layer is other for other in self.layers):
            raise ValueError(f"Sequential: {layer!r} is already in the model; create a new layer instead.")
        self.layers.append(layer)

    def add(self, layer):
        """Append a layer; the weights of the layers already built are kept."""
        self._append(layer)
        if self.built:
            self._rebuild()
        elif self.input_dim is not None:
            self.build(self.input_dim)
        return self

    def pop(self):
        """Remove and return the last layer; the other layers keep their weights."""
        if not self.layers:
            raise IndexError("Sequential.pop: the model has no layers.")
        layer = self.layers.pop()
        layer.built = False
        layer.on_trainable_change = None
        if self.built:
            self._rebuild() if self.layers else self._clear()
        return layer

    def _clear(self):
        self.params = self.grads = None
        self.param_info = []
        self.version += 1

    def build(self, input_dim, keep=None, initialize=True):
        """Build every layer for ``input_dim`` features and lay their parameters out in the flat
        buffers ``params`` and ``grads`` (fastnn._params.layout); returns the model.

        ``keep`` maps ``id(layer)`` to host copies of that layer's weights to restore (add, pop
        and ``to`` keep the weights of the layers already built). ``initialize=False`` leaves
        the other parameters at zero, for a caller that sets every weight next (fastnn.io
        loading a file: no random draws only to be overwritten). Building again re-makes the
        buffers and bumps ``version`` (optimizers re-bind).
        """
        owner = "Sequential.build"
        if not self.layers:
            raise ValueError(f"{owner}: the model has no layers; add one with model.add(...).")
        input_dim = check_int(owner, "input_dim", input_dim, low=1)
        n = self.input_dim = input_dim
        entries = []
        for layer in self.layers:
            n = layer.build(n, self.backend, self.dtype)
            entries += [(layer, name, shape, kind) for name, shape, kind in layer.param_shapes()]
        specs, size = layout(entries)
        params = self.backend.zeros((size,), self.dtype)
        grads = self.backend.zeros((size,), self.dtype)
        for index, layer in enumerate(self.layers):
            mine = [p for p in specs if p.layer is layer]
            layer.bind({p.name: params[p.start:p.stop].reshape(p.shape) for p in mine},
                       {p.name: grads[p.start:p.stop].reshape(p.shape) for p in mine}, self._rng,
                       stream_key(self._entropy, index))
            layer.on_trainable_change = self._layer_trainable_changed
            old = (keep or {}).get(id(layer))
            if old is not None and [w.shape for w in old] == [p.shape for p in mine]:
                layer_set_weights(layer, old)
            elif initialize:
                layer.reset_parameters()
        # published last: another thread that sees `built` sees initialised layers
        self.param_info = specs
        self.params, self.grads = params, grads
        self.version += 1
        self._chains.clear()
        return self

    def _layer_trainable_changed(self):
        """A layer was frozen or unfrozen: its fused chains (gradient outputs, the lowest layer
        that needs dx) are out of date. A method rather than ``self._chains.clear``: copying a
        model (copy.deepcopy) rebinds it to the copy."""
        self._chains.clear()

    def _rebuild(self):
        keep = {id(layer): layer.weights for layer in self.layers if layer.built and layer.params}
        self.build(self.input_dim, keep)

    def ensure_built(self, n_features, owner="Sequential"):
        """Build the model for ``n_features`` inputs if it is not built (once, when several
        threads predict with an unbuilt model), else check that it was built for that many;
        ``owner`` names the caller in the error."""
        if not self.built:
            with _BUILD_LOCK:  # two threads predicting with an unbuilt model build it once
                if not self.built:
                    self.build(n_features)
        if n_features != self.input_dim:
            raise ValueError(f"{owner}: X has {n_features} features; the model was built for {self.input_dim}.")

    def to(self, device):
        """Move parameters (and future computation) to ``device``; returns the model."""
        backend = get_backend(device, "Sequential.to")
        if backend is self.backend:
            return self
        keep = {id(layer): layer.weights for layer in self.layers} if self.built else None
        self.backend = backend
        if keep is not None:
            self.build(self.input_dim, keep)
        return self

    # ------------------------------------------------------------ computation
    def forward(self, x, training=False, logits=False):
        """The stack's output for a batch ``x`` (n_samples, input_dim), a backend array.

        ``training``: the training pass (batch statistics, dropout) that ``backward`` follows;
        ``logits``: stop before the final activation (the loss fuses it). The result is a view
        of the last layer's workspace (or ``x`` itself), valid until the next forward of the
        same row count in the same thread: copy it to keep it.

        In training, a stack of layers that all join a fused Dense stack
        (``Layer.fused_dense_step``) runs through the backend's ``dense_chain`` (one compiled
        call on the cpu backend), with the same kernels and workspaces as layer by layer."""
        self._chain = None
        if training:
            entry = self._dense_chain(x.shape[0], logits)
            if entry is not None:
                chain, steps = entry
                try:
                    out = chain.forward(x)
                except (TypeError, ValueError, AttributeError):  # x unlike the chain's arrays: layer by layer
                    pass
                else:
                    if self._chain_steps is not steps or self._chain_input is not x:
                        # what each layer's backward reads, as after its own forward (the same
                        # buffers every step of a batch size, the input too when it is gathered)
                        layers = self.layers
                        layers[0].fused_forward_done(x, steps[0])
                        for i in range(1, len(layers)):
                            layers[i].fused_forward_done(steps[i - 1][5], steps[i])
                        self._chain_steps, self._chain_input = steps, x
                    self._chain = chain
                    return out
        self._chain_steps = self._chain_input = None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer.forward(x, training, skip_activation=logits and i == last)
        return x

    def backward(self, dy):
        """Backpropagate dL/dy (the gradient of the loss with respect to the output of the last
        ``forward(training=True)``) through the layers that need it, filling ``grads``.

        ``dy`` may be overwritten. Stops below the first trainable layer with parameters:
        nothing under it needs dx.
        """
        chain, self._chain = self._chain, None
        if chain is not None:
            try:
                chain.backward(dy)
                return
            except (TypeError, ValueError, AttributeError):  # dy unlike the chain's: layer by layer
                pass
        first = self._first_trained()
        if first is None:
            return
        for i in range(len(self.layers) - 1, first - 1, -1):
            dy = self.layers[i].backward(dy, need_dx=i > first)

    def _first_trained(self):
        """Index of the lowest trainable layer with parameters (None: none)."""
        return next((i for i, layer in enumerate(self.layers) if layer.trainable and layer.params), None)

    @contextlib.contextmanager
    def training_precision(self, precision):
        """Within the block, ``forward(training=True)`` and ``backward`` run the Dense products in
        ``precision`` ('fp32': the model's dtype; 'bf16': bfloat16 operands, float32 sums, for a
        float32 model); every layer's ``precision`` follows, and both are restored after. What
        ``Trainer(precision=...)`` sets for the length of ``fit``."""
        precision = check_precision("Sequential.training_precision", precision, self)
        previous = getattr(self, "_precision", "fp32")
        self._set_precision(precision)
        try:
            yield
        finally:
            self._set_precision(previous)

    def _set_precision(self, precision):
        self._precision = precision
        for layer in self.layers:
            layer.precision = precision

    def _dense_chain(self, rows, logits):
        """(compiled chain, its steps) for a training step of ``rows`` rows when every layer
        joins a fused Dense stack and the backend compiles the stack; else None. Cached per
        (rows, logits, precision); the cache is emptied when the model is built again or a
        layer's ``trainable`` changes."""
        precision = getattr(self, "_precision", "fp32")
        key = (rows, logits, precision)
        entry = self._chains.get(key, False)
        if entry is not False:
            return entry
        if len(self._chains) > 8:
            self._chains.clear()
        first = self._first_trained()
        entry = None
        if first is not None:
            last = len(self.layers) - 1
            steps = []
            for i, layer in enumerate(self.layers):
                step = layer.fused_dense_step(rows, skip_activation=logits and i == last, need_dx=i > first)
                if step is None:
                    break
                steps.append(step)
            else:
                chain = self.backend.dense_chain(steps, first, precision)
                entry = None if chain is None else (chain, tuple(steps))
        self._chains[key] = entry
        return entry

    def predict(self, X, batch_size=None):
        """Model output for X (n_samples, n_features) as a NumPy array (n_samples, n_out).

        A model ending in softmax/sigmoid returns probabilities; one ending in a Dense layer
        without activation returns raw scores (logits).

        Thread-safe: several threads may predict with one model at once (not while it is being
        trained or changed). Each thread computes in its own workspaces (a threading.local, freed
        with the thread) rather than under a lock: no waiting, and large predictions overlap in
        BLAS, for the price of one workspace set (at most ``batch_size`` rows, default 4096) per
        thread. Measured (64-128-64-10 MLP, 2 shared cores, one BLAS thread): one row 18.4 us
        per-thread vs 19.2 us locked; 4 threads x 5 calls x 10,000 rows 0.13 s vs 0.14 s locked.
        Workspace views are kept for at most 16 row counts per layer and thread, so any number
        of distinct sizes uses bounded memory.
        """
        X = as_float_array("Sequential.predict", "X", X, self.dtype)
        if not self.layers:
            raise ValueError("Sequential.predict: the model has no layers; add one with model.add(...).")
        self.ensure_built(X.shape[1], "Sequential.predict")
        chunk = _PREDICT_CHUNK if batch_size is None else check_int("Sequential.predict", "batch_size",
                                                                       batch_size, low=1)
        out = np.empty((X.shape[0], self.n_out), dtype=self.dtype)
        predictor = self._compiled_predictor()
        if predictor is not None:
            predictor.run(X, out, chunk)
            return out
        for start in range(0, X.shape[0], chunk):
            xb = self.backend.asarray(X[start:start + chunk])
            out[start:start + chunk] = self.backend.to_numpy(self.forward(xb))
        return out

    def _compiled_predictor(self):
        """The compiled inference chain over this model's live parameters (fastnn._chain.Runner:
        one call per predict, as fastnn.inference's compiled engine), made again when the buffers
        are re-made; None off the cpu backend, where the engine cannot be imported, or when a
        layer cannot join it (``Layer.inference_step``): predict then runs layer by layer."""
        if self.backend.name != "cpu" or not self.built:
            return None
        steps = []
        for layer in self.layers:
            step = layer.inference_step()
            if step is None:
                return None
            if step:
                steps.append(step)
        if not steps:
            return None
        key = (self.version, tuple(s[:5] + (id(s[5]), id(s[6])) for s in steps))
        cached = self._predictor
        if cached is not None and cached[0] == key:
            return cached[1]
        runner = None
        if _chain.module() is not None:
            try:
                runner = _chain.Runner(steps, self.dtype)
            except (TypeError, ValueError):  # arrays the chain does not take: layer by layer
                runner = None
        self._predictor = (key, runner)
        return runner

    def __getstate__(self):
        # compiled chains (training's and predict's) are made again where the copy runs
        state = dict(self.__dict__)
        state.update(_chains={}, _chain=None, _predictor=None)
        return state

    def predict_proba(self, X, batch_size=None):
        """Class probabilities of a classifier, (n_samples, n_classes), rows summing to 1,
        whether the model ends in logits or in softmax/sigmoid.

        Several outputs: softmax of the logits (or the softmax output as it is). One output:
        binary, columns [P(class 0), P(class 1)] from the sigmoid of the logit (or the sigmoid
        output). A model whose last layer is an inverse Standardize is a regressor: ValueError.
        """
        owner = "Sequential.predict_proba"
        if self.layers and getattr(self.layers[-1], "inverse", False):
            raise ValueError(f"{owner}: the model ends in Standardize(inverse=True), a regressor; use predict.")
        out = np.asarray(self.predict(X, batch_size), np.float64)
        act = self.output_activation
        if out.shape[1] == 1:
            p = out[:, 0] if act == "sigmoid" else 0.5 * (1.0 + np.tanh(0.5 * out[:, 0]))  # stable sigmoid
            return np.stack([1.0 - p, p], axis=1).astype(self.dtype)
        if act != "softmax":
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return out.astype(self.dtype)

    def predict_classes(self, X, batch_size=None):
        """Predicted class indices (n_samples,) of a classifier: the argmax of predict_proba
        (for one output, 1 where P(class 1) > 0.5)."""
        return self.predict_proba(X, batch_size).argmax(axis=1)

    # ------------------------------------------------------------ weights
    def get_weights(self):
        """NumPy copies of every parameter, layer by layer (Dense: [w, b])."""
        return [w for layer in self.layers for w in (layer.weights if layer.built else [])]

    def set_weights(self, weights):
        """Set every parameter from a list shaped like ``get_weights()``."""
        if not self.built:
            raise ValueError("Sequential.set_weights: the model is not built yet; give input_dim or call fit first.")
        weights = list(weights)
        expected = [p.shape for p in self.param_info]
        if len(weights) != len(expected):
            raise ValueError(f"Sequential.set_weights: expected {len(expected)} arrays; got {len(weights)}.")
        i = 0
        for layer in self.layers:
            n = len(layer.param_shapes())
            layer_set_weights(layer, weights[i:i + n])
            i += n

    def reset_parameters(self, seed=None):
        """Re-initialize every layer (seed: reproducible; None: from the model's generator)."""
        if seed is not None:
            self._rng = np.random.default_rng(check_seed("Sequential.reset_parameters", seed))
        for layer in self.layers:
            if layer.built:
                layer._rng = self._rng
                layer.reset_parameters()

    # ------------------------------------------------------------- describing
    def get_config(self):
        """Architecture as plain JSON-able data (used by the model file)."""
        return {
            "input_dim": self.input_dim,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "layers": [{"type": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
        }

    def summary(self, print_fn=print):
        """Print (and return) a table of layers, output shapes and parameter counts."""
        rows = [("Layer", "Output shape", "Params", "Trainable")]
        for layer in self.layers:
            n = sum(int(np.prod(s)) for _, s, _ in layer.param_shapes()) if layer.built else 0
            shape = f"(None, {layer.n_out})" if layer.built else "?"
            rows.append((repr(layer), shape, f"{n:,}", "yes" if layer.trainable else "no"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"Total params: {self.n_params:,}  (device={self.device}, dtype={self.dtype.name}, "
                     f"input_dim={self.input_dim})")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def save(self, path):
        """Write the model to a ``.fnn`` file (zip of JSON + .npy, atomic; see fastnn.io)."""
        save_model(self, path)

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_dim={self.input_dim}, device={self.device!r}, dtype={self.dtype.name!r})"


def layer_set_weights(layer, weights):
    """Copy host arrays into a layer's parameter views, checking count, shape and finiteness."""
    shapes = layer.param_shapes()
    if len(weights) != len(shapes):
        raise ValueError(f"{type(layer).__name__}.set_weights: expected {len(shapes)} arrays; got {len(weights)}.")
    for (name, shape, _), w in zip(shapes, weights):
        w = as_float_array(f"{type(layer).__name__}.set_weights", name, w, layer.dtype, ndim=len(shape),
                           allow_empty=True)
        if w.shape != tuple(shape):
            raise ValueError(f"{type(layer).__name__}.set_weights: {name} must have shape {tuple(shape)}; "
                             f"got {w.shape}.")
        layer.check_weight(name, w)
        layer.backend.copy(layer.backend.asarray(w), layer.params[name])


def check_precision(owner, precision, model):
    """``precision`` of a training run, checked for ``model``: 'fp32' (the model's dtype) for any
    model, 'bf16' for a float32 one (ValueError otherwise, naming the remedy)."""
    precision = check_choice(owner, "precision", precision, PRECISIONS)
    if precision == "bf16" and model.dtype != np.float32:
        raise ValueError(f"{owner}: precision='bf16' rounds a float32 model's products to bfloat16; this model is "
                         f"{np.dtype(model.dtype).name}. Build it with dtype='float32' (the default) or use "
                         f"precision='fp32'.")
    return precision
