"""Federations of TSOs under a balancing platform (docs/model.md §12): the input layout and its validation, the
merged (integrated) clearing, the member values and their slopes, the platform schemes and their comparison."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tdmarket
from tdmarket.cli import main
from tdmarket.errors import InputError
from tdmarket.examples import builtin_path, federation_path
from tdmarket.federation import clear_federation
from tdmarket.federation.platform import evaluate_member
from tdmarket.io.federation import read_federation
from tdmarket.model.federation import Federation, Interconnectors, merged_instance
from tdmarket.schemes.centralized import clear_centralized

HEADER = "ID,FromMember,FromNode,ToMember,ToNode,Period,ATCForward,ATCBackward\n"


def write_federation(folder, members: str, rows: list[str]) -> str:
    """A federation folder whose members are copies of the built-in example (`a`, `b`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):
        if not (folder / name).exists():
            shutil.copytree(builtin_path(), folder / name)
    (folder / "Members.csv").write_text(members)
    (folder / "Interconnectors.csv").write_text(HEADER + "".join(r + "\n" for r in rows))
    return str(folder)


GOOD_ROWS = [f"7,a,106,b,101,{t},5,5" for t in (1, 2, 3)]


def test_example_federation_reads(example_federation):
    fed = example_federation
    assert fed.members == ["north", "south"]
    ic = fed.interconnectors
    assert ic.id.tolist() == [1, 2]
    assert fed.instances[0].buses.id[ic.from_bus].tolist() == [106, 103]
    assert fed.instances[1].buses.id[ic.to_bus].tolist() == [101, 105]
    assert ic.atc_forward_mw[1].tolist() == [6, 3, 6] and ic.atc_backward_mw[1].tolist() == [4, 4, 4]


@pytest.mark.parametrize(
    ("members", "rows", "where", "what"),
    [
        (
            "Member,Path\na,a\nb,b\n",
            [GOOD_ROWS[0].replace(",b,101", ",c,101")] + GOOD_ROWS[1:],
            "row 2, column ToMember",
            "unknown member 'c'",
        ),
        (
            "Member,Path\na,a\nb,b\n",
            [GOOD_ROWS[0]] + [GOOD_ROWS[1].replace("a,106", "a,999")] + GOOD_ROWS[2:],
            "row 3, column FromNode",
            "unknown node 999 of member 'a'",
        ),
        (
            "Member,Path\na,a\nb,b\n",
            GOOD_ROWS[:2] + [GOOD_ROWS[2].replace(",5,5", ",5,-1")],
            "row 4, column ATCBackward",
            "negative capacity -1 MW",
        ),
        ("Member,Path\na,a\nb,b\na,b\n", GOOD_ROWS, "Members.csv, row 4, column Member", "member 'a' appears twice"),
        ("Member,Path\na,a\nb,a\n", GOOD_ROWS, "Members.csv, row 3, column Path", "a member appears twice"),
        (
            "Member,Path\na,a\nb,b\n",
            GOOD_ROWS[:2] + [GOOD_ROWS[2].replace("b,101", "b,201")],
            "row 4, column ToNode",
            "is a distribution node",
        ),
        ("Member,Path\na,a\nb,b\n", GOOD_ROWS[:2], "row 2, column Period", "no row for period(s) [3]"),
        ("Member,Path\na,a\nb,b\n", GOOD_ROWS + [GOOD_ROWS[0]], "row 5, column ID", "duplicate key ID=7, Period=1"),
        (
            "Member,Path\na,a\nb,b\n",
            GOOD_ROWS[:2] + ["7,a,106,a,101,3,5,5"],
            "row 4, column ToMember",
            "both ends are one member",
        ),
        (
            "Member,Path\na,a\nb,b\n",
            GOOD_ROWS[:2] + ["7,a,106,b,101,9,5,5"],
            "row 4, column Period",
            "period 9 is not in",
        ),
        (
            "Member,Path\na,a\nb,nowhere\n",
            GOOD_ROWS,
            "Members.csv, row 3, column Path",
            "member folder 'nowhere' not found",
        ),
    ],
)
def test_bad_federation_is_one_line_error_exit_2(tmp_path, capsys, members, rows, where, what):
    path = write_federation(tmp_path / "fed", members, rows)
    with pytest.raises(InputError) as err:
        read_federation(path)
    text = str(err.value)
    assert where in text and what in text, text
    assert "\n" not in text
    # the command line: one line on stderr, exit code 2, no traceback
    assert main(["compare", path, "--no-ac", "--report", str(tmp_path / "r.html")]) == 2
    stderr = capsys.readouterr().err
    assert what in stderr and "Traceback" not in stderr


