"""Clarabel adapter for LP and SOCP `Program`s.

Clarabel solves  min q'x  s.t.  M x + s = b,  s in K  (P = 0 here).  Rows are stacked in this order:

    zero cone      equality rows (lo == hi finite):  A x + s = lo          and fixed variables:  x + s = lb
    nonnegative    finite row hi:   A x + s = hi   |  finite row lo:  -A x + s = -lo
                   finite var ub:   x + s = ub     |  finite var lb:  -x + s = -lb
    SOC(d)...      program cones:   cone_A x + s = cone_b

Clarabel's dual z satisfies d(obj)/d(b) = -z (docs/model.md §1).  Hence, per program row r,
    row_dual[r] = -z_eq                    (equality),
    row_dual[r] = -z_hi + z_lo             (inequality: b = hi gives -z_hi <= 0, b = -lo gives +z_lo >= 0),
i.e. d(objective)/d(active bound), the same convention as HiGHS.  `cone_dual` is z on the cone rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import clarabel
import numpy as np
import scipy.sparse as sp

from tdmarket.formulations.program import Program
from tdmarket.solvers.acceptance import cone_violation
from tdmarket.solvers.result import Solution, SolveStatus, usable_statuses

# Mapped by status name: str(res.status) is e.g. "Solved", "AlmostSolved".
_STATUS = {
    "Solved": SolveStatus.OPTIMAL,
    "AlmostSolved": SolveStatus.ALMOST_OPTIMAL,
    "PrimalInfeasible": SolveStatus.INFEASIBLE,
    "DualInfeasible": SolveStatus.UNBOUNDED,
    "MaxTime": SolveStatus.TIME_LIMIT,  # x is the last interior-point iterate, not necessarily feasible
    # Certificates met only at the reduced tolerances are not trusted as proofs of infeasibility/unboundedness.
    "AlmostPrimalInfeasible": SolveStatus.NUMERICAL_ERROR,
    "AlmostDualInfeasible": SolveStatus.NUMERICAL_ERROR,
    "NumericalError": SolveStatus.NUMERICAL_ERROR,
    "InsufficientProgress": SolveStatus.NUMERICAL_ERROR,
}


def _check_bounds(lo: np.ndarray, hi: np.ndarray, what: str) -> None:
    # A lower bound of +inf or an upper bound of -inf has no Clarabel row; reject instead of dropping it.
    if np.any(np.isposinf(lo)) or np.any(np.isneginf(hi)):
        raise ValueError(f"{what}: lower bound +inf or upper bound -inf")


# Settings tried in turn when a solve at the default tolerance ends without an acceptable point.  Measured on an
# italy-652 DSO dispatch (cost ~1e-5 €, binaries fixed): at 1e-9 Clarabel ended "almost solved" after 38
# iterations with a cone violated by 1.5e-4 (scaled), and every MILP round proposed the same binaries, so no
# integer point was ever accepted; at 1e-8 the same SOCP is solved in 19 iterations.
RETRY_SETTINGS: tuple[dict, ...] = (
    {"tol": 1e-8},
    {"tol": 1e-7, "max_iter": 400},
    {"tol": 1e-8, "static_regularization_constant": 1e-7},
)


# Settings for the many evaluations of a decomposition (a DSO's relaxed cost at an exchange, its ranges): each KKT
# solve's iterative refinement stops at a residual of 1e-10 instead of Clarabel's 1e-13, which it rarely reaches (it
# then runs its steps until they stop improving).  The areas' KKT systems are almost trees: the factorisation is
# cheap and the refinement steps were a third of an iteration.  Measured on 16 italy-652 areas at the 806 points a
# run evaluated them at: 11.7 -> 8.7 s, the same iteration counts, costs within 2.5e-5 EUR of the default's.
# Refinement off altogether was 35 % faster still but wrong by up to 1.75 EUR (the built-in example's exchange
# then certified a point 2.4e-5 above centralized as within 1e-5).
EVALUATION_SETTINGS: dict = {"iterative_refinement_reltol": 1e-10, "iterative_refinement_abstol": 1e-10}

# A leaf area's evaluations (a DSO without sub-DSOs) only give its parent a cost and a slope: they close the duality
# gap to 1e-7 (absolute €, and relative) with feasibility kept at 1e-9.  At a 1e-9 gap 116 of the 596 exchange
# evaluations of an italy-652 run ended "almost solved", which Clarabel reports at its *reduced* tolerances (5e-5)
# after stalling ~33 iterations (35 ms each, twice a solved one); at 1e-7 7-20 of ~380 did.  Their points are never
# published: such an area's dispatch is solved again at the default settings, because its primal point decides the
# face of optimal duals the prices are chosen from (tdmarket.market.pricing).  A parent area keeps
# EVALUATION_SETTINGS: its evaluated point is where it holds its children, and a second solve may move them.
LEAF_EVALUATION_SETTINGS: dict = {
    **EVALUATION_SETTINGS,
    "tol_gap_abs": 1e-7,
    "tol_gap_rel": 1e-7,
    "tol_ktratio": 1e-7,
}


def _settings(tol: float, max_iter: int, verbose: bool, time_limit: float | None, **extra) -> clarabel.DefaultSettings:
    s = clarabel.DefaultSettings()
    # Tight tolerances: docs/model.md §3.3 shows default ones leave cost errors in the 6th-8th significant digit.
    s.tol_gap_abs = tol
    s.tol_gap_rel = tol
    s.tol_feas = tol
    s.tol_ktratio = tol
    s.max_iter = int(max_iter)
    s.verbose = bool(verbose)
    s.equilibrate_enable = True
    if time_limit is not None:
        s.time_limit = float(time_limit)
    for name, value in extra.items():  # further Clarabel settings by name (e.g. RETRY_SETTINGS)
        setattr(s, name, value)
    return s


def _cone_layout(program: Program) -> tuple[np.ndarray, np.ndarray]:
    """(dimension, first cone row) of every cone of `program`, in order."""
    dims = np.repeat([d for d, _ in program.cone_dims], [c for _, c in program.cone_dims]).astype(np.int64)
    return dims, np.cumsum(dims) - dims


class OmittedCones:
    """Cones a solve may leave out until a solution comes near them (constraint generation), e.g. thermal circles
    that rarely bind.  Exact: a point that is optimal without the omitted cones and meets each of them with a
    relative margin is optimal with them, and their duals are zero, so cuts and prices are those of the whole
    program.  A cone found within `margin` of its boundary (or beyond it) joins the solve and stays in for
    every later one (`omit` is the learned state; it applies to any program with the same cone layout)."""

    def __init__(self, program: Program, blocks: Sequence[str], margin: float = 1e-6):
        self.dims, starts = _cone_layout(program)
        self.cone_dims = list(program.cone_dims)
        self.margin = float(margin)
        self.omit = np.zeros(len(self.dims), bool)
        for name in blocks:
            block = program.cones.get(name)
            if block is not None and block.size:
                first = int(np.searchsorted(starts, block.start))
                self.omit[first : first + block.size] = True
        self.added = 0  # cones that joined the solves so far

    def applies_to(self, program: Program) -> bool:
        return program.cone_dims == self.cone_dims

    def kept_rows(self) -> np.ndarray:
        """Mask of the cone rows a solve keeps."""
        return np.repeat(~self.omit, self.dims)

    def near(self, program: Program, x: np.ndarray) -> np.ndarray:
        """Mask of the omitted cones that `x` violates or meets within the margin (the acceptance rule's scaled
        cone violation, `tdmarket.solvers.acceptance.cone_violation`)."""
        if not self.omit.any():
            return self.omit.copy()
        return self.omit & (cone_violation(program, x) > -self.margin)

    def include(self, cones: np.ndarray) -> None:
        self.added += int(cones.sum())
        self.omit &= ~cones


def _row_entries(A: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position in `rows`, column, value) of every entry of A's rows `rows`, in that order."""
    start = A.indptr[rows]
    counts = A.indptr[rows + 1] - start
    first = np.cumsum(counts) - counts
    entry = np.arange(int(counts.sum())) + np.repeat(start - first, counts)
    return np.repeat(np.arange(len(rows)), counts), A.indices[entry], A.data[entry]


