"""Assembly of a decentralised scheme's result from what each operator published about its own area."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..market.pricing import price_summary
from .result import ClearingResult


def assemble_decentralised(
    inst,
    opts,
    res,
    dispatch,
    curves,
    schedules,
    log,
    stage_times,
    history,
    t_start,
    scheme_name,
    relax,
    curve_tol,
    runtime,
    tso_tables: dict,
) -> ClearingResult:
    """One result from the operators' parts: the TSO's tables and every DSO's own dispatch tables, the interface
    table (schedule, prices, DSO marginal cost, curve data), costs, timings and communication."""
    names = inst.areas.name
    parts = [tso_tables] + [dispatch[a].tables for a in sorted(dispatch)]
    tables = {}
    for key in ("segments", "bids", "buses", "lines"):
        frames = [p[key] for p in parts if key in p and len(p[key])]
        tables[key] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    tables["interfaces"] = _interface_table(names, dispatch, curves, schedules)
    summary = _summary(
        inst,
        opts,
        res,
        dispatch,
        curves,
        tables,
        log,
        stage_times,
        history,
        t_start,
        scheme_name,
        relax,
        curve_tol,
        runtime,
    )
    msgs = [{k: v for k, v in e.items() if k != "message"} | {"message": e["message"]} for e in log.entries]
    return ClearingResult(scheme=scheme_name, instance=inst.name, tables=tables, summary=summary, messages=msgs)


def _interface_table(names, dispatch, curves, schedules) -> pd.DataFrame:
    """One row per DSO area and period: schedule (MW, Mvar), interface price, DSO marginal cost, curve data."""
    rows = []
    for a in sorted(dispatch):
        s = schedules[a]
        rep = dispatch[a].report
        c = curves.get(a)
        own = dispatch[a].tables["interfaces"]
        own = own[own.area == names[a]].set_index("period") if "export_mvar" in own else None
        for t, p in enumerate(s.periods):
            y = float(own.export_mvar.get(p, np.nan)) if own is not None else np.nan
            row = {
                "area": names[a],
                "parent": s.sender,
                "period": p,
                "export_mw": s.export_mw[t],
                "export_mvar": y,
                "interface_price_eur_mwh": s.price_eur_mwh[t],
                "dso_marginal_cost_eur_mwh": rep.rho_eur_mwh[t],
                "price_mismatch_eur_mwh": abs(rep.rho_eur_mwh[t] - s.price_eur_mwh[t]),
            }
            if c is not None:
                row.update(
                    {
                        "curve_lo_mw": c.xi_mw[t][0],
                        "curve_hi_mw": c.xi_mw[t][-1],
                        "curve_breakpoints": len(c.xi_mw[t]),
                        "curve_eps_eur": c.eps_eur[t],
                        "curve_flags": ";".join(c.flags[t]),
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows)


def _summary(
    inst,
    opts,
    res,
    dispatch,
    curves,
    tables,
    log,
    stage_times,
    history,
    t_start,
    scheme_name,
    relax,
    curve_tol,
    runtime,
) -> dict:
    names = inst.areas.name
    tso_cost = res.cost
    market = tso_cost["market_cost_eur"] + sum(d.cost["market_cost_eur"] for d in dispatch.values())
    slack = tso_cost["slack_cost_eur"] + sum(d.cost["slack_cost_eur"] for d in dispatch.values())
    reports = [dispatch[a].report for a in sorted(dispatch)]
    wall = time.perf_counter() - t_start
    # per stage: its own critical path when it has one (the cut exchange: master solves plus the slowest DSO of
    # each round), else its slowest operator (one request round per stage and level)
    crit = sum(v.get("critical_path_s", v["slowest_operator_s"]) for v in stage_times.values())
    summary = {
        "scheme": scheme_name,
        "variant": "cut-exchange" if curves else "fixed-exchange",
        "instance": inst.name,
        "periods": [int(p) for p in inst.periods],
        "options": {
            "dist_model": opts.dist_model,
            "reactive_policy": opts.reactive_policy,
            "slack_penalty": opts.slack_penalty,
            "integer": not relax,
            "curve_tol_eur": curve_tol,
            "executor": runtime.name,
            "workers": runtime.workers,
        },
        "cost": {
            "market_cost_eur": market,
            "slack_cost_eur": slack,
            "total_cost_eur": market + slack,
            "tso_cost_eur": tso_cost["market_cost_eur"] + tso_cost["slack_cost_eur"],
            "dso_cost_eur": {names[a]: dispatch[a].cost["total_cost_eur"] for a in sorted(dispatch)},
        },
        "slack": {
            "p_mw": float(tables["buses"].slack_p_mw.abs().sum()) if len(tables["buses"]) else 0.0,
            "q_mvar": float(tables["buses"].slack_q_mvar.abs().sum()) if len(tables["buses"]) else 0.0,
        },
        "tso": {
            "objective_with_offers_eur": res.objective,
            "offer_value_eur": res.offer_value,
            "mip": res.mip,
        },
        "curves": {
            "sum_eps_eur": float(sum(sum(c.eps_eur) for c in curves.values())),
            "evaluations": int(sum(len(c.cuts) for c in curves.values())),
            "flags": sorted({f for c in curves.values() for fl in c.flags for f in fl}),
        },
        "curve_error_at_solution_eur": float(sum(r.curve_error_eur for r in reports)),
        "integrality_cost_eur": float(sum(r.integrality_cost_eur for r in reports)),
        "dso_mip_gap_max": max([d.mip["gap"] or 0.0 for d in dispatch.values()], default=0.0),
        "warnings": [f"{d.area}: {d.mip['fallback']}" for _, d in sorted(dispatch.items()) if d.mip.get("fallback")],
        "price_mismatch_max_eur_mwh": float(np.nan_to_num(tables["interfaces"].price_mismatch_eur_mwh).max())
        if len(tables["interfaces"])
        else 0.0,
        "iterations": history,
        "communication": log.totals(),
        "timings_s": {"wall": wall, "critical_path": crit, "stages": stage_times},
        "check": {"feasible": bool(all(d.check_ok for d in dispatch.values()))},
        "prices": price_summary(tables["buses"], opts.slack_penalty),
    }
    summary["prices"]["interval_time_s"] = {
        "tso": float(res.intervals.time_s) if getattr(res, "intervals", None) is not None else 0.0,
        "dso_sum": float(sum(d.pricing_time_s for d in dispatch.values())),
        "dso_slowest": float(max((d.pricing_time_s for d in dispatch.values()), default=0.0)),
    }
    return summary
