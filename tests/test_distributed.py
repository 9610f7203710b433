"""Data-parallel training over MPI (issue 14): K ranks x batch b against one process with batch
K x b (float64), BatchNorm and Dropout against an in-process emulation of K ranks, rank-0-only
writers, checkpoint and resume under MPI, and a failing rank that ends every rank without a hang.
The MPI runs are real: ``mpiexec -n K`` subprocesses over the loopback (tests/_mpi_script.py)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn
import _mpi_script as script  # the data and Trainers the MPI runs use
from fastnn.distributed import MPI, _merge_metric, _metric_state, as_distributed, rank_key, shard

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fnn.__file__)))


def _mpiexec():
    pytest.importorskip("mpi4py")
    found = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(found):
        pytest.skip("no mpiexec (pip install 'fastnn[mpi]')")
    return found


def run_mpi(k, scenario, out, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([_mpiexec(), "-n", str(k), sys.executable, os.path.join(HERE, "_mpi_script.py"), scenario,
                           str(out)], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module", params=[2, 3])
def equal_run(request, tmp_path_factory):
    k = request.param
    out = tmp_path_factory.mktemp(f"mpi{k}")
    proc = run_mpi(k, "equal", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return k, out


def load(out, name, k):
    return [dict(np.load(os.path.join(out, f"{name}-{r}.npz"))) for r in range(k)]


def single(build, batch_size, epochs):
    t = build()
    t.distributed, t.batch_size = None, batch_size
    X, y = script.data()
    t.fit(X, y, epochs=epochs, verbose=0)
    return t


def test_ranks_hold_identical_parameters(equal_run):
    k, out = equal_run
    for name in ("dense", "bn", "resumed", "straight", "shard"):
        runs = load(out, name, k)
        for r in range(1, k):
            np.testing.assert_array_equal(runs[r]["params"], runs[0]["params"], err_msg=f"{name}: rank {r}")
            np.testing.assert_array_equal(runs[r]["loss"], runs[0]["loss"])


def test_k_ranks_equal_one_process_with_k_times_the_batch(equal_run):
    k, out = equal_run
    got = load(out, "dense", k)[0]
    ref = single(script.dense_trainer, k * script.B, 3)
    np.testing.assert_allclose(got["params"], ref.model.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["loss"], ref.history["loss"], rtol=1e-10)
    np.testing.assert_allclose(got["mae"], ref.history["mae"], rtol=1e-10)


def _rank_gradient(model, loss, X, y, m):
    """One rank's share of the gradient of a global batch of ``m`` rows: its rows' loss scaled by
    the global count, as fastnn.distributed scales it before the allreduce."""
    out = model.forward(X, training=True)
    grad = np.empty_like(out)
    loss(model.backend, out, y, scale=1.0 / loss.count(m, model.n_out), loss_out=np.zeros(1), grad=grad)
    model.backward(grad)
    return model.grads


def emulate(k, build, epochs):
    """One process playing K ranks: each rank's rows of every global batch forwarded (BatchNorm's
    statistics per rank, Dropout under the rank's key), the loss scaled by the global batch's
    rows, the K gradients summed, one update."""
    t = build()
    model, loss, opt = t.model, t.loss, t.optimizer
    X, y = script.data()
    n = len(X)
    model.ensure_built(X.shape[1], "emulate")
    opt.bind(model)
    dropouts = [(layer, layer._key) for layer in model.layers if isinstance(layer, fnn.layers.Dropout)]
    gbs = k * script.B
    count = -(-n // gbs)
    if n - (count - 1) * gbs < k * model.min_train_rows:
        count -= 1
    for epoch in range(epochs):
        opt.epoch = epoch
        order = t.rng.permutation(n)
        for b in range(count):
            start, stop = b * gbs, n if b == count - 1 else (b + 1) * gbs
            m = stop - start
            total = np.zeros_like(model.grads)
            steps = [layer.step for layer, _ in dropouts]
            for r in range(k):
                idx = order[start + m * r // k: start + m * (r + 1) // k]
                for (layer, key), step in zip(dropouts, steps):
                    layer._key, layer.step = rank_key(key, r), step
                total += _rank_gradient(model, loss, X[idx], y[idx], m)
            model.grads[:] = total
            opt.step()
    return model


def test_batchnorm_dropout_and_schedule_match_the_emulated_ranks(equal_run):
    k, out = equal_run
    got = load(out, "bn", k)[0]["params"]
    model = emulate(k, script.bn_dropout_trainer, 2)
    trained = np.zeros(model.params.shape, bool)
    for p in model.param_info:
        trained[p.start:p.stop] = p.kind != "buffer"
    np.testing.assert_allclose(got[trained], model.params[trained], rtol=1e-10, atol=1e-12)


def emulate_shards(k, build, epochs):
    """One process playing K ranks that each pass their own shard (fastnn.distributed.shard)."""
    t = build()
    model, loss, opt = t.model, t.loss, t.optimizer
    X, y = script.data()
    parts = [shard(X, y, rank=r, size=k) for r in range(k)]
    sizes = [len(p[0]) for p in parts]
    model.ensure_built(X.shape[1], "emulate")
    opt.bind(model)
    count = min(-(-s // script.B) for s in sizes)
    for epoch in range(epochs):
        opt.epoch = epoch
        seed = int(t.rng.integers(2**63))
        perms = [np.random.default_rng([seed, r]).permutation(s) for r, s in enumerate(sizes)]
        for b in range(count):
            cuts = [(b * script.B, s if b == count - 1 else (b + 1) * script.B) for s in sizes]
            m = sum(c - a for a, c in cuts)
            total = np.zeros_like(model.grads)
            for (Xr, yr), perm, (a, c) in zip(parts, perms, cuts):
                idx = perm[a:c]
                total += _rank_gradient(model, loss, Xr[idx], yr[idx], m)
            model.grads[:] = total
            opt.step()
    return model


def test_shards_match_the_emulated_ranks(equal_run):
    k, out = equal_run
    got = load(out, "shard", k)[0]["params"]
    np.testing.assert_allclose(got, emulate_shards(k, script.dense_trainer, 2).params, rtol=1e-10, atol=1e-12)


def test_checkpoint_written_by_rank_0_resumes_under_mpi(equal_run):
    k, out = equal_run
    resumed, straight = load(out, "resumed", k)[0], load(out, "straight", k)[0]
    np.testing.assert_allclose(resumed["params"], straight["params"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(resumed["loss"], straight["loss"], rtol=1e-12)
    assert os.path.exists(os.path.join(out, "log-0.csv"))
    assert not any(os.path.exists(os.path.join(out, f"log-{r}.csv")) for r in range(1, k))


def test_shards_train_and_validation_comes_from_rank_0(equal_run):
    k, out = equal_run
    runs = load(out, "shard", k)
    assert np.all(np.isfinite(runs[0]["loss"])) and len(runs[0]["val_loss"]) == 2
    for r in range(1, k):
        np.testing.assert_array_equal(runs[r]["val_loss"], runs[0]["val_loss"])


@pytest.mark.parametrize("k, scenario, kind", [(2, "bad_data", "ValueError"), (3, "diverge", "TrainingDiverged")])
def test_a_failing_rank_ends_every_rank_with_its_error(tmp_path, k, scenario, kind):
    proc = run_mpi(k, scenario, tmp_path, timeout=60)  # a hang would raise TimeoutExpired
    assert proc.returncode != 0
    err = proc.stderr
    assert f"rank {k - 1} of {k} failed: {kind}" in err, err[-3000:]
    expected = "contains NaN" if scenario == "bad_data" else "loss became inf"
    assert err.count(expected) >= k, err[-3000:]  # the failing rank's own error and each peer's


def test_a_ctrl_c_on_one_rank_ends_every_rank(tmp_path):
    proc = run_mpi(2, "interrupt", tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "rank 1 of 2 failed: KeyboardInterrupt" in proc.stderr, proc.stderr[-3000:]


def test_an_error_on_every_rank_ends_the_job_at_once(tmp_path):
    import time

    t0 = time.monotonic()
    proc = run_mpi(3, "everywhere", tmp_path, timeout=60)
    assert proc.returncode != 0 and time.monotonic() - t0 < 30  # not the 60 s grace of a lone failure
    assert proc.stderr.count("augment is not supported with distributed='mpi'") >= 3, proc.stderr[-3000:]


def test_a_rank_that_never_arrives_makes_the_others_abort_after_the_timeout(tmp_path):
    import time

    t0 = time.monotonic()
    proc = run_mpi(2, "hang", tmp_path, timeout=50)  # the silent rank sleeps 60 s: only the abort ends it sooner
    assert proc.returncode != 0 and time.monotonic() - t0 < 45
    assert "rank 0 waited more than 2 s for the other ranks (fit's start); aborting the job." in proc.stderr


def test_ranks_with_different_trainers_are_told_so(tmp_path):
    proc = run_mpi(2, "mismatch", tmp_path, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("Trainer.fit: the ranks' models, batch sizes or optimizers differ (rank 0: 66 parameters, "
                             "float64, batch_size=4, Adam; rank 1: 66 parameters, float64, batch_size=None, Adam); "
                             "build the same Trainer on every rank.") >= 2, proc.stderr[-3000:]


def test_a_stop_asked_by_one_rank_stops_every_rank_at_the_same_batch(tmp_path):
    proc = run_mpi(2, "stop_on_one_rank", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load(tmp_path, "stopped", 2)
    steps_per_epoch = -(-script.N // (2 * script.B))
    assert int(runs[0]["steps"]) == int(runs[1]["steps"]) == steps_per_epoch + 3
    np.testing.assert_array_equal(runs[0]["params"], runs[1]["params"])


# ---------------------------------------------------------------------------- without mpiexec
def test_distributed_argument_is_checked():
    model = fnn.Sequential([fnn.layers.Dense(1)], seed=0)
    with pytest.raises(ValueError, match=r"Trainer: distributed must be None, 'mpi' or a fastnn.distributed.MPI; "
                                         r"got 'nccl'"):
        fnn.Trainer(model, "mse", distributed="nccl")
    with pytest.raises(ValueError, match="MPI: timeout must be"):
        MPI(timeout=0)
    assert as_distributed("mpi").timeout == 600.0
    assert fnn.Trainer(model, "mse").distributed is None


def test_shard_splits_rows_evenly():
    X = np.arange(10)
    parts = [shard(X, rank=r, size=3)[0] for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 4]
    np.testing.assert_array_equal(np.concatenate(parts), X)
    with pytest.raises(ValueError, match="same number of rows"):
        shard(X, X[:3], rank=0, size=2)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "r2"])
def test_metric_states_merge_to_the_whole_epochs(metric):
    rng = np.random.default_rng(0)
    if metric == "r2":
        pred, target = rng.standard_normal((30, 2)), rng.standard_normal((30, 2))
    else:
        pred, target = rng.standard_normal((30, 3)), rng.integers(0, 3, 30)
    whole = fnn.metrics.get_metric(metric)
    whole.update(pred, target)
    parts = []
    for a, b in ((0, 10), (10, 12), (12, 30)):
        m = fnn.metrics.get_metric(metric)
        m.update(pred[a:b], target[a:b])
        parts.append(_metric_state(m))
    merged = fnn.metrics.get_metric(metric)
    _merge_metric(merged, parts)
    assert merged.result() == pytest.approx(whole.result(), rel=1e-12)


def test_cli_train_distributed_prints_and_saves_on_rank_0(tmp_path):
    _mpiexec()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [_mpiexec(), "-n", "2", sys.executable, "-m", "fastnn.cli", "train", "--data", "iris", "--epochs", "2",
           "--batch-size", "8", "--distributed", "mpi", "--out", str(tmp_path / "m.fnn")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("saved ") == 1 and proc.stdout.count("epoch 2 ") == 1
    assert fnn.load(tmp_path / "m.fnn").n_params > 0


def test_bench_mpi_smoke():
    _mpiexec()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_mpi.py"), "--config", "tiny", "--ranks",
                           "1,2", "--rows", "256", "--epochs", "1", "--reduces", "2"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["config", "K"] and [line.split()[:4] for line in lines[1:]] == [
        ["tiny", "1", "x", "2"], ["tiny", "2", "x", "1"]]
