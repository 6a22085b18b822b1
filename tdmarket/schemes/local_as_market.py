"""`local-as-market` (docs/model.md §7): DSOs first clear their own needs at the base exchange x^0 with their own
orders; those activations are locked (they may grow later, never shrink); the curves then offer only the
remaining grid-feasible flexibility, and the TSO clears with them as in `hierarchical`."""

from __future__ import annotations

import time

import numpy as np

from ..decomposition.messages import AgentInit, Schedule
from ..formulations.options import ModelOptions
from ..model.instance import Instance
from .hierarchical import run_hierarchical
from .registry import SchemeContext, SchemeSpec, register
from .result import ClearingResult


def run_local_as_market(inst: Instance, ctx: SchemeContext) -> ClearingResult:

    opts = ModelOptions(integer=not ctx.relax, **ctx.model_options)
    t_start = time.perf_counter()
    inst = inst.flatten_areas()
    names = inst.areas.name
    dsos = list(range(1, len(names)))
    rt = ctx.new_runtime()
    log = rt.log
    try:
        for a in dsos:
            rt.start(names[a], AgentInit(inst.area_instance(a), opts, "TSO", []))
        base = rt.ask("base_exchange", {names[a]: () for a in dsos}, stage="base exchange")
        scheds = {}
        for a in dsos:
            m = base[names[a]].value
            log.add(m)
            scheds[a] = Schedule(
                sender=names[a],
                receiver=names[a],
                stage="local-clearing",
                periods=inst.periods.tolist(),
                export_mw=m.export_mw,
                price_eur_mwh=[],
            )
        local = rt.ask(
            "dispatch",
            {names[a]: (scheds[a],) for a in dsos},
            stage="local clearing",
            mip_gap=ctx.mip_gap,
            time_limit=ctx.time_limit,
            threads=1,
            relax=ctx.relax,
        )
    finally:
        rt.close()
    locked = {}
    local_cost = 0.0
    for a in dsos:
        out = local[names[a]].value
        act = out.activations
        locked[names[a]] = {
            "xi": np.clip(act["xi"], 0.0, 1.0) * (act["xi"] > 1e-7),
            "z": np.where(act["z"] > 0.5, 1.0, 0.0),
        }
        local_cost += out.cost["market_cost_eur"]
    res = run_hierarchical(inst, ctx, locked=locked)
    res.messages = [dict(e) for e in log.entries] + res.messages
    com = res.summary["communication"]
    com["messages"] += len(log.entries)
    com["bytes"] += int(sum(e["bytes"] for e in log.entries))
    res.summary["local_clearing_market_cost_eur"] = local_cost
    res.summary["timings_s"]["wall"] = time.perf_counter() - t_start
    res.summary["variant"] = "local-first"
    return res


register(
    SchemeSpec(
        id="local-as-market",
        runner=run_local_as_market,
        option_groups=("model", "solve", "decentral", "decomposition"),
        description="DSOs clear their own needs first (locked); curves offer the remaining flexibility",
    )
)
