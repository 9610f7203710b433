"""Hyperparameter search and cross-validation without scikit-learn.

Every function takes ``build``: a callable ``build(params) -> Trainer`` that returns a fresh
``fastnn.Trainer`` (with a fresh, unfitted model) for a dict of hyperparameters. It is called
once per trial and fold, so nothing learnt leaks from one to the next; give the model and the
Trainer seeds inside it for reproducible scores. A trial trains ``epochs`` epochs (or
``params['epochs']`` when the space has an 'epochs' entry) and is scored on held-out data by
``scoring``: 'loss' (lower is better) or one of the Trainer's metrics ('accuracy', 'r2', ...;
better as fastnn.metrics says). The default is the Trainer's first metric, else the loss.

>>> import fastnn as fnn
>>> X, y = fnn.datasets.load_iris()
>>> X = fnn.data.Standardizer().fit_transform(X)
>>> def build(p):
...     model = fnn.Sequential([fnn.layers.Dense(p["hidden"], activation="relu"), fnn.layers.Dense(3)], seed=0)
...     return fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(p["lr"]), metrics=["accuracy"], seed=0)
>>> result = fnn.tuning.grid_search(build, {"hidden": [8, 32], "lr": [1e-3, 1e-2]}, X, y, epochs=20, seed=0)
>>> result.best_params["lr"], result.best_score > 0.8
(0.01, True)
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import time

import numpy as np

from ._checks import as_float_array, check_float, check_int, check_seed
from ._executors import Dispatcher
from ._files import atomic_write
from .errors import TrainingDiverged


# --------------------------------------------------------------------------- distributions
class Distribution:
    """Base class of the ranges a random search samples: ``sample(rng) -> value``."""

    def sample(self, rng):
        """One value drawn with ``rng`` (a np.random.Generator)."""
        raise NotImplementedError  # every concrete distribution defines it

    def __repr__(self):
        return f"{type(self).__name__}({self.low!r}, {self.high!r})"


def _check_range(owner, low, high, positive=False):
    low = check_float(owner, "low", low, low=0.0 if positive else None, low_open=positive)
    high = check_float(owner, "high", high)
    if not high > low:
        raise ValueError(f"{owner}: high must be > low; got low={low!r}, high={high!r}.")
    return low, high


class Uniform(Distribution):
    """Uniform on [low, high): a float drawn as low + (high - low) u.

    >>> 0.1 <= Uniform(0.1, 0.5).sample(np.random.default_rng(0)) < 0.5
    True
    """

    def __init__(self, low, high):
        self.low, self.high = _check_range("Uniform", low, high)

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))


class LogUniform(Distribution):
    """Log-uniform on [low, high), 0 < low: exp(Uniform(log low, log high)), for rates and
    penalties whose scale is unknown.

    >>> 1e-4 <= LogUniform(1e-4, 1e-1).sample(np.random.default_rng(0)) < 1e-1
    True
    """

    def __init__(self, low, high):
        self.low, self.high = _check_range("LogUniform", low, high, positive=True)

    def sample(self, rng):
        return float(min(math.exp(rng.uniform(math.log(self.low), math.log(self.high))), np.nextafter(self.high, 0)))


class IntUniform(Distribution):
    """Uniform over the integers low, low + 1, ..., high (both included).

    >>> IntUniform(8, 8).sample(np.random.default_rng(0))
    8
    """

    def __init__(self, low, high):
        self.low = check_int("IntUniform", "low", low)
        self.high = check_int("IntUniform", "high", high)
        if self.high < self.low:
            raise ValueError(f"IntUniform: high must be >= low; got low={self.low!r}, high={self.high!r}.")

    def sample(self, rng):
        return int(rng.integers(self.low, self.high + 1))


def _check_space(owner, space, grid):
    """{name: non-empty list (or, for a random search, a Distribution)}."""
    if not isinstance(space, dict) or not space:
        raise TypeError(f"{owner}: space must be a non-empty dict {{name: list of values}}; got {space!r}.")
    out = {}
    for name, values in space.items():
        if not isinstance(name, str):
            raise TypeError(f"{owner}: space keys must be parameter names (str); got {name!r}.")
        if isinstance(values, Distribution):
            if grid:
                raise TypeError(f"{owner}: space[{name!r}] is {values!r}; a grid needs a list of values "
                                f"(use random_search for ranges).")
            out[name] = values
        elif isinstance(values, (list, tuple, range, np.ndarray)) and len(values):
            out[name] = list(values)
        else:
            raise TypeError(f"{owner}: space[{name!r}] must be a non-empty list of values"
                            f"{'' if grid else ' or a fastnn.tuning distribution'}; got {values!r}.")
    return out


# --------------------------------------------------------------------------- one trial
def _greater_is_better(scoring):
    if scoring == "loss":
        return False
    from .metrics import METRICS

    metric = METRICS.get(scoring)
    return True if metric is None else metric.greater_is_better


def _build(owner, build, params):
    trainer = build(dict(params))
    from .trainer import Trainer

    if not isinstance(trainer, Trainer):
        raise TypeError(f"{owner}: build(params) must return a fresh fastnn.Trainer; got {type(trainer).__name__}.")
    return trainer


def _scoring(owner, scoring, trainer):
    """The score key: ``scoring``, or the trainer's first metric, or 'loss'."""
    names = ["loss", *(m.name for m in trainer.metrics)]
    if scoring is None:
        return names[1] if len(names) > 1 else "loss"
    if scoring not in names:
        raise ValueError(f"{owner}: scoring {scoring!r} is not computed by the trainer build returns; "
                         f"choose one of {', '.join(map(repr, names))} (or add it to the Trainer's metrics).")
    return scoring


