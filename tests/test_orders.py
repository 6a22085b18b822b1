"""The order language (docs/model.md §4, O1–O13), one hand-worked instance per feature.

Every instance is tiny and written with `tests/casebuilder.py`; the expected clearing is worked out by hand in
each test's docstring and compared with `clear_centralized(read(folder))` (binaries on, default MIP
gap).  Conventions (docs/model.md §1, §4.1): injection > 0 is generation, a node with P = −10 is short by 10 MW and
needs upward activation; every segment costs π·|p| (€/MWh × MW × 1 h), AON included; the LMP is the marginal
cost of one more MW withdrawn.  Segment ids below read as <QtBid><period><k>; QBid ids as <QtBid><period>.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from casebuilder import single_node_case, write_case  # noqa: E402

from tdmarket.formulations.orders import net_two_way  # noqa: E402
from tdmarket.io import read  # noqa: E402
from tdmarket.schemes.centralized import clear_centralized  # noqa: E402

TOL = 1e-6
KAPPA = 1e4  # default slack penalty, €/MWh and €/Mvarh


# ------------------------------------------------------------------------------------------------ helpers
def S(qt, t, lo, hi, price, *, k=1, node=1, **kw):
    """One Bids row: QtBid `qt`, period `t`, QBid id 10·qt + t, segment id 100·qt + 10·t + k."""
    return dict(node=node, qtbid=qt, qbid=10 * qt + t, seg=100 * qt + 10 * t + k, t=t, lo=lo, hi=hi, price=price, **kw)


def clear(folder, **kw):
    return clear_centralized(read(folder), **kw)


def cost(res) -> float:
    return float(res.summary["cost"]["total_cost_eur"])


def mw(res) -> dict[int, float]:
    """Accepted MW (signed) per segment id."""
    s = res.tables["segments"]
    return dict(zip(s.segment.astype(int), s.accepted_mw.astype(float)))


def seg_cost(res) -> dict[int, float]:
    s = res.tables["segments"]
    return dict(zip(s.segment.astype(int), s.cost_eur.astype(float)))


def bid(res, qbid: int):
    b = res.tables["bids"]
    return b.loc[b.bid == qbid].iloc[0]


def lmp(res, node: int = 1, t: int = 1) -> float:
    b = res.tables["buses"]
    return float(b.loc[(b.node == node) & (b.period == t), "price_p_eur_mwh"].iloc[0])


def slack_p(res, node: int = 1, t: int = 1) -> float:
    b = res.tables["buses"]
    return float(b.loc[(b.node == node) & (b.period == t), "slack_p_mw"].iloc[0])


def assert_mw(res, expected: dict[int, float]) -> None:
    got = mw(res)
    for s, v in expected.items():
        assert got[s] == pytest.approx(v, abs=TOL), f"segment {s}: accepted {got[s]} MW, expected {v}"


def assert_consistent(res) -> None:
    """The reported segment costs add up to the market cost, and the summary says the point is feasible."""
    assert res.tables["segments"].cost_eur.sum() == pytest.approx(res.summary["cost"]["market_cost_eur"], abs=TOL)
    assert res.summary["check"]["feasible"]


# ------------------------------------------------------------------------------------------------ O1
def test_o1_divisible_merit_order_partial_marginal_segment_and_lmp(tmp_path):
    """Divisible segments clear in merit order; the marginal one is partially accepted and sets the LMP.

    t=1, short 15 MW: up A 10 MW @20, B 10 @30, C 10 @40, down D −10 @5.
      A fully (10 MW, 200 €), B half (5 MW, 150 €), C and D not used.  Cost 350 €.
      LMP = 30 (one more MW withdrawn is 1 more MW of B).
    t=2, long 8 MW: down E −5 MW @−5 (the BSP pays 5 €/MWh), down F −5 @10, up G 10 @20.
      E fully (−5 MW, −25 €), F 3 of 5 MW (30 €), G not used.  Cost 5 €.
      LMP = −10 (one more MW withdrawn means 1 MW less of F: saves 10 €).
    Total 355 €.
    """
    bids = [
        S(1, 1, 0, 10, 20),
        S(2, 1, 0, 10, 30),
        S(3, 1, 0, 10, 40),
        S(4, 1, 0, -10, 5),
        S(5, 2, 0, -5, -5),
        S(6, 2, 0, -5, 10),
        S(7, 2, 0, 10, 20),
    ]
    res = clear(single_node_case(tmp_path / "c", {1: -15, 2: 8}, bids))
    assert_mw(res, {111: 10, 211: 5, 311: 0, 411: 0, 521: -5, 621: -3, 721: 0})
    assert cost(res) == pytest.approx(355.0, abs=TOL)
    assert seg_cost(res)[521] == pytest.approx(-25.0, abs=TOL)
    assert lmp(res, 1, 1) == pytest.approx(30.0, abs=TOL)
    assert lmp(res, 1, 2) == pytest.approx(-10.0, abs=TOL)
    assert res.summary["mip"]["binaries"] == 0
    assert_consistent(res)


# ------------------------------------------------------------------------------------------------ O2
def test_o2_all_or_nothing_accepted_or_rejected_and_its_cost_is_counted(tmp_path):
    """An AON segment is cheap but too large; its cost π·|w| is counted (the research code priced it at 0).

    Short 10 MW.  AON up 15 MW @10 (Xlb=1), divisible up 20 MW @30, divisible down −10 MW @p_down.
    (a) p_down = 5:  accept AON (15 MW, 150 €) and absorb the 5 MW excess with the down order (5 MW × 5 = 25 €)
        → 175 €, better than rejecting it (10 MW × 30 = 300 €).  Total 175 € includes the AON's 150 €
        (research costing would report 25 €).  Prices with the AON fixed: the down order is marginal, LMP = −5
        (an extra MW withdrawn means 1 MW less of the down order) although the system is short.
        Relaxed (AON ξ continuous): 10 of 15 MW of the AON, 100 €.
    (b) p_down = 40: accepting costs 150 + 5 × 40 = 350 € > 300 €: the AON is rejected, the divisible up order
        gives 10 of its 20 MW, 300 €, LMP = 30.  Relaxed: again 10 MW of the AON, 100 €.
    """

    def case(name, p_down):
        return single_node_case(
            tmp_path / name, {1: -10}, [S(1, 1, 0, 15, 10, xlb=1), S(2, 1, 0, 20, 30), S(3, 1, 0, -10, p_down)]
        )

    a = case("a", 5)
    res = clear(a)
    assert_mw(res, {111: 15, 211: 0, 311: -5})
    assert seg_cost(res)[111] == pytest.approx(150.0, abs=TOL)
    assert cost(res) == pytest.approx(175.0, abs=TOL)
    assert lmp(res) == pytest.approx(-5.0, abs=TOL)
    assert_consistent(res)
    rel = clear(a, relax=True)
    assert_mw(rel, {111: 10, 211: 0, 311: 0})
    assert cost(rel) == pytest.approx(100.0, abs=TOL)

    b = case("b", 40)
    res = clear(b)
    assert_mw(res, {111: 0, 211: 10, 311: 0})
    assert cost(res) == pytest.approx(300.0, abs=TOL)
    assert lmp(res) == pytest.approx(30.0, abs=TOL)
    assert cost(clear(b, relax=True)) == pytest.approx(100.0, abs=TOL)


def test_o2_minimum_acceptance_ratio(tmp_path):
    """0 < Xlb < 1: either 0 or between Xlb·w and w.

    Short 4 MW.  A: up 10 MW @10 with Xlb = 0.5 (0 or 5..10 MW); B: up 10 @30; C: down −10 @2.
      A at its minimum 5 MW (50 €) + C absorbs 1 MW (2 €) = 52 €, better than B alone (4 × 30 = 120 €).
      LMP with A's binary fixed: C is marginal, −2.
    Relaxed (acceptance binary in [0, 1]): A at 4 MW with v = 0.4, 40 €.
    """
    folder = single_node_case(
        tmp_path / "c", {1: -4}, [S(1, 1, 0, 10, 10, xlb=0.5), S(2, 1, 0, 10, 30), S(3, 1, 0, -10, 2)]
    )
    res = clear(folder)
    assert_mw(res, {111: 5, 211: 0, 311: -1})
    assert cost(res) == pytest.approx(52.0, abs=TOL)
    assert lmp(res) == pytest.approx(-2.0, abs=TOL)
    assert_consistent(res)
    rel = clear(folder, relax=True)
    assert_mw(rel, {111: 4, 211: 0, 311: 0})
    assert cost(rel) == pytest.approx(40.0, abs=TOL)


# ------------------------------------------------------------------------------------------------ O3–O5
def exclusive_case(folder, grouped=True):
    """Two periods, short 10 MW in each.  Group 1 = QtBids 1 and 2; QtBid 3 is a fallback.

    QtBid 1: up 15 MW @10 in t=1, 15 MW @50 in t=2.  QtBid 2: up 15 MW @20 in t=1 and t=2.
    QtBid 3: up 20 MW @60 in t=1 and t=2.  All divisible.
    """
    bids = [
        S(1, 1, 0, 15, 10),
        S(1, 2, 0, 15, 50),
        S(2, 1, 0, 15, 20),
        S(2, 2, 0, 15, 20),
        S(3, 1, 0, 20, 60),
        S(3, 2, 0, 20, 60),
    ]
    return single_node_case(folder, {1: -10, 2: -10}, bids, exclusive=[(1, 1), (1, 2)] if grouped else None)


def test_o3_o4_o5_exclusive_group_one_qtbid_over_the_whole_horizon(tmp_path):
    """Only one QtBid of an exclusive group may be used over the horizon (O5 through O3/O4 acceptance).

    Short 10 MW in t=1 and t=2 (see `exclusive_case`).
    * QtBid 1 alone: 10 × 10 + 10 × 50 = 600 €; QtBid 1 in t=1 with the fallback in t=2: 100 + 600 = 700 €;
      QtBid 2 alone: 10 × 20 + 10 × 20 = 400 €.  So QtBid 2 is used in both periods (partially, 10 of 15 MW):
      the cheaper offer of t=1 (QtBid 1 @10) is not chosen because of t=2.  Cost 400 €.
      QBids 21, 22 accepted (z = 1), QBids 11, 12 not (z = 0).  LMP 20 in both periods (QtBid 2 marginal).
    * Without the group: QtBid 1 in t=1 and QtBid 2 in t=2, 100 + 200 = 300 €.
    * Relaxed with the logic kept (Z_1 = a, Z_2 = 1 − a, ξ ≤ z ≤ Z): t=1 costs 200 − 150a while 15a < 10,
      t=2 costs 50 + 450a once 15(1 − a) < 10; the minimum is at a = 1/3: 150 + 200 = 350 €.
    """
    folder = exclusive_case(tmp_path / "g")
    res = clear(folder)
    assert_mw(res, {111: 0, 121: 0, 211: 10, 221: 10, 311: 0, 321: 0})
    assert cost(res) == pytest.approx(400.0, abs=TOL)
    assert bid(res, 21).accepted == pytest.approx(1.0) and bid(res, 22).accepted == pytest.approx(1.0)
    assert bid(res, 11).accepted == pytest.approx(0.0) and bid(res, 12).accepted == pytest.approx(0.0)
    assert lmp(res, 1, 1) == pytest.approx(20.0, abs=TOL)
    assert lmp(res, 1, 2) == pytest.approx(20.0, abs=TOL)
    assert_consistent(res)

    free = clear(exclusive_case(tmp_path / "nogroup", grouped=False))
    assert_mw(free, {111: 10, 221: 10})
    assert cost(free) == pytest.approx(300.0, abs=TOL)

    rel = clear(folder, relax=True)
    assert cost(rel) == pytest.approx(350.0, abs=TOL)


def test_relaxation_keeps_the_logic_and_the_mip_reports_its_gap(tmp_path):
    """Relaxation (b) keeps all logic: on the exclusive-group case it lies between the plain LP and the MIP.

    From the hand calculation of `test_o3_o4_o5_exclusive_group_one_qtbid_over_the_whole_horizon`:
    plain LP (no group) 300 € < relaxation with logic 350 € < integer 400 €.  The integer run reports its MIP
    information: binaries > 0, a gap ≤ 1e-3 and a lower bound ≤ the cost (and ≥ the relaxation, up to the gap).
    """
    folder = exclusive_case(tmp_path / "g")
    integer = clear(folder)
    relaxed = clear(folder, relax=True)
    plain = clear(exclusive_case(tmp_path / "plain", grouped=False), relax=True)
    assert cost(plain) < cost(relaxed) - 1.0
    assert cost(relaxed) <= cost(integer) + TOL
    assert cost(relaxed) == pytest.approx(350.0, abs=TOL)
    assert cost(integer) == pytest.approx(400.0, abs=TOL)
    mip = integer.summary["mip"]
    assert mip["binaries"] > 0
    assert mip["gap"] is not None and mip["gap"] <= 1e-3
    assert mip["lower_bound"] is not None
    assert mip["lower_bound"] <= cost(integer) + TOL
    assert mip["lower_bound"] >= cost(relaxed) - 1e-3 * max(1.0, cost(integer))
    assert relaxed.summary["mip"]["binaries"] == 0
    assert not relaxed.summary["options"]["integer"] and integer.summary["options"]["integer"]


# ------------------------------------------------------------------------------------------------ O6–O8
def block_case(folder, p3):
    """A start/stop block over t = 1..3 (short 10 MW in each period) and a divisible fallback.

    QtBid 5: AON up 10 MW in each period, @20, @20, @p3; AlphaOmega everywhere, NoNewAct in t=2, 3;
    min-duration pairs (51→51), (51→52), (51→53).  QtBid 9: divisible up 10 MW @50 in each period.
    """
    ao = dict(xlb=1, ao=1)
    bids = [
        S(5, 1, 0, 10, 20, **ao),
        S(5, 2, 0, 10, 20, nna=1, **ao),
        S(5, 3, 0, 10, p3, nna=1, **ao),
        S(9, 1, 0, 10, 50),
        S(9, 2, 0, 10, 50),
        S(9, 3, 0, 10, 50),
    ]
    return single_node_case(
        folder, {1: -10, 2: -10, 3: -10}, bids, mindur=[(5, 51, 51, 1, 1), (5, 51, 52, 1, 2), (5, 51, 53, 1, 3)]
    )


def test_o6_o7_o8_start_stop_block_is_all_or_none(tmp_path):
    """A start/stop QtBid with NoNewAct after its first period and min-duration pairs to all later periods is a
    block: active in all its periods or in none (inactive before the horizon, so it can only start in t=1).

    Short 10 MW in t=1..3; block 10 MW AON @20, @20, @p3; fallback @50 (see `block_case`).
    (a) p3 = 70: block 200 + 200 + 700 = 1 100 € < fallback 3 × 500 = 1 500 €: the block is accepted in all
        three periods although in t=3 it is out of the money (70 > 50).  Cost 1 100 €.  (Picking t=1, 2 only,
        900 €, is what the logic forbids.)
    (b) p3 = 120: block 200 + 200 + 1 200 = 1 600 € > 1 500 €: rejected everywhere, fallback 10 MW each period,
        cost 1 500 €.
    """
    res = clear(block_case(tmp_path / "a", 70))
    assert_mw(res, {511: 10, 521: 10, 531: 10, 911: 0, 921: 0, 931: 0})
    assert cost(res) == pytest.approx(1100.0, abs=TOL)
    assert [bid(res, b).accepted for b in (51, 52, 53)] == pytest.approx([1, 1, 1])
    assert_consistent(res)

    res = clear(block_case(tmp_path / "b", 120))
    assert_mw(res, {511: 0, 521: 0, 531: 0, 911: 10, 921: 10, 931: 10})
    assert cost(res) == pytest.approx(1500.0, abs=TOL)
    assert [bid(res, b).accepted for b in (51, 52, 53)] == pytest.approx([0, 0, 0])


def test_o7_no_new_activation_prevents_starting_later(tmp_path):
    """NoNewAct (α_b = 0, z_b ≤ z_prev) forbids starting in a flagged period; before the horizon all is off.

    (a) Balanced in t=1, short 10 MW in t=2.  QtBid 7: AON up 10 MW @10 in t=1 and t=2, AlphaOmega, NoNewAct in
        t=2.  Fallback up 10 @30 in both periods; down −10 @25 in t=1.
        Without NoNewAct: start in t=2, 100 €.  With it, QtBid 7 may run in t=2 only if it already runs in t=1:
        100 (t=1) + 10 × 25 (absorb it in t=1) + 100 (t=2) = 350 € > fallback in t=2, 300 €.  So 300 €,
        QtBid 7 off.
    (b) Short 10 MW in t=1 and t=2, NoNewAct in t=1 as well: the state before the horizon is inactive, so the
        QtBid can never start: fallback in both periods, 600 € (it would be 200 € were it active before t=1).
    """

    def case(name, imb, nna1, nna2):
        bids = [
            S(7, 1, 0, 10, 10, xlb=1, ao=1, nna=nna1),
            S(7, 2, 0, 10, 10, xlb=1, ao=1, nna=nna2),
            S(9, 1, 0, 10, 30),
            S(9, 2, 0, 10, 30),
            S(8, 1, 0, -10, 25),
        ]
        return single_node_case(tmp_path / name, imb, bids)

    res = clear(case("free", {1: 0, 2: -10}, 0, 0))
    assert_mw(res, {711: 0, 721: 10, 921: 0})
    assert cost(res) == pytest.approx(100.0, abs=TOL)

    res = clear(case("nna", {1: 0, 2: -10}, 0, 1))
    assert_mw(res, {711: 0, 721: 0, 921: 10, 811: 0})
    assert cost(res) == pytest.approx(300.0, abs=TOL)
    assert bid(res, 72).accepted == pytest.approx(0.0)
    assert_consistent(res)

    res = clear(case("before", {1: -10, 2: -10}, 1, 1))
    assert_mw(res, {711: 0, 721: 0, 911: 10, 921: 10})
    assert cost(res) == pytest.approx(600.0, abs=TOL)


def test_o8_minimum_duration_forces_the_next_period(tmp_path):
    """A min-duration pair (b1 in τ=1, b2 in t'=2) gives z_b2 ≥ α_b1: starting in t=1 forces acceptance in t=2.

    Short 10 MW in t=1, balanced in t=2.  QtBid 6: AON up 10 MW @10 in t=1 and t=2, AlphaOmega (no NoNewAct).
    Fallback up 10 @30 in both periods; down −10 @5 in t=2.
    * Without the pair: QtBid 6 in t=1 only (it stops in t=2), 100 €.
    * With the pair (6, 61, 62, 1, 2): starting in t=1 forces 10 MW in t=2, absorbed by the down order:
      100 + 100 + 10 × 5 = 250 € < fallback in t=1, 300 €.  So QBid 62 is accepted with no need in t=2.
    """

    def case(name, pair):
        bids = [
            S(6, 1, 0, 10, 10, xlb=1, ao=1),
            S(6, 2, 0, 10, 10, xlb=1, ao=1),
            S(9, 1, 0, 10, 30),
            S(9, 2, 0, 10, 30),
            S(8, 2, 0, -10, 5),
        ]
        return single_node_case(tmp_path / name, {1: -10, 2: 0}, bids, mindur=[(6, 61, 62, 1, 2)] if pair else None)

    res = clear(case("nopair", False))
    assert_mw(res, {611: 10, 621: 0, 911: 0, 821: 0})
    assert cost(res) == pytest.approx(100.0, abs=TOL)

    res = clear(case("pair", True))
    assert_mw(res, {611: 10, 621: 10, 911: 0, 921: 0, 821: -10})
    assert cost(res) == pytest.approx(250.0, abs=TOL)
    assert bid(res, 62).accepted == pytest.approx(1.0)
    assert_consistent(res)


# ------------------------------------------------------------------------------------------------ O9
def test_o9_ramp_limits_increase_and_decrease(tmp_path):
    """Ramp rows act on the QtBid's activated P between t and t+1.

    QtBid 9: divisible up 20 MW @10 in t=1 and t=2; fallback QtBid 4: up 20 @40 in both periods.
    (a) Max increase (Δ = +5, RCMin = 0): short 5 MW in t=1, 15 MW in t=2.  Unconstrained 50 + 150 = 200 €.
        With P_9,2 − P_9,1 ≤ 5: t=1 5 MW (50 €), t=2 10 MW (100 €) + 5 MW fallback (200 €): 350 €.
        LMPs: t=2 40 (fallback marginal); t=1 10 − 30 = −20 (one more MW of QtBid 9 in t=1 lifts the t=2 cap by
        1 MW, replacing 1 MW of fallback at 40 by QtBid 9 at 10).
    (b) Max decrease (Δ = −5, RCMin = 1), plus a down order −20 @2 in t=2: short 15 MW in t=1, 5 MW in t=2.
        Unconstrained 150 + 50 = 200 €.  With P_9,2 ≥ P_9,1 − 5: using x MW of QtBid 9 in t=1 costs
        10x + 40(15 − x) + 10(x − 5) + 2(x − 10) = 530 − 18x for x ∈ [10, 15] → x = 15: 150 + 100 + 10 = 260 €
        (QtBid 9 drops only to 10 MW, the down order absorbs 5 MW).  LMPs: t=2 −2 (down order marginal);
        t=1 10 + 10 + 2 = 22.
    """
    up = [S(9, 1, 0, 20, 10), S(9, 2, 0, 20, 10), S(4, 1, 0, 20, 40), S(4, 2, 0, 20, 40)]
    res = clear(single_node_case(tmp_path / "free_up", {1: -5, 2: -15}, up))
    assert cost(res) == pytest.approx(200.0, abs=TOL)
    res = clear(single_node_case(tmp_path / "incr", {1: -5, 2: -15}, up, ramps=[(9, 91, 5, 0)]))
    assert_mw(res, {911: 5, 921: 10, 411: 0, 421: 5})
    assert cost(res) == pytest.approx(350.0, abs=TOL)
    assert lmp(res, 1, 2) == pytest.approx(40.0, abs=TOL)
    assert lmp(res, 1, 1) == pytest.approx(-20.0, abs=TOL)
    assert_consistent(res)

    down = up + [S(8, 2, 0, -20, 2)]
    res = clear(single_node_case(tmp_path / "free_dn", {1: -15, 2: -5}, down))
    assert cost(res) == pytest.approx(200.0, abs=TOL)
    res = clear(single_node_case(tmp_path / "decr", {1: -15, 2: -5}, down, ramps=[(9, 91, -5, 1)]))
    assert_mw(res, {911: 15, 921: 10, 411: 0, 421: 0, 821: -5})
    assert cost(res) == pytest.approx(260.0, abs=TOL)
    assert lmp(res, 1, 2) == pytest.approx(-2.0, abs=TOL)
    assert lmp(res, 1, 1) == pytest.approx(22.0, abs=TOL)
    assert_consistent(res)


# ------------------------------------------------------------------------------------------------ O10–O12
def feeder_case(folder, *, q_root=0.0, halfplanes=None, discs=None):
    """The three-node topology of docs/model.md §11 with orders that make Q matter.

    Node 1 (T, reference): P = −1 (short 1 MW); order 1 (QBid 11): up 0–3 MW @20.
    Node 2 (D root, w ∈ [1, 1]): Q = `q_root`; order 2 (QBid 21, segment 211): up 0–1 MW @10.
    Node 3 (D, w ∈ [0.9025, 1.1025]): nothing.  Edge 1: interface 1→2, S = 5 (not binding here).
    Edge 2: 2→3, R = 0.01, X = 0.1, S = 0.5 (carries nothing: node 3 is empty and lines only consume Q).
    The order sits at the root, so its P reaches T without losses: x = P_2.
    """
    return write_case(
        folder,
        periods=(1,),
        t_nodes=[(1, 1)],
        d_nodes=[(2, 1.0, 1.0), (3, 0.9025, 1.1025)],
        edges=[(1, 1, 2, 0.0, 0.0, 5.0), (2, 2, 3, 0.01, 0.1, 0.5)],
        injections={(1, 1): (-1.0, 0.0), (2, 1): (0.0, q_root)},
        bids=[S(1, 1, 0, 3, 20, node=1), S(2, 1, 0, 1, 10, node=2)],
        halfplanes=halfplanes,
        discs=discs,
    )


M_PF = 0.141539  # fixed power factor slope of the Italian data


def test_o10_half_planes_fixed_power_factor_and_wedge(tmp_path):
    """Half-planes Q ≥ o + mP (QPHPConstr 1) and Q ≤ o + mP (0) on a D order (default options).

    The root exchanges Q with T freely (interface 5 MVA, not binding), so Q is worth 0 and only the order's own
    PQ set matters.  Order 2 (1 MW @10) beats order 1 (@20) for the 1 MW shortage.
    (a) Fixed power factor pair (m = 0.141539, o = 0, both sides): P_2 = 1, Q_2 = 0.141539 exactly; cost 10 €.
        Without the pair the order is unrestricted and the default policy (bounded) gives Q_2 = 0, same cost.
    (b) Wedge Q ≥ 0.2 + 0.5P and Q ≤ 0.6: 0.2 + 0.5P ≤ 0.6 ⇒ P_2 ≤ 0.8 (then Q_2 = 0.6).  Order 1 gives the
        other 0.2 MW: 8 + 4 = 12 €; LMP at node 1 = 20.
    """
    res = clear(feeder_case(tmp_path / "pf", halfplanes=[(2, M_PF, 0.0, 1), (2, M_PF, 0.0, 0)]))
    assert bid(res, 21).p_mw == pytest.approx(1.0, abs=TOL)
    assert bid(res, 21).q_mvar == pytest.approx(M_PF, abs=TOL)
    assert bid(res, 11).p_mw == pytest.approx(0.0, abs=TOL)
    assert cost(res) == pytest.approx(10.0, abs=TOL)
    assert_consistent(res)
    res = clear(feeder_case(tmp_path / "nopf"))
    assert bid(res, 21).q_mvar == pytest.approx(0.0, abs=TOL)
    assert cost(res) == pytest.approx(10.0, abs=TOL)

    res = clear(feeder_case(tmp_path / "wedge", halfplanes=[(2, 0.5, 0.2, 1), (2, 0.0, 0.6, 0)]))
    assert bid(res, 21).p_mw == pytest.approx(0.8, abs=TOL)
    assert bid(res, 21).q_mvar == pytest.approx(0.6, abs=TOL)
    assert bid(res, 11).p_mw == pytest.approx(0.2, abs=TOL)
    assert cost(res) == pytest.approx(12.0, abs=TOL)
    assert lmp(res, 1, 1) == pytest.approx(20.0, abs=1e-5)
    assert_consistent(res)


def test_o11_disc_limits_p_when_q_is_needed(tmp_path):
    """A disc P² + Q² ≤ r² always applies; it limits P when the order must deliver Q.

    Order 2 has a half-plane Q ≥ 0.6 (m = 0, o = 0.6) and a disc of radius 1: P_2 ≤ √(1 − 0.36) = 0.8, Q_2 = 0.6;
    order 1 gives 0.2 MW: 8 + 4 = 12 €, under every reactive policy (discs are data, not policy).
    Without the disc and with policy `free` (no capability disc either): P_2 = 1, cost 10 €.
    """
    hp = [(2, 0.0, 0.6, 1)]
    for policy in ("bounded", "free"):
        res = clear(
            feeder_case(tmp_path / f"disc_{policy}", halfplanes=hp, discs=[(2, 21, 1.0)]),
            relax=False,
            reactive_policy=policy,
        )
        assert bid(res, 21).p_mw == pytest.approx(0.8, abs=TOL), policy
        assert bid(res, 21).q_mvar == pytest.approx(0.6, abs=TOL), policy
        assert cost(res) == pytest.approx(12.0, abs=TOL), policy
        assert_consistent(res)
    res = clear(feeder_case(tmp_path / "nodisc", halfplanes=hp), reactive_policy="free")
    assert bid(res, 21).p_mw == pytest.approx(1.0, abs=TOL)
    assert bid(res, 21).q_mvar >= 0.6 - TOL
    assert cost(res) == pytest.approx(10.0, abs=TOL)


def test_o12_reactive_policy(tmp_path):
    """`reactive_policy` (§4.3) on D orders, with a reactive need at the root that only order 2 can serve.

    Node 2 has Q = −0.6 Mvar and `interface_reactive=False` (the root may not import Q; line 2→3 only
    consumes Q), so 0.6 Mvar must come from order 2 or from Q slack at κ = 10⁴ €/Mvarh.
    (a) Unrestricted order 2 (no half-plane, no disc):
        bounded, zero: Q_2 = 0 ⇒ 0.6 Mvar of Q slack: 10 + 0.6 × 10⁴ = 6 010 €  (compared to 1e-4 €: with slack
        priced at 10⁴ the interior-point solution is only good to ~1e-8 relative, docs/model.md §3.3);
        free: Q_2 ≥ 0.6 at no cost, P_2 = 1: 10 €.
    (b) One-sided order 2 (only Q ≥ 0.05P):
        bounded: capability disc P² + Q² ≤ P̄²(1 + m²) = 1.0025 ⇒ P_2 = √(1.0025 − 0.36) = √0.6425 = 0.801561,
        cost 10 P_2 + 20 (1 − P_2) = 20 − 10√0.6425 = 11.984390 €;
        zero, free: as in the data (no disc): P_2 = 1, Q_2 = 0.6, 10 €.
    """
    kw = dict(interface_reactive=False)
    folder = feeder_case(tmp_path / "unrestricted", q_root=-0.6)
    for policy in ("bounded", "zero"):
        res = clear(folder, reactive_policy=policy, **kw)
        # quantities beside 6 000 € of slack: good to ~1e-9 of that cost, 1.0e-6 MW off here (abs 1e-5)
        assert bid(res, 21).q_mvar == pytest.approx(0.0, abs=10 * TOL), policy
        assert bid(res, 21).p_mw == pytest.approx(1.0, abs=10 * TOL), policy
        assert res.summary["slack"]["q_mvar"] == pytest.approx(0.6, abs=10 * TOL), policy
        assert cost(res) == pytest.approx(10.0 + 0.6 * KAPPA, abs=1e-4), policy
        assert res.summary["options"]["reactive_policy"] == policy
    res = clear(folder, reactive_policy="free", **kw)
    assert bid(res, 21).q_mvar >= 0.6 - TOL
    assert res.summary["slack"]["q_mvar"] == pytest.approx(0.0, abs=TOL)
    assert cost(res) == pytest.approx(10.0, abs=TOL)

    folder = feeder_case(tmp_path / "one_sided", q_root=-0.6, halfplanes=[(2, 0.05, 0.0, 1)])
    res = clear(folder, reactive_policy="bounded", **kw)
    p2 = math.sqrt(1.0025 - 0.36)
    assert bid(res, 21).p_mw == pytest.approx(p2, abs=TOL)
    assert bid(res, 21).q_mvar == pytest.approx(0.6, abs=TOL)
    assert cost(res) == pytest.approx(20.0 - 10.0 * p2, abs=TOL)
    assert_consistent(res)
    for policy in ("zero", "free"):
        res = clear(folder, reactive_policy=policy, **kw)
        assert bid(res, 21).p_mw == pytest.approx(1.0, abs=TOL), policy
        assert bid(res, 21).q_mvar >= 0.6 - TOL
        assert cost(res) == pytest.approx(10.0, abs=TOL), policy


# ------------------------------------------------------------------------------------------------ O13
def test_o13_two_way_bid_is_netted(tmp_path):
    """A QBid with up and down segments whose cheapest prices sum to 0 gets no binary; it is netted (§4.4).

    QBid 11: up 5 MW @10 (seg 111), up 5 @20 (112), down −5 @−10 (113), down −5 @0 (114).
    min up + min down = 10 − 10 = 0 ≥ 0, so no direction binary.
    (a) Short 3 MW: cost 10 per MW of net up via seg 111, and each extra (111 up, 113 down) pair costs
        10 − 10 = 0: the LP optimum (30 €) may activate both directions.  The reported result is netted:
        111 gives 3 MW, the others 0, cost 30 €, LMP 10.
    (b) `net_two_way` on ξ = (1, 1, 1, 0.4) (up 10 MW, down 7 MW): remove 7 MW from each direction, up from the
        most expensive (112: 5, then 111: 2), down from the highest raw price (114: 2, then 113: 5).
        Result ξ = (0.6, 0, 0, 0): P_b = 3 MW unchanged, cost 100 € → 30 €.
    """
    bids = [S(1, 1, 0, 5, 10, k=1), S(1, 1, 5, 10, 20, k=2), S(1, 1, 0, -5, -10, k=3), S(1, 1, -5, -10, 0, k=4)]
    folder = single_node_case(tmp_path / "c", {1: -3}, bids)
    res = clear(folder)
    assert res.summary["mip"]["binaries"] == 0
    assert_mw(res, {111: 3, 112: 0, 113: 0, 114: 0})
    got = mw(res)
    assert not (max(got[111], got[112]) > TOL and min(got[113], got[114]) < -TOL)
    assert cost(res) == pytest.approx(30.0, abs=TOL)
    assert res.tables["segments"].cost_eur.sum() == pytest.approx(30.0, abs=TOL)
    assert lmp(res) == pytest.approx(10.0, abs=TOL)

    inst = read(folder)
    seg = inst.orders.segments
    order = np.argsort(seg.id)
    assert list(seg.id[order]) == [111, 112, 113, 114]
    xi = np.zeros(len(seg.id))
    xi[order] = [1.0, 1.0, 1.0, 0.4]
    out = net_two_way(inst, xi, np.array([0]))
    assert out[order] == pytest.approx([0.6, 0.0, 0.0, 0.0], abs=1e-12)
    w = seg.width
    assert (w * out).sum() == pytest.approx((w * xi).sum(), abs=1e-12)
    c = lambda v: float((seg.price * np.abs(w) * v).sum())
    assert c(xi) == pytest.approx(100.0) and c(out) == pytest.approx(30.0)


def test_o13_direction_binary_when_price_sum_is_negative(tmp_path):
    """With min up + min down < 0, activating both directions is profitable, so O13 needs the binary δ.

    Short 5 MW.  QBid 11: up 10 MW @10 (seg 111), down −10 MW @−20 (seg 112; the BSP pays 20 €/MWh).
    Without O13 the LP would take up 10 MW and down 5 MW: 100 − 100 = 0 € (a pure arbitrage).
    Integer (δ binary): one direction only: up 5 MW, 50 €; LMP 10 (δ = 1 fixed).
    Relaxed (δ ∈ [0, 1], up ≤ 10δ, down ≤ 10(1 − δ)): with up = down + 5, cost = 50 − 100·(down/10) subject to
    down ≤ 10 − 10δ ≤ 5 − down ⇒ down ≤ 2.5: δ = 0.75, up 7.5 MW, down 2.5 MW, 75 − 50 = 25 €.
    """
    folder = single_node_case(tmp_path / "c", {1: -5}, [S(1, 1, 0, 10, 10, k=1), S(1, 1, 0, -10, -20, k=2)])
    res = clear(folder)
    assert res.summary["mip"]["binaries"] == 1
    assert_mw(res, {111: 5, 112: 0})
    assert cost(res) == pytest.approx(50.0, abs=TOL)
    assert lmp(res) == pytest.approx(10.0, abs=TOL)
    assert_consistent(res)
    rel = clear(folder, relax=True)
    assert_mw(rel, {111: 7.5, 112: -2.5})
    assert cost(rel) == pytest.approx(25.0, abs=TOL)


# ------------------------------------------------------------------------------------------------ slack only
def test_empty_order_book_is_valid_and_uses_slack(tmp_path):
    """No orders at all (header-only Bids.csv): every imbalance is covered by slack at κ = 10⁴ €/MWh.

    Short 3 MW in t=1 (σ⁺ = 3, fictitious injection), long 2 MW in t=2 (σ⁻ = 2).
    Cost 10⁴ × (3 + 2) = 50 000 €, market cost 0; LMP +10⁴ in t=1, −10⁴ in t=2; reported slack 5 MW.
    """
    res = clear(single_node_case(tmp_path / "c", {1: -3, 2: 2}, []))
    assert len(res.tables["segments"]) == 0
    assert cost(res) == pytest.approx(5 * KAPPA, abs=TOL)
    assert res.summary["cost"]["market_cost_eur"] == pytest.approx(0.0, abs=TOL)
    assert res.summary["cost"]["slack_cost_eur"] == pytest.approx(5 * KAPPA, abs=TOL)
    assert slack_p(res, 1, 1) == pytest.approx(3.0, abs=TOL)
    assert slack_p(res, 1, 2) == pytest.approx(-2.0, abs=TOL)
    assert res.summary["slack"]["p_mw"] == pytest.approx(5.0, abs=TOL)
    assert lmp(res, 1, 1) == pytest.approx(KAPPA, abs=TOL)
    assert lmp(res, 1, 2) == pytest.approx(-KAPPA, abs=TOL)
