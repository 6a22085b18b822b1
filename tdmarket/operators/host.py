"""Agent hosts: where operator agents live between messages.

A host (one per worker process, Ray actor, or the main process for the inline executor) keeps the DSO agents
it was given, so that an agent builds its models once and answers every later round from them.  The runtime
sends an agent's own data with its first request only (its sub-instance, or the folder of an operator layout,
which the host reads: the agent loads its data once, on its worker); a host that lost its agents (a worker that
crashed and was restarted) answers `MISSING`, and the runtime re-sends the data.
"""

from __future__ import annotations

import time
from typing import Any

from ..decomposition.messages import AgentInit

MISSING = "__agent_missing__"


def load_agent_data(data):
    """An agent's sub-instance: as sent, or read here from its folder of an operator layout (`OperatorFolder`),
    so that only the path crosses to the worker and the operator's files are read where it runs."""
    from ..io.layout import OperatorFolder

    return data.load() if isinstance(data, OperatorFolder) else data


class AgentHost:
    def __init__(self) -> None:
        self.agents: dict[str, Any] = {}

    def call(self, key: str, method: str, args: tuple, kwargs: dict, init: AgentInit | None):
        from .agents import DSO

        if init is not None:
            self.agents[key] = DSO(load_agent_data(init.sub), init.opts, init.parent, init.child_offers, init.locked)
        agent = self.agents.get(key)
        if agent is None:
            return MISSING
        t0 = time.perf_counter()
        out = getattr(agent, method)(*args, **kwargs)
        return out, time.perf_counter() - t0

    def forget(self, keys: list[str]) -> None:
        for k in keys:
            self.agents.pop(k, None)


_HOST = AgentHost()  # this process's host (a worker's, or the main process's for the inline executor)


def host_call(key: str, method: str, args: tuple, kwargs: dict, init: AgentInit | None = None):
    return _HOST.call(key, method, args, kwargs, init)


def host_forget(keys: list[str]) -> None:
    _HOST.forget(keys)
