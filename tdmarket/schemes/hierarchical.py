"""Hierarchical TSO–DSO clearing with residual supply curves (MODEL.md §6.2–§6.4): the mathematics.

This module holds what each operator computes on its own sub-instance; the agents, messages and executors
that run it across operators live in `tdmarket.operators`.

* `AreaModel` — an area's cost C_d(x̂) as a function of its exchange x̂ (MW exported to its parent, one value
  per period), with its children's offers (curves or cuts) in place of their networks.
* `build_curves` — per period, a convex piecewise-linear curve of C_d along the coordinate line through the
  DSO's preferred point x̄, refined until the secant/tangent gap certifies `curve_tol` €, exact at its
  breakpoints, with infeasible exchanges expressed as bounds (never penalty prices).
* `add_offers` — put curves (epigraph rows η >= Φ_k + σ_k (x − ξ_k)) or cuts (θ >= C + ρᵀ(x − x̂)) of child areas
  into a parent's problem (the TSO's, or a DSO's with sub-DSOs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..formulations.clearing import ClearingProblem
from ..formulations.options import ModelOptions
from ..formulations.program import Program
from ..formulations.terms import Terms
from ..model.instance import Instance
from ..solvers import SolveStatus, solve
from ..solvers.clarabel import solve_clarabel

GOOD = (SolveStatus.OPTIMAL, SolveStatus.ALMOST_OPTIMAL)
SOC_EXACT_TOL = 1e-5  # max u·ℓ − P² − Q² accepted as an exact (AC-feasible) point


@dataclass
class SliceCurve:
    """Convex piecewise-linear cost of one area in one period along its coordinate line (MW → €)."""

    period: int  # file period number
    xi: list[float]  # breakpoints, MW export, increasing
    phi: list[float]  # values at the breakpoints, €
    eps: float  # certified maximum gap between curve and slice over the domain, €
    evaluations: int
    flags: list[str] = field(default_factory=list)

    @property
    def lo(self) -> float:
        return self.xi[0]

    @property
    def hi(self) -> float:
        return self.xi[-1]

    def value(self, x: np.ndarray | float) -> np.ndarray:
        return np.interp(x, self.xi, self.phi)


@dataclass
class Cut:
    """θ >= value + slopeᵀ(x − point): a supporting plane of C_d (€, MW, €/MW per period)."""

    point: list[float]
    value: float
    slope: list[float]


@dataclass
class Offer:
    """What a child area offers its parent: per-period curves (one-shot) and/or cuts (iterative)."""

    area: str
    curves: list[SliceCurve] | None = None
    cuts: list[Cut] = field(default_factory=list)
    lo: list[float] | None = None  # per-period bounds on the exchange when only cuts are given
    hi: list[float] | None = None


@dataclass
class Evaluation:
    cost: float  # € (own orders + own slack + children's offers)
    rho: np.ndarray  # ∂C/∂x̂ per period, € per MW (multiply by 1/Δ for €/MWh)
    soc_gap: float
    x: np.ndarray  # primal point


def add_offers(
    cp: ClearingProblem, x_cols: np.ndarray, offers: list[Offer], *, use_curves: bool = True, use_cuts: bool = False
) -> dict:
    """Add child offers to a parent's program.  `x_cols` is (A, T): the columns of the children's exports in
    the same order as `offers`.  Returns the column maps of the added η (per area, period) and θ (per area)."""
    prog = cp.prog
    A, T = x_cols.shape
    maps = {}
    if A == 0:
        return maps
    if use_curves:
        eta = prog.add_variables("offer_eta", A * T, -np.inf, np.inf, 1.0).index.reshape(A, T)
        rows_r, cols_r, vals_r, lo_r = [], [], [], []
        nrow = 0
        for a, off in enumerate(offers):
            for t, c in enumerate(off.curves):
                xi, phi = np.asarray(c.xi), np.asarray(c.phi)
                if len(xi) == 1:
                    k = 1
                    slope = np.zeros(1)
                    xk, pk = xi, phi
                else:
                    slope = np.diff(phi) / np.maximum(np.diff(xi), 1e-12)
                    k = len(slope)
                    xk, pk = xi[:-1], phi[:-1]
                r = nrow + np.arange(k)
                rows_r += [r, r]
                cols_r += [np.full(k, eta[a, t]), np.full(k, x_cols[a, t])]
                vals_r += [np.ones(k), -slope]
                lo_r.append(pk - slope * xk)
                nrow += k
        t_ = Terms(nrow)
        t_.add(np.concatenate(rows_r), np.concatenate(cols_r), np.concatenate(vals_r))
        prog.add_rows("offer_curves", t_.matrix(prog.n), np.concatenate(lo_r), np.inf)
        maps["eta"] = eta
    if use_cuts:
        theta = prog.add_variables("offer_theta", A, -np.inf, np.inf, 1.0).index
        rows_r, cols_r, vals_r, lo_r = [], [], [], []
        nrow = 0
        for a, off in enumerate(offers):
            for cut in off.cuts:
                slope = np.asarray(cut.slope)
                rows_r += [np.array([nrow]), np.full(T, nrow)]
                cols_r += [np.array([theta[a]]), x_cols[a]]
                vals_r += [np.ones(1), -slope]
                lo_r.append([cut.value - slope @ np.asarray(cut.point)])
                nrow += 1
        t_ = Terms(nrow)
        if nrow:
            t_.add(np.concatenate(rows_r), np.concatenate(cols_r), np.concatenate(vals_r))
        prog.add_rows("offer_cuts", t_.matrix(prog.n), np.concatenate(lo_r) if lo_r else np.zeros(0), np.inf)
        maps["theta"] = theta
    return maps


def bound_offers(prog: Program, x_cols: np.ndarray, offers: list[Offer], use_curves: bool) -> None:
    """Exchange bounds: the curves' domains (one-shot) or the offers' stated ranges (cuts)."""
    for a, off in enumerate(offers):
        if use_curves and off.curves:
            lo = np.array([c.lo for c in off.curves])
            hi = np.array([c.hi for c in off.curves])
        elif off.lo is not None:
            lo, hi = np.asarray(off.lo), np.asarray(off.hi)
        else:
            continue
        prog.set_bounds(x_cols[a], np.maximum(prog.lb[x_cols[a]], lo), np.minimum(prog.ub[x_cols[a]], hi))


def child_exchange_columns(cp: ClearingProblem, names: list[str]) -> np.ndarray:
    """(A, T) columns of the exports of the named child areas as seen by this parent."""
    ifc = cp.iface
    area_names = np.array(cp.inst.areas.name)[ifc.area]
    rows = []
    for n in names:
        hit = np.flatnonzero((area_names == n) & ifc.inject_here)
        if len(hit) != 1:
            raise KeyError(f"no exchange with child area {n}")
        rows.append(hit[0])
    return ifc.x_grid[np.array(rows, dtype=int)] if rows else np.zeros((0, cp.inst.n_periods), dtype=np.int64)


class AreaModel:
    """C_d(x̂): the cost of one DSO area as a function of its exchange (relaxed or mixed-integer)."""

    def __init__(
        self,
        sub: Instance,
        opts: ModelOptions,
        child_offers: list[Offer] = (),
        use_curves: bool = True,
        use_cuts: bool = False,
        locked: dict | None = None,
    ):
        self.inst, self.opts = sub, opts
        self.cp = ClearingProblem(sub, opts)
        self.T = sub.n_periods
        if len(self.cp.own_x) != self.T:
            raise ValueError(f"{sub.name}: expected one own exchange per period")
        self.child_names = [o.area for o in child_offers]
        self.child_cols = child_exchange_columns(self.cp, self.child_names)
        add_offers(self.cp, self.child_cols, list(child_offers), use_curves=use_curves, use_cuts=use_cuts)
        bound_offers(self.cp.prog, self.child_cols, list(child_offers), use_curves)
        prog = self.cp.prog
        # activations locked by an earlier local clearing (local-as-market): they can grow, never shrink
        for block, floor in (locked or {}).items():
            idx = prog.var(block).index
            prog.set_bounds(idx, np.minimum(np.maximum(prog.lb[idx], floor), prog.ub[idx]), None)
        self.fix_rows = np.arange(prog.rows["exchange_fix"].start, prog.rows["exchange_fix"].start + self.T)
        self.rating = float(self.cp.iface.rating[np.flatnonzero(self.cp.iface.own)[0]])
        self.evaluations = 0

    def _solve(self, prog: Program):
        self.evaluations += 1
        if prog.has_integers:
            raise ValueError("AreaModel evaluations are continuous; use dispatch() for binaries")
        return solve_clarabel(prog) if prog.has_cones else solve(prog)

    def evaluate(self, x_hat: np.ndarray) -> Evaluation:
        prog = self.cp.prog.copy()
        prog.set_row_bounds(self.fix_rows, x_hat, x_hat)
        sol = self._solve(prog)
        if sol.status not in GOOD:
            raise RuntimeError(f"{self.inst.name}: evaluation at {x_hat} failed ({sol.status.value})")
        gap = float(self.cp.soc_gap(sol.x).max(initial=0.0))
        return Evaluation(cost=float(sol.objective), rho=sol.row_dual[self.fix_rows].copy(), soc_gap=gap, x=sol.x)

    def preferred(self) -> Evaluation:
        """arg min_x C(x): the DSO's preferred exchange (its own balancing at least cost)."""
        sol = self._solve(self.cp.prog.copy())
        if sol.status not in GOOD:
            raise RuntimeError(f"{self.inst.name}: unconstrained solve failed ({sol.status.value})")
        x = sol.x[self.cp.own_x]
        return Evaluation(
            cost=float(sol.objective), rho=np.zeros(self.T), soc_gap=float(self.cp.soc_gap(sol.x).max(initial=0.0)), x=x
        )

    def hard_range(self, t: int, x_ref: np.ndarray) -> tuple[float, float] | None:
        """[min, max] of x_t with slacks at zero and the other periods at x_ref (None if empty)."""
        prog = self.cp.prog.copy()
        for name in ("slack_p_plus", "slack_p_minus", "slack_q_plus", "slack_q_minus"):
            idx = prog.var(name).index
            prog.set_bounds(idx, 0.0, 0.0)
        others = np.delete(np.arange(self.T), t)
        prog.set_row_bounds(self.fix_rows[others], x_ref[others], x_ref[others])
        col = self.cp.own_x[t]
        out = []
        for sign in (1.0, -1.0):
            c = np.zeros(prog.n)
            c[col] = sign
            prog.set_cost(c)
            sol = self._solve(prog)
            if sol.status not in GOOD:
                return None
            out.append(float(sol.x[col]))
        return out[0], out[1]


