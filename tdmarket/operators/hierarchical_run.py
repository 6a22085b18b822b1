"""Run the hierarchical scheme across operators (MODEL.md §6.2–§6.4).

1. Market setup: every operator receives its own sub-instance only (`Instance.area_instance`).
2. Curves bottom-up: DSOs at the deepest level first, each using its children's curves; in parallel.
3. TSO clearing with the top-level DSO curves as offers (MILP with its own binaries, then LP for prices);
   with `iterate`, a cut exchange (nested Benders) replaces the curves until UB − LB <= tolerance.
4. Dispatch top-down: each DSO dispatches its resources for the cleared exchange (MISOCP), prices its own
   dispatch and schedules its children.
Only message objects cross operator boundaries; each is logged with its size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ..formulations.options import ModelOptions
from ..model.instance import Instance
from ..schemes.result import ClearingResult
from .agents import TSO, add_cut_replies, offer_from_message
from .executors import make_executor
from .messages import CurveOffer, CutReply, Message, Schedule
from .tasks import dso_curve, dso_dispatch, dso_evaluate


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
            key = "up" if e["to"] == "TSO" or e["kind"] in ("CurveOffer", "CutReply", "DispatchReport") else "down"
            d = by_dir.setdefault(key, {"messages": 0, "bytes": 0})
            d["messages"] += 1
            d["bytes"] += e["bytes"]
        return {
            "messages": len(self.entries),
            "bytes": int(sum(e["bytes"] for e in self.entries)),
            "by_direction": by_dir,
        }


def run_hierarchical(
    inst: Instance,
    *,
    relax: bool = False,
    executor: str = "process",
    workers: int | None = None,
    address: str | None = None,
    curve_tol: float = 0.1,
    max_evals: int = 12,
    iterate: bool = False,
    iter_tol_abs: float = 0.01,
    iter_tol_rel: float = 1e-6,
    max_iterations: int = 100,
    mip_gap: float = 1e-3,
    time_limit: float | None = None,
    threads: int = 1,
    progress=None,
    scheme_name: str = "hierarchical",
    locked: dict[str, dict] | None = None,
    **model_options,
) -> ClearingResult:
    if curve_tol <= 0:
        raise InputError("curve tolerance must be positive")
    opts = ModelOptions(integer=not relax, **model_options)
    prices = inst.orders.segments.price
    opts.validate(float(np.abs(prices).max()) if len(prices) else 0.0)
    t_start = time.perf_counter()
    ar = inst.areas
    names, parent, depth = ar.name, ar.parent, ar.depth()
    dsos = list(range(1, len(ar)))
    # 1. market setup: each operator holds its own data only
    subs = {a: inst.area_instance(a) for a in range(len(ar))}
    children = {a: [c for c in dsos if parent[c] == a] for a in range(len(ar))}
    log = MessageLog()
    stage_times: dict[str, dict] = {}
    exe = make_executor(executor, workers, address)

    def note(stage: str, wall: float, task_times: list[float]) -> None:
        stage_times[stage] = {
            "wall_s": wall,
            "slowest_operator_s": max(task_times, default=0.0),
            "sum_operator_s": float(sum(task_times)),
        }

    def bar(stage):
        if progress is None:
            return None
        return lambda label, i, n: progress({"stage": stage, "label": label, "done": i, "total": n})

    locked = locked or {}
    lk = lambda a: locked.get(names[a])  # activations an area locked in a local clearing (local-as-market)
    try:
        # 2. curves bottom-up
        curves: dict[int, CurveOffer] = {}
        t = time.perf_counter()
        times = []
        for level in range(int(depth.max(initial=0)), 0, -1):
            level_areas = [a for a in dsos if depth[a] == level]
            tasks = [
                (subs[a], opts, names[parent[a]], [curves[c] for c in children[a]], curve_tol, max_evals, lk(a))
                for a in level_areas
            ]
            for a, (msg, dt) in zip(
                level_areas, exe.map(dso_curve, tasks, [names[a] for a in level_areas], bar(f"curves (level {level})"))
            ):
                curves[a] = msg
                log.add(msg)
                times.append(dt)
        note("curves", time.perf_counter() - t, times)

        # 3. TSO clearing: one-shot with the curves; DSOs then evaluate C_d at the cleared exchange.  If a curve
        #    misses C_d there by more than its tolerance (period coupling makes C_d non-separable), or with
        #    `iterate`, continue with the cut exchange (nested Benders), seeded with every evaluation so far.
        tso = TSO(subs[0], opts)
        top = children[0]
        t = time.perf_counter()
        offers = [offer_from_message(curves[a]) for a in top]
        res = tso.clear(
            offers,
            use_curves=True,
            use_cuts=False,
            integer=not relax,
            mip_gap=min(mip_gap, 1e-4),
            time_limit=time_limit,
            threads=threads,
        )
        note("tso", time.perf_counter() - t, [time.perf_counter() - t])
        history: list[dict] = []
        loop = _CutLoop(inst, tso, top, names, subs, opts, curves, children, exe, log, bar, threads, lk)
        t = time.perf_counter()
        replies, ub = loop.evaluate(res, stage="verify", iteration=0)
        promised = [
            sum(float(np.interp(x, xi, ph)) for x, xi, ph in zip(res["x"][i], curves[a].xi_mw, curves[a].cost_eur))
            for i, a in enumerate(top)
        ]
        curve_errors = [r.cost_eur - p for r, p in zip(replies, promised)]
        # the one-shot point is accepted only if every curve met its certificate and matches C_d there
        tolerance = [
            curve_tol * inst.n_periods if all(e <= curve_tol for e in curves[a].eps_eur) else -np.inf for a in top
        ]
        history.append(
            {
                "iteration": 0,
                "master": "curves",
                "lower_bound": None,
                "upper_bound": ub,
                "max_curve_error_eur": max(curve_errors, default=0.0),
            }
        )
        note("verify", time.perf_counter() - t, loop.eval_times[-1:])
        if iterate or any(abs(e) > tol for e, tol in zip(curve_errors, tolerance)):
            t = time.perf_counter()
            res = loop.run(
                offers,
                replies,
                res,
                ub,
                history,
                relax=relax,
                tol_abs=iter_tol_abs,
                tol_rel=iter_tol_rel,
                max_iterations=max_iterations,
                progress=progress,
                mip_gap=mip_gap,
                time_limit=time_limit,
            )
            note("iterate", time.perf_counter() - t, loop.eval_times[1:])
        schedules: dict[int, Schedule] = {}
        for i, a in enumerate(top):
            schedules[a] = Schedule(
                sender="TSO",
                receiver=names[a],
                stage="dispatch",
                periods=inst.periods.tolist(),
                export_mw=res["x"][i].tolist(),
                price_eur_mwh=res["pi"][i].tolist(),
            )
            log.add(schedules[a])

        # 4. dispatch top-down
        t = time.perf_counter()
        times = []
        dispatch: dict[int, dict] = {}
        for level in range(1, int(depth.max(initial=0)) + 1):
            level_areas = [a for a in dsos if depth[a] == level]
            tasks = [
                (
                    subs[a],
                    opts,
                    names[parent[a]],
                    [curves[c] for c in children[a]],
                    schedules[a],
                    mip_gap,
                    time_limit,
                    relax,
                    curves[a],
                    lk(a),
                )
                for a in level_areas
            ]
            for a, out in zip(
                level_areas,
                exe.map(dso_dispatch, tasks, [names[a] for a in level_areas], bar(f"dispatch (level {level})")),
            ):
                dispatch[a] = out
                log.add(out["report"])
                times.append(out["time_s"])
                for s in out["child_schedules"]:
                    child = names.index(s.receiver)
                    schedules[child] = s
                    log.add(s)
        note("dispatch", time.perf_counter() - t, times)
    finally:
        exe.close()

    return _assemble(
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
        iterate,
        curve_tol,
        exe,
    )


class _CutLoop:
    """The iterative variant (MODEL.md §6.3): TSO master with cuts, DSOs return value and subgradient."""

    def __init__(self, inst, tso, top, names, subs, opts, curves, children, exe, log, bar, threads, lk):
        self.lk = lk
        self.inst, self.tso, self.top, self.names, self.subs = inst, tso, top, names, subs
        self.opts, self.curves, self.children, self.exe, self.log, self.bar = opts, curves, children, exe, log, bar
        self.threads = threads
        self.eval_times: list[float] = []

    def evaluate(self, res: dict, stage: str, iteration: int) -> tuple[list[CutReply], float]:
        scheds = [
            Schedule(
                sender="TSO",
                receiver=self.names[a],
                stage=stage,
                periods=self.inst.periods.tolist(),
                export_mw=res["x"][i].tolist(),
                price_eur_mwh=res["pi"][i].tolist(),
                iteration=iteration,
            )
            for i, a in enumerate(self.top)
        ]
        for s in scheds:
            self.log.add(s)
        out = self.exe.map(
            dso_evaluate,
            [
                (self.subs[a], self.opts, "TSO", [self.curves[c] for c in self.children[a]], s, self.lk(a))
                for a, s in zip(self.top, scheds)
            ],
            [self.names[a] for a in self.top],
            self.bar(f"{stage} {iteration}"),
        )
        replies = [m for m, _ in out]
        self.eval_times.append(max((dt for _, dt in out), default=0.0))
        for r in replies:
            self.log.add(r)
        ub = res["objective"] - res["offer_value"] + sum(r.cost_eur for r in replies)
        return replies, ub

    def run(
        self,
        offers,
        replies,
        res,
        ub,
        history,
        *,
        relax,
        tol_abs,
        tol_rel,
        max_iterations,
        progress,
        mip_gap,
        time_limit,
    ) -> dict:
        for o, r in zip(offers, replies):
            add_cut_replies(o, [r])
            o.lo = o.hi = None  # full rating box: evaluation with slack never fails (complete recourse)
        best_ub, best_res = ub, res
        phase, rounds, k = "lp", 0, 0
        master = self.tso.cut_master(offers, threads=self.threads)
        # trust region (box step) around the best point so far damps the zig-zagging of plain cutting planes;
        # the lower bound always comes from the unrestricted master
        center, radius = np.asarray(res["x"], float), 1.0
        best_lb = -np.inf
        while True:
            k += 1
            rounds += 1
            integer = phase == "milp"
            t_master = time.perf_counter()
            if integer:
                res = self.tso.clear(
                    offers,
                    use_curves=False,
                    use_cuts=True,
                    integer=True,
                    threads=self.threads,
                    mip_gap=min(mip_gap, 1e-4),
                    time_limit=time_limit,
                )
                lb = res["objective"]
            else:
                res = master.solve(center, radius)
                # the trial solve's duals certify a bound of the unrestricted master; solve it only if they
                # cannot (each re-solve of the national TSO model costs seconds)
                lb = res["lower_bound"]
                near = best_ub - max(lb, best_lb) <= tol_abs + tol_rel * abs(best_ub)
                if not np.isfinite(lb) or near or k % 5 == 0:  # confirm, and never let a weak bound stall
                    lb = master.solve()["objective"]
                best_lb = max(best_lb, lb)
                lb = best_lb
            t_master = time.perf_counter() - t_master
            t_eval = time.perf_counter()
            replies, ub = self.evaluate(res, stage="iterate", iteration=k)
            t_eval = time.perf_counter() - t_eval
            if not integer:
                predicted = res["objective"]
                on_box = np.max(np.abs(np.asarray(res["x"]) - center)) >= radius * (1 - 1e-6)
                if ub < best_ub - 0.1 * max(best_ub - predicted, 0.0):
                    center = np.asarray(res["x"], float)  # serious step
                    radius = radius * 2 if on_box else radius
                else:
                    radius = max(radius * 0.5, 1e-4)  # null step: the new cut refines the model
            if ub < best_ub:
                best_ub, best_res = ub, res
            history.append(
                {
                    "iteration": k,
                    "master": phase,
                    "lower_bound": lb,
                    "upper_bound": best_ub,
                    "gap_eur": best_ub - lb,
                    "master_s": t_master,
                    "evaluation_s": t_eval,
                }
            )
            if progress:
                progress({"stage": "iterate", **history[-1]})
            for o, r in zip(offers, replies):
                add_cut_replies(o, [r])
            master.add_cuts(replies)
            converged = best_ub - lb <= tol_abs + tol_rel * abs(best_ub)
            if phase == "lp" and (converged or rounds >= max_iterations):
                if relax:
                    break
                # a few final rounds with the TSO's own binaries (MILP master); only their points are dispatched
                phase, rounds, best_ub = "milp", 0, np.inf
            elif phase == "milp" and (converged or rounds >= 3):
                break
        if best_res["tables"] is None:
            best_res["tables"] = self.tso.tables(best_res["cp"], best_res["sol"])
        return best_res


def _assemble(
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
    iterate,
    curve_tol,
    exe,
) -> ClearingResult:
    names = inst.areas.name
    parts = [res["tables"]] + [dispatch[a]["tables"] for a in sorted(dispatch)]
    tables = {}
    for key in ("segments", "bids", "buses", "lines"):
        frames = [p[key] for p in parts if key in p and len(p[key])]
        tables[key] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    rows = []
    for a in sorted(dispatch):
        s = schedules[a]
        rep = dispatch[a]["report"]
        c = curves.get(a)
        own = dispatch[a]["tables"]["interfaces"]
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
    tables["interfaces"] = pd.DataFrame(rows)
    tso_cost = res["cost"]
    market = tso_cost["market_cost_eur"] + sum(d["cost"]["market_cost_eur"] for d in dispatch.values())
    slack = tso_cost["slack_cost_eur"] + sum(d["cost"]["slack_cost_eur"] for d in dispatch.values())
    reports = [dispatch[a]["report"] for a in sorted(dispatch)]
    wall = time.perf_counter() - t_start
    crit = sum(v["slowest_operator_s"] for v in stage_times.values())
    summary = {
        "scheme": scheme_name,
        "variant": ("iterative" if iterate else "curves") if curves else "fixed-exchange",
        "instance": inst.name,
        "periods": [int(p) for p in inst.periods],
        "options": {
            "dist_model": opts.dist_model,
            "reactive_policy": opts.reactive_policy,
            "slack_penalty": opts.slack_penalty,
            "integer": not relax,
            "curve_tol_eur": curve_tol,
            "executor": exe.name,
            "workers": exe.workers,
        },
        "cost": {
            "market_cost_eur": market,
            "slack_cost_eur": slack,
            "total_cost_eur": market + slack,
            "tso_cost_eur": tso_cost["market_cost_eur"] + tso_cost["slack_cost_eur"],
            "dso_cost_eur": {names[a]: dispatch[a]["cost"]["total_cost_eur"] for a in sorted(dispatch)},
        },
        "slack": {
            "p_mw": float(tables["buses"].slack_p_mw.abs().sum()) if len(tables["buses"]) else 0.0,
            "q_mvar": float(tables["buses"].slack_q_mvar.abs().sum()) if len(tables["buses"]) else 0.0,
        },
        "tso": {
            "objective_with_offers_eur": res["objective"],
            "offer_value_eur": res["offer_value"],
            "mip": res["mip"],
        },
        "curves": {
            "sum_eps_eur": float(sum(sum(c.eps_eur) for c in curves.values())),
            "evaluations": int(sum(len(c.cuts) for c in curves.values())),
            "flags": sorted({f for c in curves.values() for fl in c.flags for f in fl}),
        },
        "curve_error_at_solution_eur": float(sum(r.curve_error_eur for r in reports)),
        "integrality_cost_eur": float(sum(r.integrality_cost_eur for r in reports)),
        "dso_mip_gap_max": max([d["mip"]["gap"] or 0.0 for d in dispatch.values()], default=0.0),
        "price_mismatch_max_eur_mwh": float(np.nan_to_num(tables["interfaces"].price_mismatch_eur_mwh).max())
        if len(tables["interfaces"])
        else 0.0,
        "iterations": history,
        "communication": log.totals(),
        "timings_s": {"wall": wall, "critical_path": crit, "stages": stage_times},
        "check": {"feasible": bool(all(d["check_ok"] for d in dispatch.values()))},
    }
    msgs = [{k: v for k, v in e.items() if k != "message"} | {"message": e["message"]} for e in log.entries]
    return ClearingResult(scheme=scheme_name, instance=inst.name, tables=tables, summary=summary, messages=msgs)
