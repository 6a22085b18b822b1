"""Executors run operator requests on agent hosts: inline, on a pool of worker processes, or on Ray actors.

Every executor takes a list of `Request`s and returns their results in request order, whatever the completion
order, so runs are deterministic.  A request goes to its agent's home worker: the first free worker when the
agent is new (dynamic load balancing of the first, largest stage), the same worker afterwards (the agent's models
stay there).  A crashed worker does not hang the run: it is restarted and its requests are retried once (the
runtime then re-sends the lost agents' data), then `ExecutionError` names the request that failed.

Worker processes never outlive the run: they ignore Ctrl-C (the main process stops them), a run that ends by an
exception (an interrupt included) kills the workers still busy instead of waiting for them, and every worker
watches a pipe whose other end only the main process holds, so that it exits when the main process dies, even
by SIGKILL.  A plain script that calls `tdmarket.clear` at its top level without a `__main__` guard would be
run again by every worker (multiprocessing imports the main module in its children); such a call gets the
inline executor with a warning instead.
"""

from __future__ import annotations

import ast
import itertools
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeGuard

from ..decomposition.messages import AgentInit
from ..errors import InputError, TdmarketError
from .host import host_call, host_forget

EXECUTORS = ("process", "inline", "ray")
# what the fork server imports once, so that every worker it forks starts with the agents' code loaded
WORKER_PRELOAD = ["tdmarket.operators.host", "tdmarket.operators.agents"]
ORPHANED_EXIT_CODE = 70  # exit status of a worker whose main process died
TRANSIENT_WAIT_S = 120.0  # how long a run waits for a worker that is being restarted (a Ray actor)

log = logging.getLogger(__name__)


class ExecutionError(TdmarketError):
    """Operator work failed twice (worker crash or error)."""


Progress = Callable[[str, int, int], None] | None


@dataclass
class Request:
    key: str  # the agent
    method: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    init: AgentInit | None = None
    label: str = ""


class InlineExecutor:
    name = "inline"
    workers = 1

    def __init__(self, target: Callable = host_call) -> None:
        self._keys: set[str] = set()
        self.target = target

    def run(self, requests: list[Request], progress: Progress = None) -> list:
        out = []
        for i, r in enumerate(requests):
            self._keys.add(r.key)
            try:
                out.append(self.target(r.key, r.method, r.args, r.kwargs, r.init))
            except Exception as exc:  # one retry, as for the other executors
                try:
                    out.append(self.target(r.key, r.method, r.args, r.kwargs, r.init))
                except Exception:
                    raise ExecutionError(f"operator task {r.label or r.key} failed twice: {exc}") from exc
            if progress:
                progress(r.label or r.key, i + 1, len(requests))
        return out

    def close(self) -> None:
        host_forget(sorted(self._keys))
        self._keys.clear()


