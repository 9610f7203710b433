"""Ensembles: the average of several trained models' predictions, saved as one file.

An ensemble of classifiers averages probabilities, never logits: a member that outputs
logits (a final Dense without activation, trained with a fused loss) has its softmax or
sigmoid applied first. An ensemble of regressors averages the outputs. The file is one zip
(``.fnn``): ``ensemble.json`` and one stored model file per member, each read back by
fastnn.io's checking reader; writes are atomic and nothing is pickled.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np

from ._archive import MAX_JSON_BYTES, ArchiveReader, format_error, write_archive
from ._checks import as_float_array, check_choice
from .errors import TrainingDiverged
from .losses import DEFAULT_LOSS, fused_activation, get_loss

FORMAT = "fastnn.ensemble"
FORMAT_VERSION = 1
#: Members an ensemble file may declare (bounds what a hostile file can make a reader do).
MAX_MEMBERS = 1024
#: A member may inflate to at most this many times the ensemble file's size (plus 1 MiB).
MEMBER_RATIO = 16
#: The averaging an ensemble can do: 'softmax'/'sigmoid' average probabilities, 'identity' outputs.
OUTPUTS = ("auto", "softmax", "sigmoid", "identity")


def _member_activation(model):
    """'softmax'/'sigmoid' when the model's output is (or, by its metadata, stands for)
    probabilities; 'identity' otherwise; and whether that activation still has to be applied."""
    act = model.output_activation
    if act in ("softmax", "sigmoid"):
        return act, False
    # the activation a fused loss puts on a member's logits (read from its metadata["loss"])
    fused = fused_activation((getattr(model, "metadata", None) or {}).get("loss"))
    if act == "identity" and fused is not None:
        return fused, True
    return "identity", False


class Ensemble:
    """Average of M models: p(x) = (1/M) sum_m p_m(x), probabilities for classifiers and
    outputs for regressors.

    Parameters
    ----------
    models : sequence of Sequential
        Built models with the same input width and output width, at least one.
    output : {'auto', 'softmax', 'sigmoid', 'identity'}, default 'auto'
        What is averaged. 'auto': probabilities when every member ends in softmax (sigmoid)
        or outputs logits of a model trained with cross_entropy (binary_cross_entropy), as
        its metadata['loss'] says (the CLI records it); outputs otherwise. 'softmax' or
        'sigmoid': members whose last layer has no activation output logits, and get it
        applied before averaging. 'identity': outputs are averaged as they are.

    Attributes: ``models``, ``output`` (the resolved kind), ``input_dim``, ``n_out``.

    >>> import numpy as np, fastnn as fnn
    >>> members = [fnn.Sequential([fnn.layers.Dense(3, activation="softmax")], input_dim=4, seed=s)
    ...            for s in range(3)]
    >>> ens = fnn.Ensemble(members)
    >>> p = ens.predict(np.ones((2, 4)))
    >>> ens.output, p.shape, bool(np.allclose(p.sum(axis=1), 1))
    ('softmax', (2, 3), True)
    """

    def __init__(self, models, output="auto"):
        from .model import Sequential

        owner = "Ensemble"
        if isinstance(models, Sequential) or not isinstance(models, (list, tuple)) or not models:
            raise TypeError(f"{owner}: models must be a non-empty list of fastnn.Sequential; got {models!r}.")
        for i, m in enumerate(models):
            if not isinstance(m, Sequential):
                raise TypeError(f"{owner}: models[{i}] must be a fastnn.Sequential; got {type(m).__name__}.")
            if not m.built:
                raise ValueError(f"{owner}: models[{i}] is not built; train it or give input_dim first.")
        dims = [(m.input_dim, m.n_out) for m in models]
        if len(set(dims)) > 1:
            listed = ", ".join(f"models[{i}] {a} -> {b}" for i, (a, b) in enumerate(dims))
            raise ValueError(f"{owner}: the members must map the same number of features to the same number of "
                             f"outputs; got {listed}.")
        check_choice(owner, "output", output, OUTPUTS)
        kinds = [_member_activation(m) for m in models]
        if output == "auto":
            found = sorted({kind for kind, _ in kinds})
            if len(found) > 1:
                raise ValueError(f"{owner}: the members disagree on what they output ({', '.join(found)}); "
                                 f"give output='softmax', 'sigmoid' or 'identity'.")
            output = found[0]
        else:
            kinds = [self._as_output(owner, i, m, output) for i, m in enumerate(models)]
        self.models = list(models)
        self.output = output
        self._apply = [apply for _, apply in kinds]
        self.input_dim, self.n_out = dims[0]

    @staticmethod
    def _as_output(owner, i, model, output):
        act = model.output_activation
        if output == "identity" or act == output:
            return output, False
        if act == "identity":  # logits
            return output, True
        raise ValueError(f"{owner}: models[{i}] ends in {act!r}; it cannot be averaged as output={output!r}.")

    @property
    def is_classifier(self):
        """True when the ensemble averages probabilities."""
        return self.output != "identity"

    # ------------------------------------------------------------ prediction
    def _check_X(self, owner, X):
        X = as_float_array(owner, "X", X, np.float64 if getattr(X, "dtype", None) == np.float64 else np.float32)
        if X.shape[1] != self.input_dim:
            raise ValueError(f"{owner}: X has {X.shape[1]} features; the ensemble takes {self.input_dim}.")
        return X

    def _average(self, X, batch_size=None):
        from .backends import get_backend

        reference = get_backend("reference")
        total = np.zeros((len(X), self.n_out))
        for model, apply in zip(self.models, self._apply):
            out = model.predict(X, batch_size=batch_size).astype(np.float64)
            total += reference.activation(self.output, out) if apply else out
        return total / len(self.models)

    def predict(self, X, batch_size=None):
        """Averaged probabilities (classifiers) or outputs (regressors), (n_samples, n_out),
        in the members' common dtype."""
        X = self._check_X("Ensemble.predict", X)
        dtype = np.result_type(*(m.dtype for m in self.models))
        return self._average(X, batch_size).astype(dtype)

    def predict_classes(self, X, batch_size=None):
        """Class decisions: argmax of the averaged softmax probabilities (n_samples,); for
        sigmoid outputs p > 0.5, as (n_samples,) for one output and (n_samples, n_out) else."""
        owner = "Ensemble.predict_classes"
        if not self.is_classifier:
            raise ValueError(f"{owner}: the ensemble averages outputs (output='identity'); it has no classes.")
        p = self._average(self._check_X(owner, X), batch_size)
        if self.output == "softmax":
            return p.argmax(axis=1)
        decisions = (p > 0.5).astype(np.int64)
        return decisions[:, 0] if self.n_out == 1 else decisions

    def evaluate(self, X, y, loss=None, metrics=()):
        """{'loss': ..., <metric>: ...} of the averaged prediction on (X, y).

        loss : str or Loss, default cross_entropy (softmax), binary_cross_entropy (sigmoid),
        mse (identity); a fused loss is computed on the averaged probabilities (its log).
        metrics : names or instances from fastnn.metrics ('accuracy', 'r2', ...).
        """
        from .backends import get_backend
        from .metrics import get_metric

        owner = "Ensemble.evaluate"
        X = self._check_X(owner, X)
        loss = get_loss(DEFAULT_LOSS[self.output] if loss is None else loss, owner)
        metrics = [get_metric(m, owner) for m in ((metrics,) if isinstance(metrics, str) else metrics)]
        y = loss.prepare_target(y, self.n_out, np.float64, owner)
        if len(y) != len(X):
            raise ValueError(f"{owner}: inputs must have the same number of samples; X has {len(X)}, y has {len(y)}.")
        p = self._average(X)
        if loss.fuses is not None:
            if loss.fuses != self.output:
                raise ValueError(f"{owner}: loss {loss.name!r} needs an ensemble of {loss.fuses} outputs; this one "
                                 f"averages {self.output!r} outputs.")
            # logits whose softmax (sigmoid) is p: the fused kernel then computes -log p
            tiny = np.finfo(np.float64).tiny
            q = np.clip(p, tiny, 1.0)
            pred = np.log(q) if self.output == "softmax" else np.log(q) - np.log(np.clip(1.0 - p, tiny, 1.0))
        else:
            pred = p
        acc = np.zeros(1)
        loss(get_backend("reference"), pred, y, loss_out=acc)
        result = {"loss": float(acc[0]) / loss.count(len(X), self.n_out)}
        for m in metrics:
            m.reset()
            m.update(p, y)
            result[m.name] = m.result()
        return result

    # ------------------------------------------------------------ files
    def save(self, path):
        """Write the ensemble to ``path`` as one file, atomically (see the module docstring)."""
        from . import __version__
        from .io import write_model

        names = [f"members/{i}.fnn" for i in range(len(self.models))]
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "ensemble", "fastnn_version": __version__,
                "output": self.output, "members": names}
        members = [("ensemble.json", json.dumps(meta, indent=1))]
        for name, model in zip(names, self.models):
            buf = io.BytesIO()
            write_model(model, buf)
            members.append((name, buf.getvalue()))
        write_archive(path, members, owner="Ensemble.save")

    @classmethod
    def load(cls, path, device="cpu"):
        """Read an ensemble written by ``save``. Raises ModelFormatError for anything that is
        not an intact ensemble file; nothing in the file is executed.

        >>> import os, tempfile, fastnn as fnn
        >>> ens = fnn.Ensemble([fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=s) for s in (0, 1)])
        >>> p = os.path.join(tempfile.mkdtemp(), "ens.fnn"); ens.save(p)
        >>> back = fnn.Ensemble.load(p)
        >>> len(back.models), back.output
        (2, 'identity')
        """
        from .backends import get_backend
        from .io import build_model, read_model_file

        owner = "Ensemble.load"
        get_backend(device, owner)  # a bad device argument is the caller's error, not the file's
        path = os.fspath(path)
        models = []
        with ArchiveReader(path, owner, "ensemble file") as ar:
            if "ensemble.json" not in ar.names and "model.json" in ar.names:
                ar.fail_kind("checkpoint" if "checkpoint.json" in ar.names else "model", "ensemble",
                             missing="ensemble.json")
            meta = ar.read_json("ensemble.json", FORMAT, FORMAT_VERSION)
            if ar.kind_of(meta) not in (None, "ensemble"):
                ar.fail(f"its manifest declares kind {meta['kind']!r}, not 'ensemble'")
            output, names = meta.get("output"), meta.get("members")
            if output not in OUTPUTS[1:]:
                ar.fail(f"output {output!r} is not one of {', '.join(OUTPUTS[1:])}")
            if not isinstance(names, list) or not 1 <= len(names) <= MAX_MEMBERS or \
                    names != [f"members/{i}.fnn" for i in range(len(names))]:
                ar.fail(f"the member list must be members/0.fnn ... (1 to {MAX_MEMBERS} of them)")
            ar.check_members({"ensemble.json", *names})
            for name in names:
                label = f"{path}:{name}"
                # a member inflates to at most MEMBER_RATIO times the file's size (+ 1 MiB); its own
                # reader then bounds what it allocates by that
                data = ar.read_bytes(name, MEMBER_RATIO * ar.size + MAX_JSON_BYTES)
                content = read_model_file(label, owner, stream=io.BytesIO(data))
                models.append(build_model(content, label, device, owner))
        try:
            return cls(models, output=output)
        except ValueError as exc:  # members that disagree: the file's fault
            raise format_error(path, str(exc).rstrip("."), owner, "ensemble file") from None

    def __repr__(self):
        return f"Ensemble({len(self.models)} models, {self.input_dim} -> {self.n_out}, output={self.output!r})"


