"""The four TSO–DSO coordination dilemmas as reproducible scenarios on the built-in example.

    python examples/dilemmas.py [--scenario 1|2|3|4|all] [--json]

1. Conflict resolution between operators: the TSO wants an activation that would overload a D line.
2. Self-healing: a DSO relieves its own congestion with its own resources (and needs slack without them).
3. Sharing charges for mutually beneficial actions: K = K^T + K^D (docs/model.md §8).
4. Recursive integration across three levels: TSO → DSO-201 → sub-DSO DSO-203.

Every scenario is built on the built-in example (`tdmarket/examples/builtin/`, see its README): the congested D line
22 (202–203, 3 MVA) of area DSO-201 with the cheap D orders 9 (node 203) and 10 (node 204) behind it.  Variants are
written with `write_instance` into a temporary folder and read back, so they pass the same input validation as any
SmartNet folder.  Everything runs in-process (`executor="inline"`) and is deterministic.

Each `scenarioN()` returns a dict: `title`, `text` (lines), `tables` (list of (title, headers, rows)) and `figures`
(JSON-serialisable numbers, the ones the tests check).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

import tdmarket
from tdmarket.api import gap_to
from tdmarket.examples import builtin_path
from tdmarket.formulations.options import ModelOptions
from tdmarket.io import read
from tdmarket.io.smartnet import write_instance
from tdmarket.market.cost_sharing import cost_sharing
from tdmarket.model.instance import Instance
from tdmarket.operators.agents import DSO
from tdmarket.reporting.ac_check import ac_check, ac_power_flow

AREA = "DSO-201"  # the area with the congested line
LINE = 22  # D line 202–203, 3 MVA
BEHIND = (203, 204)  # nodes behind line 22 (QtBids 9 and 10)
LOAD_NODE = 204  # node whose load grows in the congested variant
LOAD_FACTOR = 5.0  # ×3 (the first guess) only touches the rating in t=2; ×5 overloads it in every period
SUB_AREA = "DSO-203"  # the sub-DSO of scenario 4 (beyond line 22)
# hand-worked figures to 1e-6: the cut exchange runs to a tighter certified gap than the default 1e-4
CLEAR = {"executor": "inline", "gap": 1e-7}


# ------------------------------------------------------------------------------------------------ instances
def builtin() -> Instance:
    return read(builtin_path())


def _through_folder(inst, name: str):
    """Write `inst` into a temporary SmartNet folder and read it back (validates the variant)."""
    with tempfile.TemporaryDirectory(prefix="tdmarket-dilemma-") as tmp:
        return read(write_instance(inst, pathlib.Path(tmp) / name))


def congested_variant(factor: float = LOAD_FACTOR, *, own_orders: bool = True):
    """The built-in example with the load (P and Q) of node 204 × `factor` in every period, so that the
    base-case flow overloads line 22.  `own_orders=False` also removes the orders behind line 22 (QtBids 9, 10)."""
    inst = builtin()
    p, q = inst.p_inj.copy(), inst.q_inj.copy()
    i = inst.bus_index([LOAD_NODE])[0]
    p[i] *= factor
    q[i] *= factor
    inst = dataclasses.replace(inst, p_inj=p, q_inj=q)
    name = f"builtin-load{LOAD_NODE}x{factor:g}"
    if not own_orders:
        keep = ~np.isin(inst.buses.id, BEHIND)
        orders = inst.orders.subset_by_bus(keep, np.arange(len(inst.buses)))
        inst = dataclasses.replace(inst, orders=orders)
        name += "-no-local-orders"
    return _through_folder(inst, name)


def three_level_instance():
    """The built-in example with `SubAreas.csv` = "Edge,Area / 22,DSO-203": a sub-DSO below DSO-201."""
    with tempfile.TemporaryDirectory(prefix="tdmarket-dilemma-") as tmp:
        folder = pathlib.Path(tmp) / "builtin-three-levels"
        shutil.copytree(builtin_path(), folder, ignore=shutil.ignore_patterns("README.md"))
        (folder / "SubAreas.csv").write_text(f"Edge,Area\n{LINE},{SUB_AREA}\n", encoding="utf-8")
        return read(folder)


# ------------------------------------------------------------------------------------------------ measures
def base_exchanges(inst) -> dict[str, np.ndarray]:
    """x^0 of every top-level DSO (docs/model.md §7), as each DSO computes it from its own area."""
    opts = ModelOptions()
    return {
        inst.areas.name[a]: np.asarray(DSO(inst.area_instance(a), opts, "TSO").base_exchange().export_mw)
        for a in range(1, inst.n_areas)
        if inst.areas.parent[a] == 0
    }


def line_loading_ac(inst, tables: dict, edge: int = LINE, area: str = AREA) -> np.ndarray:
    """AC loading (fraction of the rating) of one D line per period, on the dispatched injections."""
    lines = ac_power_flow(inst, tables, area_names=area)["lines"]
    sel = lines[lines.edge == edge].sort_values("period")
    return sel.loading.to_numpy(float)


def mw_behind(inst, tables: dict) -> np.ndarray:
    """Accepted MW of the orders behind line 22 (nodes 203, 204) per period."""
    b = tables["bids"]
    sel = b[b.node.isin(BEHIND)]
    return sel.groupby("period").p_mw.sum().reindex(inst.periods, fill_value=0.0).to_numpy(float)


def area_slack(inst, tables: dict, area: str = AREA) -> np.ndarray:
    """Σ |slack P| (MW) at the area's buses per period."""
    b = tables["buses"]
    sel = b[b.area == area]
    return sel.slack_p_mw.abs().groupby(sel.period).sum().reindex(inst.periods, fill_value=0.0).to_numpy(float)


