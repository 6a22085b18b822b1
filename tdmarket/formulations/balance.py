"""Nodal balances (docs/model.md §3, §5): the triplet accumulator every block writes its injections into, and the slack
block that turns it into penalised balance rows and reports prices and slack.

`Balance`: P rows for every modelled bus, Q rows for every modelled distribution bus, written as
injections − outflows = −(fixed injection).  `SlackBlock`: slack variables (κ per MWh / Mvarh), the rows
`balance_p` / `balance_q`, nodal prices and the `buses` table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..model.instance import Instance
from .options import ModelOptions
from .program import Program
from .terms import Terms


def modelled_buses(inst: Instance) -> np.ndarray:
    """Buses with balance rows: every own bus, plus the root of a child DSO hanging from a D-D edge (the
    parent models that edge and receives the child's export at the child root, docs/model.md §6.4)."""
    b, ar, br = inst.buses, inst.areas, inst.branches
    mask = ~b.is_boundary.copy()
    has = ar.interface >= 0
    iface = ar.interface[has]  # (index only real interfaces: an instance may have no branch at all)
    dd = has.copy()
    dd[has] = b.is_dist[br.f[iface]] & b.is_dist[br.t[iface]]
    root = np.where(has, ar.root_bus, 0)
    host = np.where(has, ar.host_bus, 0)
    coupling = dd & b.is_boundary[root] & ~b.is_boundary[host]
    mask[root[coupling]] = True
    return mask


class Balance:
    """Nodal balance rows: P for every modelled bus, Q for every modelled distribution bus, per period."""

    def __init__(self, inst: Instance):
        T = inst.n_periods
        own = modelled_buses(inst)
        self.T = T
        self.p_bus = np.flatnonzero(own)
        self.q_bus = np.flatnonzero(own & inst.buses.is_dist)
        n = len(inst.buses)
        self.p_row = np.full((n, T), -1, dtype=np.int64)
        self.p_row[self.p_bus] = np.arange(len(self.p_bus) * T).reshape(-1, T)
        self.q_row = np.full((n, T), -1, dtype=np.int64)
        self.q_row[self.q_bus] = np.arange(len(self.q_bus) * T).reshape(-1, T)
        self.P = Terms(len(self.p_bus) * T)
        self.Q = Terms(len(self.q_bus) * T)

    def add_p(self, bus, period, cols, coef) -> None:
        """Add coef·x[cols] to the P balance of (bus, period); entries at buses without a row are dropped."""
        rows = self.p_row[bus, period]
        keep = rows >= 0
        coef = np.broadcast_to(np.asarray(coef, float), np.shape(rows))
        self.P.add(rows[keep], np.asarray(cols)[keep], coef[keep])

    def add_q(self, bus, period, cols, coef) -> None:
        rows = self.q_row[bus, period]
        keep = rows >= 0
        coef = np.broadcast_to(np.asarray(coef, float), np.shape(rows))
        self.Q.add(rows[keep], np.asarray(cols)[keep], coef[keep])


_SLACKS = ("slack_p_plus", "slack_p_minus", "slack_q_plus", "slack_q_minus")
# a sub-DSO's deviation from the reactive exchange and root voltage its parent holds (decomposition.area_model),
# priced and counted like slack
COUPLING_SLACKS = ("coupling_slack_plus", "coupling_slack_minus")


class SlackBlock:
    """Penalised nodal balances: slack variables s⁺, s⁻ ≥ 0 at cost κΔ on every P and Q balance row, the rows
    themselves (once every other block has written its terms), the nodal prices and the `buses` table."""

    def __init__(self, inst: Instance, opts: ModelOptions, balance: Balance):
        self.inst, self.opts, self.balance = inst, opts, balance

    def add_variables(self, prog: Program) -> None:
        T, bal = self.inst.n_periods, self.balance
        kappa = self.opts.slack_penalty * self.opts.period_hours
        nP, nQ = len(bal.p_bus) * T, len(bal.q_bus) * T
        for name, size in zip(_SLACKS, (nP, nP, nQ, nQ)):
            prog.add_variables(name, size, 0.0, np.inf, kappa)

    def add_constraints(self, prog: Program, balance: Balance) -> None:
        """Add the slack terms and write the balance rows `balance_p`, `balance_q` (call after every block)."""
        inst, opts = self.inst, self.opts
        nP, nQ = balance.P.n_rows, balance.Q.n_rows
        sp_, sm_, sqp, sqm = (prog.var(n) for n in _SLACKS)
        balance.P.add(np.arange(nP), sp_.index, 1.0).add(np.arange(nP), sm_.index, -1.0)
        balance.Q.add(np.arange(nQ), sqp.index, 1.0).add(np.arange(nQ), sqm.index, -1.0)
        q_inj = inst.q_inj.copy()
        if opts.zero_root_q:
            q_inj[inst.areas.root_bus[inst.areas.root_bus >= 0]] = 0.0
        rhs_p = -inst.p_inj[balance.p_bus].ravel()
        rhs_q = -q_inj[balance.q_bus].ravel()
        prog.add_rows("balance_p", balance.P.matrix(prog.n), rhs_p, rhs_p)
        prog.add_rows("balance_q", balance.Q.matrix(prog.n), rhs_q, rhs_q)

    # ------------------------------------------------------------------ results
    def prices(self, prog: Program, row_dual: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(n_buses, T) P prices (€/MWh) and Q prices (€/Mvarh); NaN at buses without a row or without duals."""
        bal, T = self.balance, self.inst.n_periods
        n = len(self.inst.buses)
        scale = 1.0 / self.opts.period_hours
        lam_p, lam_q = np.full((n, T), np.nan), np.full((n, T), np.nan)
        if row_dual is not None:
            lam_p[bal.p_bus] = row_dual[prog.rows["balance_p"].slice].reshape(len(bal.p_bus), T) * scale
            if len(bal.q_bus):
                lam_q[bal.q_bus] = row_dual[prog.rows["balance_q"].slice].reshape(len(bal.q_bus), T) * scale
        return lam_p, lam_q

    def buses_table(
        self, prog: Program, x: np.ndarray, lam_p: np.ndarray, lam_q: np.ndarray, extra: dict[str, np.ndarray]
    ) -> pd.DataFrame:
        """One row per (modelled bus, period): prices, slack, then the (n_buses, T) columns `extra` (voltages)."""
        inst, bal, T = self.inst, self.balance, self.inst.n_periods
        b = inst.buses
        nP = len(bal.p_bus)
        slack_p = (x[prog.var("slack_p_plus").slice] - x[prog.var("slack_p_minus").slice]).reshape(nP, T)
        slack_q = np.zeros((len(b), T))
        if len(bal.q_bus):
            nQ = len(bal.q_bus)
            slack_q[bal.q_bus] = (x[prog.var("slack_q_plus").slice] - x[prog.var("slack_q_minus").slice]).reshape(nQ, T)
        bus_idx = np.repeat(bal.p_bus, T)
        return pd.DataFrame(
            {
                "node": b.id[bus_idx],
                "period": np.tile(inst.periods, nP),
                "kind": np.where(b.is_dist[bus_idx], "D", "T"),
                "area": np.array(inst.areas.name)[b.area[bus_idx]],
                "price_p_eur_mwh": lam_p[bal.p_bus].ravel(),
                "price_q_eur_mvarh": lam_q[bal.p_bus].ravel(),
                "slack_p_mw": slack_p.ravel(),
                "slack_q_mvar": slack_q[bal.p_bus].ravel(),
                **{name: v[bal.p_bus].ravel() for name, v in extra.items()},
            }
        )

    def cost(self, prog: Program, x: np.ndarray) -> float:
        """Slack cost (€): κΔ·(σ⁺ + σ⁻) of every balance row, as in the objective, clipped at 0 per row.  Not each
        variable clipped at 0: an interior-point solve of a DSO's dispatch at a fixed exchange returned pairs
        (σ⁺, σ⁻) = (−2e-8, +2e-8) MW within their bound tolerance, whose costs cancel in its objective, and clipping
        each counted one half (italy-652: 0.048 € of "slack" over 50 dispatches whose objectives sum to 0.007 €)."""
        total = 0.0
        pairs = [(_SLACKS[0], _SLACKS[1]), (_SLACKS[2], _SLACKS[3])]
        if COUPLING_SLACKS[0] in prog.variables:
            pairs.append(COUPLING_SLACKS)
        for plus, minus in pairs:
            p, m = prog.var(plus).slice, prog.var(minus).slice
            total += float(np.maximum(prog.c[p] * x[p] + prog.c[m] * x[m], 0.0).sum())
        return total