def _epochs(owner, params, epochs):
    return check_int(owner, "epochs", params.get("epochs", epochs), low=1)


class _SetupError(Exception):
    """The caller's mistake (what build returns, scoring, epochs), found in a trial: raised by
    the search as ``args[0]``, never recorded as the trial's failure."""


def _fit_score(owner, build, params, train, held_out, epochs, scoring):
    """Build, train on ``train`` and evaluate on ``held_out``: (trainer, key, scores dict)."""
    try:
        trainer = _build(owner, build, params)
        key = _scoring(owner, scoring, trainer)
        n_epochs = _epochs(owner, params, epochs)
    except (TypeError, ValueError) as exc:
        raise _SetupError(exc) from None
    trainer.fit(*train, epochs=n_epochs, verbose=0)
    return trainer, key, trainer.evaluate(*held_out)


def _as_data(owner, X, y):
    X = as_float_array(owner, "X", X, np.float64 if getattr(X, "dtype", None) == np.float64 else np.float32)
    y = np.asarray(y)
    if len(y) != len(X):
        raise ValueError(f"{owner}: inputs must have the same number of samples; X has {len(X)}, y has {len(y)}.")
    return X, y


def _stratify(owner, y, stratify):
    """Labels to stratify by: y when it holds integer class labels and stratify is 'auto'/True."""
    if stratify is False or stratify is None:
        return None
    integral = y.ndim == 1 and y.dtype.kind in "biu"
    if isinstance(stratify, str) and stratify == "auto":
        return y if integral else None
    if stratify is True:
        if not integral:
            raise ValueError(f"{owner}: stratify=True needs 1-D integer class labels y; got y of shape {y.shape}, "
                             f"dtype {y.dtype}.")
        return y
    raise ValueError(f"{owner}: stratify must be 'auto', True or False; got {stratify!r}.")


def _scale(train_X, *others):
    from .data import Standardizer

    scaler = Standardizer().fit(train_X)
    return (scaler.transform(train_X), *(scaler.transform(a) for a in others))


# --------------------------------------------------------------------------- cross-validation
def cross_validate(build, X, y, k=5, params=None, epochs=10, scoring=None, stratify="auto", scale=False, seed=0,
                   executor=None):
    """k-fold cross-validation of the Trainer ``build(params)`` returns, on fastnn.data.kfold.

    Parameters
    ----------
    build : callable
        ``build(params) -> Trainer``, called once per fold (see the module docstring).
    X : (n_samples, n_features) numbers; y : targets as the Trainer's loss expects them.
    k : int, default 5, in [2, n_samples]
    params : dict, optional
        Passed to ``build`` (default {}); an 'epochs' entry overrides ``epochs``.
    epochs : int, default 10, >= 1
    scoring : str, optional
        'loss' or a metric of the Trainer; default its first metric, else 'loss'.
    stratify : 'auto', True or False, default 'auto'
        Folds keep the class proportions ('auto': when y holds integer labels).
    scale : bool, default False
        Standardize the features with a fastnn.data.Standardizer fitted on each training part.
    seed : int, default 0
        Seed of the fold assignment.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Train the folds as tasks on it, one fold per task (``build`` must be picklable for a
        ProcessPoolExecutor); the scores equal the serial run's, in fold order.

    Returns a dict: ``score`` (mean over folds), ``std``, ``scores`` (one per fold),
    ``scoring``, ``metrics`` (every evaluated value, averaged over folds) and ``time`` (seconds).

    >>> import fastnn as fnn
    >>> X, y = fnn.datasets.load_iris()
    >>> build = lambda p: fnn.Trainer(fnn.Sequential([fnn.layers.Dense(3)], seed=0), "cross_entropy",
    ...                               fnn.optim.Adam(0.05), metrics=["accuracy"], seed=0)
    >>> cv = fnn.tuning.cross_validate(build, X, y, k=5, epochs=30, scale=True)
    >>> len(cv["scores"]), cv["score"] > 0.8
    (5, True)
    """
    owner = "cross_validate"
    X, y = _as_data(owner, X, y)
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise TypeError(f"{owner}: params must be a dict; got {params!r}.")
    from .data import kfold

    folds = kfold(len(X), k=k, stratify_y=_stratify(owner, y, stratify), seed=check_seed(owner, seed))
    dispatch = Dispatcher(owner, executor, probe=build)  # without an executor: the folds in turn, here
    t0 = time.perf_counter()
    Xs, ys = dispatch.share(X), dispatch.share(y)
    futures = [dispatch.submit(_fold_task, owner, build, params, Xs, ys, tr, va, epochs, scoring, scale)
               for tr, va in folds]
    try:
        results = [dispatch.result(f) for f in futures]
    except _SetupError as exc:
        raise exc.args[0] from None
    return _summary(results, t0)


