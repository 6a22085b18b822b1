"""An operator's exact AC re-dispatch of its own distribution area (docs/model.md §5(h)).

One area, from its own sub-instance and its rows of a clearing's result tables:

1. the area's clearing problem is rebuilt with the clearing's model options; every binary is fixed at its cleared
   value, the export P at the cleared exchange, and each child area's (sub-DSO's) exchange P and Q at its
   cleared value (the child root is a boundary bus of this area that injects them);
2. the SOC program with these fixings gives the start point and the reference cost;
3. the exact AC program (`tdmarket.formulations.exact_ac`) is solved by Ipopt from there
   (`tdmarket.solvers.ipopt`): a *local optimum*, labelled `LOCAL_OPTIMUM_LABEL`;
4. the certificate is the AC power flow (`tdmarket.solvers.ac_powerflow`, its scipy Newton engine: the same
   equations and tolerances as the pandapower check, without building a pandapower network) of the recovered
   dispatch.  When the cleared exchange cannot be delivered without slack, a second attempt lets the export
   move, every MW of deviation paid at the interface price (the TSO re-balances it; reported).

A sub-DSO is re-dispatched after its parent (parent first): its boundary condition is the parent's AC state at
its root.  It then also holds its reactive export at the cleared value (the parent's recovery assumed it) and
its root's squared voltage at the parent's AC value (`AreaTask.root_vsq_pu`); its certificate is the AC power
flow of its own area with that root voltage, and it must deliver both the cleared P and Q.  Children first
would not work: a child does not know its root voltage before its parent is re-dispatched.

This module is operator work: `recover_area` runs inside a DSO agent (`DSO.ac_redispatch`) or as one request
of an executor (`recovery_task`, the executor target used by `tdmarket.reporting.ac_recovery`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..formulations.clearing import ClearingProblem
from ..formulations.exact_ac import exact_ac_program, integer_values_from_tables
from ..formulations.options import ModelOptions
from ..model.instance import Instance
from ..solvers import SolveStatus, solve
from ..solvers.ac_powerflow import ac_power_flow
from ..solvers.ipopt import solve_exact_ac

DX_TOL_MW = 1e-3  # MW (Mvar for a sub-DSO's Q) per period: an AC exchange this close to the cleared one is delivered
SLACK_TOL_MW = 1e-4  # MW: a recovered dispatch may not use more slack than the cleared one beyond this
LOCAL_OPTIMUM_LABEL = "local optimum (Ipopt)"


@dataclass
class AreaRecovery:
    """The recovery of one distribution area (costs in €, exchange deviations and slack in MW, times in s)."""

    area: str
    deliverable: bool  # the cleared dispatch passed the AC check (nothing done)
    attempted: bool
    recovered: bool
    status: str  # Ipopt's return status, or why nothing was attempted
    violations_before: int
    violations_after: int
    max_abs_dx_mw_before: float
    max_abs_dx_mw_after: float
    soc_cost_eur: float = float("nan")
    ac_cost_eur: float = float("nan")
    extra_cost_eur: float = 0.0
    slack_mw_before: float = float("nan")  # Σ |active| + |reactive| slack of the area (MW + Mvar)
    slack_mw_after: float = float("nan")
    iterations: int = 0
    time_s: float = 0.0
    parent: str = ""  # the parent area of a sub-DSO ("" for an area below the TSO)
    optimality: str = ""  # LOCAL_OPTIMUM_LABEL when Ipopt converged
    soc_start_s: float = 0.0  # the SOC program with the fixings (start point, reference cost)
    build_s: float = 0.0  # the CasADi function (derivatives) of the exact AC program
    ipopt_s: float = 0.0
    certificate_s: float = 0.0  # the AC power flow of the recovered dispatch
    exchange_deviation_mw: float = 0.0  # max |x − x*| when the exchange had to move (the TSO re-balances it)
    exchange_deviation_cost_eur: float = 0.0  # −Σ π·(x − x*)·Δt, included in extra_cost_eur


@dataclass
class AreaTask:
    """What one area's re-dispatch needs: its sub-instance (`Instance.area_instance`), its rows of the result
    tables (`area_tables`), the model options of the clearing and the AC check before."""

    area: str
    sub: Instance
    tables: dict[str, pd.DataFrame]
    opts: ModelOptions
    violations_before: int
    max_abs_dx_mw_before: float
    parent: str = ""
    root_vsq_pu: np.ndarray | None = None  # sub-DSO: the parent's AC squared voltage at its root per period (p.u.²)


@dataclass
class AreaOutcome:
    """The re-dispatch of one area: the report, the delivered tables of its sub-instance (None when the area
    keeps its cleared dispatch), its certificate (`ac_power_flow(...)["areas"]`) and the AC squared voltage
    (p.u.², per period) at each child root, for the children's re-dispatch."""

    recovery: AreaRecovery
    tables: dict[str, pd.DataFrame] | None
    ac_areas: pd.DataFrame | None
    child_root_vsq_pu: dict[str, np.ndarray] = field(default_factory=dict)


