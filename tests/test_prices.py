"""Defined prices, price verification of the orders, uplift by cause and interface payments (docs/model.md §8).

Hand-worked cases (tests/casebuilder.py) with known price intervals and published prices, then the held-exchange
schemes on the shared instances and on a generated congested variant."""

from __future__ import annotations

import numpy as np
import pytest
from casebuilder import shared_path, single_node_case, write_case

from tdmarket.api import clear
from tdmarket.formulations.clearing import ClearingProblem
from tdmarket.formulations.options import ModelOptions
from tdmarket.io import read
from tdmarket.market.dual_face import DualFace
from tdmarket.market.pricing import PRICE_TOL_EUR_MWH, _price_rows
from tdmarket.schemes.centralized import solve_clearing

KAPPA = 1e4
TOL = 1e-4  # €/MWh: interior-point accuracy of the interval ends


def _pocket_case(folder):
    """T node 1 (reference, short 1 MW; a divisible up order 0–5 MW at 30 €/MWh) and T node 2 with no T line,
    hosting DSO area {3 (root), 4} through the interface 2–3.  Node 2 has an up order at 25 and a down order at
    20 €/MWh; node 4 an up order at 20 and a down order at 10.  Nothing outside node 1 is short or long, so every
    order outside node 1 stays at 0."""
    bids = [
        dict(node=1, qtbid=1, qbid=1, seg=1, t=1, lo=0, hi=5, price=30),
        dict(node=2, qtbid=2, qbid=2, seg=2, t=1, lo=0, hi=5, price=25),
        dict(node=2, qtbid=3, qbid=3, seg=3, t=1, lo=0, hi=-5, price=20),
        dict(node=4, qtbid=4, qbid=4, seg=4, t=1, lo=0, hi=1, price=20),
        dict(node=4, qtbid=5, qbid=5, seg=5, t=1, lo=0, hi=-1, price=10),
    ]
    return write_case(
        folder,
        t_nodes=[(1, 1), (2, 1)],  # node 2 is a transmission component of its own (its own reference)
        d_nodes=[(3, 0.9025, 1.1025), (4, 0.9025, 1.1025)],
        edges=[(1, 2, 3, 0, 0, 5), (2, 3, 4, 0.01, 0.1, 2)],
        injections={(1, 1): (-1.0, 0.0)},
        bids=bids,
    )


def _row(buses, node):
    return buses.set_index("node").loc[node]


@pytest.mark.parametrize("scheme", ["no-coordination", "shared-balancing"])
def test_node_behind_a_held_exchange_gets_the_nearest_end_of_its_interval(tmp_path, scheme):
    """Held exchange (x = 0): node 2's balance has no flexible resource.  Its optimal duals are every y with
    −20 <= y <= 25 (the down order at 20 and the up order at 25 stay at 0); the coupled market, node 1, prices at
    30, so the published price is 25.  The DSO area is a pocket too: at most 20 (its up order stays at 0) and at
    least 0, not −10 (its down order): at a negative price the relaxation would burn power in fictitious line
    losses (ℓ can grow from 0), so no negative price is optimal.  Its reference is the interface price 25:
    published 20.  Reactive prices are unique at 0: the reactive import at the root is free and unpriced."""
    res = clear(_pocket_case(tmp_path / "case"), scheme=scheme, executor="inline")
    b = res.tables["buses"]
    n1, n2 = _row(b, 1), _row(b, 2)
    assert n1.price_p_eur_mwh == pytest.approx(30, abs=TOL) and not n1.price_p_degenerate
    assert n2.price_p_degenerate
    assert (n2.price_p_lo_eur_mwh, n2.price_p_hi_eur_mwh) == pytest.approx((-20, 25), abs=TOL)
    assert n2.price_p_eur_mwh == pytest.approx(25, abs=TOL)
    for node in (3, 4):
        d = _row(b, node)
        assert d.price_p_degenerate
        assert (d.price_p_lo_eur_mwh, d.price_p_hi_eur_mwh) == pytest.approx((0, 20), abs=1e-3)
        assert d.price_p_eur_mwh == pytest.approx(20, abs=1e-3)
        assert not d.price_q_degenerate and d.price_q_eur_mvarh == pytest.approx(0, abs=1e-3)
    # the interface price the DSO was sent is the published host price, not a solver's end of [−κ, κ]
    assert res.tables["interfaces"].interface_price_eur_mwh.to_numpy() == pytest.approx([25], abs=TOL)
    p = res.summary["prices"]
    assert p["published_kappa_without_slack"] == 0 and p["published_kappa_degenerate"] == 0
    assert p["degenerate_p_t"] == 1 and p["degenerate_p_d"] == 2


