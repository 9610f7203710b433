"""Run by tests/test_distributed.py as ``mpiexec -n K python _mpi_script.py SCENARIO OUTDIR``.

equal: the scenarios whose weights the test compares (written by every rank to OUTDIR/<name>-<rank>.npz);
stop_on_one_rank: one rank's callback stops training, every rank stops at the same batch;
bad_data, diverge, interrupt: the last rank fails and the error must end every rank;
everywhere, mismatch: every rank fails on its own; hang: a rank never arrives, the others abort.
"""

import os
import sys

import numpy as np
from mpi4py import MPI

import fastnn as fnn
from fastnn.distributed import shard

RANK, SIZE = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
N, B = 52, 4  # 52 rows: the last global batch leaves every rank a row for K = 2 and 3


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, 5)), rng.standard_normal((N, 2))


def dense_trainer():
    model = fnn.Sequential([fnn.layers.Dense(8, activation="tanh"), fnn.layers.Dense(2)], seed=0, dtype="float64")
    opt = fnn.optim.Adam(fnn.schedules.Cosine(1e-2, total_steps=40))
    return fnn.Trainer(model, "mse", opt, batch_size=B, metrics=["mae"], seed=1, distributed="mpi")


def bn_dropout_trainer():
    model = fnn.Sequential([fnn.layers.Dense(8, activation="relu"), fnn.layers.BatchNorm(), fnn.layers.Dropout(0.3),
                            fnn.layers.Dense(2)], seed=0, dtype="float64")
    opt = fnn.optim.SGD(fnn.schedules.Step(0.05, step_size=5, gamma=0.5), momentum=0.9)
    return fnn.Trainer(model, "mse", opt, batch_size=B, seed=1, distributed="mpi")


def save(out, name, trainer, **extra):
    np.savez(os.path.join(out, f"{name}-{RANK}.npz"), params=trainer.model.params,
             loss=np.array(trainer.history["loss"]), **extra)


def equal(out):
    X, y = data()
    t = dense_trainer()
    t.fit(X, y, epochs=3, verbose=0, callbacks=[fnn.callbacks.CSVLogger(os.path.join(out, f"log-{RANK}.csv"))])
    save(out, "dense", t, mae=np.array(t.history["mae"]))

    t = bn_dropout_trainer()
    t.fit(X, y, epochs=2, verbose=0)
    save(out, "bn", t)

    # checkpoint after 2 epochs (written by rank 0 only), resumed under MPI for 2 more == 4 straight
    path = os.path.join(out, "ckpt.fnn")
    t = bn_dropout_trainer()
    t.fit(X, y, epochs=2, verbose=0, callbacks=[fnn.callbacks.ModelCheckpoint(path, full=True)])
    MPI.COMM_WORLD.Barrier()
    resumed = fnn.Trainer.from_checkpoint(path)
    resumed.distributed = "mpi"
    resumed.fit(X, y, epochs=2, verbose=0)
    save(out, "resumed", resumed)
    t = bn_dropout_trainer()
    t.fit(X, y, epochs=4, verbose=0)
    save(out, "straight", t)

    # each rank passes only its own rows
    t = dense_trainer()
    t.fit(*shard(X, y), epochs=2, verbose=0, validation=(X[:10], y[:10]))
    save(out, "shard", t, val_loss=np.array(t.history["val_loss"]))


def stop_on_one_rank(out):
    """The last rank's callback stops training after batch 2 of epoch 2: every rank stops there."""
    X, y = data()
    t = dense_trainer()

    def stop(batch, logs):
        if RANK == SIZE - 1 and t.epoch == 1 and batch == 2:
            t.stop_training = True

    t.fit(X, y, epochs=3, verbose=0, callbacks=[fnn.callbacks.LambdaCallback(on_batch_end=stop)])
    save(out, "stopped", t, steps=np.array(t.optimizer.step_count))


def bad_data(out):
    X, y = data()
    if RANK == SIZE - 1:
        X = X.copy()
        X[3, 1] = np.nan
    dense_trainer().fit(X, y, epochs=2, verbose=0)


def diverge(out):
    X, y = data()
    if RANK == SIZE - 1:
        y = y * 1e200  # the squared error overflows: TrainingDiverged on this rank
    dense_trainer().fit(X, y, epochs=2, verbose=0)


def interrupt(out):
    """A KeyboardInterrupt (a second Ctrl-C) on the last rank ends every rank."""
    X, y = data()

    def hit(batch, logs):
        if RANK == SIZE - 1 and batch == 3:
            raise KeyboardInterrupt

    dense_trainer().fit(X, y, epochs=2, verbose=0, callbacks=[fnn.callbacks.LambdaCallback(on_batch_end=hit)])


def hang(out):
    """The last rank never reaches fit: the others' bounded wait aborts the job."""
    import time

    X, y = data()
    if RANK == SIZE - 1:
        time.sleep(60)
    t = dense_trainer()
    t.distributed = fnn.distributed.MPI(timeout=2)
    t.fit(X, y, epochs=1, verbose=0)


def mismatch(out):
    """Rank 1 builds another batch size: every rank raises the same clear error."""
    X, y = data()
    t = dense_trainer()
    t.batch_size = None if RANK == 1 else B
    t.fit(X, y, epochs=1, verbose=0)


def everywhere(out):
    """The same mistake on every rank: each raises its own error and the job ends at once."""
    X, y = data()
    t = dense_trainer()
    t.augment = [fnn.augment.GaussianNoise(0.1)]
    t.fit(X, y, epochs=1, verbose=0)


if __name__ == "__main__":
    {"equal": equal, "bad_data": bad_data, "diverge": diverge, "interrupt": interrupt, "everywhere": everywhere,
     "stop_on_one_rank": stop_on_one_rank, "hang": hang,
     "mismatch": mismatch}[sys.argv[1]](sys.argv[2])
