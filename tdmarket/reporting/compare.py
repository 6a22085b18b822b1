"""`tdmarket compare`: every coordination scheme on one instance, side by side (docs/model.md §7, §9).

One row per scheme: total cost, gap to `common` (€, and relative where the base is not about zero), slack,
AC violations after dispatch (thermal and voltage, with the worst values), uplift, interface deviation, wall
time, messages and bytes exchanged.  The HTML report is written by `tdmarket.reporting.report`.

With `out=DIR` every scheme's results are saved as soon as the scheme is done (`ComparisonFolder`), so an
interrupted comparison loses at most the scheme it was working on, and a comparison re-run on the same DIR
with the same input files and options loads the schemes already saved instead of clearing them again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .market_checks import market_check_columns
from .numbers import fmt, fmt_eur, fmt_percent, relative_gap

if TYPE_CHECKING:
    from ..model.instance import Instance

log = logging.getLogger(__name__)

REFERENCE_SCHEMES = ("common", "centralized")


@dataclass
class Comparison:
    """The outcome of `run_comparison`: one row per scheme, the results, the AC checks, notes."""

    instance: str
    rows: pd.DataFrame
    results: dict = field(default_factory=dict)  # scheme -> ClearingResult
    ac: dict = field(default_factory=dict)  # scheme -> per-(area, period) AC check table
    ac_lines: dict = field(default_factory=dict)  # scheme -> AC loading per (area, edge, period) of D branches
    notes: list[str] = field(default_factory=list)
    network: Instance | None = None  # the Instance compared (topology for the feeder diagram)
    provenance: dict = field(default_factory=dict)  # versions, input checksum, options of the comparison
    loaded: list[str] = field(default_factory=list)  # schemes loaded from a results folder, not recomputed

    @property
    def reference(self) -> str | None:
        """The integrated clearing every gap is measured against (`common`, or its alias), if compared."""
        return next((s for s in REFERENCE_SCHEMES if s in self.results), None)


AC_LINE_COLUMNS = ["area", "edge", "period", "loading"]


def _ac_power_flow():
    try:
        from .ac_check import ac_power_flow, load_pandapower

        load_pandapower()
    except ImportError:
        return None
    return ac_power_flow


def _number(value) -> float:
    return np.nan if value is None else float(value)


def _recovery():
    try:
        from ..solvers.ipopt import load_casadi
        from .ac_recovery import recover

        load_casadi()
    except ImportError:
        return None
    return recover


def _recovery_columns(rec, total_cost: float, ac_dispatch: dict | None = None) -> dict:
    """Comparison columns of one scheme's AC recovery: violations after, areas recovered, cost (€).  A scheme
    whose DSOs dispatched with the exact AC model (`ac_dispatch`, `dispatch_model="ac"`) adds their re-dispatch
    cost to the recovery cost."""
    s = rec.summary()
    extra = float(s["extra_cost_eur"]) + float((ac_dispatch or {}).get("extra_cost_eur", 0.0))
    return {
        "ac_violations_after": int(s["violations_after"]),
        "ac_areas_not_deliverable": int(s["areas_not_deliverable"]),
        "ac_areas_recovered": int(s["areas_recovered"]),
        "recovery_cost_eur": extra,
        "total_cost_with_recovery_eur": float(total_cost) + extra,
        "interface_deviation_after_mw": float(s["max_abs_dx_mw_after"]),
        "recovery_s": float(s["time_s"]),
    }


def scheme_row(scheme: str, result, wall_s: float, ac_summary: dict | None) -> dict:
    """The comparison row of one scheme from its summary and, if checked, its AC summary."""
    s = result.summary
    row = {
        "scheme": scheme,
        "total_cost_eur": result.total_cost,
        "market_cost_eur": _number(s["cost"]["market_cost_eur"]),
        "slack_cost_eur": _number(s["cost"]["slack_cost_eur"]),
        "slack_mw": _number(s["slack"]["p_mw"]),
        "slack_mvar": _number(s["slack"]["q_mvar"]),
        "uplift_eur": _number((s.get("incentives") or {}).get("uplift_eur")),
        "wall_s": float(wall_s),
        "messages": int((s.get("communication") or {}).get("messages", 0)),
        "bytes": int((s.get("communication") or {}).get("bytes", 0)),
    }
    row.update(market_check_columns(result))
    if ac_summary is not None:
        row.update(
            {
                "ac_violations": int(ac_summary["total_violations"]),
                "ac_voltage_violations": int(ac_summary["voltage_violations"]),
                "ac_thermal_violations": int(ac_summary["thermal_violations"]),
                "ac_worst_voltage_excess": float(ac_summary["worst_voltage_excess_pu2"]),
                "ac_worst_loading": float(ac_summary["worst_loading"]),
                "ac_v_min_pu": _number(ac_summary.get("v_min_pu")),
                "ac_v_max_pu": _number(ac_summary.get("v_max_pu")),
                "ac_not_converged": int(ac_summary["non_converged"]),
                "interface_deviation_mw": float(ac_summary.get("max_abs_dx_mw", 0.0)),
            }
        )
    return row


def ac_summary_of(table: pd.DataFrame) -> dict:
    """`ac_check.summarise` plus the lowest and highest AC voltage magnitude (p.u.) over converged cases."""
    from .ac_check import summarise

    summary = summarise(table)
    ok = table[table["converged"]] if len(table) else table
    summary["v_min_pu"] = float(ok["v_min_pu"].min()) if len(ok) else None
    summary["v_max_pu"] = float(ok["v_max_pu"].max()) if len(ok) else None
    return summary


def add_gaps(frame: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Columns `gap_to_common_eur` (€) and `gap_to_common` ((cost − ref) / |ref|, NaN where the reference
    cost is about zero on the scale of the row's cost, see `numbers.relative_gap`)."""
    if reference is None or "total_cost_eur" not in frame or reference not in set(frame.scheme):
        return frame
    base = float(frame.loc[frame.scheme == reference, "total_cost_eur"].iloc[0])
    gap_eur = frame.total_cost_eur - base
    # a gap below half a cent is solver noise: 0 €, and so 0 %
    relative = [None if abs(v - base) < 0.005 else relative_gap(v, base) for v in frame.total_cost_eur]
    relative = [0.0 if abs(v - base) < 0.005 else r for v, r in zip(frame.total_cost_eur, relative)]
    frame.insert(2, "gap_to_common_eur", gap_eur)
    frame.insert(3, "gap_to_common", [np.nan if r is None else r for r in relative])
    return frame