def _stack(program: Program, cone_rows: np.ndarray | None = None):
    """Clarabel's (M, b, cones) for `program` and the row masks needed to map duals back (see module docstring).
    `cone_rows` (a mask over the cone rows, whole cones only) keeps a subset of the program's cones.  M is
    assembled from index arrays in one step: scipy's slicing and stacking of seven blocks cost more than the
    interior point itself on a small area (6 ms of 10 ms per solve on the property test's variants)."""
    n = program.n
    A = program.A
    lo, hi, lb, ub = program.row_lo, program.row_hi, program.lb, program.ub
    _check_bounds(lo, hi, "row bounds")
    _check_bounds(lb, ub, "variable bounds")
    eq = np.isfinite(lo) & (lo == hi)
    up, dn = np.isfinite(hi) & ~eq, np.isfinite(lo) & ~eq
    fix = np.isfinite(lb) & (lb == ub)
    vub, vlb = np.isfinite(ub) & ~fix, np.isfinite(lb) & ~fix
    n_zero = int(eq.sum()) + int(fix.sum())
    n_nonneg = int(up.sum()) + int(dn.sum()) + int(vub.sum()) + int(vlb.sum())
    G, h = program.cone_A, program.cone_b
    runs = program.cone_dims
    kept = np.arange(program.k)
    if cone_rows is not None:
        kept = np.flatnonzero(cone_rows)
        h = h[kept]
        dims, starts = _cone_layout(program)
        kept_dims = dims[cone_rows[starts]]
        cut = np.flatnonzero(np.diff(kept_dims)) + 1  # runs of equal dimension among the kept cones
        runs = [(int(r[0]), len(r)) for r in np.split(kept_dims, cut) if len(r)]
    # the blocks in stacking order: (matrix or None for the identity, its rows, sign)
    blocks = [
        (A, np.flatnonzero(eq), 1.0),
        (None, np.flatnonzero(fix), 1.0),
        (A, np.flatnonzero(up), 1.0),
        (A, np.flatnonzero(dn), -1.0),
        (None, np.flatnonzero(vub), 1.0),
        (None, np.flatnonzero(vlb), -1.0),
        (G, kept, 1.0),
    ]
    rows, cols, vals = [], [], []
    offset = 0
    for matrix, idx, sign in blocks:
        if matrix is None:
            r, c, v = np.arange(len(idx)), idx, np.ones(len(idx))
        else:
            r, c, v = _row_entries(matrix, idx)
        rows.append(r + offset)
        cols.append(c)
        vals.append(sign * v)
        offset += len(idx)
    row, col, val = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    order = np.lexsort((row, col))  # column-major, rows sorted within each column
    indptr = np.concatenate([[0], np.cumsum(np.bincount(col, minlength=n))])
    M = sp.csc_matrix((val[order], row[order], indptr), shape=(offset, n))
    b = np.concatenate([lo[eq], lb[fix], hi[up], -lo[dn], ub[vub], -lb[vlb], h])
    cones = []
    if n_zero:
        cones.append(clarabel.ZeroConeT(n_zero))
    if n_nonneg:
        cones.append(clarabel.NonnegativeConeT(n_nonneg))
    for dim, count in runs:  # one entry per run of equal-dimension cones, not per cone
        cones.extend([clarabel.SecondOrderConeT(int(dim))] * int(count))
    return M, b, cones, (eq, up, dn, n_zero, n_nonneg, cone_rows)