class _Affinity:
    """Home worker per agent and the dispatch loop shared by the process and Ray executors."""

    workers: int

    def __init__(self) -> None:
        self.home: dict[str, int] = {}
        self.busy: set[int] = set()  # workers with a batch in flight (non-empty only if `run` was interrupted)

    def _submit(self, w: int, batch: list[Request]) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def _wait(self, handles: list) -> list:  # pragma: no cover - interface
        raise NotImplementedError

    def _result(self, handle: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def _restart(self, w: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _crashed(self, exc: BaseException) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def _transient(self, exc: BaseException) -> bool:
        """The worker is temporarily unavailable (being restarted): retry without counting an attempt."""
        return False

    def run(self, requests: list[Request], progress: Progress = None) -> list:
        """Requests of agents that already have a home go to it in one batch per worker (one round trip per
        worker and round); new agents are placed one request at a time on the first free worker."""
        results: list = [None] * len(requests)
        by_home: dict[int, list[int]] = {}
        units: deque[tuple[list[int], int | None]] = deque()
        for i, r in enumerate(requests):
            if r.key in self.home:
                by_home.setdefault(self.home[r.key], []).append(i)
            else:
                units.append(([i], None))
        for w in sorted(by_home):
            units.appendleft((by_home[w], w))
        attempts: dict[tuple[int, ...], int] = {}
        inflight: dict[Any, tuple[list[int], int]] = {}
        busy = self.busy
        done = 0
        started = time.monotonic()
        while units or inflight:
            for w in range(self.workers):
                if w in busy:
                    continue
                pick = next((u for u in units if u[1] in (w, None)), None)
                if pick is None:
                    continue
                units.remove(pick)
                idx = pick[0]
                for i in idx:
                    self.home[requests[i].key] = w
                inflight[self._submit(w, [requests[i] for i in idx])] = (idx, w)
                busy.add(w)
            for h in self._wait(list(inflight)):
                idx, w = inflight.pop(h)
                busy.discard(w)
                try:
                    out = self._result(h)
                except Exception as exc:
                    if self._transient(exc) and time.monotonic() - started < TRANSIENT_WAIT_S:
                        time.sleep(0.2)  # the worker is being restarted: send the batch again when it is back
                        units.appendleft((idx, w))
                        continue
                    if self._crashed(exc):
                        self._restart(w)
                    key = tuple(idx)
                    if attempts.get(key, 0) >= 1:
                        at = exc.position if isinstance(exc, BatchItemError) else 0
                        r = requests[idx[at]]
                        why = str(exc) if isinstance(exc, BatchItemError) else f"{type(exc).__name__}: {exc}"
                        raise ExecutionError(f"operator task {r.label or r.key} failed twice: {why}") from exc
                    attempts[key] = attempts.get(key, 0) + 1
                    units.appendleft((idx, w))
                    continue
                for i, value in zip(idx, out):
                    results[i] = value
                    done += 1
                    if progress:
                        progress(requests[i].label or requests[i].key, done, len(requests))
        return results


class BatchItemError(Exception):
    """A request of a batch failed: which one (its position) and why (a one-line text)."""

    def __init__(self, position: int, text: str):
        super().__init__(position, text)
        self.position, self.text = position, text

    def __str__(self) -> str:
        return self.text


def run_batch(target: Callable, batch: list[Request]) -> list:
    """Worker side: the requests of one batch, in order."""
    out = []
    for i, r in enumerate(batch):
        try:
            out.append(target(r.key, r.method, r.args, r.kwargs, r.init))
        except Exception as exc:
            raise BatchItemError(i, f"{type(exc).__name__}: {exc}") from None
    return out


def _exit_when_main_dies(alive) -> None:
    """Worker thread: block on the pipe from the main process; its end of file means the main process is gone."""
    try:
        alive.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(ORPHANED_EXIT_CODE)


def _init_worker(alive) -> None:
    """Worker start-up: Ctrl-C is the main process's to handle, and the worker must not outlive it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_main_dies, args=(alive,), name="tdmarket-watchdog", daemon=True).start()


class ProcessExecutor(_Affinity):
    """Worker processes, one single-process pool each so that an agent always returns to its worker
    (forkserver start: workers never inherit solver threads of the parent)."""

    name = "process"

    def __init__(self, workers: int | None = None, target: Callable = host_call):
        super().__init__()
        self.target = target  # a picklable module-level function (key, method, args, kwargs, init)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(WORKER_PRELOAD)
        self._pools: list[ProcessPoolExecutor | None] = [None] * self.workers
        # the workers get the read end; the write end stays in this process and closes when it dies
        self._alive_r, self._alive_w = self._ctx.Pipe(duplex=False)

    def _pool(self, w: int) -> ProcessPoolExecutor:
        pool = self._pools[w]
        if pool is None:
            pool = self._pools[w] = ProcessPoolExecutor(
                max_workers=1, mp_context=self._ctx, initializer=_init_worker, initargs=(self._alive_r,)
            )
        return pool

    def _submit(self, w: int, batch: list[Request]):
        return self._pool(w).submit(run_batch, self.target, batch)

    def _wait(self, handles: list) -> list:
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        return sorted(finished, key=handles.index)

    def _result(self, handle):
        return handle.result()

    def _crashed(self, exc: BaseException) -> bool:
        return isinstance(exc, BrokenProcessPool)

    def _restart(self, w: int) -> None:
        pool = self._pools[w]
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools[w] = None

    def close(self) -> None:
        """Stop every worker: idle ones finish, busy ones (an interrupted or failed run) are killed, so that
        closing never waits for operator work nobody will read."""
        for w, pool in enumerate(self._pools):
            if pool is None:
                continue
            if w in self.busy:
                for proc in list((pool._processes or {}).values()):  # the pool's own processes (private API)
                    proc.kill()
            pool.shutdown(wait=True, cancel_futures=True)
            self._pools[w] = None
        self.busy.clear()
        self._alive_w.close()
        self._alive_r.close()


class RayExecutor(_Affinity):
    """One Ray actor per worker hosts that worker's agents (optional extra `tdmarket[ray]`); local cluster by
    default, or `address`.

    Each actor is an agent host (`host.AgentHost`): an agent is built on its first request from its data (its
    sub-instance, or in an operator layout the path of its folder, which the actor reads itself) and keeps its
    models there across the curve, cut and dispatch rounds.  The actors are spread over the nodes of the cluster
    (`SPREAD` scheduling, one CPU each).  A killed or crashed actor is restarted by Ray (up to `MAX_RESTARTS`
    times); its agents are lost with it, so it answers `MISSING` and the runtime sends their data again (a
    request that was running when it died is retried once)."""

    name = "ray"
    MAX_RESTARTS = 4
    NAME_PREFIX = "tdmarket-host"

    def __init__(self, workers: int | None = None, address: str | None = None, target: Callable | None = None):
        super().__init__()
        self.target = target  # a module-level function (key, method, args, kwargs, init); None: the agent host
        try:
            import ray
        except ImportError:
            raise InputError("the ray executor needs Ray: pip install 'tdmarket[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kw = {"address": address} if address else {"num_cpus": workers or os.cpu_count()}
            ray.init(ignore_reinit_error=True, include_dashboard=False, logging_level=logging.ERROR, **kw)
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._actor_cls = ray.remote(num_cpus=1, max_restarts=self.MAX_RESTARTS, max_task_retries=0)(_HostActor)
        self._actors: list[Any] = [None] * self.workers
        self._tag = f"{self.NAME_PREFIX}-{os.getpid()}-{next(_RAY_EXECUTORS)}"

    def _actor(self, w: int):
        if self._actors[w] is None:
            self._actors[w] = self._actor_cls.options(name=f"{self._tag}-{w}", scheduling_strategy="SPREAD").remote(
                self.target
            )
        return self._actors[w]

    def actors(self) -> list:
        """The actor handles of the workers started so far (None for a worker not yet used)."""
        return list(self._actors)

    def placement(self) -> list[str]:
        """The Ray node id of every worker's actor (starting the actors that are not running yet)."""
        return self.ray.get([self._actor(w).node_id.remote() for w in range(self.workers)])

    def _submit(self, w: int, batch: list[Request]):
        return self._actor(w).call_batch.remote(batch)

    def _wait(self, handles: list) -> list:
        ready, _ = self.ray.wait(handles, num_returns=1)
        return ready

    def _result(self, handle):
        return self.ray.get(handle)

    def _crashed(self, exc: BaseException) -> bool:
        return isinstance(exc, self.ray.exceptions.RayActorError)

    def _transient(self, exc: BaseException) -> bool:
        unavailable = getattr(self.ray.exceptions, "ActorUnavailableError", ())
        return bool(unavailable) and isinstance(exc, unavailable)

    def _restart(self, w: int) -> None:
        pass  # Ray restarts the actor itself (max_restarts)

    def close(self) -> None:
        for a in self._actors:
            if a is not None:
                self.ray.kill(a, no_restart=True)
        self._actors = [None] * self.workers


_RAY_EXECUTORS = itertools.count(1)


class _HostActor:
    def __init__(self, target: Callable | None = None) -> None:
        from .host import AgentHost

        self.host = AgentHost()
        self.target = target or self.host.call

    def call_batch(self, batch):
        return run_batch(self.target, batch)

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def _is_main_guard(node: ast.AST) -> TypeGuard[ast.If]:
    """`if __name__ == "__main__":` (either operand order)."""
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)) or len(node.test.ops) != 1:
        return False
    operands = [node.test.left, *node.test.comparators]
    names = {o.id for o in operands if isinstance(o, ast.Name)}
    texts = {o.value for o in operands if isinstance(o, ast.Constant)}
    return isinstance(node.test.ops[0], ast.Eq) and names == {"__name__"} and texts == {"__main__"}


