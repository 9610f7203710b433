"""Module-level builders for the executor tests (a ProcessPoolExecutor pickles them by name)."""

import numpy as np

import fastnn as fnn


def data():
    X, y = fnn.datasets.load_iris()
    return fnn.data.Standardizer().fit_transform(X), y


def build(params):
    model = fnn.Sequential([fnn.layers.Dense(params.get("hidden", 8), activation="relu"), fnn.layers.Dense(3)],
                           seed=0, dtype="float64")
    return fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(params["lr"]), metrics=["accuracy"], seed=0)


def build_failing(params):
    """lr >= 1e100 (plain SGD) diverges; hidden -1 fails inside fit with a MemoryError; others train."""
    if params.get("hidden") == -1:
        model = fnn.Sequential([fnn.layers.Dense(3)], seed=0, dtype="float64")
        trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(params["lr"]), metrics=["accuracy"], seed=0)
        trainer.fit = _broken_fit
        return trainer
    if params["lr"] >= 1e100:  # plain SGD with this rate: the parameters overflow in the first epoch
        model = fnn.Sequential([fnn.layers.Dense(3)], seed=0, dtype="float64")
        return fnn.Trainer(model, "mse", fnn.optim.SGD(params["lr"]), seed=0)
    return build(params)


def _broken_fit(*args, **kwargs):
    raise MemoryError("no memory for this trial")


def member(seed):
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.Dense(3)], seed=seed, dtype="float64")
    return fnn.Trainer(model, "cross_entropy", "adam", seed=seed)


def pid_and_threads(_):
    import os

    return os.getpid(), fnn.get_num_threads()


__all__ = ["build", "build_failing", "data", "member", "np"]
