"""Branch-flow (DistFlow) formulations of the distribution network (docs/model.md §3.3).

Per line e = (i -> j) and period: series flows P, Q (behind the from-end shunt) and squared current ℓ;
  w_j = w_i/τ² − 2(RP + XQ) + |z|²ℓ,   P² + Q² <= (w_i/τ²)·ℓ,
  p_fr = P, q_fr = Q − b^c w_i/τ², p_to = −P + Rℓ, q_to = −Q + Xℓ − b^c w_j,
thermal limits at both ends, voltage bounds on w, nodal shunts (consume G w, inject B w).

* `SOCBranchFlow` — the SOC relaxation: ℓ is a variable, the product is a rotated cone, circles are cones.
* `LinDistFlow` — the linear approximation: no ℓ (lossless, linear voltage drop), circles are inscribed K-gons.

`BranchFlow` holds the algebra both share; every place where ℓ enters goes through `_add_current` (a no-op
without ℓ), the relaxation through `_add_relaxation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.instance import Instance
from .balance import Balance, modelled_buses
from .circles import Affine, add_circle_cones, add_circle_polygons, add_cone
from .distribution import DistributionFormulation
from .options import ModelOptions
from .program import Program
from .terms import Terms, grid


@dataclass
class _LineGrid:
    """(L, T) columns and line data of the distribution lines, broadcast over periods."""

    rows: np.ndarray  # row number of (line, period) in a per-line row block
    fb: np.ndarray  # from bus
    tb: np.ndarray  # to bus
    per: np.ndarray  # period
    wf: np.ndarray  # column of w at the from bus
    wt: np.ndarray  # column of w at the to bus
    P: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    X: np.ndarray
    bc: np.ndarray
    tau2: np.ndarray


class BranchFlow(DistributionFormulation):
    """Shared branch-flow algebra; subclasses say how the squared current ℓ and circles are modelled."""

    def __init__(self, inst: Instance, opts: ModelOptions):
        super().__init__(inst, opts)
        b, br = inst.buses, inst.branches
        modelled = modelled_buses(inst)
        both_d = b.is_dist[br.f] & b.is_dist[br.t]
        self.line = np.flatnonzero(both_d & modelled[br.f] & modelled[br.t])
        self.bus = np.flatnonzero(b.is_dist & modelled)
        pi = opts.pi_model
        self.r = br.r[self.line]
        self.x = br.x[self.line]
        self.bc = br.b[self.line] / 2 if pi else np.zeros(len(self.line))
        self.tau2 = br.tap[self.line] ** 2 if pi else np.ones(len(self.line))
        self.g_sh = b.g_shunt if pi else np.zeros(len(b))
        self.b_sh = b.b_shunt if pi else np.zeros(len(b))
        self.l_grid: np.ndarray | None = None

    # ------------------------------------------------------------------ hooks (where ℓ enters)
    def _add_current_variables(self, prog: Program) -> None:
        """Add the ℓ block (none without ℓ)."""

    def _add_current(self, add, *where, coef, select: np.ndarray | None = None) -> None:
        """`add(*where, ℓ columns, coef)`: one linear ℓ term into rows or balances (nothing without ℓ); `select`
        picks entries of the flattened (L, T) grid."""

    def _add_relaxation(self, prog: Program, g: _LineGrid) -> None:
        """Add the relaxation of P² + Q² = u ℓ (nothing without ℓ)."""

    def current(self, x: np.ndarray) -> np.ndarray:
        """(L, T) squared current ℓ (zeros without ℓ)."""
        return np.zeros_like(x[self.P_grid])

    # ------------------------------------------------------------------ model
    def add_variables(self, prog: Program) -> None:
        T = self.inst.n_periods
        b = self.inst.buses
        prog.add_variables("w", len(self.bus) * T, np.repeat(b.vsq_min[self.bus], T), np.repeat(b.vsq_max[self.bus], T))
        L = len(self.line) * T
        prog.add_variables("Pe", L, -np.inf, np.inf)
        prog.add_variables("Qe", L, -np.inf, np.inf)
        self._add_current_variables(prog)

    def add_constraints(self, prog: Program, balance: Balance) -> None:
        g = self._grid(prog)
        self._add_voltage_drop(prog, g)
        self._add_relaxation(prog, g)
        self._add_thermal(prog, g)
        self._add_to_balance(balance, g)

    def _grid(self, prog: Program) -> _LineGrid:
        T, inst = self.inst.n_periods, self.inst
        br = inst.branches
        n_l = len(self.line)
        w = np.full((len(inst.buses), T), -1, dtype=np.int64)
        w[self.bus] = grid(prog.var("w").start, len(self.bus), T)
        self.w_grid = w
        self.P_grid = grid(prog.var("Pe").start, n_l, T)
        self.Q_grid = grid(prog.var("Qe").start, n_l, T)
        fb = np.broadcast_to(br.f[self.line][:, None], (n_l, T))
        tb = np.broadcast_to(br.t[self.line][:, None], (n_l, T))
        per = np.broadcast_to(np.arange(T), (n_l, T))

        def col(v):
            return np.broadcast_to(v[:, None], (n_l, T))

        return _LineGrid(
            rows=np.arange(n_l * T).reshape(n_l, T),
            fb=fb,
            tb=tb,
            per=per,
            wf=w[fb, per],
            wt=w[tb, per],
            P=self.P_grid,
            Q=self.Q_grid,
            R=col(self.r),
            X=col(self.x),
            bc=col(self.bc),
            tau2=col(self.tau2),
        )

    def _add_voltage_drop(self, prog: Program, g: _LineGrid) -> None:
        """w_j − w_i/τ² + 2(RP + XQ) − |z|²ℓ = 0."""
        t = Terms(g.rows.size)
        t.add(g.rows, g.wt, 1.0).add(g.rows, g.wf, -1.0 / g.tau2).add(g.rows, g.P, 2 * g.R).add(g.rows, g.Q, 2 * g.X)
        self._add_current(t.add, g.rows, coef=-(g.R**2 + g.X**2))
        prog.add_rows("voltage_drop", t.matrix(prog.n), 0.0, 0.0)

    def _add_thermal(self, prog: Program, g: _LineGrid) -> None:
        """|s_from| <= S and |s_to| <= S on rated lines (circles as the formulation models them)."""
        rating = self.inst.branches.rating[self.line]
        rr = np.flatnonzero(np.repeat(np.isfinite(rating), self.inst.n_periods))
        kk = len(rr)
        ri = np.arange(kk)
        S = np.repeat(rating, self.inst.n_periods)[rr]
        P, Q, wf, wt = g.P.ravel()[rr], g.Q.ravel()[rr], g.wf.ravel()[rr], g.wt.ravel()[rr]
        pf = Affine(kk).add(ri, P, 1.0)
        qf = Affine(kk).add(ri, Q, 1.0).add(ri, wf, -(g.bc / g.tau2).ravel()[rr])
        pt = Affine(kk).add(ri, P, -1.0)
        qt = Affine(kk).add(ri, Q, -1.0).add(ri, wt, -g.bc.ravel()[rr])
        self._add_current(pt.add, ri, coef=g.R.ravel()[rr], select=rr)
        self._add_current(qt.add, ri, coef=g.X.ravel()[rr], select=rr)
        sides = self.opts.polygon_sides
        self.add_circles(prog, "thermal_from", pf, qf, S, sides)
        self.add_circles(prog, "thermal_to", pt, qt, S, sides)

    def _add_to_balance(self, balance: Balance, g: _LineGrid) -> None:
        """Injections − outflows: outflow_from = (P, Q − bc u), outflow_to = (−P + Rℓ, −Q + Xℓ − bc w_t); nodal
        shunts consume G w and inject B w."""
        fb, tb, per = g.fb, g.tb, g.per
        balance.add_p(fb, per, g.P, -1.0)
        balance.add_q(fb, per, g.Q, -1.0)
        balance.add_q(fb, per, g.wf, g.bc / g.tau2)
        balance.add_p(tb, per, g.P, 1.0)
        balance.add_q(tb, per, g.Q, 1.0)
        balance.add_q(tb, per, g.wt, g.bc)
        self._add_current(balance.add_p, tb, per, coef=-g.R)
        self._add_current(balance.add_q, tb, per, coef=-g.X)
        T, nb = self.inst.n_periods, len(self.bus)
        bus = np.broadcast_to(self.bus[:, None], (nb, T))
        per_b = np.broadcast_to(np.arange(T), (nb, T))
        wb = self.w_grid[self.bus]
        balance.add_p(bus, per_b, wb, -self.g_sh[bus])
        balance.add_q(bus, per_b, wb, self.b_sh[bus])

    # ------------------------------------------------------------------ values of a primal point
    def terminal_flows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        br, per = self.inst.branches, np.arange(self.inst.n_periods)
        P_, Q_ = x[self.P_grid], x[self.Q_grid]
        l_ = self.current(x)
        wf = x[self.w_grid[br.f[self.line][:, None], per]]
        wt = x[self.w_grid[br.t[self.line][:, None], per]]
        R, X, bc, tau2 = (v[:, None] for v in (self.r, self.x, self.bc, self.tau2))
        pf, qf = P_, Q_ - bc * wf / tau2
        pt, qt = -P_ + R * l_, -Q_ + X * l_ - bc * wt
        return pf, qf, pt, qt

    def squared_voltages(self, x: np.ndarray) -> np.ndarray:
        wv = np.full((len(self.inst.buses), self.inst.n_periods), np.nan)
        if len(self.bus):
            wv[self.bus] = x[self.w_grid[self.bus]]
        return wv


class SOCBranchFlow(BranchFlow):
    """SOC relaxation of the AC branch-flow model: ℓ ≥ 0 with P² + Q² <= (w_i/τ²)·ℓ; circles are exact cones."""

    name = "socp"
    conic = True
    relaxation_cones = ("branch_flow_soc",)
    limit_cones = ("thermal_from", "thermal_to")

    @classmethod
    def add_circles(cls, prog: Program, name: str, a: Affine, b: Affine, radius: np.ndarray, sides: int) -> None:
        add_circle_cones(prog, name, a, b, radius)

    @property
    def _l(self) -> np.ndarray:
        """(L, T) columns of ℓ (set by `add_constraints`)."""
        assert self.l_grid is not None, "add_constraints first"
        return self.l_grid

    def _add_current_variables(self, prog: Program) -> None:
        bound = np.repeat(self.current_bound(), self.inst.n_periods)
        prog.add_variables("l", len(self.line) * self.inst.n_periods, 0.0, bound)

    def current_bound(self) -> np.ndarray:
        """Upper bound of ℓ per line (inf where unrated): the series current of an AC point within the from end's
        rating, |I|² = (P² + Q²)/u <= (S + |b_c| w_max/τ²)² τ²/w_min (PowerModels' `ccm` bound, src/form/bf.jl).
        Valid for every AC point, so the relaxation only loses points AC does not have.  Without it ℓ is held by
        the thermal circles alone, at about S/|z| on a low-impedance line: measured on a generated italy-693
        variant, ℓ = 6.4e5 on a line of R = 1e-6 (0.64 MW burnt as fictitious loss), and one area's cost at a
        fixed exchange 18 € apart between solver settings that all reported an optimum."""
        b = self.inst.buses
        f = self.inst.branches.f[self.line]
        S = self.inst.branches.rating[self.line]
        w_min, w_max = b.vsq_min[f], b.vsq_max[f]
        charging = np.zeros(len(self.line))
        on = self.bc != 0
        charging[on] = np.abs(self.bc[on]) * w_max[on] / self.tau2[on]
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = (S + charging) ** 2 * self.tau2 / w_min
        return np.where(np.isfinite(bound) & (w_min > 0), bound, np.inf)

    def _add_current(self, add, *where, coef, select: np.ndarray | None = None) -> None:
        add(*where, self._l if select is None else self._l.ravel()[select], coef)

    def _grid(self, prog: Program) -> _LineGrid:
        self.l_grid = grid(prog.var("l").start, len(self.line), self.inst.n_periods)
        return super()._grid(prog)

    def _add_relaxation(self, prog: Program, g: _LineGrid) -> None:
        """P² + Q² <= u ℓ  <=>  ||(2P, 2Q, u − ℓ)|| <= u + ℓ,  u = w_f/τ²."""
        r_, wf, inv_tau2, l = g.rows.ravel(), g.wf.ravel(), 1.0 / g.tau2.ravel(), self._l.ravel()
        k = len(r_)
        lhs = Affine(k).add(r_, wf, inv_tau2).add(r_, l, 1.0)
        c1 = Affine(k).add(r_, g.P.ravel(), 2.0)
        c2 = Affine(k).add(r_, g.Q.ravel(), 2.0)
        c3 = Affine(k).add(r_, wf, inv_tau2).add(r_, l, -1.0)
        add_cone(prog, "branch_flow_soc", [lhs, c1, c2, c3])

    def current(self, x: np.ndarray) -> np.ndarray:
        return x[self._l]

    def soc_gap(self, x: np.ndarray) -> np.ndarray:
        """u·ℓ − P² − Q² per (line, period); 0 on zero-impedance lines, where ℓ affects nothing (no drop, no loss)
        and the cone's slack is not a relaxation gap."""
        T = self.inst.n_periods
        if len(self.line) == 0:
            return np.zeros((0, T))
        per = np.arange(T)
        u = x[self.w_grid[self.inst.branches.f[self.line][:, None], per]] / self.tau2[:, None]
        gap = u * x[self._l] - x[self.P_grid] ** 2 - x[self.Q_grid] ** 2
        gap[(self.r == 0) & (self.x == 0)] = 0.0
        return gap

    def current_excess(self, x: np.ndarray) -> np.ndarray:
        """ℓ − (P² + Q²)/u = gap/u per (line, period), p.u. (MVA² per p.u.² of voltage): the squared current the
        relaxed point carries beyond its flows; 0 on zero-impedance lines."""
        T = self.inst.n_periods
        if len(self.line) == 0:
            return np.zeros((0, T))
        per = np.arange(T)
        u = x[self.w_grid[self.inst.branches.f[self.line][:, None], per]] / self.tau2[:, None]
        return self.soc_gap(x) / np.maximum(u, 1e-12)

    def fictitious_loss(self, x: np.ndarray) -> np.ndarray:
        """R·(ℓ − (P² + Q²)/u) per (line, period), MW (p.u. on 1 MVA)."""
        return self.r[:, None] * self.current_excess(x)

    def fictitious_voltage_drop(self, x: np.ndarray) -> np.ndarray:
        """|z|²·(ℓ − (P² + Q²)/u) per (line, period), p.u.²: how much lower w_j is than the AC flows make it."""
        return (self.r**2 + self.x**2)[:, None] * self.current_excess(x)

    def loss_cost(self, n: int) -> np.ndarray:
        """Loss of line e is p_fr + p_to = R ℓ: € R per unit of ℓ, zero elsewhere."""
        c = np.zeros(n)
        c[self._l.ravel()] = np.repeat(self.r, self.inst.n_periods)
        return c


class LinDistFlow(BranchFlow):
    """LinDistFlow: branch flow without ℓ (lossless, linear voltage drop); circles are inscribed K-gons."""

    name = "lindistflow"
    conic = False

    @classmethod
    def add_circles(cls, prog: Program, name: str, a: Affine, b: Affine, radius: np.ndarray, sides: int) -> None:
        add_circle_polygons(prog, name, a, b, radius, sides)

    def soc_gap(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((len(self.line), self.inst.n_periods))

    def loss_cost(self, n: int) -> np.ndarray:
        return np.zeros(n)
