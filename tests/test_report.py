"""The HTML report of `tdmarket compare` (tdmarket/reporting/report.py), rendered in a real headless Chromium.

The browser test needs Chromium from the OS packages (`.ci/run` installs it) and playwright-python (test
extra; it drives the system Chromium, no browser download).  It is skipped, with the reason, only when either
is missing outside CI; with `CI` set it fails instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tdmarket.examples import builtin_path
from tdmarket.reporting.compare import Comparison, add_gaps, run_comparison
from tdmarket.reporting.feeder import feeder_layout
from tdmarket.reporting.report import (
    SECTIONS,
    Section,
    add_section,
    build_sections,
    recovery_section,
    render_html,
    supply_steps,
    violations_section,
    write_report,
)

# the figures the built-in example's full comparison must show (section anchors)
FIGURES = ("cost", "violations", "curves", "interfaces", "prices", "settlement", "convergence", "feeder", "uplift")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def need(condition: bool, reason: str) -> None:
    """Skip with `reason` unless in CI, where a missing browser is a failure of the set-up."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run must install it)")
    pytest.skip(reason)


# enough schemes for every figure: curves and convergence (hierarchical), an overload (centralized-as-market),
# a cost on its own axis (no-coordination); the other two are drawn like these (tests/test_schemes.py runs all)
SCHEMES = ("common", "hierarchical", "centralized-as-market", "no-coordination")


@pytest.fixture(scope="module")
def comparison(builtin, tmp_path_factory):
    """The built-in example compared with the AC check."""
    pytest.importorskip("pandapower")
    pytest.importorskip("plotly")
    out = tmp_path_factory.mktemp("compare") / "out"
    return run_comparison(builtin, SCHEMES, executor="inline", out=out)


@pytest.fixture(scope="module")
def report(comparison, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(comparison, path)
    return path


def test_report_is_self_contained_and_has_every_figure(report):
    text = report.read_text(encoding="utf-8")
    for anchor in FIGURES:
        assert f'id="figure-{anchor}"' in text, anchor
    # plotly.js inlined once, no script loaded from elsewhere (the browser test checks that nothing is fetched)
    assert text.count("<script type='text/javascript'>") == 1
    assert "<script src=" not in text and 'src="http' not in text
    assert "1,589.75" in text  # the cost of common, formatted with units in the header
    assert "total cost (€)" in text and "gap to common (€)" in text


def test_report_renders_in_headless_chromium(report, tmp_path):
    """Every figure is drawn (a plotly main SVG with traces in each figure div), no script error, no network."""
    chromium = find_chromium()
    need(chromium is not None, "no Chromium found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright-python not installed (pip install 'tdmarket[test]')")
    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
            page.on("request", lambda req: requests.append(req.url) if not req.url.startswith("file:") else None)
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))",
                timeout=20_000,
            )
            drawn = page.evaluate(
                """() => Object.fromEntries([...document.querySelectorAll('.plotly-graph-div')].map(d => [
                    d.id,
                    {svgs: d.querySelectorAll('svg.main-svg').length,
                     traces: d.querySelectorAll('g.trace, g.boxlayer path.box').length,
                     width: d.getBoundingClientRect().width}]))"""
            )
            menu = page.locator("#figure-feeder .updatemenu-container").count()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requests == []
    assert sorted(drawn) == sorted(f"figure-{a}" for a in FIGURES)
    for div, info in drawn.items():
        assert info["svgs"] >= 1 and info["traces"] >= 1 and info["width"] > 300, (div, info)
    assert menu == 1  # the feeder diagram's scheme menu


def test_sections_are_a_list_a_new_one_is_one_function(comparison):
    made = []

    def uplift_table(cmp):
        made.append(cmp.instance)
        return Section("Uplift", "<p>uplift table</p>", anchor="uplift")

    add_section(uplift_table)
    try:
        sections = build_sections(comparison)
        titles = [s.title for s in sections]
        assert titles.index("Uplift") == len(titles) - 2  # just before the provenance
        assert made == ["builtin"]
        assert "<p>uplift table</p>" in render_html(comparison, sections)
    finally:
        SECTIONS.remove(uplift_table)


def test_a_failing_section_becomes_a_note_not_a_failed_report(comparison):
    def broken(cmp):
        raise ValueError("no data for this")

    sections = build_sections(comparison, makers=[broken])
    assert len(sections) == 1 and "not drawn: no data for this" in sections[0].html


