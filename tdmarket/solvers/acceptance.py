"""The one rule for accepting a solve: an allowed status AND an independent primal residual check.

A solver's status alone is not trusted (docs/model.md §3.3: conic solutions that look fine can violate balance rows).
`accept(sol, program)` holds when

* the status is OPTIMAL, or ALMOST_OPTIMAL with `allow_almost`, or TIME_LIMIT with `allow_time_limit` (then `x` is
  the incumbent, which must pass the residual check like any other point);
* `x` is present and finite (and has the program's length);
* with `program` given, x satisfies every constraint of it, each violation measured against the magnitude of
  the quantities it is made of (so that a 1000 MW balance row and a 1 p.u. voltage row are held to the same
  relative accuracy):

      rows       max(lo − a·x, a·x − hi)  <=  tol · max(1, |lo|, |hi|, Σ_j |a_j x_j|)     (finite bounds only)
      bounds     max(lb − x, x − ub)      <=  tol · max(1, |lb|, |ub|)
      cones      ‖s̄‖ − s_0 with s = h − G x  <=  tol · max(1, |h_i|, Σ_j |G_ij x_j| over the cone's rows)
      integers   |x − round(x)|          <=  int_tol

Tolerances: the adapters solve to 1e-9 (Clarabel, relative) and 1e-6 (HiGHS MIP feasibility and integrality,
absolute), and Clarabel's ALMOST_OPTIMAL points meet only its reduced tolerances.  On the built-in example and the
shared instances the largest scaled violations of accepted solves are ~1e-7 (OPTIMAL), ~1e-6 (ALMOST_OPTIMAL:
cones 9.4e-7, rows 3.8e-7) and 1e-10 for integrality.  `tol` = `int_tol` = 1e-5 keeps a factor 10 above all of
them (so no solve accepted so far is now rejected), while a point that misses a row by a relative 1e-4, let alone
the megawatts of docs/model.md §3.3, is rejected.

`require(sol, program, what)` returns `sol` if accepted and otherwise raises `SolverError` with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SolverError
from ..formulations.program import Program
from .result import Solution, SolveStatus, usable_statuses

ALMOST_TOL = 1e-4  # scaled residual for an ALMOST_OPTIMAL status (Clarabel's reduced_tol_feas)
FEAS_TOL = 1e-5  # relative primal feasibility (rows, bounds, cones); see the module docstring
INT_TOL = 1e-5  # absolute integrality


@dataclass(frozen=True)
class Residuals:
    """Largest scaled violation of each kind (0 if none) and where it occurs (row / variable / cone index)."""

    row: float = 0.0
    row_at: int = -1
    bound: float = 0.0
    bound_at: int = -1
    cone: float = 0.0
    cone_at: int = -1
    integrality: float = 0.0
    integrality_at: int = -1

    def worst(self, tol: float = FEAS_TOL, int_tol: float = INT_TOL) -> str | None:
        """Description of the first violation beyond tolerance, or None if x is feasible."""
        for kind, value, at, limit in (
            ("row", self.row, self.row_at, tol),
            ("bound of variable", self.bound, self.bound_at, tol),
            ("cone", self.cone, self.cone_at, tol),
            ("integrality of variable", self.integrality, self.integrality_at, int_tol),
        ):
            if value > limit:
                return f"{kind} {at} violated by {value:.2e} (scaled; tolerance {limit:.0e})"
        return None


def _argmax(v: np.ndarray) -> tuple[float, int]:
    if len(v) == 0:
        return 0.0, -1
    k = int(np.argmax(v))
    return max(float(v[k]), 0.0), k


def _side_violation(value, lo, hi, magnitude) -> np.ndarray:
    """max(lo − value, value − hi, 0) / max(1, |finite lo|, |finite hi|, magnitude)."""
    with np.errstate(invalid="ignore"):
        viol = np.maximum(np.where(np.isfinite(lo), lo - value, 0.0), np.where(np.isfinite(hi), value - hi, 0.0))
    scale = np.maximum.reduce([np.ones_like(value), np.where(np.isfinite(lo), np.abs(lo), 0.0), magnitude])
    scale = np.maximum(scale, np.where(np.isfinite(hi), np.abs(hi), 0.0))
    return np.maximum(viol, 0.0) / scale


def cone_violation(program: Program, x: np.ndarray) -> np.ndarray:
    """Scaled violation ‖s̄‖ − s_0 of every cone (in program order)."""
    G, h = program.cone_A, program.cone_b
    s = h - G @ x
    magnitude = np.maximum(np.abs(h), abs(G) @ np.abs(x))
    out = []
    start = 0
    for dim, count in program.cone_dims:
        block = s[start : start + dim * count].reshape(count, dim)
        mag = magnitude[start : start + dim * count].reshape(count, dim).max(axis=1)
        out.append((np.linalg.norm(block[:, 1:], axis=1) - block[:, 0]) / np.maximum(1.0, mag))
        start += dim * count
    return np.concatenate(out) if out else np.zeros(0)


def residuals(program: Program, x: np.ndarray) -> Residuals:
    """Scaled primal residuals of x against every constraint of `program` (see the module docstring)."""
    A = program.A
    row, row_at = _argmax(_side_violation(A @ x, program.row_lo, program.row_hi, abs(A) @ np.abs(x)))
    bound, bound_at = _argmax(_side_violation(x, program.lb, program.ub, np.zeros_like(x)))
    cone, cone_at = _argmax(cone_violation(program, x)) if program.k else (0.0, -1)
    cols = np.flatnonzero(program.integrality)
    frac, k = _argmax(np.abs(x[cols] - np.round(x[cols])))
    return Residuals(row, row_at, bound, bound_at, cone, cone_at, frac, int(cols[k]) if k >= 0 else -1)


def rejection(
    sol: Solution,
    program: Program | None = None,
    *,
    allow_almost: bool = True,
    allow_time_limit: bool = False,
    tol: float = FEAS_TOL,
    int_tol: float = INT_TOL,
) -> str | None:
    """Why `sol` is not acceptable (one line), or None if it is; the arguments are those of `accept`."""
    if sol.status not in usable_statuses(allow_almost=allow_almost, allow_time_limit=allow_time_limit):
        return f"solver status {sol.status.value} {sol.message}".strip()
    x = sol.x
    if x is None or not np.all(np.isfinite(x)):
        return f"solver status {sol.status.value} but no finite solution vector"
    if program is None:
        return None
    if len(x) != program.n:
        return f"solution has {len(x)} entries, the program {program.n} variables"
    if sol.status is SolveStatus.ALMOST_OPTIMAL:
        # "almost solved" means the solver's reduced tolerances were met: judge it at those (Clarabel: 1e-4)
        tol = max(tol, ALMOST_TOL)
    why = residuals(program, x).worst(tol, int_tol)
    return None if why is None else f"solver status {sol.status.value} but {why}"


def accept(
    sol: Solution,
    program: Program | None = None,
    *,
    allow_almost: bool = True,
    allow_time_limit: bool = False,
    tol: float = FEAS_TOL,
    int_tol: float = INT_TOL,
) -> bool:
    """True if `sol` has an allowed status and (with `program`) passes the residual check (module docstring)."""
    return (
        rejection(sol, program, allow_almost=allow_almost, allow_time_limit=allow_time_limit, tol=tol, int_tol=int_tol)
        is None
    )


def require(
    sol: Solution,
    program: Program | None,
    what: str,
    *,
    allow_almost: bool = True,
    allow_time_limit: bool = False,
    tol: float = FEAS_TOL,
    int_tol: float = INT_TOL,
) -> Solution:
    """`sol` if `accept(sol, program, ...)`, else raise `SolverError("<what> failed: <reason>")`."""
    why = rejection(
        sol, program, allow_almost=allow_almost, allow_time_limit=allow_time_limit, tol=tol, int_tol=int_tol
    )
    if why is not None:
        raise SolverError(f"{what} failed: {why}")
    return sol
