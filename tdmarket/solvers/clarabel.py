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

from collections.abc import Callable

import clarabel
import numpy as np
import scipy.sparse as sp

from tdmarket.formulations.program import Program
from tdmarket.solvers.result import Solution, SolveStatus

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


def _stack(program: Program):
    """Clarabel's (M, b, cones) for `program` and the row masks needed to map duals back (see module docstring)."""
    n = program.n
    A = sp.csr_matrix(program.A)
    lo, hi, lb, ub = program.row_lo, program.row_hi, program.lb, program.ub
    _check_bounds(lo, hi, "row bounds")
    _check_bounds(lb, ub, "variable bounds")
    I = sp.identity(n, format="csr")
    eq = np.isfinite(lo) & (lo == hi)
    up, dn = np.isfinite(hi) & ~eq, np.isfinite(lo) & ~eq
    fix = np.isfinite(lb) & (lb == ub)
    vub, vlb = np.isfinite(ub) & ~fix, np.isfinite(lb) & ~fix
    n_zero = int(eq.sum()) + int(fix.sum())
    n_nonneg = int(up.sum()) + int(dn.sum()) + int(vub.sum()) + int(vlb.sum())
    M = sp.vstack([A[eq], I[fix], A[up], -A[dn], I[vub], -I[vlb], sp.csr_matrix(program.cone_A)], format="csc")
    b = np.concatenate([lo[eq], lb[fix], hi[up], -lo[dn], ub[vub], -lb[vlb], program.cone_b])
    cones = []
    if n_zero:
        cones.append(clarabel.ZeroConeT(n_zero))
    if n_nonneg:
        cones.append(clarabel.NonnegativeConeT(n_nonneg))
    for dim, count in program.cone_dims:  # one entry per run of equal-dimension cones, not per cone
        cones.extend([clarabel.SecondOrderConeT(int(dim))] * int(count))
    return M, b, cones, (eq, up, dn, n_zero, n_nonneg)


def _solution(program: Program, res, masks) -> Solution:
    eq, up, dn, n_zero, n_nonneg = masks
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
    return Solution(
        status=_STATUS.get(name, SolveStatus.OTHER),
        x=np.asarray(res.x, float),
        objective=float(res.obj_val) + float(program.c0),
        row_dual=row_dual,
        cone_dual=z[n_zero + n_nonneg :],
        iterations=int(res.iterations),
        solve_time_s=float(res.solve_time),
        solver="clarabel " + getattr(clarabel, "__version__", "?"),
        message=name,
    )


def solve_clarabel(
    program: Program,
    *,
    tol: float = 1e-9,
    max_iter: int = 200,
    verbose: bool = False,
    time_limit: float | None = None,
    **settings,
) -> Solution:
    """Solve an LP/SOCP with Clarabel; duals mapped to d(objective)/d(active bound) (see module docstring).

    `tol` sets the absolute/relative gap, feasibility and kappa/tau tolerances; `time_limit` is in seconds
    (None = unlimited); further keyword arguments are Clarabel settings by name.  Raises ValueError if the
    program has integer variables.
    """
    if program.has_integers:
        raise ValueError("solve_clarabel handles LP/SOCP only; the program has integer variables")
    M, b, cones, masks = _stack(program)
    solver = clarabel.DefaultSolver(
        sp.csc_matrix((program.n, program.n)),
        program.c.astype(float),
        M,
        b,
        cones,
        _settings(tol, max_iter, verbose, time_limit, **settings),
    )
    return _solution(program, solver.solve(), masks)


def solve_clarabel_retrying(program: Program, sol: Solution, good: Callable[[Solution], bool]) -> Solution:
    """`sol` if `good(sol)`, else the first re-solve at RETRY_SETTINGS that is (the last one if none is)."""
    for settings in RETRY_SETTINGS:
        if good(sol):
            break
        sol = solve_clarabel(program, **settings)
    return sol


class PersistentSOCP:
    """A Clarabel solver kept alive for parametric re-solves: only the right-hand sides of the equality rows
    named at construction change between solves (`set_equalities`), so the KKT structure, the equilibration and
    the symbolic factorisation are reused.  A DSO answering many exchange requests uses one per model."""

    def __init__(self, program: Program, eq_rows: np.ndarray, *, tol: float = 1e-9, max_iter: int = 200):
        if program.has_integers:
            raise ValueError("PersistentSOCP handles LP/SOCP only")
        eq_rows = np.asarray(eq_rows, dtype=np.int64)
        if not np.all(program.row_lo[eq_rows] == program.row_hi[eq_rows]):
            raise ValueError("PersistentSOCP: the parametric rows must be equalities")
        self.program = program
        M, b, cones, self.masks = _stack(program)
        # position of each parametric row in Clarabel's b: equality rows come first, in row order
        self._pos = np.searchsorted(np.flatnonzero(self.masks[0]), eq_rows)
        self._rows = eq_rows
        self._solver = clarabel.DefaultSolver(
            sp.csc_matrix((program.n, program.n)),
            program.c.astype(float),
            M,
            b,
            cones,
            _settings(tol, max_iter, False, None),
        )

    def set_equalities(self, values: np.ndarray) -> None:
        values = np.asarray(values, float)
        self.program.row_lo[self._rows] = values
        self.program.row_hi[self._rows] = values
        self._solver.update(b=(self._pos, values))

    def solve(self) -> Solution:
        return _solution(self.program, self._solver.solve(), self.masks)
