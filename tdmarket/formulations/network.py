"""Transmission network and operator interfaces (docs/model.md §3), with the same block interface as every other
part of the clearing problem:

    block.add_variables(prog)
    block.add_constraints(prog, balance)   # adds its flows to the nodal balances (`balance.Balance`)
    block.<table>(x, ...)                  # its own rows of the result tables

* `DCTransmission` — lossless DC angle form; X = 0 lines are couplings (θ_f = θ_t, flow free within rating).
* `Interfaces` — T–D exchange x (MW) and y (Mvar) of every DSO area, jointly limited by the interface rating.

The distribution network is a `distribution.DistributionFormulation` (SOC branch flow or LinDistFlow).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..model.instance import BranchKind, Instance
from .balance import Balance
from .circles import Affine
from .distribution import DistributionFormulation, distribution_formulation
from .options import ModelOptions
from .program import Program
from .terms import Terms, grid


def _periods(n: int, T: int) -> np.ndarray:
    return np.broadcast_to(np.arange(T), (n, T))


class DCTransmission:
    """Lossless DC power flow on T–T lines: X f = θ_f − θ_t − φ, |f| <= S, θ_ref = 0."""

    def __init__(self, inst: Instance, opts: ModelOptions):
        self.inst, self.opts = inst, opts
        b, br = inst.buses, inst.branches
        self.bus = np.flatnonzero(~b.is_dist & ~b.is_boundary)
        self.line = np.flatnonzero(br.kind == BranchKind.TRANSMISSION)

    def add_variables(self, prog: Program) -> None:
        T = self.inst.n_periods
        b, br = self.inst.buses, self.inst.branches
        ref = b.is_ref[self.bus]
        bound = np.where(np.repeat(ref, T), 0.0, np.inf)
        prog.add_variables("theta", len(self.bus) * T, -bound, bound)
        rating = np.repeat(br.rating[self.line], T)
        prog.add_variables("f", len(self.line) * T, -rating, rating)

    def add_constraints(self, prog: Program, balance: Balance) -> None:
        T = self.inst.n_periods
        br = self.inst.branches
        th = np.full((len(self.inst.buses), T), -1, dtype=np.int64)
        th[self.bus] = grid(prog.var("theta").start, len(self.bus), T)
        f = grid(prog.var("f").start, len(self.line), T)
        L = len(self.line)
        rows = np.arange(L * T).reshape(L, T)
        fb, tb = br.f[self.line][:, None], br.t[self.line][:, None]
        t = Terms(L * T)
        t.add(rows, f, np.repeat(br.x[self.line], T))
        t.add(rows, th[fb, np.arange(T)], -1.0).add(rows, th[tb, np.arange(T)], 1.0)
        shift = np.repeat(np.deg2rad(br.shift_deg[self.line]), T)
        prog.add_rows("dc_flow", t.matrix(prog.n), -shift, -shift)
        per = _periods(L, T)
        balance.add_p(np.broadcast_to(fb, (L, T)), per, f, -1.0)
        balance.add_p(np.broadcast_to(tb, (L, T)), per, f, 1.0)
        self.theta_grid, self.f_grid = th, f

    def lines_table(self, x: np.ndarray) -> pd.DataFrame | None:
        """Rows of the `lines` table for the T lines (None when there are none)."""
        if not len(self.line):
            return None
        T, br = self.inst.n_periods, self.inst.branches
        fl = x[self.f_grid]
        return pd.DataFrame(
            {
                "edge": np.repeat(br.id[self.line], T),
                "period": np.tile(self.inst.periods, len(self.line)),
                "kind": "T",
                "p_from_mw": fl.ravel(),
                "q_from_mvar": np.nan,
                "p_to_mw": -fl.ravel(),
                "q_to_mvar": np.nan,
                "loss_mw": 0.0,
                "rating_mva": np.repeat(br.rating[self.line], T),
                "loading": (np.abs(fl) / br.rating[self.line][:, None]).ravel(),
                "soc_gap": 0.0,
                "fictitious_loss_mw": 0.0,
                "fictitious_vdrop_pu2": 0.0,
            }
        )


class Interfaces:
    """Exchange points between operator areas: x (MW exported by the child area) and y (Mvar).

    * T–D interface: an ideal lossless coupling; x is injected at the host T bus (if modelled here) and
      withdrawn at the D root (if modelled here), jointly limited by x² + y² <= S² where y is known.
    * D–D interface (a sub-DSO): modelled as an ordinary line when both ends are here; in the parent's view
      (child root is a boundary bus) x and y are injected at the child root, behind the line the parent models;
      in the child's own view (parent bus is a boundary) x and y are withdrawn at its root.
    """

    def __init__(self, inst: Instance, opts: ModelOptions, form: type[DistributionFormulation] | None = None):
        self.inst, self.opts = inst, opts
        self.form = form or distribution_formulation(opts)  # models the rating circle (cone or K-gon)
        ar, br, b = inst.areas, inst.branches, inst.buses
        has = ar.interface >= 0
        iface = ar.interface[has]  # (index only real interfaces: an instance may have no branch at all)
        t_d = has.copy()
        t_d[has] = b.is_dist[br.f[iface]] != b.is_dist[br.t[iface]]
        root = np.where(has, ar.root_bus, 0)
        host = np.where(has, ar.host_bus, 0)
        d_d_split = has & ~t_d & (b.is_boundary[root] | b.is_boundary[host])
        self.area = np.flatnonzero(t_d | d_d_split)
        self.branch = ar.interface[self.area]
        self.root = ar.root_bus[self.area]
        self.host = ar.host_bus[self.area]
        self.is_td = t_d[self.area]
        self.rating = br.rating[self.branch]
        self.root_modelled = ~b.is_boundary[self.root]
        # where the parent side receives x: host T bus for T-D, the child root itself for D-D (parent's view)
        self.inject_bus = np.where(self.is_td, self.host, self.root)
        self.inject_here = np.where(self.is_td, ~b.is_boundary[self.host], ~self.root_modelled)
        self.own = self.root_modelled & b.is_boundary[self.host]  # this area's own exchange (DSO view)

    def add_variables(self, prog: Program) -> None:
        T, A = self.inst.n_periods, len(self.area)
        boxed = np.where(self.root_modelled | ~self.is_td, np.inf, self.rating)  # TSO view: |x| <= S
        bx = np.repeat(boxed, T)
        prog.add_variables("x", A * T, -bx, bx)
        y_free = (self.root_modelled | ~self.is_td) & self.opts.interface_reactive
        by = np.repeat(np.where(y_free, np.inf, 0.0), T)
        prog.add_variables("y", A * T, -by, by)

    def add_constraints(self, prog: Program, balance: Balance) -> None:
        T, A = self.inst.n_periods, len(self.area)
        x = grid(prog.var("x").start, A, T)
        y = grid(prog.var("y").start, A, T)
        per = _periods(A, T)
        inj = np.broadcast_to(self.inject_bus[:, None], (A, T))
        root = np.broadcast_to(self.root[:, None], (A, T))
        balance.add_p(inj[self.inject_here], per[self.inject_here], x[self.inject_here], 1.0)
        balance.add_q(
            inj[self.inject_here & ~self.is_td],
            per[self.inject_here & ~self.is_td],
            y[self.inject_here & ~self.is_td],
            1.0,
        )
        rm = self.root_modelled
        balance.add_p(root[rm], per[rm], x[rm], -1.0)
        balance.add_q(root[rm], per[rm], y[rm], -1.0)
        rated = np.flatnonzero(np.isfinite(self.rating) & self.root_modelled)
        k = len(rated) * T
        a = Affine(k).add(np.arange(k), x[rated].ravel(), 1.0)
        b_ = Affine(k).add(np.arange(k), y[rated].ravel(), 1.0)
        self.form.add_circles(
            prog, "interface_rating", a, b_, np.repeat(self.rating[rated], T), self.opts.polygon_sides
        )
        self.x_grid, self.y_grid = x, y

    def add_exchange_fix(self, prog: Program) -> np.ndarray:
        """Rows x_t = x̂_t for this area's own exchange (DSO view), free until a scheme fixes them: their duals are
        ρ = ∂C/∂x̂ (€/MWh per period), the DSO's marginal cost of exporting one more MW.  Returns their columns."""
        own = np.flatnonzero(self.own)
        own_x = self.x_grid[own].ravel() if len(own) else np.zeros(0, np.int64)
        k = len(own_x)
        t = Terms(k).add(np.arange(k), own_x, 1.0)
        prog.add_rows("exchange_fix", t.matrix(prog.n), -np.inf, np.inf)
        return own_x

    def table(self, x: np.ndarray, lam_p: np.ndarray) -> pd.DataFrame:
        """The `interfaces` table: exchange and the P prices (`lam_p`, (n_buses, T)) at the host and root buses."""
        inst, T = self.inst, self.inst.n_periods
        A = len(self.area)
        if not A:
            return pd.DataFrame(columns=["area", "period", "export_mw", "export_mvar"])
        b = inst.buses
        xg, yg = x[self.x_grid], x[self.y_grid]
        return pd.DataFrame(
            {
                "area": np.repeat(np.array(inst.areas.name)[self.area], T),
                "period": np.tile(inst.periods, A),
                "edge": np.repeat(inst.branches.id[self.branch], T),
                "t_node": np.repeat(b.id[self.host], T),
                "root_node": np.repeat(b.id[self.root], T),
                "export_mw": xg.ravel(),
                "export_mvar": yg.ravel(),
                "file_flow_mw": (xg * np.where(inst.areas.root_is_from[self.area], 1, -1)[:, None]).ravel(),
                "rating_mva": np.repeat(self.rating, T),
                "interface_price_eur_mwh": lam_p[self.host].ravel(),
                "root_price_eur_mwh": lam_p[self.root].ravel(),
            }
        )