def _isolated_cost(fed: Federation, **options) -> float:
    return sum(clear_centralized(inst, incentives=False, **options).total_cost for inst in fed.instances)


def test_integrated_with_zero_capacity_is_the_isolated_clearing(example_federation):
    ic = example_federation.interconnectors
    closed = replace(
        example_federation,
        interconnectors=replace(ic, atc_forward_mw=0 * ic.atc_forward_mw, atc_backward_mw=0 * ic.atc_backward_mw),
    )
    integrated = clear_federation(closed, "integrated", relax=True)
    isolated = clear_federation(closed, "isolated", relax=True)
    assert integrated.total_cost == pytest.approx(_isolated_cost(closed, relax=True), rel=1e-7)
    assert isolated.total_cost == pytest.approx(integrated.total_cost, rel=1e-7)
    assert np.abs(integrated.flows.flow_mw).max() < 1e-7


def test_merged_instance_keeps_every_member_apart(example_federation):
    mf = merged_instance(example_federation)
    inst = mf.instance
    north, south = example_federation.instances
    assert len(inst.buses) == len(north.buses) + len(south.buses)
    assert len(np.unique(inst.buses.id)) == len(inst.buses)  # ids shifted per member
    assert inst.areas.name[1:4] == ["north/DSO-201", "north/DSO-301", "north/DSO-401"]
    assert inst.buses.id[mf.bus_start[1]] == south.buses.id[0] + mf.id_shift
    assert int(inst.buses.is_ref.sum()) == 2  # one angle reference per member's transmission grid
    np.testing.assert_array_equal(inst.p_inj[mf.bus_start[1] :], south.p_inj)


def test_integrated_example_flows_prices_and_rents(example_federation):
    res = clear_federation(example_federation, "integrated", relax=True)
    f = res.flows
    assert (f.flow_mw <= f.atc_forward_mw + 1e-7).all() and (f.flow_mw >= -f.atc_backward_mw - 1e-7).all()
    # congestion rent = flow × price difference; an uncongested interconnector has equal prices at its ends
    np.testing.assert_allclose(f.congestion_rent_eur, f.flow_mw * (f.price_to_eur_mwh - f.price_from_eur_mwh))
    free = ~f.congested
    np.testing.assert_allclose(f.price_from_eur_mwh[free], f.price_to_eur_mwh[free], atol=1e-6)
    assert (f.congestion_rent_eur >= -1e-7).all()  # the platform never pays to move power (optimal flows)
    # exchange lowers the cost: the north exports in period 1 where the south is dear
    assert f.loc[(f.interconnector == 1) & (f.period == 1), "flow_mw"].item() == pytest.approx(10.0)
    assert res.total_cost < _isolated_cost(example_federation, relax=True) - 100
    s = res.summary
    assert sum(c["total_cost_eur"] for c in s["member_costs"].values()) == pytest.approx(res.total_cost, rel=1e-7)
    assert s["net_position_mw"]["north"] == pytest.approx(-np.array(s["net_position_mw"]["south"]))


def test_member_slope_is_the_finite_difference(example_federation):
    """∂V_m/∂g from the border prices (docs/model.md §12.2) against a central difference of V_m."""
    fed = example_federation
    K, T = len(fed.interconnectors), fed.n_periods
    g = np.full((K, T), 2.0)
    for m in range(2):
        val = evaluate_member(fed, m, g, "common", {"relax": True})
        for k, t in ((0, 0), (1, 2)):
            h = np.zeros((K, T))
            h[k, t] = 1e-3
            up = evaluate_member(fed, m, g + h, "common", {"relax": True}).cost_eur
            down = evaluate_member(fed, m, g - h, "common", {"relax": True}).cost_eur
            assert val.slope_eur_mw[k, t] == pytest.approx((up - down) / 2e-3, abs=1e-3)


