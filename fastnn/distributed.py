"""Data-parallel training over MPI: ``fnn.Trainer(..., distributed="mpi")`` in a script launched
as ``mpiexec -n K python train.py`` (see docs/distributed.md).

Every rank holds the whole model. At the start of ``fit`` rank 0's parameters, optimizer state,
epoch, generator state and layer counters are broadcast, so every rank starts identical. Each
step, every rank computes the gradient of its rows with the loss scaled by the *global* batch's
row count, one in-place allreduce (sum) of the flat gradient buffer makes it the gradient of the
global batch (row-weighted, so a short last batch is right), and the same fused update runs on
every rank: the parameters stay identical, step after step.

Sharding, decided by the data each rank passes (compared by size and checksum at fit start):

- *full*: every rank passes the same arrays. The permutation of an epoch is drawn from the
  Trainer's generator (the same on every rank), cut into global batches of K x batch_size rows,
  and rank r trains slice r of each: K ranks x batch b take the steps of one process with batch
  K x b.
- *shard*: each rank passes only its own rows. Each rank permutes its rows with a generator
  derived from the Trainer's (the same draw on every rank) and its rank; the epoch has the
  steps of the smallest shard, the other shards' extra rows joining their last batch.

The loss and metrics are reduced across ranks; validation is evaluated on rank 0 and broadcast;
every rank's History is the same (but for epoch_time), so EarlyStopping and ReduceLROnPlateau
decide the same everywhere. The ProgressBar, ModelCheckpoint and CSVLogger run on rank 0 only. BatchNorm uses
each rank's batch statistics (b rows, not K x b); its running statistics are averaged over the
ranks at every epoch's end. Dropout draws rank r's masks from its stream under a key derived
from the layer's key and r (rank 0 keeps the layer's own key).

Failure: every wait is a bounded poll. A rank whose fit raises sends its error to the others,
which raise it too (the same type for ValueError, TypeError and TrainingDiverged, else
DistributedError), so every rank ends with the error; a wait that passes ``timeout`` calls
``comm.Abort``, as does an uncaught exception at exit, after its traceback (so no rank hangs in
MPI_Finalize); the failing rank first waits (up to min(timeout, 60 s)) until every other rank
has received its error or failed too.
"""

from __future__ import annotations

import itertools
import sys
import time
import zlib

import numpy as np

from ._checks import check_float
from ._random import stream_key
from .errors import TrainingDiverged

#: MPI tag of the error message a failing rank sends to the others.
_ERROR_TAG = 0x6E6E
#: MPI tag of the receipt a rank sends back to the failing rank when its error arrives.
_RECEIPT_TAG = 0x6E6F
#: Errors a peer re-raises with the failing rank's type (anything else: DistributedError).
_SAME_TYPE = {"ValueError": ValueError, "TypeError": TypeError, "TrainingDiverged": TrainingDiverged}


class DistributedError(RuntimeError):
    """Another rank failed (its error in the message), or a wait ran past its timeout."""


class MPI:
    """Settings of data-parallel training over MPI: ``Trainer(..., distributed=MPI(timeout=60))``;
    ``distributed="mpi"`` is ``MPI()``.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator (default ``MPI.COMM_WORLD``); a duplicate is used, so fastnn's messages
        never meet the program's own.
    timeout : float, default 600
        Seconds any one wait for the other ranks may last (> 0); past it the job is aborted with
        ``comm.Abort`` (a rank that stopped answering cannot be raised out of a collective).

    >>> MPI(timeout=30).timeout
    30.0
    """

    def __init__(self, comm=None, timeout=600.0):
        self.comm = comm
        self.timeout = check_float("MPI", "timeout", timeout, low=0.0, low_open=True)

    def __repr__(self):
        return f"MPI(timeout={self.timeout!r})"


def as_distributed(value, owner="Trainer"):
    """None, or the MPI settings ``value`` stands for ('mpi' or an MPI instance)."""
    if value is None or isinstance(value, MPI):
        return value
    if isinstance(value, str) and value == "mpi":
        return MPI()
    raise ValueError(f"{owner}: distributed must be None, 'mpi' or a fastnn.distributed.MPI; got {value!r}.")


