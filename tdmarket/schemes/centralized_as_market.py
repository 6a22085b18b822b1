"""`centralized-as-market` (docs/model.md §7): the TSO clears all orders with the distribution grids ignored.

1. Every distribution order and every fixed distribution injection is moved to the T node its area hangs from
   (`collapse_distribution`); D lines, voltages and (by default) interface ratings are ignored.
2. The TSO clears that transmission-only market (MILP, then the LP with binaries fixed for prices).
3. Each DSO takes the activations as given and sets every order's reactive output to the value nearest 0 within
   its PQ set (`reactive_nearest_zero`); the AC security check of the reporting layer then shows what the
   distribution grids make of that dispatch (violations, interface deviation).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..model.instance import Areas, BranchKind, Instance
from .centralized import clear_centralized
from .registry import SchemeContext, SchemeSpec, register
from .result import ClearingResult


def collapse_distribution(inst: Instance) -> Instance:
    """Transmission-only copy: D buses, lines and interfaces removed, D orders and injections at their T node."""
    b, br, ar = inst.buses, inst.branches, inst.areas
    # top-level T node of every bus: the host of its top-level area
    top = ar.top_level()
    t_node = np.arange(len(b))
    d = b.is_dist
    t_node[d] = ar.host_bus[top[b.area[d]]]
    keep = np.flatnonzero(~d)
    remap = np.full(len(b), -1)
    remap[keep] = np.arange(len(keep))
    new_pos = remap[t_node]
    p_inj = np.zeros((len(keep), inst.n_periods))
    np.add.at(p_inj, new_pos, inst.p_inj)
    buses = replace(
        b,
        id=b.id[keep],
        is_dist=b.is_dist[keep],
        vsq_min=b.vsq_min[keep],
        vsq_max=b.vsq_max[keep],
        g_shunt=b.g_shunt[keep],
        b_shunt=b.b_shunt[keep],
        is_ref=b.is_ref[keep],
        area=np.zeros(len(keep), dtype=np.int64),
        is_boundary=np.zeros(len(keep), bool),
    )
    lines = np.flatnonzero(br.kind == BranchKind.TRANSMISSION)
    branches = replace(
        br,
        id=br.id[lines],
        f=remap[br.f[lines]],
        t=remap[br.t[lines]],
        r=br.r[lines],
        x=br.x[lines],
        b=br.b[lines],
        rating=br.rating[lines],
        tap=br.tap[lines],
        shift_deg=br.shift_deg[lines],
        kind=br.kind[lines],
        area=np.zeros(len(lines), dtype=np.int64),
        pq_bound=None if br.pq_bound is None else br.pq_bound[lines],
    )
    bids = replace(inst.orders.bids, bus=new_pos[inst.orders.bids.bus])
    orders = replace(inst.orders, bids=bids)
    areas = Areas(
        name=["TSO"],
        parent=np.array([-1]),
        root_bus=np.array([-1]),
        host_bus=np.array([-1]),
        interface=np.array([-1]),
        root_is_from=np.array([False]),
    )
    return replace(
        inst,
        name=f"{inst.name}:collapsed",
        buses=buses,
        branches=branches,
        areas=areas,
        p_inj=p_inj,
        q_inj=np.zeros_like(p_inj),
        orders=orders,
        warnings=list(inst.warnings),
    )


def reactive_nearest_zero(inst: Instance, p_bid: np.ndarray, policy: str = "bounded") -> tuple[np.ndarray, np.ndarray]:
    """Q_b (Mvar) of every distribution bid nearest 0 within its PQ set at the given P_b; T bids get NaN.

    Returns (q, feasible): `feasible` is False where the half-planes and discs admit no Q at that P."""
    ob = inst.orders
    bids, seg = ob.bids, ob.segments
    B = len(bids)
    is_d = inst.buses.is_dist[bids.bus]
    lo = np.full(B, -np.inf)
    hi = np.full(B, np.inf)
    hp = pd.DataFrame({"qt": ob.hp_qtbid, "m": ob.hp_slope, "o": ob.hp_offset, "geq": ob.hp_geq}).drop_duplicates()
    pairs = hp.merge(pd.DataFrame({"qt": bids.qtbid, "bid": np.arange(B)})[is_d], on="qt")
    bid = pairs.bid.to_numpy()
    bound = pairs.o.to_numpy() + pairs.m.to_numpy() * p_bid[bid]
    geq = pairs.geq.to_numpy()
    np.maximum.at(lo, bid[geq], bound[geq])
    np.minimum.at(hi, bid[~geq], bound[~geq])
    has_hp = np.zeros(B, bool)
    has_hp[bid] = True
    r = np.full(B, np.inf)
    np.minimum.at(r, ob.disc_bid, ob.disc_radius)
    has_disc = np.isfinite(r)
    one_sided = np.zeros(B, bool)
    if policy == "bounded":
        sides = pairs.groupby("bid")["geq"].nunique()
        one_sided[sides.index[sides.to_numpy() == 1]] = True
        one_sided &= ~has_disc
        w = seg.width
        up = np.bincount(seg.bid, np.where(w > 0, w, 0.0), minlength=B)
        dn = np.bincount(seg.bid, np.where(w < 0, -w, 0.0), minlength=B)
        mmax = np.zeros(B)
        np.maximum.at(mmax, bid, np.abs(pairs.m.to_numpy()))
        r = np.where(one_sided, np.maximum(up, dn) * np.sqrt(1 + mmax**2), r)
    q_room = np.sqrt(np.maximum(r**2 - p_bid**2, 0.0))
    lo = np.maximum(lo, -q_room)
    hi = np.minimum(hi, q_room)
    unrestricted = is_d & ~has_hp & ~has_disc
    if policy in ("bounded", "zero"):
        lo[unrestricted] = hi[unrestricted] = 0.0
    feasible = lo <= hi + 1e-9
    with np.errstate(invalid="ignore"):
        q = np.where(feasible, np.clip(0.0, lo, hi), 0.5 * (lo + hi))
    q = np.where(np.isfinite(q), q, 0.0)
    return np.where(is_d, q, np.nan), np.where(is_d, feasible, True)


def clear_centralized_as_market(
    inst: Instance, *, relax: bool = False, scheme_name: str = "centralized-as-market", **options
) -> ClearingResult:
    collapsed = collapse_distribution(inst)
    # incentives are computed by the caller on the original instance, not on the collapsed one
    res = clear_centralized(collapsed, relax=relax, scheme_name=scheme_name, incentives=False, **options)
    bids = res.tables["bids"]
    # P_b per bid in the original order book order (bid ids are unique)
    p_bid = pd.Series(bids.p_mw.to_numpy(), index=bids.bid.to_numpy()).reindex(inst.orders.bids.id).to_numpy()
    q, ok = reactive_nearest_zero(inst, p_bid, options.get("reactive_policy", "bounded"))
    b = inst.buses
    bids = bids.copy()
    bids["node"] = b.id[inst.orders.bids.bus]
    bids["q_mvar"] = q
    bids["pq_feasible"] = ok
    res.tables["bids"] = bids
    seg = res.tables["segments"].copy()
    seg["node"] = b.id[inst.orders.bids.bus[inst.orders.segments.bid]]
    res.tables["segments"] = seg
    # D buses carry no market price here: the TSO ignored them; the DSO sees its area at the host T price
    buses = res.tables["buses"]
    t_price = buses.set_index(["node", "period"])["price_p_eur_mwh"]
    ar = inst.areas
    top = ar.top_level()
    d = np.flatnonzero(b.is_dist)
    host_id = b.id[ar.host_bus[top[b.area[d]]]]
    T = inst.n_periods
    d_rows = pd.DataFrame(
        {
            "node": np.repeat(b.id[d], T),
            "period": np.tile(inst.periods, len(d)),
            "kind": "D",
            "area": np.repeat(np.array(ar.name)[b.area[d]], T),
            "price_p_eur_mwh": t_price.reindex(
                pd.MultiIndex.from_arrays([np.repeat(host_id, T), np.tile(inst.periods, len(d))])
            ).to_numpy(),
            "price_q_eur_mvarh": np.nan,
            "slack_p_mw": 0.0,
            "slack_q_mvar": 0.0,
            # the AC check runs with every root at 1 p.u. (docs/model.md §7)
            "vsq_pu": np.where(np.isin(np.repeat(d, T), ar.root_bus), 1.0, np.nan),
        }
    )
    # ... and the interval of that host price (tdmarket.market.pricing); no reactive price is formed here
    host_rows = pd.MultiIndex.from_arrays([np.repeat(host_id, T), np.tile(inst.periods, len(d))])
    by_bus = buses.set_index(["node", "period"])
    for c in ("price_p_lo_eur_mwh", "price_p_hi_eur_mwh", "price_p_solver_eur_mwh", "price_p_degenerate"):
        if c in by_bus:
            d_rows[c] = by_bus[c].reindex(host_rows).to_numpy()
    d_rows["price_q_degenerate"] = False
    d_rows["price_checked"] = True
    res.tables["buses"] = pd.concat([buses, d_rows], ignore_index=True)
    # what the TSO assumed each area exports: its net injection, lossless and unconstrained
    net = inst.p_inj.copy()
    np.add.at(net, (inst.orders.bids.bus, inst.orders.bids.period), np.nan_to_num(p_bid))
    tops = [a for a in range(1, len(ar)) if ar.parent[a] == 0]
    res.tables["interfaces"] = pd.DataFrame(
        {
            "area": np.repeat([ar.name[a] for a in tops], T),
            "period": np.tile(inst.periods, len(tops)),
            "export_mw": np.concatenate([net[(b.area >= 0) & (top[b.area] == a)].sum(axis=0) for a in tops])
            if tops
            else np.zeros(0),
            "interface_price_eur_mwh": np.concatenate(
                [
                    t_price.reindex(
                        pd.MultiIndex.from_arrays([np.full(T, b.id[ar.host_bus[a]]), inst.periods])
                    ).to_numpy()
                    for a in tops
                ]
            )
            if tops
            else np.zeros(0),
        }
    )
    res.summary["pq_infeasible_bids"] = int((~ok).sum())
    res.summary["instance"] = inst.name
    res.instance = inst.name
    return res


def run(inst: Instance, ctx: SchemeContext) -> ClearingResult:
    return clear_centralized_as_market(inst, scheme_name=ctx.scheme, **ctx.solve_options(), **ctx.model_options)


register(
    SchemeSpec(
        id="centralized-as-market",
        runner=run,
        description="the TSO clears every order with the distribution grids ignored; DSOs then set Q",
    )
)