def test_common_couples_the_pocket_and_publishes_one_price(tmp_path):
    """Integrated clearing: the exchange is free, so nodes 2, 3, 4 form one pocket whose price lies in
    [max(−20, −10, 0 (losses)), min(25, 20)] = [0, 20]; with reference 30 (node 1) all three publish 20."""
    res = clear(_pocket_case(tmp_path / "case"), scheme="common")
    b = res.tables["buses"]
    for node in (2, 3, 4):
        r = _row(b, node)
        assert r.price_p_degenerate
        assert (r.price_p_lo_eur_mwh, r.price_p_hi_eur_mwh) == pytest.approx((0, 20), abs=1e-3)
        assert r.price_p_eur_mwh == pytest.approx(20, abs=1e-3)


def test_aggregate_ranges_equal_the_per_row_ranges_on_the_pocket(tmp_path):
    """The two aggregate LPs (min and max Σ w y) give every row's exact interval here (one degree of freedom per
    pocket): compared with one LP per row."""
    inst = read(_pocket_case(tmp_path / "case"))
    cp = ClearingProblem(inst, ModelOptions())
    sol, _ = solve_clearing(cp)
    p_rows, q_rows, _, _ = _price_rows(cp)
    rows = np.concatenate([p_rows, q_rows])
    face = DualFace(cp.prog, sol)
    agg, exact = face.ranges(rows, 1.0 + 0.1 * np.arange(len(rows)) % 1), face.exact_ranges(rows)
    assert agg.lo == pytest.approx(exact.lo, abs=1e-5)
    assert agg.hi == pytest.approx(exact.hi, abs=1e-5)
    # and the face contains the solver's duals
    assert np.all(agg.lo <= sol.row_dual[rows] + 1e-9) and np.all(sol.row_dual[rows] <= agg.hi + 1e-9)


def test_paradoxically_rejected_indivisible_order_carries_its_lost_opportunity_cost(tmp_path):
    """One node short 1 MW; an all-or-nothing up order of 2 MW at 10 €/MWh cannot be accepted (its second MW
    would need slack), so the divisible order at 30 €/MWh sets the price.  The AON order is in the money
    (30 > 10) and rejected: paradoxically rejected, LOC = (30 − 10)·2 = 40 €, booked to indivisibility."""
    bids = [
        dict(node=1, qtbid=1, qbid=1, seg=1, t=1, lo=0, hi=2, price=10, xlb=1),
        dict(node=1, qtbid=2, qbid=2, seg=2, t=1, lo=0, hi=5, price=30),
    ]
    res = clear(single_node_case(tmp_path / "case", [-1.0], bids), scheme="common")
    checks = res.tables["order_checks"].set_index("segment")
    assert checks.loc[1, "status"] == "paradoxically rejected"
    assert checks.loc[1, "margin_eur_mwh"] == pytest.approx(20, abs=TOL)
    assert checks.loc[1, "participant_loc_eur"] == pytest.approx(40, abs=1e-3)
    assert not checks.loc[1, "explained_by_order_rules"]
    assert checks.loc[2, "status"] == "consistent"
    v = res.summary["verification"]
    assert v["paradoxically_rejected_with_loc"] == 1 and v["paradoxically_accepted"] == 0
    assert v["paradoxically_rejected_loc_eur"] == pytest.approx(40, abs=1e-3)
    causes = res.summary["incentives"]["uplift_by_cause_eur"]
    assert causes["indivisibility"] == pytest.approx(40, abs=1e-3)
    assert sum(causes.values()) == pytest.approx(res.summary["incentives"]["uplift_eur"], abs=1e-6)


