"""The parent's master LP of the cut exchange, kept alive in HiGHS between rounds.

Each round appends the new cuts θ_d >= C_d(x̂) + ρᵀ(x_d − x̂) (one vectorised block) and re-solves from the
previous basis.  Dual simplex with Devex pricing: exact dual steepest-edge weights would be recomputed from
scratch after every model change, which on a national transmission model costs seconds while the re-solve
itself takes a few hundred iterations (measured on italy-652: 4.3 s vs 0.27 s per round).

Stabilisation is a box trust region around the best point (column bounds on the exchanges).  A solve inside
the box still certifies a lower bound of the unrestricted master through its duals (weak duality).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError
from ..formulations.program import Program
from ..solvers import SolveStatus
from ..solvers.highs import PersistentLP, StartBasis, _basis
from ..solvers.result import Solution
from .offers import cut_matrix

LEVEL_ITERATION_LIMIT = 20_000  # simplex iterations of one projection (level) LP solve
# its time limit: max(min, factor × the last bound LP's).  The floor was 5 s until a stopped level LP of an italy-652
# round (~25 ms per simplex iteration instead of ~1.4) cost 5 s in the proposal domain and 5 s again from the bound
# LP's basis; a warm level LP of that system takes ~0.2 s
LEVEL_TIME_MIN_S, LEVEL_TIME_FACTOR = 1.0, 20.0
# how a level step is found: "radius" (the radius search of `CutMaster._level_by_radius`, a few warm re-solves of
# the master in a box) or "projection" (the projection LP, switching to the radius search once one stops at its
# limit: that stop depends on the machine's speed, so the run does too).  Measured 2026-12-04 on the property test's
# 50 variants (docs/model.md §6.3 item 3): the same median gap to centralized (5.3e-7), 981 rounds against 1 003,
# the same certified gaps apart from path luck (seed 11 1.5e-3 against 1.1e-7, seed 39 2.0e-3 against 4.7e-3);
# italy-652 the same rounds and cost with the master's LPs 4.5 s instead of 6.5 s
LEVEL_STEP = "radius"
# the radius search that replaces the projection LP once one stopped (`CutMaster._level_by_radius`): box re-solves
# per step, the first radius when no level step has completed yet, the smallest radius reused (MW), and the factor
# by which a radius grows (shrinks) while no box missed (reached) the level; the search stops once its bracket is
# within this share of its upper end
RADIUS_TRIES, RADIUS_START_MW, RADIUS_MIN_MW, RADIUS_GROWTH, RADIUS_RESOLUTION = 6, 1.0, 1e-6, 4.0, 0.25


@dataclass
class MasterSolution:
    sol: Solution
    x: np.ndarray  # (A, T) exports, MW
    objective: float  # € including the offers' θ
    offer_value: float  # Σ θ, €
    lower_bound: float  # valid lower bound of the unrestricted master, €


class CutMaster:
    """`prog` is the parent's relaxed clearing with θ columns (`theta_cols`, one per child) and the children's
    export columns `x_cols` (A, T); its cuts so far are already rows of `prog`."""

    def __init__(
        self,
        prog: Program,
        x_cols: np.ndarray,
        theta_cols: np.ndarray,
        threads: int = 1,
        start: StartBasis | None = None,
    ):
        """`start`: a basis of the parent's clearing without its children's cuts (whose columns and rows come
        first in `prog`), the first solve's warm start; without it the first solve is cold, with presolve."""
        self.prog, self.x_cols, self.theta_cols = prog, x_cols, theta_cols
        self.lp = PersistentLP(prog, threads=threads, presolve_first=True)
        if start is not None:
            self.lp.set_start(start)
        self._bound_lp_s = 0.0  # HiGHS run time of the last bound LP solve (scales the level LP's time limit)
        self.lp.h.setOptionValue("simplex_dual_edge_weight_strategy", 1)  # Devex (see module docstring)
        flat = x_cols.ravel()
        self.x_lb, self.x_ub = prog.lb[flat].copy(), prog.ub[flat].copy()
        self._level: PersistentLP | None = None
        # level steps by the radius search (`_level_by_radius`): always with LEVEL_STEP = "radius", else once a
        # projection LP has stopped at its limit
        self._by_radius = LEVEL_STEP == "radius"
        self._level_radius: float | None = None  # distance (MW, max norm) of the last level step from its center
        self._bound_x: np.ndarray | None = None  # exchanges (A, T) MW of the last unrestricted bound LP
        self._level_m = 0  # rows of `prog` when the level LP was built (its box and level rows come next)
        self._cut_blocks = 0
        self._held: tuple[np.ndarray, np.ndarray] | None = None  # columns held by `hold_columns` and their values
        self.context: object = None  # what the owner needs to read a solution back (its columns, names)
        # simplex iterations and cold restarts since the last `take_stats` (reported per round in the history)
        self.stats: dict[str, Any] = {"simplex_iterations": 0, "cold_restarts": []}

    def take_stats(self) -> dict:
        out, self.stats = self.stats, {"simplex_iterations": 0, "cold_restarts": []}
        return out

    def _note(self, sol) -> None:
        """Count a solve's simplex iterations (once per solve: a failed solve is also `_report`ed)."""
        self.stats["simplex_iterations"] += int(sol.iterations or 0)

    def _report(self, sol, what: str) -> None:
        """An LP that did not end optimal, in the round's history (its iterations are counted by `_note`)."""
        self.stats["cold_restarts"].append(f"{what}: {sol.status.value} {sol.message}")

    def add_cuts(self, area: np.ndarray, points: np.ndarray, values: np.ndarray, slopes: np.ndarray) -> None:
        if len(area) == 0:
            return
        A, lo = cut_matrix(
            area, points, values, slopes, self.theta_cols, self.x_cols, self.prog.n, self.prog.lb, self.prog.ub
        )
        self.lp.add_rows(A, lo, np.inf)
        # the program keeps every cut too, so that a master solution is a solution of `prog` (row for row): a point
        # is published and priced on the master itself, without building the clearing with every cut again
        self._cut_blocks += 1
        self.prog.add_rows(f"master_cuts_{self._cut_blocks}", A, lo, np.inf)
        if self._level is not None:
            self._level.add_rows(self._widen(A), lo, np.inf)

    def set_row_bounds(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """New bounds of rows of the parent's own clearing (e.g. its balances when a fixed injection changed):
        the master, its program and its level LP are updated in place and the next solve starts from the last
        basis (dual simplex: a basis stays dual feasible when only right-hand sides move)."""
        rows = np.asarray(rows, np.int64)
        self.lp.set_row_bounds(rows, lo, hi)
        self.prog.set_row_bounds(rows, lo, hi)
        if self._level is not None:  # the level LP starts with the program's rows, in the same order
            self._level.set_row_bounds(rows, lo, hi)

    def hold_columns(self, cols: np.ndarray, values: np.ndarray) -> Callable[[], None]:
        """Fix columns `cols` at `values` in the master and its level LP until the returned function is called
        (which restores their bounds).  A bound solved meanwhile bounds the master with those columns held only
        (e.g. the parent's binaries held at one configuration)."""
        cols, values = np.asarray(cols, np.int64), np.asarray(values, float)
        lb, ub = self.lp.col_lb[cols].copy(), self.lp.col_ub[cols].copy()
        self.lp.set_col_bounds(cols, values, values)
        if self._level is not None:
            self._level.set_col_bounds(cols, values, values)
        self._held = (cols, values)

        def release() -> None:
            self.lp.set_col_bounds(cols, lb, ub)
            if self._level is not None:
                self._level.set_col_bounds(cols, lb, ub)
            self._held = None

        return release

    def _widen(self, A: sp.csr_matrix) -> sp.csr_matrix:
        """Cut rows with the level LP's extra column t (zero)."""
        return sp.csr_matrix((A.data, A.indices, A.indptr), shape=(A.shape[0], self.prog.n + 1))

    def _level_lp(self) -> PersistentLP:
        """The projection LP of the level method: min t s.t. the master's rows and cuts, |x − center| <= t
        (rows whose bounds carry the center), and cᵀv + c0 <= level (one row carrying the level)."""
        if self._level is None:
            prog = self.prog.copy()
            cost = prog.c.copy()
            prog.set_cost(np.zeros(prog.n))
            c0, prog.c0 = prog.c0, 0.0
            t = prog.add_variables("level_t", 1, 0.0, np.inf, 1.0).index[0]
            flat = self.x_cols.ravel()
            k = len(flat)
            box = sp.csr_matrix(
                (
                    np.concatenate([np.ones(k), -np.ones(k), np.ones(k), np.ones(k)]),
                    (
                        np.concatenate([np.arange(k), np.arange(k), k + np.arange(k), k + np.arange(k)]),
                        np.concatenate([flat, np.full(k, t), flat, np.full(k, t)]),
                    ),
                ),
                shape=(2 * k, prog.n),
            )
            self._box_rows = prog.add_rows(
                "level_box",
                box,
                np.concatenate([np.full(k, -np.inf), np.zeros(k)]),
                np.concatenate([np.zeros(k), np.full(k, np.inf)]),
            ).start
            self._level_row = prog.add_rows("level", sp.csr_matrix(cost).reshape(1, -1), -np.inf, 0.0).start
            self._level_c, self._level_c0, self._k = cost, c0, k
            self._level_m = self.prog.m
            self._level = PersistentLP(prog, threads=self.lp.threads)
            self._level.h.setOptionValue("simplex_dual_edge_weight_strategy", 1)
            # a warm projection LP takes 10-300 simplex iterations (italy-652); past the limit (and past the time
            # limit of `_solve_level`) the round proposes the bound LP's point instead (`solve_level` gives None)
            self._level.h.setOptionValue("simplex_iteration_limit", LEVEL_ITERATION_LIMIT)
            if self._held is not None:  # columns held since before the level LP existed
                self._level.set_col_bounds(self._held[0], self._held[1], self._held[1])
            self._warm_level_from_bound(2 * k + 1)
        return self._level

    def _warm_level_from_bound(self, extra_rows: int) -> None:
        """Start the projection LP from the bound LP's basis (measured on italy-652: a cold first solve of the
        projection LP took 26 s).  Its own rows (box, level) start basic and t nonbasic at 0, so the basis has
        the right size; the cut rows keep their statuses."""
        import highspy

        src = self.lp.h.getBasis()
        if not src.valid:
            return
        rows = list(src.row_status)
        basis = highspy.HighsBasis()
        basis.col_status = list(src.col_status) + [highspy.HighsBasisStatus.kLower]
        m = self._level_m
        basis.row_status = rows[:m] + [highspy.HighsBasisStatus.kBasic] * extra_rows + rows[m:]
        basis.valid = True
        assert self._level is not None  # built before its warm start
        self._level.h.setBasis(basis)

    def set_proposal_domain(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Exchanges (A, T) MW the level steps prefer: the children's slack-free ranges from their curves.  Only
        proposals are restricted (the bound LP keeps the full box, so the lower bound stays valid); a level set
        that misses this domain is searched in the full box."""
        self._domain = (
            np.maximum(self.x_lb, np.asarray(lo, float).ravel()),
            np.minimum(self.x_ub, np.asarray(hi, float).ravel()),
        )

    def solve_level(self, center: np.ndarray, level: float) -> MasterSolution | None:
        """Level step: the point of {cᵀv <= level} nearest to `center` in the max norm over the exchanges, inside
        the proposal domain where the level set meets it, else in the full box.  None if the level set is empty
        (the level is below the model's minimum).  With the radius search (LEVEL_STEP "radius", or once a
        projection LP has stopped at its limit) the step is `_level_by_radius`'s instead of the projection LP's."""
        domain = getattr(self, "_domain", None)
        if domain is not None and not np.all(domain[0] <= domain[1]):
            domain = None
        if self._by_radius:
            out = self._level_by_radius(center, level, domain) if domain is not None else None
            return out if out is not None else self._level_by_radius(center, level, None)
        out = None
        if domain is not None:
            out = self._solve_level(center, level, domain)
        if out is None and not self._by_radius:  # the level set misses the domain (a stop sets `_by_radius`)
            out = self._solve_level(center, level, (self.x_lb, self.x_ub))
        if out is not None:
            self._level_radius = float(np.abs(out.x - np.asarray(center, float)).max())
            return out
        return self._level_by_radius(center, level, None) if self._by_radius else None  # None: an empty level set

    def _level_by_radius(
        self, center: np.ndarray, level: float, domain: tuple[np.ndarray, np.ndarray] | None
    ) -> MasterSolution | None:
        """A level step without the projection LP: the master's minimum inside the box |x − center| <= r (column
        bounds: a warm re-solve like the bound LP), for a few radii r, keeping the smallest box whose minimum lies
        in the level set.  The projection's distance t* is the smallest such r, so this is the level step up to
        the search's resolution (its point is the box's minimum, not the nearest point).  Measured on a generated
        1 000-area system (round 4): the projection LP took 41 s from the bound LP's basis (7 332 iterations,
        dual simplex; 23 s by interior point) and stopped at its limit from its own; a box re-solve took 1-2 s
        and at the projection's radius (0.79 MW) its minimum was the level (−8 791 € for −8 751 €).
        `domain` ((lo, hi) MW, flat): the boxes are cut to it (the curves' slack-free ranges), and the search
        runs up to the radius that covers all of it.  None: no box tried reached the level (the caller then
        searches the full box, or proposes the bound LP's point)."""
        c = np.asarray(center, float).ravel()
        bound_s = self._bound_lp_s
        if domain is None:
            # the last bound LP's point is in the level set (its objective is LB <= level): search [0, r_hi]
            r_hi = float(np.abs(self._bound_x.ravel() - c).max()) if self._bound_x is not None else np.inf
        else:
            r_hi = float(np.maximum(np.abs(domain[0] - c), np.abs(domain[1] - c)).max())  # the whole domain
        best: MasterSolution | None = None
        best_r, lo_r = r_hi, 0.0
        r = self._level_radius if self._level_radius and self._level_radius > RADIUS_MIN_MW else RADIUS_START_MW
        r = min(r, 0.5 * r_hi)
        tries = RADIUS_TRIES if domain is None else RADIUS_TRIES + 1  # the last try may be the whole domain
        try:
            for i in range(tries):
                if np.isfinite(best_r) and best_r - lo_r <= RADIUS_RESOLUTION * best_r:
                    break
                if domain is not None and i == tries - 1 and best is None:
                    r = r_hi  # no box reached the level yet: the whole domain decides whether it ever does
                box = self._box(c, r, domain)
                ms = None if box is None else self._solve_in(*box, unrestricted=False)
                if ms is not None and ms.objective <= level + 1e-9 * max(1.0, abs(level)):
                    best, best_r = ms, r
                    r = 0.5 * (lo_r + r) if lo_r > 0 else r / RADIUS_GROWTH
                else:
                    lo_r = r
                    if domain is not None and r >= r_hi:
                        break  # the level set misses the domain
                    r = min(RADIUS_GROWTH * r, 0.5 * (r + best_r)) if best is None else 0.5 * (r + best_r)
                    if best is None:
                        r = min(r, r_hi)
        except SolverError:
            pass
        finally:
            self._bound_lp_s = bound_s  # the bound LP's own time (the box solves are not the round's bound)
            self.lp.set_col_bounds(self.x_cols.ravel(), self.x_lb, self.x_ub)  # the master's own box again
        if best is None:
            return None
        self._level_radius = best_r
        best.lower_bound = -np.inf
        return best

    def _solve_level(self, center: np.ndarray, level: float, box) -> MasterSolution | None:
        lp = self._level_lp()
        lp.set_col_bounds(self.x_cols.ravel(), box[0], box[1])
        c = np.asarray(center, float).ravel()
        k = self._k
        lp.set_row_bounds(np.arange(self._box_rows, self._box_rows + k), np.full(k, -np.inf), c)
        lp.set_row_bounds(np.arange(self._box_rows + k, self._box_rows + 2 * k), c, np.full(k, np.inf))
        lp.set_row_bounds(np.array([self._level_row]), np.array([-np.inf]), np.array([level - self._level_c0]))
        # an empty level set inside the proposal domain can send HiGHS's dual simplex into a divergent search for
        # its infeasibility proof at seconds per iteration (seen on italy-652 with an experimental curve sampling,
        # docs/history.md: minutes in one LP), which the iteration limit does not catch; a warm level LP takes
        # about as long as a bound LP, so LEVEL_TIME_FACTOR of those (at least LEVEL_TIME_MIN_S) stops it.  Only
        # a stopped LP depends on the machine's speed; its round searches the full box next (`solve_level`) and
        # proposes the bound LP's point if that stops too
        lp.time_limit_s = max(LEVEL_TIME_MIN_S, LEVEL_TIME_FACTOR * self._bound_lp_s)
        sol = lp.solve()
        self._note(sol)
        # an empty level set is an expected answer (proven infeasible from the warm basis), and so is a stop at a
        # limit (the same LP again would stop again: measured on italy-652, 5 s more); only numerical failures get
        # a re-solve (measured on italy-652: a cold re-solve of an infeasible level LP took 35 s)
        if sol.status not in (SolveStatus.OPTIMAL, SolveStatus.INFEASIBLE) and not lp.stopped_at_limit():
            # restart from the bound LP's basis, never from scratch (a cold re-solve took 30 000 iterations; the
            # primal simplex from the failed basis was tried too: 64 000 iterations on a generated 73-area system)
            self._report(sol, "level")
            self._warm_level_from_bound(2 * self._k + 1)
            sol = lp.solve()
            self._note(sol)
        if lp.stopped_at_limit():
            # reported in the round's history; the projection LP is not solved again in this run (where it left its
            # basis depends on the machine's speed, and it would likely stop again): `solve_level` searches radii
            self._report(sol, "level")
            self._by_radius = True
        if sol.status is not SolveStatus.OPTIMAL:
            return None
        x = sol.x[: self.prog.n]
        sol.x = x
        sol.objective = float(self._level_c @ x + self._level_c0)
        sol.row_dual = None
        return MasterSolution(
            sol=sol,
            x=x[self.x_cols],
            objective=sol.objective,
            offer_value=float(x[self.theta_cols].sum()),
            lower_bound=-np.inf,
        )

    def solve_fixed(self, x: np.ndarray) -> MasterSolution:
        """The master with the exchanges fixed at `x` (prices consistent with a published relaxed point), with its
        simplex basis: the point's price intervals start from it (`market.dual_face`; measured on italy-652 in a
        federation: 2.45 s by interior point without it)."""
        out = self.solve_with_columns_fixed(self.x_cols.ravel(), np.asarray(x, float).ravel(), keep_basis=True)
        if out is None:
            raise SolverError("master LP at fixed exchanges failed")
        return out

    def solve_with_columns_fixed(
        self, cols: np.ndarray, values: np.ndarray, keep_basis: bool = False
    ) -> MasterSolution | None:
        """The master with columns `cols` fixed at `values` (warm start; the bounds are restored afterwards).
        None if that LP is not solved to optimality (e.g. binaries fixed at an inconsistent combination).  Its
        objective bounds nothing (lower_bound = −inf).  `keep_basis`: the solution carries its simplex basis (a
        published point: its price intervals start from it, `market.dual_face`; measured on italy-652: the
        TSO's price intervals 2.7 s by interior point without it, 0.8 s from the basis, reading it 0.14 s)."""
        cols = np.asarray(cols, np.int64)
        lb, ub = self.lp.col_lb[cols].copy(), self.lp.col_ub[cols].copy()
        self.lp.set_col_bounds(cols, values, values)
        try:
            sol = self.lp.solve()
            self._note(sol)
            if sol.status not in (SolveStatus.OPTIMAL, SolveStatus.INFEASIBLE):
                # numerical trouble from the warm basis (seen on italy-652 in a federation after a dozen moves of
                # its injections): primal simplex, then cold; an infeasible combination is an answer
                self._report(sol, "fixed")
                sol = self.lp.solve_again()
                self._note(sol)
            if keep_basis and sol.status is SolveStatus.OPTIMAL:
                sol.basis = _basis(self.lp.h)
        finally:
            self.lp.set_col_bounds(cols, lb, ub)
        if sol.status is not SolveStatus.OPTIMAL:
            return None
        return MasterSolution(
            sol=sol,
            x=sol.x[self.x_cols],
            objective=float(sol.objective),
            offer_value=float(sol.x[self.theta_cols].sum()),
            lower_bound=-np.inf,
        )

    def solve(self, center: np.ndarray | None = None, radius: float | None = None) -> MasterSolution:
        """Solve the master; with `center`/`radius`, inside the box |x − center| <= radius (a trust region)."""
        if center is None:
            return self._solve_in(self.x_lb, self.x_ub, unrestricted=True)
        box = self._box(center, float(radius if radius is not None else np.inf), None)
        assert box is not None  # without a domain the box always meets the master's own
        return self._solve_in(*box, unrestricted=False)

    def _box(
        self, center: np.ndarray, radius: float, domain: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Column bounds (flat, MW) of the box |x − center| <= radius within the master's own, cut to `domain`;
        None if that cut is empty."""
        c = np.asarray(center, float).ravel()
        lo = np.minimum(np.maximum(self.x_lb, c - radius), self.x_ub)
        hi = np.maximum(np.minimum(self.x_ub, c + radius), self.x_lb)
        if domain is not None:
            lo, hi = np.maximum(lo, domain[0]), np.minimum(hi, domain[1])
            if np.any(lo > hi):
                return None
        return lo, hi

    def _solve_in(self, lo: np.ndarray, hi: np.ndarray, unrestricted: bool) -> MasterSolution:
        flat = self.x_cols.ravel()
        self.lp.set_col_bounds(flat, lo, hi)
        sol = self.lp.solve()
        self._bound_lp_s = sol.solve_time_s
        self._note(sol)
        if sol.status is not SolveStatus.OPTIMAL:  # warm start went astray: primal simplex, then cold with presolve
            self._report(sol, "bound")
            sol = self.lp.solve_again()
            self._note(sol)
        if sol.status is not SolveStatus.OPTIMAL:
            raise SolverError(f"master LP failed: {sol.status.value} {sol.message}")
        col_lb, col_ub = self.lp.col_lb.copy(), self.lp.col_ub.copy()
        col_lb[flat], col_ub[flat] = self.x_lb, self.x_ub
        bound = self.lp.dual_bound(sol, col_lb, col_ub)
        if unrestricted:
            self._bound_x = sol.x[self.x_cols]
        objective = float(sol.objective)  # HiGHS includes the offset c0
        lb = min(bound, objective) if np.isfinite(bound) else -np.inf
        if unrestricted:
            lb = objective
        return MasterSolution(
            sol=sol,
            x=sol.x[self.x_cols],
            objective=objective,
            offer_value=float(sol.x[self.theta_cols].sum()),
            lower_bound=lb,
        )
