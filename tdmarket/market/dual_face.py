"""The optimal dual face of a solved clearing program: every row dual that is optimal, not just the one a solver
returned (docs/model.md §8, "Defined prices").

For `Program` (min c'x s.t. lo <= Ax <= hi, lb <= x <= ub, h − Gx ∈ K) and an optimal primal point x*, a row
dual y (the convention of docs/model.md §1: y_r = ∂ optimum / ∂ active bound of row r) together with cone duals z
is optimal if and only if it satisfies complementary slackness with x*:

* row r:      y_r free if lo = hi;  y_r >= 0 if only lo is active;  y_r <= 0 if only hi is active;  0 if neither;
* column j:   the reduced cost d_j = c_j − (A'y)_j + (G'z)_j is 0 if lb < x*_j < ub, >= 0 at lb, <= 0 at ub and
              free if lb = ub or j is an integer column (a held exchange; a binary under restricted pricing);
* cone k:     z_k = 0 if s_k = h_k − G_k x* is interior;  z_k = α_k (s_k0, −s̄_k), α_k >= 0, if s_k is on the
              boundary (the only dual directions complementary to a boundary point of a second-order cone).

This is a polyhedron in (y, α) (the set of optimal duals does not depend on which optimal x* is used), so the
lowest and highest optimal value of every price row, and a price chosen among the optimal ones by a rule, are
linear programs.  `DualFace` builds that LP once, sparse, and solves it with HiGHS (warm-started between
objectives).

Numerics.  An interior-point x* sits ~1e-9 from its bounds and its duals leave small residuals, so activity is
decided with a tolerance and every sign condition is loosened just enough to contain the solver's own (y*, α*):
the face is never empty and always contains the solver's answer.  The loosening is absolute (€ per unit of the
column), ACTIVITY_TOL and DUAL_SLACK below.

Ranges.  `ranges` minimises and maximises Σ w_r y_r over the price rows (two LPs, whatever their number).  Blocks
of the face that do not share a row are optimised independently, and within a block with one degree of freedom
(the cases that occur: a pocket of nodes whose balance no flexible resource can move, e.g. a node behind a held
exchange or a DSO area whose orders are all at a bound) the two solutions are the two ends of every row's
interval.  With several degrees of freedom in one block the pair is an inner approximation; `exact_ranges`
solves one LP per row for the rows named (exact, used by the tests and for a few flagged rows).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from ..formulations.program import Program
from ..solvers.result import Solution

ACTIVITY_TOL = 1e-6  # a row or variable within this (× (1 + |bound|)) of a bound is at that bound
CONE_TOL = 1e-6  # s0 − |s̄| <= CONE_TOL·(1 + s0): the cone point is on the boundary
# face LPs with more rows + columns than this start by interior point when they have no warm basis (below it a
# cold simplex is faster: a DSO area's face has a few thousand)
COLD_IPM_SIZE = 50_000
DUAL_SLACK = 1e-7  # € per unit: extra room in every reduced-cost sign condition beyond the solver's own residual


@dataclass(frozen=True)
class FaceRanges:
    """Lowest and highest optimal dual of each asked row (row units, e.g. € per MW·Δ for a balance row)."""

    rows: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    time_s: float


def _ray_matrix(prog: Program, x: np.ndarray, cone_dual: np.ndarray | None):
    """(R, α*): R (k × n_active) holds the ray (s0, −s̄) of every cone whose point is on the boundary (the solver's
    z when the point is ~0), α* the solver's cone dual projected on that ray."""
    if not prog.k:
        return sp.csr_matrix((0, 0)), np.zeros(0)
    s = prog.cone_b - prog.cone_A @ x
    z = np.zeros(prog.k) if cone_dual is None else np.asarray(cone_dual, float)
    cols, rows, vals, alpha = [], [], [], []
    start = 0
    n_active = 0
    for dim, count in prog.cone_dims:
        blk = s[start : start + dim * count].reshape(count, dim)
        zb = z[start : start + dim * count].reshape(count, dim)
        s0, sbar = blk[:, 0], np.linalg.norm(blk[:, 1:], axis=1)
        on_boundary = s0 - sbar <= CONE_TOL * (1.0 + np.abs(s0))
        ray = np.column_stack([blk[:, :1], -blk[:, 1:]])
        at_origin = np.abs(s0) <= CONE_TOL
        ray[at_origin] = zb[at_origin]  # no ray at the origin: keep the solver's direction
        norm = np.linalg.norm(ray, axis=1)
        act = np.flatnonzero(on_boundary & (norm > 0))
        ray = ray[act] / norm[act, None]
        a_star = np.maximum(np.einsum("ij,ij->i", ray, zb[act]), 0.0)
        k_rows = start + act[:, None] * dim + np.arange(dim)
        rows.append(k_rows.ravel())
        cols.append(np.repeat(n_active + np.arange(len(act)), dim))
        vals.append(ray.ravel())
        alpha.append(a_star)
        n_active += len(act)
        start += dim * count
    R = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(prog.k, n_active))
    return R, np.concatenate(alpha)