def test_interface_payments_balance_to_zero(builtin):
    """TSO↔DSO payments: what each DSO receives at the interface price the TSO pays, in every period."""
    for scheme in ("common", "hierarchical"):
        res = clear(builtin, scheme=scheme, executor="inline")
        ops = res.tables["settlement_operators"]
        per_period = ops.groupby("period").interface_payment_eur.sum()
        assert np.abs(per_period.to_numpy()).max() <= 1e-6 * max(1.0, ops.interface_payment_eur.abs().max())
        pay = res.summary["settlement"]["interface_payments"]
        assert pay["balance_residual_eur"] == pytest.approx(0, abs=1e-6)
        assert set(pay["by_operator"]) == set(ops.operator)
        if scheme == "common":  # the DSOs are paid something: the check is not trivially 0 = 0
            assert ops.interface_payment_eur.abs().max() > 1.0


def _justification(res, inst):
    """Published P prices outside [min order price − tol, max order price + tol], each with the constraint that
    justifies it: 'slack' (its operator used slack in that period), 'network' (the price is unique, so binding
    network constraints — congestion, losses, voltage — set it) or 'interval' (degenerate, but its whole interval
    of optimal prices lies outside the order prices: the constraints bounding the pocket, e.g. an order at its
    bound seen through the losses of the lines between, exclude every price in range); 'none' otherwise."""
    b = res.tables["buses"]
    prices = inst.orders.segments.price
    lo, hi = prices.min() - PRICE_TOL_EUR_MWH, prices.max() + PRICE_TOL_EUR_MWH
    slack = (b.slack_p_mw.abs() + b.slack_q_mvar.abs().fillna(0)).groupby([b.area, b.period]).transform("sum") > 1e-6
    outside = (b.price_p_hi_eur_mwh < lo) | (b.price_p_lo_eur_mwh > hi)
    out = b[(b.price_p_eur_mwh < lo) | (b.price_p_eur_mwh > hi)].copy()
    why = np.where(~out.price_p_degenerate, "network", np.where(outside[out.index], "interval", "none"))
    out["why"] = np.where(slack[out.index], "slack", why)
    return out


@pytest.mark.parametrize("name", ["three-node", "italy-693"])
@pytest.mark.parametrize("scheme", ["shared-balancing", "no-coordination"])
def test_held_exchange_prices_stay_within_the_order_prices_unless_justified(name, scheme):
    inst = read(shared_path(name))
    res = clear(inst, scheme=scheme, executor="inline")
    out = _justification(res, inst)
    assert (out.why != "none").all(), out
    p = res.summary["prices"]
    assert p["published_kappa_without_slack"] == 0 and p["published_kappa_degenerate"] == 0
    b = res.tables["buses"]
    deg = b[b.price_p_degenerate]
    # every flagged price carries its interval, and the published price lies in it
    assert deg[["price_p_lo_eur_mwh", "price_p_hi_eur_mwh"]].notna().all().all()
    assert (
        (deg.price_p_eur_mwh >= deg.price_p_lo_eur_mwh - 1e-6) & (deg.price_p_eur_mwh <= deg.price_p_hi_eur_mwh + 1e-6)
    ).all()
    assert res.summary["settlement"]["zero_sum_ok"]


def test_italy_693_shared_balancing_replaces_arbitrary_dso_prices():
    """italy-693 under shared-balancing: each DSO's dispatch at its held exchange leaves pockets whose duals are
    intervals; the interior-point solver returned prices up to 86.5 €/MWh where the defined rule publishes the
    end nearest the interface price.  The uplift stays ~0 and every cause is reported."""
    res = clear(shared_path("italy-693"), scheme="shared-balancing", executor="inline")
    p = res.summary["prices"]
    assert p["degenerate_p_d"] > 0
    b = res.tables["buses"]
    changed = b[(b.price_p_eur_mwh - b.price_p_solver_eur_mwh).abs() > PRICE_TOL_EUR_MWH]
    assert len(changed) and changed.price_p_degenerate.all()  # only degenerate prices are ever moved
    assert set(res.summary["incentives"]["uplift_by_cause_eur"]) == {
        "indivisibility",
        "price_degeneracy",
        "held_exchange",
        "curve_error",
        "other",
    }