def _import_mpi(owner):
    try:
        from mpi4py import MPI as _MPI
    except ImportError as exc:
        raise ImportError(f"{owner}: distributed='mpi' needs mpi4py and an MPI library; install them with "
                          f"pip install 'fastnn[mpi]' ({exc}).") from None
    return _MPI


#: {"comm": the communicator to abort, "origin": True when this rank's own error started a failure}
_ABORT: dict = {}


def _install_abort_hook(comm, timeout):
    """Make an uncaught exception abort the MPI job after printing its traceback: a rank that
    exits with a collective pending elsewhere must not leave the others waiting in Finalize."""
    first = not _ABORT
    _ABORT.update(comm=comm, origin=False, grace=min(timeout, 60.0))
    if not first:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        sys.stdout.flush()
        if _ABORT.get("origin"):  # the failing rank: the others print the error it sent, then abort the job
            _await_peers(_ABORT["comm"], _ABORT["grace"])  # (which ends this process too)
        _abort(_ABORT["comm"])

    sys.excepthook = hook


def _abort(comm):
    """comm.Abort(1), a moment after flushing: mpiexec forwards what was printed before it kills."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(1.0)  # (and the other ranks, which print the same error, a moment to do so)
    comm.Abort(1)


def _await_peers(comm, grace):
    """Wait, at most ``grace`` seconds, until every other rank has received this rank's error
    (a receipt) or failed too (its own error): then they are printing it and about to abort."""
    from mpi4py import MPI as _MPI

    heard, status, deadline = set(), _MPI.Status(), time.monotonic() + grace
    while len(heard) < comm.Get_size() - 1 and time.monotonic() < deadline:
        while comm.Iprobe(source=_MPI.ANY_SOURCE, tag=_MPI.ANY_TAG, status=status):
            comm.recv(source=status.Get_source(), tag=status.Get_tag())
            if status.Get_tag() in (_ERROR_TAG, _RECEIPT_TAG):
                heard.add(status.Get_source())
        time.sleep(1e-3)
    time.sleep(min(0.5, grace))  # their tracebacks before the abort


#: fastnn's duplicate of each communicator it was given, by its Fortran handle (made once)
_DUPLICATES: dict = {}


class _Communicator:
    """A duplicated communicator whose every wait polls for a peer's error, up to a timeout."""

    def __init__(self, spec, owner):
        mpi = _import_mpi(owner)
        self.mpi = mpi
        base = spec.comm if spec.comm is not None else mpi.COMM_WORLD
        self.timeout = spec.timeout
        self.failed = False
        key = base.py2f()
        if key not in _DUPLICATES:  # once per communicator and process: duplicating is collective
            comm, request = base.Idup()
            _install_abort_hook(base, self.timeout)
            deadline = time.monotonic() + self.timeout
            while not request.Test():  # no peer can send an error before every rank is here
                if time.monotonic() > deadline:
                    print(f"fastnn.distributed: rank {base.Get_rank()} waited more than {self.timeout:g} s for "
                          f"the other ranks (fit's start); aborting the job.", file=sys.stderr, flush=True)
                    _abort(base)
                time.sleep(1e-3)
            _DUPLICATES[key] = comm
        self.comm = _DUPLICATES[key]
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        _install_abort_hook(self.comm, self.timeout)

    def wait(self, request, what):
        """Complete ``request``; raise a peer's error if one arrives first; abort past the timeout."""
        deadline = time.monotonic() + self.timeout
        spins = 0
        while not request.Test():
            if self.comm.Iprobe(source=self.mpi.ANY_SOURCE, tag=_ERROR_TAG):
                self._raise_peer_error()
            spins += 1
            if spins > 200:
                if time.monotonic() > deadline:
                    self.abort(f"fastnn.distributed: rank {self.rank} waited more than {self.timeout:g} s for "
                               f"the other ranks ({what}); aborting the job.")
                time.sleep(1e-4 if spins < 20000 else 1e-3)

    def _raise_peer_error(self):
        status = self.mpi.Status()
        kind, text = self.comm.recv(source=self.mpi.ANY_SOURCE, tag=_ERROR_TAG, status=status)
        self.comm.isend(None, dest=status.Get_source(), tag=_RECEIPT_TAG)  # small: sent eagerly
        self.failed = True
        message = f"rank {status.Get_source()} of {self.size} failed: {text}"
        raise _SAME_TYPE.get(kind, DistributedError)(message)

    def abort(self, message):
        print(message, file=sys.stderr, flush=True)
        _abort(self.comm)

    def tell_failure(self, exc):
        """Send this rank's error to every other rank (unless it came from one of them)."""
        if self.failed:
            return
        self.failed = True
        _ABORT["origin"] = True
        text = f"{type(exc).__name__}: {exc}"
        requests = [self.comm.isend((type(exc).__name__, text), dest=r, tag=_ERROR_TAG)
                    for r in range(self.size) if r != self.rank]
        deadline = time.monotonic() + min(self.timeout, 10.0)
        while requests and time.monotonic() < deadline:
            requests = [r for r in requests if not r.Test()]
            time.sleep(1e-3)

    # ---- collectives, each completed through wait
    def allreduce_(self, array, what, op=None):
        self.wait(self.comm.Iallreduce(self.mpi.IN_PLACE, array, op or self.mpi.SUM), what)
        return array

    def bcast_(self, array, what):
        self.wait(self.comm.Ibcast(array, root=0), what)
        return array

    def barrier(self, what):
        self.wait(self.comm.Ibarrier(), what)

    def allgather_object(self, obj, what):
        self.barrier(what)  # every rank is here: the blocking object collective cannot hang
        return self.comm.allgather(obj)

    def bcast_object(self, obj, what):
        self.barrier(what)
        return self.comm.bcast(obj, root=0)


