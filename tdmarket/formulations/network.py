"""Network formulations (MODEL.md §3), one class per formulation, all with the same interface:

    block = Formulation(inst, opts)
    block.add_variables(prog)
    block.add_constraints(prog, balance)   # adds its flows to the nodal balances

* `DCTransmission` — lossless DC angle form; X = 0 lines are couplings (θ_f = θ_t, flow free within rating).
* `BranchFlowSOC` — SOC relaxation of the AC branch-flow (DistFlow) model with line charging, taps and shunts.
* `LinDistFlow` — the same with ℓ = 0 and circles replaced by inscribed K-gons (an LP approximation).
* `Interfaces` — T–D exchange x (MW) and y (Mvar) of every DSO area, jointly limited by the interface rating.

`balance` is a `Balance` object: triplet accumulators for the P rows of every own bus and Q rows of every own
distribution bus, rows written as injections − outflows = −(fixed injection).
"""

from __future__ import annotations

import numpy as np

from ..model.instance import BranchKind, Instance
from .circles import Affine, add_circles, add_cone
from .options import ModelOptions
from .program import Program
from .terms import Terms, grid


def modelled_buses(inst: Instance) -> np.ndarray:
    """Buses with balance rows: every own bus, plus the root of a child DSO hanging from a D-D edge (the
    parent models that edge and receives the child's export at the child root, MODEL.md §6.4)."""
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


class Interfaces:
    """Exchange points between operator areas: x (MW exported by the child area) and y (Mvar).

    * T–D interface: an ideal lossless coupling; x is injected at the host T bus (if modelled here) and
      withdrawn at the D root (if modelled here), jointly limited by x² + y² <= S² where y is known.
    * D–D interface (a sub-DSO): modelled as an ordinary line when both ends are here; in the parent's view
      (child root is a boundary bus) x and y are injected at the child root, behind the line the parent models;
      in the child's own view (parent bus is a boundary) x and y are withdrawn at its root.
    """

    def __init__(self, inst: Instance, opts: ModelOptions):
        self.inst, self.opts = inst, opts
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
        add_circles(
            prog,
            "interface_rating",
            a,
            b_,
            np.repeat(self.rating[rated], T),
            conic=self.opts.dist_model == "socp",
            sides=self.opts.polygon_sides,
        )
        self.x_grid, self.y_grid = x, y


