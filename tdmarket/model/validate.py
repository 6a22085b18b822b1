"""Format-neutral checks of a read instance, in the spirit of PowerModels' `correct_network_data!`.

`validate(inst)` runs after the topology pass (`tdmarket.model.topology.build_topology`) on whatever a reader
returned: positions between tables in range, bus voltage bounds, line parameters and ratings, complete
injections (a reader marks a missing (bus, period) value as NaN), order segments, the order conditions'
references and consistency, and orders within one operator area.  Every problem raises one `InputError`
located through the instance's provenance (file, editor row, column).

Two corrections are applied, each with a warning: half-plane and disc rows on transmission orders are dropped
(the transmission network has no reactive model).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .arrays import lookup
from .instance import Instance
from .provenance import Origin, Provenance


def validate(inst: Instance) -> Instance:
    """Check `inst` (raises `InputError`) and apply the corrections in place; warnings are appended."""
    prov = inst.provenance
    check_positions(inst, prov)
    check_finite(inst)
    check_buses(inst, prov["buses"])
    check_branches(inst, prov["branches"])
    check_injections(inst, prov["injections"])
    check_segments(inst, prov)
    check_conditions(inst, prov)
    check_orders_vs_areas(inst, prov["bids"])
    return inst


def _in_range(values: np.ndarray, size: int, origin: Origin, role: str, what: str) -> None:
    values = np.asarray(values)
    origin.check((values < 0) | (values >= size), role, lambda i: f"{what} position {values[i]} outside 0..{size - 1}")


def check_positions(inst: Instance, prov: Provenance) -> None:
    """Every position that refers to another table (bus, bid, period) exists, and the injections are (n, T)."""
    n, T, o = len(inst.buses), inst.n_periods, inst.orders
    br, bids = inst.branches, o.bids
    _in_range(br.f, n, prov["branches"], "f", "bus")
    _in_range(br.t, n, prov["branches"], "t", "bus")
    for arr in (inst.p_inj, inst.q_inj):
        if arr.shape != (n, T):
            raise prov["injections"].error(f"injections have shape {arr.shape}, expected ({n}, {T})")
    _in_range(bids.bus, n, prov["bids"], "bus", "bus")
    _in_range(bids.period, T, prov["bids"], "period", "period")
    _in_range(o.segments.bid, len(bids), prov["segments"], "bid", "bid")
    for table, arr, role in (
        ("ramp", o.ramp_bid, "bid"),
        ("mindur", o.mindur_bid1, "bid1"),
        ("mindur", o.mindur_bid2, "bid2"),
        ("discs", o.disc_bid, "bid"),
    ):
        _in_range(arr, len(bids), prov[table], role, "bid")


def check_finite(inst: Instance) -> None:
    """Every number is finite, except the bounds where infinity means "none" (Vsqmax, ratings).  A reader
    already rejects non-finite cells with their row; this covers instances built in memory."""
    br, bu, seg, o = inst.branches, inst.buses, inst.orders.segments, inst.orders
    arrays = {
        "buses": (bu.vsq_min, bu.g_shunt, bu.b_shunt, np.where(np.isposinf(bu.vsq_max), 0.0, bu.vsq_max)),
        "branches": (br.r, br.x, br.b, br.tap, br.shift_deg, np.where(np.isposinf(br.rating), 0.0, br.rating)),
        "segments": (seg.lo, seg.hi, seg.price, seg.xlb),
        "ramp": (o.ramp_delta,),
        "half_planes": (o.hp_slope, o.hp_offset),
        "discs": (o.disc_radius,),
    }
    for table, columns in arrays.items():
        for values in columns:
            bad = ~np.isfinite(np.asarray(values, dtype=float))
            if bad.any():
                raise inst.provenance[table].error("value is not a finite number", index=int(np.flatnonzero(bad)[0]))
    injections = np.isinf(inst.p_inj) | np.isinf(inst.q_inj)  # NaN = missing, reported by check_injections
    if injections.any():
        b, t = np.argwhere(injections)[0]
        raise InputError(
            f"injection of node {int(inst.buses.id[b])} in period {int(inst.periods[t])} is not finite",
            file=inst.provenance["injections"].file(),
        )


def check_buses(inst: Instance, origin: Origin) -> None:
    vmin, vmax = inst.buses.vsq_min, inst.buses.vsq_max
    origin.check((vmin < 0) | (vmax < 0), "vsq_min", "voltage bounds must be non-negative")
    origin.check(vmin > vmax, "vsq_min", lambda i: f"Vsqmin {vmin[i]} > Vsqmax {vmax[i]}")


def check_branches(inst: Instance, origin: Origin) -> None:
    br, is_dist = inst.branches, inst.buses.is_dist
    r, x, tap, rating = br.r, br.x, br.tap, br.rating
    origin.check(r < 0, "r", lambda i: f"negative resistance {r[i]}")
    origin.check(tap < 0, "tap", lambda i: f"negative tap ratio {tap[i]}")
    dd = is_dist[br.f] & is_dist[br.t]  # by bus class: a sub-area boundary is a distribution line too
    origin.check((x < 0) & dd, "x", lambda i: f"negative reactance {x[i]} on a distribution line")
    origin.check(
        rating < 0,
        "rating",
        lambda i: (
            f"negative rating {rating[i]} MVA (use 0 or >= 90000 for "
            "'unrated', or the option nonpositive_rating_unlimited)"
        ),
    )
    pq = br.pq_bound
    if pq is not None:
        origin.check((pq[:, 0] > pq[:, 1]) | (pq[:, 2] > pq[:, 3]), "pq_bound", "Pmin > Pmax or Qmin > Qmax")


def check_injections(inst: Instance, origin: Origin) -> None:
    """Every (bus, period) has a fixed injection: a reader marks a missing one as NaN (no silent zero)."""
    missing = np.isnan(inst.p_inj) | np.isnan(inst.q_inj)
    if missing.any():
        b, t = np.argwhere(missing)[0]
        raise InputError(
            f"no injection row for node {inst.buses.id[b]} in period {inst.periods[t]} "
            f"({int(missing.sum())} (node, period) pairs missing; give explicit 0 rows)",
            file=origin.file(),
            column=origin.column("node"),
        )


def check_segments(inst: Instance, prov: Provenance) -> None:
    """Segments are one-signed with 0 <= Xlb <= 1; NoNewAct needs AlphaOmegaSet."""
    s, bids = inst.orders.segments, inst.orders.bids
    lo, hi, xlb = s.lo, s.hi, s.xlb
    origin = prov["segments"]
    ok_sign = ((lo >= 0) & (hi >= lo)) | ((hi <= lo) & (lo <= 0))
    origin.check(
        ~ok_sign,
        "hi",
        lambda i: f"segment {lo[i]}..{hi[i]} MW crosses zero or is reversed (need 0 <= LoQ <= HiQ or HiQ <= LoQ <= 0)",
    )
    origin.check((xlb < 0) | (xlb > 1), "xlb", lambda i: f"Xlb must be in [0, 1], got {xlb[i]}")
    flagged_by_file = prov["flag:NoNewAct"]  # the flag came from NoNewAct.csv: blame that file's row
    origin, role = (flagged_by_file, "flag") if len(flagged_by_file) else (prov["bids"], "no_new_act")
    origin.check(
        bids.no_new_act & ~bids.alpha_omega,
        role,
        lambda i: f"QBid {int(bids.id[i])} has NoNewAct without AlphaOmegaSet",
    )
    if (xlb > 0).any() and ((xlb > 0) & (xlb < 1)).any():
        inst.warnings.append(
            f"{((xlb > 0) & (xlb < 1)).sum()} segments have a minimum acceptance ratio strictly between 0 and 1"
        )


def _known_qtbid(qtbid: np.ndarray, known: np.ndarray, origin: Origin) -> None:
    _, found = lookup(known, qtbid)
    origin.check(~found, "qtbid", lambda i: f"unknown QtBid {qtbid[i]} (no order has it)")


def check_conditions(inst: Instance, prov: Provenance) -> None:
    """References and consistency of the exclusive groups, ramps, minimum durations, half-planes and discs."""
    o, bids = inst.orders, inst.orders.bids
    known_qt = np.unique(bids.qtbid)
    _known_qtbid(o.exclusive_qtbid, known_qt, prov["exclusive"])
    wrong = (o.ramp_is_min & (o.ramp_delta > 0)) | (~o.ramp_is_min & (o.ramp_delta < 0))
    if wrong.any():
        inst.warnings.append(
            f"{prov['ramp'].file()}: {int(wrong.sum())} ramp rows have a delta of the wrong sign, which forces activation"
        )
    b1, b2, md = o.mindur_bid1, o.mindur_bid2, prov["mindur"]
    md.check(bids.period[b2] < bids.period[b1], "period2", "ForTime is before Tau")
    md.check(
        ~bids.alpha_omega[b1],
        "bid1",
        lambda i: f"QBid {bids.id[b1[i]]} has a minimum-duration pair but no AlphaOmegaSet flag",
    )
    _known_qtbid(o.hp_qtbid, known_qt, prov["half_planes"])
    prov["discs"].check(o.disc_radius <= 0, "radius", lambda i: f"disc radius must be positive, got {o.disc_radius[i]}")
    _drop_reactive_on_transmission(inst, prov)


def _drop_reactive_on_transmission(inst: Instance, prov: Provenance) -> None:
    """Correction: half-plane and disc rows on transmission orders are dropped, with a warning per file."""
    o, bids, is_dist = inst.orders, inst.orders.bids, inst.buses.is_dist
    order = np.argsort(bids.qtbid, kind="stable")
    qt_sorted, first = np.unique(bids.qtbid[order], return_index=True)
    pos, _ = lookup(qt_sorted, o.hp_qtbid)
    hp_on_d = is_dist[bids.bus[order[first[pos]]]] if len(o.hp_qtbid) else np.zeros(0, bool)
    disc_on_d = is_dist[bids.bus[o.disc_bid]]
    for table, on_d, fields in (
        ("half_planes", hp_on_d, ("hp_qtbid", "hp_slope", "hp_offset", "hp_geq")),
        ("discs", disc_on_d, ("disc_bid", "disc_radius", "disc_group")),
    ):
        if on_d.all():
            continue
        inst.warnings.append(
            f"{prov[table].file()}: {int((~on_d).sum())} rows on transmission orders ignored (T has no reactive model)"
        )
        keep = np.flatnonzero(on_d)
        for name in fields:
            setattr(o, name, getattr(o, name)[keep])
        prov[table] = prov[table].take(keep)


def check_orders_vs_areas(inst: Instance, origin: Origin) -> None:
    """Every QtBid lies in one operator area (its conditions are cleared by one operator); the error points at
    the first bid (in file order) whose area differs from the area of its QtBid's first bid."""
    b, names = inst.orders.bids, inst.areas.name
    if len(b) == 0:
        return
    area = inst.buses.area[b.bus]
    first_pos = origin.first_of_groups(b.qtbid)
    elsewhere = area != area[first_pos]
    origin.check(
        elsewhere,
        "qtbid",
        lambda i: (
            f"QtBid {int(b.qtbid[i])} has bids in more than one operator area "
            f"({names[int(area[first_pos[i]])]} and {names[int(area[i])]})"
        ),
    )
