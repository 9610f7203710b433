"""Models shared by the tests of fastnn.inference and fastnn.export: small trained models for
every activation, and hand-written layers (BatchNorm, Dropout: not on this branch) with a
NumPy oracle of their evaluation-mode forward pass."""

import numpy as np

import fastnn as fnn
from fastnn.backends.base import DEFAULT_ALPHA

from _helpers import REFERENCE

L = fnn.layers

# ------------------------------------------------------------ trained models
#: alpha per activation that has one, away from the defaults
ALPHA = {"leaky_relu": 0.2, "elu": 0.7}


def _fit(model, X, y, loss):
    trainer = fnn.Trainer(model, loss, fnn.optim.SGD(0.05, momentum=0.9), batch_size=32, seed=0)
    trainer.fit(X, y, epochs=3, verbose=0)


def trained_classifier(activation, device, dtype):
    """Dense(act) -> Activation(act) -> Dense(softmax), trained a little on spirals."""
    X, y = fnn.datasets.make_spirals(n=240, classes=3, noise=0.2, seed=0)
    alpha = ALPHA.get(activation)
    model = fnn.Sequential([L.Dense(16, activation=activation, alpha=alpha), L.Activation(activation, alpha=alpha),
                            L.Dense(3, activation="softmax")], input_dim=2, seed=0, device=device, dtype=dtype)
    _fit(model, X, y, "cross_entropy")
    return model, X


def trained_regressor(activation, device, dtype):
    """Dense(act) -> Dense(act) -> Dense(1), trained a little on a smooth function."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (200, 3))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    alpha = ALPHA.get(activation)
    model = fnn.Sequential([L.Dense(12, activation=activation, alpha=alpha),
                            L.Dense(8, activation=activation, alpha=alpha), L.Dense(1)],
                           input_dim=3, seed=0, device=device, dtype=dtype)
    _fit(model, X, y, "mse")
    return model, X


# ------------------------------------------------ hand-written model files
def batchnorm(n, rng, eps=1e-3, names=("gamma", "beta", "running_mean", "running_var")):
    arrays = (rng.uniform(0.5, 2.0, n), rng.normal(0, 1, n), rng.normal(0, 2, n), rng.uniform(0.1, 3.0, n))
    return "BatchNorm", {"momentum": 0.1, "eps": eps, "trainable": True}, dict(zip(names, arrays))


def dense(n_in, n_out, rng, activation="identity", use_bias=True, alpha=None):
    cfg = {"units": n_out, "activation": activation, "use_bias": use_bias, "trainable": True}
    if alpha is not None:
        cfg["alpha"] = alpha
    arrays = {"w": rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out))}
    if use_bias:
        arrays["b"] = rng.normal(0, 0.5, n_out)
    return "Dense", cfg, arrays


def dropout(rate=0.3):
    return "Dropout", {"rate": rate, "trainable": True}, {}


def activation(name):
    return "Activation", {"name": name, "trainable": True}, {}


def numpy_forward(layers, X, dtype):
    """Evaluation-mode forward pass in float64 from the layers as written (the oracle)."""
    x = np.asarray(X, np.float64)
    for kind, cfg, arrays in layers:
        arrays = [np.asarray(a, dtype).astype(np.float64) for a in arrays.values()]  # as stored
        if kind == "Dense":
            x = x @ arrays[0] + (arrays[1] if cfg["use_bias"] else 0.0)
            name = cfg["activation"]
            x = REFERENCE.activation(name, x, alpha=cfg.get("alpha", DEFAULT_ALPHA.get(name)))
        elif kind == "BatchNorm":
            gamma, beta, mean, var = arrays
            x = gamma * (x - mean) / np.sqrt(var + cfg["eps"]) + beta
        elif kind == "Activation":
            name = cfg["name"]
            x = REFERENCE.activation(name, x, alpha=cfg.get("alpha", DEFAULT_ALPHA.get(name)))
    return x


def folding_cases(seed=0):
    """{name: (layers, input width, the folded steps as (kind, activation))}: BatchNorm before
    and after activations, first, last, twice, after a Dense without bias; Dropout anywhere."""
    rng = np.random.default_rng(seed)
    return {
        "dense-bn-relu-dense": ([dense(5, 8, rng), batchnorm(8, rng), activation("relu"), dense(8, 3, rng)], 5,
                                [("dense", "relu"), ("dense", "identity")]),
        "dense_relu-bn-dropout-dense": ([dense(5, 8, rng, "relu"), batchnorm(8, rng), dropout(),
                                         dense(8, 3, rng, "softmax")], 5,
                                        [("dense", "relu"), ("dense", "softmax")]),
        "bn-first": ([batchnorm(5, rng), dense(5, 3, rng, "tanh")], 5, [("dense", "tanh")]),
        "bn-last": ([dense(5, 8, rng, "tanh"), batchnorm(8, rng)], 5, [("dense", "tanh"), ("affine", "identity")]),
        "bn-bn-sigmoid": ([dense(5, 8, rng, "relu"), batchnorm(8, rng), batchnorm(8, rng), activation("sigmoid")],
                          5, [("dense", "relu"), ("affine", "sigmoid")]),
        "nobias-bn-bn-dense": ([dense(5, 8, rng, use_bias=False), batchnorm(8, rng), batchnorm(8, rng),
                                dense(8, 2, rng)], 5, [("dense", "identity"), ("dense", "identity")]),
        "bn-relu-bn-dense": ([dense(5, 4, rng), activation("elu"), batchnorm(4, rng), activation("relu"),
                              batchnorm(4, rng), dropout(0.5), dense(4, 2, rng, "leaky_relu", alpha=0.1)], 5,
                             [("dense", "elu"), ("affine", "relu"), ("dense", "leaky_relu")]),
        "bn-dropout": ([batchnorm(5, rng), dropout()], 5, [("affine", "identity")]),
        "dropout-only": ([dropout(0.0)], 5, [("activation", "identity")]),
    }
