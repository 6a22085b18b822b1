"""The integer repair's menus (tdmarket/decomposition/menus.py): single exchanges and configurations of binaries
modelled by cuts inside their slack-free boxes."""

from __future__ import annotations

import numpy as np
import pytest

from tdmarket.decomposition.menus import MenuEntry, add_entry, add_menu_rows
from tdmarket.formulations.program import Program
from tdmarket.solvers import solve


def _choose(menu: list[MenuEntry], value_eur_mw: float, lo=-10.0, hi=10.0):
    """min θ − value·x over one child's menu (T = 1): what the child's option is worth at that price."""
    prog = Program()
    x = prog.add_variables("x", 1, lo, hi, -value_eur_mw).index
    theta = prog.add_variables("theta", 1, -np.inf, np.inf, 1.0).index
    # a relaxed cut far below every option, as the exchange's cuts are: θ >= −100
    import scipy.sparse as sp

    prog.add_rows("relaxed", sp.csr_matrix(([1.0], ([0], [theta[0]])), shape=(1, prog.n)), -100.0, np.inf)
    add_menu_rows(prog, "menu", x, int(theta[0]), menu, np.array([lo]), np.array([hi]))
    sol = solve(prog)
    assert sol.ok
    return float(sol.x[x[0]]), float(sol.x[theta[0]])


def test_single_exchanges_are_taken_at_their_cost():
    menu = [MenuEntry(np.array([1.0]), 5.0), MenuEntry(np.array([3.0]), 6.0)]
    assert _choose(menu, 0.0) == pytest.approx((1.0, 5.0))
    assert _choose(menu, 1.0) == pytest.approx((3.0, 6.0))  # 6 − 3 < 5 − 1


def test_a_configuration_moves_inside_its_box_at_the_max_of_its_cuts():
    # one configuration seen at x = 1 (2 €, slope 1) and x = 3 (6 €, slope 3): its cut model is
    # max(x + 1, 3x − 3), with a kink at x = 2 (3 €)
    cfg = dict(configuration="k", range_lo_mw=np.array([0.5]), range_hi_mw=np.array([4.0]))
    menu = [
        MenuEntry(np.array([1.0]), 2.0, np.array([1.0]), **cfg),
        MenuEntry(np.array([3.0]), 6.0, np.array([3.0]), **cfg),
    ]
    # at 2 €/MW the minimum of θ − 2x is at the kink, between the two exchanges seen
    assert _choose(menu, 2.0) == pytest.approx((2.0, 3.0))
    # at 0.5 €/MW it is at the box's lower end, on the first cut: 0.5 + 1
    assert _choose(menu, 0.5) == pytest.approx((0.5, 1.5))
    # at 4 €/MW it runs to the box's upper end (4 MW, the configuration's slack-free range), not to the parent's 10
    assert _choose(menu, 4.0) == pytest.approx((4.0, 9.0))


def test_a_configuration_without_a_range_is_only_its_points():
    menu = [MenuEntry(np.array([1.0]), 2.0, np.array([1.0]), "k")]
    assert _choose(menu, 4.0) == pytest.approx((1.0, 2.0))


def test_options_compete_and_a_single_exchange_can_win():
    cfg = dict(configuration="k", range_lo_mw=np.array([0.0]), range_hi_mw=np.array([2.0]))
    menu = [MenuEntry(np.array([1.0]), 2.0, np.array([1.0]), **cfg), MenuEntry(np.array([5.0]), 3.0)]
    assert _choose(menu, 1.0) == pytest.approx((5.0, 3.0))  # 3 − 5 beats the configuration's best, 1 − 0 = 1
    assert _choose(menu, 0.0) == pytest.approx((0.0, 1.0), abs=1e-9)  # the configuration at its lower end


def test_add_entry_keeps_one_entry_per_exchange_and_configuration():
    menu: list[MenuEntry] = []
    add_entry(menu, MenuEntry(np.array([1.0, 2.0]), 5.0))
    add_entry(menu, MenuEntry(np.array([1.0, 2.0 + 1e-9]), 4.0))  # the same exchange, cheaper: replaces it
    assert len(menu) == 1 and menu[0].cost_eur == 4.0
    add_entry(menu, MenuEntry(np.array([1.0, 2.0]), 4.5, np.array([1.0, 1.0]), None))  # dearer, but has a slope
    assert len(menu) == 1 and menu[0].cost_eur == 4.0 and menu[0].slope_eur_mw is not None
    add_entry(menu, MenuEntry(np.array([1.0, 2.0]), 4.0, configuration="other"))  # another configuration
    assert len(menu) == 2