class BranchFlowSOC:
    """Branch-flow (DistFlow) SOC relaxation on distribution lines (MODEL.md §3.3).

    Per line e = (i -> j) and period: series flows P, Q (behind the from-end shunt) and squared current ℓ;
      w_j = w_i/τ² − 2(RP + XQ) + |z|²ℓ,   P² + Q² <= (w_i/τ²)·ℓ,
      p_fr = P, q_fr = Q − b^c w_i/τ², p_to = −P + Rℓ, q_to = −Q + Xℓ − b^c w_j,
    thermal limits at both ends, voltage bounds on w.  `LinDistFlow` reuses everything with ℓ = 0.
    """

    conic = True

    def __init__(self, inst: Instance, opts: ModelOptions):
        self.inst, self.opts = inst, opts
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

    def add_variables(self, prog: Program) -> None:
        T = self.inst.n_periods
        b = self.inst.buses
        prog.add_variables("w", len(self.bus) * T, np.repeat(b.vsq_min[self.bus], T), np.repeat(b.vsq_max[self.bus], T))
        L = len(self.line) * T
        prog.add_variables("Pe", L, -np.inf, np.inf)
        prog.add_variables("Qe", L, -np.inf, np.inf)
        prog.add_variables("l", L if self.conic else 0, 0.0, np.inf)

    def add_constraints(self, prog: Program, balance: Balance) -> None:
        T, inst = self.inst.n_periods, self.inst
        br = inst.branches
        n_l = len(self.line)
        w = np.full((len(inst.buses), T), -1, dtype=np.int64)
        w[self.bus] = grid(prog.var("w").start, len(self.bus), T)
        P = grid(prog.var("Pe").start, n_l, T)
        Q = grid(prog.var("Qe").start, n_l, T)
        l = grid(prog.var("l").start, n_l, T) if self.conic else None
        fb = np.broadcast_to(br.f[self.line][:, None], (n_l, T))
        tb = np.broadcast_to(br.t[self.line][:, None], (n_l, T))
        per = _periods(n_l, T)
        wf, wt = w[fb, per], w[tb, per]
        col = lambda v: np.broadcast_to(v[:, None], (n_l, T))
        R, X, bc, tau2 = col(self.r), col(self.x), col(self.bc), col(self.tau2)
        z2 = R**2 + X**2
        rows = np.arange(n_l * T).reshape(n_l, T)
        # voltage drop
        t = Terms(n_l * T)
        t.add(rows, wt, 1.0).add(rows, wf, -1.0 / tau2).add(rows, P, 2 * R).add(rows, Q, 2 * X)
        if self.conic:
            t.add(rows, l, -z2)
        prog.add_rows("voltage_drop", t.matrix(prog.n), 0.0, 0.0)
        k = n_l * T
        r_ = rows.ravel()
        if self.conic:
            # P² + Q² <= u ℓ  <=>  ||(2P, 2Q, u − ℓ)|| <= u + ℓ,  u = w_f/τ²
            lhs = Affine(k).add(r_, wf.ravel(), 1.0 / tau2.ravel()).add(r_, l.ravel(), 1.0)
            c1 = Affine(k).add(r_, P.ravel(), 2.0)
            c2 = Affine(k).add(r_, Q.ravel(), 2.0)
            c3 = Affine(k).add(r_, wf.ravel(), 1.0 / tau2.ravel()).add(r_, l.ravel(), -1.0)
            add_cone(prog, "branch_flow_soc", [lhs, c1, c2, c3])
        # thermal limits at both ends
        rated = np.isfinite(inst.branches.rating[self.line])
        rr = np.flatnonzero(np.repeat(rated, T))
        kk = len(rr)
        ri = np.arange(kk)
        S = np.repeat(inst.branches.rating[self.line], T)[rr]
        pf = Affine(kk).add(ri, P.ravel()[rr], 1.0)
        qf = Affine(kk).add(ri, Q.ravel()[rr], 1.0).add(ri, wf.ravel()[rr], -(bc / tau2).ravel()[rr])
        pt = Affine(kk).add(ri, P.ravel()[rr], -1.0)
        qt = Affine(kk).add(ri, Q.ravel()[rr], -1.0).add(ri, wt.ravel()[rr], -bc.ravel()[rr])
        if self.conic:
            pt.add(ri, l.ravel()[rr], R.ravel()[rr])
            qt.add(ri, l.ravel()[rr], X.ravel()[rr])
        sides = self.opts.polygon_sides
        add_circles(prog, "thermal_from", pf, qf, S, conic=self.conic, sides=sides)
        add_circles(prog, "thermal_to", pt, qt, S, conic=self.conic, sides=sides)
        # balances: injections − outflows;  outflow_from = (P, Q − bc u),  outflow_to = (−P + Rℓ, −Q + Xℓ − bc w_t)
        balance.add_p(fb, per, P, -1.0)
        balance.add_q(fb, per, Q, -1.0)
        balance.add_q(fb, per, wf, bc / tau2)
        balance.add_p(tb, per, P, 1.0)
        balance.add_q(tb, per, Q, 1.0)
        balance.add_q(tb, per, wt, bc)
        if self.conic:
            balance.add_p(tb, per, l, -R)
            balance.add_q(tb, per, l, -X)
        # nodal shunts: consume G w, inject B w
        nb = len(self.bus)
        bus = np.broadcast_to(self.bus[:, None], (nb, T))
        wb = w[self.bus]
        balance.add_p(bus, _periods(nb, T), wb, -self.g_sh[bus])
        balance.add_q(bus, _periods(nb, T), wb, self.b_sh[bus])
        self.w_grid, self.P_grid, self.Q_grid, self.l_grid = w, P, Q, l


class LinDistFlow(BranchFlowSOC):
    """LinDistFlow: branch flow with ℓ = 0 (lossless, linear voltage drop), circles as inscribed K-gons."""

    conic = False


DISTRIBUTION_FORMULATIONS = {"socp": BranchFlowSOC, "lindistflow": LinDistFlow}
