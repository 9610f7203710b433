"""Independent trainings (search trials, folds, ensemble members) as tasks on an executor: any
``concurrent.futures.Executor`` or a ``dask.distributed.Client``. Results come back in
submission order, so a run on an executor reports what the serial run reports."""

from __future__ import annotations

import concurrent.futures
import os
import pickle


def _is_dask_client(obj):
    return type(obj).__name__ == "Client" and type(obj).__module__.split(".")[0] == "distributed"


class Dispatcher:
    """Submits tasks to ``executor`` (None: runs them here, one after another).

    ``concurrency``: how many tasks may run at once on one machine (the executor's workers on
    this one; a Dask worker's threads), from which each task sets its BLAS threads so that
    tasks x threads never exceed the machine's cores."""

    def __init__(self, owner, executor, probe=None):
        self.owner, self.executor = owner, executor
        if executor is None:
            self.kind, self.concurrency = "serial", None
        elif _is_dask_client(executor):
            self.kind = "dask"
            workers = executor.scheduler_info().get("workers", {})
            self.concurrency = max([w.get("nthreads", 1) for w in workers.values()] or [1])
        elif isinstance(executor, concurrent.futures.Executor):
            self.kind = "futures"
            self.concurrency = max(int(getattr(executor, "_max_workers", 0) or (os.cpu_count() or 1)), 1)
            if isinstance(executor, concurrent.futures.ProcessPoolExecutor) and probe is not None:
                try:
                    pickle.dumps(probe)
                except Exception as exc:  # noqa: BLE001 - a lambda or a local function cannot reach a process
                    raise TypeError(f"{owner}: build must be picklable to run on a ProcessPoolExecutor; got "
                                    f"{probe!r} ({exc}); define it at module level (or use a dask Client, "
                                    f"which pickles closures, or a ThreadPoolExecutor).") from None
        else:
            raise TypeError(f"{owner}: executor must be a concurrent.futures.Executor or a dask.distributed.Client; "
                            f"got {executor!r}.")

    def share(self, value):
        """``value`` as a task argument: on Dask, scattered to the workers once."""
        if self.kind == "dask":
            return self.executor.scatter(value, broadcast=True)
        return value

    def submit(self, fn, *args):
        """A future of fn(*args); without an executor, (fn, args), run by ``result``."""
        if self.kind == "serial":
            return (fn, args)
        if self.kind == "dask":
            return self.executor.submit(_with_threads, fn, self.concurrency, *args, pure=False)
        return self.executor.submit(_with_threads, fn, self.concurrency, *args)

    @staticmethod
    def result(future):
        """The task's value; raises what it raised (or why it never finished)."""
        if isinstance(future, tuple):  # serial: run now, in the caller's order
            fn, args = future
            return fn(*args)
        return future.result()


def _with_threads(fn, concurrency, *args):
    """Run fn(*args) with fastnn's (BLAS) threads set to this machine's cores / ``concurrency``."""
    threads = max(1, (os.cpu_count() or 1) // max(int(concurrency), 1))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    from . import get_num_threads, set_num_threads

    before = get_num_threads()
    set_num_threads(threads)
    try:
        if threadpool_limits is None:
            for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[name] = str(threads)  # read by libraries this process has not loaded yet
            return fn(*args)
        with threadpool_limits(limits=threads):
            return fn(*args)
    finally:
        if before is not None:  # None: a BLAS whose pool fastnn cannot read (nothing was changed)
            set_num_threads(before)  # a thread pool's worker is the caller's own process