def run_comparison(
    inst,
    schemes=None,
    *,
    progress=None,
    ac: bool = True,
    ac_recovery: bool = False,
    out=None,
    **options,
) -> Comparison:
    """Clear `inst` with every scheme in `schemes` (default: the registry's comparison set) and check each
    dispatch with an AC power flow (`ac`, needs pandapower).

    `progress` is the structured progress callback of `tdmarket.clear` (hierarchical stages and cut rounds,
    MIP rounds); its `close()` is called after each scheme if it has one.  `out`: a folder where each scheme's
    results are saved as soon as it is done, and from which schemes saved earlier with the same input files
    and options are loaded (`ComparisonFolder`).  `ac_recovery`: after the AC check, re-dispatch every area that
    is not AC-deliverable with the exact AC OPF (`tdmarket.reporting.ac_recovery`, needs casadi) and report
    violations after recovery, the recovery cost and the total cost with it.  The other options go to
    `tdmarket.clear`."""
    from ..api import check_options, clear
    from ..errors import TdmarketError
    from ..schemes import registry
    from .resume import ComparisonFolder, comparison_provenance

    check_options(options)  # a bad option is one error now, not one note per scheme
    schemes = list(schemes) if schemes is not None else registry.comparison_ids()
    power_flow = _ac_power_flow()
    notes = []
    if ac and power_flow is None:
        notes.append("AC check skipped: pandapower not installed (pip install 'tdmarket[ac]')")
        log.warning(notes[-1])
    check_ac = ac and power_flow is not None
    recover = _recovery() if check_ac and ac_recovery else None
    if check_ac and ac_recovery and recover is None:
        notes.append("AC recovery skipped: casadi not installed (pip install 'tdmarket[ac]')")
        log.warning(notes[-1])
    folder = ComparisonFolder.open(out, inst) if out is not None else None
    clear_options = options | ({"progress": progress} if progress is not None else {})
    cmp = Comparison(
        instance=inst.name,
        rows=pd.DataFrame(),
        notes=notes,
        network=inst,
        provenance=comparison_provenance(inst, schemes, options, ac=check_ac),
    )
    cmp.provenance["ac_recovery"] = recover is not None
    rows = []
    for scheme in schemes:
        saved = folder.load(scheme, options, need_ac=check_ac) if folder is not None else None
        if saved is not None:
            res, ac_table, ac_lines, wall = saved.result, saved.ac_table, saved.ac_lines, saved.wall_s
            cmp.loaded.append(scheme)
            note = f"{scheme}: loaded from {saved.path} (same input files and options, computed {saved.created_utc})"
            notes.append(note)
            log.info(note)
        else:
            log.info("clearing with %s ...", scheme)
            t0 = time.perf_counter()
            try:
                res = clear(inst, scheme=scheme, **clear_options)
            except TdmarketError as exc:  # one failing scheme must not lose the others' results
                notes.append(f"{scheme} failed: {exc}")
                log.warning(notes[-1])
                rows.append({"scheme": scheme, "error": str(exc), "wall_s": time.perf_counter() - t0})
                continue
            finally:
                if hasattr(progress, "close"):
                    progress.close()
            wall, ac_table, ac_lines = time.perf_counter() - t0, None, None
        if check_ac and ac_table is None:
            log.info("AC check of %s ...", scheme)
            flows = power_flow(inst, res.tables)
            ac_table, ac_lines = flows["areas"], flows["lines"][AC_LINE_COLUMNS]
        cmp.results[scheme] = res
        if ac_table is not None:
            cmp.ac[scheme] = ac_table
        if ac_lines is not None:
            cmp.ac_lines[scheme] = ac_lines
        row = scheme_row(scheme, res, wall, ac_summary_of(ac_table) if ac_table is not None else None)
        if recover is not None and ac_table is not None:
            rec = recover(inst, res.tables, options, ac_before=ac_table)
            row.update(_recovery_columns(rec, res.total_cost, res.summary.get("ac_dispatch")))
        rows.append(row)
        if folder is not None and (saved is None or (check_ac and saved.ac_table is None)):
            path = folder.save(scheme, res, ac_table, ac_lines, wall)
            log.info("%s: saved to %s", scheme, path)
        cmp.rows = add_gaps(pd.DataFrame(rows), cmp.reference)
        if folder is not None:
            folder.write_index(cmp)
    cmp.rows = add_gaps(pd.DataFrame(rows), cmp.reference)
    return cmp


