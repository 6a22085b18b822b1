"""Lost opportunity cost (LOC) and best response of every participant at the published prices (docs/model.md §8).

* The **profit** of participant j (`tdmarket.market.participants`) at the published prices is
      Π_j = Σ_{b∈j} (λ^P_{i_b,t_b} P_b + λ^Q_{i_b,t_b} Q_b) Δ − Σ_{s∈j} π_s |w_s| ξ_s Δ,
  with λ^Q = 0 at transmission nodes (T orders have no reactive output).
* The **best response** max_{F_j} Π_j is computed for all participants at once: one `Program` holding the
  `OrderBlock` of the whole order book (every row of §4: binaries, logic, ramps, half-planes, discs, reactive
  policy — no network), with objective c = cost − revenue.  The program is block-separable by participant, so
  a joint optimum is optimal for every block, and each participant's optimum is read from the joint solution.
  LP/MILP go to HiGHS, SOCP to Clarabel, MISOCP (discs with binaries) to the outer-approximation solver.
* **MIP-gap caveat.**  If the joint problem is solved to an absolute gap G (€), each participant's best profit is
  known only up to G (the sum of the per-participant shortfalls is at most G).  The gap is reported in
  `DataFrame.attrs` (`abs_gap_eur`, `rel_gap`); with the default target 1e-9 it is far below a cent.
* LOC_j = max(0, best − cleared).  The cleared point lies in F_j, so a negative raw value can only be solver
  tolerance or the MIP gap; it is kept in `raw_loc_eur`.

Consistency with the clearing: the feasible set uses the clearing's `ModelOptions` (reactive policy, disc model,
integrality).  For a relaxed clearing (`integer=False`) F_j is relaxed too; then every LOC is 0 up to solver
tolerance (the relaxed clearing is a convex program whose balance duals decompose it by participant).  Pass
`integer=True` to measure a relaxed dispatch against the true (integral) order sets instead.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..formulations.options import ModelOptions
from ..formulations.orders import OrderBlock, net_two_way
from ..formulations.program import Program
from ..model.instance import Instance
from ..solvers import solve
from ..solvers.acceptance import require
from ..solvers.highs import solve_highs
from ..solvers.misocp import solve_misocp
from .participants import participant_frame, qtbid_participant

LOC_TOL_EUR = 1e-4  # € : LOC above this counts as positive (interior-point noise on italy-693 is ~3e-6 €)
QPRICE_NOISE = 1e-9  # |λ^Q| below this (€/Mvarh) is interior-point noise; treated as 0 (see `_bid_prices`)


# ================================================================================================ prices
def _price_lookup(inst: Instance, buses: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Dense (n_bus, T) arrays of λ^P and λ^Q from a `buses` table (NaN where the table has no row; λ^Q NaN at
    T buses)."""
    n, T = len(inst.buses), inst.n_periods
    lam_p = np.full((n, T), np.nan)
    lam_q = np.full((n, T), np.nan)
    if len(buses):
        i = inst.bus_index(buses.node.to_numpy())
        t = np.searchsorted(inst.periods, buses.period.to_numpy())
        lam_p[i, t] = buses.price_p_eur_mwh.to_numpy(float)
        lam_q[i, t] = buses.price_q_eur_mvarh.to_numpy(float)
    return lam_p, lam_q