def test_violations_without_any_is_a_table_not_an_empty_plot(comparison):
    rows = comparison.rows.copy()
    for c in ("ac_violations", "ac_thermal_violations", "ac_voltage_violations"):
        rows[c] = 0
    quiet = Comparison(instance="x", rows=rows, results=comparison.results, ac={}, network=comparison.network)
    section = violations_section(quiet)
    assert section.figure is None
    assert "No thermal or voltage violation" in section.html and "<table" in section.html
    assert violations_section(comparison).figure is not None  # centralized-as-market overloads line 22


def test_recovery_section_only_when_the_recovery_ran(comparison):
    """Violations before/after the AC recovery, its cost and the total with it, per scheme."""
    assert recovery_section(comparison) is None  # this comparison ran no recovery
    rows = comparison.rows.copy()
    rows["ac_violations_after"] = 0
    rows["recovery_cost_eur"] = np.where(rows.scheme == "centralized-as-market", 12.5, 0.0)
    rows["total_cost_with_recovery_eur"] = rows.total_cost_eur + rows.recovery_cost_eur
    recovered = Comparison(instance="x", rows=rows, results=comparison.results, ac={}, network=comparison.network)
    section = recovery_section(recovered)
    assert section is not None and section.anchor == "recovery"
    assert "centralized-as-market" in section.html and "+12.50" in section.html and "1,574.94" in section.html


def test_cost_gap_is_relative_to_common_and_negative_costs_work(comparison):
    """The gap is cost − cost(common) whatever the sign of the costs; the percentage only where meaningful."""
    rows = comparison.rows[["scheme", "total_cost_eur"]].copy()
    rows["total_cost_eur"] -= 10_000.0  # every cost negative
    frame = add_gaps(rows.copy(), "common")
    gap = dict(zip(frame.scheme, frame.gap_to_common_eur))
    orig = dict(zip(comparison.rows.scheme, comparison.rows.gap_to_common_eur))
    for scheme in gap:
        assert gap[scheme] == pytest.approx(orig[scheme], abs=1e-6)
    rel = dict(zip(frame.scheme, frame.gap_to_common))
    assert rel["common"] == 0.0
    assert rel["no-coordination"] == pytest.approx(gap["no-coordination"] / abs(-10_000 + 1589.749), rel=1e-6)
    # a base of about zero: only the € gap
    tiny = add_gaps(pd.DataFrame({"scheme": ["common", "b"], "total_cost_eur": [0.4, 5000.0]}), "common")
    assert np.isnan(tiny.gap_to_common.iloc[1]) and tiny.gap_to_common_eur.iloc[1] == pytest.approx(4999.6)


def test_supply_steps_are_marginal_prices_between_breakpoints():
    x, price = supply_steps([-2.0, 0.0, 1.0, 3.0], [0.0, 20.0, 45.0, 145.0], period_hours=1.0)
    np.testing.assert_allclose(x, [-2, 0, 1, 3])
    np.testing.assert_allclose(price, [10.0, 25.0, 50.0, 50.0])
    _, half = supply_steps([0.0, 2.0], [0.0, 20.0], period_hours=0.5)
    np.testing.assert_allclose(half, [20.0, 20.0])  # €/MWh over half-hour periods


def test_feeder_layout_is_a_tree_drawn_by_depth(builtin):
    layout = feeder_layout(builtin, builtin.areas.name.index("DSO-201"))
    assert list(layout.bus_ids) == [102, 201, 202, 203, 204, 205, 206]
    assert layout.depth[0] == 0 and layout.edge_ids[0] == 11  # the interface first, the T bus on top
    # every branch goes one level down; parents sit above the mean of their children
    np.testing.assert_array_equal(layout.depth[layout.edge_to], layout.depth[layout.edge_from] + 1)
    assert len(layout.edge_ids) == layout.n_buses - 1
    x = dict(zip(layout.bus_ids, layout.x))
    assert x[202] == pytest.approx((x[203] + x[205]) / 2) and x[203] != x[205]


def test_report_without_the_hierarchical_scheme_leaves_its_sections_out(comparison, tmp_path):
    keep = ["common", "no-coordination"]
    part = Comparison(
        instance="builtin",
        rows=comparison.rows[comparison.rows.scheme.isin(keep)].reset_index(drop=True),
        results={s: comparison.results[s] for s in keep},
        ac={s: comparison.ac[s] for s in keep},
        ac_lines={s: comparison.ac_lines[s] for s in keep},
        network=comparison.network,
    )
    anchors = [s.anchor for s in build_sections(part)]
    assert "curves" not in anchors and "convergence" not in anchors
    assert {"summary", "cost", "prices", "settlement", "feeder", "provenance"} <= set(anchors)
    write_report(part, tmp_path / "r.html")
    assert (tmp_path / "r.html").stat().st_size > 0


def test_builtin_path_is_the_compared_instance(comparison):
    assert comparison.provenance["instance"]["source"] == str(builtin_path())
