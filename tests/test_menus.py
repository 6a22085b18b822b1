"""The integer repair's menus (tdmarket/decomposition/menus.py): single exchanges and configurations of binaries
modelled by cuts inside their slack-free boxes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tdmarket.decomposition.menus import ANCHOR_TIE_BREAK, MenuEntry, add_anchor_rows, add_entry, add_menu_rows
from tdmarket.formulations.program import Program
from tdmarket.solvers import solve


def _choose(menu: list[MenuEntry], value_eur_mw: float, lo=-10.0, hi=10.0, burnt=False):
    """min θ − value·x over one child's menu (T = 1): what the child's option is worth at that price."""
    prog = Program()
    x = prog.add_variables("x", 1, lo, hi, -value_eur_mw).index
    theta = prog.add_variables("theta", 1, -np.inf, np.inf, 1.0).index
    # a relaxed cut far below every option, as the exchange's cuts are: θ >= −100
    prog.add_rows("relaxed", sp.csr_matrix(([1.0], ([0], [theta[0]])), shape=(1, prog.n)), -100.0, np.inf)
    add_menu_rows(prog, "menu", x, int(theta[0]), menu, np.array([lo]), np.array([hi]), burnt=burnt)
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


def test_burnt_boxes_reach_the_burnt_import_end_and_only_they():
    # a configuration seen at 1 MW (2 €, flat): its range [0.5, 4] MW, or down to −3 MW burning fictitious losses
    cfg = dict(configuration="k", range_lo_mw=np.array([0.5]), range_hi_mw=np.array([4.0]))
    entry = MenuEntry(np.array([1.0]), 2.0, np.array([0.0]), range_burnt_lo_mw=np.array([-3.0]), **cfg)
    assert entry.burns_import and not MenuEntry(np.array([1.0]), 2.0, np.array([0.0]), **cfg).burns_import
    # paid to import (−1 €/MW exported): the box's import end
    assert _choose([entry], -1.0) == pytest.approx((0.5, 2.0))
    assert _choose([entry], -1.0, burnt=True) == pytest.approx((-3.0, 2.0))
    # an entry without a burnt end keeps its range in both
    plain = MenuEntry(np.array([1.0]), 2.0, np.array([0.0]), **cfg)
    assert _choose([plain], -1.0, burnt=True) == pytest.approx((0.5, 2.0))
    # add_entry keeps the burnt end with the range it came with
    menu: list[MenuEntry] = []
    add_entry(menu, entry)
    add_entry(menu, MenuEntry(np.array([1.0]), 1.5, np.array([0.0]), "k"))  # cheaper, no range
    assert menu[0].cost_eur == 1.5 and menu[0].range_burnt_lo_mw is not None and menu[0].burns_import


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


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 3), G=st.integers(1, 3), n=st.integers(1, 4))
def test_the_menu_model_is_a_relaxation_of_the_configurations_it_holds(seed: int, T: int, G: int, n: int):
    """A child with G configurations, each a convex cost C_c (max of planes plus a quadratic) on its own slack-free
    box, seen at n exchanges each with exact costs, subgradients and the box as range.  At any price v the menu
    model's minimum of θ − vᵀx is at most the best seen exchange's (each is an option at its exact cost), its
    exchange lies in the box of some configuration, and its value there is at most that configuration's true
    cost (the cuts lie below C_c): the model is a relaxation of the configurations it holds."""
    rng = np.random.default_rng(seed)
    planes = rng.normal(size=(G, 3, T)) * 5
    offsets = rng.normal(size=(G, 3)) * 3 + 10
    lo = rng.uniform(-5, 0, size=(G, T))
    hi = lo + rng.uniform(0.5, 5, size=(G, T))

    def cost(c, x):
        return float(np.max(planes[c] @ x + offsets[c]) + 0.3 * x @ x)

    def grad(c, x):
        return planes[c][int(np.argmax(planes[c] @ x + offsets[c]))] + 0.6 * x

    menu: list[MenuEntry] = []
    for c in range(G):
        for _ in range(n):
            x = rng.uniform(lo[c], hi[c])
            add_entry(menu, MenuEntry(x, cost(c, x), grad(c, x), f"c{c}", lo[c].copy(), hi[c].copy()))
    v = rng.normal(size=T) * 5
    prog = Program()
    xc = prog.add_variables("x", T, -10.0, 10.0, -v).index
    theta = prog.add_variables("theta", 1, -np.inf, np.inf, 1.0).index
    prog.add_rows("floor", sp.csr_matrix(([1.0], ([0], [theta[0]])), shape=(1, prog.n)), -1e4, np.inf)
    add_menu_rows(prog, "menu", xc, int(theta[0]), menu, np.full(T, -10.0), np.full(T, 10.0))
    sol = solve(prog, mip_gap=1e-9)
    assert sol.ok
    model_value = float(sol.objective)
    x = sol.x[xc]
    seen_best = min(e.cost_eur - v @ e.point_mw for e in menu)
    assert model_value <= seen_best + 1e-6
    inside = [c for c in range(G) if np.all(x >= lo[c] - 1e-6) and np.all(x <= hi[c] + 1e-6)]  # MIP feasibility tol
    assert inside  # the exchange lies in the box of some configuration
    assert model_value <= min(cost(c, x) for c in inside) - v @ x + 1e-6


@pytest.mark.parametrize("anchor", [(0.3, 0.7), (1.0, 0.0), (0.0, 1.0)])
def test_anchor_rows_keep_a_tie_where_it_is(anchor):
    """Two exchanges that cost the same and must sum to 1 MW: without the tie-break the solver picks any split;
    with it the split is the anchor's, and a move that gains more than the tie-break still happens."""
    prog = Program()
    x = prog.add_variables("x", 2, 0.0, 1.0, 5.0).index
    prog.add_rows("sum", sp.csr_matrix(np.ones((1, 2))), 1.0, 1.0)
    add_anchor_rows(prog, x, np.array(anchor), ANCHOR_TIE_BREAK)
    sol = solve(prog)
    assert np.allclose(sol.x[x], anchor, atol=1e-9)
    assert sol.objective == pytest.approx(5.0, abs=1e-9)  # nothing moved: the tie-break costs nothing
    cheaper = prog.c.copy()
    cheaper[x[0]] = 4.0  # now x0 is cheaper by 1 € per MW: it takes the whole MW
    prog.set_cost(cheaper)
    sol = solve(prog)
    assert np.allclose(sol.x[x], [1.0, 0.0], atol=1e-9)