def _checksum(*arrays):
    crc = 0
    for a in arrays:
        if a is not None:
            crc = zlib.crc32(np.ascontiguousarray(a).view(np.uint8).ravel(), crc)
    return crc


class _Session:
    """One distributed ``fit``: the communicator, the sharding plan (``n_batches``, ``local``:
    each step's [start, stop) in this rank's epoch order, ``global_rows``: each step's rows over
    all ranks, ``rows``, ``capacity``) and the hooks the Trainer's loop calls (begin,
    epoch_order, allreduce_grads, agree, end_epoch, evaluate)."""

    def __init__(self, spec, owner):
        self.owner = owner
        self.comm = _Communicator(spec, owner)
        self.rank, self.size = self.comm.rank, self.comm.size
        self._dropout_keys = []

    # ------------------------------------------------------------ start
    def begin(self, trainer, X, y, w, callbacks):
        """Check the setup, make every rank start from rank 0's state, plan the epoch; returns
        the callbacks this rank runs."""
        owner, model = self.owner, trainer.model
        if model.backend.device_resident or model.device == "cuda":
            raise ValueError(f"{owner}: distributed='mpi' trains on the host; got device={model.device!r}; "
                             f"use device='cpu'.")
        if trainer.augment:
            raise ValueError(f"{owner}: augment is not supported with distributed='mpi'; apply the augmentation "
                             f"to the data before fit or train in one process.")
        n, comm = len(X), self.comm
        info = comm.allgather_object((n, _checksum(X, y, w), model.n_params, str(model.dtype),
                                      trainer.batch_size, type(trainer.optimizer).__name__), "fit's start")
        if len({i[2:] for i in info}) > 1:
            listed = "; ".join(f"rank {r}: {i[2]} parameters, {i[3]}, batch_size={i[4]}, {i[5]}"
                               for r, i in enumerate(info))
            raise ValueError(f"{owner}: the ranks' models, batch sizes or optimizers differ ({listed}); "
                             f"build the same Trainer on every rank.")
        self.full = len({i[:2] for i in info}) == 1
        self.sizes = [i[0] for i in info]
        self._broadcast_state(trainer)
        self._plan(trainer, n)
        self._bind_dropout(model)
        self._buffer_views = [model.params[p.start:p.stop] for p in model.param_info if p.kind == "buffer"]
        if self.rank == 0:
            return callbacks
        from .callbacks import CSVLogger, ModelCheckpoint, ProgressBar

        return [cb for cb in callbacks if not isinstance(cb, (ProgressBar, ModelCheckpoint, CSVLogger))]

    def _broadcast_state(self, trainer):
        model, opt, comm = trainer.model, trainer.optimizer, self.comm
        comm.bcast_(model.params, "the initial weights")
        opt.bind(model)
        for name in sorted(opt.state):
            comm.bcast_(opt.state[name], f"the optimizer state {name!r}")
        state = {"epoch": trainer.epoch, "rng": trainer.rng.bit_generator.state,
                 "optimizer": {k: v for k, v in opt.state_dict().items() if k != "state"},
                 "layers": [layer.state_dict() for layer in model.layers],
                 "history": trainer.history.state_dict()}
        state = comm.bcast_object(state if self.rank == 0 else None, "the training state")
        if self.rank:
            trainer.epoch = state["epoch"]
            trainer.rng.bit_generator.state = state["rng"]
            opt.step_count, opt.epoch = int(state["optimizer"]["step_count"]), int(state["optimizer"]["epoch"])
            opt.lr_scale = float(state["optimizer"]["lr_scale"])
            for k, v in state["optimizer"]["scalars"].items():
                setattr(opt, k, v)
            for layer, layer_state in zip(model.layers, state["layers"]):
                if layer_state:
                    layer.load_state_dict(layer_state)
            trainer.history.load_state_dict(state["history"])

    def _plan(self, trainer, n):
        """Per step: this rank's [start, stop) in its epoch order and the global batch's rows."""
        K, r = self.size, self.rank
        min_rows = trainer.model.min_train_rows
        if self.full:
            gbs = n if trainer.batch_size is None else min(trainer.batch_size * K, n)
            count = -(-n // gbs)
            if count > 1 and n - (count - 1) * gbs < K * min_rows:
                count -= 1  # every rank's part of the last batch must be trainable
            if n < K * min_rows:
                raise ValueError(f"{self.owner}: {n} training rows cannot give each of {K} ranks {min_rows} "
                                 f"row(s) per batch; use fewer ranks or more data.")
            bounds, global_rows = [], []
            for b in range(count):
                start, stop = b * gbs, (n if b == count - 1 else (b + 1) * gbs)
                m = stop - start
                bounds.append((start + m * r // K, start + m * (r + 1) // K))
                global_rows.append(m)
            self.n_batches = count
        else:
            bs = [s if trainer.batch_size is None else min(trainer.batch_size, s) for s in self.sizes]
            count = min(-(-s // b) for s, b in zip(self.sizes, bs))
            for s, b in zip(self.sizes, bs):
                if count > 1 and s - (count - 1) * b < min_rows:
                    count -= 1
            if min(self.sizes) < min_rows:
                raise ValueError(f"{self.owner}: rank {int(np.argmin(self.sizes))} has {min(self.sizes)} training "
                                 f"rows; every shard needs at least {min_rows}.")
            per_rank = [[(i * b, s if i == count - 1 else (i + 1) * b) for i in range(count)]
                        for s, b in zip(self.sizes, bs)]
            bounds = per_rank[r]
            global_rows = [sum(p[i][1] - p[i][0] for p in per_rank) for i in range(count)]
            self.n_batches = count
        self.bounds, self.global_rows = bounds, global_rows
        # [start, stop) of each step in this rank's epoch order (epoch_order lays its parts end to end)
        ends = np.cumsum([0] + [b - a for a, b in bounds]).tolist()
        self.local = list(itertools.pairwise(ends))
        self.n, self.rows = n, ends[-1]
        self.capacity = max(stop - start for start, stop in bounds)
        self.total = sum(global_rows)

    def _bind_dropout(self, model):
        """Rank r > 0 draws Dropout masks under a key derived from the layer's and r."""
        from .layers import Dropout

        if self.rank:
            for layer in model.layers:
                if isinstance(layer, Dropout):
                    self._dropout_keys.append((layer, layer._key))
                    layer._key = rank_key(layer._key, self.rank)

    def close(self):
        """Give the layers their own keys back (checkpoints and later fits see them)."""
        for layer, key in self._dropout_keys:
            layer._key = key
        self._dropout_keys = []

    # ------------------------------------------------------------ per epoch / step
    def epoch_order(self, trainer):
        """This rank's rows of the epoch, global batch after global batch (an int64 array)."""
        if self.full:
            order = trainer.rng.permutation(self.n) if trainer.shuffle and self.n_batches > 1 else np.arange(self.n)
            return np.concatenate([order[a:b] for a, b in self.bounds])
        if not trainer.shuffle:
            return np.arange(self.n)
        seed = int(trainer.rng.integers(2**63))  # the same draw on every rank keeps their generators equal
        return np.random.default_rng([seed, self.rank]).permutation(self.n)

    def allreduce_grads(self, grads):
        """Sum the ranks' gradients in place: each was scaled by the global batch's rows."""
        self.comm.allreduce_(grads, "the gradient allreduce")

    def agree(self, trainer, sigint):
        """Stop (a callback, Ctrl-C) on every rank at the same batch when any rank asks to."""
        flags = np.array([float(trainer.stop_training), float(sigint.caught)])
        self.comm.allreduce_(flags, "the stop flags", self.comm.mpi.MAX)
        trainer.stop_training = bool(flags[0])
        sigint.caught = bool(flags[1])

    def end_epoch(self, trainer, penalize):
        """Sum the loss accumulators and the metrics' state over the ranks and average the
        BatchNorm running statistics; returns the epoch's global row count."""
        comm = self.comm
        comm.allreduce_(trainer._loss_acc, "the epoch's loss")
        if penalize:
            comm.allreduce_(trainer._penalty_acc, "the epoch's penalty")
        for view in self._buffer_views:
            comm.allreduce_(view, "the BatchNorm running statistics")
            view *= 1.0 / self.size
        if trainer.metrics:
            states = comm.allgather_object([_metric_state(m) for m in trainer.metrics], "the epoch's metrics")
            for i, m in enumerate(trainer.metrics):
                _merge_metric(m, [s[i] for s in states])
        return self.total

    def evaluate(self, trainer, val):
        """Rank 0's validation scores, on every rank."""
        scores = trainer._evaluate_arrays(*val) if self.rank == 0 else None
        return self.comm.bcast_object(scores, "the validation scores")


def rank_key(key, rank):
    """The Dropout key of ``rank`` for a layer whose key is ``key`` (rank 0: ``key`` itself).

    >>> rank_key(5, 0), rank_key(5, 1) == rank_key(5, 1) != rank_key(5, 2)
    (5, True)
    """
    return key if rank == 0 else stream_key(int(key), int(rank))


def _metric_state(metric):
    return {k: v for k, v in vars(metric).items() if k.startswith("_")}


def _merge_metric(metric, states):
    """Set ``metric``'s accumulators to the sum of the ranks' (arrays padded to one length)."""
    for key in states[0]:
        values = [s[key] for s in states]
        if all(isinstance(v, (int, float, np.ndarray, np.floating)) and not isinstance(v, bool) for v in values):
            arrays = [np.asarray(v, np.float64) for v in values]
            if all(a.ndim == 0 for a in arrays):
                total = float(sum(arrays))
            else:
                size = max(a.size for a in arrays)
                total = sum(np.pad(a.ravel(), (0, size - a.size)) for a in arrays)
            setattr(metric, key, total)
        else:
            setattr(metric, key, next((v for v in values if v is not None), None))


def fit_distributed(trainer, fit, *args, **kwargs):
    """Run ``fit`` under a distributed session: a failure on this rank is sent to the others
    before it propagates; the session is closed whatever happens."""
    spec = as_distributed(trainer.distributed, "Trainer.fit")
    session = _Session(spec, "Trainer.fit")
    trainer._dist = session
    try:
        return fit(*args, **kwargs)
    except BaseException as exc:
        session.comm.tell_failure(exc)
        raise
    finally:
        session.close()
        trainer._dist = None


def world():
    """(rank, size) of ``MPI.COMM_WORLD``; (0, 1) without mpi4py."""
    try:
        from mpi4py import MPI as _MPI
    except ImportError:
        return 0, 1
    return _MPI.COMM_WORLD.Get_rank(), _MPI.COMM_WORLD.Get_size()


def shard(*arrays, rank=None, size=None):
    """Rank ``rank``'s rows of each array: contiguous parts of near-equal length (default the
    calling process's rank and size in ``MPI.COMM_WORLD``), for the *shard* way of passing data.

    >>> import numpy as np
    >>> [a.tolist() for a in shard(np.arange(5), rank=1, size=2)]
    [[2, 3, 4]]
    """
    if rank is None or size is None:
        rank, size = world()
    n = len(arrays[0])
    for a in arrays:
        if len(a) != n:
            raise ValueError(f"shard: the arrays must have the same number of rows; got {[len(b) for b in arrays]}.")
    return [a[n * rank // size: n * (rank + 1) // size] for a in arrays]


__all__ = ["MPI", "DistributedError", "as_distributed", "fit_distributed", "rank_key", "shard", "world"]
