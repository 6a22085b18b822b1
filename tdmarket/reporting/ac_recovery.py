"""AC recovery: an exact AC dispatch for every distribution area whose cleared dispatch is not AC-deliverable
(docs/model.md §5(h)).

For each distribution tree (everything below one T–D interface):

1. **Check.** The AC power flow of the cleared dispatch (`ac_power_flow`).  The tree is *AC-deliverable* when the
   power flow converges in every period, has no voltage or thermal violation, and the AC exchange with the
   transmission grid differs from the cleared one by at most `DX_TOL_MW` in every period.  Deliverable trees are
   left exactly as cleared.
2. **Recover.** Otherwise every area of the tree is re-dispatched by its operator's exact AC program
   (`tdmarket.operators.ac_dispatch.recover_area`: cleared binaries and exchanges fixed, SOC start, Ipopt, AC power
   flow certificate), level by level from the top: each area is one request of an executor (`inline`, `process`
   or `ray`, the schemes' executors), and the results are merged in area order whatever the completion order.
   A sub-DSO is re-dispatched after its parent, at the parent's AC voltage at its root (its boundary condition);
   when that fails, the whole tree is re-dispatched as one program.  An area whose cleared exchange cannot be
   delivered without slack moves its exchange, paid at the interface price (reported; the TSO re-balances it).
3. **Certify.** The recovered dispatch replaces the area's rows of the result tables; a tree with sub-DSO areas is
   checked once more as a whole.

The extra cost is the AC cost minus the SOC cost at the same fixings (€; order costs and penalised slack, as
`ClearingProblem.cost_parts` counts them).  It can be a few cents negative: both points satisfy the balance rows
only to the solvers' tolerances (1e-8 MW), and a slack priced at the penalty turns that into cents.  Prices and
settlement stay those of the clearing: the recovery is a re-dispatch of the DSO.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..formulations.options import ModelOptions
from ..model.instance import Instance
from ..operators.ac_dispatch import (
    DX_TOL_MW,
    SLACK_TOL_MW,
    AreaOutcome,
    AreaRecovery,
    AreaTask,
    area_tables,
    deliverability,
    recovery_task,
    replace_dispatch,
)
from ..operators.executors import Request, make_executor
from ..solvers.ac_network import top_areas
from ..solvers.ac_powerflow import ac_power_flow
from ..solvers.ipopt import load_casadi

log = logging.getLogger(__name__)

__all__ = ["DX_TOL_MW", "SLACK_TOL_MW", "AreaRecovery", "Recovery", "attach_recovery", "deliverability", "recover"]

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
    "parent",
    "optimality",
    "soc_start_s",
    "build_s",
    "ipopt_s",
    "certificate_s",
    "exchange_deviation_mw",
    "exchange_deviation_cost_eur",
]


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
            "max_exchange_deviation_mw": float(
                max((a.exchange_deviation_mw for a in tried if a.recovered), default=0.0)
            ),
            "time_s": float(sum(a.time_s for a in tried)),
            "max_area_time_s": float(max((a.time_s for a in tried), default=0.0)),
            "dx_tolerance_mw": DX_TOL_MW,
            "solver": f"ipopt (casadi {load_casadi().__version__})",
        }


def require_recovery_stack() -> None:
    """Raise `InputError` (exit 2 on the command line) with the extra to install unless pandapower and casadi are
    importable."""
    from ..errors import InputError
    from ..solvers.ac_network import load_pandapower

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
    if summary["max_exchange_deviation_mw"] > 0:
        moved = [a.area for a in rec.areas if a.recovered and a.exchange_deviation_mw > 0]
        warnings.append(
            f"AC recovery moved the exchange of {', '.join(moved)} (up to {summary['max_exchange_deviation_mw']:.3g} "
            "MW): the cleared exchange could not be delivered without slack; the deviation is paid at the interface "
            "price (in the recovery cost) and left to the TSO to re-balance"
        )
    if summary["areas_failed"]:
        warnings.append(
            f"AC recovery failed for {', '.join(summary['areas_failed'])}: their dispatch is kept as cleared"
        )


def _model_options(options: dict) -> ModelOptions:
    from ..schemes.registry import OPTION_GROUPS

    model = {k: v for k, v in options.items() if k in OPTION_GROUPS["model"]}
    return ModelOptions(integer=not bool(options.get("relax", False)), **model)


def _not_deliverable(name: str, parent: str, row, status: str) -> AreaRecovery:
    return AreaRecovery(
        area=name,
        deliverable=False,
        attempted=False,
        recovered=False,
        status=status,
        violations_before=int(row.violations),
        violations_after=int(row.violations),
        max_abs_dx_mw_before=float(row.max_abs_dx_mw),
        max_abs_dx_mw_after=float(row.max_abs_dx_mw),
        parent=parent,
    )


def _run_tasks(tasks: list[AreaTask], executor: str, workers: int | None, address: str | None) -> list[AreaOutcome]:
    """Every task as one request of the executor `executor` (results in task order); one task runs inline."""
    if not tasks:
        return []
    requests = [Request(key=t.area, method="recover", args=(t,), label=t.area) for t in tasks]
    name = executor if len(tasks) > 1 else "inline"
    n = min(workers or len(tasks), len(tasks)) if name != "inline" else None
    exe = make_executor(name, n, address, target=recovery_task)
    try:
        return exe.run(requests)
    finally:
        exe.close()


def recover(
    inst: Instance,
    tables: dict,
    options: dict | None = None,
    *,
    ac_before: pd.DataFrame | None = None,
    executor: str | None = None,
    workers: int | None = None,
):
    """AC recovery of a clearing's dispatch (module docstring).  `tables`: the clearing's result tables;
    `options`: the options it was cleared with (model options, `relax`, and `executor`, `workers`, `address` for
    where the areas run; `executor`/`workers` here override them, default `inline`); `ac_before`: its AC check
    (`ac_power_flow(...)["areas"]`) if already computed.  Returns a `Recovery`."""
    load_casadi()
    options = options or {}
    opts = _model_options(options)
    executor = executor or options.get("executor") or "inline"
    workers = workers if workers is not None else options.get("workers")
    address = options.get("address")
    ac_kw: dict[str, Any] = {"pi_model": opts.pi_model, "zero_root_q": opts.zero_root_q}
    if ac_before is None:
        ac_before = ac_power_flow(inst, tables, **ac_kw)["areas"]
    status = deliverability(ac_before).set_index("area")
    names = list(inst.areas.name)
    reports: dict[int, AreaRecovery] = {}
    delivered, after_frames = dict(tables), {}
    level: list[tuple[int, str, np.ndarray | None]] = []  # (area, parent name, root voltage) to re-dispatch now
    trees_with_children = []
    for a in top_areas(inst):
        name = names[int(a)]
        if name not in status.index:
            continue
        row = status.loc[name]
        if bool(row.deliverable):
            reports[int(a)] = AreaRecovery(
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
            continue
        level.append((int(a), "", None))
        if len(inst.areas.children(int(a))):
            trees_with_children.append(int(a))
    top_of = inst.areas.top_level()
    while level:
        tasks = []
        known = _with_sub_dso_exchanges(inst, delivered)
        for a, parent, root_vsq in level:
            sub = inst.area_instance(a)
            row = status.loc[names[int(top_of[a])]]
            tasks.append(
                AreaTask(
                    area=names[a],
                    sub=sub,
                    tables=area_tables(sub, known),
                    opts=opts,
                    violations_before=int(row.violations) if not parent else 0,
                    max_abs_dx_mw_before=float(row.max_abs_dx_mw) if not parent else float("nan"),
                    parent=parent,
                    root_vsq_pu=root_vsq,
                )
            )
        log.info("AC recovery of %s ...", ", ".join(t.area for t in tasks))
        outcomes = _run_tasks(tasks, executor, workers, address)
        following = []
        for (a, _, _), out in zip(level, outcomes):  # area order, whatever the completion order
            item = out.recovery
            reports[a] = item
            if out.tables is not None:
                delivered = replace_dispatch(delivered, out.tables)
                if not item.parent:
                    after_frames[item.area] = out.ac_areas
            for c in inst.areas.children(a):
                if out.tables is None:
                    reports[int(c)] = _not_deliverable(
                        names[int(c)],
                        item.area,
                        status.loc[names[int(top_of[a])]],
                        "not attempted: parent not recovered",
                    )
                else:
                    following.append((int(c), item.area, out.child_root_vsq_pu.get(names[int(c)])))
            log.info(
                "%s: %s (%s), violations %d -> %d, extra cost %.2f EUR, %.2f s",
                item.area,
                "recovered" if item.recovered else "not recovered",
                item.status,
                item.violations_before,
                item.violations_after,
                item.extra_cost_eur,
                item.time_s,
            )
        level = sorted(following)
    for a in trees_with_children:  # the certificate of a tree with sub-DSOs: its AC power flow as a whole
        name = names[a]
        tree = [reports[int(c)] for c in inst.subtree(a) if int(c) in reports]
        if all(r.recovered for r in tree):
            after_frames[name] = ac_power_flow(inst, delivered, area_names=[name], **ac_kw)["areas"]
            whole = deliverability(after_frames[name]).iloc[0]
            top = reports[a]
            top.violations_after, top.max_abs_dx_mw_after = int(whole.violations), float(whole.max_abs_dx_mw)
            if not bool(whole.deliverable):
                for r in tree:
                    r.recovered = False
                    r.status += "; the tree as a whole is not AC-deliverable"
        else:
            after_frames.pop(name, None)
    failed = [a for a in trees_with_children if not all(r.recovered for r in _tree(reports, inst, a))]
    if failed:
        delivered = _restore_trees(inst, tables, delivered, failed)
        delivered, after_frames = _recover_whole_trees(
            inst, failed, delivered, status, reports, opts, after_frames, (executor, workers, address)
        )
    ac_after = ac_before
    if after_frames:
        kept = ac_before[~ac_before["area"].isin(list(after_frames))]
        ac_after = pd.concat([kept, *after_frames.values()], ignore_index=True)
    areas = [reports[a] for a in sorted(reports)]
    return Recovery(areas=areas, tables=delivered, ac_before=ac_before, ac_after=ac_after)


def _with_sub_dso_exchanges(inst: Instance, tables: dict) -> dict:
    """`tables` with an `interfaces` row per sub-DSO and period: an integrated clearing models a sub-DSO's
    interface as an ordinary line, so its exchange (the child's export, MW and Mvar) is the line's terminal flow
    at the child root (`lines` table)."""
    ar, br, lines = inst.areas, inst.branches, tables.get("lines")
    iface = tables.get("interfaces")
    subs = [c for c in range(len(ar)) if ar.parent[c] > 0 and ar.interface[c] >= 0]
    if not subs or lines is None or len(lines) == 0 or iface is None:
        return tables
    frames = [iface]
    for c in subs:
        if (iface["area"] == ar.name[c]).any():
            continue
        e = int(ar.interface[c])
        end = "to" if br.t[e] == ar.root_bus[c] else "from"
        rows = lines[lines["edge"] == br.id[e]].drop_duplicates("period")
        frames.append(
            pd.DataFrame(
                {
                    "area": ar.name[c],
                    "period": rows["period"].to_numpy(),
                    "export_mw": rows[f"p_{end}_mw"].to_numpy(float),
                    "export_mvar": rows[f"q_{end}_mvar"].to_numpy(float),
                }
            )
        )
    return {**tables, "interfaces": pd.concat(frames, ignore_index=True)}


def _tree(reports: dict[int, AreaRecovery], inst: Instance, a: int) -> list[AreaRecovery]:
    return [reports[int(c)] for c in inst.subtree(a) if int(c) in reports]


def _restore_trees(inst: Instance, cleared: dict, delivered: dict, trees: list[int]) -> dict:
    """`delivered` with the cleared rows of every area of the trees `trees` (a tree with sub-DSOs is delivered
    whole or not at all)."""
    out = delivered
    for a in trees:
        for c in inst.subtree(a):
            out = replace_dispatch(out, area_tables(inst.area_instance(int(c)), cleared))
    return out


def _recover_whole_trees(inst, trees, delivered, status, reports, opts, after_frames, where):
    """Fallback for trees with sub-DSOs whose parent-first re-dispatch failed: the whole tree as one exact AC
    program (`Instance.area_instance(a, with_descendants=True)`: the sub-DSO interfaces are ordinary lines, so
    the exchanges between parent and children may move; binaries and the T–D exchange stay fixed).  The area
    reports of a recovered tree say so; the top area carries the tree's extra cost."""
    names = list(inst.areas.name)
    tasks = []
    for a in trees:
        sub = inst.area_instance(a, with_descendants=True)
        row = status.loc[names[a]]
        tasks.append(
            AreaTask(names[a], sub, area_tables(sub, delivered), opts, int(row.violations), float(row.max_abs_dx_mw))
        )
    log.info("AC recovery of the whole trees of %s ...", ", ".join(t.area for t in tasks))
    for a, out in zip(trees, _run_tasks(tasks, *where)):
        item = out.recovery
        if out.tables is None:
            reports[a].status += f"; as one tree: {item.status}, not recovered"
            continue
        delivered = replace_dispatch(delivered, out.tables)
        after_frames[names[a]] = out.ac_areas
        item.status = f"{item.status} (the whole tree, sub-DSO exchanges free)"
        reports[a] = item
        for c in inst.subtree(a)[1:]:
            r = reports.get(int(c))
            if r is not None:
                r.recovered, r.status = True, f"recovered with the whole tree of {names[a]}"
                r.extra_cost_eur, r.violations_after, r.max_abs_dx_mw_after = 0.0, 0, 0.0
    return delivered, after_frames
