"""The operators' runtime: agents on hosts, the executor that reaches them, and the message log.

A scheme (tdmarket.schemes) drives operators only through this object: `start` tells the runtime what a DSO
agent is built from (its own data; sent once, with the agent's first request), `ask` sends every agent a request
and returns the replies, and `log` records each message object that crosses an operator boundary with its size.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..decomposition.messages import AgentInit, Message
from .executors import Request, make_executor
from .host import MISSING

_RUN_IDS = itertools.count(1)
log = logging.getLogger(__name__)

UPWARD = ("CurveOffer", "CutReply", "DispatchReport")


@dataclass
class MessageLog:
    entries: list[dict] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    def add(self, msg: Message) -> None:
        text = msg.to_json()
        self.entries.append(
            {
                "kind": msg.kind,
                "from": msg.sender,
                "to": msg.receiver,
                "stage": msg.stage,
                "bytes": len(text.encode()),
                "t_s": round(time.perf_counter() - self.t0, 6),
                "message": text,
            }
        )

    def totals(self) -> dict:
        by_dir: dict[str, dict] = {}
        for e in self.entries:
            key = "up" if e["to"] == "TSO" or e["kind"] in UPWARD else "down"
            d = by_dir.setdefault(key, {"messages": 0, "bytes": 0})
            d["messages"] += 1
            d["bytes"] += e["bytes"]
        return {
            "messages": len(self.entries),
            "bytes": int(sum(e["bytes"] for e in self.entries)),
            "by_direction": by_dir,
        }


@dataclass
class Reply:
    value: object
    time_s: float  # operator time, s


class Runtime:
    def __init__(
        self,
        executor: str = "process",
        workers: int | None = None,
        address: str | None = None,
        progress: Callable[[dict], None] | None = None,
    ):
        self.exe = make_executor(executor, workers, address)
        self.log = MessageLog()
        self.progress = progress
        self._run = next(_RUN_IDS)
        self._init: dict[str, AgentInit] = {}
        self._started: set[str] = set()
        self.rebuilt: list[str] = []  # agents rebuilt from their data after their worker lost them (a restart)

    @property
    def name(self) -> str:
        return self.exe.name

    @property
    def workers(self) -> int:
        return self.exe.workers

    def _key(self, area: str) -> str:
        return f"{self._run}:{area}"

    def start(self, area: str, init: AgentInit) -> None:
        """Register a DSO agent (built on its host with its first request)."""
        self._init[area] = init
        self._started.discard(area)

    def _bar(self, stage: str | None):
        if self.progress is None or stage is None:
            return None
        return lambda label, i, n: self.progress({"stage": stage, "label": label, "done": i, "total": n})

    def ask(self, method: str, requests: dict[str, tuple], stage: str | None = None, **kwargs) -> dict[str, Reply]:
        """Call `method(*args, **kwargs)` on every named agent (in parallel); replies keyed by area name."""
        areas = list(requests)

        def request(a: str, with_init: bool) -> Request:
            init = self._init[a] if with_init else None
            return Request(self._key(a), method, requests[a], kwargs, init, a)

        out = self.exe.run([request(a, a not in self._started) for a in areas], self._bar(stage))
        self._started.update(areas)
        lost = [a for a, r in zip(areas, out) if isinstance(r, str) and r == MISSING]
        if lost:  # a restarted worker lost its agents: rebuild them from their data
            log.info("rebuilding %d agent(s) whose worker was restarted: %s", len(lost), ", ".join(lost))
            self.rebuilt.extend(lost)
            again = self.exe.run([request(a, True) for a in lost], None)
            out = [again[lost.index(a)] if a in lost else r for a, r in zip(areas, out)]
        return {a: Reply(v, dt) for a, (v, dt) in zip(areas, out)}

    def tso(self, sub, opts):
        """The TSO's agent, in this process (the TSO drives the exchange)."""
        from .host import load_agent_data
        from .tso import TSO

        return TSO(load_agent_data(sub), opts)

    def close(self) -> None:
        self.exe.close()