def area_activation_cost(inst, tables: dict, area: str = AREA) -> float:
    """Σ π_s |p_s| Δ of the area's orders (€)."""
    seg = tables["segments"]
    areas = np.asarray(inst.areas.name, dtype=object)[inst.buses.area[inst.bus_index(seg.node.to_numpy())]]
    return float(seg.cost_eur[areas == area].sum())


def area_slack_penalty(tables: dict, area: str = AREA) -> float:
    ops = tables["settlement_operators"]
    return float(ops.loc[ops.operator == area, "slack_penalty_eur"].sum())


# ------------------------------------------------------------------------------------------------ helpers
def _per(values, digits: int = 2) -> str:
    return "/".join(_f(v, digits) for v in values)


def _f(v: float, digits: int = 2) -> str:
    """Fixed-point text without a negative zero."""
    return f"{round(float(v), digits) + 0.0:.{digits}f}"


def _floats(a) -> list[float]:
    return [float(v) for v in np.asarray(a, float)]


# ------------------------------------------------------------------------------------------------ scenarios
def scenario1() -> dict:
    """Conflict resolution: `centralized-as-market` vs `hierarchical` vs `common` on the built-in example."""
    inst = builtin()
    figures, rows = {}, []
    for scheme in ("centralized-as-market", "hierarchical", "common"):
        res = tdmarket.clear(inst, scheme=scheme, **CLEAR)
        _, ac = ac_check(inst, res.tables)
        load = line_loading_ac(inst, res.tables)
        behind = mw_behind(inst, res.tables)
        figures[scheme] = {
            "total_cost_eur": res.total_cost,
            "line22_loading_ac": _floats(load),
            "mw_behind_line22": _floats(behind),
            "ac_total_violations": ac["total_violations"],
            "ac_thermal_violations": ac["thermal_violations"],
            "ac_worst_loading": ac["worst_loading"],
            "max_abs_dx_mw": ac["max_abs_dx_mw"],
            "slack_mw": float(res.summary["slack"]["p_mw"]),
        }
        rows.append(
            [
                scheme,
                _f(res.total_cost, 3),
                _per(load, 3),
                _per(behind),
                str(ac["total_violations"]),
                f"{ac['worst_loading']:.3f}",
                f"{ac['max_abs_dx_mw']:.3f}",
            ]
        )
    cam, hie, com = (figures[s] for s in ("centralized-as-market", "hierarchical", "common"))
    text = [
        "The TSO wants the cheap D orders behind line 22 (QtBids 9 @15 and 10 @18-24 €/MWh, 8.5 MW in t=1).",
        f"centralized-as-market ignores the D grid: it accepts {cam['mw_behind_line22'][0]:.2f} MW behind the line "
        f"in t=1 and the AC check finds line 22 at {max(cam['line22_loading_ac']):.0%}",
        f"  ({cam['ac_total_violations']} AC violations, interface deviation up to {cam['max_abs_dx_mw']:.2f} MW).",
        "hierarchical: DSO-201's residual supply curve offers only what its grid can carry, so the TSO never asks for",
        f"  the overload (line 22 at {max(hie['line22_loading_ac']):.1%} in AC), at {hie['total_cost_eur']:.3f} € "
        f"against {com['total_cost_eur']:.3f} € for common (joint T&D",
        f"  optimum, same dispatch); the {cam['total_cost_eur']:.2f} € of centralized-as-market look cheaper but are "
        "not deliverable.",
    ]
    headers = [
        "scheme",
        "cost €",
        "L22 AC loading t1/t2/t3",
        "MW behind L22 t1/t2/t3",
        "AC viol.",
        "worst load",
        "max|Δx| MW",
    ]
    return {
        "title": "1. Conflict resolution between operators",
        "text": text,
        "tables": [("", headers, rows)],
        "figures": figures,
    }


