"""Pay-as-clear settlement of a cleared dispatch (docs/model.md §8), per period, from the result tables.

Signs (docs/model.md §1): injections are positive, `payment_eur` > 0 means the actor **receives** money.  Δ is
`opts.period_hours`.  Prices are the published λ^P, λ^Q of the `buses` table and the interface price π_d of the
`interfaces` table (the T LMP at the host bus for a T–D interface).

Actors and their `payment_eur`:
* **BSP** (one actor per participant, kind `bsp_t` or `bsp_d`): Σ_b (λ^P P_b + λ^Q Q_b)Δ, λ^Q = 0 at T;
  `cost_eur` = Σ_s π_s|p_s|Δ and `profit_eur` = payment − cost.
* **BRP** at node i: (λ^P P_i + λ^Q Q_i)Δ (Q at D buses only; root Q zeroed under `zero_root_q`).
  Long positions are paid, short positions pay.
* **slack** (one actor per operator): Σ_{i∈op} (λ^P σ^P_i + λ^Q σ^Q_i)Δ, booked to the node's operator.  The
  penalty κ|σ|Δ that the operator also bears is a cost, not a payment: see `slack_penalty_eur`.
* **TSO / DSO**: the merchandising surplus MS_op (below).

Merchandising surplus of operator op with parent interface (π_op, X_op) and child areas c:

    MS_op = I_op − Σ_{i∈op} (λ^P inj^P_i + λ^Q inj^Q_i)Δ,
    I_op  = (π_op X_op + π^Q_op Y_op)Δ − Σ_c (π_c X_c + π^Q_c Y_c)Δ

with inj = Σ order P + fixed P + slack.  For the TSO this is MS^T = −Σ_{i∈T} λ_i inj_i Δ − Σ_d π_d x_d Δ, for a
DSO d under the TSO MS^d = π_d x_d Δ − Σ_{i∈d}(λ^P inj^P + λ^Q inj^Q)Δ.  I_op is the operator's net
**interface payment** (`interface_payment_eur`: + = received).  T–D interfaces carry no reactive payment
(π^Q = 0; T has no reactive model), so the reactive import y_d at the root is a cost of the DSO.  A sub-DSO
hanging from a D–D line (docs/model.md §6.4) exports X_c = the active power leaving its root into that line (the
line belongs to the parent) and is paid the root prices (λ^P, λ^Q) of the parent's model.

**Zero sum.**  Written with the injections, Σ actors + Σ_op MS_op is 0 by construction.  The check therefore
recomputes every operator's surplus from the **network side** — the nodal outflows implied by the `lines`
table (terminal flows), the shunts (G w, B w from `vsq_pu`) and the interface exchanges:

    MS^net_op = I_op − Σ_{i∈op} (λ^P out^P_i + λ^Q out^Q_i)Δ
    (for the TSO: Σ_e f_e (λ_to − λ_fr)Δ − Σ_d π_d x_d Δ)

and the actor rows of the operators carry MS^net.  The zero-sum residual per period, Σ BSPs + BRPs + slack +
MS^T + Σ MS^d, then equals Σ_i λ_i (inj_i − out_i)Δ: it is non-zero exactly when the tables are inconsistent
(a violated balance, a sign error, prices and quantities that do not belong together).  The operators table shows
both surpluses.

**Interface settlement.**  The caller says whether the scheme settles at the interface (`settles_at_interface`).
Without interface settlement (docs/model.md §7: the exchange is scheduled, not priced) every π is taken as 0, the
scheduled exchange is delivered free of charge, and each operator's surplus is settled on its own prices only.
With it, the interface is settled at π_d.

**Revenue adequacy.**  An operator is revenue adequate if MS_op ≥ −tol in every period (docs/model.md §8; the TSO
always is with exact duals, a DSO may be slightly negative through line charging).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..formulations.options import ModelOptions
from ..model.instance import Instance
from .participants import participant_frame, qtbid_participant
from .settlement_arrays import (
    BusValues,
    branch_pos,
    bus_values,
    by_operator,
    interface_exchanges,
    operator_grid,
    period_pos,
)

ZERO_SUM_RTOL = 1e-6  # residual tolerance relative to the scale Σ|payments| of the period
ACTOR_KINDS = ("bsp_t", "bsp_d", "brp", "slack", "tso", "dso")


def _bsp_rows(inst: Instance, tables: dict, bv: BusValues, dt: float):
    """BSP actor rows (one per participant and period) and the order injections per bus and period."""
    n, T = len(inst.buses), inst.n_periods
    bids, seg = tables["bids"], tables["segments"]
    bi = inst.bus_index(bids.node.to_numpy())
    bt = period_pos(inst, bids.period)
    p_b = bids.p_mw.to_numpy(float)
    q_b = np.nan_to_num(bids.q_mvar.to_numpy(float))
    receipts = (bv.lam_p[bi, bt] * p_b + bv.lam_q[bi, bt] * q_b) * dt
    cost = seg.groupby("bid")["cost_eur"].sum().reindex(bids.bid.to_numpy()).fillna(0.0).to_numpy()
    part = qtbid_participant(inst, bids.qtbid.to_numpy())
    pf = participant_frame(inst)
    bsp = (
        pd.DataFrame({"participant": part, "period": bids.period.to_numpy(), "payment_eur": receipts, "cost_eur": cost})
        .groupby(["participant", "period"], as_index=False)
        .sum()
    )
    info = pf.set_index("participant").loc[bsp.participant]
    rows = pd.DataFrame(
        {
            "actor": "bsp:" + info.qtbids.to_numpy().astype(object),
            "kind": np.where(info.kind.to_numpy() == "D", "bsp_d", "bsp_t"),
            "area": info.area.to_numpy(),
            "period": bsp.period.to_numpy(),
            "payment_eur": bsp.payment_eur.to_numpy(),
            "cost_eur": bsp.cost_eur.to_numpy(),
        }
    )
    rows["profit_eur"] = rows.payment_eur - rows.cost_eur
    ord_p = np.zeros((n, T))
    ord_q = np.zeros((n, T))
    np.add.at(ord_p, (bi, bt), p_b)
    np.add.at(ord_q, (bi, bt), q_b)
    return rows, ord_p, ord_q


def _brp_rows(inst: Instance, bv: BusValues, opts: ModelOptions):
    """BRP actor rows and their fixed injections P, Q (n_bus, T) at the buses the clearing balanced (boundary
    buses carry no injections)."""
    b, ar = inst.buses, inst.areas
    P = np.where(bv.priced, inst.p_inj, 0.0)
    q_inj = inst.q_inj.copy()
    if opts.zero_root_q:
        q_inj[ar.root_bus[ar.root_bus >= 0]] = 0.0
    Q = np.where(bv.priced & b.is_dist[:, None], q_inj, 0.0)
    brp_pay = (bv.lam_p * P + bv.lam_q * Q) * opts.period_hours
    ii, tt = np.nonzero((P != 0) | (Q != 0))
    rows = pd.DataFrame(
        {
            "actor": "brp:" + b.id[ii].astype(str).astype(object),
            "kind": "brp",
            "area": np.asarray(ar.name, dtype=object)[b.area[ii]],
            "period": inst.periods[tt],
            "payment_eur": brp_pay[ii, tt],
            "cost_eur": 0.0,
            "profit_eur": brp_pay[ii, tt],
        }
    )
    return rows, P, Q


def _slack_rows(inst: Instance, bv: BusValues, opts: ModelOptions):
    """Slack actor rows (one per operator and period), the slack settlement and the penalty, both (A, T)."""
    dt = opts.period_hours
    area_names = np.asarray(inst.areas.name, dtype=object)
    slack_pay = by_operator(inst, (bv.lam_p * bv.sig_p + bv.lam_q * bv.sig_q) * dt)
    kappa = opts.slack_penalty * dt
    slack_pen = by_operator(inst, kappa * (np.abs(bv.sig_p) + np.abs(bv.sig_q)))
    a_grid, t_grid = operator_grid(inst)
    rows = pd.DataFrame(
        {
            "actor": "slack:" + area_names[a_grid.ravel()],
            "kind": "slack",
            "area": area_names[a_grid.ravel()],
            "period": inst.periods[t_grid.ravel()],
            "payment_eur": slack_pay.ravel(),
            "cost_eur": 0.0,
            "profit_eur": slack_pay.ravel(),
        }
    )
    return rows, slack_pay, slack_pen


def _interface_payments(inst: Instance, X, Y, piP, piQ, settles_at_interface: bool, dt: float) -> np.ndarray:
    """Net interface payment I_op (A, T) received by every operator: (π X + π^Q Y)Δ from its parent minus what it
    pays its children; all 0 without interface settlement."""
    ar = inst.areas
    pay_c = (piP * X + piQ * Y) * dt if settles_at_interface else np.zeros((inst.n_areas, inst.n_periods))
    iface_pay = pay_c.copy()  # paid by parent(c) to c
    child = np.flatnonzero(ar.parent >= 0)
    np.add.at(iface_pay, ar.parent[child], -pay_c[child])
    return iface_pay


def _network_outflows(inst: Instance, tables: dict, bv: BusValues, opts: ModelOptions, X, Y, td):
    """Nodal outflows (n_bus, T) implied by the `lines` table, the shunts and the T–D interface exchanges."""
    b, ar = inst.buses, inst.areas
    n, T = len(b), inst.n_periods
    is_d = b.is_dist[:, None]
    out_p = np.zeros((n, T))
    out_q = np.zeros((n, T))
    lines = tables.get("lines")
    if lines is not None and len(lines):
        br = inst.branches
        e = branch_pos(inst, lines.edge.to_numpy())
        lt = period_pos(inst, lines.period)
        np.add.at(out_p, (br.f[e], lt), lines.p_from_mw.to_numpy(float))
        np.add.at(out_p, (br.t[e], lt), lines.p_to_mw.to_numpy(float))
        np.add.at(out_q, (br.f[e], lt), np.nan_to_num(lines.q_from_mvar.to_numpy(float)))
        np.add.at(out_q, (br.t[e], lt), np.nan_to_num(lines.q_to_mvar.to_numpy(float)))
    if opts.pi_model:
        out_p += np.where(is_d, b.g_shunt[:, None] * bv.wv, 0.0)
        out_q -= np.where(is_d, b.b_shunt[:, None] * bv.wv, 0.0)
    tda = np.flatnonzero(td)
    if len(tda):
        np.add.at(out_p, ar.root_bus[tda], X[tda])
        np.add.at(out_q, ar.root_bus[tda], Y[tda])
        np.add.at(out_p, ar.host_bus[tda], -X[tda])
    out_p = np.where(bv.priced, out_p, 0.0)
    out_q = np.where(bv.priced & is_d, out_q, 0.0)
    return out_p, out_q


def _operator_tables(inst: Instance, ms, ms_net, iface_pay, slack_pay, slack_pen, X, Y, piP, priced_iface):
    """Operator actor rows (carrying MS^net) and the `operators` table; `priced_iface` (A,) marks the areas whose
    interface is settled at a price."""
    ar = inst.areas
    area_names = np.asarray(ar.name, dtype=object)
    a_grid, t_grid = operator_grid(inst)
    rows = pd.DataFrame(
        {
            "actor": np.where(a_grid.ravel() == 0, "tso", "dso:" + area_names[a_grid.ravel()]),
            "kind": np.where(ar.parent[a_grid.ravel()] < 0, "tso", "dso"),
            "area": area_names[a_grid.ravel()],
            "period": inst.periods[t_grid.ravel()],
            "payment_eur": ms_net.ravel(),
            "cost_eur": 0.0,
            "profit_eur": ms_net.ravel(),
        }
    )
    operators = pd.DataFrame(
        {
            "operator": area_names[a_grid.ravel()],
            "period": inst.periods[t_grid.ravel()],
            "merchandising_surplus_eur": ms.ravel(),
            "interface_payment_eur": iface_pay.ravel(),
            "merchandising_surplus_network_eur": ms_net.ravel(),
            "slack_settlement_eur": slack_pay.ravel(),
            "slack_penalty_eur": slack_pen.ravel(),
            "export_mw": X.ravel(),
            "export_mvar": Y.ravel(),
            "interface_price_eur_mwh": np.where(priced_iface[:, None], piP, np.nan).ravel(),
        }
    )
    return rows, operators


def _summary(inst: Instance, actors: pd.DataFrame, ms, bsp_rows, slack_pen, scheme: str, settled: bool) -> dict:
    """Zero-sum check, revenue adequacy and totals (see module docstring)."""
    ar, T, periods = inst.areas, inst.n_periods, inst.periods
    tper = period_pos(inst, actors.period)
    residual = np.bincount(tper, actors.payment_eur.to_numpy(), minlength=T)
    scale = np.bincount(tper, actors.payment_eur.abs().to_numpy(), minlength=T)
    tol = ZERO_SUM_RTOL * np.maximum(scale, 1.0)
    adequacy = {}
    for a in range(inst.n_areas):
        adequacy[ar.name[a]] = {
            "merchandising_surplus_eur": float(ms[a].sum()),
            "min_period_eur": float(ms[a].min()) if T else 0.0,
            "revenue_adequate": bool((ms[a] >= -tol).all()),
        }
    totals = actors.groupby("kind")["payment_eur"].sum()
    return {
        "scheme": scheme,
        "interface_settlement": settled,
        "totals_eur": {k: float(totals.get(k, 0.0)) for k in ACTOR_KINDS},
        "bsp_cost_eur": float(bsp_rows.cost_eur.sum()),
        "bsp_profit_eur": float(bsp_rows.profit_eur.sum()),
        "slack_penalty_eur": float(slack_pen.sum()),
        "zero_sum_residual_eur": float(np.abs(residual).max(initial=0.0)),
        "zero_sum_residual_by_period_eur": {int(p): float(r) for p, r in zip(periods, residual)},
        "zero_sum_scale_eur": float(scale.max(initial=0.0)),
        "zero_sum_ok": bool((np.abs(residual) <= tol).all()),
        "merchandising_surplus_eur": {ar.name[a]: float(ms[a].sum()) for a in range(inst.n_areas)},
        "revenue_adequacy": adequacy,
    }


def settle(
    inst: Instance,
    tables: dict[str, pd.DataFrame],
    opts: ModelOptions,
    scheme: str,
    *,
    settles_at_interface: bool,
    loc: pd.DataFrame | None = None,
) -> dict:
    """Settlement tables and summary (see module docstring).

    Returns {"actors": DataFrame(actor, kind, area, period, payment_eur, cost_eur, profit_eur),
             "operators": DataFrame(operator, period, merchandising_surplus_eur, interface_payment_eur,
                                    merchandising_surplus_network_eur, slack_settlement_eur, slack_penalty_eur),
             "summary": dict}.
    `scheme` only labels the summary.  `settles_at_interface` says whether the interface exchange is paid at the
    interface price (False: it is delivered free of charge).  `loc` (from `lost_opportunity_costs`) adds the
    uplift to the summary.
    """
    settled = bool(settles_at_interface)
    dt = opts.period_hours
    is_d = inst.buses.is_dist[:, None]
    bv = bus_values(inst, tables["buses"])
    bsp_rows, ord_p, ord_q = _bsp_rows(inst, tables, bv, dt)
    brp_rows, P, Q = _brp_rows(inst, bv, opts)
    slack_rows, slack_pay, slack_pen = _slack_rows(inst, bv, opts)
    X, Y, piP, piQ, td, has_iface = interface_exchanges(inst, tables, bv.lam_p, bv.lam_q)
    iface_pay = _interface_payments(inst, X, Y, piP, piQ, settled, dt)
    # merchandising surplus, injection side
    inj_p = ord_p + P + bv.sig_p
    inj_q = np.where(is_d, ord_q + Q + bv.sig_q, 0.0)
    ms = iface_pay - by_operator(inst, (bv.lam_p * inj_p + bv.lam_q * inj_q) * dt)
    # merchandising surplus, network side (outflows)
    out_p, out_q = _network_outflows(inst, tables, bv, opts, X, Y, td)
    ms_net = iface_pay - by_operator(inst, (bv.lam_p * out_p + bv.lam_q * out_q) * dt)
    op_rows, operators = _operator_tables(
        inst, ms, ms_net, iface_pay, slack_pay, slack_pen, X, Y, piP, has_iface & settled
    )
    actors = pd.concat([bsp_rows, brp_rows, slack_rows, op_rows], ignore_index=True)
    summary = _summary(inst, actors, ms, bsp_rows, slack_pen, scheme, settled)
    if loc is not None:
        summary["uplift_eur"] = float(loc["loc_eur"].sum()) if len(loc) else 0.0
        summary["uplift_by_area_eur"] = {str(k): float(v) for k, v in loc.groupby("area")["loc_eur"].sum().items()}
    return {"actors": actors, "operators": operators, "summary": summary}
