"""Coordination schemes with a held exchange (MODEL.md §7): `shared-balancing` and `no-coordination`.

* `shared-balancing`: the T–D exchange is held at a schedule x^sched (default: each DSO's base-case exchange
  x^0, computed by the DSO and announced to the TSO); the TSO balances transmission with T orders only, each DSO
  dispatches its own resources for x^sched; each operator prices its own area; no interface settlement.
* `no-coordination`: the same with x^sched = 0 (the research definition): every area covers its whole net
  position alone.
Sub-DSOs are merged into their top-level DSO for these schemes (one balancing responsibility per DSO).
"""

from __future__ import annotations

import time

import numpy as np

from ..formulations.options import ModelOptions
from ..model.instance import Instance
from .agents import TSO
from .executors import make_executor
from .hierarchical_run import MessageLog, _assemble
from .messages import Schedule
from .tasks import dso_base_exchange, dso_dispatch


def run_fixed_exchange(
    inst: Instance,
    *,
    schedule: str = "base",
    relax: bool = False,
    executor: str = "process",
    workers: int | None = None,
    address: str | None = None,
    mip_gap: float = 1e-3,
    time_limit: float | None = None,
    threads: int = 1,
    progress=None,
    scheme_name: str = "shared-balancing",
    **model_options,
):
    opts = ModelOptions(integer=not relax, **model_options)
    prices = inst.orders.segments.price
    opts.validate(float(np.abs(prices).max()) if len(prices) else 0.0)
    t_start = time.perf_counter()
    inst = inst.flatten_areas()
    names = inst.areas.name
    dsos = list(range(1, len(names)))
    subs = {a: inst.area_instance(a) for a in range(len(names))}
    log = MessageLog()
    stage_times: dict[str, dict] = {}
    exe = make_executor(executor, workers, address)

    def bar(stage):
        if progress is None:
            return None
        return lambda label, i, n: progress({"stage": stage, "label": label, "done": i, "total": n})

    try:
        T = inst.n_periods
        t = time.perf_counter()
        if schedule == "base":
            out = exe.map(
                dso_base_exchange,
                [(subs[a], opts, "TSO") for a in dsos],
                [names[a] for a in dsos],
                bar("base exchange"),
            )
            x_sched = {names[a]: np.asarray(m.export_mw) for a, (m, _) in zip(dsos, out)}
            for m, _ in out:
                log.add(m)
            stage_times["base"] = {
                "wall_s": time.perf_counter() - t,
                "slowest_operator_s": max((dt for _, dt in out), default=0.0),
                "sum_operator_s": float(sum(dt for _, dt in out)),
            }
        elif schedule == "zero":
            x_sched = {names[a]: np.zeros(T) for a in dsos}
        else:
            raise ValueError(f"unknown schedule {schedule!r}")
        t = time.perf_counter()
        tso = TSO(subs[0], opts)
        res = tso.clear_fixed(
            x_sched, integer=not relax, mip_gap=min(mip_gap, 1e-4), time_limit=time_limit, threads=threads
        )
        res["offer_value"] = 0.0
        stage_times["tso"] = {
            "wall_s": time.perf_counter() - t,
            "slowest_operator_s": time.perf_counter() - t,
            "sum_operator_s": time.perf_counter() - t,
        }
        schedules = {}
        for i, a in enumerate(dsos):
            # the schedule is the reference, not a market result: no interface price is settled
            schedules[a] = Schedule(
                sender="TSO",
                receiver=names[a],
                stage="schedule",
                periods=inst.periods.tolist(),
                export_mw=x_sched[names[a]].tolist(),
                price_eur_mwh=res["pi"][i].tolist(),
            )
            log.add(schedules[a])
        t = time.perf_counter()
        tasks = [(subs[a], opts, "TSO", [], schedules[a], mip_gap, time_limit, relax, None) for a in dsos]
        dispatch = {}
        times = []
        for a, out in zip(dsos, exe.map(dso_dispatch, tasks, [names[a] for a in dsos], bar("dispatch"))):
            dispatch[a] = out
            log.add(out["report"])
            times.append(out["time_s"])
        stage_times["dispatch"] = {
            "wall_s": time.perf_counter() - t,
            "slowest_operator_s": max(times, default=0.0),
            "sum_operator_s": float(sum(times)),
        }
    finally:
        exe.close()
    result = _assemble(
        inst, opts, res, dispatch, {}, schedules, log, stage_times, [], t_start, scheme_name, relax, False, 0.0, exe
    )
    result.summary["schedule"] = schedule
    result.summary["variant"] = f"schedule={schedule}"
    # a held exchange is not a market result: no interface price to compare the DSO's marginal cost with
    iface = result.tables["interfaces"]
    iface["price_mismatch_eur_mwh"] = np.nan
    result.summary["price_mismatch_max_eur_mwh"] = None
    return result


