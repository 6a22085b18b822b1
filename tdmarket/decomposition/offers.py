"""Offers of a child area to its parent: residual supply curves (one-shot) and cuts (iterative).

A curve of area a in period t is a convex piecewise-linear function of the export x_{a,t} (MW → €); a cut is a
supporting plane of the area's cost C_a over all periods: θ_a >= C_a(x̂) + ρᵀ(x_a − x̂) (€, €/MW per period).
`add_offer_rows` writes both kinds into any parent program (the TSO's clearing, the TSO's master, a DSO with
sub-DSOs) with one vectorised assembly each.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from ..formulations.clearing import ClearingProblem
from ..formulations.program import Program
from .messages import CurveOffer


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

    def value(self, x: np.ndarray | float) -> np.ndarray | float:
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


TINY_SLOPE = 1e-7  # a cut's slope entry below this share of its largest (or of 1 €/MW) is round-off


def cut_matrix(
    area_of_cut: np.ndarray,
    points: np.ndarray,
    values: np.ndarray,
    slopes: np.ndarray,
    theta_cols: np.ndarray,
    x_cols: np.ndarray,
    n: int,
    col_lb: np.ndarray | None = None,
    col_ub: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rows θ_a − ρᵀx_a >= C − ρᵀx̂ for K cuts at once (`area_of_cut` (K,), `points`/`slopes` (K, T), `values` (K,)).

    Each row is scaled by 1 / max(1, |ρ|∞) so that cuts with slopes near the slack penalty stay well conditioned
    next to the market rows (the feasible set is unchanged).  With the parent's column bounds (`col_lb`,
    `col_ub`, (n,)), a slope entry below TINY_SLOPE of its row's scale (interior-point round-off) is dropped and
    the cut lowered by what it could be worth within the bounds, so the cut stays valid (measured on italy-652 in
    a federation: entries of 1e-9 next to 1e3 in the master, whose warm dual simplex then failed).  Returns (A,
    lower bound)."""
    K, T = slopes.shape
    slopes = np.asarray(slopes, float)
    if col_lb is not None and col_ub is not None and K:
        xc = x_cols[area_of_cut]
        reach = np.maximum(col_ub[xc] - points, points - col_lb[xc])  # (K, T), MW; inf if unbounded
        rel = np.abs(slopes) / np.maximum(1.0, np.abs(slopes).max(axis=1, keepdims=True))
        tiny = (slopes != 0) & (rel < TINY_SLOPE) & np.isfinite(reach)
        if tiny.any():
            values = values - np.where(tiny, np.abs(slopes) * np.maximum(reach, 0.0), 0.0).sum(axis=1)
            slopes = np.where(tiny, 0.0, slopes)
    scale = 1.0 / np.maximum(1.0, np.abs(slopes).max(axis=1, initial=0.0))
    rows = np.concatenate([np.arange(K), np.repeat(np.arange(K), T)])
    cols = np.concatenate([theta_cols[area_of_cut], x_cols[area_of_cut].ravel()])
    vals = np.concatenate([scale, (-slopes * scale[:, None]).ravel()])
    A = sp.csr_matrix((vals, (rows, cols)), shape=(K, n))
    lo = (values - np.einsum("kt,kt->k", slopes, points)) * scale
    return A, lo


