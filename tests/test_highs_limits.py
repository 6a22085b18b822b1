"""HiGHS settings of tdmarket's MILPs: the node-limited menu choice of the integer repair (docs/model.md §6.3 item
8) and no restart after the root presolve (`solvers.highs.solve_highs`)."""

from __future__ import annotations

from pathlib import Path

import highspy
import numpy as np
import pytest
import scipy.sparse as sp

from tdmarket.formulations.program import Program
from tdmarket.solvers.highs import set_node_limit, solve_highs
from tdmarket.solvers.result import SolveStatus

DATA = Path(__file__).parent / "data"


def test_menu_choice_that_spun_in_highs_restart_solves():
    """A menu choice written from a generated dense variant (`tdmarket variant --example` family `dense`, seed 0,
    with market responses in its menus): HiGHS 1.16 restarted after its root presolve and then ran 1.5 M simplex
    iterations at node 0 without end; with tdmarket's node-limit settings it solves (0.2 s).  The time limit only
    keeps a regression from hanging the suite."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(DATA / "menu_choice_restart_spin.mps"))
    for name, value in (
        ("threads", 1),
        ("random_seed", 0),
        ("mip_rel_gap", 1e-4),
        ("time_limit", 60.0),
        ("mip_heuristic_run_rins", False),
        ("mip_heuristic_run_rens", False),
        ("mip_heuristic_run_feasibility_jump", False),
    ):
        h.setOptionValue(name, value)
    set_node_limit(h, 1000)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    assert h.getInfo().objective_function_value == pytest.approx(2000.72725, abs=1e-3)


def _program_from_mps(path: Path) -> Program:
    """A Program with the model of an MPS file (columns, bounds, costs, integrality, rows)."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    assert h.readModel(str(path)) != highspy.HighsStatus.kError
    lp = h.getLp()
    a = lp.a_matrix_
    A = sp.csc_matrix((a.value_, a.index_, a.start_), shape=(lp.num_row_, lp.num_col_))
    integer = np.array([v == highspy.HighsVarType.kInteger for v in lp.integrality_], bool)
    prog = Program()
    prog.add_variables("x", lp.num_col_, lp.col_lower_, lp.col_upper_, lp.col_cost_, integer if len(integer) else False)
    prog.add_rows("rows", A, lp.row_lower_, lp.row_upper_)
    prog.c0 = float(lp.offset_)
    return prog


def test_dso_dispatch_milp_is_proved_without_a_restart():
    """A DSO's dispatch MILP (an outer-approximation round of `solve_misocp`, 399 binaries, italy-652's
    DSO-10060000 at a cleared exchange; written from a run): HiGHS 1.16, restarting after its root presolve, spent
    31 s and ended at its 0.0017 EUR absolute gap with the bound 0.00784 EUR below the incumbent 0.00948 EUR; with
    `solve_highs`'s settings (no restart) it proves the same incumbent optimal (0.9 s).  The time limit only keeps
    a regression from slowing the suite."""
    prog = _program_from_mps(DATA / "dso_dispatch_restart_slow.mps.gz")
    sol = solve_highs(
        prog,
        mip_gap=5e-4,
        mip_abs_gap=0.001657614712679732,
        time_limit=60.0,
        objective_target=0.008251686469528998,
        sub_mip_heuristics=False,
    )
    assert sol.status is SolveStatus.OPTIMAL
    assert sol.objective == pytest.approx(0.009483033506979297, abs=1e-7)
    assert sol.mip_bound == pytest.approx(sol.objective, abs=1e-7)  # proved, not stopped by the absolute gap
