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
    """U_a(x_a) for every child at once: one LP, block-diagonal by child, with (T + 1) rows per child (the point
    and the weights' sum) and one column per evaluated point, re-using one HiGHS instance (measured: one LP per
    child cost ~4 ms each, too much for 1 000 children; the block LP ~1 ms per child).  Elastic columns (±1 per
    row, priced above any slope the child ever reported, so not cheaper than a combination when one exists)
    keep the LP feasible; a child whose elastic columns are used counts as outside its hull: +inf (it is then
    asked, so a too-cautious answer costs an evaluation, never a wrong bound)."""

    def __init__(self) -> None:
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("threads", 1)
        self.h.setOptionValue("presolve", "off")
        self.h.setOptionValue("primal_feasibility_tolerance", 1e-9)

    def values(
        self, area: np.ndarray, points: np.ndarray, values: np.ndarray, slopes: np.ndarray, x: np.ndarray
    ) -> np.ndarray:
        """U_a(x_a) for each child a (rows of x, (A, T) MW) from the evaluations (area, points MW, values €,
        slopes €/MW); +inf where x_a is outside the hull of its points."""
        A_all, T = x.shape
        out = np.full(A_all, np.inf)
        area = np.asarray(area, np.int64)
        # only children whose x_a lies in the bounding box of their points can be inside the hull
        lo = np.full((A_all, T), np.inf)
        hi = np.full((A_all, T), -np.inf)
        np.minimum.at(lo, area, points)
        np.maximum.at(hi, area, points)
        cand_mask = np.all((x >= lo - 1e-9) & (x <= hi + 1e-9), axis=1)
        # x_a at a point where the child was evaluated: its value, exactly (no LP)
        hit = np.all(np.abs(points - x[area]) <= 1e-12, axis=1)
        if hit.any():
            np.minimum.at(out, area[hit], values[hit])
            cand_mask[area[hit]] = False
        cand = np.flatnonzero(cand_mask)
        if len(cand) == 0:
            return out
        keep = np.isin(area, cand)
        local = np.searchsorted(cand, area[keep])
        u = self._block(local, points[keep], values[keep], slopes[keep], x[cand])
        out[cand] = u
        return out

    def _block(
        self, area: np.ndarray, points: np.ndarray, values: np.ndarray, slopes: np.ndarray, x: np.ndarray
    ) -> np.ndarray:
        A, T = x.shape
        K = len(area)
        out = np.full(A, np.inf)
        R = T + 1  # rows per child
        # columns: the K points, then 2·A·R elastic columns (every row, the weights' sum included: a child
        # without points has only those)
        rows_pts = area[:, None] * R + np.arange(R)[None, :]  # (K, R)
        vals_pts = np.hstack([points, np.ones((K, 1))])
        el_rows = np.repeat(np.arange(A * R), 2)
        el_vals = np.tile([1.0, -1.0], A * R)
        # values relative to the child's lowest (a combination then costs between 0 and the value range); an
        # elastic column on a point row costs far more than the child's slopes, one on the weights' row more than
        # any combination could save (a too-cautious price only costs an evaluation, never a wrong bound)
        steep = np.zeros(A)
        np.maximum.at(steep, area, np.abs(slopes).max(axis=1))
        vmin, vmax = np.full(A, np.inf), np.full(A, -np.inf)
        np.minimum.at(vmin, area, values)
        np.maximum.at(vmax, area, values)
        lo, hi = np.full((A, T), np.inf), np.full((A, T), -np.inf)
        np.minimum.at(lo, area, points)
        np.maximum.at(hi, area, points)
        span = (hi - lo).max(axis=1)
        rel = values - vmin[area]
        # (an inner facet between close points can be steeper than any reported slope: margin ×100 on the larger
        # of the slopes and the value range over the points' span)
        point_cost = 100.0 * (steep + (vmax - vmin) / np.maximum(span, 1e-3) + 1.0)
        sum_cost = 10.0 * ((vmax - vmin) + point_cost * span + 1.0)
        el_cost = np.repeat(np.hstack([np.repeat(point_cost[:, None], T, axis=1), sum_cost[:, None]]).ravel(), 2)
        n = K + 2 * A * R
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, A * R
        lp.col_cost_ = np.concatenate([rel.astype(float), el_cost])
        lp.col_lower_ = np.zeros(n)
        lp.col_upper_ = np.full(n, _INF)
        rhs = np.hstack([x, np.ones((A, 1))]).ravel()
        lp.row_lower_, lp.row_upper_ = rhs, rhs.copy()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.concatenate([np.arange(0, K * R + 1, R), K * R + np.arange(1, 2 * A * R + 1)])
        lp.a_matrix_.index_ = np.concatenate([rows_pts.ravel(), el_rows]).astype(np.int32)
        lp.a_matrix_.value_ = np.concatenate([vals_pts.ravel(), el_vals])
        self.h.clearModel()
        self.h.passModel(lp)
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return out
        col = np.asarray(self.h.getSolution().col_value)
        lam, elastic = np.maximum(col[:K], 0.0), col[K:].reshape(A, 2 * R)
        inside = elastic.max(axis=1) <= 1e-9
        weight = np.bincount(area, lam, minlength=A)
        ok = inside & (weight > 0)
        lam = lam / np.where(weight > 0, weight, 1.0)[area]
        # the combination meets x only to the LP's tolerance: C(x) <= C(x') + L·|x − x'|₁ with L the largest
        # slope of the child (a Lipschitz estimate; the residual is at most 1e-8 MW, so the term is at most ~1e-4 €)
        comb = np.zeros((A, T))
        np.add.at(comb, area, lam[:, None] * points)
        residual = np.abs(comb - x).sum(axis=1)
        ok &= residual <= 1e-8
        u = vmin + np.bincount(area, lam * rel, minlength=A) + steep * residual
        out[ok] = u[ok]
        return out
