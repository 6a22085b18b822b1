"""Checks a market operator runs before publishing (docs/model.md §8, "Price verification", "Uplift by cause",
"Interface payments"): every order against its node's price, the uplift explained by cause and operator, and the
operators' interface payments.

**Price verification of the orders.**  A segment s of width w_s (MW, > 0 up, < 0 down) and price π_s (€/MWh)
earns, per MW activated, the value margin

    v_s = sign(w_s)·λ^P[node, t] − π_s          (€/MWh; the published P price of its node)

It is *in the money* if v_s > tol, *out of the money* if v_s < −tol, *marginal* otherwise.  An accepted segment
(ξ > 0) out of the money is **paradoxically accepted**; a segment not fully accepted (ξ < 1) in the money is
**paradoxically rejected**.  A paradox is explained by the order's own rules (all-or-nothing, start/stop,
exclusive groups, ramps, minimum durations) when its participant has no lost opportunity cost; otherwise the
participant's LOC (`opportunity.py`) is what it would take to make it whole.  Reactive receipts are not part of
v_s (they are in the LOC).

**Uplift by cause.**  Every participant's LOC is booked to one cause, by the first rule that applies:

1. `curve_error` — a D participant of an area whose DSO priced its dispatch at a marginal cost ρ different from
   the interface price π (`price_mismatch_eur_mwh` > tol): the curve or cut the TSO cleared did not match;
2. `held_exchange` — a scheme without interface settlement (the exchange is held) and a participant with a
   degenerate price in one of its periods: the held exchange made its area a pocket whose price is not set by a
   flexible resource;
3. `price_degeneracy` — any other participant with a degenerate price in one of its periods;
4. `indivisibility` — a participant with order logic (binaries, ramps or minimum durations): its best response
   differs from the cleared point only because the clearing kept its order indivisible;
5. `other` — the rest (a divisible order with unique prices and LOC: prices and dispatch that do not belong
   together, or solver tolerance).

**Interface payments.**  Each operator's net interface payment (received from its parent minus paid to its
children, `settlement.py`) sums to zero over the operators in every period; `interface_payments` reports the
residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.instance import Instance
from .opportunity import LOC_TOL_EUR
from .participants import qtbid_participant
from .settlement_arrays import dense

MARGIN_TOL_EUR_MWH = 1e-2  # € per MWh: value margins within a cent are marginal
ACCEPT_TOL = 1e-4  # activation fraction: accepted above it, fully accepted within it of 1 (interior-point noise ~1e-6)
MISMATCH_TOL_EUR_MWH = 1e-2  # |ρ − π| above this marks a curve error
CAUSES = ("indivisibility", "price_degeneracy", "held_exchange", "curve_error", "other")
STATUS = ("consistent", "paradoxically accepted", "paradoxically rejected")


@dataclass(frozen=True)
class OrderVerification:
    """`orders`: one row per non-zero segment with its margin and status; `summary`: the counts."""

    orders: pd.DataFrame
    summary: dict


def _order_logic(inst: Instance) -> np.ndarray:
    """Per segment (instance order): True if its QtBid carries logic beyond a divisible segment: a minimum
    acceptance ratio, start/stop or no-new-activation, an exclusive group, a ramp or a minimum-duration pair."""
    ob = inst.orders
    seg, bids = ob.segments, ob.bids
    bid_logic = bids.alpha_omega | bids.no_new_act
    bid_logic[ob.ramp_bid] = True
    bid_logic[ob.mindur_bid1] = True
    bid_logic[ob.mindur_bid2] = True
    qt_logic = np.isin(bids.qtbid, ob.exclusive_qtbid)
    qt_ids = np.unique(bids.qtbid[bid_logic])
    qt_logic |= np.isin(bids.qtbid, qt_ids)
    seg_logic = seg.xlb > 0
    qt_seg = np.unique(bids.qtbid[seg.bid[seg_logic]])
    qt_logic |= np.isin(bids.qtbid, qt_seg)
    return qt_logic[seg.bid]


def verify_orders(inst: Instance, tables: dict[str, pd.DataFrame], loc: pd.DataFrame | None) -> OrderVerification:
    """Price verification of every segment of the `segments` table at the published prices of `buses`."""
    seg = tables["segments"]
    lam = dense(inst, tables["buses"], "price_p_eur_mwh")
    if not len(seg):
        empty = pd.DataFrame(columns=["segment", "bid", "qtbid", "participant", "node", "period", "status"])
        return OrderVerification(empty, _verification_summary(empty))
    seg = seg[seg.width_mw.to_numpy(float) != 0.0]
    i = inst.bus_index(seg.node.to_numpy())
    t = np.searchsorted(inst.periods, seg.period.to_numpy())
    price = lam[i, t]
    w = seg.width_mw.to_numpy(float)
    margin = np.sign(w) * price - seg.price_eur_mwh.to_numpy(float)
    xi = seg.accepted_fraction.to_numpy(float)
    accepted = xi > ACCEPT_TOL
    full = xi >= 1.0 - ACCEPT_TOL
    status = np.full(len(seg), STATUS[0], dtype=object)
    status[accepted & (margin < -MARGIN_TOL_EUR_MWH)] = STATUS[1]
    status[~full & (margin > MARGIN_TOL_EUR_MWH)] = STATUS[2]
    # instance position of each row (segment ids are unique within a QBid)
    ob = inst.orders
    key_inst = pd.MultiIndex.from_arrays([ob.bids.id[ob.segments.bid], ob.segments.id])
    pos = key_inst.get_indexer(pd.MultiIndex.from_arrays([seg.bid.to_numpy(), seg.segment.to_numpy()]))
    logic = np.where(pos >= 0, _order_logic(inst)[np.maximum(pos, 0)], False)
    part = qtbid_participant(inst, seg.qtbid.to_numpy())
    loc_eur = np.zeros(len(seg))
    if loc is not None and len(loc):
        loc_eur = loc.set_index("participant").loc_eur.reindex(part).fillna(0.0).to_numpy()
    paradox = status != STATUS[0]
    orders = pd.DataFrame(
        {
            "segment": seg.segment.to_numpy(),
            "bid": seg.bid.to_numpy(),
            "qtbid": seg.qtbid.to_numpy(),
            "participant": part,
            "node": seg.node.to_numpy(),
            "period": seg.period.to_numpy(),
            "kind": np.where(inst.buses.is_dist[i], "D", "T"),
            "area": np.asarray(inst.areas.name, dtype=object)[inst.buses.area[i]],
            "width_mw": w,
            "price_eur_mwh": seg.price_eur_mwh.to_numpy(float),
            "node_price_eur_mwh": price,
            "margin_eur_mwh": margin,
            "accepted_fraction": xi,
            "order_logic": logic,
            "status": status,
            "participant_loc_eur": loc_eur,
            "explained_by_order_rules": paradox & (loc_eur <= LOC_TOL_EUR),
        }
    )
    return OrderVerification(orders, _verification_summary(orders))


def _verification_summary(orders: pd.DataFrame) -> dict:
    out: dict[str, int | float] = {"segments": int(len(orders))}
    for s, key in zip(STATUS[1:], ("paradoxically_accepted", "paradoxically_rejected")):
        sel = orders[orders.status == s] if len(orders) else orders
        unexplained = sel[~sel.explained_by_order_rules.astype(bool)] if len(sel) else sel
        out[key] = int(len(sel))
        out[f"{key}_with_loc"] = int(len(unexplained))
        out[f"{key}_divisible"] = int((~sel.order_logic.astype(bool)).sum()) if len(sel) else 0
        loc = unexplained.drop_duplicates("participant").participant_loc_eur.sum() if len(unexplained) else 0.0
        out[f"{key}_loc_eur"] = float(loc)
    return out


def uplift_by_cause(
    inst: Instance,
    tables: dict[str, pd.DataFrame],
    loc: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    held_exchange: bool,
) -> pd.DataFrame:
    """One row per (operator, cause) with uplift_eur and participants (see module docstring for the rules).
    Every cause of CAUSES appears for every operator with a participant (zeros included)."""
    if not len(loc):
        return pd.DataFrame(columns=["operator", "cause", "uplift_eur", "participants"])
    J = int(loc.participant.max()) + 1
    buses, seg = tables["buses"], tables["segments"]
    # participants with a degenerate P price at one of their segments' (node, period)
    degenerate = np.zeros(J, bool)
    if "price_p_degenerate" in buses and len(seg):
        deg = dense(inst, buses.assign(d=buses.price_p_degenerate.astype(float)), "d")
        i = inst.bus_index(seg.node.to_numpy())
        t = np.searchsorted(inst.periods, seg.period.to_numpy())
        hit = np.nan_to_num(deg[i, t]) > 0
        p = qtbid_participant(inst, seg.qtbid.to_numpy())
        degenerate[np.unique(p[hit])] = True
    logic = np.zeros(J, bool)
    if len(orders):
        logic[np.unique(orders.participant[orders.order_logic.astype(bool)])] = True
    # D areas whose DSO priced at ρ ≠ π
    mismatch_areas: set = set()
    ifc = tables.get("interfaces")
    if ifc is not None and len(ifc) and "price_mismatch_eur_mwh" in ifc:
        bad = np.nan_to_num(ifc.price_mismatch_eur_mwh.to_numpy(float)) > MISMATCH_TOL_EUR_MWH
        mismatch_areas = set(ifc.area[bad])
    pid = loc.participant.to_numpy()
    is_d = (loc.kind == "D").to_numpy()
    curve = is_d & loc.area.isin(mismatch_areas).to_numpy()
    cause = np.full(len(loc), "other", dtype=object)
    rules = [
        (curve, "curve_error"),
        (degenerate[pid] & held_exchange, "held_exchange"),
        (degenerate[pid], "price_degeneracy"),
        (logic[pid], "indivisibility"),
    ]
    for mask, name in reversed(rules):  # the first rule that applies wins
        cause = np.where(mask, name, cause)
    frame = pd.DataFrame(
        {"operator": loc.area.astype(str).to_numpy(), "cause": cause, "uplift_eur": loc.loc_eur.to_numpy(float)}
    )
    frame["participants"] = (frame.uplift_eur > LOC_TOL_EUR).astype(int)
    grid = pd.MultiIndex.from_product([sorted(frame.operator.unique()), CAUSES], names=["operator", "cause"])
    out = frame.groupby(["operator", "cause"]).sum().reindex(grid, fill_value=0).reset_index()
    out["participants"] = out.participants.astype(int)
    return out


def cause_totals(by_cause: pd.DataFrame) -> dict[str, float]:
    """Total uplift per cause (€), every cause present."""
    tot = by_cause.groupby("cause").uplift_eur.sum() if len(by_cause) else pd.Series(dtype=float)
    return {c: float(tot.get(c, 0.0)) for c in CAUSES}


def interface_payments(operators: pd.DataFrame) -> dict:
    """Per operator: total interface payment received (€) and merchandising surplus (€); the largest residual
    of Σ_operators interface payment over the periods (€, zero when the TSO↔DSO payments balance)."""
    if not len(operators):
        return {"by_operator": {}, "balance_residual_eur": 0.0}
    per = operators.groupby("period").interface_payment_eur.sum()
    tot = operators.groupby("operator")[["interface_payment_eur", "merchandising_surplus_eur"]].sum()
    return {
        "by_operator": {
            str(k): {
                "interface_payment_eur": float(r.interface_payment_eur),
                "surplus_eur": float(r.merchandising_surplus_eur),
            }
            for k, r in tot.iterrows()
        },
        "balance_residual_eur": float(per.abs().max()),
    }