def unguarded_main_script() -> str | None:
    """The main script's path if it is calling us from its top level outside `if __name__ == "__main__":`.

    Worker processes started by forkserver (or spawn) run the main module again before they work; at the top
    level of a plain script that would start the whole clearing again in every worker.  `python -m package`
    (a package `__main__`) and interactive sessions are not re-run, so they are fine."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return None
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if spec_name == "__main__" or spec_name.endswith(".__main__"):
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:  # the script's top level is not running: a worker's re-run of it does not reach us
        return None
    try:
        tree = ast.parse(open(path, "rb").read())
    except (OSError, SyntaxError, ValueError):
        return str(path)  # a worker could not run it either
    line = frame.f_lineno
    guarded = any(_is_main_guard(n) and n.lineno <= line <= (n.end_lineno or n.lineno) for n in ast.walk(tree))
    return None if guarded else str(path)


def start_process_workers_early(executor: str | None) -> None:
    """Start the process executor's fork server now, before the instance is read.  It imports the agents' code
    (`WORKER_PRELOAD`) in its own process, ~0.7 s on the 2-core machine, which the first request round would
    otherwise wait for; started here it overlaps with reading the instance.  Returns at once (the server
    process is started, not waited for); nothing for the other executors, or where there is no fork server."""
    if executor != "process" or "forkserver" not in mp.get_all_start_methods():
        return
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(WORKER_PRELOAD)
    forkserver.ensure_running()


def make_executor(
    name: str = "process", workers: int | None = None, address: str | None = None, target: Callable = host_call
):
    """The executor `name` (one of `EXECUTORS`).  `target(key, method, args, kwargs, init)` is what a worker runs
    for a request: by default the agent host (`host_call`); any module-level function for stateless work (e.g.
    the AC recovery of an area, `tdmarket.operators.ac_dispatch.recovery_task`)."""
    if name == "inline":
        return InlineExecutor(target)
    if name == "process":
        script = unguarded_main_script()
        if script is not None:
            log.warning(
                '%s calls tdmarket at its top level without `if __name__ == "__main__":`; worker processes '
                "would run the script again, so operator work runs in this process (executor 'inline')",
                script,
            )
            return InlineExecutor(target)
        return ProcessExecutor(workers, target)
    if name == "ray":
        return RayExecutor(workers, address, None if target is host_call else target)
    raise InputError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")