def _generated_federation(builtin, seed: int) -> Federation:
    """Two or three members (the built-in example with random imbalance and price mark-ups), random
    interconnectors between random T nodes with random capacities."""
    rng = np.random.default_rng(seed)
    M = int(rng.integers(2, 4))
    members = []
    for _ in range(M):
        book = builtin.orders
        seg = replace(book.segments, price=book.segments.price * rng.uniform(0.8, 1.4))
        members.append(
            replace(builtin, p_inj=builtin.p_inj * rng.uniform(0.8, 1.25), orders=replace(book, segments=seg))
        )
    t_bus = np.flatnonzero(~builtin.buses.is_dist)
    K = int(rng.integers(1, 4))
    fr = rng.integers(0, M, K)
    to = (fr + rng.integers(1, M, K)) % M
    T = builtin.n_periods
    ic = Interconnectors(
        id=np.arange(1, K + 1),
        from_member=fr,
        from_bus=rng.choice(t_bus, K),
        to_member=to,
        to_bus=rng.choice(t_bus, K),
        atc_forward_mw=rng.uniform(0, 15, (K, T)),
        atc_backward_mw=rng.uniform(0, 15, (K, T)),
    )
    return Federation("generated", builtin.periods, [f"m{i}" for i in range(M)], members, ic)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_isolated_is_never_cheaper_than_integrated(builtin, seed):
    """Generated federations (`_generated_federation`)."""
    fed = _generated_federation(builtin, seed)
    integrated = clear_federation(fed, "integrated", relax=True)
    isolated = clear_federation(fed, "isolated", relax=True)
    assert isolated.total_cost >= integrated.total_cost - 1e-6 * abs(integrated.total_cost)


def _assert_platform_prices_fit_the_flows(res, period_hours: float = 1.0) -> None:
    """The decomposed platform's cross-border prices (docs/model.md §12.4): a price difference across an
    interconnector pays for its distance to the capacity in that direction, at most ε € in all, and ε is at most
    the platform's certified gap UB − LB with exact member values (the master's duals are one feasible choice)."""
    info, cert = res.summary["cross_border_prices"], res.summary["certificate"]
    assert info["source"] == "platform"
    f = res.flows
    d = (f.price_to_eur_mwh - f.price_from_eur_mwh).to_numpy() * period_hours  # €/MW
    room_forward = (f.atc_forward_mw - f.flow_mw).clip(lower=0).to_numpy()
    room_backward = (f.flow_mw + f.atc_backward_mw).clip(lower=0).to_numpy()
    spent = float((np.maximum(d, 0) * room_forward + np.maximum(-d, 0) * room_backward).sum())
    assert spent <= info["epsilon_eur"] + 1e-6
    # ε is measured against the members' reported values V_m (their exchanges' upper bounds), which lie above
    # V_m by up to their own gaps; the platform's gap covers those gaps (its cuts come from the cut models)
    ub, lb = cert["upper_bound_eur"], cert["lower_bound_eur"]
    assert info["epsilon_eur"] <= max(ub - lb, 0.0) + 1e-5 * abs(ub)
    np.testing.assert_allclose(f.congestion_rent_eur, f.flow_mw * d, atol=1e-9)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_hierarchical_platform_matches_integrated_on_generated_federations(builtin, seed):
    """Every member's TSO master is kept and moved to each platform round's injections: on generated federations
    the hierarchical platform still reaches the integrated cost within 1e-4 (measured on seeds 0-11: within
    9.7e-6), stops on its gap and replaces no member clearing.  Its certified lower bound is one: the members'
    cuts take their values from their cut models, not from their exchanges' upper bounds (with those, the bound
    lay 0.002-0.027 € above the integrated optimum on all of seeds 0-11)."""
    fed = _generated_federation(builtin, seed)
    integrated = clear_federation(fed, "integrated", relax=True)
    hier = clear_federation(fed, "hierarchical", relax=True, executor="inline")
    scale = max(1.0, abs(integrated.total_cost))
    assert abs(hier.total_cost - integrated.total_cost) <= 1e-4 * scale
    assert hier.summary["certificate"]["lower_bound_eur"] <= integrated.total_cost + 1e-7 * scale
    assert hier.summary["certificate"]["stopped_by"] == "relative_gap"
    assert hier.summary["member_fallbacks"] == []
    _assert_platform_prices_fit_the_flows(hier)


