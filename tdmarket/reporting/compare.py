"""`tdmarket compare`: every coordination scheme on one instance, side by side (docs/model.md §7, §9).

One row per scheme: total cost, gap to `common`, slack, AC violations after dispatch (count and worst), LOC
(uplift), interface deviation, wall time, messages and bytes exchanged.  `write_report` writes a self-contained
`report.html` with the plots embedded as PNG (matplotlib, optional extra `report`).
"""

from __future__ import annotations

import base64
import html
import io
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Comparison:
    instance: str
    rows: pd.DataFrame
    results: dict = field(default_factory=dict)  # scheme -> ClearingResult
    ac: dict = field(default_factory=dict)  # scheme -> per-area AC check table
    notes: list[str] = field(default_factory=list)


def run_comparison(inst, schemes=None, *, progress=None, ac: bool = True, **options) -> Comparison:
    from ..api import check_options, clear
    from ..errors import TdmarketError
    from ..schemes import registry

    check_options(options)  # a bad option is one error now, not one note per scheme
    schemes = list(schemes) if schemes is not None else registry.comparison_ids()
    try:  # pandapower is imported lazily by the AC check: ask for it now, not after the first scheme
        from .ac_check import ac_check
        from .ac_network import load_pandapower

        load_pandapower()
    except ImportError:
        ac_check = None
    notes = []
    if ac and ac_check is None:
        notes.append("AC check skipped: pandapower not installed (pip install 'tdmarket[ac]')")
    results, ac_tables, rows = {}, {}, []
    for scheme in schemes:
        if progress:
            progress(f"clearing with {scheme}")
        t0 = time.perf_counter()
        try:
            res = clear(inst, scheme=scheme, **options)
        except TdmarketError as exc:  # one failing scheme must not lose the others' results
            notes.append(f"{scheme} failed: {exc}")
            rows.append({"scheme": scheme, "error": str(exc), "wall_s": time.perf_counter() - t0})
            continue
        wall = time.perf_counter() - t0
        results[scheme] = res
        s = res.summary
        row = {
            "scheme": scheme,
            "total_cost_eur": res.total_cost,
            "market_cost_eur": s["cost"]["market_cost_eur"],
            "slack_cost_eur": s["cost"]["slack_cost_eur"],
            "slack_mw": s["slack"]["p_mw"],
            "slack_mvar": s["slack"]["q_mvar"],
            "uplift_eur": s.get("incentives", {}).get("uplift_eur", np.nan),
            "wall_s": wall,
            "messages": s.get("communication", {}).get("messages", 0),
            "bytes": s.get("communication", {}).get("bytes", 0),
        }
        if ac and ac_check is not None:
            if progress:
                progress(f"AC check of {scheme}")
            table, summ = ac_check(inst, res.tables)
            ac_tables[scheme] = table
            row.update(
                {
                    "ac_violations": int(summ["total_violations"]),
                    "ac_voltage_violations": int(summ["voltage_violations"]),
                    "ac_thermal_violations": int(summ["thermal_violations"]),
                    "ac_worst_voltage_excess": float(summ["worst_voltage_excess_pu2"]),
                    "ac_worst_loading": float(summ["worst_loading"]),
                    "ac_not_converged": int(summ["non_converged"]),
                    "interface_deviation_mw": float(summ.get("max_abs_dx_mw", 0.0)),
                }
            )
        rows.append(row)
    frame = pd.DataFrame(rows)
    ref = "common" if "common" in results else ("centralized" if "centralized" in results else None)
    if ref is not None and "total_cost_eur" in frame:
        c = results[ref].total_cost
        frame.insert(2, "gap_to_common", (frame.total_cost_eur - c) / max(1.0, abs(c)))
    return Comparison(instance=inst.name, rows=frame, results=results, ac=ac_tables, notes=notes)