class DualFace:
    """The LP of the optimal duals of `prog` at the solution `sol` (see module docstring).

    Variables of the face LP: y (one per program row), then α (one per active cone)."""

    def __init__(self, prog: Program, sol: Solution):
        if sol.row_dual is None:
            raise ValueError("the solution carries no row duals (a MIP): price the program with its binaries fixed")
        t0 = time.perf_counter()
        x, y_star = sol.x, np.asarray(sol.row_dual, float)
        A = sp.csr_matrix(prog.A)
        m, n = prog.m, prog.n
        # rows: sign of the dual from the active bound
        ax = A @ x
        lo, hi = prog.row_lo, prog.row_hi
        eq = lo == hi
        at_lo = np.isfinite(lo) & (ax - lo <= ACTIVITY_TOL * (1.0 + np.abs(np.nan_to_num(lo, posinf=0, neginf=0))))
        at_hi = np.isfinite(hi) & (hi - ax <= ACTIVITY_TOL * (1.0 + np.abs(np.nan_to_num(hi, posinf=0, neginf=0))))
        y_lo = np.where(eq | at_hi, -np.inf, 0.0)
        y_hi = np.where(eq | at_lo, np.inf, 0.0)
        y_lo, y_hi = np.minimum(y_lo, y_star), np.maximum(y_hi, y_star)
        # cones: rays of the active ones
        R, a_star = _ray_matrix(prog, x, sol.cone_dual)
        GR = (sp.csr_matrix(prog.cone_A).T @ R).tocsr() if prog.k else sp.csr_matrix((n, 0))
        # columns: sign of the reduced cost from the position of x*
        lb, ub = prog.lb, prog.ub
        fixed = (lb == ub) | prog.integrality  # restricted pricing: binaries count as fixed at x*
        at_lb = np.isfinite(lb) & (x - lb <= ACTIVITY_TOL * (1.0 + np.abs(np.nan_to_num(lb, posinf=0, neginf=0))))
        at_ub = np.isfinite(ub) & (ub - x <= ACTIVITY_TOL * (1.0 + np.abs(np.nan_to_num(ub, posinf=0, neginf=0))))
        d_star = prog.c - A.T @ y_star + GR @ a_star
        d_lo = np.where(at_ub, -np.inf, 0.0)
        d_hi = np.where(at_lb, np.inf, 0.0)
        d_lo = np.minimum(d_lo, d_star) - DUAL_SLACK
        d_hi = np.maximum(d_hi, d_star) + DUAL_SLACK
        keep = np.flatnonzero(~fixed)
        # c − A'y + GR α ∈ [d_lo, d_hi]   ⇔   −A'y + GR α ∈ [d_lo − c, d_hi − c]
        M = sp.hstack([-A.T, GR], format="csc")[keep]
        self.m, self.n_alpha, self._n_rows = m, R.shape[1], len(keep)
        self.y_star = y_star
        self._h = self._highs(
            sp.csc_matrix(M),
            np.concatenate([y_lo, np.zeros(self.n_alpha)]),
            np.concatenate([y_hi, np.full(self.n_alpha, np.inf)]),
            (d_lo - prog.c)[keep],
            (d_hi - prog.c)[keep],
        )
        # without the program's simplex basis (an interior-point solve, e.g. with cones) the first objective is
        # solved by interior point + crossover, the later ones warm by simplex (measured on the italy-652
        # integrated clearing: 60 s cold simplex, 34 s with presolve, 14 s interior point + crossover)
        warm = sol.basis is not None and not self.n_alpha and self._warm_start(sol.basis, keep)
        self._cold = not warm and M.shape[0] + M.shape[1] > COLD_IPM_SIZE
        self.build_s = time.perf_counter() - t0

    def _warm_start(self, basis: tuple[np.ndarray, np.ndarray], keep: np.ndarray) -> bool:
        """Start the face LP from the complement of the program's optimal simplex basis: y_r is basic where row
        r was nonbasic (active), and the reduced-cost row of column j is basic where column j was nonbasic.  That
        is the solver's dual vertex y*, so the first objective needs only a few pivots instead of a cold start."""
        col_status, row_status = basis
        basic = int(highspy.HighsBasisStatus.kBasic.value)
        lower = highspy.HighsBasisStatus.kLower
        b = highspy.HighsBasis()
        kinds = np.array([lower, highspy.HighsBasisStatus.kBasic], dtype=object)
        b.col_status = kinds[(row_status != basic).astype(np.intp)].tolist()
        b.row_status = kinds[(col_status[keep] != basic).astype(np.intp)].tolist()
        if self._h.setBasis(b) == highspy.HighsStatus.kError:
            self._h.setBasis()  # fall back to a cold start
            return False
        return True

    @staticmethod
    def _highs(M: sp.csc_matrix, col_lo, col_hi, row_lo, row_hi) -> highspy.Highs:
        from ..solvers.highs import _new_highs

        inf = highspy.kHighsInf
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = M.shape[1], M.shape[0]
        lp.col_cost_ = np.zeros(M.shape[1])
        lp.col_lower_ = np.clip(col_lo, -inf, inf)
        lp.col_upper_ = np.clip(col_hi, -inf, inf)
        lp.row_lower_ = np.clip(row_lo, -inf, inf)
        lp.row_upper_ = np.clip(row_hi, -inf, inf)
        M = sp.csc_matrix(M)
        M.sort_indices()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = M.shape[1], M.shape[0]
        lp.a_matrix_.start_ = M.indptr.astype(np.int32)
        lp.a_matrix_.index_ = M.indices.astype(np.int32)
        lp.a_matrix_.value_ = M.data.astype(float)
        h = _new_highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        # presolve off: every objective after the first starts from the previous basis (warm start)
        h.setOptionValue("presolve", "off")
        # devex pricing: exact steepest-edge weights for a given start basis cost one solve per row (20 s on
        # the italy-652 transmission face, for 200 pivots)
        h.setOptionValue("simplex_dual_edge_weight_strategy", 1)
        # no simplex scaling: the face's columns are the program's rows, among them cut rows whose slope entries
        # span 1 to 1e-7 of their largest, and HiGHS's equilibration of those sent its warm dual simplex into
        # repeated "possibly dual unbounded" rebuilds (measured on a repair candidate's transmission face of a
        # generated 100-area system, 3 555 × 7 381: 18.1 s scaled, 0.06 s unscaled; on 172 faces of italy-652,
        # italy-693, the built-in example and generated systems, centralized and hierarchical: 25.9 s → 7.6 s in
        # all, none slower by more than 4 ms, the intervals the same but for alternative optima of two DSO faces
        # with several degrees of freedom, 6e-4 and 4e-6 €/MWh apart)
        h.setOptionValue("simplex_scale_strategy", 0)
        h.passModel(lp)
        return h

    def _optimise(self, cost: np.ndarray) -> np.ndarray | None:
        """Minimise cost·(y, α) over the face; the y part of the optimum, None if HiGHS does not prove one."""
        from ..solvers.highs import _run

        h = self._h
        idx = np.arange(len(cost), dtype=np.int32)
        h.changeColsCost(len(idx), idx, np.asarray(cost, float))
        if self._cold:
            for name, value in (("solver", "ipm"), ("presolve", "on"), ("run_crossover", "on")):
                h.setOptionValue(name, value)
            try:
                _run(h, 1)
            finally:
                h.setOptionValue("solver", "simplex")
                h.setOptionValue("presolve", "off")
                self._cold = False
        else:
            _run(h, 1)
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return np.asarray(h.getSolution().col_value, float)[: self.m]

    def _cost(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        cost = np.zeros(self.m + self.n_alpha)
        cost[rows] = weights
        return cost

    def ranges(self, rows: np.ndarray, weights: np.ndarray | None = None) -> FaceRanges:
        """Lowest and highest optimal dual of each row in `rows` from min and max Σ w_r y_r (see module
        docstring); rows where HiGHS proves no optimum keep the solver's dual on that side."""
        t0 = time.perf_counter()
        rows = np.asarray(rows, dtype=np.int64)
        w = np.ones(len(rows)) if weights is None else np.asarray(weights, float)
        ys = [self.y_star[rows]]
        for sign in (1.0, -1.0):
            y = self._optimise(self._cost(rows, sign * w))
            if y is not None:
                ys.append(y[rows])
        stack = np.vstack(ys)
        self._reset()
        return FaceRanges(rows, stack.min(axis=0), stack.max(axis=0), time.perf_counter() - t0)

    def exact_ranges(self, rows: np.ndarray) -> FaceRanges:
        """Exact lowest and highest optimal dual of each row: two LPs per row (warm-started)."""
        t0 = time.perf_counter()
        rows = np.asarray(rows, dtype=np.int64)
        lo, hi = self.y_star[rows].copy(), self.y_star[rows].copy()
        for k, r in enumerate(rows):
            for sign in (1.0, -1.0):
                y = self._optimise(self._cost(np.array([r]), np.array([sign])))
                if y is not None:
                    lo[k], hi[k] = min(lo[k], y[r]), max(hi[k], y[r])
        self._reset()
        return FaceRanges(rows, lo, hi, time.perf_counter() - t0)

    def nearest(self, rows: np.ndarray, reference: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The optimal dual vector (length m) minimising Σ w_r |y_r − reference_r| over `rows`: the published
        prices of a degenerate face.  The solver's duals if HiGHS proves no optimum."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return self.y_star.copy()
        w = np.ones(len(rows)) if weights is None else np.asarray(weights, float)
        h = self._h
        nc = self.m + self.n_alpha
        k = len(rows)
        # deviations u, v >= 0 with y_r − u + v = reference_r
        h.addCols(2 * k, np.concatenate([w, w]), np.zeros(2 * k), np.full(2 * k, highspy.kHighsInf), 0, [], [], [])
        starts = np.arange(k, dtype=np.int32) * 3
        index = np.column_stack([rows, nc + np.arange(k), nc + k + np.arange(k)]).ravel().astype(np.int32)
        value = np.tile([1.0, -1.0, 1.0], k)
        ref = np.asarray(reference, float)
        h.addRows(k, ref, ref, len(index), starts, index, value)
        y = self._optimise(np.zeros(nc))
        h.deleteRows(k, np.arange(self._n_rows, self._n_rows + k, dtype=np.int32))
        h.deleteCols(2 * k, np.arange(nc, nc + 2 * k, dtype=np.int32))
        self._reset()
        return self.y_star.copy() if y is None else y

    def _reset(self) -> None:
        """Back to a zero objective."""
        idx = np.arange(self.m + self.n_alpha, dtype=np.int32)
        self._h.changeColsCost(len(idx), idx, np.zeros(len(idx)))