def _fold_task(owner, build, params, X, y, train_idx, val_idx, epochs, scoring, scale):
    """Train on the rows ``train_idx`` and score on ``val_idx``: (score key, scores dict)."""
    Xtr, Xva = (_scale(X[train_idx], X[val_idx]) if scale else (X[train_idx], X[val_idx]))
    _, key, scores = _fit_score(owner, build, params, (Xtr, y[train_idx]), (Xva, y[val_idx]), epochs, scoring)
    return key, scores


def _cross_validate(owner, build, X, y, folds, params, epochs, scoring, scale):
    """The folds one after another, inside a trial (the caller's mistakes stay _SetupError)."""
    t0 = time.perf_counter()
    return _summary([_fold_task(owner, build, params, X, y, tr, va, epochs, scoring, scale) for tr, va in folds], t0)


def _summary(fold_results, t0):
    """cross_validate's dict from [(key, scores)] in fold order."""
    key = fold_results[0][0]
    results = [scores for _, scores in fold_results]
    values = np.array([r[key] for r in results])
    return {"score": float(values.mean()), "std": float(values.std()), "scores": values.tolist(), "scoring": key,
            "metrics": {name: float(np.mean([r[name] for r in results])) for name in results[0]},
            "time": time.perf_counter() - t0}


# --------------------------------------------------------------------------- searches
class SearchResult:
    """Outcome of grid_search / random_search.

    Attributes
    ----------
    results : list of dict
        One per trial, best first: ``params``, ``score``, ``std`` (over folds; 0 for a
        hold-out), ``time`` (seconds), ``trial`` (its order of evaluation) and, for a trial
        whose training failed, ``error`` and ``error_type`` ('TrainingDiverged', the
        exception's class name; its score is NaN and it ranks last). The table has an
        ``error`` column when a trial failed.
    best_params, best_score : the best trial's parameters and score.
    scoring : str; greater_is_better : bool.
    best_trainer : Trainer refitted on all the data with best_params (None with refit=False);
    best_model : its model.
    best_scaler : with scale=True and refit, the fastnn.data.Standardizer fitted on all of X
        that best_model's inputs need (``best_model.predict(best_scaler.transform(X_new))``).
    """

    def __init__(self, results, scoring, greater_is_better, best_trainer, best_scaler=None):
        self.results = results
        self.scoring = scoring
        self.greater_is_better = greater_is_better
        self.best_params = dict(results[0]["params"])
        self.best_score = results[0]["score"]
        self.best_trainer = best_trainer
        self.best_scaler = best_scaler

    @property
    def best_model(self):
        """The refitted best model (None with refit=False)."""
        return None if self.best_trainer is None else self.best_trainer.model

    def _rows(self):
        names = sorted({name for r in self.results for name in r["params"]})
        header = ["rank", *names, self.scoring, "std", "time_s"]
        rows = [[i + 1, *(r["params"].get(n, "") for n in names), r["score"], r["std"], r["time"]]
                for i, r in enumerate(self.results)]
        if any("error" in r for r in self.results):
            header.append("error")
            for row, r in zip(rows, self.results):
                row.append(r.get("error", ""))
        return header, rows

    def to_csv(self, path):
        """Write the table (one row per trial, best first) to ``path`` atomically."""
        header, rows = self._rows()
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows([[repr(v) if isinstance(v, float) else v for v in row] for row in rows])
        with atomic_write(path, "w") as f:
            f.write(buf.getvalue())

    def __str__(self):
        header, rows = self._rows()

        def cell(v):
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        cells = [header] + [[cell(v) for v in row] for row in rows]
        widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
        lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def __repr__(self):
        return (f"SearchResult(trials={len(self.results)}, best_params={self.best_params!r}, "
                f"best_score={self.best_score!r}, scoring={self.scoring!r})")


