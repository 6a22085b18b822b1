"""Executors run operator work (DSO curves, evaluations, dispatch) inline, in a process pool or on Ray.

All share `map(fn, tasks, labels, progress)`: results come back in task order, whatever the completion order,
so runs are deterministic.  A crashed worker does not hang the run: the failed tasks are retried once in a
fresh pool, then `ExecutionError` names the task that failed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from ..errors import InputError, TdmarketError

EXECUTORS = ("process", "inline", "ray")


class ExecutionError(TdmarketError):
    """Operator work failed twice (worker crash or error)."""


Progress = Callable[[str, int, int], None] | None


class InlineExecutor:
    name = "inline"
    workers = 1

    def map(self, fn, tasks: list, labels: list[str], progress: Progress = None) -> list:
        out = []
        for i, (task, label) in enumerate(zip(tasks, labels)):
            try:
                out.append(fn(*task))
            except Exception as exc:  # one retry, as for the other executors
                try:
                    out.append(fn(*task))
                except Exception:
                    raise ExecutionError(f"operator task {label} failed twice: {exc}") from exc
            if progress:
                progress(label, i + 1, len(tasks))
        return out

    def close(self) -> None:
        pass


class ProcessExecutor:
    """Process pool (forkserver start: workers never inherit solver threads of the parent)."""

    name = "process"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["tdmarket.operators.tasks"])
        self._pool = None

    def _pool_(self):
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self._ctx)
        return self._pool

    def map(self, fn, tasks: list, labels: list[str], progress: Progress = None) -> list:
        results: list = [None] * len(tasks)
        todo = list(range(len(tasks)))
        errors: dict[int, BaseException] = {}
        done = 0
        for _attempt in range(2):
            failed = []
            pool = self._pool_()
            futures = {pool.submit(fn, *tasks[i]): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                    done += 1
                    if progress:
                        progress(labels[i], done, len(tasks))
                except BrokenProcessPool as exc:
                    failed.append(i)
                    errors[i] = exc
                except Exception as exc:
                    failed.append(i)
                    errors[i] = exc
            if any(isinstance(errors.get(i), BrokenProcessPool) for i in failed):
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            if not failed:
                return results
            todo = sorted(failed)
        i = todo[0]
        raise ExecutionError(f"operator task {labels[i]} failed twice: {type(errors[i]).__name__}: {errors[i]}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class RayExecutor:
    """Ray tasks (optional extra `tdmarket[ray]`); local cluster by default, or `address`."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise InputError("the ray executor needs Ray: pip install 'tdmarket[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kw = {"address": address} if address else {"num_cpus": workers or os.cpu_count()}
            ray.init(ignore_reinit_error=True, include_dashboard=False, logging_level="ERROR", **kw)
        self.workers = workers or int(ray.cluster_resources().get("CPU", 1))
        self._remote = {}

    def map(self, fn, tasks: list, labels: list[str], progress: Progress = None) -> list:
        ray = self.ray
        remote = self._remote.setdefault(fn, ray.remote(max_retries=1, retry_exceptions=True)(fn))
        refs = [remote.remote(*t) for t in tasks]
        index = {r: i for i, r in enumerate(refs)}
        results: list = [None] * len(tasks)
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            try:
                results[i] = ray.get(ready[0])
            except Exception as exc:
                raise ExecutionError(f"operator task {labels[i]} failed twice on Ray: {exc}") from exc
            done += 1
            if progress:
                progress(labels[i], done, len(tasks))
        return results

    def close(self) -> None:
        pass


def make_executor(name: str = "process", workers: int | None = None, address: str | None = None):
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address)
    raise InputError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")