def scenario2(factor: float = LOAD_FACTOR) -> dict:
    """Self-healing: under `shared-balancing` the DSO relieves line 22 with its own orders behind it."""
    cases = {}
    inst = congested_variant(factor)
    no_action = line_loading_ac(inst, {})  # every order at 0, no slack: the base flow
    ia = inst.areas.name.index(AREA)
    fixed_p = inst.p_inj[inst.buses.area == ia].sum(axis=0)
    rows = [["no action (base flow)", _per(no_action, 3), "-", "-", "-"]]
    cost_rows = []
    for label, own in (("with own orders", True), ("without own orders", False)):
        v = inst if own else congested_variant(factor, own_orders=False)
        res = tdmarket.clear(v, scheme="shared-balancing", **CLEAR)
        ifc = res.tables["interfaces"]
        x0 = ifc[ifc.area == AREA].sort_values("period").export_mw.to_numpy(float)
        load = line_loading_ac(v, res.tables)
        behind = mw_behind(v, res.tables)
        slack = area_slack(v, res.tables)
        k = area_activation_cost(v, res.tables)
        pen = area_slack_penalty(res.tables)
        cases[label] = {
            "x0_mw": _floats(x0),
            "mw_behind_line22": _floats(behind),
            "slack_mw": _floats(slack),
            "activation_cost_eur": k,
            "slack_penalty_eur": pen,
            "line22_loading_ac": _floats(load),
            "total_cost_eur": res.total_cost,
        }
        rows.append([label, _per(load, 3), _per(x0), _per(behind), _per(slack)])
        cost_rows.append([label, _f(k), _f(pen), _f(res.total_cost)])
    w, wo = cases["with own orders"], cases["without own orders"]
    text = [
        f"Variant: node {LOAD_NODE}'s load × {factor:g}. With no action the base flow loads line 22 to "
        f"{_per(no_action)} (AC), so DSO-201's",
        f"  base-case exchange x^0 = {_per(w['x0_mw'])} MW imports less than its fixed load {_per(fixed_p)} MW.",
        "shared-balancing holds the exchange at x^0: DSO-201 must close that gap behind the line by itself.",
        f"With its own orders it activates {_per(w['mw_behind_line22'])} MW of QtBid 9 (@15 €/MWh) for "
        f"{w['activation_cost_eur']:.2f} €, with no slack",
        f"  and line 22 at {max(w['line22_loading_ac']):.1%}; without them it sheds {_per(wo['slack_mw'])} MW as "
        f"slack ({wo['slack_penalty_eur']:.0f} € at κ = 1e4 €/MWh).",
    ]
    headers = ["case", "L22 AC loading t1/t2/t3", "x^0 MW t1/t2/t3", "MW behind L22", "DSO-201 slack MW"]
    cost_headers = ["case", "DSO-201 activations €", "DSO-201 slack penalty €", "total cost €"]
    figures = {
        "factor": factor,
        "no_action_line22_loading_ac": _floats(no_action),
        "fixed_p_mw": _floats(fixed_p),
        **{k.replace(" ", "_"): v for k, v in cases.items()},
    }
    return {
        "title": "2. Self-healing: a DSO relieves its own congestion",
        "text": text,
        "tables": [("", headers, rows), ("", cost_headers, cost_rows)],
        "figures": figures,
    }


