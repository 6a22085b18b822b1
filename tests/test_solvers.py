"""Solver adapters: statuses, optima and the dual convention row_dual = d(objective)/d(active row bound).

Every dual is checked against a central finite difference of the re-solved optimal objective (docs/model.md §1).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tdmarket.formulations.program import Program
from tdmarket.solvers import Solution, SolveStatus, accept, solve, solve_clarabel, solve_highs

H = 1e-4  # finite-difference step on a row bound
SOLVERS = {"highs": solve_highs, "clarabel": solve_clarabel}


def fd_dual(program: Program, solver, row: int, side: str, h: float = H) -> float:
    """Central difference of the optimal objective w.r.t. one row bound ('lo', 'hi' or 'both' for equality)."""
    vals = []
    for step in (h, -h):
        p = program.copy()
        lo, hi = p.row_lo[row], p.row_hi[row]
        if side in ("lo", "both"):
            p.set_row_bounds(row, lo=lo + step)
        if side in ("hi", "both"):
            p.set_row_bounds(row, hi=hi + step)
        sol = solver(p)
        assert sol.status is SolveStatus.OPTIMAL
        vals.append(sol.objective)
    return (vals[0] - vals[1]) / (2 * h)


# --------------------------------------------------------------------------- LP: two-node dispatch
def two_node_lp(two_sided: bool) -> Program:
    """Node 1: cheap g1 (10 €/MWh) + fixed import 5 MW, 20 MW load.  Node 2: g2 (30), must-run g3 (50), 80 MW.

    Line 1->2 limited to 50 MW.  Optimum: f=50, g3=5, g1=65, g2=25, cost 650+750+250 (+c0=7) = 1657.
    Duals: balance rows 10 and 30 (LMPs), line limit (active upper bound) -20, must-run (active lower) +20.
    """
    p = Program()
    p.add_variables("g", 3, lb=0.0, ub=100.0, cost=[10.0, 30.0, 50.0])  # g1, g2, g3
    p.add_variables("f", 1, lb=-np.inf, ub=np.inf)
    p.add_variables("imp", 1, lb=5.0, ub=5.0)  # fixed variable: exercises Clarabel's zero-cone bound rows
    p.c0 = 7.0
    #                    g1  g2  g3   f  imp
    bal = np.array([[1, 0, 0, -1, 1], [0, 1, 1, 1, 0]], float)
    p.add_rows("balance", bal, lo=[20.0, 80.0], hi=[20.0, 80.0])
    p.add_rows("line", sp.coo_matrix(([1.0], ([0], [3])), shape=(1, 5)), lo=-50.0 if two_sided else -np.inf, hi=50.0)
    p.add_rows("mustrun", sp.coo_matrix(([1.0], ([0], [2])), shape=(1, 5)), lo=5.0, hi=40.0 if two_sided else np.inf)
    p.add_rows("slack_cap", sp.coo_matrix(([1.0], ([0], [0])), shape=(1, 5)), lo=-np.inf, hi=90.0)  # inactive
    return p


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_lp_optimum_and_duals_match_finite_differences(name, two_sided):
    solver = SOLVERS[name]
    p = two_node_lp(two_sided)
    sol = solver(p)
    assert sol.status is SolveStatus.OPTIMAL and sol.ok
    np.testing.assert_allclose(sol.x, [65.0, 25.0, 5.0, 50.0, 5.0], atol=1e-6)
    assert sol.objective == pytest.approx(1657.0, abs=1e-6)
    np.testing.assert_allclose(sol.row_dual, [10.0, 30.0, -20.0, 20.0, 0.0], atol=1e-6)
    for row, side in [(0, "both"), (1, "both"), (2, "hi"), (3, "lo"), (4, "hi")]:
        assert sol.row_dual[row] == pytest.approx(fd_dual(p, solver, row, side), abs=1e-4), (row, side)


def test_lp_duals_agree_between_solvers_when_bound_side_flips():
    # Same LP with the line limit binding at its LOWER bound (flow reversed): dual must be positive there.
    p = Program()
    p.add_variables("g", 2, lb=0.0, ub=100.0, cost=[30.0, 10.0])  # expensive at node 1, cheap at node 2
    p.add_variables("f", 1, lb=-np.inf, ub=np.inf)
    p.add_rows("balance", np.array([[1, 0, -1], [0, 1, 1]], float), lo=[60.0, 10.0], hi=[60.0, 10.0])
    p.add_rows("line", np.array([[0, 0, 1.0]]), lo=-30.0, hi=30.0)
    for solver in SOLVERS.values():
        sol = solver(p)
        assert sol.ok
        np.testing.assert_allclose(sol.x, [30.0, 40.0, -30.0], atol=1e-6)
        # raising the lower bound -30 forces less flow 2->1: +20 €/MWh
        np.testing.assert_allclose(sol.row_dual, [30.0, 10.0, 20.0], atol=1e-6)
        assert sol.row_dual[2] == pytest.approx(fd_dual(p, solver, 2, "lo"), abs=1e-4)


def test_random_lp_same_optimum_both_solvers():
    # Mixed finite/infinite/fixed bounds and ranged rows, feasible by construction around x0.
    rng = np.random.default_rng(7)
    n, m = 30, 20
    A = sp.random(m, n, density=0.3, random_state=rng, format="csr")
    x0 = rng.uniform(-1.0, 1.0, n)
    ax0 = A @ x0
    lo = np.where(rng.random(m) < 0.3, -np.inf, ax0 - rng.uniform(0.0, 1.0, m))
    hi = np.where(rng.random(m) < 0.3, np.inf, ax0 + rng.uniform(0.0, 1.0, m))
    eq = rng.random(m) < 0.2
    lo[eq] = hi[eq] = ax0[eq]
    lb, ub = x0 - rng.uniform(0.1, 2.0, n), x0 + rng.uniform(0.1, 2.0, n)
    lb[:5] = -np.inf
    ub[5:8] = np.inf
    lb[8:10] = ub[8:10] = x0[8:10]
    p = Program()
    p.add_variables("x", n, lb=lb, ub=ub, cost=rng.normal(size=n))
    p.add_rows("r", A, lo=lo, hi=hi)
    sh, sc = solve_highs(p), solve_clarabel(p)
    assert sh.ok and sc.ok
    assert sc.objective == pytest.approx(sh.objective, rel=1e-7, abs=1e-7)
    # Random data give a generically non-degenerate optimum (true for this seed): duals are unique and must match.
    np.testing.assert_allclose(sc.row_dual, sh.row_dual, atol=1e-5)


# --------------------------------------------------------------------------- SOCP
def disc_socp() -> Program:
    """min x + y  s.t.  ||(x, y)|| <= t,  t = r (row 0, r = 1),  x >= -0.5 (row 1).

    The bound on x is active: x = lo = -0.5, y = -sqrt(r^2 - lo^2), objective obj = lo - sqrt(r^2 - lo^2).
    d obj/d r  = -r / sqrt(r^2 - lo^2)      = -2/sqrt(3)            (equality row 0)
    d obj/d lo = 1 + lo / sqrt(r^2 - lo^2)  = 1 - 0.5/sqrt(0.75)    (active lower bound of row 1)
    """
    p = Program()
    p.add_variables("t", 1, lb=0.0)  # inactive finite lower bound
    p.add_variables("xy", 2, lb=-np.inf, cost=1.0)
    p.add_rows("radius", np.array([[1.0, 0, 0]]), lo=1.0, hi=1.0)
    p.add_rows("xmin", np.array([[0, 1.0, 0]]), lo=-0.5, hi=np.inf)
    # cone_b - cone_A x = (t, x, y)
    p.add_soc("disc", -sp.identity(3), np.zeros(3), dim=3)
    return p


def test_socp_optimum_and_duals():
    p = disc_socp()
    sol = solve(p)
    assert sol.solver.startswith("clarabel")
    assert sol.status is SolveStatus.OPTIMAL
    y = -np.sqrt(0.75)
    np.testing.assert_allclose(sol.x, [1.0, -0.5, y], atol=1e-7)
    assert sol.objective == pytest.approx(-0.5 + y, abs=1e-8)
    expected = [-2.0 / np.sqrt(3.0), 1.0 - 0.5 / np.sqrt(0.75)]
    np.testing.assert_allclose(sol.row_dual, expected, atol=1e-6)
    assert sol.row_dual[0] == pytest.approx(fd_dual(p, solve_clarabel, 0, "both"), abs=1e-5)
    assert sol.row_dual[1] == pytest.approx(fd_dual(p, solve_clarabel, 1, "lo"), abs=1e-5)
    # cone dual lies in the (self-dual) SOC and is complementary to the cone slack s = (t, x, y)
    z = sol.cone_dual
    assert z.shape == (3,) and z[0] >= np.linalg.norm(z[1:]) - 1e-8
    assert float(z @ sol.x) == pytest.approx(0.0, abs=1e-7)


def test_socp_several_cone_runs_are_mapped_in_order():
    # Two SOC(3) and one SOC(2) cone (runs [(3, 2), (2, 1)]); min sum of t's with |x_i| bounded away.
    p = Program()
    p.add_variables("t", 3, lb=-np.inf, cost=[1.0, 2.0, 3.0])
    p.add_variables("x", 4, lb=[1.0, 2.0, 3.0, 4.0], ub=np.inf)
    # (t0, x0, x1), (t1, x2, x3) in SOC(3); (t2, x3) in SOC(2)
    rows = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    cols = np.array([0, 3, 4, 1, 5, 6, 2, 6])
    G = -sp.coo_matrix((np.ones(8), (rows, cols)), shape=(8, 7))
    p.add_soc("a", G.tocsr()[:6], np.zeros(6), dim=3)
    p.add_soc("b", G.tocsr()[6:], np.zeros(2), dim=2)
    assert p.cone_dims == [(3, 2), (2, 1)]
    sol = solve(p)
    assert sol.ok
    np.testing.assert_allclose(sol.x[:3], [np.sqrt(5.0), 5.0, 4.0], atol=1e-7)
    assert sol.objective == pytest.approx(np.sqrt(5.0) + 10.0 + 12.0, abs=1e-7)
    assert sol.cone_dual.shape == (8,)


# --------------------------------------------------------------------------- MILP
def knapsack(c0: float = 100.0) -> Program:
    """max 10a + 13b + 7c + 8d  s.t.  4a + 6b + 3c + 5d <= 10, binary.  Best: {a, b} = 23 -> objective c0 - 23."""
    p = Program()
    p.add_variables("pick", 4, lb=0.0, ub=1.0, cost=[-10.0, -13.0, -7.0, -8.0], integer=True)
    p.add_rows("weight", np.array([[4.0, 6.0, 3.0, 5.0]]), lo=-np.inf, hi=10.0)
    p.c0 = c0
    return p


def test_milp_knapsack_optimum_bound_and_gap():
    sol = solve(knapsack())
    assert sol.solver.startswith("highs")
    assert sol.status is SolveStatus.OPTIMAL
    np.testing.assert_allclose(sol.x, [1.0, 1.0, 0.0, 0.0], atol=1e-9)
    assert sol.objective == pytest.approx(77.0, abs=1e-9)
    assert sol.row_dual is None and sol.cone_dual is None
    assert sol.mip_bound is not None and sol.mip_gap is not None
    assert sol.mip_bound == pytest.approx(77.0, abs=1e-6)  # bound includes c0, like the objective
    assert sol.mip_bound <= sol.objective + 1e-9
    assert 0.0 <= sol.mip_gap <= 1e-4


def test_lp_has_no_mip_fields():
    sol = solve_highs(two_node_lp(False))
    assert sol.mip_bound is None and sol.mip_gap is None


# --------------------------------------------------------------------------- statuses and guards
def infeasible_lp() -> Program:
    p = Program()
    p.add_variables("x", 2, lb=0.0, ub=3.0, cost=1.0)
    p.add_rows("cap", np.array([[1.0, 1.0]]), lo=-np.inf, hi=4.0)
    p.add_rows("need", np.array([[1.0, 1.0]]), lo=5.0, hi=np.inf)
    return p


@pytest.mark.parametrize("name", list(SOLVERS))
def test_infeasible_lp(name):
    sol = SOLVERS[name](infeasible_lp())
    assert sol.status is SolveStatus.INFEASIBLE
    assert not sol.ok


@pytest.mark.parametrize("name", list(SOLVERS))
def test_unbounded_lp(name):
    p = Program()
    p.add_variables("x", 2, lb=0.0, cost=[-1.0, 0.0])
    p.add_rows("r", np.array([[1.0, -1.0]]), lo=-np.inf, hi=1.0)
    assert SOLVERS[name](p).status is SolveStatus.UNBOUNDED


def test_infeasible_milp():
    p = infeasible_lp()
    p.add_variables("k", 1, lb=0.0, ub=1.0, integer=True)
    assert solve_highs(p).status is SolveStatus.INFEASIBLE


def test_cones_with_integers_rejected():
    p = disc_socp()
    p.add_variables("k", 1, lb=0.0, ub=1.0, integer=True)
    with pytest.raises(ValueError, match="MISOCP"):
        solve(p)
    with pytest.raises(ValueError):
        solve_highs(p)
    with pytest.raises(ValueError):
        solve_clarabel(p)


def test_highs_rejects_cones_and_clarabel_rejects_integers():
    with pytest.raises(ValueError):
        solve_highs(disc_socp())
    with pytest.raises(ValueError):
        solve_clarabel(knapsack())


def test_clarabel_rejects_impossible_infinite_bounds():
    p = two_node_lp(False)
    p.set_row_bounds(4, lo=np.inf)
    with pytest.raises(ValueError):
        solve_clarabel(p)


def test_ok_accepts_almost_optimal_only_on_request():
    sol = Solution(SolveStatus.ALMOST_OPTIMAL, np.zeros(1), 0.0, None, None, 0, 0.0, "test")
    assert not sol.ok
    sol.accept_almost_optimal = True
    assert sol.ok
    assert not Solution(
        SolveStatus.TIME_LIMIT, np.zeros(1), 0.0, None, None, 0, 0.0, "test", accept_almost_optimal=True
    ).ok


# --------------------------------------------------------------------------- determinism and options
@pytest.mark.parametrize(
    "make,solver",
    [
        (lambda: two_node_lp(True), solve_highs),
        (knapsack, solve_highs),
        (lambda: two_node_lp(True), solve_clarabel),
        (disc_socp, solve_clarabel),
    ],
)
def test_deterministic(make, solver):
    a, b = solver(make()), solver(make())
    assert np.array_equal(a.x, b.x)
    assert a.objective == b.objective
    if a.row_dual is not None:
        assert np.array_equal(a.row_dual, b.row_dual)


def test_highs_thread_count_can_change_between_solves():
    # HiGHS sizes one process-wide thread pool; the adapter must reset it rather than fail with kError.
    for threads in (1, 2, 1):
        assert solve_highs(knapsack(), threads=threads).status is SolveStatus.OPTIMAL


def test_persistent_lp_refuses_a_bound_change_naming_a_column_twice():
    """HiGHS rejects such a change without changing anything; PersistentLP says so instead of solving the old model."""
    from tdmarket.errors import SolverError
    from tdmarket.solvers.highs import PersistentLP

    prog = Program()
    prog.add_variables("x", 2, 0.0, 1.0, 1.0)
    prog.add_rows("sum", sp.csr_matrix(np.ones((1, 2))), 0.5, np.inf)
    lp = PersistentLP(prog)
    lp.set_col_bounds(np.array([0, 1]), np.array([0.2, 0.0]), np.array([1.0, 1.0]))  # distinct: accepted
    assert lp.col_lb[0] == 0.2
    with pytest.raises(SolverError, match="appears twice"):
        lp.set_col_bounds(np.array([0, 0]), np.array([0.3, 0.3]), np.array([1.0, 1.0]))


def test_persistent_lp_time_limit_applies_to_each_solve_not_to_the_objects_runs_together():
    """HiGHS compares its `time_limit` with the run clock of the object, which accumulates over its runs: a limit
    set once stopped every solve after the runs together passed it (the cut exchange's level LPs on italy-652 then
    ended "Time limit reached" at once in every round and each round fell back to the bound LP's point)."""
    from tdmarket.solvers.highs import PersistentLP

    rng = np.random.default_rng(3)
    n = 300
    prog = Program()
    prog.add_variables("x", n, 0.0, 1.0, rng.random(n) - 0.6)
    A = sp.random(n, n, density=0.05, random_state=4, format="csr") + sp.eye(n, format="csr")
    prog.add_rows("cap", A, -np.inf, 1.0 + rng.random(n))
    lp = PersistentLP(prog)
    lp.h.clearSolver()
    first = lp.solve()
    assert first.status is SolveStatus.OPTIMAL
    lp.time_limit_s = 20 * max(first.solve_time_s, 1e-3)  # generous for one solve
    solves = 0
    while lp.h.getRunTime() < 3 * lp.time_limit_s:  # the runs together pass the limit thrice
        lp.h.clearSolver()  # a cold solve each time: the run clock must move
        sol = lp.solve()
        assert sol.status is SolveStatus.OPTIMAL
        assert sol.objective == pytest.approx(first.objective, rel=1e-9)
        solves += 1
    assert solves >= 30


def test_misocp_retries_a_fixed_integer_socp_the_interior_point_did_not_finish():
    """Regression (found by a hierarchical run of italy-652 with max_evals 3): a DSO dispatch at a cost of ~1e-5 €
    whose fixed-integer SOCP ends "almost solved" at Clarabel's default tolerance (a cone violated by 1.5e-4),
    with every MILP round proposing the same binaries, found no integer point ("no integer-feasible point").  The
    retry at looser settings (solvers.clarabel.RETRY_SETTINGS) accepts it."""
    from pathlib import Path

    from tdmarket.decomposition.area_model import AreaModel
    from tdmarket.formulations.options import ModelOptions
    from tdmarket.io import read
    from tdmarket.solvers.misocp import solve_misocp

    path = Path(__file__).resolve().parents[1] / ".." / "shared" / "smartnet" / "italy-652"
    if not (path / "GeneralParam.csv").is_file():
        pytest.skip("shared SmartNet instance italy-652 not found")
    inst = read(path)
    area = list(inst.areas.name).index("DSO-12720000")
    model = AreaModel(inst.agent_data(area), ModelOptions(integer=True))
    x = np.array([-2.330681341102377, -2.324142262524447, -2.3262296025785645])
    model.cp.prog.set_row_bounds(model.fix_rows, x, x)
    sol, _ = solve_misocp(model.cp.prog, mip_gap=1e-3)
    assert sol.status is SolveStatus.OPTIMAL, sol.message
    assert sol.mip_gap is not None and sol.mip_gap <= 1e-3
    assert np.allclose(sol.x[model.cp.own_x], x, atol=1e-6)


def exclusive_pair_misocp() -> Program:
    """Two binaries that may not both be on (z1 + z2 <= 1.2), each worth 1e-4 € (cost −1e-4), and a disc cone
    ||(y1, y2)|| <= 1 that keeps the program a SOCP.  The interior-point relaxation sits in the middle of its optimal
    face, z = (0.6, 0.6): rounded to nearest (1, 1) breaks the row; rounded down (0, 0) costs 1.2e-4 € more than the
    relaxation, within the 1e-3 € gap."""
    p = Program()
    p.add_variables("z", 2, lb=0.0, ub=1.0, cost=-1e-4, integer=True)
    p.add_variables("t", 1, lb=0.0, ub=1.0)
    p.add_variables("y", 2, lb=-np.inf, cost=[1e-3, 0.0])
    p.add_rows("group", np.array([[1.0, 1.0, 0, 0, 0]]), lo=-np.inf, hi=1.2)
    G = -sp.coo_matrix((np.ones(3), ([0, 1, 2], [2, 3, 4])), shape=(3, 5))
    p.add_soc("disc", G.tocsr(), np.zeros(3), dim=3)
    return p


def test_misocp_rounding_down_closes_the_gap_without_a_milp_when_asked():
    from tdmarket.solvers.misocp import solve_misocp

    p = exclusive_pair_misocp()
    down, hist_down = solve_misocp(p, mip_gap=1e-3, round_down=True)
    assert down.status is SolveStatus.OPTIMAL
    assert len(hist_down.rounds) == 1  # round 0 only: no MILP
    np.testing.assert_allclose(down.x[:2], [0.0, 0.0], atol=1e-9)
    assert down.mip_gap is not None and down.mip_gap <= 1e-3
    assert down.mip_bound is not None and down.mip_bound <= down.objective
    # the reference search (no rounding down) goes on to the MILP and takes one of the two binaries
    ref, hist_ref = solve_misocp(p, mip_gap=1e-3)
    assert len(hist_ref.rounds) > 1
    assert float(ref.x[:2].sum()) == pytest.approx(1.0, abs=1e-9)
    assert ref.objective == pytest.approx(down.objective - 1e-4, abs=1e-6)


def test_misocp_solves_its_relaxation_again_when_the_callers_is_not_good_enough():
    """A DSO hands its evaluation at the exchange to the dispatch as the relaxation; an "almost solved" one whose
    row residual is beyond the relaxation tolerance used to make the dispatch fail (and fall back to every
    binary at 0); the search now solves the relaxation itself."""
    import dataclasses

    from tdmarket.solvers.clarabel import solve_clarabel
    from tdmarket.solvers.misocp import solve_misocp

    p = exclusive_pair_misocp()
    ref, _ = solve_misocp(p, mip_gap=1e-3)
    relaxed = p.copy()
    relaxed.relax_integrality()
    good = solve_clarabel(relaxed)
    x = good.x.copy()
    x[:2] += 0.05  # z1 + z2 = 1.3 > 1.2: the row is violated
    bad = dataclasses.replace(good, x=x, status=SolveStatus.ALMOST_OPTIMAL)
    sol, _ = solve_misocp(p, mip_gap=1e-3, relaxation=bad)
    assert sol.status is SolveStatus.OPTIMAL
    assert sol.objective == pytest.approx(ref.objective, abs=1e-8)


def test_misocp_stops_within_the_given_eur_of_its_relaxation():
    from tdmarket.solvers.misocp import solve_misocp

    p = exclusive_pair_misocp()  # rounded down: 1.2e-4 EUR above the relaxation
    relaxed = p.copy()
    relaxed.relax_integrality()
    rel = solve(relaxed)
    tight, hist_tight = solve_misocp(p, mip_gap=1e-5, round_down=True)
    assert len(hist_tight.rounds) > 1  # 1.2e-4 EUR > 1e-5: on to the MILP
    near, hist_near = solve_misocp(p, mip_gap=1e-5, round_down=True, gap_eur=2e-4)
    assert len(hist_near.rounds) == 1
    assert near.objective - rel.objective <= 2e-4
    assert near.objective == pytest.approx(tight.objective + 1e-4, abs=1e-6)
    # a share smaller than the rounding's distance to the relaxation does not stop it
    short, hist_short = solve_misocp(p, mip_gap=1e-5, round_down=True, gap_eur=1e-4)
    assert len(hist_short.rounds) > 1
    assert short.objective == pytest.approx(tight.objective, abs=1e-9)


def test_misocp_stops_within_the_given_eur_of_its_own_bound():
    """Two binaries that may not both be on (2 z1 + 2 z2 <= 3: the relaxation, 0.5 € below the optimum, has both at
    0.75), each opening one direction of a disc.  The first MILP round's point is 4.8e-3 € above its bound (the
    octagon's cuts overshoot the disc).  With 1e-2 € allowed the search ends there, within that of the optimum;
    without it two more MILP rounds close the gap."""
    from tdmarket.solvers.misocp import solve_misocp

    p = Program()
    p.add_variables("z", 2, lb=0.0, ub=1.0, cost=-1.0, integer=True)
    p.add_variables("t", 1, lb=1.0, ub=1.0)
    p.add_variables("y", 2, lb=-np.inf, cost=-0.1)
    p.add_rows("pair", np.array([[2.0, 2.0, 0, 0, 0]]), lo=-np.inf, hi=3.0)
    p.add_rows("y1", np.array([[-1.5, 0, 0, 1.0, 0]]), lo=-np.inf, hi=-0.5)  # y1 <= -0.5 unless z1
    p.add_rows("y2", np.array([[0, -1.5, 0, 0, 1.0]]), lo=-np.inf, hi=-0.5)  # y2 <= -0.5 unless z2
    p.add_soc("disc", -sp.csr_matrix((np.ones(3), ([0, 1, 2], [2, 3, 4])), shape=(3, 5)), np.zeros(3), dim=3)
    full, hist_full = solve_misocp(p, mip_gap=1e-6, round_down=True)
    assert len(hist_full.rounds) > 2
    early, hist_early = solve_misocp(p, mip_gap=1e-6, round_down=True, gap_eur=1e-2)
    assert len(hist_early.rounds) == 2
    last = hist_early.rounds[-1]
    assert 1e-3 < last["upper_bound"] - last["lower_bound"] <= 1e-2
    assert full.objective <= early.objective <= full.objective + 1e-2
    assert early.mip_bound is not None and early.mip_bound <= full.objective + 1e-9
    # the relaxation alone is 0.59 € below: the relaxation + gap_eur target would not have stopped it
    assert early.objective - hist_early.rounds[0]["lower_bound"] > 0.5


def test_misocp_stops_when_the_milp_repeats_its_binaries_and_the_bound_stalls():
    """A binary worth 10 € whose SOCP needs 1e-7 of slack at 1e4 €/unit (1e-3 €), which the cut approximation avoids
    within HiGHS's 1e-7 feasibility tolerance: every MILP proposes the same binary at the same bound.  With the
    cones refined at any violation (cone_tol 0) the search ran its 20 rounds; it now ends at the first repeat with
    the incumbent and an honest gap (what a DSO dispatch of an italy-693 variant did for 20 rounds of 10 s MILPs)."""
    from tdmarket.solvers.misocp import solve_misocp

    p = Program()
    p.add_variables("b", 1, lb=0.0, ub=1.0, cost=-10.0, integer=True)
    p.add_variables("t", 1, lb=1.0, ub=1.0)
    p.add_variables("uv", 2, lb=-np.inf)
    p.add_variables("slack", 1, lb=0.0, cost=1e4)
    p.add_rows("v", np.array([[-0.6, 0, 0, 1.0, 0]]), lo=0.0, hi=0.0)
    p.add_rows("u", np.array([[-0.8, 0, 1.0, 0, 1.0]]), lo=1e-7, hi=np.inf)  # u <= 0.8 on the circle: slack 1e-7
    p.add_soc("disc", -sp.csr_matrix((np.ones(3), ([0, 1, 2], [1, 2, 3])), shape=(3, 5)), np.zeros(3), dim=3)
    sol, hist = solve_misocp(p, mip_gap=1e-6, cone_tol=0.0)
    assert [r.get("stalled", False) for r in hist.rounds] == [False, True]
    assert sol.status is SolveStatus.OPTIMAL
    assert sol.x[0] == pytest.approx(1.0)
    assert sol.objective == pytest.approx(-10.0 + 1e-3, abs=1e-6)
    assert sol.mip_gap == pytest.approx(1e-4, rel=0.01)  # UB − LB = 1e-3 € of 10 €, reported


def test_highs_objective_target_stops_at_an_incumbent_that_meets_it():
    # a knapsack (40 items, fixed seed) whose optimum HiGHS proves at its root; its first incumbent already meets
    # a target 20 % above the optimum
    rng = np.random.default_rng(0)
    w = rng.integers(20, 60, 40).astype(float)
    p = Program()
    p.add_variables("z", 40, lb=0.0, ub=1.0, cost=-(w + rng.integers(-5, 6, 40)), integer=True)
    p.add_rows("cap", w[None, :], lo=-np.inf, hi=float(w.sum() / 2) + 0.5)
    full = solve_highs(p, mip_gap=0.0)
    assert full.status is SolveStatus.OPTIMAL
    target = 0.8 * full.objective  # the optimum is negative
    early = solve_highs(p, mip_gap=0.0, objective_target=target)
    assert early.status is SolveStatus.OBJECTIVE_TARGET
    assert full.objective <= early.objective <= target + 1e-9
    assert accept(early, p, allow_almost=False, allow_time_limit=True)  # an incumbent, usable on request
    assert not accept(early, p, allow_almost=False)


def test_integer_rows_catch_a_rounding_that_breaks_a_row_of_integers_only():
    from tdmarket.solvers.misocp import IntegerRows

    p = exclusive_pair_misocp()
    rows = IntegerRows(p)
    assert rows.rows.tolist() == [0]  # the group row; the cone rows are not linear rows
    x = np.zeros(p.n)
    x[:2] = 0.6
    assert rows.broken(x)  # rounds to (1, 1): 2 > 1.2
    x[:2] = [0.6, 0.4]
    assert not rows.broken(x)
    # a row with a continuous column is never judged (its continuous part may absorb the integers)
    q = exclusive_pair_misocp()
    q.add_rows("mixed", np.array([[1.0, 1.0, 0, 1.0, 0]]), lo=-np.inf, hi=0.5)
    x[:2] = 0.6
    assert IntegerRows(q).rows.tolist() == [0]


def test_misocp_shares_its_tangent_cuts_between_solves_of_one_program(tmp_path):
    """`oa_cuts` (the integer repair's best responses): the tangent cuts of one solve start the next solve of the
    same program at other prices.  A DSO of a generated variant, its exchange free, at four prices: the same
    optima as solves from scratch, in fewer outer-approximation rounds (measured: 10 instead of 12)."""
    from tdmarket.decomposition.area_model import AreaModel
    from tdmarket.examples import builtin_path
    from tdmarket.formulations.options import ModelOptions
    from tdmarket.generate.variants import make_variant, property_test_options
    from tdmarket.io import read
    from tdmarket.solvers.misocp import solve_misocp

    variant, _ = property_test_options(5)
    inst = read(make_variant(builtin_path(), tmp_path / "v", seed=5, **variant))
    model = AreaModel(inst.agent_data(list(inst.areas.name).index("DSO-201")), ModelOptions(integer=True))
    prog, T = model.cp.prog, len(model.fix_rows)
    prog.set_row_bounds(model.fix_rows, np.full(T, -model.rating), np.full(T, model.rating))
    pool: list = []
    rounds = {"shared": 0, "alone": 0}
    for price in (20.0, 35.0, 50.0, 10.0):  # EUR per MW exported
        c = prog.c.copy()
        c[model.cp.own_x] -= price
        at_price = prog.copy()
        at_price.set_cost(c)
        shared, h_shared = solve_misocp(at_price, mip_gap=1e-6, oa_cuts=pool)
        alone, h_alone = solve_misocp(at_price, mip_gap=1e-6)
        assert shared.status is SolveStatus.OPTIMAL and alone.status is SolveStatus.OPTIMAL
        assert shared.objective == pytest.approx(alone.objective, rel=1e-6)
        rounds["shared"] += len(h_shared.rounds)
        rounds["alone"] += len(h_alone.rounds)
    assert pool and rounds["shared"] < rounds["alone"], rounds


def market_split(m: int = 4, n: int = 30) -> Program:
    """A market-split MILP (Cornuéjols–Dawande, fixed seed) with penalised slack: feasible at once (z = 0), but
    branch and bound needs many thousands of nodes to prove its optimum."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 100, (m, n)).astype(float)
    p = Program()
    p.add_variables("z", n, lb=0.0, ub=1.0, cost=0.0, integer=True)
    p.add_variables("s", 2 * m, lb=0.0, ub=np.inf, cost=1.0)
    b = np.floor(a.sum(axis=1) / 2)
    p.add_rows("split", np.hstack([a, np.eye(m), -np.eye(m)]), lo=b, hi=b)
    return p


def test_highs_node_limit_stops_branch_and_bound_with_its_incumbent_deterministically():
    p = market_split()
    first = solve_highs(p, mip_gap=0.0, node_limit=50)
    assert first.status is SolveStatus.TIME_LIMIT  # a work limit with an incumbent
    assert first.iterations == 50  # B&B nodes
    assert np.isfinite(first.objective) and first.mip_gap is not None and first.mip_gap > 0
    assert accept(first, p, allow_almost=False, allow_time_limit=True)
    again = solve_highs(p, mip_gap=0.0, node_limit=50)
    assert again.objective == first.objective and np.array_equal(again.x, first.x)


def test_a_signal_during_a_long_milp_stops_highs_and_is_raised():
    """The CLI raises Ctrl-C and SIGTERM in the main thread; a MILP runs in a solver thread meanwhile, so the signal
    is raised at once and HiGHS stops at its next interrupt check (a plain run held the main thread until HiGHS
    returned: a killed run went on for 1 h 50 min)."""
    import os
    import signal
    import threading
    import time

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")

    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop()

    previous = signal.signal(signal.SIGUSR1, stop)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGUSR1))
    t0 = time.perf_counter()
    try:
        timer.start()
        with pytest.raises(Stop):
            solve_highs(market_split(5, 40), mip_gap=0.0, time_limit=60.0)  # minutes to prove without a limit
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert time.perf_counter() - t0 < 10.0
    # the solver is usable again afterwards
    assert solve_highs(market_split(), mip_gap=0.0, node_limit=50).status is SolveStatus.TIME_LIMIT


# --------------------------------------------------------------------------- cones left out until near (OmittedCones)
def two_disc_program(seed: int, k: int = 6) -> Program:
    """k points (p_i, q_i), each in a disc of radius 1 around the origin ("core") and in a limit disc around
    (a_i, 0) of radius r_i ("limit"; half of them small enough to bind), one equality row sum(p) = s, a random
    linear cost."""
    rng = np.random.default_rng(seed)
    p = Program()
    p.add_variables("p", k, lb=-np.inf, cost=rng.normal(size=k))
    p.add_variables("q", k, lb=-np.inf, cost=rng.normal(size=k))
    p.add_rows("sum", np.concatenate([np.ones(k), np.zeros(k)])[None, :], lo=0.0, hi=0.0)
    idx = np.arange(k)

    def disc(centre: np.ndarray, radius: np.ndarray):
        rows = np.concatenate([3 * idx + 1, 3 * idx + 2])
        G = -sp.coo_matrix((np.ones(2 * k), (rows, np.concatenate([idx, k + idx]))), shape=(3 * k, 2 * k))
        h = np.zeros(3 * k)
        h[3 * idx], h[3 * idx + 1] = radius, -centre
        return G.tocsr(), h

    p.add_soc("core", *disc(np.zeros(k), np.ones(k)), dim=3)
    radius = np.where(idx % 2 == 0, rng.uniform(0.2, 0.6, k), rng.uniform(3.0, 4.0, k))
    p.add_soc("limit", *disc(rng.uniform(-0.5, 0.5, k), radius), dim=3)
    return p


@pytest.mark.parametrize("seed", range(12))
def test_omitted_cones_give_the_whole_programs_optimum_and_duals(seed):
    from tdmarket.solvers.clarabel import OmittedCones, PersistentSOCP

    p = two_disc_program(seed)
    omitted = OmittedCones(p, ["limit"])
    assert omitted.omit.sum() == 6
    persistent = PersistentSOCP(p.copy(), np.array([0]), omitted=omitted)

    def at(s: float) -> Program:
        q = p.copy()
        q.set_row_bounds([0], s, s)
        return q

    grid = np.linspace(-2.5, 2.5, 11)
    value = np.array([solve_clarabel(at(s)).objective for s in grid])  # the whole program's V(s)
    for s in (0.0, 0.8, -1.5, 2.5):
        q = at(s)
        full = solve_clarabel(q)
        assert full.status is SolveStatus.OPTIMAL
        for sol in (solve_clarabel(q, omitted=omitted), (persistent.set_equalities([s]), persistent.solve())[1]):
            assert sol.status is SolveStatus.OPTIMAL
            assert sol.objective == pytest.approx(full.objective, abs=1e-7)
            # its dual is a subgradient of the whole program's V (where two discs meet, V has a kink and the
            # interior point's dual is one of many)
            assert np.all(value >= sol.objective + sol.row_dual[0] * (grid - s) - 1e-7)
            assert accept(sol, q)  # every cone holds, the omitted ones included
            assert sol.cone_dual.shape == (q.k,)
            # the duals of the cones still left out are zero
            assert np.all(sol.cone_dual[np.repeat(omitted.omit, 3)] == 0.0)
    # the small limit discs bind at some point and joined the solves; the large ones never come near
    assert 0 < omitted.added <= 3 and omitted.omit[6:][1::2].all() and not omitted.omit[:6].any()


@pytest.mark.parametrize("seed", range(8))
def test_misocp_with_omitted_cones_gives_the_whole_programs_optimum(seed):
    """A DSO's dispatch (its relaxation and fixed-integer SOCPs) leaves far thermal circles out as its evaluations
    do: the mixed-integer optimum is the whole program's, and the point meets every cone."""
    from tdmarket.solvers.clarabel import OmittedCones
    from tdmarket.solvers.misocp import fix_integers, solve_misocp

    k = 6
    p = two_disc_program(seed, k)
    p.set_row_bounds([0], 0.7, 0.7)
    rng = np.random.default_rng(100 + seed)
    # an on/off binary per point: |p_i| <= 3 u_i, at a commitment cost
    u = p.add_variables("u", k, 0.0, 1.0, rng.uniform(0.05, 0.4, k)).index
    P = sp.hstack([sp.eye(k), sp.csr_matrix((k, k)), -3.0 * sp.eye(k)]).tocsr()
    N = sp.hstack([-sp.eye(k), sp.csr_matrix((k, k)), -3.0 * sp.eye(k)]).tocsr()
    p.add_rows("on", sp.vstack([P, N]).tocsr(), -np.inf, 0.0)
    p.set_integrality(u)
    whole, _ = solve_misocp(p, mip_gap=1e-9)
    omitted = OmittedCones(p, ["limit"])
    part, _ = solve_misocp(p, mip_gap=1e-9, omitted=omitted)
    assert whole.status is part.status is SolveStatus.OPTIMAL
    assert part.objective == pytest.approx(whole.objective, abs=1e-6)
    assert accept(part, fix_integers(p, part.x))  # every cone holds, the omitted ones included
    assert omitted.added > 0  # the small limit discs bind and joined the solves


def test_omitted_cones_do_not_apply_to_another_cone_layout():
    from tdmarket.solvers.clarabel import OmittedCones

    omitted = OmittedCones(two_disc_program(0), ["limit"])
    other = two_disc_program(0, k=4)
    assert not omitted.applies_to(other)
    assert solve_clarabel(other, omitted=omitted).objective == pytest.approx(solve_clarabel(other).objective)
    assert omitted.added == 0


def _reference_stack(program: Program, cone_rows: np.ndarray | None) -> sp.csc_matrix:
    """Clarabel's M written with scipy's slicing and stacking (the module docstring's order)."""
    A, I = sp.csr_matrix(program.A), sp.identity(program.n, format="csr")
    lo, hi, lb, ub = program.row_lo, program.row_hi, program.lb, program.ub
    eq = np.isfinite(lo) & (lo == hi)
    up, dn = np.isfinite(hi) & ~eq, np.isfinite(lo) & ~eq
    fix = np.isfinite(lb) & (lb == ub)
    vub, vlb = np.isfinite(ub) & ~fix, np.isfinite(lb) & ~fix
    G = sp.csr_matrix(program.cone_A)
    G = G if cone_rows is None else G[cone_rows]
    return sp.vstack([A[eq], I[fix], A[up], -A[dn], I[vub], -I[vlb], G], format="csc")


def test_stacked_matrix_equals_the_block_by_block_construction(builtin):
    from tdmarket.decomposition.area_model import AreaModel
    from tdmarket.formulations.options import ModelOptions
    from tdmarket.solvers.clarabel import OmittedCones, _stack

    programs = [two_node_lp(True), two_node_lp(False), disc_socp(), exclusive_pair_misocp(), two_disc_program(1)]
    programs += [AreaModel(builtin.area_instance(a), ModelOptions()).cp.prog for a in range(1, builtin.n_areas)]
    for program in programs:
        omitted = OmittedCones(program, ["limit", "thermal_from", "thermal_to"])
        omitted.omit[::3] = False
        for cone_rows in (None, omitted.kept_rows()):
            M, b, cones, _ = _stack(program, cone_rows)
            ref = _reference_stack(program, cone_rows)
            assert M.shape == ref.shape and M.has_sorted_indices
            assert abs(M - ref).max() == 0.0 if M.nnz or ref.nnz else True
            assert len(b) == M.shape[0]


def _extended_lp(seed: int):
    """A feasible LP (bounded columns, equality and inequality rows) and an extension of it: more columns, some
    free, some in the old rows, and more rows over old and new columns, as a parent's clearing grows by its
    children's cut or curve rows."""
    rng = np.random.default_rng(seed)
    n, m = 40, 25
    base = Program()
    base.add_variables("y", n, -rng.uniform(0, 5, n), rng.uniform(0, 5, n), rng.normal(size=n))
    A = sp.random(m, n, density=0.2, random_state=seed, format="csr") + sp.eye(m, n, format="csr")
    y0 = rng.uniform(-1, 1, n)  # a point inside the bounds: the rows hold there
    rhs = A @ y0
    base.add_rows("eq", A[:10], rhs[:10], rhs[:10])
    base.add_rows("le", A[10:], -np.inf, rhs[10:] + 1.0)
    ext = base.copy()
    k = 8
    ext.add_variables("theta", k, -np.inf, np.inf, 1.0)  # free, bounded below only through the cut rows
    ext.add_variables("s", k, 0.0, 2.0, rng.uniform(-1, 1, k))
    cuts = sp.hstack(
        [sp.random(3 * k, n, density=0.3, random_state=seed + 1), sp.vstack([sp.eye(k)] * 3), sp.csr_matrix((3 * k, k))]
    ).tocsr()
    ext.add_rows("cuts", cuts, rng.normal(size=3 * k) - 20.0, np.inf)
    link = sp.hstack([sp.random(k, n, density=0.2, random_state=seed + 2), sp.csr_matrix((k, k)), sp.eye(k)]).tocsr()
    ext.add_rows("link", link, -np.inf, link @ np.concatenate([y0, np.zeros(k), np.ones(k)]) + 0.5)
    return base, ext


@pytest.mark.parametrize("seed", range(6))
def test_an_extended_lp_started_from_the_smaller_lps_basis_reaches_the_cold_optimum(seed):
    """`StartBasis`: the optimal basis of an LP, extended to an LP with columns and rows appended (the transmission
    master and the clearing with the curves start from the clearing without its children), is a valid start:
    one basic variable per row, and the warm solve ends at the cold solve's optimum."""
    from tdmarket.solvers.highs import PersistentLP

    base, ext = _extended_lp(seed)
    small = PersistentLP(base)
    assert small.solve().status is SolveStatus.OPTIMAL
    start = small.start_basis()
    assert start is not None and len(start.col_status) == base.n and len(start.row_status) == base.m
    basis = start.extended_to(ext.lb, ext.ub, ext.m)
    assert basis is not None
    statuses = [int(s) for s in basis.col_status] + [int(s) for s in basis.row_status]
    assert statuses.count(1) == ext.m  # kBasic
    warm = PersistentLP(ext)
    assert warm.set_start(start)
    sol = warm.solve()
    cold = solve_highs(ext)
    assert sol.status is cold.status is SolveStatus.OPTIMAL
    assert sol.objective == pytest.approx(cold.objective, rel=1e-9, abs=1e-9)
    # a basis starts only LPs that extend its own, never a smaller one
    larger = warm.start_basis()
    assert larger is not None and not PersistentLP(base).set_start(larger)


def test_a_start_basis_moves_a_column_off_a_bound_the_extended_lp_makes_infinite():
    """A kept column nonbasic at a bound that the extended LP no longer has (e.g. an exchange held at 0 MW in the
    national solve, free in the master) is put at its finite bound, or at zero when it is free."""
    from tdmarket.solvers.highs import StartBasis

    start = StartBasis(np.array([0, 2, 0, 1], np.int8), np.array([1, 1], np.int8))  # lower, upper, lower, basic
    lb = np.array([-np.inf, 0.0, -np.inf, 0.0, 0.0])
    ub = np.array([1.0, np.inf, np.inf, 1.0, np.inf])
    basis = start.extended_to(lb, ub, 3)
    assert basis is not None
    assert [int(s) for s in basis.col_status] == [2, 0, 3, 1, 0]
    assert [int(s) for s in basis.row_status] == [1, 1, 1]
    assert start.extended_to(lb[:3], ub[:3], 3) is None  # fewer columns than the basis: not an extension
