"""The four TSO–DSO dilemmas of `examples/dilemmas.py`: the qualitative claims, with numbers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pandapower")

from casebuilder import load_example  # noqa: E402

dilemmas = load_example("dilemmas")

import tdmarket  # noqa: E402
from tdmarket.market.cost_sharing import cost_sharing  # noqa: E402


@pytest.fixture(scope="module")
def s1():
    return dilemmas.scenario1()["figures"]


@pytest.fixture(scope="module")
def s2():
    return dilemmas.scenario2()["figures"]


@pytest.fixture(scope="module")
def congested():
    """Scenario 3's run: the congested variant under hierarchical, its x^0 and the cost-sharing table."""
    inst = dilemmas.congested_variant()
    x0 = dilemmas.base_exchanges(inst)
    res = tdmarket.clear(inst, scheme="hierarchical", executor="inline", gap=1e-7)  # hand figures to 1e-6
    return inst, x0, res, cost_sharing(inst, res.tables, x0)


@pytest.fixture(scope="module")
def s4():
    return dilemmas.scenario4()["figures"]


# ------------------------------------------------------------------------------------------------ 1
def test_conflict_centralized_as_market_overloads_line22(s1):
    cam, hie, com = s1["centralized-as-market"], s1["hierarchical"], s1["common"]
    # the TSO, blind to the D grid, takes QtBid 9 (5 MW) and the first 2 MW of QtBid 10 in t=1
    assert cam["mw_behind_line22"] == pytest.approx([7.0, 5.0, 5.0], abs=1e-6)
    assert min(cam["line22_loading_ac"]) > 1.1  # 187 % / 116 % / 125 % in AC
    assert max(cam["line22_loading_ac"]) > 1.8
    assert cam["ac_thermal_violations"] >= 3 and cam["ac_worst_loading"] > 1.8
    assert cam["max_abs_dx_mw"] > 0.01  # the AC exchange differs from what the TSO assumed
    for ok in (hie, com):
        assert max(ok["line22_loading_ac"]) <= 1.0 + 1e-5
        assert ok["ac_thermal_violations"] == 0
        # the DSO's grid caps the activation behind line 22 at ~4.4 MW (README of the example)
        assert all(3.9 < v < 4.6 for v in ok["mw_behind_line22"])
        assert ok["slack_mw"] < 1e-5
    assert com["total_cost_eur"] <= hie["total_cost_eur"] * (1 + 1e-3)
    assert hie["total_cost_eur"] == pytest.approx(com["total_cost_eur"], rel=1e-3)
    # ignoring the D grid looks cheaper, but is not deliverable
    assert cam["total_cost_eur"] < com["total_cost_eur"] - 10.0


# ------------------------------------------------------------------------------------------------ 2
def test_self_healing_with_and_without_own_resources(s2):
    assert min(s2["no_action_line22_loading_ac"]) > 1.15  # the grown load alone overloads line 22
    w, wo = s2["with_own_orders"], s2["without_own_orders"]
    # x^0 imports less than the area's fixed load: the gap is the DSO's own need behind the line
    need = np.asarray(w["x0_mw"]) - np.asarray(s2["fixed_p_mw"])
    assert (need > 0.5).all()
    # with its own orders: activated behind the line, no slack, line 22 within its rating in AC
    assert max(w["slack_mw"]) < 1e-6 and w["slack_penalty_eur"] < 1e-3
    assert all(v > 0.5 for v in w["mw_behind_line22"])
    assert np.asarray(w["mw_behind_line22"]) == pytest.approx(need, abs=0.1)
    # QtBid 9 @15 €/MWh (plus < 0.01 MW of the down order 11 @-12 €/MWh at 205, which absorbs a loss difference)
    assert w["activation_cost_eur"] == pytest.approx(15.0 * sum(w["mw_behind_line22"]), abs=0.2)
    assert max(w["line22_loading_ac"]) <= 1.0 + 1e-5
    # without them: the same need is met by slack, at the penalty κ = 1e4 €/MWh
    assert wo["mw_behind_line22"] == [0.0, 0.0, 0.0]
    assert all(v > 0.5 for v in wo["slack_mw"])
    assert np.asarray(wo["slack_mw"]) == pytest.approx(w["mw_behind_line22"], abs=0.05)
    assert wo["slack_penalty_eur"] >= 1e4 * sum(wo["slack_mw"]) - 1e-3
    assert wo["total_cost_eur"] > w["total_cost_eur"] + 3e4