def _solution(program: Program, res, masks) -> Solution:
    eq, up, dn, n_zero, n_nonneg, cone_rows = masks
    z = np.asarray(res.z, float)
    name = str(res.status)
    # Segment offsets follow the stacking order of `_stack`.
    n_eq, n_up, n_dn = int(eq.sum()), int(up.sum()), int(dn.sum())
    o_up = n_zero
    o_dn = o_up + n_up
    row_dual = np.zeros(program.m)
    row_dual[eq] = -z[:n_eq]
    row_dual[up] -= z[o_up:o_dn]
    row_dual[dn] += z[o_dn : o_dn + n_dn]
    cone_dual = z[n_zero + n_nonneg :]
    if cone_rows is not None:  # an omitted cone's dual is zero
        cone_dual = np.zeros(program.k)
        cone_dual[cone_rows] = z[n_zero + n_nonneg :]
    return Solution(
        status=_STATUS.get(name, SolveStatus.OTHER),
        x=np.asarray(res.x, float),
        objective=float(res.obj_val) + float(program.c0),
        row_dual=row_dual,
        cone_dual=cone_dual,
        iterations=int(res.iterations),
        solve_time_s=float(res.solve_time),
        solver="clarabel " + getattr(clarabel, "__version__", "?"),
        message=name,
    )


def _with_omitted(program: Program, omitted: OmittedCones | None, solve_kept: Callable[[np.ndarray | None], Solution]):
    """Solve with the omitted cones left out; while the solution comes near one of them, add those and solve
    again.  A solve that is not (almost) optimal is returned as it is: its caller's retry solves the whole program."""
    if omitted is None or not omitted.applies_to(program):
        return solve_kept(None)
    iterations, seconds = 0, 0.0
    while True:
        sol = solve_kept(omitted.kept_rows())
        iterations, seconds = iterations + sol.iterations, seconds + sol.solve_time_s
        if sol.status not in usable_statuses(allow_almost=True):
            return sol
        near = omitted.near(program, sol.x)
        if not near.any():
            return replace(sol, iterations=iterations, solve_time_s=seconds)
        omitted.include(near)