def format_rows(cmp: Comparison) -> str:
    cols = [
        ("scheme", "{}"),
        ("total_cost_eur", "{:.2f}"),
        ("gap_to_common", "{:+.4%}"),
        ("slack_mw", "{:.3g}"),
        ("ac_violations", "{}"),
        ("ac_worst_loading", "{:.3f}"),
        ("uplift_eur", "{:.2f}"),
        ("interface_deviation_mw", "{:.3g}"),
        ("wall_s", "{:.1f}"),
        ("messages", "{}"),
        ("bytes", "{}"),
    ]
    cols = [(c, f) for c, f in cols if c in cmp.rows]
    head = [c for c, _ in cols]
    body = [
        [("-" if (isinstance(r[c], float) and np.isnan(r[c])) else f.format(r[c])) for c, f in cols]
        for _, r in cmp.rows.iterrows()
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines + [f"note: {n}" for n in cmp.notes])


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(cmp: Comparison) -> list[tuple[str, str]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        cmp.notes.append("plots skipped: matplotlib not installed (pip install 'tdmarket[report]')")
        return []
    out = []
    rows = cmp.rows

    def bar(column: str, color: str, ylabel: str, title: str) -> None:
        values = rows[column].astype(float)
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.bar(rows.scheme, values, color=color)
        positive = values[values > 0]
        if len(positive) and positive.max() > 100 * positive.min():  # e.g. no-coordination's slack cost
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
        out.append((title, _png(fig)))

    if "total_cost_eur" in rows:
        bar("total_cost_eur", "#4472c4", "total cost (EUR)", "Cost per scheme")
    if "ac_violations" in rows:
        bar("ac_violations", "#c0504d", "AC violations (count)", "Distribution-grid violations after dispatch")
    ref = cmp.results.get("common") or cmp.results.get("centralized")
    if ref is not None:
        buses = ref.tables["buses"]
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for kind, color in (("T", "#4472c4"), ("D", "#ed7d31")):
            v = buses.loc[buses.kind == kind, "price_p_eur_mwh"].dropna()
            if len(v):
                ax.hist(
                    v.clip(v.quantile(0.01), v.quantile(0.99)),
                    bins=40,
                    alpha=0.6,
                    label=f"{kind} ({len(v)})",
                    color=color,
                )
        ax.set_xlabel("price (EUR/MWh)")
        ax.set_title("Nodal prices, common clearing: transmission vs distribution")
        ax.legend()
        out.append(("Price distributions T vs D", _png(fig)))
    hier = cmp.results.get("hierarchical")
    if hier is not None and hier.messages:
        import json

        curves = [json.loads(m["message"]) for m in hier.messages if m["kind"] == "CurveOffer" and m["to"] == "TSO"]
        iface = hier.tables["interfaces"]
        span = {c["from"]: max(x[-1] - x[0] for x in c["payload"]["xi_mw"]) for c in curves}
        largest = sorted(span, key=lambda a: (-span[a], a))[:4]
        fig, axes = plt.subplots(1, len(largest), figsize=(3.2 * len(largest), 3), squeeze=False)
        for ax, area in zip(axes[0], largest):
            c = next(c for c in curves if c["from"] == area)
            p = c["payload"]
            for t, (xi, ph) in enumerate(zip(p["xi_mw"], p["cost_eur"])):
                (line,) = ax.plot(xi, ph, marker=".", ms=3, label=f"t={p['periods'][t]}")
                sel = iface[(iface.area == area) & (iface.period == p["periods"][t])]
                if len(sel):
                    x = float(sel.export_mw.iloc[0])
                    ax.plot([x], [np.interp(x, xi, ph)], "o", color=line.get_color(), mfc="none", ms=8)
            ax.set_title(area, fontsize=9)
            ax.set_xlabel("export (MW)")
        axes[0][0].set_ylabel("cost (EUR)")
        axes[0][0].legend(fontsize=7)
        fig.suptitle("Residual supply curves of the largest DSOs (circles: cleared exchange)", fontsize=10, y=1.04)
        out.append(("Residual supply curves", _png(fig)))
    return out


def write_report(cmp: Comparison, path) -> None:
    """Self-contained HTML report (plots as embedded PNG), written atomically."""
    from ..io.atomic import atomic_file

    plots = _plots(cmp)
    table = cmp.rows.to_html(index=False, float_format=lambda v: f"{v:.6g}", border=0)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>tdmarket comparison: "
        f"{html.escape(cmp.instance)}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}"
        f"table{{border-collapse:collapse;font-size:13px}}td,th{{padding:3px 8px;border-bottom:1px solid #ddd;"
        f"text-align:right}}</style></head><body>",
        f"<h1>Coordination schemes on {html.escape(cmp.instance)}</h1>",
        "<p>Total cost = market cost + penalised slack; gap relative to the integrated (common) clearing; AC "
        "violations from a Newton–Raphson power flow of every distribution area on the dispatched "
        "injections.</p>",
        table,
    ]
    parts += [f"<p><em>{html.escape(n)}</em></p>" for n in cmp.notes]
    for title, png in plots:
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(parts))
