"""The distribution-formulation contract (tdmarket/formulations/distribution.py).

* the registry maps every `dist_model` to its class, and nothing else in the package tests `dist_model`;
* `SOCBranchFlow` and `LinDistFlow` implement the whole contract with the same signatures;
* on the built-in example: shapes of every result method, LinDistFlow's gap and loss cost are zero, the SOC gap is
  ≥ 0 and its loss cost prices exactly the line losses of the `lines` table;
* reference numbers recorded from the code before the formulations were split (commit 1362acc): objective,
  prices, voltages and an exchange for both distribution models, to 1e-7 relative.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from tdmarket.errors import InputError
from tdmarket.formulations.branch_flow import LinDistFlow, SOCBranchFlow
from tdmarket.formulations.clearing import ClearingProblem
from tdmarket.formulations.distribution import (
    DistributionFormulation,
    distribution_formulation,
    distribution_formulations,
)
from tdmarket.formulations.options import DIST_MODELS, ModelOptions
from tdmarket.solvers import SolveStatus, solve

PACKAGE = Path(__file__).resolve().parents[1] / "tdmarket"
CONTRACT = [
    "add_circles",
    "add_variables",
    "add_constraints",
    "terminal_flows",
    "squared_voltages",
    "soc_gap",
    "loss_cost",
    "lines_table",
    "bus_columns",
]

# recorded from the unmodified code (relaxed clearing of the built-in example, default options)
REFERENCE = {
    "socp": {
        "objective": 1589.6081114438637,
        "market_cost": 1589.6081210357913,
        "price": {(104, 2): 32.23529396766438, (204, 2): 15.02951224985144, (302, 2): 32.3759238019208},
        "vsq": {(204, 2): 1.100122513229224, (302, 2): 1.0961337085160052},
        "export_dso201_p1": -0.5534844685561232,
        "loss_mw": 0.14029150606618854,
    },
    "lindistflow": {
        "objective": 1591.5375225724677,
        "market_cost": 1591.5375225724677,
        "price": {(104, 2): 32.23529411764706, (204, 2): 15.0, (302, 2): 32.23529411764706},
        "vsq": {(204, 2): 0.9331211136371484, (302, 2): 0.9288915102309638},
        "export_dso201_p1": -0.7283614024661401,
        "loss_mw": 0.0,
    },
}
REL = 1e-7
# duals (prices) and losses (ℓ, whose cones are tight only to the interior-point tolerance): a bound that does not
# bind moves them along another path (the ℓ bound of docs/model.md §3.3 moved the price at (204, 2) by 1.9e-7 and
# the losses by 1.4e-7 relative, every other figure by less than 1e-7)
REL_IPM = 1e-6


@pytest.fixture(scope="module", params=DIST_MODELS)
def solved(request, builtin):
    cp = ClearingProblem(builtin, ModelOptions(dist_model=request.param, integer=False))
    sol = solve(cp.prog)
    assert sol.status in (SolveStatus.OPTIMAL, SolveStatus.ALMOST_OPTIMAL), sol.message
    return request.param, cp, sol, cp.extract(sol.x, sol.row_dual)


# ================================================================================================ registry
def test_registry_maps_every_dist_model():
    assert tuple(distribution_formulations()) == DIST_MODELS
    assert distribution_formulation(ModelOptions(dist_model="socp")) is SOCBranchFlow
    assert distribution_formulation(ModelOptions(dist_model="lindistflow")) is LinDistFlow
    with pytest.raises(InputError, match="unknown distribution model"):
        distribution_formulation(ModelOptions(dist_model="ac"))
    with pytest.raises(InputError, match="unknown distribution model"):
        ModelOptions(dist_model="ac").validate()


def test_no_dist_model_tests_outside_the_factory():
    """Blocks ask the formulation; only the factory looks at the option."""
    offenders = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p in PACKAGE.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"dist_model\s*(==|!=)|(==|!=)\s*\S*dist_model|dist_model\s+(not\s+)?in\b", line)
    ]
    assert offenders == []


# ================================================================================================ contract
@pytest.mark.parametrize("cls", [SOCBranchFlow, LinDistFlow])
def test_both_formulations_implement_the_contract(cls):
    assert issubclass(cls, DistributionFormulation)
    assert not inspect.isabstract(cls)
    for name in CONTRACT:
        assert inspect.signature(getattr(cls, name)) == inspect.signature(getattr(SOCBranchFlow, name)), name
    assert isinstance(cls.conic, bool)
    assert cls.name in DIST_MODELS


def test_formulation_results_follow_the_contract(solved):
    model, cp, sol, tables = solved
    d, x, T = cp.dist, sol.x, cp.inst.n_periods
    L = len(d.line)
    assert L > 0 and len(d.bus) > 0
    flows = d.terminal_flows(x)
    assert len(flows) == 4 and all(f.shape == (L, T) for f in flows)
    w = d.squared_voltages(x)
    assert w.shape == (len(cp.inst.buses), T)
    outside = np.setdiff1d(np.arange(len(cp.inst.buses)), d.bus)
    assert np.isnan(w[outside]).all() and np.isfinite(w[d.bus]).all()
    gap = d.soc_gap(x)
    assert gap.shape == (L, T)
    np.testing.assert_array_equal(cp.soc_gap(x), gap)
    loss_cost = d.loss_cost(cp.prog.n)
    assert loss_cost.shape == (cp.prog.n,)
    assert cp.prog.has_cones == d.conic  # every circle of the problem is modelled the formulation's way
    lines = d.lines_table(x)
    assert list(lines.kind.unique()) == ["D"] and len(lines) == L * T
    assert set(d.bus_columns(x)) == {"vsq_pu"}
    if isinstance(d, LinDistFlow):
        assert not gap.any()
        assert not loss_cost.any()
        assert d.l_grid is None and "l" not in cp.prog.variables
    else:
        assert gap.min() >= 0.0
        # the loss cost vector prices exactly the line losses p_from + p_to = Rℓ (€ 1 per MW)
        assert float(loss_cost @ x) == pytest.approx(float(lines.loss_mw.sum()), rel=1e-9)
        # what operators/agents.py built by hand before: € r per unit of ℓ
        expected = np.zeros(cp.prog.n)
        expected[d.l_grid.ravel()] = np.repeat(d.r, T)
        np.testing.assert_array_equal(loss_cost, expected)


# ================================================================================================ identical numbers
def test_reference_numbers_unchanged(solved):
    model, cp, sol, tables = solved
    ref = REFERENCE[model]
    assert sol.objective == pytest.approx(ref["objective"], rel=REL)
    assert cp.cost_parts(sol.x)["market_cost_eur"] == pytest.approx(ref["market_cost"], rel=REL)
    buses = tables["buses"].set_index(["node", "period"])
    for key, price in ref["price"].items():
        assert buses.loc[key, "price_p_eur_mwh"] == pytest.approx(price, rel=REL_IPM), key
    for key, vsq in ref["vsq"].items():
        assert buses.loc[key, "vsq_pu"] == pytest.approx(vsq, rel=REL), key
    ifc = tables["interfaces"].set_index(["area", "period"])
    assert ifc.loc[("DSO-201", 1), "export_mw"] == pytest.approx(ref["export_dso201_p1"], rel=REL)
    assert tables["lines"].loss_mw.sum() == pytest.approx(ref["loss_mw"], rel=REL_IPM, abs=1e-12)
    assert list(tables) == ["segments", "bids", "buses", "interfaces", "lines"]


def test_slack_cost_is_the_objectives_slack_term_per_row_not_each_variable_clipped():
    from tdmarket.formulations.balance import SlackBlock
    from tdmarket.formulations.program import Program

    prog = Program()
    for name in ("slack_p_plus", "slack_p_minus", "slack_q_plus", "slack_q_minus"):
        prog.add_variables(name, 3, 0.0, np.inf, 2500.0)  # κΔ, € per MW and period
    # row 0: an interior-point pair (-2e-8, +2e-8) whose costs cancel in the objective; row 1: a real 0.5 MW
    # imbalance with residue on the other side; row 2: a negative residue alone
    x = np.zeros(prog.n)
    x[prog.var("slack_p_plus").slice] = [-2e-8, 0.5, -1e-10]
    x[prog.var("slack_p_minus").slice] = [2e-8, -1e-10, 0.0]
    block = object.__new__(SlackBlock)  # the cost reads only the program and the point
    assert block.cost(prog, x) == pytest.approx(2500.0 * (0.5 - 1e-10), abs=1e-9)
    # clipping each variable at 0 would have counted the pair's positive half too
    assert 2500.0 * np.maximum(x[:6], 0.0).sum() - block.cost(prog, x) == pytest.approx(2500.0 * (2e-8 + 1e-10))
