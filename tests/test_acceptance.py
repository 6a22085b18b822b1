"""The solve-acceptance rule (`tdmarket.solvers.acceptance`): status AND an independent primal residual check.

Each case builds a tiny `Program` and a `Solution` by hand (or corrupts a real one), so that the rule is tested
against points whose feasibility is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import tdmarket.schemes.centralized as centralized
from tdmarket.errors import SolverError
from tdmarket.formulations.program import Program
from tdmarket.solvers import Solution, SolveStatus, solve_highs
from tdmarket.solvers.acceptance import FEAS_TOL, accept, rejection, require, residuals


def sol(x, status=SolveStatus.OPTIMAL) -> Solution:
    return Solution(status, np.asarray(x, float), 0.0, None, None, 0, 0.0, "test")


def lp() -> Program:
    """x0 + x1 = 10 (a balance row), x0 - x1 <= 2, 0 <= x <= 8."""
    p = Program()
    p.add_variables("x", 2, lb=0.0, ub=8.0, cost=[1.0, 2.0])
    p.add_rows("balance", [[1.0, 1.0]], lo=10.0, hi=10.0)
    p.add_rows("spread", [[1.0, -1.0]], lo=-np.inf, hi=2.0)
    return p


def soc() -> Program:
    """t >= ||(a, b)|| written as h - G x in SOC(3) with x = (t, a, b): G = -I, h = 0."""
    p = Program()
    p.add_variables("x", 3, lb=-np.inf, ub=np.inf)
    p.add_soc("cone", -sp.identity(3), np.zeros(3), 3)
    return p


def milp() -> Program:
    """Binary u, continuous y <= 5 u."""
    p = Program()
    p.add_variables("u", 1, lb=0.0, ub=1.0, integer=True)
    p.add_variables("y", 1, lb=0.0, ub=5.0)
    p.add_rows("link", [[-5.0, 1.0]], lo=-np.inf, hi=0.0)
    return p


# --------------------------------------------------------------------------- rows and bounds
def test_feasible_optimal_point_is_accepted():
    assert accept(sol([6.0, 4.0]), lp())
    assert rejection(sol([6.0, 4.0]), lp()) is None


def test_optimal_status_with_a_violated_row_is_rejected():
    s = sol([6.0, 4.1])  # balance row: 10.1 instead of 10
    assert not accept(s, lp())
    assert accept(s)  # without the program only the status and x are judged
    with pytest.raises(SolverError, match=r"^clearing failed: solver status optimal but row 0 violated") as err:
        require(s, lp(), "clearing")
    assert "\n" not in str(err.value)


def test_violated_inequality_and_bound_are_rejected():
    assert "row 1" in rejection(sol([6.5, 3.5]), lp())  # spread 3 > 2
    assert "bound of variable 1" in rejection(sol([-1.0, 11.0]), lp())  # x1 = 11 > 8 (3/8) worse than x0 < 0 (1/8)


def test_row_tolerance_scales_with_the_row_magnitude():
    """The same absolute miss of 1e-3 is noise on a 1000 MW row and a violation on a 1 MW row."""
    p = Program()
    p.add_variables("x", 2, lb=-np.inf, ub=np.inf)
    p.add_rows("big", [[1.0, 0.0]], lo=1000.0, hi=1000.0)
    p.add_rows("small", [[0.0, 1.0]], lo=1.0, hi=1.0)
    assert accept(sol([1000.0 - 1e-3, 1.0]), p)
    assert not accept(sol([1000.0, 1.0 - 1e-3]), p)
    # just inside / just outside the tolerance on a unit row
    assert accept(sol([1000.0, 1.0 + 0.5 * FEAS_TOL]), p)
    assert not accept(sol([1000.0, 1.0 + 2 * FEAS_TOL]), p)


def test_missing_or_nonfinite_point_is_rejected():
    assert not accept(sol([np.nan, 4.0]))
    assert not accept(Solution(SolveStatus.OPTIMAL, None, 0.0, None, None, 0, 0.0, "test"))
    assert "2 variables" in rejection(sol([6.0, 4.0, 0.0]), lp())


# --------------------------------------------------------------------------- statuses
@pytest.mark.parametrize("status", [SolveStatus.INFEASIBLE, SolveStatus.NUMERICAL_ERROR, SolveStatus.OTHER])
def test_failure_statuses_are_rejected_even_with_a_feasible_point(status):
    assert not accept(sol([6.0, 4.0], status), lp(), allow_almost=True, allow_time_limit=True)


def test_almost_optimal_is_accepted_or_not_per_flag():
    s = sol([6.0, 4.0], SolveStatus.ALMOST_OPTIMAL)
    assert accept(s, lp())  # default: allowed
    assert not accept(s, lp(), allow_almost=False)
    assert "almost_optimal" in rejection(s, lp(), allow_almost=False)
    # allowed, but still held to the residual check, at the solver's reduced tolerance (ALMOST_TOL)
    assert not accept(sol([6.0, 4.1], SolveStatus.ALMOST_OPTIMAL), lp())
    near = [6.0, 4.0 + 5 * FEAS_TOL * 10]  # balance row 10 off by 5e-5 relative: above FEAS_TOL, below ALMOST_TOL
    assert accept(sol(near, SolveStatus.ALMOST_OPTIMAL), lp())
    assert not accept(sol(near, SolveStatus.OPTIMAL), lp())


def test_time_limit_incumbent_only_on_request_and_only_if_feasible():
    incumbent = sol([1.0, 5.0], SolveStatus.TIME_LIMIT)
    assert not accept(incumbent, milp())
    assert accept(incumbent, milp(), allow_time_limit=True)
    assert not accept(sol([0.0, 5.0], SolveStatus.TIME_LIMIT), milp(), allow_time_limit=True)  # y > 5u
    assert not accept(sol([np.nan, np.nan], SolveStatus.TIME_LIMIT), milp(), allow_time_limit=True)  # no incumbent


# --------------------------------------------------------------------------- cones and integrality
def test_violated_second_order_cone_is_rejected():
    assert accept(sol([5.0, 3.0, 4.0]), soc())  # on the boundary
    assert accept(sol([5.0 - 1e-8, 3.0, 4.0]), soc())  # solver noise
    s = sol([4.9, 3.0, 4.0])  # ||(3, 4)|| = 5 > 4.9
    assert not accept(s, soc())
    assert "cone 0" in rejection(s, soc())
    assert residuals(soc(), s.x).cone == pytest.approx(0.1 / 4.9)  # scaled by the largest entry of the cone


def test_violated_integrality_is_rejected():
    assert accept(sol([1.0, 5.0]), milp())
    assert accept(sol([1.0 - 1e-9, 5.0 - 1e-8]), milp())
    s = sol([0.5, 2.0])  # rows and bounds hold, u is fractional
    assert not accept(s, milp())
    assert "integrality of variable 0" in rejection(s, milp())
    relaxed = milp()
    relaxed.relax_integrality()
    assert accept(s, relaxed)


# --------------------------------------------------------------------------- with the solvers and a scheme
def test_real_solve_accepted_and_corrupted_copy_rejected():
    p = lp()
    s = solve_highs(p)
    assert s.status is SolveStatus.OPTIMAL and require(s, p, "lp") is s
    bad = sol(s.x + np.array([0.0, 0.01]))
    assert not accept(bad, p)


def test_clearing_rejects_an_optimal_status_with_a_corrupted_point(builtin, monkeypatch):
    """A solver that reports OPTIMAL for a point off the balance rows makes the clearing fail (docs/model.md §3.3)."""
    real = centralized.solve

    def corrupt(prog, **kw):
        out = real(prog, **kw)
        out.x = out.x + 0.1  # every variable off by 0.1: balance rows miss by about 0.1 MW or more
        return out

    monkeypatch.setattr(centralized, "solve", corrupt)
    with pytest.raises(SolverError, match="clearing failed: solver status optimal but"):
        centralized.clear_centralized(builtin, relax=True, incentives=False)