def solve_clarabel(
    program: Program,
    *,
    tol: float = 1e-9,
    max_iter: int = 200,
    verbose: bool = False,
    time_limit: float | None = None,
    omitted: OmittedCones | None = None,
    **settings,
) -> Solution:
    """Solve an LP/SOCP with Clarabel; duals mapped to d(objective)/d(active bound) (see module docstring).

    `tol` sets the absolute/relative gap, feasibility and kappa/tau tolerances; `time_limit` is in seconds
    (None = unlimited); `omitted` leaves cones out until a solution comes near them (`OmittedCones`); further
    keyword arguments are Clarabel settings by name.  Raises ValueError if the program has integer variables.
    """
    if program.has_integers:
        raise ValueError("solve_clarabel handles LP/SOCP only; the program has integer variables")

    def solve_kept(cone_rows: np.ndarray | None) -> Solution:
        M, b, cones, masks = _stack(program, cone_rows)
        solver = clarabel.DefaultSolver(
            sp.csc_matrix((program.n, program.n)),
            program.c.astype(float),
            M,
            b,
            cones,
            _settings(tol, max_iter, verbose, time_limit, **settings),
        )
        return _solution(program, solver.solve(), masks)

    return _with_omitted(program, omitted, solve_kept)


def solve_clarabel_retrying(
    program: Program,
    sol: Solution,
    good: Callable[[Solution], bool],
    solver: Callable[..., Solution] | None = None,
) -> Solution:
    """`sol` if `good(sol)`, else the first re-solve at RETRY_SETTINGS that is (the last one if none is).
    `solver(program, **settings)`: the solve to repeat (default `solve_clarabel`; a caller passes its own first
    solve, e.g. `solvers.solve`, so that a corrupted point of the same adapter still fails)."""
    for settings in RETRY_SETTINGS:
        if good(sol):
            break
        sol = (solver or solve_clarabel)(program, **settings)
    return sol


class PersistentSOCP:
    """A Clarabel solver kept alive for parametric re-solves: only the right-hand sides of the equality rows
    named at construction change between solves (`set_equalities`), so the KKT structure, the equilibration and
    the symbolic factorisation are reused.  A DSO answering many exchange requests uses one per model.  With
    `omitted`, the solver leaves those cones out and is built again whenever a solution brings one in.  Further
    keyword arguments are Clarabel settings by name (e.g. EVALUATION_SETTINGS)."""

    def __init__(
        self,
        program: Program,
        eq_rows: np.ndarray,
        *,
        tol: float = 1e-9,
        max_iter: int = 200,
        omitted: OmittedCones | None = None,
        **settings,
    ):
        if program.has_integers:
            raise ValueError("PersistentSOCP handles LP/SOCP only")
        eq_rows = np.asarray(eq_rows, dtype=np.int64)
        if not np.all(program.row_lo[eq_rows] == program.row_hi[eq_rows]):
            raise ValueError("PersistentSOCP: the parametric rows must be equalities")
        self.program = program
        self._rows = eq_rows
        self._settings = _settings(tol, max_iter, False, None, **settings)
        self.omitted = omitted if omitted is not None and omitted.applies_to(program) else None
        self._built_for: np.ndarray | None = None  # the cone rows the live solver keeps
        self._build(None if self.omitted is None else self.omitted.kept_rows())

    def _build(self, cone_rows: np.ndarray | None) -> None:
        program = self.program
        M, b, cones, self.masks = _stack(program, cone_rows)
        # position of each parametric row in Clarabel's b: equality rows come first, in row order
        self._pos = np.searchsorted(np.flatnonzero(self.masks[0]), self._rows)
        self._solver = clarabel.DefaultSolver(
            sp.csc_matrix((program.n, program.n)), program.c.astype(float), M, b, cones, self._settings
        )
        self._built_for = cone_rows

    def set_equalities(self, values: np.ndarray) -> None:
        values = np.asarray(values, float)
        self.program.row_lo[self._rows] = values
        self.program.row_hi[self._rows] = values
        self._solver.update(b=(self._pos, values))

    def solve(self) -> Solution:
        def solve_kept(cone_rows: np.ndarray | None) -> Solution:
            if cone_rows is not None and (self._built_for is None or not np.array_equal(cone_rows, self._built_for)):
                self._build(cone_rows)  # (b is built from the program, whose equalities are up to date)
            return _solution(self.program, self._solver.solve(), self.masks)

        return _with_omitted(self.program, self.omitted, solve_kept)