def run_local_as_market(
    inst: Instance,
    *,
    relax: bool = False,
    executor: str = "process",
    workers: int | None = None,
    address: str | None = None,
    mip_gap: float = 1e-3,
    time_limit: float | None = None,
    threads: int = 1,
    progress=None,
    scheme_name: str = "local-as-market",
    **options,
):
    """`local-as-market` (MODEL.md §7): DSOs first clear their own needs at the base exchange x^0 with their own
    orders; those activations are locked (they may grow later, never shrink); the curves then offer only the
    remaining grid-feasible flexibility, and the TSO clears with them as in `hierarchical`."""
    from .hierarchical_run import run_hierarchical

    model_keys = {
        "slack_penalty",
        "dist_model",
        "reactive_policy",
        "interface_reactive",
        "zero_root_q",
        "pi_model",
        "polygon_sides",
        "period_hours",
    }
    opts = ModelOptions(integer=not relax, **{k: v for k, v in options.items() if k in model_keys})
    t_start = time.perf_counter()
    inst = inst.flatten_areas()
    names = inst.areas.name
    dsos = list(range(1, len(names)))
    subs = {a: inst.area_instance(a) for a in dsos}
    log = MessageLog()
    exe = make_executor(executor, workers, address)
    try:
        out = exe.map(dso_base_exchange, [(subs[a], opts, "TSO") for a in dsos], [names[a] for a in dsos], None)
        scheds = {}
        for a, (m, _) in zip(dsos, out):
            log.add(m)
            scheds[a] = Schedule(
                sender=names[a],
                receiver=names[a],
                stage="local-clearing",
                periods=inst.periods.tolist(),
                export_mw=m.export_mw,
                price_eur_mwh=[],
            )
        local = exe.map(
            dso_dispatch,
            [(subs[a], opts, "TSO", [], scheds[a], mip_gap, time_limit, relax, None) for a in dsos],
            [names[a] for a in dsos],
            None,
        )
    finally:
        exe.close()
    locked = {}
    local_cost = 0.0
    for a, out in zip(dsos, local):
        act = out["activations"]
        locked[names[a]] = {
            "xi": np.clip(act["xi"], 0.0, 1.0) * (act["xi"] > 1e-7),
            "z": np.where(act["z"] > 0.5, 1.0, 0.0),
        }
        local_cost += out["cost"]["market_cost_eur"]
    res = run_hierarchical(
        inst,
        relax=relax,
        executor=executor,
        workers=workers,
        address=address,
        mip_gap=mip_gap,
        time_limit=time_limit,
        threads=threads,
        progress=progress,
        scheme_name=scheme_name,
        locked=locked,
        **options,
    )
    res.messages = [dict(e) for e in log.entries] + res.messages
    com = res.summary["communication"]
    com["messages"] += len(log.entries)
    com["bytes"] += int(sum(e["bytes"] for e in log.entries))
    res.summary["local_clearing_market_cost_eur"] = local_cost
    res.summary["timings_s"]["wall"] = time.perf_counter() - t_start
    res.summary["variant"] = "local-first"
    return res
