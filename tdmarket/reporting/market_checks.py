"""The market checks of a scheme comparison (docs/model.md §8): defined prices, price verification of the orders,
uplift by cause and operator, revenue adequacy and interface payments.

Self-contained: `market_check_columns(result)` gives the columns one scheme adds to the `compare` table and JSON,
`defined_prices_section`, `verification_section`, `uplift_section` and `adequacy_section` the report sections
(title, explanation, tables, optional figure), each built from the comparison's results alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CAUSES = ("indivisibility", "price_degeneracy", "held_exchange", "curve_error", "other")


@dataclass(frozen=True)
class ReportSection:
    """A titled block of the report: explanatory text, tables, and an optional plotly figure."""

    title: str
    text: str
    tables: list[pd.DataFrame] = field(default_factory=list)
    figure: object | None = None


def market_check_columns(result) -> dict:
    """Columns of one scheme for the `compare` table: price counts, order paradoxes and uplift by cause."""
    s = result.summary
    prices = s.get("prices", {})
    ver = s.get("verification", {})
    causes = s.get("incentives", {}).get("uplift_by_cause_eur", {})
    pay = s.get("settlement", {}).get("interface_payments", {})
    row = {
        "degenerate_prices": prices.get("degenerate_p", 0) + prices.get("degenerate_q", 0),
        "kappa_no_slack_solver": prices.get("solver_kappa_without_slack", 0),
        "kappa_no_slack_published": prices.get("published_kappa_without_slack", 0),
        "paradox_accepted": ver.get("paradoxically_accepted_with_loc", 0),
        "paradox_rejected": ver.get("paradoxically_rejected_with_loc", 0),
        "interface_payment_residual_eur": pay.get("balance_residual_eur", np.nan),
    }
    row |= {f"uplift_{c}_eur": float(causes.get(c, 0.0)) for c in CAUSES}
    return row


def _prices_table(results: dict) -> pd.DataFrame:
    rows = []
    for scheme, res in results.items():
        p = res.summary.get("prices", {})
        t = p.get("interval_time_s", {})
        rows.append(
            {
                "scheme": scheme,
                "bus-periods": p.get("bus_periods", 0),
                "degenerate P (T)": p.get("degenerate_p_t", 0),
                "degenerate P (D)": p.get("degenerate_p_d", 0),
                "degenerate Q": p.get("degenerate_q", 0),
                "widest P interval (EUR/MWh)": p.get("max_width_p_eur_mwh", 0.0),
                "±κ without slack: solver": p.get("solver_kappa_without_slack", 0),
                "±κ without slack: published": p.get("published_kappa_without_slack", 0),
                "±κ with slack": p.get("published_kappa_with_slack", 0),
                "largest change (EUR/MWh)": p.get("max_abs_change_eur_mwh", 0.0),
                "interval time (s)": float(t.get("total", t.get("tso", 0.0) + t.get("dso_sum", 0.0))),
            }
        )
    return pd.DataFrame(rows)


def _verification_tables(results: dict, top: int = 10) -> list[pd.DataFrame]:
    counts, listed = [], []
    for scheme, res in results.items():
        v = res.summary.get("verification", {})
        counts.append(
            {
                "scheme": scheme,
                "segments": v.get("segments", 0),
                "paradoxically accepted": v.get("paradoxically_accepted", 0),
                "… with LOC": v.get("paradoxically_accepted_with_loc", 0),
                "… LOC (EUR)": v.get("paradoxically_accepted_loc_eur", 0.0),
                "paradoxically rejected": v.get("paradoxically_rejected", 0),
                "… with LOC ": v.get("paradoxically_rejected_with_loc", 0),
                "… LOC (EUR) ": v.get("paradoxically_rejected_loc_eur", 0.0),
            }
        )
        oc = res.tables.get("order_checks")
        if oc is not None and len(oc):
            bad = oc[(oc.status != "consistent") & ~oc.explained_by_order_rules.astype(bool)]
            if len(bad):
                listed.append(bad.assign(scheme=scheme))
    out = [pd.DataFrame(counts)]
    if listed:
        cols = ["scheme", "segment", "qtbid", "node", "period", "area", "status", "price_eur_mwh"]
        cols += ["node_price_eur_mwh", "margin_eur_mwh", "accepted_fraction", "order_logic", "participant_loc_eur"]
        frame = pd.concat(listed, ignore_index=True).sort_values("participant_loc_eur", ascending=False, kind="stable")
        out.append(frame[cols].head(top))
    return out


def _uplift_tables(results: dict) -> list[pd.DataFrame]:
    by_cause = pd.DataFrame(
        [
            {
                "scheme": s,
                **{c: r.summary.get("incentives", {}).get("uplift_by_cause_eur", {}).get(c, 0.0) for c in CAUSES},
            }
            for s, r in results.items()
        ]
    )
    if len(by_cause):
        by_cause["total"] = by_cause[list(CAUSES)].sum(axis=1)
    frames = [r.tables["uplift_causes"].assign(scheme=s) for s, r in results.items() if "uplift_causes" in r.tables]
    frames = [f for f in frames if len(f)]
    out = [by_cause]
    if frames:
        ops = pd.concat(frames, ignore_index=True)
        pivot = ops.pivot_table(index=["scheme", "operator"], columns="cause", values="uplift_eur", aggfunc="sum")
        pivot = pivot.reindex(columns=list(CAUSES), fill_value=0.0).fillna(0.0)
        pivot = pivot[pivot.sum(axis=1) > 1e-4]
        if len(pivot):
            out.append(pivot.reset_index())
    return out


def _adequacy_table(results: dict) -> pd.DataFrame:
    rows = []
    for scheme, res in results.items():
        st = res.summary.get("settlement", {})
        adequacy = st.get("revenue_adequacy", {})
        pay = st.get("interface_payments", {})
        for op, a in adequacy.items():
            rows.append(
                {
                    "scheme": scheme,
                    "operator": op,
                    "surplus (EUR)": a.get("merchandising_surplus_eur", 0.0),
                    "worst period (EUR)": a.get("min_period_eur", 0.0),
                    "revenue adequate": a.get("revenue_adequate", False),
                    "interface payment received (EUR)": pay.get("by_operator", {})
                    .get(op, {})
                    .get("interface_payment_eur", 0.0),
                    "payments balance residual (EUR)": pay.get("balance_residual_eur", np.nan),
                }
            )
    return pd.DataFrame(rows)


def _uplift_figure(table: pd.DataFrame):
    """A stacked bar of the uplift by cause per scheme (plotly; None without plotly or without uplift)."""
    if not len(table) or float(table["total"].abs().max()) <= 1e-4:
        return None
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    fig = go.Figure(
        [go.Bar(x=table.scheme, y=table[c], name=c.replace("_", " ")) for c in CAUSES],
        layout={"barmode": "relative", "title": "Uplift by cause", "yaxis_title": "uplift (€)", "height": 360},
    )
    return fig


def defined_prices_section(cmp) -> ReportSection:
    return ReportSection(
        "Defined prices",
        "A price is degenerate when its dual is an interval (no flexible resource sets it). Where it is, the "
        "published price is the point of its interval nearest to the price of the market the node is coupled "
        "to (docs/model.md §8); ±κ is published only where slack sets it. 'solver' counts what the solver "
        "returned before that rule.",
        [_prices_table(cmp.results)],
    )


def verification_section(cmp) -> ReportSection:
    return ReportSection(
        "Price verification of the orders",
        "Every segment against its node's published price: accepted but out of the money, or not fully "
        "accepted although in the money. Paradoxes that the participant's own order rules explain (no lost "
        "opportunity cost) are counted but not listed; the list shows those with a lost opportunity cost.",
        _verification_tables(cmp.results),
    )


def uplift_section(cmp) -> ReportSection:
    uplift = _uplift_tables(cmp.results)
    return ReportSection(
        "Uplift by cause and operator",
        "Every participant's lost opportunity cost booked to one cause: curve error, held exchange, price "
        "degeneracy, indivisibility, other (docs/model.md §8).",
        uplift,
        _uplift_figure(uplift[0]),
    )


def adequacy_section(cmp) -> ReportSection:
    return ReportSection(
        "Revenue adequacy and interface payments",
        "Each operator's merchandising surplus and its net interface payment; the TSO↔DSO payments of a "
        "period sum to zero (residual column).",
        [_adequacy_table(cmp.results)],
    )