def _trial_task(owner, build, params, X, y, Xv, yv, folds, epochs, scoring, scale):
    """One trial: {'score', 'std', 'key'} or, when its training failed, {'score': nan, 'error':
    ..., 'error_type': ...}; the caller's mistakes are raised (as _SetupError)."""
    entry = {"score": math.nan, "std": 0.0}
    try:
        if folds is not None:
            cv_result = _cross_validate(owner, build, X, y, folds, params, epochs, scoring, scale)
            entry.update(score=cv_result["score"], std=cv_result["std"] if len(folds) > 1 else 0.0,
                         key=cv_result["scoring"])
        else:
            Xtr, Xva = _scale(X, Xv) if scale else (X, Xv)
            _, key, scores = _fit_score(owner, build, params, (Xtr, y), (Xva, yv), epochs, scoring)
            entry.update(score=scores[key], key=key)
    except _SetupError:
        raise
    except TrainingDiverged as exc:
        entry.update(error=str(exc), error_type="TrainingDiverged")
    except Exception as exc:  # noqa: BLE001 - any other failure of this trial's training: reported, the search goes on
        entry.update(error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__, exception=exc)
    return entry


def _search(owner, build, candidates, X, y, validation, validation_split, cv, epochs, scoring, stratify, scale,
            refit, seed, verbose, executor):
    X, y = _as_data(owner, X, y)
    dispatch = Dispatcher(owner, executor, probe=build)
    seed = check_seed(owner, seed)
    labels = _stratify(owner, y, stratify)
    folds = None
    if cv is not None:
        from .data import kfold

        if validation is not None:
            raise ValueError(f"{owner}: give cv or validation, not both.")
        folds = kfold(len(X), k=check_int(owner, "cv", cv, low=2), stratify_y=labels, seed=seed)
    elif validation is None:
        f = check_float(owner, "validation_split", validation_split, low=0.0, high=1.0, low_open=True, high_open=True)
        folds = [_holdout(labels, len(X), f, seed)]
    else:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError(f"{owner}: validation must be a tuple (X_val, y_val).")
        Xv, yv = _as_data(owner + " (validation)", *validation)
    for params in candidates:  # before any training
        _epochs(owner, params, epochs)
    if folds is not None:
        Xv = yv = None
    shared = [dispatch.share(a) for a in (X, y, Xv, yv)]
    t_submit, key = time.perf_counter(), None
    futures = []
    for params in candidates:  # on an executor: every trial submitted, then collected in order
        futures.append(dispatch.submit(_timed, _trial_task, owner, build, params, *shared, folds, epochs, scoring,
                                       scale))
    results, exceptions = [], []
    for trial, (params, future) in enumerate(zip(candidates, futures)):
        try:
            entry, seconds = dispatch.result(future)
        except _SetupError as exc:  # the caller's mistake: no trial can succeed
            raise exc.args[0] from None
        except Exception as exc:  # noqa: BLE001 - the task never finished (a worker died, a cancelled future, ...)
            entry = {"score": math.nan, "std": 0.0, "error": f"{type(exc).__name__}: {exc}",
                     "error_type": type(exc).__name__}
            seconds = time.perf_counter() - t_submit
        key = entry.pop("key", key)
        exceptions.append(entry.pop("exception", None))
        entry = {"params": params, **entry, "time": seconds, "trial": trial}
        results.append(entry)
        if verbose:
            print(f"{owner}: trial {trial + 1}: {params} -> {entry['score']:.4g} ({entry['time']:.2f}s)"
                  + (f" [{entry['error']}]" if "error" in entry else ""), flush=True)
    if all("error" in r for r in results):
        first = results[0]["error"]
        if all(r["error_type"] == "TrainingDiverged" for r in results):
            raise TrainingDiverged(f"{owner}: the training of every trial diverged; the first: {first}")
        raise RuntimeError(f"{owner}: the training of every trial failed; the first: {first}") from exceptions[0]
    better = _greater_is_better(key)
    results.sort(key=lambda r: (math.isnan(r["score"]), -r["score"] if better else r["score"]))
    best_trainer = scaler = None
    if refit:
        if scale:
            from .data import Standardizer

            scaler = Standardizer().fit(X)
        best_trainer = _build(owner, build, results[0]["params"])
        best_trainer.fit(X if scaler is None else scaler.transform(X), y,
                         epochs=_epochs(owner, results[0]["params"], epochs), verbose=0)
    return SearchResult(results, key, better, best_trainer, scaler)