def scenario3(factor: float = LOAD_FACTOR) -> dict:
    """Cost sharing K = K^T + K^D on the congested variant under `hierarchical`."""
    inst = congested_variant(factor)
    x0 = base_exchanges(inst)
    res = tdmarket.clear(inst, scheme="hierarchical", **CLEAR)
    cs = cost_sharing(inst, res.tables, x0)
    behind = mw_behind(inst, res.tables)
    rows = [
        [
            r.area,
            str(int(r.period)),
            _f(r.base_export_mw, 3),
            _f(r.export_mw, 3),
            _f(r.interface_price_eur_mwh),
            _f(r.K_eur),
            _f(r.K_T_eur),
            _f(r.K_D_eur),
        ]
        for r in cs.itertuples()
    ]
    tot = cs.groupby("area", sort=True).first()
    has_uplift = "uplift_area_eur" in cs
    tot_rows = [
        [
            a,
            _f(r.K_area_eur),
            _f(r.K_T_area_eur),
            _f(r.K_D_area_eur),
            *([_f(r.uplift_area_eur), _f(r.uplift_T_eur), _f(r.uplift_D_eur)] if has_uplift else []),
        ]
        for a, r in tot.iterrows()
    ]
    a1 = cs[cs.area == AREA].sort_values("period")
    t1 = a1.iloc[0]
    sign = (
        "K^D < 0: the orders (15-24 €/MWh) are cheaper than π, so the TSO's payment for the extra export covers "
        "the relief too"
        if t1.K_D_eur < 0
        else "K^D > 0: the DSO pays the part of the activation the exchange does not"
    )
    text = [
        f"Congested variant of scenario 2 under hierarchical: DSO-201 activates {_per(behind)} MW behind line 22. One "
        "activation",
        "  serves both: the first MW replace what the grid cannot import (DSO's need, already in x^0), the rest is "
        "export (TSO's).",
        "Sharing (docs/model.md §8): the TSO pays the change of exchange at π, K^T = π(x − x^0)Δ; the DSO the rest, "
        "K^D = K − K^T.",
        f"  DSO-201, t={int(t1.period)}: K = {t1.K_eur:.2f} €, K^T = {t1.interface_price_eur_mwh:.2f} × "
        f"({t1.export_mw:.3f} − ({t1.base_export_mw:.3f})) = {t1.K_T_eur:.2f} €, K^D = {t1.K_D_eur:.2f} €.",
        f"  {sign}.",
        "Uplift (lost opportunity costs of the area's D participants) is split |ΣK^T| : |ΣK^D| (all to the DSO if "
        "both are 0).",
    ]
    headers = ["area", "t", "x^0 MW", "x MW", "π €/MWh", "K €", "K^T €", "K^D €"]
    tot_headers = ["area", "ΣK €", "ΣK^T €", "ΣK^D €"] + (["uplift €", "→ TSO €", "→ DSO €"] if has_uplift else [])
    figures = {
        "factor": factor,
        "total_cost_eur": res.total_cost,
        "mw_behind_line22": _floats(behind),
        "x0_mw": {k: _floats(v) for k, v in x0.items()},
        "rows": [
            {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
            for r in cs.to_dict(orient="records")
        ],
    }
    return {
        "title": "3. Sharing charges for mutually beneficial actions",
        "text": text,
        "tables": [("per area and period", headers, rows), ("per area", tot_headers, tot_rows)],
        "figures": figures,
    }


def message_flow(messages: list[dict]) -> list[dict]:
    """Messages grouped by (stage, kind, from, to) in order of first appearance, with counts and bytes."""
    flow: dict[tuple, dict] = {}
    for k, m in enumerate(messages):
        key = (m["stage"], m["kind"], m["from"], m["to"])
        e = flow.setdefault(
            key, {"stage": key[0], "kind": key[1], "from": key[2], "to": key[3], "first": k, "count": 0, "bytes": 0}
        )
        e["count"] += 1
        e["bytes"] += int(m.get("bytes", 0))
    return list(flow.values())


def scenario4() -> dict:
    """Three levels: TSO → DSO-201 → DSO-203 (beyond line 22), `hierarchical` vs `common`."""
    inst = three_level_instance()
    hie = tdmarket.clear(inst, scheme="hierarchical", **CLEAR)
    com = tdmarket.clear(inst, scheme="common", **CLEAR)
    gap = gap_to(hie, com)
    flow = message_flow(hie.messages)
    ifc = hie.tables["interfaces"]
    sub = ifc[ifc.area == SUB_AREA].sort_values("period")
    sub_rows = [
        [
            str(int(r.period)),
            f"{r.export_mw:.3f}",
            f"{r.interface_price_eur_mwh:.2f}",
            f"{r.dso_marginal_cost_eur_mwh:.2f}",
        ]
        for r in sub.itertuples()
    ]
    flow_rows = [[e["stage"], e["kind"], f"{e['from']} → {e['to']}", str(e["count"]), str(e["bytes"])] for e in flow]
    parent = dict(zip(inst.areas.name, [inst.areas.name[p] if p >= 0 else "" for p in inst.areas.parent]))
    kink = [
        int(p)
        for p, pr, mc in zip(sub.period, sub.interface_price_eur_mwh, sub.dso_marginal_cost_eur_mwh)
        if abs(pr - mc) > 0.01
    ]
    text = [
        f"SubAreas.csv 'Edge,Area / {LINE},{SUB_AREA}': the feeder beyond line 22 (nodes 203, 204, QtBids 9, 10) is a "
        f"sub-DSO of {parent[SUB_AREA]}.",
        f"Curves go bottom-up ({SUB_AREA} → {AREA} → TSO, {AREA} using {SUB_AREA}'s curve in place of its network); "
        "the TSO clears",
        f"  (and refines with cuts); schedules and prices go top-down (TSO → {AREA} → {SUB_AREA}).",
        f"hierarchical {hie.total_cost:.2f} € vs common {com.total_cost:.2f} €, gap {gap:+.1e} (curve mode leaves "
        "the child's root Q, V free).",
        f"{SUB_AREA} exports up to line 22's 3 MVA and is paid {AREA}'s DLMP at node 203"
        + (
            f"; in t={','.join(map(str, kink))} the exchange\n  sits at a kink of its curve, so that price differs "
            "from its own marginal cost."
            if kink
            else "."
        ),
    ]
    cost_rows = [["hierarchical", f"{hie.total_cost:.4f}", f"{gap:+.2e}"], ["common", f"{com.total_cost:.4f}", "0"]]
    figures = {
        "hierarchical_cost_eur": hie.total_cost,
        "common_cost_eur": com.total_cost,
        "gap": gap,
        "parent": parent,
        "message_flow": flow,
        "sub_dso": {
            "periods": [int(p) for p in sub.period],
            "export_mw": _floats(sub.export_mw),
            "price_eur_mwh": _floats(sub.interface_price_eur_mwh),
            "marginal_cost_eur_mwh": _floats(sub.dso_marginal_cost_eur_mwh),
        },
    }
    return {
        "title": "4. Recursive integration across three levels",
        "text": text,
        "tables": [
            ("cost", ["scheme", "cost €", "gap"], cost_rows),
            (
                "message flow (grouped, in order of first appearance)",
                ["stage", "kind", "from → to", "count", "bytes"],
                flow_rows,
            ),
            (
                f"{SUB_AREA} (exchange into line 22 and its price)",
                ["t", "export MW", "price €/MWh", "own marginal €/MWh"],
                sub_rows,
            ),
        ],
        "figures": figures,
    }


SCENARIOS = {"1": scenario1, "2": scenario2, "3": scenario3, "4": scenario4}


# ------------------------------------------------------------------------------------------------ output
def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Aligned plain-text table: text columns left-aligned, numeric columns right-aligned."""
    cols = list(zip(headers, *rows)) if rows else [(h,) for h in headers]
    width = [max(len(str(c)) for c in col) for col in cols]

    def numeric(j):
        try:
            return all(float(str(r[j]).split("/")[0]) is not None for r in rows if str(r[j]) not in ("", "-"))
        except ValueError:
            return False

    right = [numeric(j) for j in range(len(headers))]
    fmt = lambda row: "  ".join(
        str(c).rjust(w) if r else str(c).ljust(w)  # noqa: E731
        for c, w, r in zip(row, width, right)
    ).rstrip()
    return "\n".join([fmt(headers), fmt(["-" * w for w in width])] + [fmt(r) for r in rows])


def render(result: dict) -> str:
    out = [result["title"], "=" * len(result["title"]), *result["text"]]
    for title, headers, rows in result["tables"]:
        out.append("")
        if title:
            out.append(title + ":")
        out.append(format_table(headers, rows))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", choices=["1", "2", "3", "4", "all"], default="all")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of text")
    args = ap.parse_args(argv)
    keys = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    t0 = time.perf_counter()
    results = {}
    for k in keys:
        results[k] = SCENARIOS[k]()
        if not args.json:
            print(render(results[k]), end="\n\n", flush=True)
    if args.json:
        print(json.dumps({f"scenario{k}": r["figures"] for k, r in results.items()}, indent=1, allow_nan=False))
    else:
        print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