# ------------------------------------------------------------------------------------------------ 3
def test_cost_sharing_identity_and_hand_check(congested):
    """K^T + K^D = K, and DSO-201 in t=1 checked by hand.

    DSO-201, t=1 (node 204 load × 5, hierarchical):
    * K: QtBid 9 at 203 is fully accepted, 5 MW @15 €/MWh = 75 €; QtBid 10 at 204 takes 1.66276 MW of its first
      segment (0→2 MW @18 €/MWh) = 29.93 €; no other order of the area is active: K = 104.93 €.
    * x^0 = −6.31548 MW (the base flow overloads line 22, so x^0 already assumes ~1 MW of local relief),
      x = −0.66507 MW, π = 22 €/MWh (the cheap T order at 106 is marginal in t=1):
      K^T = 22 × (−0.66507 + 6.31548) = 22 × 5.65041 = 124.31 €.
    * K^D = 104.93 − 124.31 = −19.38 €: the orders are cheaper than π, the TSO's payment for the change of
      exchange exceeds the activation cost, and the DSO keeps the difference (its congestion rent).
    """
    inst, x0, res, cs = congested
    assert len(cs) == 9 and set(cs.area) == {"DSO-201", "DSO-301", "DSO-401"}
    assert (cs.K_T_eur + cs.K_D_eur - cs.K_eur).abs().max() <= 1e-12 * max(1.0, cs.K_eur.abs().max())
    # the columns are what they say
    assert cs.K_T_eur.to_numpy() == pytest.approx(
        (cs.interface_price_eur_mwh * (cs.export_mw - cs.base_export_mw)).to_numpy(), abs=1e-12
    )
    ifc = res.tables["interfaces"].set_index(["area", "period"])
    for r in cs.itertuples():
        assert r.export_mw == ifc.loc[(r.area, r.period), "export_mw"]
        assert r.base_export_mw == x0[r.area][list(inst.periods).index(r.period)]
    # all D activation cost is accounted for
    d_seg = res.tables["segments"][res.tables["segments"].node > 200]
    assert cs.K_eur.sum() == pytest.approx(d_seg.cost_eur.sum(), abs=1e-9)
    # hand check (docstring)
    row = cs[(cs.area == "DSO-201") & (cs.period == 1)].iloc[0]
    seg = res.tables["segments"]
    p9 = seg[(seg.qtbid == 9) & (seg.period == 1)].accepted_mw.sum()
    p10 = seg[(seg.qtbid == 10) & (seg.period == 1)].accepted_mw.sum()
    assert p9 == pytest.approx(5.0, abs=1e-5) and 0 < p10 < 2.0
    assert row.K_eur == pytest.approx(15 * p9 + 18 * p10, abs=1e-5)  # other activations ~1e-7 MW
    assert row.K_eur == pytest.approx(104.93, abs=0.01)
    assert row.interface_price_eur_mwh == pytest.approx(22.0, abs=1e-6)
    assert row.base_export_mw == pytest.approx(-6.31548, abs=1e-4)
    assert row.export_mw == pytest.approx(-0.66507, abs=1e-4)
    assert row.K_T_eur == pytest.approx(124.31, abs=0.01)
    assert row.K_D_eur == pytest.approx(-19.38, abs=0.02)
    # per-area totals
    a1 = cs[cs.area == "DSO-201"]
    assert (a1.K_area_eur == a1.K_eur.sum()).all() and (a1.K_T_area_eur == a1.K_T_eur.sum()).all()