@pytest.mark.slow
def test_hierarchical_platform_matches_integrated(example_federation, example_federation_hierarchical):
    """Target of issue 13: hierarchical vs integrated ≤ 1e-4 relative on the example federation."""
    hier = example_federation_hierarchical
    integrated = clear_federation(example_federation, "integrated", relax=True)
    assert abs(hier.total_cost - integrated.total_cost) <= 1e-4 * abs(integrated.total_cost)
    cert = hier.summary["certificate"]
    assert cert["certified"] and cert["gap"] <= 1e-5 and cert["stopped_by"] == "relative_gap"
    # flows are determined only as far as the gap allows (period 3's price spread is 0.28 €/MWh): close, not equal
    np.testing.assert_allclose(hier.flows.flow_mw, integrated.flows.flow_mw, atol=0.5)
    # the platform's prices: one price across a free interconnector (interconnector 2, period 2: the members'
    # own clearings priced its ends at 26.70 and 25.36 €/MWh), a spread only where the flow is at or within the
    # gap of its capacity; here they are the integrated clearing's prices
    _assert_platform_prices_fit_the_flows(hier)
    np.testing.assert_allclose(hier.flows.price_from_eur_mwh, integrated.flows.price_from_eur_mwh, atol=1e-3)
    np.testing.assert_allclose(hier.flows.price_to_eur_mwh, integrated.flows.price_to_eur_mwh, atol=1e-3)
    # every member dispatched its DSOs with the border flows fixed (schedules down)
    for name, res in hier.members.items():
        assert res.summary["scheme"] == "hierarchical"
        assert res.summary["slack"]["p_mw"] < 1e-3, name
    comm = hier.summary["communication"]
    assert comm["platform"]["messages"] == len(hier.messages) > 0
    assert comm["member"]["messages"] > comm["platform"]["messages"]