def test_generated_congested_variant(tmp_path):
    """A generated variant of the built-in example with tightened distribution lines and more DSO areas: no
    scheme with a held exchange publishes ±κ without slack, and every flagged price carries its interval."""
    from tdmarket.examples import builtin_path
    from tdmarket.generate import make_variant

    inst = read(make_variant(builtin_path(), tmp_path / "variant", seed=7, dso_copies=3, d_rating_scale=0.3))
    for scheme in ("shared-balancing", "no-coordination"):
        res = clear(inst, scheme=scheme, executor="inline")
        p = res.summary["prices"]
        assert p["published_kappa_without_slack"] == 0 and p["published_kappa_degenerate"] == 0
        b = res.tables["buses"]
        assert b.price_checked.all()
        deg = b[b.price_p_degenerate | b.price_q_degenerate]
        assert deg[["price_p_lo_eur_mwh", "price_p_hi_eur_mwh"]].notna().all().all()
        assert (_justification(res, inst).why != "none").all()


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["shared-balancing", "no-coordination"])
def test_held_exchange_prices_on_italy_652(scheme):
    """The same checks on italy-652 (about 30 s per scheme): no unjustified price outside the order prices, no ±κ
    without slack, every flagged price with its interval."""
    inst = read(shared_path("italy-652"))
    res = clear(inst, scheme=scheme, executor="inline")
    assert (_justification(res, inst).why != "none").all()
    p = res.summary["prices"]
    assert p["published_kappa_without_slack"] == 0 and p["published_kappa_degenerate"] == 0
    deg = res.tables["buses"][res.tables["buses"].price_p_degenerate]
    assert deg[["price_p_lo_eur_mwh", "price_p_hi_eur_mwh"]].notna().all().all()


def test_a_sub_area_hosted_by_a_degenerate_d_bus_takes_its_hosts_reference():
    """In a DSO's program, a sub-DSO's root is hosted by one of the DSO's own D buses.  Where that host's price is
    degenerate, the sub-DSO's nodes are referred to the host's reference (the DSO's interface price, clipped to the
    host's interval), not to the solver's arbitrary dual at the host (seen: a sub-DSO priced at 5.3 €/MWh, below
    its own 15 €/MWh orders, where the DSO's interface price was 28.4)."""
    from casebuilder import load_example

    from tdmarket.market.pricing import reference_prices

    inst = load_example("dilemmas").three_level_instance()
    dso = inst.area_instance(inst.areas.name.index("DSO-201"))
    sub = dso.areas.name.index("DSO-203")
    host = int(dso.areas.host_bus[sub])
    assert dso.buses.is_dist[host] and dso.areas.parent[sub] == 0
    n, T = len(dso.buses), dso.n_periods
    p_solver = np.full((n, T), 22.0)
    p_lo, p_hi = p_solver.copy(), p_solver.copy()
    p_lo[host], p_hi[host], p_solver[host] = 11.9, 51.5, 5.3  # the host's price is degenerate
    interface = np.full((dso.n_areas, T), np.nan)
    interface[0] = 28.4
    cp = ClearingProblem(dso, ModelOptions().relaxed())
    ref = reference_prices(cp, p_lo, p_hi, p_solver, interface)
    in_sub = dso.buses.area == sub
    assert in_sub.any()
    assert ref[in_sub] == pytest.approx(28.4)
    # a host whose interval excludes the reference passes on its nearest end
    p_hi[host] = 20.0
    assert reference_prices(cp, p_lo, p_hi, p_solver, interface)[in_sub] == pytest.approx(20.0)