# columns of the text table: (column, header, formatter)
TEXT_COLUMNS = [
    ("scheme", "scheme", str),
    ("total_cost_eur", "total cost €", fmt_eur),
    ("gap_to_common_eur", "gap €", lambda v: fmt_eur(v, sign=True)),
    ("gap_to_common", "gap %", fmt_percent),
    ("slack_mw", "slack MW", lambda v: fmt(v, "MW")),
    ("ac_thermal_violations", "thermal", lambda v: fmt(v, "count")),
    ("ac_voltage_violations", "voltage", lambda v: fmt(v, "count")),
    ("ac_worst_loading", "worst loading %", lambda v: fmt(100 * v, "", 3)),
    ("ac_violations", "AC viol. before", lambda v: fmt(v, "count")),
    ("ac_violations_after", "after recovery", lambda v: fmt(v, "count")),
    ("recovery_cost_eur", "recovery €", lambda v: fmt_eur(v, sign=True)),
    ("total_cost_with_recovery_eur", "total with recovery €", fmt_eur),
    ("uplift_eur", "uplift €", fmt_eur),
    ("degenerate_prices", "degenerate prices", lambda v: fmt(v, "count")),
    ("kappa_no_slack_published", "κ prices w/o slack", lambda v: fmt(v, "count")),
    ("paradox_rejected", "paradox rejected", lambda v: fmt(v, "count")),
    ("interface_deviation_mw", "|Δx| MW", lambda v: fmt(v, "MW", 3)),
    ("wall_s", "wall s", lambda v: fmt(v, "s", 3)),
    ("messages", "messages", lambda v: fmt(v, "count")),
    ("bytes", "bytes", lambda v: fmt(v, "count")),
]


def _cell(formatter, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, np.integer):
        value = int(value)
    elif isinstance(value, np.floating):
        value = float(value)
    return formatter(value)


def format_rows(cmp: Comparison) -> str:
    """The comparison as an aligned text table with units, solver noise printed as 0, and the notes."""
    cols = [c for c in TEXT_COLUMNS if c[0] in cmp.rows]
    head = [h for _, h, _ in cols]
    body = [[_cell(f, r[c]) for c, _, f in cols] for _, r in cmp.rows.iterrows()]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines + [f"note: {n}" for n in cmp.notes])


def write_report(cmp: Comparison, path) -> None:
    """The HTML report of a comparison (`tdmarket.reporting.report.write_report`)."""
    from .report import write_report as write

    write(cmp, path)