def test_cost_sharing_uplift_split(congested):
    """Uplift split |ΣK^T| : |ΣK^D|, and all to the DSO when both are 0."""
    inst, x0, res, _ = congested
    tables = dict(res.tables)
    part = tables["participants"].copy()
    part["loc_eur"] = 0.0
    part.loc[part.qtbids == "9", "loc_eur"] = 10.0  # DSO-201 (node 203)
    part.loc[part.qtbids == "18", "loc_eur"] = 5.0  # DSO-401 (node 403)
    part.loc[part.qtbids == "2", "loc_eur"] = 7.0  # a T participant: the TSO's, not shared
    tables["participants"] = part
    x0 = dict(x0)
    ifc = tables["interfaces"]
    x0["DSO-401"] = ifc[ifc.area == "DSO-401"].sort_values("period").export_mw.to_numpy()  # x = x^0 exactly
    seg = tables["segments"].copy()
    seg.loc[seg.node // 100 == 4, "accepted_mw"] = 0.0  # DSO-401 activates nothing (the run has ~1e-9 MW)
    tables["segments"] = seg
    cs = cost_sharing(inst, tables, x0).groupby("area").first()
    kt, kd = abs(cs.loc["DSO-201", "K_T_area_eur"]), abs(cs.loc["DSO-201", "K_D_area_eur"])
    assert kt > 0 and kd > 0
    assert cs.loc["DSO-201", "uplift_area_eur"] == 10.0
    assert cs.loc["DSO-201", "uplift_T_eur"] == pytest.approx(10.0 * kt / (kt + kd), rel=1e-12)
    assert cs.loc["DSO-201", "uplift_D_eur"] == pytest.approx(10.0 * kd / (kt + kd), rel=1e-12)
    # DSO-401 activates nothing and keeps x = x^0: both sums are 0, the uplift goes to the DSO
    assert cs.loc["DSO-401", "K_T_area_eur"] == 0.0 and cs.loc["DSO-401", "K_D_area_eur"] == 0.0
    assert cs.loc["DSO-401", "uplift_T_eur"] == 0.0 and cs.loc["DSO-401", "uplift_D_eur"] == 5.0
    assert cs.loc["DSO-301", "uplift_area_eur"] == 0.0


def test_cost_sharing_needs_x0_for_every_area(congested):
    inst, x0, res, _ = congested
    with pytest.raises(KeyError, match="DSO-301"):
        cost_sharing(inst, res.tables, {k: v for k, v in x0.items() if k != "DSO-301"})


def test_scenario3_report():
    out = dilemmas.scenario3()
    f = out["figures"]
    rows = [r for r in f["rows"] if r["area"] == "DSO-201"]
    assert [r["period"] for r in rows] == [1, 2, 3]
    # one activation serves both: the exchange moves (TSO) and the area covers its own need (x^0 > fixed load)
    assert all(r["export_mw"] - r["base_export_mw"] > 3.0 for r in rows)
    assert all(abs(r["K_T_eur"] + r["K_D_eur"] - r["K_eur"]) <= 1e-12 for r in f["rows"])
    text = dilemmas.render(out)
    assert "K^T" in text and "DSO-201" in text


# ------------------------------------------------------------------------------------------------ 4
def test_three_levels_gap_and_message_flow(s4):
    assert s4["parent"]["DSO-203"] == "DSO-201" and s4["parent"]["DSO-201"] == "TSO"
    assert abs(s4["gap"]) <= 1e-3
    flow = s4["message_flow"]
    first = {(e["stage"], e["kind"], e["from"], e["to"]): e["first"] for e in flow}
    # curves bottom-up: the sub-DSO's curve reaches DSO-201 before DSO-201's curve reaches the TSO
    assert first[("curve", "CurveOffer", "DSO-203", "DSO-201")] < first[("curve", "CurveOffer", "DSO-201", "TSO")]
    # schedules top-down: TSO → DSO-201, then DSO-201 → DSO-203, then the sub-DSO reports to its parent
    assert (
        first[("dispatch", "Schedule", "TSO", "DSO-201")]
        < first[("dispatch", "Schedule", "DSO-201", "DSO-203")]
        < first[("dispatch", "DispatchReport", "DSO-203", "DSO-201")]
    )
    # the sub-DSO talks to its parent only: once per direction at the curves and the dispatch, and in the cut
    # exchange's nested rounds one reply per point its parent proposes (docs/model.md §6.4)
    sub = [e for e in flow if "DSO-203" in (e["from"], e["to"])]
    assert {(e["from"], e["to"]) for e in sub} == {("DSO-203", "DSO-201"), ("DSO-201", "DSO-203")}
    counts = {(e["stage"], e["kind"]): e["count"] for e in sub}
    assert counts.pop(("iterate", "Schedule")) == counts.pop(("iterate", "CutReply")) > 0
    assert counts == {("curve", "CurveOffer"): 1, ("dispatch", "DispatchReport"): 1, ("dispatch", "Schedule"): 1}
    # DSO-201's offer to the TSO is one curve; the TSO never sees the sub-DSO
    assert all(e["to"] != "TSO" or e["from"] != "DSO-203" for e in flow)
    # the sub-DSO exports its cheap flexibility up to line 22's rating (3 MVA), at DSO-201's price at node 203
    sd = s4["sub_dso"]
    assert sd["periods"] == [1, 2, 3]
    assert all(2.9 < x <= 3.0 for x in sd["export_mw"])
    assert all(15.0 - 1e-6 <= p <= 30.0 for p in sd["price_eur_mwh"])
