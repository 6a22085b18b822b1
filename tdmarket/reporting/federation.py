"""`tdmarket compare FEDERATION`: the platform-level schemes side by side (docs/model.md §12.4).

One row per platform scheme: total cost, gap to `integrated` (€ and relative), cost per member, congestion rent,
the platform's certificate, AC violations of every member's distribution grids (the AC check of each member's
dispatch, `ac_check.ac_power_flow`), wall time, and the messages and bytes exchanged per level (platform ↔ TSO,
TSO ↔ DSO).  Then the cross-border flows with the prices at both ends and the rent per interconnector and period,
and the cross-border marginal price of every member and period.  The HTML report holds the same tables.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .compare import _ac_power_flow
from .numbers import fmt, fmt_eur, fmt_percent, relative_gap

log = logging.getLogger(__name__)

REFERENCE = "integrated"


@dataclass
class FederationComparison:
    federation: str
    members: list[str]
    rows: pd.DataFrame
    flows: pd.DataFrame  # scheme, interconnector, period, flow, prices, rent
    prices: pd.DataFrame  # scheme, member, period, price (mean over its border nodes)
    results: dict = field(default_factory=dict)  # scheme -> FederationResult
    ac: dict = field(default_factory=dict)  # scheme -> AC table per (member/area, period)
    notes: list[str] = field(default_factory=list)


def federation_ac(result, power_flow) -> pd.DataFrame:
    """The AC check of every member's distribution dispatch (areas named `member/DSO`)."""
    if result.merged is not None:
        inst, res = result.merged
        return power_flow(inst, res.tables)["areas"]
    frames = []
    for name, res in result.members.items():
        areas = power_flow(result.member_instances[name], res.tables)["areas"].copy()
        areas["area"] = name + "/" + areas["area"].astype(str)
        frames.append(areas)
    return pd.concat(frames, ignore_index=True)


def _row(scheme: str, result, wall_s: float, ac_table: pd.DataFrame | None) -> dict:
    from .ac_check import summarise

    s = result.summary
    comm = s.get("communication") or {}
    cert = s.get("certificate") or {}
    row = {
        "scheme": scheme,
        "total_cost_eur": result.total_cost,
        "slack_cost_eur": float(s["cost"]["slack_cost_eur"]),
        "congestion_rent_eur": float(s["congestion_rent_total_eur"]),
        "max_abs_flow_mw": float(s["max_abs_flow_mw"]),
        "certified_gap": cert.get("gap", np.nan),
        "platform_rounds": cert.get("rounds", np.nan),
        "wall_s": float(wall_s),
        "platform_messages": int(comm.get("platform", {}).get("messages", 0)),
        "platform_bytes": int(comm.get("platform", {}).get("bytes", 0)),
        "member_messages": int(comm.get("member", {}).get("messages", 0)),
        "member_bytes": int(comm.get("member", {}).get("bytes", 0)),
    }
    for name, cost in s["member_costs"].items():
        row[f"cost_{name}_eur"] = float(cost["total_cost_eur"])
    if ac_table is not None:
        a = summarise(ac_table)
        row.update(
            {
                "ac_violations": int(a["total_violations"]),
                "ac_voltage_violations": int(a["voltage_violations"]),
                "ac_thermal_violations": int(a["thermal_violations"]),
                "ac_worst_loading": float(a["worst_loading"]),
                "interface_deviation_mw": float(a["max_abs_dx_mw"]),
            }
        )
    return row