def _piece_error(a, b) -> tuple[float, float]:
    """Max gap between secant and tangents on [a, b] (MODEL.md §6.2 step 3) and where it occurs."""
    (xa, fa, ga), (xb, fb, gb) = a, b
    if xb - xa <= 1e-12:
        return 0.0, xa
    sig = (fb - fa) / (xb - xa)
    if gb - ga <= 1e-12:
        return 0.0, 0.5 * (xa + xb)
    eps = max(0.0, (sig - ga)) * max(0.0, (gb - sig)) * (xb - xa) / (gb - ga)
    star = xa + (xb - xa) * (gb - sig) / (gb - ga)
    return eps, star


def build_curves(
    model: AreaModel, *, curve_tol: float = 0.1, max_evals: int = 64
) -> tuple[list[SliceCurve], list[Cut], np.ndarray]:
    """One-shot curves around the preferred point x̄ (MODEL.md §6.2); also returns every evaluation as a cut
    (for the iterative variant) and x̄."""
    T = model.T
    pref = model.preferred()
    x_ref = np.clip(pref.x, -model.rating, model.rating)
    base = model.evaluate(x_ref)
    cuts = [Cut(point=x_ref.tolist(), value=base.cost, slope=base.rho.tolist())]
    shift = (T - 1) / T * base.cost
    curves = []
    for t in range(T):
        flags = []
        rng = model.hard_range(t, x_ref)
        if rng is None or rng[0] > rng[1] + 1e-9:
            flags.append("needs_slack")
            lo, hi = -model.rating, model.rating
        else:
            lo, hi = rng
        pts = {}

        def ev(xt):
            xh = x_ref.copy()
            xh[t] = xt
            e = model.evaluate(xh)
            cuts.append(Cut(point=xh.tolist(), value=e.cost, slope=e.rho.tolist()))
            pts[float(xt)] = (float(xt), e.cost - shift, float(e.rho[t]))
            return e

        ref_t = float(np.clip(x_ref[t], lo, hi))
        ref_exact = ev(ref_t).soc_gap <= SOC_EXACT_TOL
        if not ref_exact:
            flags.append("inexact_relaxation")
        # trim each end to its AC-exact part (the relaxation can "burn" fictitious losses near the import end);
        # only meaningful where the reference point itself is exact
        for end in (lo, hi):
            if abs(end - ref_t) < 1e-9:
                continue
            e = ev(end)
            if ref_exact and e.soc_gap > SOC_EXACT_TOL:
                good, bad = ref_t, end
                for _ in range(10):
                    mid = 0.5 * (good + bad)
                    if ev(mid).soc_gap > SOC_EXACT_TOL:
                        bad = mid
                    else:
                        good = mid
                pts.pop(float(end), None)
                if end == lo:
                    lo = good
                else:
                    hi = good
                flags.append("trimmed_inexact_end")
        pts = {k: v for k, v in pts.items() if lo - 1e-12 <= k <= hi + 1e-12}
        # refine the worst piece until the certificate holds
        while True:
            keys = sorted(pts)
            errs = [_piece_error(pts[a], pts[b]) for a, b in zip(keys[:-1], keys[1:])]
            if not errs:
                eps = 0.0
                break
            k = int(np.argmax([e for e, _ in errs]))
            eps = errs[k][0]
            if eps <= curve_tol or len(pts) >= max_evals:
                break
            a, b = keys[k], keys[k + 1]
            star = errs[k][1]
            if not (a + 0.05 * (b - a) < star < b - 0.05 * (b - a)):
                star = 0.5 * (a + b)
            ev(star)
        if eps > curve_tol:
            flags.append("tolerance_not_reached")
        keys = sorted(pts)
        xi = np.array(keys)
        phi = np.array([pts[k][1] for k in keys])
        phi, convex_ok = _convexify(xi, phi, curve_tol)
        if not convex_ok:
            flags.append("nonconvex_or_inaccurate")
        curves.append(
            SliceCurve(
                period=int(model.inst.periods[t]),
                xi=xi.tolist(),
                phi=phi.tolist(),
                eps=float(eps),
                evaluations=len(keys),
                flags=flags,
            )
        )
    return curves, cuts, x_ref


def _convexify(xi: np.ndarray, phi: np.ndarray, tol: float) -> tuple[np.ndarray, bool]:
    """Make secant slopes non-decreasing by pool-adjacent-violators (solver noise); report larger violations."""
    if len(xi) < 3:
        return phi, True
    dx = np.diff(xi)
    s = list(np.diff(phi) / np.maximum(dx, 1e-12))
    w = list(dx)
    blocks = [[s[i], w[i], 1] for i in range(len(s))]
    out = []
    for blk in blocks:
        out.append(blk)
        while len(out) > 1 and out[-2][0] > out[-1][0]:
            b2, b1 = out.pop(), out.pop()
            ww = b1[1] + b2[1]
            out.append([(b1[0] * b1[1] + b2[0] * b2[1]) / ww, ww, b1[2] + b2[2]])
    slopes = np.concatenate([[v] * n for v, _, n in out])
    new_phi = np.concatenate([[phi[0]], phi[0] + np.cumsum(slopes * dx)])
    ok = float(np.max(np.abs(new_phi - phi))) <= max(tol, 1e-6 * max(1.0, np.abs(phi).max()))
    return new_phi, ok
