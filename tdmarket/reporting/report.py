"""The HTML report of `tdmarket compare`: one self-contained page a TSO analyst can put on a slide.

The report is a list of `Section`s (a title, some HTML, an optional plotly figure), each made by one function
of a `Comparison`; `SECTIONS` lists them in page order and `add_section` appends one (a later feature adds its
section with one function).  A function returns None when its section does not apply (e.g. no hierarchical
scheme compared).  Figures are interactive plotly charts; plotly.js is inlined once, so the page needs no
network.  Without plotly (`pip install 'tdmarket[report]'`) the tables are written and the figures skipped
with a note.

Sections: summary table; cost as gap to `common` (`no-coordination` on its own axis); AC violations split
thermal / voltage with the worst values (a table when there are none); residual supply curves as price–quantity
steps with the cleared point; interface exchange per DSO and scheme; prices T vs D per scheme; settlement per
actor type; cut-exchange convergence (lower and upper bound per round); a single-line diagram of one feeder
coloured by AC loading and DLMP; provenance.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .compare import Comparison
from .market_checks import (
    ReportSection,
    adequacy_section,
    defined_prices_section,
    uplift_section,
    verification_section,
)
from .numbers import fmt, fmt_eur, fmt_percent

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

log = logging.getLogger(__name__)

OWN_AXIS_SCHEMES = ("no-coordination",)  # costs orders of magnitude above the others: drawn on their own axis
SCHEME_COLOURS = ("#1f4e79", "#2e86c1", "#c0392b", "#8e44ad", "#d68910", "#7f8c8d", "#117a65", "#a04000")
T_COLOUR, D_COLOUR = "#1f4e79", "#d35400"
ACTOR_TYPES = {
    "bsp_t": "BSPs at T",
    "bsp_d": "BSPs at D",
    "brp": "BRPs",
    "slack": "slack",
    "tso": "TSO",
    "dso": "DSOs",
}
FIGURE_CONFIG = {"displaylogo": False, "responsive": True}
FEEDER_LABELS_UP_TO = 20  # buses: larger feeders label only loaded branches (hover shows every value)


@dataclass
class Section:
    """One part of the report: a title, HTML (text, tables) and optionally a plotly figure below it."""

    title: str
    html: str = ""
    figure: Figure | None = None
    anchor: str = ""


SectionMaker = Callable[[Comparison], "Section | None"]


def _plotly():
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return None
    return go, make_subplots


def scheme_colours(cmp: Comparison) -> dict[str, str]:
    return {s: SCHEME_COLOURS[i % len(SCHEME_COLOURS)] for i, s in enumerate(cmp.rows.get("scheme", []))}


def _table(header: list[str], rows: list[list[str]], *, first_left: bool = True, cls: str = "num") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=l' if first_left and i == 0 else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _value(row: pd.Series, column: str):
    v = row.get(column, np.nan)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _layout(fig, title: str, height: int = 380) -> None:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 15}},
        height=height,
        margin={"l": 70, "r": 30, "t": 70, "b": 60},
        template="plotly_white",
        font={"family": "Helvetica, Arial, sans-serif", "size": 12},
        legend={"orientation": "h", "y": -0.18},
    )


# ------------------------------------------------------------------------------------------------ sections
def summary_section(cmp: Comparison) -> Section:
    """The comparison table: units in the headers, solver noise as 0, relative gaps only where meaningful."""
    header = [
        "scheme",
        "total cost (€)",
        "gap to common (€)",
        "gap (%)",
        "slack (MW)",
        "thermal violations",
        "voltage violations",
        "worst loading (%)",
        "AC voltage (p.u.)",
        "uplift (€)",
        "|Δx| interface (MW)",
        "wall time (s)",
        "messages",
        "data (kB)",
    ]
    rows = []
    for _, r in cmp.rows.iterrows():
        if isinstance(r.get("error"), str):
            rows.append([html.escape(str(r["scheme"])), f"failed: {html.escape(r['error'])}"] + [""] * 12)
            continue
        vmin, vmax = _value(r, "ac_v_min_pu"), _value(r, "ac_v_max_pu")
        vrange = "-" if pd.isna(vmin) else f"{vmin:.3f}–{vmax:.3f}"
        loaded = " <span class=tag>loaded</span>" if r["scheme"] in cmp.loaded else ""
        rows.append(
            [
                html.escape(str(r["scheme"])) + loaded,
                fmt_eur(_value(r, "total_cost_eur")),
                fmt_eur(_value(r, "gap_to_common_eur"), sign=True),
                fmt_percent(_value(r, "gap_to_common")),
                fmt(_value(r, "slack_mw"), "MW"),
                fmt(_value(r, "ac_thermal_violations"), "count"),
                fmt(_value(r, "ac_voltage_violations"), "count"),
                fmt(100 * _value(r, "ac_worst_loading"), "", 3) if "ac_worst_loading" in r else "-",
                vrange,
                fmt_eur(_value(r, "uplift_eur")),
                fmt(_value(r, "interface_deviation_mw"), "MW", 3),
                fmt(_value(r, "wall_s"), "s", 3),
                fmt(_value(r, "messages"), "count"),
                fmt(_value(r, "bytes") / 1000.0, "", 3) if not pd.isna(_value(r, "bytes")) else "-",
            ]
        )
    text = (
        "<p>Total cost = market cost + penalised slack (κ €/MWh of unserved balance). The gap is measured "
        "against the integrated clearing <code>common</code>; a percentage is given only where the base is "
        "not about zero on the scale of the scheme's cost (values below solver tolerance are printed as 0). AC "
        "figures come from a Newton–Raphson power flow of every distribution area on the dispatched injections; "
        "|Δx| is the largest deviation of the AC interface exchange from the cleared one.</p>"
    )
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in cmp.notes)
    return Section("Summary", text + _table(header, rows) + notes, anchor="summary")


def recovery_section(cmp: Comparison) -> Section | None:
    """AC violations before and after the AC recovery (docs/model.md §5(h)), its cost and the total including it;
    only when `compare` ran the recovery."""
    rows_in = cmp.rows
    if not len(rows_in) or "ac_violations_after" not in rows_in:
        return None
    header = [
        "scheme",
        "AC violations before",
        "AC violations after recovery",
        "recovery cost (€)",
        "total cost (€)",
        "total with recovery (€)",
    ]
    rows = []
    for _, r in rows_in.iterrows():
        if isinstance(r.get("error"), str):
            continue
        rows.append(
            [
                html.escape(str(r["scheme"])),
                fmt(_value(r, "ac_violations"), "count"),
                fmt(_value(r, "ac_violations_after"), "count"),
                fmt_eur(_value(r, "recovery_cost_eur"), sign=True),
                fmt_eur(_value(r, "total_cost_eur")),
                fmt_eur(_value(r, "total_cost_with_recovery_eur")),
            ]
        )
    text = (
        "<p>Every distribution area whose dispatch the AC power flow finds not deliverable (a violation, no "
        "convergence, or an interface deviation) is re-dispatched with an exact AC program, its binaries and "
        "exported power held; the recovered point is checked by the same power flow. The recovery cost is the "
        "change of the area's clearing objective (€).</p>"
    )
    return Section("AC recovery: system security", text + _table(header, rows), anchor="recovery")


def cost_section(cmp: Comparison) -> Section | None:
    """Cost per scheme as gap to `common` (€); `no-coordination` on its own axis."""
    plot = _plotly()
    rows = cmp.rows[cmp.rows.get("total_cost_eur", pd.Series(dtype=float)).notna()] if len(cmp.rows) else cmp.rows
    if plot is None or "gap_to_common_eur" not in rows or not len(rows):
        return None
    go, make_subplots = plot
    colours = scheme_colours(cmp)
    own = rows[rows.scheme.isin(OWN_AXIS_SCHEMES)]
    main = rows[~rows.scheme.isin(OWN_AXIS_SCHEMES)]
    panels = [(main, "coordinated schemes")] + ([(own, "no coordination (own axis)")] if len(own) else [])
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        column_widths=[0.78, 0.22][: len(panels)] if len(panels) == 2 else None,
        subplot_titles=[p[1] for p in panels],
        horizontal_spacing=0.12,
    )
    for col, (frame, _) in enumerate(panels, start=1):
        labels = [
            f"{fmt_eur(g, sign=True)} €" + ("" if pd.isna(p) else f"<br>{fmt_percent(p)}")
            for g, p in zip(frame.gap_to_common_eur, frame.gap_to_common)
        ]
        fig.add_trace(
            go.Bar(
                x=list(frame.scheme),
                y=[0.0 if abs(g) < 0.005 else g for g in frame.gap_to_common_eur],
                marker_color=[colours[s] for s in frame.scheme],
                text=labels,
                textposition="outside",
                cliponaxis=False,
                customdata=np.c_[frame.total_cost_eur],
                hovertemplate="%{x}<br>gap %{y:,.2f} €<br>total cost %{customdata[0]:,.2f} €<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(title_text="gap to common (€)", zeroline=True, zerolinecolor="#444", row=1, col=col)
    _layout(fig, "Cost of each scheme above the integrated clearing (common)")
    fig.update_yaxes(rangemode="tozero")
    ref = cmp.reference
    ref_cost = float(rows.loc[rows.scheme == ref, "total_cost_eur"].iloc[0]) if ref in set(rows.scheme) else None
    text = (
        f"<p>Bars: total cost minus the cost of <code>{ref}</code> ({fmt_eur(ref_cost)} €), so schemes cheaper "
        "than the integrated clearing (an infeasible dispatch, see violations) go below zero whatever the sign "
        "of the costs. <code>no-coordination</code> pays slack for every imbalance its areas cannot cover alone "
        "and is drawn on its own axis.</p>"
        if ref_cost is not None
        else "<p>No integrated clearing (common) in this comparison: no gaps.</p>"
    )
    return Section("Cost: gap to the integrated clearing", text, fig, anchor="cost")


def _worst_line(table: pd.DataFrame | None) -> str:
    if table is None or not len(table):
        return "-"
    ok = table[table["converged"].astype(bool)]
    if not len(ok):
        return "-"
    r = ok.loc[ok["max_loading"].idxmax()]
    return f"line {int(r['worst_line_edge'])} ({r['area']}, t={int(r['period'])})"


def _worst_voltage(table: pd.DataFrame | None) -> str:
    if table is None or not len(table):
        return "-"
    ok = table[table["converged"].astype(bool)]
    bad = ok[ok["n_voltage_violations"] > 0]
    if not len(bad):
        return "none"
    r = bad.loc[bad["max_voltage_excess_pu2"].idxmax()]
    return f"node {int(r['worst_voltage_node'])} ({r['area']}, t={int(r['period'])}): {r['max_voltage_excess_pu2']:.3g} p.u.²"


def violations_section(cmp: Comparison) -> Section | None:
    """AC violations after dispatch, thermal and voltage apart, with the worst values; a table if none."""
    rows = cmp.rows
    if "ac_violations" not in rows:
        return Section(
            "Distribution-grid violations after dispatch",
            "<p class=note>No AC check in this comparison (--no-ac, or pandapower not installed).</p>",
            anchor="violations",
        )
    checked = rows[rows["ac_violations"].notna()]
    header = [
        "scheme",
        "thermal",
        "worst loading (%)",
        "worst line",
        "voltage",
        "worst voltage excess",
        "not converged",
    ]
    table_rows = [
        [
            html.escape(str(r["scheme"])),
            fmt(_value(r, "ac_thermal_violations"), "count"),
            fmt(100 * _value(r, "ac_worst_loading"), "", 3),
            html.escape(_worst_line(cmp.ac.get(r["scheme"]))),
            fmt(_value(r, "ac_voltage_violations"), "count"),
            html.escape(_worst_voltage(cmp.ac.get(r["scheme"]))),
            fmt(_value(r, "ac_not_converged"), "count"),
        ]
        for _, r in checked.iterrows()
    ]
    total = int(checked["ac_violations"].sum())
    text = (
        "<p>Newton–Raphson power flow of every distribution area and period on each scheme's dispatch. Thermal: "
        "branches above 100 % of their rating; voltage: buses outside their limits (excess in p.u.² of the "
        "squared magnitude).</p>"
    )
    if total == 0:
        text += (
            "<p class=ok><strong>No thermal or voltage violation in any scheme.</strong> The worst loadings and "
            "voltages are in the table.</p>"
        )
        return Section(
            "Distribution-grid violations after dispatch", text + _table(header, table_rows), anchor="violations"
        )
    plot = _plotly()
    fig = None
    if plot is not None:
        go, make_subplots = plot
        fig = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=["violations (branches or buses × periods)", "worst branch loading (%)"],
            horizontal_spacing=0.12,
        )
        fig.add_trace(
            go.Bar(
                name="thermal", x=list(checked.scheme), y=list(checked.ac_thermal_violations), marker_color="#c0392b"
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                name="voltage", x=list(checked.scheme), y=list(checked.ac_voltage_violations), marker_color="#2e86c1"
            ),
            row=1,
            col=1,
        )
        loading = 100 * checked.ac_worst_loading
        fig.add_trace(
            go.Bar(
                name="worst loading",
                x=list(checked.scheme),
                y=list(loading),
                marker_color=["#c0392b" if v > 100 + 1e-3 else "#7f8c8d" for v in loading],
                text=[f"{v:.0f} %" for v in loading],
                textposition="outside",
                cliponaxis=False,
                showlegend=False,
            ),
            row=1,
            col=2,
        )
        fig.add_hline(y=100, line_dash="dash", line_color="#444", row=1, col=2)
        fig.update_yaxes(title_text="count", row=1, col=1)
        fig.update_yaxes(title_text="% of rating", rangemode="tozero", row=1, col=2)
        fig.update_layout(barmode="group")
        _layout(fig, "AC violations of each scheme's dispatch: thermal and voltage")
    return Section(
        "Distribution-grid violations after dispatch", text + _table(header, table_rows), fig, anchor="violations"
    )


def curve_offers(result) -> list[dict]:
    """The residual supply curves the top-level DSOs offered the TSO (CurveOffer messages)."""
    offers = []
    for m in result.messages or []:
        if m.get("kind") == "CurveOffer" and m.get("to") == "TSO":
            body = json.loads(m["message"]) if isinstance(m.get("message"), str) else m.get("message", {})
            offers.append({"area": body["from"], **body["payload"]})
    return offers


def supply_steps(xi_mw, cost_eur, period_hours: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Price–quantity steps of one period's curve: export breakpoints (MW) and the marginal price of each
    segment (€/MWh = Δcost / (Δx · hours)); the last price is repeated to close the step plot."""
    x, c = np.asarray(xi_mw, float), np.asarray(cost_eur, float)
    dx = np.diff(x)
    price = np.divide(np.diff(c), dx * period_hours, out=np.full(len(dx), np.nan), where=np.abs(dx) > 1e-9)
    return x, np.r_[price, price[-1:]] if len(price) else price


