"""Coordination schemes with a held exchange (docs/model.md §7): `shared-balancing` and `no-coordination`.

* `shared-balancing`: the T–D exchange is held at a schedule x^sched (each DSO's base-case exchange x^0,
  computed by the DSO and announced to the TSO); the TSO balances transmission with T orders only, each DSO
  dispatches its own resources for x^sched; each operator prices its own area; no interface settlement.
* `no-coordination`: the same with x^sched = 0 (the research definition): every area covers its whole net
  position alone.
Sub-DSOs are merged into their top-level DSO for these schemes (one balancing responsibility per DSO).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..decomposition.messages import AgentInit, Schedule
from ..formulations.options import ModelOptions
from ..model.instance import Instance
from .assemble import assemble_decentralised
from .registry import SchemeContext, SchemeSpec, register
from .result import ClearingResult


def _held_schedule(rt, areas: list[str], schedule: str, T: int) -> tuple[dict[str, np.ndarray], list[float]]:
    """The exchange each DSO is held at (MW per period): its announced base case x⁰, or zero; operator times."""
    if schedule != "base":
        return {n: np.zeros(T) for n in areas}, []
    replies = rt.ask("base_exchange", {n: () for n in areas}, stage="base exchange")
    for n in areas:
        rt.log.add(replies[n].value)
    return {n: np.asarray(replies[n].value.export_mw) for n in areas}, [r.time_s for r in replies.values()]


def _dispatch_all(rt, ctx: SchemeContext, work: dict[int, tuple[str, Schedule]]) -> dict:
    """Every DSO dispatches its own resources for its held exchange; reports logged."""
    replies = rt.ask(
        "dispatch",
        {name: (sched,) for name, sched in work.values()},
        stage="dispatch",
        mip_gap=ctx.mip_gap,
        time_limit=ctx.time_limit,
        threads=1,
        relax=ctx.relax,
    )
    out = {a: replies[name].value for a, (name, _) in work.items()}
    for d in out.values():
        rt.log.add(d.report)
    return out


def run_held_exchange(inst: Instance, ctx: SchemeContext, schedule: str) -> ClearingResult:

    opts = ModelOptions(integer=not ctx.relax, **ctx.model_options)
    prices = inst.orders.segments.price
    opts.validate(float(np.abs(prices).max()) if len(prices) else 0.0)
    t_start = time.perf_counter()
    inst = inst.flatten_areas()
    names = inst.areas.name
    dsos = list(range(1, len(names)))
    subs = {a: inst.area_instance(a) for a in range(len(names))}
    stage_times: dict[str, dict] = {}
    T = inst.n_periods
    rt = ctx.new_runtime()
    log = rt.log

    def note(stage: str, t0: float, times: list[float]) -> None:
        stage_times[stage] = {
            "wall_s": time.perf_counter() - t0,
            "slowest_operator_s": max(times, default=0.0),
            "sum_operator_s": float(sum(times)),
        }

    try:
        for a in dsos:
            rt.start(names[a], AgentInit(subs[a], opts, "TSO", []))
        t = time.perf_counter()
        x_sched, times = _held_schedule(rt, [names[a] for a in dsos], schedule, T)
        if schedule == "base":
            note("base", t, times)
        t = time.perf_counter()
        tso = rt.tso(subs[0], opts)
        res = tso.clear_fixed(
            x_sched,
            integer=not ctx.relax,
            mip_gap=min(ctx.mip_gap, 1e-4),
            time_limit=ctx.time_limit,
            threads=ctx.threads,
        )
        note("tso", t, [time.perf_counter() - t])
        schedules = {}
        for i, a in enumerate(dsos):
            # the schedule is the reference, not a market result: no interface price is settled
            schedules[a] = Schedule(
                sender="TSO",
                receiver=names[a],
                stage="schedule",
                periods=inst.periods.tolist(),
                export_mw=x_sched[names[a]].tolist(),
                price_eur_mwh=res.pi[i].tolist(),
            )
            log.add(schedules[a])
        t = time.perf_counter()
        dispatch = _dispatch_all(rt, ctx, {a: (names[a], schedules[a]) for a in dsos})
        note("dispatch", t, [d.time_s for d in dispatch.values()])
    finally:
        rt.close()
    result = assemble_decentralised(
        inst,
        opts,
        res,
        dispatch,
        {},
        schedules,
        log,
        stage_times,
        [],
        t_start,
        ctx.scheme,
        ctx.relax,
        0.0,
        rt,
        res.tables(tso),
    )
    result.summary["schedule"] = schedule
    result.summary["variant"] = f"schedule={schedule}"
    # a held exchange is not a market result: no interface price to compare the DSO's marginal cost with
    result.tables["interfaces"]["price_mismatch_eur_mwh"] = np.nan
    result.summary["price_mismatch_max_eur_mwh"] = None
    return result


def _runner(schedule: str) -> Callable[[Instance, SchemeContext], ClearingResult]:
    return lambda inst, ctx: run_held_exchange(inst, ctx, schedule)


for _id, _schedule, _text in (
    ("shared-balancing", "base", "exchanges held at each DSO's base case; TSO and DSOs balance their own areas"),
    ("no-coordination", "zero", "exchanges held at zero; every area covers its whole net position alone"),
):
    register(
        SchemeSpec(
            id=_id,
            runner=_runner(_schedule),
            option_groups=("model", "solve", "decentral"),
            settles_at_interface=False,
            description=_text,
        )
    )