# ---------------------------------------------------------------------------- training
def train_ensemble(build, X, y, seeds=5, epochs=10, output="auto", executor=None, device="cpu"):
    """Train one member per seed, m = build(seed).fit(X, y).model, and return their Ensemble.

    Parameters
    ----------
    build : callable
        ``build(seed) -> Trainer`` with a fresh model; give the model and the Trainer that seed
        so that members differ (and runs repeat).
    X, y : the training data, as the Trainers' loss expects it.
    seeds : int or sequence of int, default 5
        An int n stands for seeds 0 .. n - 1 (n >= 1); the members come in this order.
    epochs : int, default 10, >= 1
    output : as for Ensemble.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Train the members as tasks on it, one member per task (``build`` must be picklable
        for a ProcessPoolExecutor); each comes back as a model file (no pickle of the model)
        and the ensemble equals the serial run's. A member whose training fails raises, with
        its seed in the message.
    device : str, default 'cpu'
        Where the returned members live.

    >>> import fastnn as fnn
    >>> X, y = fnn.datasets.load_iris()
    >>> build = lambda s: fnn.Trainer(fnn.Sequential([fnn.layers.Dense(3, activation="softmax")], seed=s),
    ...                               "cross_entropy", "adam", seed=s)
    >>> ens = fnn.ensemble.train_ensemble(build, X, y, seeds=3, epochs=2)
    >>> len(ens.models), ens.output
    (3, 'softmax')
    """
    from ._checks import check_int
    from ._executors import Dispatcher
    from .io import build_model, read_model_file

    owner = "train_ensemble"
    if not callable(build):
        raise TypeError(f"{owner}: build must be a callable build(seed) -> Trainer; got {build!r}.")
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = list(range(check_int(owner, "seeds", seeds, low=1)))
    elif isinstance(seeds, (list, tuple, range, np.ndarray)) and len(seeds):
        seeds = [check_int(owner, "a seed", s, low=0) for s in seeds]
    else:
        raise TypeError(f"{owner}: seeds must be a number of members (>= 1) or a non-empty list of seeds; "
                        f"got {seeds!r}.")
    epochs = check_int(owner, "epochs", epochs, low=1)
    check_choice(owner, "output", output, OUTPUTS)
    dispatch = Dispatcher(owner, executor, probe=build)
    data = [dispatch.share(a) for a in (X, y)]
    futures = [dispatch.submit(_member_task, owner, build, seed, *data, epochs) for seed in seeds]
    models = []
    for seed, future in zip(seeds, futures):
        try:
            blob = dispatch.result(future)
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{owner}: the training of the member with seed {seed} diverged: {exc}") from None
        label = f"<member seed={seed}>"
        models.append(build_model(read_model_file(label, owner, stream=io.BytesIO(blob)), label, device, owner))
    return Ensemble(models, output=output)


def _member_task(owner, build, seed, X, y, epochs):
    """Train build(seed) and return its model as the bytes of a model file."""
    from .io import write_model
    from .trainer import Trainer

    trainer = build(seed)
    if not isinstance(trainer, Trainer):
        raise TypeError(f"{owner}: build(seed) must return a fresh fastnn.Trainer; got {type(trainer).__name__}.")
    trainer.fit(X, y, epochs=epochs, verbose=0)
    model = trainer.model
    model.metadata = {**model.metadata, "loss": model.metadata.get("loss", trainer.loss.name)}
    buf = io.BytesIO()
    write_model(model, buf)
    return buf.getvalue()


__all__ = ["FORMAT_VERSION", "MAX_MEMBERS", "OUTPUTS", "Ensemble", "train_ensemble"]
