"""AC recovery: an exact AC dispatch for every distribution area whose cleared dispatch is not AC-deliverable
(docs/model.md §5(h)).

For each top-level distribution area (its tree below one T–D interface):

1. **Check.** The AC power flow of the cleared dispatch (`ac_power_flow`).  The area is *AC-deliverable* when the
   power flow converges in every period, has no voltage or thermal violation, and the AC exchange with the
   transmission grid differs from the cleared one by at most `DX_TOL_MW` in every period.  Deliverable areas are
   left exactly as cleared.
2. **Recover.** Otherwise the area's clearing problem is rebuilt from its sub-instance with the same model
   options, the cleared binaries are fixed (`integer_values_from_tables`) and the export P fixed at the cleared
   exchange; the SOC program with these fixings gives the start point and the reference cost, and the exact AC
   program (`tdmarket.formulations.exact_ac`: relaxation cones as equalities, full π-model, voltage and thermal
   limits, same objective) is solved with Ipopt from there (`tdmarket.solvers.ipopt`).
3. **Certify.** The recovered dispatch replaces the area's rows of the result tables and the AC power flow is
   run again on it: the area is *recovered* when Ipopt converged, the certificate shows no violation, no
   exchange deviation above `DX_TOL_MW` and the slack did not grow.

The extra cost is the AC cost minus the SOC cost at the same fixings (€; order costs and penalised slack, as
`ClearingProblem.cost_parts` counts them).  It can be a few cents negative: both points satisfy the balance rows
only to the solvers' tolerances (1e-8 MW), and a slack priced at the penalty turns that into cents.  Prices and settlement stay those of the clearing: the recovery is a re-dispatch of the DSO.  Trees with
sub-DSO areas are not recovered (reported as such).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..formulations.clearing import ClearingProblem
from ..formulations.exact_ac import exact_ac_program, integer_values_from_tables
from ..formulations.options import ModelOptions
from ..model.instance import Instance
from ..solvers import solve
from ..solvers.ipopt import load_casadi, solve_exact_ac
from .ac_check import ac_power_flow
from .ac_network import top_areas

log = logging.getLogger(__name__)

DX_TOL_MW = 1e-3  # MW per period: an AC exchange this close to the cleared one counts as delivered
SLACK_TOL_MW = 1e-4  # MW: a recovered dispatch may not use more slack than the cleared one beyond this

RECOVERY_COLUMNS = [
    "area",
    "deliverable",
    "attempted",
    "recovered",
    "status",
    "violations_before",
    "violations_after",
    "max_abs_dx_mw_before",
    "max_abs_dx_mw_after",
    "soc_cost_eur",
    "ac_cost_eur",
    "extra_cost_eur",
    "slack_mw_before",
    "slack_mw_after",
    "iterations",
    "time_s",
]

# columns of the result tables a recovered area's dispatch replaces (keys first)
_REPLACED = {
    "segments": (["segment"], ["accepted_fraction", "accepted_mw", "cost_eur"]),
    "bids": (["bid"], ["p_mw", "q_mvar", "accepted"]),
    "buses": (["node", "period"], ["vsq_pu", "slack_p_mw", "slack_q_mvar"]),
    "lines": (
        ["edge", "period"],
        [
            "p_from_mw",
            "q_from_mvar",
            "p_to_mw",
            "q_to_mvar",
            "loss_mw",
            "loading",
            "soc_gap",
            "fictitious_loss_mw",
            "fictitious_vdrop_pu2",
        ],
    ),
    "interfaces": (["area", "period"], ["export_mw", "export_mvar"]),
}


@dataclass
class AreaRecovery:
    """The recovery of one distribution area (costs in €, exchange deviations and slack in MW)."""

    area: str
    deliverable: bool  # the cleared dispatch passed the AC check (nothing done)
    attempted: bool
    recovered: bool
    status: str  # Ipopt's return status, or why nothing was attempted
    violations_before: int
    violations_after: int
    max_abs_dx_mw_before: float
    max_abs_dx_mw_after: float
    soc_cost_eur: float = float("nan")
    ac_cost_eur: float = float("nan")
    extra_cost_eur: float = 0.0
    slack_mw_before: float = float("nan")
    slack_mw_after: float = float("nan")
    iterations: int = 0
    time_s: float = 0.0


@dataclass
class Recovery:
    """The outcome of `recover`: per area, the tables with the recovered dispatch, and the AC checks."""

    areas: list[AreaRecovery]
    tables: dict[str, pd.DataFrame]  # the result tables with every recovered area's dispatch
    ac_before: pd.DataFrame  # `ac_power_flow(...)["areas"]` of the cleared dispatch
    ac_after: pd.DataFrame  # the same of the delivered dispatch (recovered areas re-checked)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(a) for a in self.areas], columns=RECOVERY_COLUMNS)

    def summary(self) -> dict:
        """Counts, violations before and after, extra cost (€), time (s)."""
        from .ac_check import summarise

        before, after = summarise(self.ac_before), summarise(self.ac_after)
        tried = [a for a in self.areas if a.attempted]
        return {
            "areas_checked": len(self.areas),
            "areas_not_deliverable": sum(not a.deliverable for a in self.areas),
            "areas_attempted": len(tried),
            "areas_recovered": sum(a.recovered for a in tried),
            "areas_failed": [a.area for a in self.areas if not a.deliverable and not a.recovered],
            "violations_before": int(before["total_violations"]),
            "violations_after": int(after["total_violations"]),
            "non_converged_before": int(before["non_converged"]),
            "non_converged_after": int(after["non_converged"]),
            "max_abs_dx_mw_before": float(before["max_abs_dx_mw"]),
            "max_abs_dx_mw_after": float(after["max_abs_dx_mw"]),
            "extra_cost_eur": float(sum(a.extra_cost_eur for a in tried if a.recovered)),
            "time_s": float(sum(a.time_s for a in tried)),
            "max_area_time_s": float(max((a.time_s for a in tried), default=0.0)),
            "dx_tolerance_mw": DX_TOL_MW,
            "solver": f"ipopt (casadi {load_casadi().__version__})",
        }


def require_recovery_stack() -> None:
    """Raise `InputError` (exit 2 on the command line) with the extra to install unless pandapower and casadi are
    importable."""
    from ..errors import InputError
    from .ac_network import load_pandapower

    try:
        load_pandapower()
        load_casadi()
    except ImportError as exc:
        raise InputError(f"--ac-recovery: {exc}") from None


def attach_recovery(result, rec: Recovery) -> None:
    """Put a recovery on a `ClearingResult`: the delivered tables, the `ac_recovery` table (one row per area),
    the `ac_check` table of the delivered dispatch, the summary block `ac_recovery`, the recovery cost in
    `cost` and warnings for areas that stay undeliverable."""
    summary = rec.summary()
    result.tables = dict(rec.tables)
    result.tables["ac_recovery"] = rec.table()
    result.tables["ac_check"] = rec.ac_after
    result.summary["ac_recovery"] = summary
    cost = result.summary["cost"]
    cost["recovery_eur"] = summary["extra_cost_eur"]
    cost["total_with_recovery_eur"] = float(cost["total_cost_eur"]) + summary["extra_cost_eur"]
    warnings = result.summary.setdefault("warnings", [])
    if summary["areas_not_deliverable"]:
        warnings.append(
            f"AC check: {summary['areas_not_deliverable']} of {summary['areas_checked']} distribution areas not "
            f"AC-deliverable as cleared ({summary['violations_before']} voltage/thermal violations, max |Δx| "
            f"{summary['max_abs_dx_mw_before']:.3g} MW); {summary['areas_recovered']} recovered by the exact AC "
            f"re-dispatch, {summary['violations_after']} violations remain"
        )
    if summary["areas_failed"]:
        warnings.append(
            f"AC recovery failed for {', '.join(summary['areas_failed'])}: their dispatch is kept as cleared"
        )


def deliverability(ac_areas: pd.DataFrame) -> pd.DataFrame:
    """Per area of an `ac_power_flow` `areas` table: violations, max |Δx| (MW) and whether it is deliverable."""
    if len(ac_areas) == 0:
        return pd.DataFrame(columns=["area", "violations", "max_abs_dx_mw", "converged", "deliverable"])
    frame = ac_areas.assign(
        violations=ac_areas["n_voltage_violations"] + ac_areas["n_overloads"],
        abs_dx=ac_areas["dx_mw"].abs().fillna(np.inf),
    )
    per = frame.groupby("area", sort=False).agg(
        violations=("violations", "sum"), max_abs_dx_mw=("abs_dx", "max"), converged=("converged", "all")
    )
    per["deliverable"] = per["converged"] & (per["violations"] == 0) & (per["max_abs_dx_mw"] <= DX_TOL_MW)
    return per.reset_index()


def _model_options(options: dict) -> ModelOptions:
    from ..schemes.registry import OPTION_GROUPS

    model = {k: v for k, v in options.items() if k in OPTION_GROUPS["model"]}
    return ModelOptions(integer=not bool(options.get("relax", False)), **model)


def _replace(tables: dict, new: dict) -> dict:
    """`tables` with the rows of `new` (a sub-instance's tables) replacing theirs in the `_REPLACED` columns."""
    out = dict(tables)
    for name, (keys, cols) in _REPLACED.items():
        old, fresh = tables.get(name), new.get(name)
        if old is None or fresh is None or len(old) == 0 or len(fresh) == 0:
            continue
        if name == "lines":
            fresh = fresh[fresh["kind"] == "D"]
        cols = [c for c in cols if c in old and c in fresh]
        frame = old.copy()
        fresh = fresh.drop_duplicates(keys)
        pos = pd.MultiIndex.from_frame(fresh[keys]).get_indexer(pd.MultiIndex.from_frame(frame[keys]))
        hit = pos >= 0
        if name == "lines" and "kind" in frame:
            hit &= (frame["kind"] == "D").to_numpy()
        for c in cols:
            frame.loc[hit, c] = fresh[c].to_numpy()[pos[hit]]
        out[name] = frame
    return out


def _slack_mw(tables: dict, sub: Instance) -> float:
    buses = tables.get("buses")
    if buses is None or len(buses) == 0:
        return 0.0
    own = sub.buses.id[~sub.buses.is_boundary]
    return float(buses.loc[buses["node"].isin(own), "slack_p_mw"].abs().sum())


def _recover_area(inst: Instance, a: int, tables: dict, opts: ModelOptions, ac_kw: dict, row) -> tuple:
    """Recover area `a`; returns (AreaRecovery, tables with its recovered dispatch or the input tables, its AC
    table after)."""
    t0 = time.perf_counter()
    name = inst.areas.name[a]
    base: dict[str, Any] = dict(
        area=name,
        deliverable=False,
        violations_before=int(row.violations),
        max_abs_dx_mw_before=float(row.max_abs_dx_mw),
    )
    if len(inst.areas.children(a)):
        return (
            AreaRecovery(
                **base,
                attempted=False,
                recovered=False,
                status="not attempted: the area has sub-DSO areas",
                violations_after=int(row.violations),
                max_abs_dx_mw_after=float(row.max_abs_dx_mw),
            ),
            tables,
            None,
        )
    sub = inst.area_instance(a)
    cp = ClearingProblem(sub, opts)
    iface = tables["interfaces"]
    export = iface[iface["area"] == name].set_index("period")["export_mw"].reindex(sub.periods).to_numpy(float)
    eprog = exact_ac_program(cp, integer_values_from_tables(cp, tables.get("segments"), tables.get("bids")), export)
    soc = solve(eprog.prog)
    slack_before = _slack_mw(tables, sub)
    if not soc.ok:
        status = f"not attempted: the SOC problem with the cleared binaries and exchange is {soc.status.value}"
        return (
            AreaRecovery(
                **base,
                attempted=False,
                recovered=False,
                status=status,
                violations_after=int(row.violations),
                max_abs_dx_mw_after=float(row.max_abs_dx_mw),
                slack_mw_before=slack_before,
                time_s=time.perf_counter() - t0,
            ),
            tables,
            None,
        )
    nlp = solve_exact_ac(eprog, soc.x)
    # costs as the clearing reports them (slacks clipped at 0: an interior point leaves them at about -1e-9 MW,
    # which the 1e4 €/MWh penalty would turn into cents)
    soc_cost = cp.cost_parts(soc.x)["total_cost_eur"]
    ac_cost = cp.cost_parts(nlp.x)["total_cost_eur"]
    candidate = _replace(tables, cp.extract(nlp.x, None))
    after = ac_power_flow(inst, candidate, area_names=[name], **ac_kw)["areas"]
    check = deliverability(after).iloc[0] if len(after) else None
    slack_after = _slack_mw(candidate, sub)
    recovered = bool(
        nlp.converged and check is not None and check.deliverable and slack_after <= slack_before + SLACK_TOL_MW
    )
    result = AreaRecovery(
        **base,
        attempted=True,
        recovered=recovered,
        status=nlp.status,
        violations_after=int(check.violations) if check is not None else -1,
        max_abs_dx_mw_after=float(check.max_abs_dx_mw) if check is not None else float("nan"),
        soc_cost_eur=soc_cost,
        ac_cost_eur=ac_cost,
        extra_cost_eur=ac_cost - soc_cost,
        slack_mw_before=slack_before,
        slack_mw_after=slack_after,
        iterations=nlp.iterations,
        time_s=time.perf_counter() - t0,
    )
    # an unconverged or uncertified point is not delivered: the area keeps its cleared dispatch
    return result, (candidate if recovered else tables), (after if recovered else None)


def recover(inst: Instance, tables: dict, options: dict | None = None, *, ac_before: pd.DataFrame | None = None):
    """AC recovery of a clearing's dispatch (module docstring).  `tables`: the clearing's result tables;
    `options`: the options it was cleared with (model options and `relax`); `ac_before`: its AC check
    (`ac_power_flow(...)["areas"]`) if already computed.  Returns a `Recovery`."""
    load_casadi()
    options = options or {}
    opts = _model_options(options)
    ac_kw = {"pi_model": opts.pi_model, "zero_root_q": opts.zero_root_q}
    if ac_before is None:
        ac_before = ac_power_flow(inst, tables, **ac_kw)["areas"]
    status = deliverability(ac_before).set_index("area")
    names = list(inst.areas.name)
    delivered, areas, after_frames = dict(tables), [], {}
    for a in top_areas(inst):
        name = names[int(a)]
        if name not in status.index:
            continue
        row = status.loc[name]
        if bool(row.deliverable):
            areas.append(
                AreaRecovery(
                    area=name,
                    deliverable=True,
                    attempted=False,
                    recovered=False,
                    status="deliverable",
                    violations_before=int(row.violations),
                    violations_after=int(row.violations),
                    max_abs_dx_mw_before=float(row.max_abs_dx_mw),
                    max_abs_dx_mw_after=float(row.max_abs_dx_mw),
                )
            )
            continue
        log.info("AC recovery of %s ...", name)
        item, delivered, after = _recover_area(inst, int(a), delivered, opts, ac_kw, row)
        areas.append(item)
        if after is not None:
            after_frames[name] = after
        log.info(
            "%s: %s (%s), violations %d -> %d, extra cost %.2f EUR, %.2f s",
            name,
            "recovered" if item.recovered else "not recovered",
            item.status,
            item.violations_before,
            item.violations_after,
            item.extra_cost_eur,
            item.time_s,
        )
    ac_after = ac_before
    if after_frames:
        kept = ac_before[~ac_before["area"].isin(list(after_frames))]
        ac_after = pd.concat([kept, *after_frames.values()], ignore_index=True)
    return Recovery(areas=areas, tables=delivered, ac_before=ac_before, ac_after=ac_after)
