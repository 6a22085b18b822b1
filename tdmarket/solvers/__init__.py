"""Thin solver adapters: `Program` in, `Solution` out (duals as d(objective)/d(active row bound)).

Whether a solve may be used is decided in one place, `tdmarket.solvers.acceptance` (`accept`, `require`)."""

from tdmarket.solvers.acceptance import accept, require
from tdmarket.solvers.clarabel import solve_clarabel
from tdmarket.solvers.dispatch import solve
from tdmarket.solvers.highs import solve_highs
from tdmarket.solvers.result import Solution, SolveStatus

__all__ = ["SolveStatus", "Solution", "accept", "require", "solve", "solve_highs", "solve_clarabel"]
