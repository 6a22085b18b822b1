"""Incentives and settlement (docs/model.md §8): participants, lost opportunity cost (LOC), uplift, zero sum, surplus.

Conventions (docs/model.md §1, §4.1, §8): injection > 0 is generation, a node with P = −12 is short 12 MW; a segment
costs π·|p|·Δ (Δ = 1 h); λ is the marginal cost of one more MW withdrawn; `payment_eur` > 0 means the actor
receives money.  The profit of a participant is Π = Σ (λ P_b + λ^Q Q_b)Δ − Σ π|p|Δ and its LOC is
max over its own feasible set of Π minus Π at the cleared point.

Hand-worked cases are written with `tests/casebuilder.py`; each docstring derives the numbers that are asserted.
Segment ids read <QtBid><period><k>, QBid ids <QtBid><period> (as in test_orders.py).  Shared SmartNet instances
live in ../shared/smartnet and are skipped when absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from casebuilder import single_node_case, write_case  # noqa: E402

from tdmarket.examples import builtin_path  # noqa: E402
from tdmarket.formulations.options import ModelOptions  # noqa: E402
from tdmarket.formulations.orders import OrderBlock  # noqa: E402
from tdmarket.io import read  # noqa: E402
from tdmarket.market.opportunity import lost_opportunity_costs, uplift  # noqa: E402
from tdmarket.market.participants import participant_frame, participants  # noqa: E402
from tdmarket.market.settlement import settle  # noqa: E402
from tdmarket.schemes.centralized import clear_centralized  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "smartnet"
TOL = 1e-6
ZERO_SUM_TOL = 1e-4  # € per period on the shared instances (conic solutions)


def _instance_dir(name: str) -> Path:
    path = DATA / name
    if not (path / "GeneralParam.csv").is_file():
        pytest.skip(f"shared SmartNet instance {name!r} not found at {path.resolve()}")
    return path


def S(qt, t, lo, hi, price, *, k=1, node=1, **kw):
    """One Bids row: QtBid `qt`, period `t`, QBid id 10·qt + t, segment id 100·qt + 10·t + k."""
    return dict(node=node, qtbid=qt, qbid=10 * qt + t, seg=100 * qt + 10 * t + k, t=t, lo=lo, hi=hi, price=price, **kw)


def loc_of(res, qtbids: str) -> pd.Series:
    p = res.tables["participants"]
    row = p.loc[p.qtbids == qtbids]
    assert len(row) == 1, f"no single participant {qtbids!r} in {p.qtbids.tolist()}"
    return row.iloc[0]


def lmp(res, node=1, t=1) -> float:
    b = res.tables["buses"]
    return float(b.loc[(b.node == node) & (b.period == t), "price_p_eur_mwh"].iloc[0])


def actor_payment(res, actor: str, t=None) -> float:
    a = res.tables["settlement_actors"]
    sel = a.actor == actor
    if t is not None:
        sel &= a.period == t
    assert sel.any(), f"no actor {actor!r}"
    return float(a.loc[sel, "payment_eur"].sum())


def operator_value(res, operator: str, column: str, t=None) -> float:
    o = res.tables["settlement_operators"]
    sel = o.operator == operator
    if t is not None:
        sel &= o.period == t
    return float(o.loc[sel, column].sum())


def assert_zero_sum(res, tol=TOL) -> None:
    """The actor table sums to 0 in every period, and the summary says so."""
    a = res.tables["settlement_actors"]
    per_period = a.groupby("period")["payment_eur"].sum()
    assert per_period.abs().max() <= tol, per_period.to_dict()
    st = res.summary["settlement"]
    assert st["zero_sum_residual_eur"] == pytest.approx(per_period.abs().max(), abs=1e-9)
    assert st["zero_sum_ok"]


# ================================================================================================ (a) participants
def test_participants_are_closed_under_exclusive_groups(tmp_path):
    """QtBids 1..6 at one node; exclusive groups 7 = {1, 2}, 8 = {2, 3}, 9 = {5} (a singleton group).

    Connected components of the QtBid–group graph: {1, 2, 3} (linked through 2), {4}, {5}, {6}; numbered in
    order of their smallest QtBid: 0, 1, 2, 3.
    """
    bids = [S(q, 1, 0, 10, 10 + q, xlb=1) for q in range(1, 7)]
    folder = single_node_case(tmp_path / "p", {1: -5}, bids, exclusive=[(7, 1), (7, 2), (8, 2), (8, 3), (9, 5)])
    inst = read(folder)
    assert participants(inst).tolist() == [0, 0, 0, 1, 2, 3]
    frame = participant_frame(inst)
    assert frame.qtbids.tolist() == ["1;2;3", "4", "5", "6"]
    assert frame.node.tolist() == ["1"] * 4 and frame.kind.tolist() == ["T"] * 4
    assert frame.area.tolist() == ["TSO"] * 4

    # without groups every QtBid is alone
    folder = single_node_case(tmp_path / "q", {1: -5}, bids)
    assert participants(read(folder)).tolist() == [0, 1, 2, 3, 4, 5]


def test_participants_on_builtin_example():
    """The built-in example has exclusive groups {5, 6} and {16, 17}: 18 QtBids form 16 participants."""
    inst = read(builtin_path())
    frame = participant_frame(inst)
    assert len(np.unique(inst.orders.bids.qtbid)) == 18
    assert len(frame) == 16
    multi = frame.loc[frame.qtbids.str.contains(";"), "qtbids"].tolist()
    assert multi == ["5;6", "16;17"]


# ================================================================================================ (b) divisible only
def ramp_case(folder):
    """Single node, t = 1..3, short 5, 15, 8 MW.

    QtBid 9: divisible up 20 MW @10 in every period, ramp P_{t+1} − P_t ≤ 5 (rows on QBids 91 and 92).
    QtBid 4: divisible up 20 MW @40 in every period.  QtBid 8: divisible down −10 MW @5 in t = 3.
    Dispatch: t=1 QtBid 9 gives 5; t=2 QtBid 9 can give 10 only (ramp), QtBid 4 the other 5; t=3 QtBid 9 gives 8
    (≤ 10 + 5).  Cost 50 + 100 + 200 + 80 = 430 €.
    Prices: λ2 = 40 (QtBid 4 marginal), λ3 = 10 (QtBid 9 marginal, ramp slack), λ1 = 10 − 30 = −20 (one more MW
    in t=1 lets QtBid 9 replace 1 MW of QtBid 4 in t=2).
    Profits: QtBid 9: (−20 − 10)·5 + (40 − 10)·10 + 0 = 150 €; QtBid 4: (40 − 40)·5 = 0; QtBid 8: 0.
    Best responses at these prices: QtBid 9 maximises −30 p1 + 30 p2 subject to p2 − p1 ≤ 5: 150 € — the
    same; QtBid 4 and 8 earn at most 0.  Every LOC is 0 (LP duality: with divisible orders the prices support
    the dispatch).
    """
    bids = [S(9, t, 0, 20, 10) for t in (1, 2, 3)] + [S(4, t, 0, 20, 40) for t in (1, 2, 3)] + [S(8, 3, 0, -10, 5)]
    return single_node_case(folder, {1: -5, 2: -15, 3: -8}, bids, ramps=[(9, 91, 5, 0), (9, 92, 5, 0)])


def test_divisible_only_has_zero_loc(tmp_path):
    res = clear_centralized(read(ramp_case(tmp_path / "r")))
    assert res.summary["cost"]["total_cost_eur"] == pytest.approx(430.0, abs=TOL)
    assert [lmp(res, t=t) for t in (1, 2, 3)] == pytest.approx([-20.0, 40.0, 10.0], abs=TOL)
    assert loc_of(res, "9").profit_cleared_eur == pytest.approx(150.0, abs=TOL)
    assert loc_of(res, "9").profit_best_eur == pytest.approx(150.0, abs=TOL)
    p = res.tables["participants"]
    assert len(p) == 3
    assert p.loc_eur.abs().max() <= TOL and p.raw_loc_eur.abs().max() <= TOL
    assert res.summary["incentives"]["uplift_eur"] == pytest.approx(0.0, abs=TOL)
    assert res.summary["incentives"]["participants_with_loc"] == 0
    assert_zero_sum(res)


def test_divisible_three_node_has_zero_loc():
    """three-node (docs/model.md §11, reference B): three divisible orders, conic distribution model.  The prices
    λ = 15, 15, 10 support the dispatch p = (0, 0.515877, 0.686623): order 1 (@20) is out of the money at 15,
    orders 2 (@15) and 3 (@10) are marginal — every profit and LOC is 0."""
    res = clear_centralized(read(_instance_dir("three-node")))
    p = res.tables["participants"]
    assert p.qtbids.tolist() == ["1", "2", "3"]
    assert p.profit_cleared_eur.abs().max() <= 1e-6
    assert p.loc_eur.max() <= 1e-6


# ================================================================================================ (c) LOC > 0
def aon_case(folder):
    """Single node, one period, short 12 MW.  QtBid 1: AON up 10 MW @50.  QtBid 2: divisible up 5 MW @40.

    (Short 12, not 10: with 10 the divisible order would sit at 0 and λ would be any value in [−κ, 40];
    at 12
    it is partly accepted and sets a unique price.)
    Without the AON order 7 MW would be slack (7·10⁴ €), so the AON is accepted: 10·50 + 2·40 = 580 €.
    λ = 40 (QtBid 2 marginal).  Profit of QtBid 1: (40 − 50)·10 = −100 €; its best response is to stay out (0 €):
    LOC = 100 €.  QtBid 2: (40 − 40)·2 = 0, LOC 0.  Uplift 100 €.
    Settlement: BSP 1 receives 40·10 = 400, BSP 2 40·2 = 80, the BRP (P = −12) pays 480, MS^T = 0.
    """
    bids = [S(1, 1, 0, 10, 50, xlb=1), S(2, 1, 0, 5, 40)]
    return single_node_case(folder, {1: -12}, bids)


def test_aon_out_of_the_money_has_loc(tmp_path):
    res = clear_centralized(read(aon_case(tmp_path / "a")))
    assert res.summary["cost"]["total_cost_eur"] == pytest.approx(580.0, abs=TOL)
    assert lmp(res) == pytest.approx(40.0, abs=TOL)
    aon = loc_of(res, "1")
    assert aon.profit_cleared_eur == pytest.approx(-100.0, abs=TOL)
    assert aon.profit_best_eur == pytest.approx(0.0, abs=TOL)
    assert aon.loc_eur == pytest.approx(100.0, abs=TOL)
    assert loc_of(res, "2").loc_eur == pytest.approx(0.0, abs=TOL)
    inc = res.summary["incentives"]
    assert inc["uplift_eur"] == pytest.approx(100.0, abs=TOL)
    assert uplift(res.tables["participants"]) == pytest.approx(100.0, abs=TOL)
    assert inc["participants_with_loc"] == 1 and inc["max_loc_eur"] == pytest.approx(100.0, abs=TOL)
    assert res.summary["settlement"]["uplift_eur"] == pytest.approx(100.0, abs=TOL)
    # settlement
    assert actor_payment(res, "bsp:1") == pytest.approx(400.0, abs=TOL)
    assert actor_payment(res, "bsp:2") == pytest.approx(80.0, abs=TOL)
    assert actor_payment(res, "brp:1") == pytest.approx(-480.0, abs=TOL)
    assert actor_payment(res, "tso") == pytest.approx(0.0, abs=TOL)
    a = res.tables["settlement_actors"]
    assert a.loc[a.actor == "bsp:1", "profit_eur"].sum() == pytest.approx(-100.0, abs=TOL)
    assert_zero_sum(res)
    # relaxed clearing (ξ of the AON in [0, 1]): QtBid 2 gives all 5 MW, the AON 0.7 (7 MW) at 200 + 350 = 550 €,
    # λ = 50 set by the AON.  Profits: QtBid 2 (50 − 40)·5 = 50, AON (50 − 50)·7 = 0: both are best responses
    # over the relaxed order sets, and over the integral ones too (all-or-nothing at 50 earns 0 either way).
    rel = clear_centralized(read(aon_case(tmp_path / "b")), relax=True)
    assert rel.summary["cost"]["total_cost_eur"] == pytest.approx(550.0, abs=TOL)
    assert lmp(rel) == pytest.approx(50.0, abs=TOL)
    assert rel.tables["participants"].loc_eur.max() <= TOL
    inst = read(aon_case(tmp_path / "b"))
    loc = lost_opportunity_costs(inst, rel.tables, ModelOptions(integer=False), integer=True)
    assert loc.attrs["integer"] is True
    assert loc.set_index("qtbids").loc["2", "profit_best_eur"] == pytest.approx(50.0, abs=TOL)
    assert loc.loc_eur.max() <= TOL


def block_case(folder):
    """A start/stop block accepted although out of the money in one period.

    Single node, t = 1..3, short 12 MW in every period.
    QtBid 5: start/stop block, AON up 10 MW @20, @20, @70 (AlphaOmega everywhere, NoNewAct in t = 2, 3,
    min-duration pairs 51→51, 51→52, 51→53): all three periods or none.
    QtBid 3: divisible up 5 MW @30 per period; QtBid 4: divisible up 20 MW @100 per period.
    * Block on: 200 + 200 + 700 + 3·(2·30) = 1 280 €.  Block off: 3·(5·30 + 7·100) = 2 550 €.  → on.
    * λ_t = 30 in every period (QtBid 3 partly accepted, 2 of 5 MW).
    * Block profit (30 − 20)·10 + (30 − 20)·10 + (30 − 70)·10 = −200 €.  Its best response is to stay out
      (0 €; running in t = 1, 2 only, +200 €, is what the block logic forbids): LOC = 200 €.
    * QtBid 3 (marginal) and QtBid 4 (out of the money) have LOC 0.  Uplift 200 €.
    Settlement per period: BRP pays 12·30 = 360, BSP 5 receives 300, BSP 3 60, MS^T = 0.
    """
    ao = dict(xlb=1, ao=1)
    bids = [S(5, 1, 0, 10, 20, **ao), S(5, 2, 0, 10, 20, nna=1, **ao), S(5, 3, 0, 10, 70, nna=1, **ao)]
    bids += [S(3, t, 0, 5, 30) for t in (1, 2, 3)] + [S(4, t, 0, 20, 100) for t in (1, 2, 3)]
    return single_node_case(
        folder, {1: -12, 2: -12, 3: -12}, bids, mindur=[(5, 51, 51, 1, 1), (5, 51, 52, 1, 2), (5, 51, 53, 1, 3)]
    )


def test_start_stop_block_out_of_the_money_has_loc(tmp_path):
    res = clear_centralized(read(block_case(tmp_path / "b")))
    assert res.summary["cost"]["total_cost_eur"] == pytest.approx(1280.0, abs=TOL)
    assert [lmp(res, t=t) for t in (1, 2, 3)] == pytest.approx([30.0] * 3, abs=TOL)
    blk = loc_of(res, "5")
    assert blk.profit_cleared_eur == pytest.approx(-200.0, abs=TOL)
    assert blk.profit_best_eur == pytest.approx(0.0, abs=TOL)
    assert blk.loc_eur == pytest.approx(200.0, abs=TOL)
    assert loc_of(res, "3").loc_eur == pytest.approx(0.0, abs=TOL)
    assert loc_of(res, "4").loc_eur == pytest.approx(0.0, abs=TOL)
    assert res.summary["incentives"]["uplift_eur"] == pytest.approx(200.0, abs=TOL)
    for t in (1, 2, 3):
        assert actor_payment(res, "brp:1", t) == pytest.approx(-360.0, abs=TOL)
        assert actor_payment(res, "bsp:5", t) == pytest.approx(300.0, abs=TOL)
        assert actor_payment(res, "bsp:3", t) == pytest.approx(60.0, abs=TOL)
    assert_zero_sum(res)


def test_exclusive_group_is_one_participant(tmp_path):
    """Single node, one period, short 12 MW.  QtBids 1 (AON up 10 @20) and 2 (AON up 10 @25) are mutually
    exclusive (group 7); QtBid 3 divisible up 5 @40; QtBid 4 divisible up 30 @100.
    Clearing: QtBid 1 + 2 MW of QtBid 3 = 200 + 80 = 280 € (QtBid 2 instead: 330 €).  λ = 40.
    Participant {1, 2}: cleared (40 − 20)·10 = 200 €.  Its best response may pick one QtBid only: QtBid 1, 200 €
    (both would earn 200 + 150 = 350 €): LOC 0.  Were QtBid 2 a participant of its own, its LOC would be 150 €.
    """
    bids = [S(1, 1, 0, 10, 20, xlb=1), S(2, 1, 0, 10, 25, xlb=1), S(3, 1, 0, 5, 40), S(4, 1, 0, 30, 100)]
    res = clear_centralized(read(single_node_case(tmp_path / "g", {1: -12}, bids, exclusive=[(7, 1), (7, 2)])))
    assert res.summary["cost"]["total_cost_eur"] == pytest.approx(280.0, abs=TOL)
    assert lmp(res) == pytest.approx(40.0, abs=TOL)
    grp = loc_of(res, "1;2")
    assert grp.profit_cleared_eur == pytest.approx(200.0, abs=TOL)
    assert grp.profit_best_eur == pytest.approx(200.0, abs=TOL)
    assert grp.loc_eur == pytest.approx(0.0, abs=TOL)
    assert res.summary["incentives"]["uplift_eur"] == pytest.approx(0.0, abs=TOL)
    assert len(res.tables["participants"]) == 3


def test_incentives_switch_off(tmp_path):
    res = clear_centralized(read(aon_case(tmp_path / "a")), incentives=False)
    assert "participants" not in res.tables and "incentives" not in res.summary
    assert "settlement" not in res.summary


# ================================================================================================ (d) settlement
def test_congested_line_surplus_goes_to_tso(tmp_path):
    """Two T nodes, line 1→2 (X = 0.1, S = 5 MW).  Node 2 is short 10 MW.  QtBid 1 at node 1: divisible up 20
    @10; QtBid 2 at node 2: divisible up 20 @30.
    Dispatch: 5 MW from node 1 (line at its rating), 5 MW at node 2.  λ1 = 10, λ2 = 30.
    MS^T = Σ_e f_e (λ_to − λ_fr) = 5·(30 − 10) = 100 € = −Σ λ inj = −(10·5 + 30·(5 − 10)) = 100 €.
    BSP 1 receives 50, BSP 2 150, the BRP at node 2 pays 300: 50 + 150 − 300 + 100 = 0.
    """
    folder = write_case(
        tmp_path / "c",
        t_nodes=[(1, 1), (2, 0)],
        edges=[(1, 1, 2, 0.0, 0.1, 5)],
        injections={(2, 1): (-10, 0)},
        bids=[S(1, 1, 0, 20, 10, node=1), S(2, 1, 0, 20, 30, node=2)],
    )
    res = clear_centralized(read(folder))
    assert [lmp(res, node=1), lmp(res, node=2)] == pytest.approx([10.0, 30.0], abs=TOL)
    assert actor_payment(res, "tso") == pytest.approx(100.0, abs=TOL)
    assert operator_value(res, "TSO", "merchandising_surplus_eur") == pytest.approx(100.0, abs=TOL)
    assert actor_payment(res, "bsp:1") == pytest.approx(50.0, abs=TOL)
    assert actor_payment(res, "bsp:2") == pytest.approx(150.0, abs=TOL)
    assert actor_payment(res, "brp:2") == pytest.approx(-300.0, abs=TOL)
    st = res.summary["settlement"]
    assert st["revenue_adequacy"]["TSO"]["revenue_adequate"]
    assert st["totals_eur"]["bsp_t"] == pytest.approx(200.0, abs=TOL)
    assert_zero_sum(res)


def test_three_node_settlement():
    """three-node, reference B (docs/model.md §11): λ = 15, 15, 10, λ^Q_3 ≈ 1.290994, x = 1 MW at π = 15,
    y = −0.125.

    * TSO: −λ1·inj1 − π x = −15·(−1) − 15·1 = 0; it pays the DSO 15 € for the export.
    * DSO: π x − Σ_i (λ inj + λ^Q inj^Q)
      = 15 − 15·0.515877 − 10·(0.686623 − 0.2) − 1.290994·(−0.1) = 2.52471 €
      (= line rent −(15·(−0.484123) + 10·0.486623) − 1.290994·(−0.1); its reactive import at the root is free,
      λ^Q_2 = 0).
    * BRP at node 1 pays 15, BRP at node 3 pays 10·0.2 + 1.290994·0.1 = 2.1291 €.
    `shared-balancing` settles no interface: the TSO keeps 15 €, the DSO's surplus drops by 15 €.
    """
    inst = read(_instance_dir("three-node"))
    res = clear_centralized(inst)
    assert operator_value(res, "TSO", "merchandising_surplus_eur") == pytest.approx(0.0, abs=1e-6)
    assert operator_value(res, "DSO-2", "merchandising_surplus_eur") == pytest.approx(2.52471, abs=1e-3)
    assert operator_value(res, "DSO-2", "interface_payment_eur") == pytest.approx(15.0, abs=1e-6)
    assert operator_value(res, "TSO", "interface_payment_eur") == pytest.approx(-15.0, abs=1e-6)
    assert actor_payment(res, "brp:1") == pytest.approx(-15.0, abs=1e-6)
    assert actor_payment(res, "brp:3") == pytest.approx(-2.1291, abs=1e-3)
    assert_zero_sum(res, tol=ZERO_SUM_TOL)
    ms = res.tables["settlement_operators"]
    np.testing.assert_allclose(ms.merchandising_surplus_eur, ms.merchandising_surplus_network_eur, atol=1e-5)

    st = settle(inst, res.tables, ModelOptions(), "shared-balancing", settles_at_interface=False)
    op = st["operators"].set_index("operator")
    assert op.loc["TSO", "interface_payment_eur"] == 0.0 and op.loc["DSO-2", "interface_payment_eur"] == 0.0
    assert op.loc["TSO", "merchandising_surplus_eur"] == pytest.approx(15.0, abs=1e-6)
    assert op.loc["DSO-2", "merchandising_surplus_eur"] == pytest.approx(2.52471 - 15.0, abs=1e-3)
    assert not st["summary"]["interface_settlement"]
    assert st["summary"]["zero_sum_residual_eur"] <= ZERO_SUM_TOL
    assert not st["summary"]["revenue_adequacy"]["DSO-2"]["revenue_adequate"]


@pytest.fixture(scope="module")
def italy_relaxed():
    inst = read(_instance_dir("italy-693"))
    return inst, clear_centralized(inst, relax=True)


def _tso_surplus_from_flows(inst, tables) -> pd.Series:
    """MS^T per period recomputed independently: Σ_{T lines} f (λ_to − λ_fr) + Σ_d (λ_host − π_d) x_d
    (the second term is 0 when π_d is the host LMP), i.e. the network form of docs/model.md §8."""
    br, b = inst.branches, inst.buses
    buses = tables["buses"].set_index(["node", "period"])["price_p_eur_mwh"]
    lines = tables["lines"]
    tl = lines[lines.kind == "T"]
    order = np.argsort(br.id)
    pos = order[np.searchsorted(br.id, tl.edge.to_numpy(), sorter=order)]
    lam_fr = buses.reindex(pd.MultiIndex.from_arrays([b.id[br.f[pos]], tl.period])).to_numpy()
    lam_to = buses.reindex(pd.MultiIndex.from_arrays([b.id[br.t[pos]], tl.period])).to_numpy()
    flow = pd.Series(tl.p_from_mw.to_numpy() * (lam_to - lam_fr)).groupby(tl.period.to_numpy()).sum()
    ifc = tables["interfaces"]
    lam_host = buses.reindex(pd.MultiIndex.from_arrays([ifc.t_node, ifc.period])).to_numpy()
    rent = pd.Series((lam_host - ifc.interface_price_eur_mwh.to_numpy()) * ifc.export_mw.to_numpy())
    return flow.add(rent.groupby(ifc.period.to_numpy()).sum(), fill_value=0.0)


def test_italy693_relaxed_zero_sum_and_surplus(italy_relaxed):
    inst, res = italy_relaxed
    st = res.summary["settlement"]
    # zero sum in every period, from the actor table
    a = res.tables["settlement_actors"]
    per = a.groupby("period")["payment_eur"].sum()
    assert sorted(per.index) == [1, 2, 3, 4]
    assert per.abs().max() <= ZERO_SUM_TOL
    assert st["zero_sum_residual_eur"] <= ZERO_SUM_TOL and st["zero_sum_ok"]
    # every kind of actor is present
    assert set(a.kind) == {"bsp_t", "bsp_d", "brp", "slack", "tso", "dso"}
    # the TSO surplus (injection side) equals the flow form, and is revenue adequate
    ops = res.tables["settlement_operators"]
    tso = ops[ops.operator == "TSO"].set_index("period")["merchandising_surplus_eur"]
    flows = _tso_surplus_from_flows(inst, res.tables)
    np.testing.assert_allclose(tso.sort_index().to_numpy(), flows.sort_index().to_numpy(), atol=1e-4)
    assert tso.min() >= -1e-6
    assert tso.sum() == pytest.approx(5454.367, abs=0.01)
    # every operator is revenue adequate here, and BSP profits equal the relaxed dual objective (LP duality:
    # Σ_j Π_j = −(best-response objective) when every LOC is 0)
    for name, ad in st["revenue_adequacy"].items():
        assert ad["revenue_adequate"], name
    assert len(ops.operator.unique()) == 5
    assert st["bsp_profit_eur"] == pytest.approx(-res.tables["participants"].attrs["objective_eur"], abs=1e-3)
    # interface payments: what the DSOs receive the TSO pays
    ip = ops.groupby("period")["interface_payment_eur"].sum()
    assert ip.abs().max() <= 1e-9
    # relaxed clearing against relaxed order sets: LOC is solver noise only
    assert res.tables["participants"].loc_eur.max() <= 1e-4


def test_builtin_zero_sum_both_schemes():
    inst = read(builtin_path())
    res = clear_centralized(inst)
    assert_zero_sum(res, tol=ZERO_SUM_TOL)
    st = settle(inst, res.tables, ModelOptions(), "no-coordination", settles_at_interface=False)
    per = st["actors"].groupby("period")["payment_eur"].sum()
    assert per.abs().max() <= ZERO_SUM_TOL
    assert (st["operators"].interface_payment_eur == 0).all()


def test_sub_dso_settlement_splits_parent_surplus(tmp_path):
    """The built-in example with DSO-201 split at D line 22 (202–203): DSO-203 = {203, 204} is a sub-DSO whose
    interface is an ordinary line of its parent.  DSO-203 is paid λ_root·X (X = the power leaving its root 203
    into line 22, λ at 203) by DSO-201, which keeps the line's rent.  Splitting moves money between the two DSOs
    only: MS(DSO-201 split) + MS(DSO-203) = MS(DSO-201 unsplit), every other operator is unchanged, zero sum holds.
    """
    folder = tmp_path / "case"
    shutil.copytree(builtin_path(), folder)
    (folder / "SubAreas.csv").write_text("Edge,Area\n22,DSO-203\n")
    split = clear_centralized(read(folder), relax=True)
    whole = clear_centralized(read(builtin_path()), relax=True)
    ms_s = split.summary["settlement"]["merchandising_surplus_eur"]
    ms_w = whole.summary["settlement"]["merchandising_surplus_eur"]
    assert set(ms_s) == set(ms_w) | {"DSO-203"}
    assert ms_s["DSO-201"] + ms_s["DSO-203"] == pytest.approx(ms_w["DSO-201"], abs=1e-6)
    for name in ("TSO", "DSO-301", "DSO-401"):
        assert ms_s[name] == pytest.approx(ms_w[name], abs=1e-6)
    assert_zero_sum(split, tol=ZERO_SUM_TOL)
    # DSO-203's interface payment, recomputed from the lines table: line 22 runs 202 → 203 (root 203 is its
    # to-end), so X = p_to, the terminal outflow at 203, and Y = q_to
    lines = split.tables["lines"]
    l22 = lines[lines.edge == 22].set_index("period")
    buses = split.tables["buses"].set_index(["node", "period"])
    x = l22.p_to_mw
    y = l22.q_to_mvar
    lam = np.array([buses.loc[(203, t), "price_p_eur_mwh"] for t in x.index])
    lamq = np.array([buses.loc[(203, t), "price_q_eur_mvarh"] for t in x.index])
    expected = lam * x.to_numpy() + lamq * y.to_numpy()
    ops = split.tables["settlement_operators"]
    got = ops[ops.operator == "DSO-203"].set_index("period").loc[x.index, "interface_payment_eur"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert (np.abs(x) > 0.1).all()  # a real exchange is settled


# ================================================================================================ (e) italy-693 MI
def _simple_participants(inst, opts) -> np.ndarray:
    """Per participant: True if its QtBids have no logic, ramps, half-planes or discs.  Under the `bounded`
    policy such a D QBid has Q = 0, so the best response is segment by segment: Σ max(0, (λ w − π|w|)Δ)."""
    ob = inst.orders
    blk = OrderBlock(inst, opts)
    qt = np.unique(ob.bids.qtbid)
    part = participants(inst)
    bad_bid = blk.logic.copy()
    bad_bid[ob.ramp_bid] = True
    bad_bid[ob.disc_bid] = True
    bad_bid |= np.isin(ob.bids.qtbid, ob.hp_qtbid)
    bad_part = np.zeros(len(np.unique(part)), bool)
    np.logical_or.at(bad_part, part[np.searchsorted(qt, ob.bids.qtbid)], bad_bid)
    return ~bad_part


def _independent_best(inst, tables, opts) -> np.ndarray:
    ob = inst.orders
    seg, bids = ob.segments, ob.bids
    price = tables["buses"].set_index(["node", "period"])["price_p_eur_mwh"]
    lam = price.reindex(pd.MultiIndex.from_arrays([inst.buses.id[bids.bus], inst.periods[bids.period]])).to_numpy()
    margin = np.maximum(0.0, (lam[seg.bid] * seg.width - seg.price * np.abs(seg.width)) * opts.period_hours)
    qt = np.unique(bids.qtbid)
    part = participants(inst)[np.searchsorted(qt, bids.qtbid[seg.bid])]
    return np.bincount(part, margin, minlength=int(participants(inst).max()) + 1)


@pytest.fixture(scope="module")
def italy_integer():
    inst = read(_instance_dir("italy-693"))
    return inst, clear_centralized(inst)


def test_italy693_integer_loc(italy_integer):
    """With binaries: every LOC ≥ 0, the uplift is reported, and the best responses of the participants whose
    feasible set is a box (no logic, ramp, half-plane or disc) equal the segment-by-segment formula.

    italy-693's relaxation (all logic kept) is integral, so the published prices support the dispatch and the
    uplift is 0 (to 1e-4 €).  To exercise the best-response solver on the same order book with binaries, ramps,
    half-planes, discs and start/stop blocks, the LOC is recomputed at prices shifted by +5 €/MWh: the shifted
    prices no longer support the dispatch and the uplift becomes positive.
    """
    inst, res = italy_integer
    p = res.tables["participants"]
    inc = res.summary["incentives"]
    assert len(p) == 255 and inc["participants"] == 255
    assert (p.loc_eur >= 0).all() and p.raw_loc_eur.min() >= -1e-6
    assert inc["uplift_eur"] == pytest.approx(p.loc_eur.sum(), abs=1e-12)
    assert inc["uplift_eur"] <= 1e-4 and inc["participants_with_loc"] == 0
    assert res.summary["settlement"]["uplift_eur"] == pytest.approx(inc["uplift_eur"], abs=1e-12)
    assert p.attrs["integer"] and p.attrs["abs_gap_eur"] <= 1e-3
    assert res.summary["settlement"]["zero_sum_residual_eur"] <= ZERO_SUM_TOL

    opts = ModelOptions()
    assert opts.reactive_policy == "bounded"
    simple = _simple_participants(inst, opts)
    assert simple.sum() >= 50  # a meaningful share of the book is checked independently
    indep = _independent_best(inst, res.tables, opts)
    np.testing.assert_allclose(p.profit_best_eur.to_numpy()[simple], indep[simple], atol=1e-5)

    shifted = {k: v.copy() for k, v in res.tables.items()}
    shifted["buses"]["price_p_eur_mwh"] += 5.0
    loc = lost_opportunity_costs(inst, shifted, opts)
    assert (loc.loc_eur >= 0).all() and loc.raw_loc_eur.min() >= -1e-6
    assert uplift(loc) == pytest.approx(640.32, rel=1e-2)
    assert 25 <= (loc.loc_eur > 1e-4).sum() <= 40  # 31 with HiGHS 1.16 / Clarabel 0.11
    indep = _independent_best(inst, shifted, opts)
    np.testing.assert_allclose(loc.profit_best_eur.to_numpy()[simple], indep[simple], atol=1e-5)
    # every best response is at least the cleared point (which is feasible) and at most the best response over
    # the relaxed order sets (binaries in [0, 1], all logic kept), an upper bound
    assert (loc.profit_best_eur >= loc.profit_cleared_eur - 1e-6).all()
    loose = lost_opportunity_costs(inst, shifted, opts, integer=False)
    assert (loc.profit_best_eur <= loose.profit_best_eur + 1e-5).all()
