"""All coordination schemes on the built-in example (docs/model.md §7–§9) and `tdmarket compare`."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import tdmarket
from tdmarket.cli import main
from tdmarket.examples import builtin_path
from tdmarket.reporting.ac_check import ac_check
from tdmarket.schemes.centralized_as_market import collapse_distribution

SCHEMES = ("common", "hierarchical", "centralized-as-market", "local-as-market", "shared-balancing", "no-coordination")


@pytest.fixture(scope="module")
def inst():
    return tdmarket.load(builtin_path())


@pytest.fixture(scope="module")
def results(inst):
    # a tight certified gap: the interface prices then fit the DSOs' marginal costs to cents (the default 1e-4
    # relative gap leaves up to a few cents per MWh of mismatch)
    return {s: tdmarket.clear(inst, scheme=s, executor="inline", gap=1e-7) for s in SCHEMES}


def test_cost_pattern_common_hierarchical_others(results):
    """common <= hierarchical (= common within the cut tolerance) <= local / shared <= no-coordination."""
    cost = {s: r.total_cost for s, r in results.items()}
    assert cost["common"] <= cost["hierarchical"] + 1e-5  # within the solvers' tolerance (2.6e-6 € measured)
    assert cost["hierarchical"] == pytest.approx(cost["common"], rel=1e-5)
    assert cost["hierarchical"] <= cost["local-as-market"] + 1e-3
    assert cost["common"] <= cost["shared-balancing"] - 100.0  # holding the exchange costs > 100 € here
    assert cost["shared-balancing"] < cost["no-coordination"]
    # with the exchange held at 0 every area covers its own net position; they cannot without slack here
    assert results["no-coordination"].summary["slack"]["p_mw"] > 1.0
    assert results["shared-balancing"].summary["slack"]["p_mw"] < 1e-6


def test_centralized_as_market_is_cheaper_but_overloads_the_feeder(inst, results):
    """The TSO ignores the D grid: it buys the cheap orders behind line 22 (3 MVA), which the AC power flow
    of the dispatch then overloads; the integrated clearing keeps line 22 at its rating."""
    cam, common = results["centralized-as-market"], results["common"]
    assert cam.total_cost < common.total_cost - 10.0
    table, summary = ac_check(inst, cam.tables)
    assert summary["thermal_violations"] >= 1 and summary["worst_loading"] > 1.5
    _, ok = ac_check(inst, common.tables)
    assert ok["total_violations"] == 0 and ok["worst_loading"] <= 1 + 1e-5


def test_collapsed_instance_keeps_orders_and_net_injections(inst):
    col = collapse_distribution(inst)
    assert not col.buses.is_dist.any() and len(col.buses) == 6
    np.testing.assert_allclose(col.p_inj.sum(axis=0), inst.p_inj.sum(axis=0))
    assert len(col.orders.segments) == len(inst.orders.segments)
    host = {201: 102, 301: 104, 401: 105}
    moved = col.buses.id[col.orders.bids.bus[inst.buses.is_dist[inst.orders.bids.bus]]]
    assert set(moved) <= set(host.values())


def test_shared_balancing_holds_the_base_exchange(results):
    """The exchange is the DSO-announced base case x^0 (orders at zero), and no interface is settled."""
    res = results["shared-balancing"]
    base = {
        json.loads(m["message"])["from"]: json.loads(m["message"])["payload"]["export_mw"]
        for m in res.messages
        if m["kind"] == "Schedule" and m["stage"] == "base-exchange"
    }
    assert set(base) == {"DSO-201", "DSO-301", "DSO-401"}
    iface = res.tables["interfaces"]
    for area, x0 in base.items():
        np.testing.assert_allclose(iface.loc[iface.area == area, "export_mw"], x0, atol=1e-7)
    assert res.summary["settlement"]["interface_settlement"] is False
    noco = results["no-coordination"].tables["interfaces"]
    np.testing.assert_allclose(noco.export_mw, 0.0, atol=1e-9)


def test_every_scheme_settles_to_zero_and_prices_fit_together(results):
    for scheme, res in results.items():
        st = res.summary["settlement"]
        assert st["zero_sum_ok"], scheme
        assert abs(st["zero_sum_residual_eur"]) <= 1e-4, scheme
        assert res.summary["incentives"]["uplift_eur"] >= 0
    # hierarchical: each DSO's marginal cost of export equals the interface price it was paid
    iface = results["hierarchical"].tables["interfaces"]
    assert (iface.price_mismatch_eur_mwh <= 0.01).all()
    ms_h = results["hierarchical"].summary["settlement"]["merchandising_surplus_eur"]
    ms_c = results["common"].summary["settlement"]["merchandising_surplus_eur"]
    for op in ms_c:
        assert ms_h[op] == pytest.approx(ms_c[op], abs=0.05)


def test_compare_cli_writes_report_and_json(tmp_path, capsys):
    report = tmp_path / "out" / "report.html"
    rc = main(["compare", "--example", "--executor", "inline", "--quiet", "--report", str(report), "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["scheme"]: r for r in data["rows"]}
    assert set(rows) == set(SCHEMES)
    assert rows["common"]["gap_to_common"] == 0.0
    assert rows["centralized-as-market"]["ac_violations"] >= 1 and rows["common"]["ac_violations"] == 0
    assert rows["hierarchical"]["messages"] > 0 and rows["hierarchical"]["bytes"] > 0
    assert rows["common"]["gap_to_common_eur"] == 0.0
    assert data["provenance"]["instance"]["input_sha256"] and data["provenance"]["solvers"]["highspy"]
    text = report.read_text()
    figures = re.findall(r'id="figure-([a-z]+)"', text)
    assert set(figures) == {
        "cost",
        "violations",
        "curves",
        "interfaces",
        "prices",
        "settlement",
        "convergence",
        "feeder",
        "uplift",  # uplift by cause (docs/model.md §8): the example has indivisibility uplift
    }
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]  # nothing half-written left over


def test_compare_rejects_unknown_scheme(capsys):
    rc = main(["compare", "--example", "--schemes", "common,bogus", "--quiet"])
    assert rc == 2
    assert "bogus" in capsys.readouterr().err


def test_sub_dsos_are_merged_for_held_exchange_schemes(tmp_path):
    folder = tmp_path / "case"
    shutil.copytree(builtin_path(), folder)
    (folder / "SubAreas.csv").write_text("Edge,Area\n22,DSO-203\n")
    three = tdmarket.load(folder)
    flat = three.flatten_areas()
    assert flat.areas.name == ["TSO", "DSO-201", "DSO-301", "DSO-401"]
    assert set(flat.buses.id[flat.buses.area == 1]) == {201, 202, 203, 204, 205, 206}
    res = tdmarket.clear(three, scheme="shared-balancing", executor="inline", relax=True)
    assert set(res.tables["interfaces"].area) == {"DSO-201", "DSO-301", "DSO-401"}