def stack_cuts(offers: list[Offer]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(area index, points, values, slopes) of every cut of every offer, in offer order."""
    area, pts, vals, slopes = [], [], [], []
    for a, off in enumerate(offers):
        for c in off.cuts:
            area.append(a)
            pts.append(c.point)
            vals.append(c.value)
            slopes.append(c.slope)
    T = len(offers[0].cuts[0].point) if area else 0
    return (
        np.asarray(area, dtype=np.int64),
        np.asarray(pts, float).reshape(-1, T),
        np.asarray(vals, float),
        np.asarray(slopes, float).reshape(-1, T),
    )


def _curve_rows(offers: list[Offer], eta: np.ndarray, x_cols: np.ndarray, n: int):
    """Epigraph rows η_{a,t} − σ_k x_{a,t} >= Φ_k − σ_k ξ_k, one per curve piece."""
    e_col, x_col, slope, rhs = [], [], [], []
    for a, off in enumerate(offers):
        for t, c in enumerate(off.curves or ()):
            xi, phi = np.asarray(c.xi, float), np.asarray(c.phi, float)
            if len(xi) == 1:
                s, xk, pk = np.zeros(1), xi, phi
            else:
                s = np.diff(phi) / np.maximum(np.diff(xi), 1e-12)
                xk, pk = xi[:-1], phi[:-1]
            e_col.append(np.full(len(s), eta[a, t]))
            x_col.append(np.full(len(s), x_cols[a, t]))
            slope.append(s)
            rhs.append(pk - s * xk)
    if not slope:
        return sp.csr_matrix((0, n)), np.zeros(0)
    s = np.concatenate(slope)
    K = len(s)
    rows = np.concatenate([np.arange(K), np.arange(K)])
    cols = np.concatenate([np.concatenate(e_col), np.concatenate(x_col)])
    return sp.csr_matrix((np.concatenate([np.ones(K), -s]), (rows, cols)), shape=(K, n)), np.concatenate(rhs)


def add_offer_rows(
    prog: Program, x_cols: np.ndarray, offers: list[Offer], *, use_curves: bool = True, use_cuts: bool = False
) -> dict:
    """Add child offers to a parent's program.  `x_cols` is (A, T): the columns of the children's exports in
    the same order as `offers`.  Returns the column maps of the added η (per area, period) and θ (per area)."""
    A, T = x_cols.shape
    maps: dict[str, np.ndarray] = {}
    if A == 0:
        return maps
    if use_curves:
        eta = prog.add_variables("offer_eta", A * T, -np.inf, np.inf, 1.0).index.reshape(A, T)
        M, lo = _curve_rows(offers, eta, x_cols, prog.n)
        prog.add_rows("offer_curves", M, lo, np.inf)
        maps["eta"] = eta
    if use_cuts:
        theta = prog.add_variables("offer_theta", A, -np.inf, np.inf, 1.0).index
        area, pts, vals, slopes = stack_cuts(offers)
        if len(area):
            M, lo = cut_matrix(area, pts, vals, slopes, theta, x_cols, prog.n, prog.lb, prog.ub)
        else:
            M, lo = sp.csr_matrix((0, prog.n)), np.zeros(0)
        prog.add_rows("offer_cuts", M, lo, np.inf)
        maps["theta"] = theta
    return maps


def bound_offers(prog: Program, x_cols: np.ndarray, offers: list[Offer], use_curves: bool) -> None:
    """Exchange bounds: the curves' domains (one-shot) or the offers' stated ranges (cuts)."""
    for a, off in enumerate(offers):
        if use_curves and off.curves:
            lo = np.array([c.lo for c in off.curves])
            hi = np.array([c.hi for c in off.curves])
        elif off.lo is not None and off.hi is not None:
            lo, hi = np.asarray(off.lo), np.asarray(off.hi)
        else:
            continue
        prog.set_bounds(x_cols[a], np.maximum(prog.lb[x_cols[a]], lo), np.minimum(prog.ub[x_cols[a]], hi))


def child_interfaces(cp: ClearingProblem, names: list[str]) -> np.ndarray:
    """(A,) this parent's interface rows (`cp.iface`) of the named child areas."""
    ifc = cp.iface
    area_names = np.array(cp.inst.areas.name)[ifc.area]
    rows = []
    for n in names:
        hit = np.flatnonzero((area_names == n) & ifc.inject_here)
        if len(hit) != 1:
            raise KeyError(f"no exchange with child area {n}")
        rows.append(hit[0])
    return np.array(rows, dtype=int)


def child_exchange_columns(cp: ClearingProblem, names: list[str]) -> np.ndarray:
    """(A, T) columns of the exports of the named child areas as seen by this parent."""
    rows = child_interfaces(cp, names)
    return cp.iface.x_grid[rows] if len(rows) else np.zeros((0, cp.inst.n_periods), dtype=np.int64)


def child_coupling_columns(cp: ClearingProblem, names: list[str]) -> np.ndarray:
    """(A, 3T) columns of the named child areas' exchanges (MW), reactive exchanges (Mvar) and root squared
    voltages (p.u.²) as seen by this parent: the quantities parent and child share at the child root."""
    T = cp.inst.n_periods
    rows = child_interfaces(cp, names)
    if not len(rows):
        return np.zeros((0, 3 * T), dtype=np.int64)
    w = cp.dist.w_grid[cp.iface.root[rows]]
    if (w < 0).any():
        raise ValueError("a child root's voltage is not modelled by its parent")
    return np.hstack([cp.iface.x_grid[rows], cp.iface.y_grid[rows], w])


def widen_cut(cut: Cut, width: int) -> Cut:
    """The cut with `width` entries: one of fewer (a cut in P alone, T entries) gets zero slopes in the rest (the
    coupling's Q and w), still valid, since it bounds the child's cost whatever Q and w are."""
    pad = width - len(cut.point)
    if pad < 0:
        raise ValueError(f"a cut of {len(cut.point)} entries, more than {width}")
    return Cut(point=list(cut.point) + [0.0] * pad, value=cut.value, slope=list(cut.slope) + [0.0] * pad)


def widen_cuts(offer: Offer, width: int) -> Offer:
    """The offer with every cut widened to `width` entries (`widen_cut`)."""
    return replace(offer, cuts=[widen_cut(c, width) for c in offer.cuts])


def offer_from_message(msg: CurveOffer) -> Offer:
    curves = [
        SliceCurve(period=p, xi=x, phi=c, eps=e, evaluations=len(x), flags=f)
        for p, x, c, e, f in zip(msg.periods, msg.xi_mw, msg.cost_eur, msg.eps_eur, msg.flags)
    ]
    cuts = [Cut(**c) for c in msg.cuts]
    return Offer(area=msg.sender, curves=curves, cuts=cuts, lo=[c.lo for c in curves], hi=[c.hi for c in curves])