def _bid_prices(inst: Instance, buses: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """λ^P and λ^Q at every QBid (by position).  λ^Q is 0 at T buses and |λ^Q| <= QPRICE_NOISE is set to 0:
    under the `free` reactive policy an unbounded Q column priced at ±1e-12 would make the best response
    unbounded, while its true price (by dual feasibility of the clearing) is exactly 0."""
    bids = inst.orders.bids
    lam_p, lam_q = _price_lookup(inst, buses)
    lp = lam_p[bids.bus, bids.period]
    lq = lam_q[bids.bus, bids.period]
    missing = np.isnan(lp)
    if missing.any():
        k = np.flatnonzero(missing)[0]
        raise ValueError(
            f"no published price for QBid {bids.id[k]} at node {inst.buses.id[bids.bus[k]]}, "
            f"period {inst.periods[bids.period[k]]}"
        )
    lq = np.where(np.isnan(lq) | (np.abs(lq) <= QPRICE_NOISE), 0.0, lq)
    return lp, lq


# ================================================================================================ LOC
def cleared_profit(inst: Instance, tables: dict[str, pd.DataFrame], opts: ModelOptions) -> pd.DataFrame:
    """Per QBid of the `bids` table: receipts (λ^P P + λ^Q Q)Δ, activation cost and participant."""
    dt = opts.period_hours
    bids, seg = tables["bids"], tables["segments"]
    lam_p, lam_q = _price_lookup(inst, tables["buses"])
    i = inst.bus_index(bids.node.to_numpy())
    t = np.searchsorted(inst.periods, bids.period.to_numpy())
    lp = lam_p[i, t]
    if np.isnan(lp).any():
        raise ValueError("the buses table has no price for some order's node and period")
    lq = lam_q[i, t]
    lq = np.where(np.isnan(lq) | (np.abs(lq) <= QPRICE_NOISE), 0.0, lq)
    q = np.nan_to_num(bids.q_mvar.to_numpy(float))
    cost = seg.groupby("bid")["cost_eur"].sum()
    out = pd.DataFrame(
        {
            "bid": bids.bid.to_numpy(),
            "qtbid": bids.qtbid.to_numpy(),
            "participant": qtbid_participant(inst, bids.qtbid.to_numpy()),
            "node": bids.node.to_numpy(),
            "period": bids.period.to_numpy(),
            "receipts_eur": (lp * bids.p_mw.to_numpy(float) + lq * q) * dt,
            "cost_eur": cost.reindex(bids.bid.to_numpy()).fillna(0.0).to_numpy(),
        }
    )
    out["profit_eur"] = out.receipts_eur - out.cost_eur
    return out


def best_response_program(inst: Instance, opts: ModelOptions, lam_p_bid: np.ndarray, lam_q_bid: np.ndarray):
    """(program, order block) of  min Σ_j (cost_j − revenue_j)  over every participant's own feasible set."""
    prog = Program()
    block = OrderBlock(inst, opts)
    block.add_variables(prog)
    block.add_constraints(prog)
    seg = inst.orders.segments
    dt = opts.period_hours
    c = prog.c.copy()
    c[prog.var("xi").index] -= lam_p_bid[seg.bid] * seg.width * dt
    c[prog.var("q").index] -= lam_q_bid[block.q_bid] * dt
    prog.set_cost(c)
    return prog, block


def _solve_best_response(prog: Program, *, mip_gap: float, time_limit: float | None, threads: int):
    """(accepted solution, absolute gap €, relative gap); a continuous problem has gap 0.  A MIP may stop at the
    time limit with its incumbent.  Raises SolverError (see `tdmarket.solvers.acceptance`)."""
    what = "best-response problem"
    if not prog.has_integers:
        return require(solve(prog), prog, what), 0.0, 0.0
    if not prog.has_cones:
        sol = solve_highs(prog, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
    else:
        sol, _ = solve_misocp(prog, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
    require(sol, prog, what, allow_time_limit=True)
    bound = sol.mip_bound if sol.mip_bound is not None and np.isfinite(sol.mip_bound) else -np.inf
    abs_gap = max(0.0, sol.objective - bound)
    rel_gap = float(sol.mip_gap) if sol.mip_gap is not None else np.inf
    return sol, abs_gap, rel_gap


def lost_opportunity_costs(
    inst: Instance,
    tables: dict[str, pd.DataFrame],
    opts: ModelOptions,
    *,
    integer: bool | None = None,
    mip_gap: float = 1e-9,
    time_limit: float | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """LOC per participant (see module docstring).

    Columns: participant, qtbids, node, area, kind, profit_cleared_eur, profit_best_eur, raw_loc_eur, loc_eur.
    `attrs`: solver, status, integer, abs_gap_eur, rel_gap, objective_eur, min_raw_loc_eur.
    `integer` overrides `opts.integer` for the best-response sets.
    """
    dt = opts.period_hours
    frame = participant_frame(inst)
    J = len(frame)
    ob = inst.orders
    seg, bids = ob.segments, ob.bids
    br_opts = opts if integer is None else replace(opts, integer=bool(integer))
    # cleared profits, from the published tables
    cleared = cleared_profit(inst, tables, opts)
    profit_cleared = np.bincount(cleared.participant.to_numpy(), cleared.profit_eur.to_numpy(), minlength=J)
    attrs = {
        "solver": None,
        "status": None,
        "integer": bool(br_opts.integer),
        "abs_gap_eur": 0.0,
        "rel_gap": 0.0,
        "objective_eur": 0.0,
        "period_hours": dt,
    }
    if len(seg):
        lp, lq = _bid_prices(inst, tables["buses"])
        prog, block = best_response_program(inst, br_opts, lp, lq)
        sol, abs_gap, rel_gap = _solve_best_response(prog, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
        x = sol.x
        xi = np.clip(x[prog.var("xi").index], 0.0, 1.0)
        xi = net_two_way(inst, xi, np.flatnonzero(block.netted))
        p_seg = seg.width * xi
        P_b = np.bincount(seg.bid, p_seg, minlength=len(bids))
        Q_b = np.zeros(len(bids))
        Q_b[block.q_bid] = x[prog.var("q").index]
        cost_b = np.bincount(seg.bid, seg.price * np.abs(p_seg) * dt, minlength=len(bids))
        profit_b = (lp * P_b + lq * Q_b) * dt - cost_b
        bid_part = qtbid_participant(inst, bids.qtbid)
        profit_best: np.ndarray = np.bincount(bid_part, profit_b, minlength=J)
        attrs.update(
            solver=sol.solver,
            status=sol.status.value,
            abs_gap_eur=float(abs_gap),
            rel_gap=float(rel_gap),
            objective_eur=float(sol.objective),
        )
    else:
        profit_best = np.zeros(J)
    raw = profit_best - profit_cleared
    frame["profit_cleared_eur"] = profit_cleared
    frame["profit_best_eur"] = profit_best
    frame["raw_loc_eur"] = raw
    frame["loc_eur"] = np.maximum(raw, 0.0)
    attrs["min_raw_loc_eur"] = float(raw.min()) if J else 0.0
    frame.attrs.update(attrs)
    return frame


def uplift(loc_df: pd.DataFrame) -> float:
    """Total uplift Σ_j LOC_j (€)."""
    return float(loc_df["loc_eur"].sum()) if len(loc_df) else 0.0