def run_federation_comparison(fed, schemes=None, *, ac: bool = True, **options) -> FederationComparison:
    """Clear `fed` with every platform scheme in `schemes` (default: all four) and check each dispatch in AC."""
    from ..errors import TdmarketError
    from ..federation.registry import clear_federation, get, platform_scheme_names

    schemes = list(schemes) if schemes is not None else platform_scheme_names()
    for s in schemes:
        get(s)  # unknown ids: one InputError before anything is solved
    notes = []
    power_flow = _ac_power_flow() if ac else None
    if ac and power_flow is None:
        notes.append("AC check skipped: pandapower not installed (pip install 'tdmarket[ac]')")
    rows, flows, prices = [], [], []
    cmp = FederationComparison(fed.name, list(fed.members), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), notes=notes)
    for scheme in schemes:
        log.info("platform scheme %s ...", scheme)
        t0 = time.perf_counter()
        try:
            res = clear_federation(fed, scheme, **options)
        except TdmarketError as exc:
            notes.append(f"{scheme} failed: {exc}")
            log.warning(notes[-1])
            rows.append({"scheme": scheme, "error": str(exc), "wall_s": time.perf_counter() - t0})
            continue
        wall = time.perf_counter() - t0
        ac_table = federation_ac(res, power_flow) if power_flow is not None else None
        cmp.results[scheme] = res
        if ac_table is not None:
            cmp.ac[scheme] = ac_table
        rows.append(_row(scheme, res, wall, ac_table))
        flows.append(res.flows.assign(scheme=scheme))
        mp = res.member_prices.groupby(["member", "period"], sort=False)["price_eur_mwh"].mean().reset_index()
        prices.append(mp.assign(scheme=scheme))
        for w in (res.summary.get("certificate") or {}).get("warnings", []):
            notes.append(f"{scheme}: {w}")
    frame = pd.DataFrame(rows)
    if REFERENCE in cmp.results and len(frame):
        ref = cmp.results[REFERENCE].total_cost
        frame["gap_to_integrated_eur"] = frame["total_cost_eur"] - ref
        frame["gap_to_integrated"] = [
            relative_gap(v, ref) if np.isfinite(v) else np.nan for v in frame["total_cost_eur"].astype(float)
        ]
    cmp.rows = frame
    cmp.flows = pd.concat(flows, ignore_index=True) if flows else pd.DataFrame()
    cmp.prices = pd.concat(prices, ignore_index=True) if prices else pd.DataFrame()
    return cmp


def _cell(formatter, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    return formatter(value)


def _table(frame: pd.DataFrame, columns: list[tuple]) -> str:
    cols = [c for c in columns if c[0] in frame]
    head = [h for _, h, _ in cols]
    body = [[_cell(f, r[c]) for c, _, f in cols] for _, r in frame.iterrows()]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines)


def _count(v) -> str:
    return fmt(v, "count")


def row_columns(members: list[str]) -> list[tuple]:
    return [
        ("scheme", "platform scheme", str),
        ("total_cost_eur", "total cost €", fmt_eur),
        ("gap_to_integrated_eur", "gap €", lambda v: fmt_eur(v, sign=True)),
        ("gap_to_integrated", "gap %", fmt_percent),
        *[(f"cost_{m}_eur", f"{m} €", fmt_eur) for m in members],
        ("congestion_rent_eur", "rent €", fmt_eur),
        ("max_abs_flow_mw", "max |flow| MW", lambda v: fmt(v, "MW")),
        ("certified_gap", "cert. gap", lambda v: f"{v:.1e}"),
        ("platform_rounds", "rounds", _count),
        ("ac_violations", "AC viol.", _count),
        ("ac_worst_loading", "worst loading %", lambda v: fmt(100 * v, "", 3)),
        ("wall_s", "wall s", lambda v: fmt(v, "s", 3)),
        ("platform_messages", "msgs platform↔TSO", _count),
        ("platform_bytes", "bytes platform↔TSO", _count),
        ("member_messages", "msgs TSO↔DSO", _count),
        ("member_bytes", "bytes TSO↔DSO", _count),
    ]