@pytest.mark.slow
def test_compare_federation_prints_the_four_schemes(tmp_path, capsys):
    report = tmp_path / "fed.html"
    code = main(
        [
            "compare",
            str(federation_path()),
            "--relax",
            "--executor",
            "inline",
            "--report",
            str(report),
            "--quiet",
            "--schemes",
            "integrated,dso-unaware,isolated",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    for word in ("integrated", "dso-unaware", "isolated", "cross-border flows", "rent €", "msgs platform↔TSO"):
        assert word in out
    assert report.is_file() and "Cross-border flows" in report.read_text()
    assert (tmp_path / "out" / "dso-unaware" / "flows.csv").is_file()


def test_info_federation(capsys):
    assert main(["info", str(federation_path())]) == 0
    out = capsys.readouterr().out
    assert "north: 6 T nodes, 15 D nodes, 3 DSO areas" in out
    assert "2: north/103 → south/105  forward 6 / 3 / 6  backward 4 / 4 / 4" in out


def test_members_with_other_period_numbers_are_aligned_by_position(example_federation):
    """A member whose periods are numbered 4–6 is cleared with its own numbers; the federation keeps the first
    member's (docs/format.md §7): prices and flows are found at the same positions."""
    north, south = example_federation.instances
    shifted = replace(example_federation, instances=[north, replace(south, periods=south.periods + 3)])
    a = clear_federation(example_federation, "isolated", relax=True)
    b = clear_federation(shifted, "isolated", relax=True)
    assert b.total_cost == pytest.approx(a.total_cost, rel=1e-9)
    np.testing.assert_allclose(b.member_prices.price_eur_mwh, a.member_prices.price_eur_mwh, atol=1e-9)
    assert b.flows.period.tolist() == a.flows.period.tolist()


def test_members_must_share_the_horizon_length(tmp_path):
    path = write_federation(tmp_path / "fed", "Member,Path\na,a\nshort,short\n", GOOD_ROWS)
    assert main(["variant", "--example", str(tmp_path / "fed" / "short"), "--seed", "0", "--periods", "2"]) == 0
    with pytest.raises(InputError, match="Members.csv, row 3, column Path") as err:
        read_federation(path)
    assert "has 2 periods [1, 2]" in str(err.value) and "members must share the horizon length" in str(err.value)


def test_dso_unaware_platform_is_certified_and_checked_in_ac(example_federation):
    """T-level values only (D grids collapsed): the platform's gap is certified on those values, and the AC check of
    the members' distribution dispatch shows what ignoring the D grids does (docs/model.md §12.3)."""
    from tdmarket.reporting.federation import federation_ac

    res = clear_federation(example_federation, "dso-unaware", relax=True)
    cert = res.summary["certificate"]
    assert cert["certified"] and cert["gap"] <= 1e-5 and cert["lower_bound_eur"] <= res.total_cost + 1e-6
    assert all(r.summary["scheme"] == "centralized-as-market" for r in res.members.values())
    _assert_platform_prices_fit_the_flows(res)
    f = res.flows
    assert (f.flow_mw <= f.atc_forward_mw + 1e-7).all() and (f.flow_mw >= -f.atc_backward_mw - 1e-7).all()
    pytest.importorskip("pandapower")
    from tdmarket.reporting.ac_check import ac_power_flow, summarise

    ac = summarise(federation_ac(res, ac_power_flow))
    assert ac["thermal_violations"] > 0  # the north's feeders cannot carry the T-level dispatch
    integrated = clear_federation(example_federation, "integrated", relax=True)
    assert summarise(federation_ac(integrated, ac_power_flow))["total_violations"] == 0


def test_without_interconnectors_every_platform_scheme_is_isolated(example_federation):
    ic = example_federation.interconnectors
    none = Interconnectors(
        id=ic.id[:0],
        from_member=ic.from_member[:0],
        from_bus=ic.from_bus[:0],
        to_member=ic.to_member[:0],
        to_bus=ic.to_bus[:0],
        atc_forward_mw=ic.atc_forward_mw[:0],
        atc_backward_mw=ic.atc_backward_mw[:0],
    )
    fed = replace(example_federation, interconnectors=none)
    isolated = clear_federation(fed, "isolated", relax=True).total_cost
    assert clear_federation(fed, "integrated", relax=True).total_cost == pytest.approx(isolated, rel=1e-7)
    unaware = clear_federation(fed, "dso-unaware", relax=True)
    assert unaware.summary["certificate"]["stopped_by"] == "no_exchange" and len(unaware.flows) == 0


@pytest.mark.slow
def test_hierarchical_platform_on_a_federation_of_shared_instances(tmp_path):
    """Target of issue 13 on shared data: two members cut from italy-693 (its first two periods; the second with
    30 % more imbalance and marked-up prices), one interconnector; hierarchical vs integrated ≤ 1e-4 relative."""
    from casebuilder import shared_path

    base = shared_path("italy-693")  # skips when the shared data are absent
    fed_dir = tmp_path / "fed"
    common = ["--periods", "2"]
    assert main(["variant", str(base), str(fed_dir / "west"), "--seed", "0", *common]) == 0
    assert main(["variant", str(base), str(fed_dir / "east"), "--seed", "1", "--price-noise", "0.3",
                 "--imbalance-scale", "1.3", *common]) == 0  # fmt: skip
    (fed_dir / "Members.csv").write_text("Member,Path\nwest,west\neast,east\n")
    (fed_dir / "Interconnectors.csv").write_text(HEADER + "".join(f"1,west,1743,east,1537,{t},20,20\n" for t in (1, 2)))
    fed = read_federation(fed_dir)
    integrated = clear_federation(fed, "integrated", relax=True)
    hier = clear_federation(fed, "hierarchical", relax=True, executor="inline")
    assert abs(hier.total_cost - integrated.total_cost) <= 1e-4 * max(1.0, abs(integrated.total_cost))
    assert hier.summary["certificate"]["stopped_by"] == "relative_gap"
    _assert_platform_prices_fit_the_flows(hier)
    isolated = clear_federation(fed, "isolated", relax=True)
    assert isolated.total_cost >= integrated.total_cost - 1e-6 * abs(integrated.total_cost)


def test_a_member_that_fails_at_one_proposal_is_replaced_by_its_integrated_clearing(example_federation, monkeypatch):
    from tdmarket.errors import SolverError
    from tdmarket.federation import platform

    real = platform.evaluate_member
    calls = []

    def flaky(fed, m, flows, scheme, options):
        calls.append(scheme)
        if scheme != "common" and m == 1 and calls.count(scheme) == 4:  # the south, first platform round
            raise SolverError("clearing failed: a DSO solve was not accepted")
        return real(fed, m, flows, scheme, options)

    monkeypatch.setattr(platform, "evaluate_member", flaky)
    res = clear_federation(example_federation, "dso-unaware", relax=True)
    assert [f["member"] for f in res.summary["member_fallbacks"]] == ["south"]
    assert "replaced by common" in res.summary["certificate"]["warnings"][-1]
    assert "common" in calls and res.summary["certificate"]["stopped_by"] == "relative_gap"


def test_hierarchical_platform_builds_each_dsos_curves_once(example_federation, monkeypatch):
    """A member's DSO costs do not depend on the flows (they only move fixed injections at its transmission
    border nodes): its DSO agents and curves are kept for the whole platform run (one curve request per DSO, was
    one per DSO and platform round), and only the TSO's cut exchange runs again every round."""
    from tdmarket.operators.agents import DSO

    built = []
    real = DSO.curve

    def counted(self, *args, **kwargs):
        built.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DSO, "curve", counted)
    res = clear_federation(example_federation, "hierarchical", relax=True, executor="inline")
    n_dsos = sum(inst.n_areas - 1 for inst in example_federation.instances)
    assert len(built) == n_dsos == 6
    s = res.summary
    assert s["member_evaluations"] >= 2 * (s["certificate"]["rounds"] + 1)  # both members, seed and every round
    for name, inst in zip(example_federation.members, example_federation.instances):
        session = s["member_sessions"][name]
        assert session["curve_requests"] == inst.n_areas - 1
        assert session["tso_exchanges"] == s["member_evaluations"] // 2
        assert res.members[name].summary["session"] == session
        # the member's messages: curves once, the cut rounds of every exchange, one dispatch
        kinds = [m["kind"] for m in res.members[name].messages]
        assert kinds.count("CurveOffer") == inst.n_areas - 1 and kinds.count("DispatchReport") == inst.n_areas - 1


@pytest.mark.slow
def test_hierarchical_member_at_the_final_flows_is_a_fresh_hierarchical_clearing(
    example_federation, example_federation_hierarchical
):
    """Each member's published result (its session's TSO exchange at the final flows, its DSOs dispatched then)
    is the hierarchical clearing of that member at those flows: same cost within the certified gaps, and the
    same tables and summary as `tdmarket.clear` gives."""
    res = example_federation_hierarchical
    for name, member in res.members.items():
        fresh = tdmarket.clear(
            res.member_instances[name], scheme="hierarchical", incentives=False, relax=True, executor="inline"
        )
        gaps = [r.summary["certificate"]["dispatched_gap"] for r in (member, fresh)]
        assert all(g is not None and g <= 1e-4 for g in gaps)
        tol = (max(gaps) + 1e-7) * max(1.0, abs(fresh.total_cost))
        assert member.total_cost == pytest.approx(fresh.total_cost, abs=tol)
        assert set(member.tables) == set(fresh.tables)
        for key, table in fresh.tables.items():
            assert list(member.tables[key].columns) == list(table.columns), key
            assert len(member.tables[key]) == len(table), key
        assert set(fresh.summary) | {"session"} == set(member.summary)
        assert member.summary["certificate"]["certified"] and member.summary["slack"]["p_mw"] < 1e-3
        # the member's own prices at the final flows are published next to the platform's
        mp = res.member_prices[res.member_prices.member == name]
        buses = member.tables["buses"].drop_duplicates(["node", "period"]).set_index(["node", "period"])
        mine = buses.loc[list(zip(mp.node, mp.period)), "price_p_eur_mwh"].to_numpy()
        np.testing.assert_allclose(mp.member_clearing_price_eur_mwh.to_numpy(), mine)


def test_a_hierarchical_session_changes_only_transmission_injections(builtin):
    from tdmarket.api import scheme_context
    from tdmarket.schemes.hierarchical import HierarchicalSession

    session = HierarchicalSession(
        builtin, scheme_context(builtin, "hierarchical", {"relax": True, "executor": "inline"})
    )
    try:
        d_bus = int(np.flatnonzero(builtin.buses.area > 0)[0])
        p = builtin.p_inj.copy()
        p[d_bus] += 1.0
        with pytest.raises(InputError, match="only fixed injections at transmission buses"):
            session.exchange_at(replace(builtin, p_inj=p))
    finally:
        session.close()


def test_a_hierarchical_session_moves_its_master_to_new_injections_instead_of_rebuilding_it(builtin):
    """A platform round changes only fixed injections at the member's transmission nodes, i.e. the right-hand
    sides of its balance rows: the session keeps the TSO's master (its cuts and basis) and moves those rows, and
    the exchange there has the value of a fresh session's; a clearing that differs in anything else (an order's
    price) is not rebased onto it."""
    from tdmarket.api import scheme_context
    from tdmarket.operators.tso import TSO
    from tdmarket.schemes.hierarchical import HierarchicalSession

    ctx = {"relax": True, "executor": "inline"}
    t_bus = int(np.flatnonzero(builtin.buses.area == 0)[0])
    p = builtin.p_inj.copy()
    p[t_bus] += 4.0
    moved = replace(builtin, p_inj=p)
    session = HierarchicalSession(builtin, scheme_context(builtin, "hierarchical", ctx))
    fresh = HierarchicalSession(moved, scheme_context(moved, "hierarchical", ctx))
    try:
        first = session.exchange_at()
        second = session.exchange_at(moved)
        assert second.master is first.master
        cp = second.master.context[0]
        rows = cp.prog.rows["balance_p"].slice
        rhs = cp.prog.row_lo[rows].reshape(-1, builtin.n_periods)[list(cp.balance.p_bus).index(t_bus)]
        np.testing.assert_allclose(rhs, -p[t_bus])
        ref = fresh.exchange_at()
        gap = max(second.outcome.certified_gap, ref.outcome.certified_gap) + 1e-7
        assert second.cost_eur == pytest.approx(ref.cost_eur, abs=gap * max(1.0, abs(ref.cost_eur)))
        assert second.cost_eur != pytest.approx(first.cost_eur, abs=1e-3)  # the injection moved the clearing
        res, ref_res = session.result(second), fresh.result(ref)
        assert res.total_cost == pytest.approx(ref_res.total_cost, abs=gap * max(1.0, abs(ref_res.total_cost)))
        # a platform may publish an earlier point: the master goes back to that point's injections first
        session.result(first)
        cp = first.master.context[0]
        rhs = cp.prog.row_lo[rows].reshape(-1, builtin.n_periods)[list(cp.balance.p_bus).index(t_bus)]
        np.testing.assert_allclose(rhs, -builtin.p_inj[t_bus])

        sub = moved.agent_data(0)
        segments = replace(sub.orders.segments, price=sub.orders.segments.price + 1.0)
        dearer = replace(sub, orders=replace(sub.orders, segments=segments))
        context = second.master.context
        assert not TSO(dearer, session.run.opts).rebase_master(second.master)
        assert second.master.context is context
    finally:
        session.close()
        fresh.close()


def test_hierarchical_platform_with_binaries_stops_on_its_gap(example_federation):
    """With binaries a member's cut keeps its cost as value (docs/model.md §12.2): its relaxed cut model lies far
    below a mixed-integer member's cost, and cuts valued at it kept the example federation's platform from
    closing its gap (59 rounds instead of 3)."""
    res = clear_federation(example_federation, "hierarchical", executor="inline")
    cert = res.summary["certificate"]
    assert cert["stopped_by"] == "relative_gap"
    assert cert["rounds"] <= 10
