"""Upper bounds of the children's costs from the points where they were evaluated (docs/model.md §6.3).

Each C_a is convex, so at any exchange x inside the convex hull of points p_i where C_a was evaluated,

    C_a(x) <= U_a(x) = min { Σ λ_i v_i : Σ λ_i p_i = x, Σ λ_i = 1, λ >= 0 },   v_i = C_a(p_i)

(the inner approximation, Dantzig–Wolfe's restricted master).  Together with the cut model m_a(x) <= C_a(x)
it brackets the child's cost without asking it: when U_a(x_a) − m_a(x_a) is small, a new evaluation could
improve neither bound by more than that, so the cut exchange may skip it (an "on-demand accuracy" oracle) and
count U_a in its upper bound, which stays a valid bound of a deliverable clearing: the convex combination of
the child's relaxed solutions at the p_i is a relaxed solution at x of cost at most U_a.
"""

from __future__ import annotations

import highspy
import numpy as np

_INF = highspy.kHighsInf


class InnerBound:
    """U_a(x_a) for every child, one small LP each (T + 1 rows, one column per evaluated point), re-using one
    HiGHS instance.  Duplicate points are merged (keeping the lowest value: all are exact evaluations)."""

    def __init__(self) -> None:
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("threads", 1)
        self.h.setOptionValue("presolve", "off")
        self.h.setOptionValue("primal_feasibility_tolerance", 1e-9)

    def _one(self, points: np.ndarray, values: np.ndarray, lipschitz: float, x: np.ndarray) -> float:
        k, T = points.shape
        # a point already evaluated: its value (no LP, and exact)
        hit = np.all(np.abs(points - x) <= 1e-12, axis=1)
        if hit.any():
            return float(values[hit].min())
        lo, hi = points.min(axis=0), points.max(axis=0)
        if np.any(x < lo - 1e-9) or np.any(x > hi + 1e-9):
            return np.inf  # outside the bounding box, hence outside the hull
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = k, T + 1
        lp.col_cost_ = values.astype(float)
        lp.col_lower_ = np.zeros(k)
        lp.col_upper_ = np.full(k, _INF)
        rhs = np.concatenate([x, [1.0]])
        lp.row_lower_, lp.row_upper_ = rhs, rhs.copy()
        A = np.vstack([points.T, np.ones((1, k))])  # dense: (T + 1) × k with T <= 96
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.arange(0, (T + 1) * (k + 1), T + 1, dtype=np.int32)
        lp.a_matrix_.index_ = np.tile(np.arange(T + 1, dtype=np.int32), k)
        lp.a_matrix_.value_ = A.T.ravel()
        self.h.clearModel()
        self.h.passModel(lp)
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return np.inf
        lam = np.maximum(np.asarray(self.h.getSolution().col_value), 0.0)
        lam /= lam.sum()
        # the combination meets x only to the LP's tolerance: C(x) <= C(x') + L·|x − x'|₁ with L the largest
        # slope seen (a Lipschitz estimate; the residual is ~1e-9 MW, so the term is ~1e-7 € at most)
        residual = np.abs(points.T @ lam - x).sum()
        if residual > 1e-6:
            return np.inf
        return float(values @ lam) + lipschitz * residual

    def values(
        self, area: np.ndarray, points: np.ndarray, values: np.ndarray, slopes: np.ndarray, x: np.ndarray
    ) -> np.ndarray:
        """U_a(x_a) for each child a (rows of x, (A, T) MW) from the evaluations (area, points MW, values €,
        slopes €/MW); +inf where x_a is outside the hull of its points."""
        out = np.full(x.shape[0], np.inf)
        order = np.argsort(area, kind="stable")
        starts = np.searchsorted(area[order], np.arange(x.shape[0] + 1))
        for a in range(x.shape[0]):
            idx = order[starts[a] : starts[a + 1]]
            if len(idx):
                out[a] = self._one(points[idx], values[idx], float(np.abs(slopes[idx]).max()), x[a])
        return out
