"""Pick the solver adapter from the program's structure."""

from __future__ import annotations

from tdmarket.formulations.program import Program
from tdmarket.solvers.clarabel import OmittedCones, solve_clarabel
from tdmarket.solvers.highs import solve_highs
from tdmarket.solvers.result import Solution


def solve(program: Program, *, omitted: OmittedCones | None = None, **opts) -> Solution:
    """HiGHS for LP/MILP, Clarabel for LP-with-cones (SOCP); `opts` go to the chosen adapter unchanged.
    `omitted`: cones a conic solve leaves out until a solution comes near one (`OmittedCones`; nothing to leave
    out in an LP).

    Raises ValueError for cones together with integers (MISOCP is handled by the decomposition schemes).
    """
    if program.has_cones and program.has_integers:
        raise ValueError(
            "program has both second-order cones and integer variables (MISOCP); "
            "no single adapter solves it - fix the integers or relax the cones first"
        )
    if program.has_cones:
        return solve_clarabel(program, omitted=omitted, **opts)
    return solve_highs(program, **opts)