def deliverability(ac_areas: pd.DataFrame) -> pd.DataFrame:
    """Per area of an `ac_power_flow` `areas` table: violations, max |Δx| (MW), max |Δy| (Mvar) and whether it is
    deliverable (converged, no violation, |Δx| ≤ `DX_TOL_MW`)."""
    if len(ac_areas) == 0:
        return pd.DataFrame(
            columns=["area", "violations", "max_abs_dx_mw", "max_abs_dy_mvar", "converged", "deliverable"]
        )
    frame = ac_areas.assign(
        violations=ac_areas["n_voltage_violations"] + ac_areas["n_overloads"],
        abs_dx=ac_areas["dx_mw"].abs().fillna(np.inf),
        abs_dy=ac_areas["dy_mvar"].abs().fillna(np.inf),
    )
    per = frame.groupby("area", sort=False).agg(
        violations=("violations", "sum"),
        max_abs_dx_mw=("abs_dx", "max"),
        max_abs_dy_mvar=("abs_dy", "max"),
        converged=("converged", "all"),
    )
    per["deliverable"] = per["converged"] & (per["violations"] == 0) & (per["max_abs_dx_mw"] <= DX_TOL_MW)
    return per.reset_index()


_TABLE_KEYS = {
    "segments": ("segment", lambda s: s.orders.segments.id),
    "bids": ("bid", lambda s: s.orders.bids.id),
    "buses": ("node", lambda s: s.buses.id),
    "lines": ("edge", lambda s: s.branches.id),
    "interfaces": ("area", lambda s: np.asarray(s.areas.name)),
}


