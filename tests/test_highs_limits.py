"""HiGHS settings of tdmarket's node-limited MILPs (the integer repair's menu choice, docs/model.md §6.3 item 8)."""

from __future__ import annotations

from pathlib import Path

import highspy
import pytest

from tdmarket.solvers.highs import set_node_limit

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