FLOW_COLUMNS = [
    ("scheme", "scheme", str),
    ("interconnector", "ic", str),
    ("from_member", "from", str),
    ("to_member", "to", str),
    ("period", "period", str),
    ("flow_mw", "flow MW", lambda v: fmt(v, "MW")),
    ("atc_forward_mw", "ATC fwd", lambda v: fmt(v, "MW")),
    ("atc_backward_mw", "ATC bwd", lambda v: fmt(v, "MW")),
    ("price_from_eur_mwh", "price from €/MWh", lambda v: fmt(v, "EUR/MWh")),
    ("price_to_eur_mwh", "price to €/MWh", lambda v: fmt(v, "EUR/MWh")),
    ("congestion_rent_eur", "rent €", fmt_eur),
]


def format_federation(cmp: FederationComparison) -> str:
    """The comparison as text: the schemes, the cross-border flows and rents, the members' prices."""
    parts = [
        f"federation {cmp.federation}: members {', '.join(cmp.members)}",
        _table(cmp.rows, row_columns(cmp.members)),
    ]
    if len(cmp.flows):
        parts += ["", "cross-border flows (MW, + from → to), prices at both ends and congestion rent:"]
        parts.append(_table(cmp.flows, FLOW_COLUMNS))
    if len(cmp.prices):
        wide = cmp.prices.pivot_table(index=["scheme", "member"], columns="period", values="price_eur_mwh", sort=False)
        wide.columns = [f"t={int(c)}" for c in wide.columns]
        wide = wide.reset_index()
        cols: list[tuple] = [("scheme", "scheme", str), ("member", "member", str)]
        cols += [(c, f"{c} €/MWh", lambda v: fmt(v, "EUR/MWh")) for c in wide.columns[2:]]
        parts += ["", "cross-border marginal price per member (mean over its border nodes):", _table(wide, cols)]
    parts += [f"note: {n}" for n in cmp.notes]
    return "\n".join(parts)


def write_federation_report(cmp: FederationComparison, path) -> None:
    """A self-contained HTML page with the comparison's tables (written to a temporary file, then renamed)."""
    from ..io.atomic import atomic_file

    body = [
        f"<h1>Federation {html.escape(cmp.federation)}</h1>",
        f"<p>members: {html.escape(', '.join(cmp.members))}</p>",
    ]
    for title, frame in (
        ("Platform schemes", cmp.rows),
        ("Cross-border flows and congestion rents", cmp.flows),
        ("Cross-border marginal prices", cmp.prices),
    ):
        body.append(f"<h2>{title}</h2>")
        body.append(frame.to_html(index=False, float_format=lambda v: f"{v:.6g}", border=0))
    if cmp.notes:
        body.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in cmp.notes) + "</ul>")
    page = "<!doctype html><meta charset='utf-8'><title>tdmarket federation</title>" + "\n".join(body)
    with atomic_file(Path(path)) as tmp:
        tmp.write_text(page, encoding="utf-8")


def federation_json(cmp: FederationComparison) -> dict:
    return {
        "federation": cmp.federation,
        "members": cmp.members,
        "rows": cmp.rows.to_dict(orient="records"),
        "flows": cmp.flows.to_dict(orient="records"),
        "prices": cmp.prices.to_dict(orient="records"),
        "notes": cmp.notes,
    }


def save_federation_results(cmp: FederationComparison, out) -> None:
    """DIR/<scheme>/ with flows.csv, member_prices.csv, summary.json and the platform's messages.jsonl, each
    folder written to a temporary name and then renamed."""
    import json

    from ..io.atomic import atomic_dir
    from .writer import dumps

    for scheme, res in cmp.results.items():
        with atomic_dir(Path(out) / scheme) as tmp:
            res.flows.to_csv(tmp / "flows.csv", index=False)
            res.member_prices.to_csv(tmp / "member_prices.csv", index=False)
            (tmp / "summary.json").write_text(dumps(res.summary) + "\n", encoding="utf-8")
            with open(tmp / "messages.jsonl", "w", encoding="utf-8") as fh:
                for m in res.messages:
                    fh.write(json.dumps(m, sort_keys=True) + "\n")