def area_tables(sub: Instance, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The rows of the result tables `tables` that belong to the sub-instance `sub` (what an area's task ships)."""
    out = {}
    for name, (key, ids) in _TABLE_KEYS.items():
        frame = tables.get(name)
        if frame is not None and key in frame:
            out[name] = frame[frame[key].isin(ids(sub))].reset_index(drop=True)
    return out


# columns of the result tables a recovered area's dispatch replaces (keys first)
_REPLACED = {
    "segments": (["segment"], ["accepted_fraction", "accepted_mw", "cost_eur"]),
    "bids": (["bid"], ["p_mw", "q_mvar", "accepted"]),
    "buses": (["node", "period"], ["vsq_pu", "slack_p_mw", "slack_q_mvar"]),
    "lines": (
        ["edge", "period"],
        [
            "p_from_mw",
            "q_from_mvar",
            "p_to_mw",
            "q_to_mvar",
            "loss_mw",
            "loading",
            "soc_gap",
            "fictitious_loss_mw",
            "fictitious_vdrop_pu2",
        ],
    ),
    "interfaces": (["area", "period"], ["export_mw", "export_mvar"]),
}


def replace_dispatch(tables: dict, new: dict) -> dict:
    """`tables` with the rows of `new` (e.g. an area's re-dispatched tables) replacing theirs in the dispatch
    columns (`_REPLACED`); other columns (prices, ids) and rows stay as they are."""
    out = dict(tables)
    for name, (keys, cols) in _REPLACED.items():
        old, fresh = tables.get(name), new.get(name)
        if old is None or fresh is None or len(old) == 0 or len(fresh) == 0:
            continue
        if name == "lines":
            fresh = fresh[fresh["kind"] == "D"]
        cols = [c for c in cols if c in old and c in fresh]
        frame = old.copy()
        fresh = fresh.drop_duplicates(keys)
        pos = pd.MultiIndex.from_frame(fresh[keys]).get_indexer(pd.MultiIndex.from_frame(frame[keys]))
        hit = pos >= 0
        if name == "lines" and "kind" in frame:
            hit &= (frame["kind"] == "D").to_numpy()
        for c in cols:
            frame.loc[hit, c] = fresh[c].to_numpy()[pos[hit]]
        out[name] = frame
    return out


def _per_period(frame: pd.DataFrame | None, area: str, column: str, periods: np.ndarray) -> np.ndarray:
    if frame is None or len(frame) == 0 or column not in frame:
        return np.zeros(len(periods))
    rows = frame[frame["area"] == area].drop_duplicates("period").set_index("period")[column]
    return rows.reindex(periods).fillna(0.0).to_numpy(float)


def _slack_mw(tables: dict, sub: Instance) -> float:
    """Σ |active slack| + |reactive slack| over the area's own buses and periods (MW + Mvar): a dispatch that
    needs either is not delivered by real resources."""
    buses = tables.get("buses")
    if buses is None or len(buses) == 0:
        return 0.0
    own = buses[buses["node"].isin(sub.buses.id[~sub.buses.is_boundary])]
    return float(sum(own[c].abs().sum() for c in ("slack_p_mw", "slack_q_mvar") if c in own))


def _fix_boundary(cp: ClearingProblem, prog, task: AreaTask) -> None:
    """Fix the children's exchanges (P, Q) at their cleared values and, for a sub-DSO, its own Q export and its
    root's squared voltage."""
    iface, sub = cp.iface, task.sub
    iface_table = task.tables.get("interfaces")
    names = np.asarray(sub.areas.name)
    for i in np.flatnonzero(~iface.root_modelled):  # children: their roots are boundary buses here
        name = str(names[iface.area[i]])
        for grid, column in ((iface.x_grid, "export_mw"), (iface.y_grid, "export_mvar")):
            value = _per_period(iface_table, name, column, sub.periods)
            prog.set_bounds(grid[i], value, value)
    if task.root_vsq_pu is None:
        return
    own = np.flatnonzero(iface.own)
    q = _per_period(iface_table, task.area, "export_mvar", sub.periods)
    prog.set_bounds(iface.y_grid[own[0]], q, q)
    w_cols = getattr(cp.dist, "w_grid", None)
    if w_cols is not None:
        root = sub.areas.root_bus[0]
        prog.set_bounds(w_cols[root], task.root_vsq_pu, task.root_vsq_pu)


def _child_root_vsq(sub: Instance, ac_buses: pd.DataFrame) -> dict[str, np.ndarray]:
    """The AC squared voltage (p.u.², per period) at each child root of `sub` from a power flow's `buses` table."""
    out: dict[str, np.ndarray] = {}
    if len(ac_buses) == 0:
        return out
    for c in range(1, sub.n_areas):
        root = sub.buses.id[sub.areas.root_bus[c]]
        rows = ac_buses[ac_buses["node"] == root].drop_duplicates("period").set_index("period")["vsq_pu"]
        out[str(sub.areas.name[c])] = rows.reindex(sub.periods).to_numpy(float)
    return out


def recover_area(task: AreaTask) -> AreaOutcome:
    """The exact AC re-dispatch of one area (module docstring)."""
    t0 = time.perf_counter()
    sub, opts = task.sub, task.opts
    base: dict[str, Any] = dict(
        area=task.area,
        deliverable=False,
        violations_before=task.violations_before,
        max_abs_dx_mw_before=task.max_abs_dx_mw_before,
        parent=task.parent,
    )
    cp = ClearingProblem(sub, opts)
    export = _per_period(task.tables.get("interfaces"), task.area, "export_mw", sub.periods)
    integers = integer_values_from_tables(cp, task.tables.get("segments"), task.tables.get("bids"))
    eprog = exact_ac_program(cp, integers, export)
    _fix_boundary(cp, eprog.prog, task)
    slack_before = _slack_mw(task.tables, sub)
    soc = solve(eprog.prog)
    t_soc = time.perf_counter() - t0
    if soc.status not in (SolveStatus.OPTIMAL, SolveStatus.ALMOST_OPTIMAL):  # a start point, not a price
        return AreaOutcome(
            AreaRecovery(
                **base,
                attempted=False,
                recovered=False,
                status=f"not attempted: the SOC problem with the cleared binaries and exchange is {soc.status.value}",
                violations_after=task.violations_before,
                max_abs_dx_mw_after=task.max_abs_dx_mw_before,
                slack_mw_before=slack_before,
                soc_start_s=t_soc,
                time_s=time.perf_counter() - t0,
            ),
            None,
            None,
        )
    # costs as the clearing reports them (slacks clipped at 0: an interior point leaves them at about -1e-9 MW,
    # which the 1e4 €/MWh penalty would turn into cents)
    soc_cost = cp.cost_parts(soc.x)["total_cost_eur"]
    attempt = _attempt(cp, eprog, soc.x, task, slack_before)
    price = _interface_price(task)
    if not attempt.recovered and attempt.slack_grew and task.root_vsq_pu is None and price is not None:
        # the cleared exchange itself cannot be delivered without slack: let it move, paid at the interface price
        moved = exact_ac_program(cp, integers, export)
        _fix_boundary(cp, moved.prog, task)
        _free_exchange(cp, moved.prog, export, price)
        second = _attempt(cp, moved, attempt.x if attempt.converged else soc.x, task, slack_before)
        second.status += " (exchange moved, priced at the interface price)"
        second.build_s += attempt.build_s
        second.ipopt_s += attempt.ipopt_s
        second.certificate_s += attempt.certificate_s
        second.iterations += attempt.iterations
        attempt = second
    dx_mw = attempt.x[cp.own_x] - export
    payment = -float(np.dot(price, dx_mw)) * opts.period_hours if price is not None else 0.0
    ac_cost = cp.cost_parts(attempt.x)["total_cost_eur"]
    report = AreaRecovery(
        **base,
        attempted=True,
        recovered=attempt.recovered,
        status=attempt.status,
        violations_after=attempt.violations_after,
        max_abs_dx_mw_after=attempt.max_abs_dx_mw_after,
        soc_cost_eur=soc_cost,
        ac_cost_eur=ac_cost,
        extra_cost_eur=ac_cost + payment - soc_cost,
        slack_mw_before=slack_before,
        slack_mw_after=attempt.slack_after,
        iterations=attempt.iterations,
        optimality=LOCAL_OPTIMUM_LABEL if attempt.converged else "",
        soc_start_s=t_soc,
        build_s=attempt.build_s,
        ipopt_s=attempt.ipopt_s,
        certificate_s=attempt.certificate_s,
        time_s=time.perf_counter() - t0,
        exchange_deviation_mw=float(np.abs(dx_mw).max(initial=0.0)),
        exchange_deviation_cost_eur=payment,
    )
    # an unconverged or uncertified point is not delivered: the area keeps its cleared dispatch
    if not attempt.recovered:
        return AreaOutcome(report, None, None)
    candidate = attempt.tables
    own = candidate["buses"]["node"].isin(sub.buses.id[~sub.buses.is_boundary])
    candidate["buses"] = candidate["buses"][own].reset_index(drop=True)  # boundary buses are the neighbours'
    return AreaOutcome(report, candidate, attempt.ac_areas, _child_root_vsq(sub, attempt.ac_buses))


@dataclass
class _Attempt:
    """One Ipopt solve of an area's exact AC program and its certificate."""

    x: np.ndarray
    converged: bool
    status: str
    recovered: bool
    slack_grew: bool
    slack_after: float
    violations_after: int
    max_abs_dx_mw_after: float
    iterations: int
    build_s: float
    ipopt_s: float
    certificate_s: float
    tables: dict
    ac_areas: pd.DataFrame
    ac_buses: pd.DataFrame


def _attempt(cp: ClearingProblem, eprog, x0: np.ndarray, task: AreaTask, slack_before: float) -> _Attempt:
    """Ipopt from `x0`, then the AC power flow of the point: recovered when Ipopt converged, the power flow is
    deliverable (and delivers the fixed Q of a sub-DSO) and the slack did not grow."""
    sub, opts = task.sub, task.opts
    nlp = solve_exact_ac(eprog, x0)
    t1 = time.perf_counter()
    candidate = cp.extract(nlp.x, None)
    flow = ac_power_flow(sub, candidate, pi_model=opts.pi_model, zero_root_q=opts.zero_root_q, engine="newton")
    t_cert = time.perf_counter() - t1
    check = deliverability(flow["areas"])
    check = check[check["area"] == task.area]
    row = check.iloc[0] if len(check) else None
    slack_after = _slack_mw(candidate, sub)
    slack_grew = slack_after > slack_before + SLACK_TOL_MW
    q_ok = task.root_vsq_pu is None or (row is not None and float(row.max_abs_dy_mvar) <= DX_TOL_MW)
    recovered = bool(nlp.converged and row is not None and bool(row.deliverable) and q_ok and not slack_grew)
    return _Attempt(
        x=nlp.x,
        converged=nlp.converged,
        status=nlp.status,
        recovered=recovered,
        slack_grew=slack_grew,
        slack_after=slack_after,
        violations_after=int(row.violations) if row is not None else -1,
        max_abs_dx_mw_after=float(row.max_abs_dx_mw) if row is not None else float("nan"),
        iterations=nlp.iterations,
        build_s=nlp.build_time_s,
        ipopt_s=nlp.solve_time_s,
        certificate_s=t_cert,
        tables=candidate,
        ac_areas=flow["areas"],
        ac_buses=flow["buses"],
    )


def _interface_price(task: AreaTask) -> np.ndarray | None:
    """The price of the area's exchange per period (€/MWh): the interface price of the clearing, else the price
    at its root; None when neither is known."""
    iface = task.tables.get("interfaces")
    for column in ("interface_price_eur_mwh", "root_price_eur_mwh"):
        if iface is not None and column in iface:
            price = _per_period(iface, task.area, column, task.sub.periods)
            rows = iface[iface["area"] == task.area][column].to_numpy(float)
            if len(rows) and np.isfinite(rows).all():
                return price
    return None


def _free_exchange(cp: ClearingProblem, prog, export_mw: np.ndarray, price: np.ndarray) -> None:
    """Let the area's export move from the cleared `export_mw` (within the interface rating), every MW of it paid
    at `price` (€/MWh): cost − π·(x − x*)·Δt, i.e. what the TSO's re-balancing costs at the margin."""
    rows = prog.rows["exchange_fix"]
    prog.set_row_bounds(np.arange(rows.start, rows.start + rows.size), -np.inf, np.inf)
    c = prog.c.copy()
    dt = cp.opts.period_hours
    c[cp.own_x] -= price * dt
    prog.set_cost(c)
    prog.c0 = float(prog.c0 + np.dot(price, export_mw) * dt)


def recovery_task(key: str, method: str, args: tuple, kwargs: dict, init=None) -> AreaOutcome:
    """Executor target (`tdmarket.operators.executors`): one request `("recover", (AreaTask,))` per area."""
    if method != "recover":
        raise ValueError(f"unknown AC recovery request {method!r} for {key}")
    return recover_area(*args, **kwargs)


def redispatch_if_not_deliverable(task: AreaTask) -> AreaOutcome:
    """The exact AC re-dispatch of an area only where its dispatch is not AC-deliverable: the AC power flow of
    `task.tables` first (skipped for a sub-DSO given its parent's AC root voltage, whose boundary moved: it is
    always re-dispatched), then `recover_area`.  A deliverable area returns its report with `tables` None."""
    if task.root_vsq_pu is None:
        ac = ac_power_flow(
            task.sub, task.tables, pi_model=task.opts.pi_model, zero_root_q=task.opts.zero_root_q, engine="newton"
        )
        check = deliverability(ac["areas"])
        check = check[check["area"] == task.area]
        if len(check):
            row = check.iloc[0]
            task.violations_before, task.max_abs_dx_mw_before = int(row.violations), float(row.max_abs_dx_mw)
            if bool(row.deliverable):
                report = AreaRecovery(
                    area=task.area,
                    deliverable=True,
                    attempted=False,
                    recovered=False,
                    status="deliverable",
                    violations_before=task.violations_before,
                    violations_after=task.violations_before,
                    max_abs_dx_mw_before=task.max_abs_dx_mw_before,
                    max_abs_dx_mw_after=task.max_abs_dx_mw_before,
                    parent=task.parent,
                )
                return AreaOutcome(report, None, ac["areas"], _child_root_vsq(task.sub, ac["buses"]))
    return recover_area(task)