def supply_curve_section(cmp: Comparison) -> Section | None:
    """Residual supply curves of the largest DSOs as €/MWh vs MW steps, with the cleared exchange and price."""
    scheme = next((s for s in ("hierarchical", "local-as-market") if s in cmp.results), None)
    plot = _plotly()
    if scheme is None or plot is None:
        return None
    res = cmp.results[scheme]
    offers = curve_offers(res)
    if not offers:
        return None
    go, make_subplots = plot
    hours = float(((res.summary.get("provenance") or {}).get("options") or {}).get("period_hours", 1.0))
    kappa = float(((res.summary.get("provenance") or {}).get("options") or {}).get("slack_penalty", 1e4))
    span = {o["area"]: max(x[-1] - x[0] for x in o["xi_mw"]) for o in offers}
    largest = sorted(span, key=lambda a: (-span[a], a))[:4]
    iface = res.tables["interfaces"]
    fig = make_subplots(rows=1, cols=len(largest), subplot_titles=largest, horizontal_spacing=0.06)
    palette = ("#1f4e79", "#d35400", "#117a65", "#8e44ad", "#7f8c8d", "#a04000")
    visible_prices = []
    for col, area in enumerate(largest, start=1):
        offer = next(o for o in offers if o["area"] == area)
        for t, (xi, cost) in enumerate(zip(offer["xi_mw"], offer["cost_eur"])):
            period = offer["periods"][t]
            colour = palette[t % len(palette)]
            x, price = supply_steps(xi, cost, hours)
            visible_prices.extend(price[np.abs(price) < 0.5 * kappa].tolist())
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=price,
                    mode="lines",
                    line={"shape": "hv", "color": colour, "width": 2},
                    name=f"period {period}",
                    legendgroup=f"t{period}",
                    showlegend=col == 1,
                    hovertemplate="export %{x:.3f} MW<br>%{y:,.2f} €/MWh<extra>" + f"{area}, t={period}</extra>",
                ),
                row=1,
                col=col,
            )
            sel = iface[(iface.area == area) & (iface.period == period)]
            if len(sel) and "interface_price_eur_mwh" in sel:
                x_star, p_star = float(sel.export_mw.iloc[0]), float(sel.interface_price_eur_mwh.iloc[0])
                visible_prices.append(p_star)
                fig.add_trace(
                    go.Scatter(
                        x=[x_star],
                        y=[p_star],
                        mode="markers",
                        marker={"symbol": "circle-open", "size": 12, "color": colour, "line": {"width": 2.5}},
                        name="cleared point",
                        legendgroup="cleared",
                        showlegend=col == 1 and t == 0,
                        hovertemplate="cleared %{x:.3f} MW at %{y:,.2f} €/MWh<extra>" + f"{area}, t={period}</extra>",
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text="export to TSO (MW)", row=1, col=col)
    fig.update_yaxes(title_text="price (€/MWh)", row=1, col=1)
    if visible_prices:
        lo, hi = float(np.nanmin(visible_prices)), float(np.nanmax(visible_prices))
        pad = max(1.0, 0.08 * (hi - lo))
        fig.update_yaxes(range=[lo - pad, hi + pad])
    _layout(fig, f"Residual supply curves offered to the TSO ({scheme}), largest DSOs", height=400)
    text = (
        f"<p>Each DSO's cost of exporting x MW to the TSO, as offered in its curve (<code>{scheme}</code>): the "
        "step is the marginal price of each segment between breakpoints (€/MWh), export positive = the DSO "
        "supplies the TSO. Circles: the cleared exchange and interface price of each period. Steps at the "
        f"slack penalty (±{fmt(kappa, '', 3)} €/MWh, exchanges the DSO can serve only with slack) are off the "
        "axis.</p>"
    )
    return Section("Residual supply curves", text, fig, anchor="curves")


def interface_section(cmp: Comparison) -> Section | None:
    """Exchange per DSO (and period) for every scheme."""
    plot = _plotly()
    frames = []
    for scheme, res in cmp.results.items():
        iface = res.tables.get("interfaces")
        if iface is None or not len(iface) or "export_mw" not in iface:
            continue
        frames.append(iface[["area", "period", "export_mw"]].assign(scheme=scheme))
    if plot is None or not frames:
        return None
    go, _ = plot
    data = pd.concat(frames, ignore_index=True)
    data["area"] = data["area"].astype(str)
    colours = scheme_colours(cmp)
    areas = sorted(data.area.unique())
    periods = sorted(data.period.unique())
    per_period = len(areas) * len(periods) <= 60
    fig = go.Figure()
    for scheme, part in data.groupby("scheme", sort=False):
        if per_period:
            part = part.sort_values(["area", "period"])
            x = [list(part.area), [f"t={p}" for p in part.period]]
            y = part.export_mw.to_numpy()
        else:
            mean = part.groupby("area").export_mw.mean().reindex(areas)
            x, y = areas, mean.to_numpy()
        fig.add_trace(
            go.Bar(
                name=scheme,
                x=x,
                y=np.where(np.abs(y) < 1e-6, 0.0, y),
                marker_color=colours.get(scheme),
                hovertemplate="%{x}<br>%{y:.3f} MW<extra>" + scheme + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="export to parent (MW)", zeroline=True, zerolinecolor="#444")
    _layout(fig, "Interface exchange per DSO and scheme" + ("" if per_period else " (mean over periods)"), 400)
    text = (
        "<p>Active power each DSO area exports to its parent (MW; negative: the area imports), per "
        + ("period" if per_period else "area, averaged over the periods")
        + ". <code>shared-balancing</code> holds the DSO-announced base exchange, <code>no-coordination</code> "
        "holds 0.</p>"
    )
    return Section("Interface exchange", text, fig, anchor="interfaces")


def price_section(cmp: Comparison) -> Section | None:
    """Nodal prices at T (LMP) and D (DLMP), per scheme, as box plots on a robust axis."""
    plot = _plotly()
    parts = []
    for scheme, res in cmp.results.items():
        buses = res.tables.get("buses")
        if buses is None or "price_p_eur_mwh" not in buses:
            continue
        parts.append(buses[["kind", "price_p_eur_mwh"]].dropna().assign(scheme=scheme))
    if plot is None or not parts:
        return None
    go, _ = plot
    data = pd.concat(parts, ignore_index=True)
    fig = go.Figure()
    for kind, colour, label in (("T", T_COLOUR, "transmission (LMP)"), ("D", D_COLOUR, "distribution (DLMP)")):
        sel = data[data.kind == kind]
        if len(sel):
            fig.add_trace(
                go.Box(
                    x=list(sel.scheme),
                    y=sel.price_p_eur_mwh.to_numpy(),
                    name=label,
                    marker_color=colour,
                    boxpoints="outliers",
                    hovertemplate="%{y:,.2f} €/MWh<extra>" + label + "</extra>",
                )
            )
    values = data.price_p_eur_mwh.to_numpy()
    kappa = max(
        float(((r.summary.get("provenance") or {}).get("options") or {}).get("slack_penalty", 1e4))
        for r in cmp.results.values()
    )
    # the axis spans the bulk (5th to 95th percentile) of every coordinated scheme's T and D prices set by
    # orders, not by the slack penalty, so that a single outlier or no-coordination does not flatten the boxes
    regular = (np.abs(values) < 0.5 * kappa) & ~data.scheme.isin(OWN_AXIS_SCHEMES).to_numpy()
    basis = data[regular] if regular.any() else data
    spread = basis.groupby(["scheme", "kind"]).price_p_eur_mwh.quantile([0.05, 0.95]).unstack()
    lo, hi = float(spread[0.05].min()), float(spread[0.95].max())
    pad = max(1.0, 0.15 * (hi - lo))
    outside = int(((values < lo - pad) | (values > hi + pad)).sum())
    fig.update_layout(boxmode="group")
    fig.update_yaxes(title_text="price (€/MWh)", range=[lo - pad, hi + pad])
    _layout(fig, "Nodal prices per scheme: transmission vs distribution", 400)
    text = (
        "<p>Distribution of the published active-power prices over nodes and periods (€/MWh): locational "
        "marginal prices at T nodes and distribution LMPs at D nodes. "
        + (
            f"The axis spans the bulk of the coordinated schemes' prices; {outside} prices lie beyond it (e.g. "
            f"nodes priced at the slack penalty of {fmt(kappa, '', 3)} €/MWh where balance is met by slack): "
            "zoom out (double-click) or hover to see them."
            if outside
            else "Every price is on the axis."
        )
        + "</p>"
    )
    return Section("Prices: transmission vs distribution", text, fig, anchor="prices")


def settlement_section(cmp: Comparison) -> Section | None:
    """Net payment received per actor type and scheme (€); `no-coordination` on its own axis."""
    plot = _plotly()
    totals = {s: t for s, r in cmp.results.items() if (t := (r.summary.get("settlement") or {}).get("totals_eur"))}
    if plot is None or not totals:
        return None
    go, make_subplots = plot
    colours = scheme_colours(cmp)
    kinds = [k for k in ACTOR_TYPES if any(k in t for t in totals.values())]
    own = [s for s in totals if s in OWN_AXIS_SCHEMES]
    main = [s for s in totals if s not in OWN_AXIS_SCHEMES]
    panels = [(main, "coordinated schemes")] + ([(own, "no coordination (own axis)")] if own else [])
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        column_widths=[0.72, 0.28] if len(panels) == 2 else None,
        subplot_titles=[p[1] for p in panels],
        horizontal_spacing=0.1,
    )
    for col, (schemes, _) in enumerate(panels, start=1):
        for s in schemes:
            y = [float(totals[s].get(k) or 0.0) for k in kinds]
            fig.add_trace(
                go.Bar(
                    name=s,
                    x=[ACTOR_TYPES[k] for k in kinds],
                    y=[0.0 if abs(v) < 0.005 else v for v in y],
                    marker_color=colours.get(s),
                    hovertemplate="%{x}: %{y:,.2f} €<extra>" + s + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(title_text="net payment received (€)", zeroline=True, zerolinecolor="#444", row=1, col=col)
    fig.update_layout(barmode="group")
    _layout(fig, "Settlement per actor type (positive: receives)", 420)
    zero_sum = {s: (cmp.results[s].summary.get("settlement") or {}).get("zero_sum_ok") for s in totals}
    text = (
        "<p>Pay-as-clear settlement at each scheme's published prices, summed over actors of one type and all "
        "periods: BSPs are paid for activated orders, BRPs pay for their imbalance, the slack is the penalised "
        "unserved balance, TSO and DSOs keep their merchandising surplus and interface payments. The payments "
        "sum to zero in every scheme"
        + ("" if all(zero_sum.values()) else " except " + ", ".join(s for s, ok in zero_sum.items() if not ok))
        + ".</p>"
    )
    return Section("Settlement per actor type", text, fig, anchor="settlement")


def convergence_section(cmp: Comparison) -> Section | None:
    """Lower and upper bound of the cut exchange per round, and the gap (€, log axis)."""
    plot = _plotly()
    runs = {s: r.summary.get("iterations") for s, r in cmp.results.items() if r.summary.get("iterations")}
    if plot is None or not runs:
        return None
    go, make_subplots = plot
    colours = scheme_colours(cmp)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.08,
        subplot_titles=["bounds (€)", "gap UB − LB (€, log)"],
    )  # fmt: skip
    for scheme, history in runs.items():
        hist = pd.DataFrame(history)
        colour = colours.get(scheme)
        symbols = ["circle" if m == "lp" else "diamond" for m in hist.master]
        for column, dash, label in (("upper_bound", "solid", "UB"), ("lower_bound", "dot", "LB")):
            fig.add_trace(
                go.Scatter(
                    x=hist.iteration,
                    y=hist[column],
                    mode="lines+markers",
                    line={"color": colour, "dash": dash},
                    marker={"symbol": symbols, "size": 7},
                    name=f"{scheme} {label}",
                    hovertemplate="round %{x}<br>%{y:,.2f} €<extra>" + f"{scheme} {label}</extra>",
                ),
                row=1,
                col=1,
            )
        gap = hist.gap_eur.clip(lower=1e-6)
        fig.add_trace(
            go.Scatter(
                x=hist.iteration,
                y=gap,
                mode="lines+markers",
                line={"color": colour},
                marker={"symbol": symbols, "size": 7},
                name=f"{scheme} gap",
                hovertemplate="round %{x}<br>gap %{y:.3g} €<extra>" + scheme + "</extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_xaxes(
        title_text="cut-exchange round", dtick=1 if max(len(h) for h in runs.values()) <= 30 else None, row=2, col=1
    )
    _layout(fig, "Cut-exchange convergence: lower and upper bound per round", 480)
    lines = []
    for scheme in runs:
        ce = cmp.results[scheme].summary.get("certificate") or {}
        if ce:
            lines.append(
                f"<li><code>{html.escape(scheme)}</code>: {ce.get('rounds')} rounds, stopped by "
                f"{html.escape(str(ce.get('stopped_by')))} ({html.escape(str(ce.get('reason')))}); lower bound "
                f"{fmt_eur(ce.get('lower_bound_eur'))} €, certified gap of the dispatched point "
                f"{fmt_percent(ce.get('dispatched_gap'), sign=False)}</li>"
            )
    text = (
        "<p>The TSO's master problem gives a valid lower bound (LB) of the integrated cost every round; the DSOs' "
        "replies at the proposed exchanges give a feasible clearing, the best of which is the upper bound (UB). "
        "Circles: relaxed (LP) master rounds; diamonds: rounds with the TSO's binaries (mixed-integer).</p>"
        + (f"<ul>{''.join(lines)}</ul>" if lines else "")
    )
    return Section("Cut-exchange convergence", text, fig, anchor="convergence")


def _feeder_choice(cmp: Comparison) -> int | None:
    """The DSO area to draw: the one with the highest AC loading in any scheme, else the largest."""
    inst = cmp.network
    if inst is None or inst.n_areas < 2:
        return None
    names = list(inst.areas.name)
    top = [a for a in range(1, inst.n_areas) if (inst.buses.area == a).any()]
    if not top:
        return None
    worst: dict[str, float] = {}
    for table in cmp.ac.values():
        if len(table):
            for area, value in table.groupby("area")["max_loading"].max().items():
                worst[str(area)] = max(worst.get(str(area), 0.0), float(value))
    size = {a: int((inst.buses.area == a).sum()) for a in top}
    return max(top, key=lambda a: (round(worst.get(names[a], 0.0), 6), size[a], -a))


def _feeder_values(cmp: Comparison, layout, scheme: str) -> tuple[pd.DataFrame, str]:
    """Per-branch loading (per period) of a scheme on the feeder: from the comparison's AC power flow when it
    ran, else the clearing's own (SOCP) loading; returns the table and its source."""
    res = cmp.results[scheme]
    ac_lines = cmp.ac_lines.get(scheme)
    if ac_lines is not None and len(ac_lines):
        sel = ac_lines[ac_lines.edge.isin(layout.edge_ids)]
        if len(sel):
            return sel[["edge", "period", "loading"]], "AC power flow"
    lines = res.tables.get("lines")
    if lines is None or "loading" not in lines:
        return pd.DataFrame(columns=["edge", "period", "loading"]), "none"
    return lines.loc[lines.edge.isin(layout.edge_ids), ["edge", "period", "loading"]], "clearing (SOCP)"


def feeder_section(cmp: Comparison) -> Section | None:
    """Single-line diagram of one feeder: branches coloured by loading, buses by DLMP; one view per scheme."""
    plot = _plotly()
    area = _feeder_choice(cmp)
    if plot is None or area is None or not cmp.results:
        return None
    from plotly.colors import sample_colorscale

    from .feeder import feeder_layout

    go, _ = plot
    assert cmp.network is not None  # _feeder_choice found the area in it
    layout = feeder_layout(cmp.network, area)
    schemes = list(cmp.results)
    values = {s: _feeder_values(cmp, layout, s) for s in schemes}
    # the period where the feeder is most loaded in any scheme
    loads = pd.concat([v[0].assign(scheme=s) for s, v in values.items()], ignore_index=True)
    periods = list(cmp.network.periods)
    period = int(loads.loc[loads.loading.astype(float).idxmax(), "period"]) if len(loads) else int(periods[0])
    max_loading = max(1.0, float(loads.loading.max()) if len(loads) else 1.0)
    cmax = 100.0 * max(1.2, max_loading)
    scale = [
        [0.0, "#1a9850"],
        [0.5 / (cmax / 100), "#fee08b"],
        [min(1.0, 1.0 / (cmax / 100)), "#fc8d59"],
        [1.0, "#a50026"],
    ]
    x, y = layout.x, -layout.depth.astype(float)

    def edge_loading(scheme: str) -> np.ndarray:
        table = values[scheme][0]
        sel = table[table.period == period].drop_duplicates("edge").set_index("edge")["loading"]
        return 100.0 * sel.reindex(layout.edge_ids).to_numpy(dtype=float)

    def bus_prices(scheme: str) -> np.ndarray:
        buses = cmp.results[scheme].tables["buses"]
        sel = buses[buses.period == period].drop_duplicates("node").set_index("node")["price_p_eur_mwh"]
        return sel.reindex(layout.bus_ids).to_numpy(dtype=float)

    def colours_of(loading: np.ndarray) -> list[str]:
        frac = np.clip(np.nan_to_num(loading, nan=0.0) / cmax, 0.0, 1.0)
        out = sample_colorscale(scale, frac.tolist())
        return [c if not np.isnan(v) else "#bbbbbb" for c, v in zip(out, loading)]

    first = schemes[0]
    crowded = layout.n_buses > FEEDER_LABELS_UP_TO  # label only what matters; hover shows everything

    def edge_labels(loading: np.ndarray) -> list[str]:
        shown = ~np.isnan(loading) & ((loading >= 50.0) if crowded else True)
        return [f"{v:.0f}%" if ok else "" for v, ok in zip(loading, shown)]

    bus_labels = (
        [str(int(b)) for b in layout.bus_ids]
        if not crowded
        else [str(int(layout.bus_ids[0]))] + [""] * (layout.n_buses - 1)
    )
    fig = go.Figure()
    n_edges = len(layout.edge_ids)
    loading0 = edge_loading(first)
    for e in range(n_edges):
        a, b = layout.edge_from[e], layout.edge_to[e]
        fig.add_trace(
            go.Scatter(
                x=[x[a], x[b]],
                y=[y[a], y[b]],
                mode="lines",
                line={"color": colours_of(loading0[e : e + 1])[0], "width": 7},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    mid_x, mid_y = (x[layout.edge_from] + x[layout.edge_to]) / 2, (y[layout.edge_from] + y[layout.edge_to]) / 2

    def edge_text(loading: np.ndarray) -> list[str]:
        return [
            f"line {int(i)}: " + ("no value" if np.isnan(v) else f"{v:.1f} % of rating")
            for i, v in zip(layout.edge_ids, loading)
        ]

    fig.add_trace(
        go.Scatter(
            x=mid_x,
            y=mid_y,
            mode="markers+text",
            marker={
                "size": 12,
                "symbol": "square",
                "color": np.nan_to_num(loading0, nan=0.0),
                "colorscale": scale,
                "cmin": 0,
                "cmax": cmax,
                "colorbar": {"title": {"text": "loading (%)"}, "x": 1.02, "len": 0.9},
            },
            text=edge_labels(loading0),
            textposition="middle right",
            hovertext=edge_text(loading0),
            hoverinfo="text",
            name="branch loading",
        )
    )
    prices0 = bus_prices(first)
    finite = np.concatenate([bus_prices(s) for s in schemes])
    finite = finite[np.isfinite(finite)]
    pmin, pmax = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers+text",
            marker={
                "size": 20,
                "color": np.nan_to_num(prices0, nan=pmin),
                "colorscale": "Viridis",
                "cmin": pmin,
                "cmax": pmax if pmax > pmin else pmin + 1.0,
                "line": {"color": "#222", "width": 1},
                "symbol": ["square"] + ["circle"] * (layout.n_buses - 1),
                "colorbar": {"title": {"text": "DLMP (€/MWh)"}, "x": 1.14, "len": 0.9},
            },
            text=bus_labels,
            textposition="middle left",
            hovertext=[f"bus {int(b)}: {p:,.2f} €/MWh" for b, p in zip(layout.bus_ids, prices0)],
            hoverinfo="text",
            name="bus price",
        )
    )
    buttons = []
    for s in schemes:
        loading = edge_loading(s)
        prices = bus_prices(s)
        colours = colours_of(loading)
        buttons.append(
            {
                "label": s,
                "method": "restyle",
                "args": [
                    {
                        "line.color": colours + [None, None],
                        "marker.color": [None] * n_edges
                        + [np.nan_to_num(loading, nan=0.0).tolist(), np.nan_to_num(prices, nan=pmin).tolist()],
                        "text": [None] * n_edges + [edge_labels(loading), bus_labels],
                        "hovertext": [None] * n_edges
                        + [
                            edge_text(loading),
                            [f"bus {int(b)}: {p:,.2f} €/MWh" for b, p in zip(layout.bus_ids, prices)],
                        ],
                    },
                    list(range(n_edges + 2)),
                ],
            }
        )
    fig.update_layout(
        updatemenus=[
            {
                "buttons": buttons,
                "direction": "down",
                "x": 0.0,
                "xanchor": "left",
                "y": 1.12,
                "yanchor": "top",
                "showactive": True,
            }
        ],
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    _layout(
        fig,
        f"Feeder {layout.area}, period {period}: branch loading and DLMP",
        max(360, 90 * int(layout.depth.max() + 2)),
    )
    fig.update_layout(margin={"l": 40, "r": 160, "t": 110, "b": 30}, showlegend=False)
    source = {values[s][1] for s in schemes}
    text = (
        f"<p>Single-line diagram of <code>{html.escape(layout.area)}</code> ({layout.n_buses - 1} buses), the "
        f"feeder with the highest loading in this comparison, in period {period} (its most loaded period). The "
        f"square on top is the T bus it hangs from. Branches: loading in % of rating ({', '.join(sorted(source))}); "
        "buses: the published active-power price (€/MWh). The menu switches the scheme (shown first: "
        f"<code>{html.escape(first)}</code>)"
        + ("; on a feeder this size only loadings from 50 % are labelled, hover for the rest" if crowded else "")
        + ".</p>"
    )
    return Section(f"Feeder {layout.area}: single-line diagram", text, fig, anchor="feeder")


def provenance_section(cmp: Comparison) -> Section:
    """Versions, input checksum, options, time."""
    p = cmp.provenance or {}
    inst = p.get("instance") or {}
    items = [
        ("instance", f"{inst.get('name', cmp.instance)} ({inst.get('source', '')})"),
        ("input SHA-256", inst.get("input_sha256") or "-"),
        ("tdmarket", p.get("tdmarket", "-")),
        ("Python", p.get("python", "-")),
        ("solvers", ", ".join(f"{k} {v}" for k, v in (p.get("solvers") or {}).items())),
        ("options", ", ".join(f"{k}={v}" for k, v in (p.get("options") or {}).items())),
        ("AC check", "yes" if p.get("ac_check") else "no"),
        ("computed (UTC)", p.get("created_utc", "-")),
    ]
    if cmp.loaded:
        items.append(("loaded from a saved run", ", ".join(cmp.loaded)))
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td class=l>{html.escape(str(v))}</td></tr>" for k, v in items)
    return Section("Provenance", f"<table class=meta>{rows}</table>", anchor="provenance")


def _noise_free(value: float) -> str:
    """A table number with 6 significant digits and solver noise (|v| < 1e-6: € or €/MWh) printed as 0."""
    return "0" if abs(value) < 1e-6 else f"{value:.6g}"


def _market_check_maker(build: Callable[[Comparison], ReportSection], anchor: str) -> SectionMaker:
    """A market-check section (`market_checks`: defined prices, price verification, uplift by cause, revenue
    adequacy) as a report section."""

    def maker(cmp: Comparison) -> Section:
        ms = build(cmp)
        tables = "".join(t.to_html(index=False, float_format=_noise_free, border=0) for t in ms.tables if len(t))
        return Section(ms.title, f"<p>{html.escape(ms.text)}</p>{tables}", ms.figure, anchor=anchor)

    maker.__name__ = build.__name__
    return maker


SECTIONS: list[SectionMaker] = [
    summary_section,
    cost_section,
    violations_section,
    recovery_section,
    supply_curve_section,
    interface_section,
    price_section,
    settlement_section,
    convergence_section,
    feeder_section,
    _market_check_maker(defined_prices_section, "defined-prices"),
    _market_check_maker(verification_section, "price-verification"),
    _market_check_maker(uplift_section, "uplift"),
    _market_check_maker(adequacy_section, "revenue-adequacy"),
    provenance_section,
]


def add_section(maker: SectionMaker, *, before: SectionMaker | None = provenance_section) -> None:
    """Add a section to every report, by default just before the provenance."""
    if maker in SECTIONS:
        return
    SECTIONS.insert(SECTIONS.index(before) if before in SECTIONS else len(SECTIONS), maker)


def build_sections(cmp: Comparison, makers: list[SectionMaker] | None = None) -> list[Section]:
    """Every section that applies to `cmp`; a section that fails is replaced by a note, not the report."""
    out = []
    for maker in SECTIONS if makers is None else makers:
        try:
            section = maker(cmp)
        except Exception as exc:  # one broken figure must not cost the whole report
            log.warning("report section %s failed: %s", maker.__name__, exc)
            section = Section(maker.__name__.replace("_", " "), f"<p class=note>not drawn: {html.escape(str(exc))}</p>")
        if section is not None:
            out.append(section)
    return out


STYLE = """
body{font-family:Helvetica,Arial,sans-serif;max-width:1180px;margin:1.5em auto;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:2em;border-bottom:2px solid #1f4e79}
nav a{margin-right:1em;font-size:.9em} p{line-height:1.4;max-width:72em}
table{border-collapse:collapse;font-size:13px;margin:.6em 0}
th{background:#eef2f7;padding:4px 8px;text-align:right;vertical-align:bottom}
td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.l,th:first-child{text-align:left} table.meta th{text-align:left}
.note{color:#7a4b00;font-style:italic} .ok{color:#1e6b30} .tag{font-size:10px;background:#eee;padding:1px 4px}
.figure{margin:.5em 0 1em}
"""


def render_html(cmp: Comparison, sections: list[Section]) -> str:
    """The page: plotly.js once (inlined), then every section."""
    plot = _plotly()
    has_figures = any(s.figure is not None for s in sections)
    script = ""
    if has_figures and plot is not None:
        from plotly.offline import get_plotlyjs

        script = f"<script type='text/javascript'>{get_plotlyjs()}</script>"
    title = f"tdmarket comparison: {cmp.instance}"
    nav = " ".join(f"<a href='#{s.anchor or i}'>{html.escape(s.title)}</a>" for i, s in enumerate(sections))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>{script}</head><body>",
        f"<h1>Coordination schemes on {html.escape(cmp.instance)}</h1><nav>{nav}</nav>",
    ]
    if plot is None:
        parts.append("<p class=note>Figures not drawn: plotly is not installed (pip install 'tdmarket[report]').</p>")
    for i, s in enumerate(sections):
        parts.append(
            f"<section id='{s.anchor or i}' data-section='{html.escape(s.title)}'><h2>{html.escape(s.title)}</h2>"
        )
        parts.append(s.html)
        if s.figure is not None:
            figure_html = s.figure.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"figure-{s.anchor or i}", config=FIGURE_CONFIG
            )
            parts.append(f"<div class='figure'>{figure_html}</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(cmp: Comparison, path) -> None:
    """Write the self-contained HTML report of `cmp` to `path`, atomically."""
    from ..io.atomic import atomic_file

    page = render_html(cmp, build_sections(cmp))
    with atomic_file(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