def _timed(fn, *args):
    """(fn(*args), its wall time in seconds), measured where it runs."""
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0


def _holdout(labels, n, fraction, seed):
    """(train, validation) indices of a shuffled split, stratified by ``labels`` when given."""
    from .data import split

    parts = split(np.arange(n, dtype=np.float64), labels, fractions=(1 - fraction, fraction),
                  stratify=labels is not None, seed=seed)
    return tuple((p if labels is None else p[0]).astype(np.int64) for p in parts)


_SEARCH_DOC = """
    Each trial is scored on held-out data: ``validation`` (X_val, y_val) when given, else
    ``cv`` folds (fastnn.data.kfold; the mean score) when given, else a ``validation_split``
    fraction of X (stratified for class labels). The best trial's Trainer is then refitted on
    all of X, y (``refit``). Training that diverges gives the trial a NaN score, ranked last.

    Parameters
    ----------
    build : callable ``build(params) -> Trainer`` (see the module docstring).
    space : dict {{name: list of values{ranges}}}
    X, y : the data. validation : (X_val, y_val), optional. validation_split : float, default 0.2.
    cv : int, optional; number of folds instead of a single split.
    epochs : int, default 10 (a space entry 'epochs' overrides it).
    scoring : 'loss' or a metric of the Trainer (default its first metric, else 'loss').
    stratify : 'auto', True or False, default 'auto'. scale : bool, default False (Standardizer
    fitted on each training part). refit : bool, default True. seed : int, default 0 (splits,
    folds{sampling}). verbose : 0 or 1 (one line per trial).
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
    Run the trials on it, one trial per task (``build`` must be picklable for a
    ProcessPoolExecutor; each task sets its BLAS threads to the cores / the tasks at once);
    the results equal the serial run's, in the same order. A trial whose training fails
    (divergence, an error, a lost worker) gets a NaN score and its ``error``, and ranks last.

    Returns a SearchResult (``best_params``, ``best_score``, ``results`` best first, each with
    its ``time``; ``best_trainer``; ``to_csv``; ``str()`` is the table).
"""


def grid_search(build, space, X, y, validation=None, validation_split=0.2, cv=None, epochs=10, scoring=None,
                stratify="auto", scale=False, refit=True, seed=0, verbose=0, executor=None):
    """Try every combination of the values in ``space`` (in the dict's order, the last name
    varying fastest) and keep the best by validation score."""
    space = _check_space("grid_search", space, grid=True)
    names = list(space)
    candidates = [dict(zip(names, values)) for values in itertools.product(*space.values())]
    return _search("grid_search", build, candidates, X, y, validation, validation_split, cv, epochs, scoring,
                   stratify, scale, refit, seed, verbose, executor)


def random_search(build, space, X, y, n_trials=10, validation=None, validation_split=0.2, cv=None, epochs=10,
                  scoring=None, stratify="auto", scale=False, refit=True, seed=0, verbose=0, executor=None):
    """Try ``n_trials`` parameter sets drawn from ``space`` (a list: one value uniformly; a
    Uniform, LogUniform or IntUniform: a draw) with ``np.random.default_rng(seed)``, and keep
    the best by validation score."""
    owner = "random_search"
    space = _check_space(owner, space, grid=False)
    n_trials = check_int(owner, "n_trials", n_trials, low=1)
    rng = np.random.default_rng(check_seed(owner, seed))
    candidates = [{name: (values.sample(rng) if isinstance(values, Distribution)
                          else _plain(values[rng.integers(len(values))])) for name, values in space.items()}
                  for _ in range(n_trials)]
    return _search(owner, build, candidates, X, y, validation, validation_split, cv, epochs, scoring, stratify,
                   scale, refit, seed, verbose, executor)


def _plain(value):
    """A NumPy scalar drawn from a list as the Python number it stands for."""
    return value.item() if isinstance(value, np.generic) else value


if grid_search.__doc__ and random_search.__doc__:  # None under python -OO
    grid_search.__doc__ += _SEARCH_DOC.format(ranges="", sampling="")
    random_search.__doc__ += _SEARCH_DOC.format(ranges=" or distributions", sampling=", sampling")
    random_search.__doc__ += "    n_trials : int, default 10, >= 1.\n"

__all__ = ["Distribution", "IntUniform", "LogUniform", "SearchResult", "Uniform", "cross_validate", "grid_search",
           "random_search"]
