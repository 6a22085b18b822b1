"""Solver-neutral result of one solve.

Dual convention shared by every adapter (see `tdmarket.formulations.program` and docs/model.md §1):
`row_dual[r]` = d(optimal objective) / d(active bound of row r), in objective units per row unit
(e.g. €/MWh for a balance row in MW).  For an equality row that is the derivative w.r.t. its right-hand
side; for an inequality it is <= 0 on an active upper bound and >= 0 on an active lower bound, 0 if slack.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class SolveStatus(enum.Enum):
    """Outcome of a solve, mapped from each solver's own status codes."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = (
        "time_limit"  # stopped by a time (or MILP node) limit; `x` is the incumbent/last iterate, optimality not proven
    )
    OBJECTIVE_TARGET = "objective_target"  # a MILP stopped at an incumbent as good as the requested target
    ALMOST_OPTIMAL = "almost_optimal"  # Clarabel "AlmostSolved": met only the reduced (looser) tolerances
    NUMERICAL_ERROR = "numerical_error"
    OTHER = "other"


def usable_statuses(*, allow_almost: bool, allow_time_limit: bool = False) -> frozenset[SolveStatus]:
    """Statuses whose point may be used: OPTIMAL, plus ALMOST_OPTIMAL, and TIME_LIMIT or OBJECTIVE_TARGET (an
    incumbent), on request.

    The status half of the acceptance rule; `tdmarket.solvers.acceptance.accept` adds the residual check."""
    allowed = {SolveStatus.OPTIMAL}
    if allow_almost:
        allowed.add(SolveStatus.ALMOST_OPTIMAL)
    if allow_time_limit:
        allowed.update((SolveStatus.TIME_LIMIT, SolveStatus.OBJECTIVE_TARGET))
    return frozenset(allowed)


@dataclass
class Solution:
    """Primal/dual result in the `Program`'s own variable and row order.

    `objective` includes `program.c0`.  `row_dual` (length m) and `cone_dual` (length k, Clarabel's z on the
    program's cone rows, in the dual cone) are None when the solver gives no duals (MIPs).  `mip_bound` is the
    best proven lower bound of a MIP and `mip_gap` its relative gap, both None for continuous problems.
    """

    status: SolveStatus
    x: np.ndarray
    objective: float
    row_dual: np.ndarray | None
    cone_dual: np.ndarray | None
    iterations: int
    solve_time_s: float
    solver: str
    mip_bound: float | None = None
    mip_gap: float | None = None
    message: str = ""
    # HiGHS LP only: the optimal basis as (column status, row status) arrays of HighsBasisStatus values
    # (0 lower, 1 basic, 2 upper, 3 zero, 4 nonbasic); used to warm-start the dual-face LPs of the prices
    basis: tuple[np.ndarray, np.ndarray] | None = None
    # ALMOST_OPTIMAL counts as usable only when the caller opts in: docs/model.md §3.3 shows conic solutions that
    # look fine but violate balance rows, so loosened-tolerance results are rejected by default.
    accept_almost_optimal: bool = False
    # HiGHS LP only (`PersistentLP`): the reduced costs, None when the solve gave no duals
    col_dual: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        """True for a proven optimum (and ALMOST_OPTIMAL if `accept_almost_optimal`); status only, without the
        residual check of `tdmarket.solvers.acceptance.accept`."""
        return self.status in usable_statuses(allow_almost=self.accept_almost_optimal)
