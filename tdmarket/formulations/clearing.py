"""The clearing problem, written once against any network formulation (MODEL.md §5(a)(b)).

`ClearingProblem(inst, opts)` assembles orders, DC transmission, T–D interfaces, a distribution formulation
(SOC branch flow or LinDistFlow) and penalised nodal balances into one `Program`.  It works on a whole instance
or on an operator's sub-instance (boundary buses have no balance rows).  `extract` turns a solver solution into
tables with physical units and prices; `check` recomputes residuals from the primal values, because a solver
status alone is not trusted (MODEL.md §3.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.instance import Instance
from .balance import Balance
from .distribution import distribution_formulation
from .network import DCTransmission, Interfaces
from .options import ModelOptions
from .orders import OrderBlock, net_two_way
from .program import Program
from .terms import Terms


@dataclass
class Check:
    """Feasibility residuals recomputed from the primal point (absolute units: MW, Mvar, p.u.)."""

    max_row_violation: float
    max_bound_violation: float
    max_cone_violation: float
    max_soc_gap: float  # u·ℓ − P² − Q² (MW²-ish units), the relaxation gap; 0 when exact
    n_inexact_lines: int

    def ok(self, tol: float = 1e-6) -> bool:
        return max(self.max_row_violation, self.max_bound_violation, self.max_cone_violation) <= tol


class ClearingProblem:
    def __init__(self, inst: Instance, opts: ModelOptions | None = None):
        opts = opts or ModelOptions()
        prices = inst.orders.segments.price
        opts.validate(float(np.abs(prices).max()) if len(prices) else 0.0)
        self.inst, self.opts = inst, opts
        form = distribution_formulation(opts)
        self.orders = OrderBlock(inst, opts, form)
        self.trans = DCTransmission(inst, opts)
        self.iface = Interfaces(inst, opts, form)
        self.dist = form(inst, opts)
        prog = Program()
        blocks = (self.orders, self.trans, self.iface, self.dist)
        for b in blocks:
            b.add_variables(prog)
        bal = Balance(inst)
        T = inst.n_periods
        kappa = opts.slack_penalty * opts.period_hours
        nP, nQ = len(bal.p_bus) * T, len(bal.q_bus) * T
        sp_ = prog.add_variables("slack_p_plus", nP, 0.0, np.inf, kappa)
        sm_ = prog.add_variables("slack_p_minus", nP, 0.0, np.inf, kappa)
        sqp = prog.add_variables("slack_q_plus", nQ, 0.0, np.inf, kappa)
        sqm = prog.add_variables("slack_q_minus", nQ, 0.0, np.inf, kappa)
        self.orders.add_constraints(prog)
        (pb, pt, pc, pv), (qb, qt, qc, qv) = self.orders.injection_terms(prog)
        bal.add_p(pb, pt, pc, pv)
        bal.add_q(qb, qt, qc, qv)
        for b in blocks[1:]:
            b.add_constraints(prog, bal)
        bal.P.add(np.arange(nP), sp_.index, 1.0).add(np.arange(nP), sm_.index, -1.0)
        bal.Q.add(np.arange(nQ), sqp.index, 1.0).add(np.arange(nQ), sqm.index, -1.0)
        q_inj = inst.q_inj.copy()
        if opts.zero_root_q:
            q_inj[inst.areas.root_bus[inst.areas.root_bus >= 0]] = 0.0
        rhs_p = -inst.p_inj[bal.p_bus].ravel()
        rhs_q = -q_inj[bal.q_bus].ravel()
        prog.add_rows("balance_p", bal.P.matrix(prog.n), rhs_p, rhs_p)
        prog.add_rows("balance_q", bal.Q.matrix(prog.n), rhs_q, rhs_q)
        # rows x_t = x̂_t for this area's own exchange (DSO view), free until a scheme fixes them: their duals
        # are ρ = ∂C/∂x̂ (€/MWh per period), the DSO's marginal cost of exporting one more MW.
        own = np.flatnonzero(self.iface.own)
        self.own_x = self.iface.x_grid[own].ravel() if len(own) else np.zeros(0, np.int64)
        k = len(self.own_x)
        t = Terms(k).add(np.arange(k), self.own_x, 1.0)
        prog.add_rows("exchange_fix", t.matrix(prog.n), -np.inf, np.inf)
        self.prog, self.balance = prog, bal

    # ------------------------------------------------------------------ helpers for schemes
    @property
    def integer_columns(self) -> np.ndarray:
        return np.flatnonzero(self.prog.integrality)

    def interface_columns(self) -> np.ndarray:
        """(A, T) columns of the export x of every modelled interface."""
        return self.iface.x_grid

    # ------------------------------------------------------------------ results
    def check(self, x: np.ndarray) -> Check:
        p = self.prog
        ax = p.A @ x
        row_v = np.maximum(p.row_lo - ax, ax - p.row_hi)
        bnd_v = np.maximum(p.lb - x, x - p.ub)
        cone_v = 0.0
        if p.k:
            s = p.cone_b - p.cone_A @ x
            start = 0
            for dim, count in p.cone_dims:
                block = s[start : start + dim * count].reshape(count, dim)
                cone_v = max(cone_v, float(np.max(np.linalg.norm(block[:, 1:], axis=1) - block[:, 0])))
                start += dim * count
        gap = self.soc_gap(x)
        return Check(
            max_row_violation=float(row_v.max(initial=0.0)),
            max_bound_violation=float(bnd_v.max(initial=0.0)),
            max_cone_violation=max(cone_v, 0.0),
            max_soc_gap=float(gap.max(initial=0.0)),
            n_inexact_lines=int((gap > 1e-6).sum()),
        )

    def soc_gap(self, x: np.ndarray) -> np.ndarray:
        """Relaxation gap u·ℓ − P² − Q² per (D line, period); zero for LinDistFlow (no ℓ)."""
        return self.dist.soc_gap(x)

    def extract(self, x: np.ndarray, row_dual: np.ndarray | None) -> dict[str, pd.DataFrame]:
        """Tables of the solution: segments, bids, buses (prices, slack), interfaces, lines."""
        inst, opts, p = self.inst, self.opts, self.prog
        T = inst.n_periods
        period_ids = inst.periods
        seg, bids = inst.orders.segments, inst.orders.bids
        oi = self.orders.index(p)
        xi = np.clip(x[oi.xi], 0.0, 1.0) + 0.0  # + 0.0 turns -0.0 into 0.0
        xi = net_two_way(inst, xi, oi.netted_bids)
        w = seg.width
        p_seg = w * xi
        out: dict[str, pd.DataFrame] = {}
        out["segments"] = pd.DataFrame(
            {
                "segment": seg.id,
                "bid": bids.id[seg.bid],
                "qtbid": bids.qtbid[seg.bid],
                "node": inst.buses.id[bids.bus[seg.bid]],
                "period": period_ids[bids.period[seg.bid]],
                "width_mw": w,
                "price_eur_mwh": seg.price,
                "accepted_fraction": xi,
                "accepted_mw": p_seg,
                "cost_eur": seg.price * np.abs(p_seg) * opts.period_hours,
            }
        )
        P_b = np.bincount(seg.bid, p_seg, minlength=len(bids))
        bid_size = np.bincount(seg.bid, np.abs(w), minlength=len(bids))
        Q_b = np.where(oi.q >= 0, x[np.maximum(oi.q, 0)], np.nan)
        out["bids"] = pd.DataFrame(
            {
                "bid": bids.id,
                "qtbid": bids.qtbid,
                "node": inst.buses.id[bids.bus],
                "period": period_ids[bids.period],
                "p_mw": P_b,
                "q_mvar": Q_b,
                # interior-point noise (~1e-8) is not acceptance: threshold relative to the bid's size
                "accepted": np.where(
                    oi.z >= 0, np.round(x[np.maximum(oi.z, 0)], 6) > 0.5, np.abs(P_b) > 1e-6 * np.maximum(1.0, bid_size)
                ),
            }
        )
        # buses: prices and slack
        bal = self.balance
        scale = 1.0 / opts.period_hours
        b = inst.buses
        nP = len(bal.p_bus)
        rows_p = p.rows["balance_p"].slice
        rows_q = p.rows["balance_q"].slice
        lam = row_dual[rows_p].reshape(nP, T) * scale if row_dual is not None else np.full((nP, T), np.nan)
        slack_p = (x[p.var("slack_p_plus").slice] - x[p.var("slack_p_minus").slice]).reshape(nP, T)
        lamq = np.full((len(b), T), np.nan)
        slack_q = np.zeros((len(b), T))
        if len(bal.q_bus):
            nQ = len(bal.q_bus)
            if row_dual is not None:
                lamq[bal.q_bus] = row_dual[rows_q].reshape(nQ, T) * scale
            slack_q[bal.q_bus] = (x[p.var("slack_q_plus").slice] - x[p.var("slack_q_minus").slice]).reshape(nQ, T)
        wv = self.dist.squared_voltages(x)
        bus_idx = np.repeat(bal.p_bus, T)
        out["buses"] = pd.DataFrame(
            {
                "node": b.id[bus_idx],
                "period": np.tile(period_ids, nP),
                "kind": np.where(b.is_dist[bus_idx], "D", "T"),
                "area": np.array(inst.areas.name)[b.area[bus_idx]],
                "price_p_eur_mwh": lam.ravel(),
                "price_q_eur_mvarh": lamq[bal.p_bus].ravel(),
                "slack_p_mw": slack_p.ravel(),
                "slack_q_mvar": slack_q[bal.p_bus].ravel(),
                "vsq_pu": wv[bal.p_bus].ravel(),
            }
        )
        # interfaces
        ifc = self.iface
        A = len(ifc.area)
        if A:
            xg, yg = x[ifc.x_grid], x[ifc.y_grid]
            host = ifc.host
            host_price = np.full((A, T), np.nan)
            has_row = bal.p_row[host, 0] >= 0
            if row_dual is not None and has_row.any():
                host_price[has_row] = row_dual[rows_p][bal.p_row[host[has_row]]] * scale
            root_price = np.full((A, T), np.nan)
            has_root = bal.p_row[ifc.root, 0] >= 0
            if row_dual is not None and has_root.any():
                root_price[has_root] = row_dual[rows_p][bal.p_row[ifc.root[has_root]]] * scale
            out["interfaces"] = pd.DataFrame(
                {
                    "area": np.repeat(np.array(inst.areas.name)[ifc.area], T),
                    "period": np.tile(period_ids, A),
                    "edge": np.repeat(inst.branches.id[ifc.branch], T),
                    "t_node": np.repeat(b.id[host], T),
                    "root_node": np.repeat(b.id[ifc.root], T),
                    "export_mw": xg.ravel(),
                    "export_mvar": yg.ravel(),
                    "file_flow_mw": (xg * np.where(inst.areas.root_is_from[ifc.area], 1, -1)[:, None]).ravel(),
                    "rating_mva": np.repeat(ifc.rating, T),
                    "interface_price_eur_mwh": host_price.ravel(),
                    "root_price_eur_mwh": root_price.ravel(),
                }
            )
        else:
            out["interfaces"] = pd.DataFrame(columns=["area", "period", "export_mw", "export_mvar"])
        # lines
        frames = []
        tr = self.trans
        br = inst.branches
        if len(tr.line):
            fl = x[tr.f_grid]
            frames.append(
                pd.DataFrame(
                    {
                        "edge": np.repeat(br.id[tr.line], T),
                        "period": np.tile(period_ids, len(tr.line)),
                        "kind": "T",
                        "p_from_mw": fl.ravel(),
                        "q_from_mvar": np.nan,
                        "p_to_mw": -fl.ravel(),
                        "q_to_mvar": np.nan,
                        "loss_mw": 0.0,
                        "rating_mva": np.repeat(br.rating[tr.line], T),
                        "loading": (np.abs(fl) / br.rating[tr.line][:, None]).ravel(),
                        "soc_gap": 0.0,
                    }
                )
            )
        d_lines = self.dist.lines_table(x)
        if d_lines is not None:
            frames.append(d_lines)
        out["lines"] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return out

    def cost_parts(self, x: np.ndarray) -> dict[str, float]:
        """Market cost (orders) and slack cost (€) of a primal point."""
        p = self.prog
        market = float(p.c[p.var("xi").slice] @ np.clip(x[p.var("xi").slice], 0.0, 1.0))
        # interior-point slacks sit at ±1e-10 instead of 0; clip so that reported slack cost is never negative
        slack = sum(
            float(p.c[p.var(n).slice] @ np.maximum(x[p.var(n).slice], 0.0))
            for n in ("slack_p_plus", "slack_p_minus", "slack_q_plus", "slack_q_minus")
        )
        return {
            "market_cost_eur": market,
            "slack_cost_eur": slack,
            "total_cost_eur": market + slack,
            "objective_eur": float(p.c @ x + p.c0),
        }
