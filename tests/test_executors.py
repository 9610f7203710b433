"""Search trials, folds and ensemble members as tasks (issue 14): a ProcessPoolExecutor and a real
dask.distributed LocalCluster of 2 worker processes give what the serial run gives, in the same
order; a failed trial is reported in the table; each task sets its BLAS threads."""

import concurrent.futures
import math
import multiprocessing
import os

import numpy as np
import pytest

import fastnn as fnn
import _executor_builds as builds
from fastnn._executors import Dispatcher, _with_threads

X, Y = builds.data()
SPACE = {"hidden": [4, 8], "lr": [1e-2, 3e-2]}


@pytest.fixture(scope="module")
def pool():
    # spawned, not forked: the process also runs the Dask cluster's threads
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) \
            as executor:
        yield executor


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(builds)  # the workers cannot import the tests folder
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        yield client


def same_results(a, b):
    assert [r["params"] for r in a.results] == [r["params"] for r in b.results]
    assert [r["trial"] for r in a.results] == [r["trial"] for r in b.results]
    np.testing.assert_array_equal([r["score"] for r in a.results], [r["score"] for r in b.results])
    assert [r.get("error") for r in a.results] == [r.get("error") for r in b.results]


@pytest.mark.parametrize("where", ["pool", "dask_client"])
def test_grid_search_on_an_executor_equals_the_serial_run(request, where):
    executor = request.getfixturevalue(where)
    serial = fnn.tuning.grid_search(builds.build, SPACE, X, Y, epochs=5, refit=False)
    remote = fnn.tuning.grid_search(builds.build, SPACE, X, Y, epochs=5, refit=False, executor=executor)
    same_results(serial, remote)


def test_random_search_with_cv_on_a_pool(pool):
    space = {"lr": fnn.tuning.LogUniform(1e-3, 1e-1)}
    serial = fnn.tuning.random_search(builds.build, space, X, Y, n_trials=3, cv=3, epochs=3, seed=1)
    remote = fnn.tuning.random_search(builds.build, space, X, Y, n_trials=3, cv=3, epochs=3, seed=1, executor=pool)
    same_results(serial, remote)
    np.testing.assert_array_equal(remote.best_model.params, serial.best_model.params)  # refit here, the same


@pytest.mark.parametrize("where", ["pool", "dask_client"])
def test_cross_validate_one_fold_per_task(request, where):
    executor = request.getfixturevalue(where)
    kwargs = {"k": 4, "params": {"lr": 1e-2}, "epochs": 4, "scale": True}
    serial = fnn.tuning.cross_validate(builds.build, X, Y, **kwargs)
    remote = fnn.tuning.cross_validate(builds.build, X, Y, executor=executor, **kwargs)
    assert remote["scores"] == serial["scores"] and remote["metrics"] == serial["metrics"]


@pytest.mark.parametrize("where", [None, "pool", "dask_client"])
def test_failed_trials_are_reported_and_do_not_sink_the_search(request, where, tmp_path):
    executor = None if where is None else request.getfixturevalue(where)
    space = {"hidden": [8, -1], "lr": [1e-2, 1e300]}
    result = fnn.tuning.grid_search(builds.build_failing, space, X, np.eye(3)[Y], epochs=3, refit=False,
                                    executor=executor)
    by_params = {(r["params"]["hidden"], r["params"]["lr"]): r for r in result.results}
    assert by_params[(-1, 1e-2)]["error"] == "MemoryError: no memory for this trial"
    assert by_params[(-1, 1e-2)]["error_type"] == "MemoryError"
    assert by_params[(8, 1e300)]["error_type"] == "TrainingDiverged"
    assert result.best_params == {"hidden": 8, "lr": 1e-2} and math.isnan(result.results[-1]["score"])
    assert "error" in str(result).splitlines()[0] and "MemoryError" in str(result)
    result.to_csv(tmp_path / "t.csv")
    assert "no memory for this trial" in (tmp_path / "t.csv").read_text()


@pytest.mark.parametrize("where", ["pool", "dask_client"])
def test_ensemble_members_on_an_executor_equal_the_serial_ones(request, where):
    executor = request.getfixturevalue(where)
    serial = fnn.ensemble.train_ensemble(builds.member, X, Y, seeds=[3, 1, 2], epochs=3)
    remote = fnn.ensemble.train_ensemble(builds.member, X, Y, seeds=[3, 1, 2], epochs=3, executor=executor)
    for a, b in zip(serial.models, remote.models):
        np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(serial.predict(X), remote.predict(X))


def test_each_task_sets_threads_so_tasks_times_threads_fit_the_cores(pool):
    threads = {t for _, t in pool.map(_with_threads, [builds.pid_and_threads] * 4, [2] * 4, range(4))}
    assert threads == {max(1, (os.cpu_count() or 1) // 2)}


def test_bad_executors_and_builds_are_named():
    with pytest.raises(TypeError, match="grid_search: executor must be a concurrent.futures.Executor or a "
                                        "dask.distributed.Client; got 4"):
        fnn.tuning.grid_search(builds.build, SPACE, X, Y, executor=4)
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool, \
            pytest.raises(TypeError, match="build must be picklable to run on a ProcessPoolExecutor"):
        fnn.tuning.grid_search(lambda p: builds.build(p), SPACE, X, Y, executor=pool)
    with pytest.raises(TypeError, match=r"train_ensemble: seeds must be a number of members"):
        fnn.ensemble.train_ensemble(builds.member, X, Y, seeds=[])
    with pytest.raises(ValueError, match=r"train_ensemble: seeds must be >= 1"):
        fnn.ensemble.train_ensemble(builds.member, X, Y, seeds=0)
    with pytest.raises(ValueError, match="scoring 'f1' is not computed"):  # the caller's mistake still raises
        fnn.tuning.grid_search(builds.build, SPACE, X, Y, scoring="f1",
                               executor=concurrent.futures.ThreadPoolExecutor(2))


def test_threads_executor_and_dispatcher_concurrency():
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as ex:
        assert Dispatcher("x", ex).concurrency == 3
    assert Dispatcher("x", None).kind == "serial"


def test_cli_tune_workers_and_scheduler(dask_client, capsys, tmp_path):
    from fastnn.cli import main

    common = ["tune", "--data", "iris", "--epochs", "2", "--grid", "lr=1e-3,1e-2", "hidden=8"]
    assert main([*common, "--results", str(tmp_path / "serial.csv")]) == 0
    assert main([*common, "--workers", "2", "--results", str(tmp_path / "pool.csv")]) == 0
    assert main([*common, "--scheduler", dask_client.scheduler.address, "--results", str(tmp_path / "dask.csv")]) == 0
    tables = [[row.split(",")[:-1] for row in (tmp_path / f"{n}.csv").read_text().splitlines()]  # all but time_s
              for n in ("serial", "pool", "dask")]
    assert tables[0] == tables[1] == tables[2]
    capsys.readouterr()
    assert main([*common, "--workers", "2", "--scheduler", "tcp://x:1"]) == 2
    assert "give --workers or --scheduler, not both" in capsys.readouterr().err
    assert main([*common, "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_every_trial_failing_raises_with_the_first_error(pool):
    with pytest.raises(RuntimeError, match="grid_search: the training of every trial failed; the first: "
                                           "MemoryError: no memory for this trial") as info:
        fnn.tuning.grid_search(builds.build_failing, {"hidden": [-1], "lr": [1e-2, 1e-3]}, X, Y, epochs=1,
                               executor=pool)
    assert isinstance(info.value.__cause__, MemoryError)
