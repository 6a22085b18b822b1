"""`integrated` (platform level, docs/model.md §12.3): one clearing of every member with all its grids (T and D)
and the interconnector flows, by one operator who holds all data — the reference of the platform schemes."""

from __future__ import annotations

import time

import numpy as np

from ..formulations.clearing import ClearingProblem
from ..formulations.interconnectors import InterconnectorBlock
from ..formulations.options import ModelOptions
from ..market.pricing import publish_prices
from ..model.federation import Federation, merged_instance
from ..schemes.centralized import solve_clearing, summarise
from ..schemes.result import ClearingResult
from .common import base_summary, border_buses, flows_table, member_prices_table, price_at
from .result import FederationResult


def run_integrated(fed: Federation, options: dict, settings) -> FederationResult:
    t0 = time.perf_counter()
    relax = bool(options.get("relax", False))
    model = {k: v for k, v in options.items() if k in ModelOptions.__dataclass_fields__}
    opts = ModelOptions(integer=not relax, **model)
    mf = merged_instance(fed)
    inst = mf.instance
    ic = fed.interconnectors
    from_bus = np.array([mf.bus_start[m] + b for m, b in zip(ic.from_member, ic.from_bus)], np.int64)
    to_bus = np.array([mf.bus_start[m] + b for m, b in zip(ic.to_member, ic.to_bus)], np.int64)
    block = InterconnectorBlock(ic.id, from_bus, to_bus, ic.atc_forward_mw, ic.atc_backward_mw)
    cp = ClearingProblem(inst, opts, extra_blocks=(block,))
    t_build = time.perf_counter() - t0
    sol, mip = solve_clearing(
        cp,
        mip_gap=options.get("mip_gap", 1e-3),
        time_limit=options.get("time_limit"),
        threads=options.get("threads", 1),
    )
    sol, _ = publish_prices(cp, sol)
    tables = cp.extract(sol.x, sol.row_dual)
    flows = block.flows_mw(sol.x)
    wall = time.perf_counter() - t0
    summary_inner = summarise(cp, sol, tables, mip, {"build": t_build, "total": wall}, "integrated")
    merged_result = ClearingResult(scheme="integrated", instance=inst.name, tables=tables, summary=summary_inner)
    # per member: its orders' cost and its buses' slack (the merged program's cost split by member)
    kappa = opts.slack_penalty * opts.period_hours
    bus_member = np.searchsorted(mf.bus_start, np.arange(len(inst.buses)), side="right") - 1  # member of each bus
    seg_bus = inst.orders.bids.bus[inst.orders.segments.bid]
    seg_cost = tables["segments"]["cost_eur"].to_numpy()
    buses = tables["buses"]
    id_member = dict(zip(inst.buses.id.tolist(), bus_member.tolist()))
    bm = buses["node"].map(id_member).to_numpy()
    slack = (buses["slack_p_mw"].abs() + buses["slack_q_mvar"].abs()).to_numpy() * kappa
    member_costs, prices = {}, []
    for m, name in enumerate(fed.members):
        market = float(seg_cost[bus_member[seg_bus] == m].sum())
        slack_m = float(slack[bm == m].sum())
        member_costs[name] = {"market_cost_eur": market, "slack_cost_eur": slack_m, "total_cost_eur": market + slack_m}
        bus = border_buses(fed, m)
        prices.append(price_at(buses, inst.buses.id[mf.bus_start[m] + bus], fed.periods))
    ph = opts.period_hours
    ft = flows_table(fed, flows, prices, ph)
    summary = base_summary(fed, "integrated", member_costs, ft)
    # the program's own total (equal to the member sum up to the slack's sign split)
    summary["cost"] = dict(summary_inner["cost"])
    summary["check"] = summary_inner["check"]
    summary["mip"] = summary_inner["mip"]
    summary["certificate"] = {
        "kind": "one clearing" + ("" if relax else " (mixed-integer, MIP gap of the solver)"),
        "mip_gap": mip.get("gap"),
    }
    summary["communication"] = {"platform": {"messages": 0, "bytes": 0}, "member": {"messages": 0, "bytes": 0}}
    summary["timings_s"] = {"total": time.perf_counter() - t0, "build": t_build}
    return FederationResult(
        scheme="integrated",
        federation=fed.name,
        summary=summary,
        flows=ft,
        member_prices=member_prices_table(fed, prices),
        merged=(inst, merged_result),
    )
