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

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..formulations.options import ModelOptions
from ..model.instance import Instance
from .participants import participant_frame, qtbid_participant

ZERO_SUM_RTOL = 1e-6  # residual tolerance relative to the scale Σ|payments| of the period
ACTOR_KINDS = ("bsp_t", "bsp_d", "brp", "slack", "tso", "dso")


def _dense(inst: Instance, frame: pd.DataFrame, column: str) -> np.ndarray:
    """(n_bus, T) array of a per-(node, period) column; NaN where the table has no row."""
    out = np.full((len(inst.buses), inst.n_periods), np.nan)
    if len(frame):
        i = inst.bus_index(frame.node.to_numpy())
        t = np.searchsorted(inst.periods, frame.period.to_numpy())
        out[i, t] = frame[column].to_numpy(float)
    return out


def _period_pos(inst: Instance, periods) -> np.ndarray:
    return np.searchsorted(inst.periods, np.asarray(periods))


def _branch_pos(inst: Instance, ids) -> np.ndarray:
    """Positions of branch file ids (raises KeyError for unknown ids)."""
    br_id = inst.branches.id
    order = np.argsort(br_id, kind="stable")
    ids = np.asarray(ids)
    pos = order[np.clip(np.searchsorted(br_id, ids, sorter=order), 0, max(len(order) - 1, 0))]
    if len(ids) and (br_id[pos] != ids).any():
        raise KeyError(f"unknown edge {ids[br_id[pos] != ids][0]}")
    return pos


def _interfaces(inst: Instance, tables: dict, lam_p: np.ndarray, lam_q: np.ndarray):
    """Per area (A, T): exported X (MW), Y (Mvar), the prices π^P, π^Q at which it is settled, and whether the
    exchange is a T–D coupling (x, y enter the root balance and x the host balance) or a D–D line."""
    A, T = inst.n_areas, inst.n_periods
    ar, br, b = inst.areas, inst.branches, inst.buses
    X, Y, piP, piQ = (np.zeros((A, T)) for _ in range(4))
    td = np.zeros(A, bool)
    has_iface = np.zeros(A, bool)
    ifc = tables.get("interfaces")
    name_pos = {n: k for k, n in enumerate(ar.name)}
    if ifc is not None and len(ifc) and "interface_price_eur_mwh" in ifc:
        a = np.array([name_pos[n] for n in ifc.area], dtype=np.int64)
        t = _period_pos(inst, ifc.period)
        root = ar.root_bus[a]
        host = ar.host_bus[a]
        is_td = b.is_dist[root] != b.is_dist[host]
        X[a, t] = ifc.export_mw.to_numpy(float)
        # tables without a reactive interface model report no y: settled as 0
        Y[a, t] = np.nan_to_num(ifc.export_mvar.to_numpy(float)) if "export_mvar" in ifc else 0.0
        price = ifc.interface_price_eur_mwh.to_numpy(float)
        root_price = ifc.root_price_eur_mwh.to_numpy(float) if "root_price_eur_mwh" in ifc else np.full(len(a), np.nan)
        # T–D: π_d (host T LMP); D–D: the root prices of the parent's model (the line belongs to the parent)
        piP[a, t] = np.where(is_td, price, root_price)
        piQ[a, t] = np.where(is_td, 0.0, lam_q[root, t])
        td[a] = is_td
        has_iface[a] = True
    # D–D interfaces modelled as ordinary lines (whole instance): exchange = flow leaving the child root
    lines = tables.get("lines")
    dd = np.flatnonzero((ar.interface >= 0) & ~has_iface)
    if len(dd) and lines is not None and len(lines):
        e_pos = _branch_pos(inst, lines.edge.to_numpy())
        edge_of_area = np.full(len(br), -1)
        edge_of_area[ar.interface[dd]] = dd
        a = edge_of_area[e_pos]
        sel = a >= 0
        a = a[sel]
        t = _period_pos(inst, lines.period.to_numpy()[sel])
        from_root = ar.root_is_from[a]
        pf, pt = lines.p_from_mw.to_numpy(float)[sel], lines.p_to_mw.to_numpy(float)[sel]
        qf, qt = lines.q_from_mvar.to_numpy(float)[sel], lines.q_to_mvar.to_numpy(float)[sel]
        X[a, t] = np.where(from_root, pf, pt)
        Y[a, t] = np.nan_to_num(np.where(from_root, qf, qt))
        root = ar.root_bus[a]
        piP[a, t] = lam_p[root, t]
        piQ[a, t] = np.nan_to_num(lam_q[root, t])
        has_iface[a] = True
    piP = np.nan_to_num(piP)
    return X, Y, piP, piQ, td, has_iface


@dataclass
class _BusValues:
    """Dense (n_bus, T) arrays of the `buses` table (NaN → 0) and the mask of buses it balanced."""

    lam_p: np.ndarray
    lam_q: np.ndarray
    sig_p: np.ndarray
    sig_q: np.ndarray
    wv: np.ndarray
    priced: np.ndarray  # buses with a balance row in these tables


