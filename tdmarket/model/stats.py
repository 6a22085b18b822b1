"""Instance statistics (docs/model.md §10) for `tdmarket info`.

`instance_stats(inst)` returns a JSON-serialisable dict of plain Python values, grouped in sections:

* ``periods``     – count and the file's period numbers;
* ``network``     – node, edge and parameter counts (T–T ratings, couplings, parallels, D–D impedance cases);
* ``areas``       – DSO areas, their sizes, voltage bounds, root reactive injection, net positions, coupling;
* ``injections``  – system imbalance per period;
* ``orders``      – segments, QBids ("bids") and QtBids;
* ``conditions``  – exclusive groups, start/stop, minimum duration, ramps, half-planes, discs, PQ classes.

`format_stats(stats)` (in `stats_format`, importable from here) renders the same figures as an aligned text block.

Definitions where §10 is terse:

* *parallel pairs*: T–T edges that repeat the unordered endpoint pair of an earlier edge (a node pair with k
  edges contributes k−1); ``tt_parallel_groups`` counts the node pairs with more than one edge;
* *ramp constraints*: ramp rows whose period t has a successor t+1 in the horizon, split by `RCMin`;
* *half-plane D constraints*: (D QBid, slope, offset, side) after expanding every D row to all QBids of its
  QtBid, deduplicated; rows on T orders are dropped by the reader, their count comes from its warning;
* *D bid PQ classes*: ``disc`` if the QBid has a disc row, else ``fixed_pf`` with half-planes on both sides,
  ``one_sided`` with one side, ``no_pq`` with none;
* *bids with acceptance logic*: QBids in an exclusive group, with AlphaOmega/NoNewAct, or in a min-duration pair;
* an area has *period-coupling orders* if it holds an AlphaOmega bid, a min-duration pair, an exclusive group
  whose QBids lie in several periods, or a ramp row.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from .instance import BranchKind, Instance
from .stats_format import format_stats

__all__ = ["format_stats", "instance_stats"]


# ---------------------------------------------------------------------------------------------- helpers
def _i(x) -> int:
    return int(x)


def _f(x) -> float | None:
    """Plain float; infinities become None (JSON has no inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _range(values: np.ndarray, ndigits: int | None = None) -> list[float] | None:
    if values.size == 0:
        return None
    lo, hi = float(np.min(values)), float(np.max(values))
    if ndigits is not None:
        lo, hi = round(lo, ndigits), round(hi, ndigits)
    return [lo, hi]


def _warning_count(warnings: list[str], pattern: str) -> int | None:
    """Count the reader reported in a warning matching `pattern` (one group), None if no such warning."""
    rx = re.compile(pattern)
    for w in warnings:
        m = rx.search(w)
        if m:
            return int(m.group(1))
    return None


def _histogram_text(sizes: dict[int, int]) -> str:
    """{size: count} -> '472×2, 31×3' (most frequent first, then by size)."""
    items = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{count}×{size}" for size, count in items)


# ---------------------------------------------------------------------------------------------- sections
def _network(inst: Instance) -> dict:
    bu, br = inst.buses, inst.branches
    own = ~bu.is_boundary
    tt = br.kind == BranchKind.TRANSMISSION
    dd = br.kind == BranchKind.DISTRIBUTION
    iface = br.kind == BranchKind.INTERFACE
    rated = np.isfinite(br.rating)
    x0 = br.x == 0
    r0 = br.r == 0

    a = np.minimum(br.f[tt], br.t[tt])
    b = np.maximum(br.f[tt], br.t[tt])
    per_pair = pd.DataFrame({"a": a, "b": b}).groupby(["a", "b"]).size().to_numpy()

    # T–D interfaces (areas whose parent is the TSO), in area order
    ar = inst.areas
    td = np.flatnonzero(ar.parent == 0)
    td_edges = ar.interface[td]
    d_to_t = int(ar.root_is_from[td].sum())
    t_to_d = len(td) - d_to_t
    if len(td) == 0:
        orientation = "none"
    elif t_to_d == 0:
        orientation = "D→T"
    elif d_to_t == 0:
        orientation = "T→D"
    else:
        orientation = f"mixed ({d_to_t} D→T, {t_to_d} T→D)"
    iface_ratings = np.unique(np.round(br.rating[td_edges], 4))
    b_dd = np.abs(br.b[dd])

    return {
        "t_nodes": _i((own & ~bu.is_dist).sum()),
        "reference_nodes": [int(v) for v in bu.id[own & bu.is_ref]],
        "d_nodes": _i((own & bu.is_dist).sum()),
        "boundary_nodes": _i(bu.is_boundary.sum()),
        "edges": _i(len(br)),
        "edges_tt": _i(tt.sum()),
        "edges_dd": _i(dd.sum()),
        "edges_interface": _i(iface.sum()),
        "interface_orientation": orientation,
        "interface_ratings": [_f(v) for v in iface_ratings],
        "tt_rated": _i((tt & rated).sum()),
        "tt_unrated": _i((tt & ~rated).sum()),
        "tt_x0": _i((tt & x0).sum()),
        "tt_x0_rated": _i((tt & x0 & rated).sum()),
        "tt_parallel_pairs": _i((per_pair - 1).sum()),
        "tt_parallel_groups": _i((per_pair > 1).sum()),
        "dd_r0_x0": _i((dd & r0 & x0).sum()),
        "dd_x0_rpos": _i((dd & x0 & (br.r > 0)).sum()),
        "dd_b_nonzero": _i((dd & (br.b != 0)).sum()),
        "dd_b_abs_max": _f(b_dd.max()) if b_dd.size else 0.0,
        "dd_tap_or_shift": _i((dd & ((br.tap != 1) | (br.shift_deg != 0))).sum()),
    }


def _order_frames(inst: Instance) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bid and segment frames with bus class, area and period."""
    bu, o = inst.buses, inst.orders
    bids = pd.DataFrame(
        {
            "bid": np.arange(len(o.bids)),
            "qtbid": o.bids.qtbid,
            "period": o.bids.period,
            "dist": bu.is_dist[o.bids.bus],
            "area": bu.area[o.bids.bus],
            "ao": o.bids.alpha_omega,
            "nna": o.bids.no_new_act,
        }
    )
    s = o.segments
    segs = pd.DataFrame({"bid": s.bid, "width": s.width, "lo": s.lo, "price": s.price, "xlb": s.xlb})
    segs["dist"] = bids["dist"].to_numpy()[s.bid] if len(s) else np.zeros(0, bool)
    segs["area"] = bids["area"].to_numpy()[s.bid] if len(s) else np.zeros(0, np.int64)
    return bids, segs


def _orders(inst: Instance, bids: pd.DataFrame, segs: pd.DataFrame) -> dict:
    nb = len(bids)
    w = segs["width"].to_numpy()
    dist = segs["dist"].to_numpy()
    aon = segs["xlb"].to_numpy() == 1
    seg_per_bid = np.bincount(segs["bid"].to_numpy(), minlength=nb)
    has_up = np.bincount(segs["bid"].to_numpy(), weights=w > 0, minlength=nb) > 0
    has_down = np.bincount(segs["bid"].to_numpy(), weights=w < 0, minlength=nb) > 0
    periods_per_qt = bids.groupby("qtbid")["period"].nunique()
    price = segs["price"].to_numpy()
    return {
        "segments": _i(len(segs)),
        "segments_t": _i((~dist).sum()),
        "segments_d": _i(dist.sum()),
        "segments_up": _i((w > 0).sum()),
        "segments_down": _i((w < 0).sum()),
        "segments_zero_width": _i((w == 0).sum()),
        "segments_stacked": _i((segs["lo"].to_numpy() != 0).sum()),
        "aon": _i(aon.sum()),
        "aon_nonzero_width": _i((aon & (w != 0)).sum()),
        "aon_nonzero_width_t": _i((aon & (w != 0) & ~dist).sum()),
        "aon_nonzero_width_d": _i((aon & (w != 0) & dist).sum()),
        "price_range": _range(price),
        "bids": _i(nb),
        "bids_t": _i((~bids["dist"]).sum()),
        "bids_d": _i(bids["dist"].sum()),
        "qtbids": _i(len(periods_per_qt)),
        "qtbids_multi_period": _i((periods_per_qt > 1).sum()),
        "max_segments_per_bid": _i(seg_per_bid.max()) if nb else 0,
        "bids_up_and_down": _i((has_up & has_down).sum()),
        "bids_with_acceptance_logic": _i(_logic_bids(inst, bids).sum()),
    }


def _logic_bids(inst: Instance, bids: pd.DataFrame) -> np.ndarray:
    o = inst.orders
    logic = np.isin(o.bids.qtbid, o.exclusive_qtbid) | o.bids.alpha_omega | o.bids.no_new_act
    logic[o.mindur_bid1] = True
    logic[o.mindur_bid2] = True
    return logic


def _conditions(inst: Instance, bids: pd.DataFrame) -> dict:
    o = inst.orders
    b = o.bids
    dist = bids["dist"].to_numpy()
    T = inst.n_periods

    # exclusive groups
    ex = pd.DataFrame({"group": o.exclusive_group, "qtbid": o.exclusive_qtbid})
    sizes = ex.groupby("group").size()
    size_hist = {int(k): int(v) for k, v in sizes.value_counts().sort_index().items()}

    # start/stop
    ao = b.alpha_omega
    n_bids = len(b)

    # ramps
    ramp_period = b.period[o.ramp_bid]
    ramp_active = ramp_period < T - 1
    ramp_dist = dist[o.ramp_bid] if len(o.ramp_bid) else np.zeros(0, bool)

    # half-planes: expand each (D) row to every D QBid of its QtBid, deduplicate
    hp = pd.DataFrame({"qtbid": o.hp_qtbid, "slope": o.hp_slope, "offset": o.hp_offset, "geq": o.hp_geq})
    d_bids = bids.loc[bids["dist"], ["bid", "qtbid"]]
    hp_c = hp.merge(d_bids, on="qtbid").drop_duplicates(["bid", "slope", "offset", "geq"])
    hp_geq_n = int(hp_c["geq"].sum())
    hp_leq_n = int(len(hp_c) - hp_geq_n)
    hp_t = _warning_count(inst.warnings, r"HalfPlanes\.csv: (\d+) rows on transmission")
    disc_t = _warning_count(inst.warnings, r"QPDisc\.csv: (\d+) rows on transmission")

    # PQ classes of D bids
    side_geq = np.zeros(n_bids, bool)
    side_leq = np.zeros(n_bids, bool)
    side_geq[hp_c.loc[hp_c["geq"], "bid"].to_numpy()] = True
    side_leq[hp_c.loc[~hp_c["geq"], "bid"].to_numpy()] = True
    disc = np.zeros(n_bids, bool)
    disc[o.disc_bid] = True
    both = side_geq & side_leq
    one = side_geq ^ side_leq
    pq = {
        "no_pq": _i((dist & ~disc & ~side_geq & ~side_leq).sum()),
        "one_sided": _i((dist & ~disc & one).sum()),
        "fixed_pf": _i((dist & ~disc & both).sum()),
        "disc": _i((dist & disc).sum()),
    }

    return {
        "exclusive_groups": _i(len(sizes)),
        "exclusive_rows": _i(len(ex)),
        "exclusive_sizes": {str(k): v for k, v in size_hist.items()},
        "exclusive_sizes_text": _histogram_text(size_hist),
        "start_stop_bids": _i(ao.sum()),
        "start_stop_qtbids": _i(np.unique(b.qtbid[ao]).size),
        "start_stop_bids_t": _i((ao & ~dist).sum()),
        "start_stop_bids_d": _i((ao & dist).sum()),
        "start_stop_share_of_bids_pct": round(100.0 * ao.sum() / n_bids, 1) if n_bids else 0.0,
        "no_new_act_bids": _i(b.no_new_act.sum()),
        "min_duration_pairs": _i(len(o.mindur_bid1)),
        "ramp_rows": _i(len(o.ramp_bid)),
        "ramp_ids": _i(np.unique(o.ramp_id).size),
        "ramp_constraints_max": _i((ramp_active & ~o.ramp_is_min).sum()),
        "ramp_constraints_min": _i((ramp_active & o.ramp_is_min).sum()),
        "ramp_rows_t": _i((~ramp_dist).sum()),
        "ramp_rows_d": _i(ramp_dist.sum()),
        "half_plane_rows_d": _i(len(o.hp_qtbid)),
        "half_plane_rows_t_dropped": hp_t if hp_t is not None else 0,
        "half_plane_constraints_geq": hp_geq_n,
        "half_plane_constraints_leq": hp_leq_n,
        "disc_rows_d": _i(len(o.disc_bid)),
        "disc_rows_t_dropped": disc_t if disc_t is not None else 0,
        "d_bids_pq": pq,
    }


def _areas(inst: Instance, bids: pd.DataFrame, segs: pd.DataFrame) -> dict:
    bu, ar, o = inst.buses, inst.areas, inst.orders
    n_areas = inst.n_areas
    dso = np.flatnonzero(ar.parent >= 0)
    own = ~bu.is_boundary
    d_own = own & bu.is_dist

    nodes_per_area = np.bincount(bu.area[own], minlength=n_areas)[dso]

    # voltage bounds of D buses (distinct pairs, 6 decimals; unbounded max -> None)
    vb = np.unique(np.round(np.column_stack([bu.vsq_min[d_own], bu.vsq_max[d_own]]), 6), axis=0)
    vbounds = [[_f(lo), _f(hi)] for lo, hi in vb]

    roots = ar.root_bus[dso]
    roots = roots[roots >= 0]
    root_q = inst.q_inj[roots]

    # area net position sum_{i in d} P_i,t over own buses, per DSO area and period
    net = np.zeros((n_areas, inst.n_periods))
    np.add.at(net, bu.area[own], inst.p_inj[own])
    net_dso = net[dso]

    # period-coupling orders per area
    coupling = np.zeros(n_areas, bool)
    area_of_bid = bids["area"].to_numpy()
    coupling[area_of_bid[o.bids.alpha_omega]] = True
    coupling[area_of_bid[o.mindur_bid1]] = True
    coupling[area_of_bid[o.ramp_bid]] = True
    if len(o.exclusive_group):
        ex = pd.DataFrame({"group": o.exclusive_group, "qtbid": o.exclusive_qtbid}).merge(
            bids[["qtbid", "period", "area"]], on="qtbid"
        )
        spans = ex.groupby("group").agg(periods=("period", "nunique"), area=("area", "first"))
        coupling[spans.loc[spans["periods"] > 1, "area"].to_numpy()] = True
    seg_per_area = np.bincount(segs["area"].to_numpy(), minlength=n_areas)[dso]

    return {
        "dso_areas": _i(len(dso)),
        "sub_areas": _i((ar.parent > 0).sum()),
        "nodes_per_area_min": _i(nodes_per_area.min()) if len(dso) else 0,
        "nodes_per_area_median": float(np.median(nodes_per_area)) if len(dso) else 0.0,
        "nodes_per_area_max": _i(nodes_per_area.max()) if len(dso) else 0,
        "voltage_bounds": vbounds,
        "root_q_range": _range(root_q),
        "net_position_range": _range(net_dso),
        "net_position_range_rounded": _range(net_dso, 1),
        "areas_with_period_coupling": _i(coupling[dso].sum()),
        "max_segments_in_area": _i(seg_per_area.max()) if len(dso) else 0,
    }


def instance_stats(inst: Instance) -> dict:
    """The docs/model.md §10 statistics of an instance, as plain JSON-serialisable Python values."""
    bids, segs = _order_frames(inst)
    return {
        "name": inst.name,
        "source": inst.source,
        "periods": {"count": inst.n_periods, "numbers": [int(t) for t in inst.periods]},
        "network": _network(inst),
        "areas": _areas(inst, bids, segs),
        "injections": {
            "system_imbalance": [round(float(v), 4) for v in inst.system_imbalance()],
        },
        "orders": _orders(inst, bids, segs),
        "conditions": _conditions(inst, bids),
        "warnings": list(inst.warnings),
    }