def _bus_values(inst: Instance, buses: pd.DataFrame) -> _BusValues:
    lam_p = _dense(inst, buses, "price_p_eur_mwh")
    lam_q = np.nan_to_num(_dense(inst, buses, "price_q_eur_mvarh"))
    sig_p = np.nan_to_num(_dense(inst, buses, "slack_p_mw"))
    sig_q = np.nan_to_num(_dense(inst, buses, "slack_q_mvar"))
    wv = np.nan_to_num(_dense(inst, buses, "vsq_pu"))
    priced = ~np.isnan(lam_p)
    return _BusValues(np.nan_to_num(lam_p), lam_q, sig_p, sig_q, wv, priced)


def _by_operator(inst: Instance, v) -> np.ndarray:
    """Sum of an (n_bus, T) array per (operator area, period): an (A, T) array."""
    n, T, A = len(inst.buses), inst.n_periods, inst.n_areas
    bus_area = np.broadcast_to(inst.buses.area[:, None], (n, T))
    per = np.broadcast_to(np.arange(T), (n, T))
    flat = (bus_area * T + per).ravel()
    return np.bincount(flat, np.asarray(v).ravel(), minlength=A * T).reshape(A, T)


def _operator_grid(inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """(area, period position) index grids of shape (A, T)."""
    return np.meshgrid(np.arange(inst.n_areas), np.arange(inst.n_periods), indexing="ij")


def _bsp_rows(inst: Instance, tables: dict, bv: _BusValues, dt: float):
    """BSP actor rows (one per participant and period) and the order injections per bus and period."""
    n, T = len(inst.buses), inst.n_periods
    bids, seg = tables["bids"], tables["segments"]
    bi = inst.bus_index(bids.node.to_numpy())
    bt = _period_pos(inst, bids.period)
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


def _brp_rows(inst: Instance, bv: _BusValues, opts: ModelOptions):
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


def _slack_rows(inst: Instance, bv: _BusValues, opts: ModelOptions):
    """Slack actor rows (one per operator and period), the slack settlement and the penalty, both (A, T)."""
    dt = opts.period_hours
    area_names = np.asarray(inst.areas.name, dtype=object)
    slack_pay = _by_operator(inst, (bv.lam_p * bv.sig_p + bv.lam_q * bv.sig_q) * dt)
    kappa = opts.slack_penalty * dt
    slack_pen = _by_operator(inst, kappa * (np.abs(bv.sig_p) + np.abs(bv.sig_q)))
    a_grid, t_grid = _operator_grid(inst)
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


def _network_outflows(inst: Instance, tables: dict, bv: _BusValues, opts: ModelOptions, X, Y, td):
    """Nodal outflows (n_bus, T) implied by the `lines` table, the shunts and the T–D interface exchanges."""
    b, ar = inst.buses, inst.areas
    n, T = len(b), inst.n_periods
    is_d = b.is_dist[:, None]
    out_p = np.zeros((n, T))
    out_q = np.zeros((n, T))
    lines = tables.get("lines")
    if lines is not None and len(lines):
        br = inst.branches
        e = _branch_pos(inst, lines.edge.to_numpy())
        lt = _period_pos(inst, lines.period)
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
    a_grid, t_grid = _operator_grid(inst)
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
    tper = _period_pos(inst, actors.period)
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
    bv = _bus_values(inst, tables["buses"])
    bsp_rows, ord_p, ord_q = _bsp_rows(inst, tables, bv, dt)
    brp_rows, P, Q = _brp_rows(inst, bv, opts)
    slack_rows, slack_pay, slack_pen = _slack_rows(inst, bv, opts)
    X, Y, piP, piQ, td, has_iface = _interfaces(inst, tables, bv.lam_p, bv.lam_q)
    iface_pay = _interface_payments(inst, X, Y, piP, piQ, settled, dt)
    # merchandising surplus, injection side
    inj_p = ord_p + P + bv.sig_p
    inj_q = np.where(is_d, ord_q + Q + bv.sig_q, 0.0)
    ms = iface_pay - _by_operator(inst, (bv.lam_p * inj_p + bv.lam_q * inj_q) * dt)
    # merchandising surplus, network side (outflows)
    out_p, out_q = _network_outflows(inst, tables, bv, opts, X, Y, td)
    ms_net = iface_pay - _by_operator(inst, (bv.lam_p * out_p + bv.lam_q * out_q) * dt)
    op_rows, operators = _operator_tables(
        inst, ms, ms_net, iface_pay, slack_pay, slack_pen, X, Y, piP, has_iface & settled
    )
    actors = pd.concat([bsp_rows, brp_rows, slack_rows, op_rows], ignore_index=True)
    summary = _summary(inst, actors, ms, bsp_rows, slack_pen, scheme, settled)
    if loc is not None:
        summary["uplift_eur"] = float(loc["loc_eur"].sum()) if len(loc) else 0.0
        summary["uplift_by_area_eur"] = {str(k): float(v) for k, v in loc.groupby("area")["loc_eur"].sum().items()}
    return {"actors": actors, "operators": operators, "summary": summary}
