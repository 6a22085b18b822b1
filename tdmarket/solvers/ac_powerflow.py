"""AC verification of a distribution dispatch (docs/model.md §5(f) step 4).

It sits with the solvers (a Newton–Raphson solve of the AC power flow equations) so that an operator can check
its own dispatch (`tdmarket.operators.ac_dispatch`); `tdmarket.reporting.ac_check` re-exports it.

`ac_check(inst, tables)` runs a Newton–Raphson AC power flow (pandapower) on every distribution tree and
period, with exactly the injections the clearing dispatched, and reports how far the AC state is from the
cleared one: voltage and thermal violations, AC losses and the interface deviation Δx = x^AC − x*.

The network of each tree (base, π-model as impedance plus shunts, fused zero-impedance branches, loads, slack
bus) is described and built in `tdmarket.solvers.ac_network`; the clearing tables are read into arrays in
`tdmarket.solvers.ac_inputs`.

Branch terminal flows are recomputed from the solved complex voltages with the π-model of `ac_network` (not taken from
pandapower's result tables), losses are Σ (p^fr + p^to) over the tree's branches, and the loading of a rated
branch is max(|s^fr|, |s^to|) / S as in the clearing's ``lines`` table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.instance import Instance
from .ac_inputs import Dispatch, read_dispatch
from .ac_network import (
    PF_TOLERANCES,
    Tree,
    build_net,
    load_pandapower,
    make_tree,
    newton_power_flow,
    newton_system,
    run_power_flow,
    top_areas,
    zero_branch_flows,
)

# the private names this module had before the network code moved to `ac_network` (tests use them)
_pandapower, _make_tree, _build_net, _run, _top_areas = load_pandapower, make_tree, build_net, run_power_flow, top_areas

V_TOL = 1e-6  # p.u.²: voltage bound tolerance
S_TOL = 1e-6  # loading tolerance (fraction of the rating)

COLUMNS = [
    "area",
    "period",
    "n_buses",
    "n_lines",
    "converged",
    "pf_tolerance_mva",
    "root_vm_pu",
    "v_min_pu",
    "v_max_pu",
    "n_voltage_violations",
    "max_voltage_excess_pu2",
    "worst_voltage_node",
    "max_loading",
    "n_overloads",
    "worst_line_edge",
    "losses_mw",
    "soc_losses_mw",
    "x_ac_mw",
    "x_star_mw",
    "dx_mw",
    "y_ac_mvar",
    "y_star_mvar",
    "dy_mvar",
    "max_soc_gap",
]
BUS_COLUMNS = ["area", "node", "period", "vm_pu", "va_degree", "vsq_pu", "vsq_min", "vsq_max", "excess_pu2"]
LINE_COLUMNS = [
    "area",
    "edge",
    "period",
    "p_from_mw",
    "q_from_mvar",
    "p_to_mw",
    "q_to_mvar",
    "loss_mw",
    "rating_mva",
    "loading",
]

__all__ = ["COLUMNS", "PF_TOLERANCES", "S_TOL", "V_TOL", "ac_check", "ac_power_flow", "summarise"]


@dataclass
class _Limits:
    """Per tree: branch ratings (MVA; `rated` where finite and positive) and squared-voltage bounds of its buses."""

    rating: np.ndarray
    rated: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray


def _limits(inst: Instance, tree: Tree) -> _Limits:
    rating = inst.branches.rating[tree.line].astype(float)
    rated = np.isfinite(rating) & (rating > 0)
    return _Limits(rating, rated, inst.buses.vsq_min[tree.bus], inst.buses.vsq_max[tree.bus])


def _selected_trees(inst: Instance, area_names) -> np.ndarray:
    """Top areas whose tree contains one of `area_names` (all with None); unknown names are a KeyError."""
    top = top_areas(inst)
    if area_names is not None:
        wanted = {area_names} if isinstance(area_names, str) else set(area_names)
        unknown = wanted - set(inst.areas.name)
        if unknown:
            raise KeyError(f"unknown area(s): {', '.join(sorted(unknown))}")
        top = np.array([a for a in top if wanted & {inst.areas.name[c] for c in inst.subtree(a)}], dtype=int)
    return top


def _set_period(inst: Instance, tree: Tree, d: Dispatch, t: int, period) -> tuple[np.ndarray, np.ndarray, float]:
    """Put period t's injections and root voltage on the tree's network; returns (p_bus, q_bus, vm_root)."""
    net = tree.net
    p_bus, q_bus = d.P[tree.bus, t].copy(), d.Q[tree.bus, t].copy()
    for loc, c in zip(tree.child_root, tree.child_area):  # boundary child roots inject their export
        xc, yc = d.iface.get((inst.areas.name[c], int(period)), (0.0, 0.0)) if c >= 0 else (0.0, 0.0)
        p_bus[loc], q_bus[loc] = xc, (0.0 if np.isnan(yc) else yc)
    w_root = d.W[tree.bus[tree.root], t]
    vm_root = float(np.sqrt(w_root)) if np.isfinite(w_root) and w_root > 0 else 1.0
    if net is not None:
        net.load["p_mw"] = -p_bus
        net.load["q_mvar"] = -q_bus
        net.ext_grid.loc[net.ext_grid.index[0], "vm_pu"] = vm_root
    return p_bus, q_bus, vm_root


def _terminal_flows(tree: Tree, V, w, s_ext: complex, p_bus, q_bus) -> tuple[np.ndarray, np.ndarray]:
    """Terminal outflows s = V conj(Y V) at both ends of every branch; fused zero-impedance branches from the
    nodal balances."""
    n, m = len(tree.bus), len(tree.line)
    nz = ~tree.zero
    Vf, Vt = V[tree.f], V[tree.t]
    s_fr = np.zeros(m, complex)
    s_to = np.zeros(m, complex)
    s_fr[nz] = Vf[nz] * np.conj(tree.yff[nz] * Vf[nz] + tree.yft[nz] * Vt[nz])
    s_to[nz] = Vt[nz] * np.conj(tree.ytf[nz] * Vf[nz] + tree.ytt[nz] * Vt[nz])
    if tree.zero.any():
        s_inj = p_bus + 1j * q_bus
        s_inj[tree.root] += s_ext
        s_out = np.zeros(n, complex)
        np.add.at(s_out, tree.f[nz], s_fr[nz])
        np.add.at(s_out, tree.t[nz], s_to[nz])
        sz = zero_branch_flows(tree, V, s_inj, s_out)
        zi = np.flatnonzero(tree.zero)
        s_fr[zi] = sz - 1j * tree.bc_zero[zi] * w[tree.f[zi]]
        s_to[zi] = -sz - 1j * tree.bc_zero[zi] * w[tree.t[zi]]
    return s_fr, s_to


def _bus_frame(inst: Instance, tree: Tree, lim: _Limits, period, vm, va, excess) -> pd.DataFrame:
    """AC voltage of every tree bus in one period (columns `BUS_COLUMNS`)."""
    return pd.DataFrame(
        {
            "area": tree.name,
            "node": inst.buses.id[tree.bus],
            "period": int(period),
            "vm_pu": vm,
            "va_degree": va,
            "vsq_pu": vm**2,
            "vsq_min": lim.vmin,
            "vsq_max": lim.vmax,
            "excess_pu2": excess,
        }
    )


def _line_frame(inst: Instance, tree: Tree, lim: _Limits, period, s_fr, s_to, loading) -> pd.DataFrame:
    """AC terminal flows of every tree branch in one period (columns `LINE_COLUMNS`)."""
    return pd.DataFrame(
        {
            "area": tree.name,
            "edge": inst.branches.id[tree.line],
            "period": int(period),
            "p_from_mw": s_fr.real,
            "q_from_mvar": s_fr.imag,
            "p_to_mw": s_to.real,
            "q_to_mvar": s_to.imag,
            "loss_mw": (s_fr + s_to).real,
            "rating_mva": lim.rating,
            "loading": loading,
        }
    )


def _check_period(inst: Instance, tree: Tree, lim: _Limits, d: Dispatch, t: int, period, pp):
    """AC power flow of one tree in one period: its `areas` row, and its bus and line frames (None if the power
    flow did not converge)."""
    b, br = inst.buses, inst.branches
    net, n, m = tree.net, len(tree.bus), len(tree.line)
    p_bus, q_bus, vm_root = _set_period(inst, tree, d, t, period)
    x_star, y_star = d.iface.get((tree.name, int(period)), (np.nan, np.nan))
    gaps = d.gap[tree.line, t]
    if pp is None:
        assert tree.system is not None
        V, s_ext, tol = newton_power_flow(tree.system, p_bus + 1j * q_bus, vm_root)
    else:
        tol = run_power_flow(net, pp)
    row = {
        "area": tree.name,
        "period": int(period),
        "n_buses": n,
        "n_lines": m,
        "converged": bool(np.isfinite(tol)),
        "pf_tolerance_mva": tol,
        "root_vm_pu": vm_root,
        "x_star_mw": x_star,
        "y_star_mvar": y_star,
        "max_soc_gap": float(np.nanmax(gaps)) if np.isfinite(gaps).any() else np.nan,
        "soc_losses_mw": float(np.nansum(d.loss[tree.line, t])) if m else 0.0,
    }
    if not row["converged"]:
        return row, None, None
    if pp is not None:
        assert net is not None  # the pandapower path built it
        vm = net.res_bus["vm_pu"].to_numpy(float)
        va = net.res_bus["va_degree"].to_numpy(float)
        V = vm * np.exp(1j * np.deg2rad(va))
        ext = net.res_ext_grid.iloc[0]
        s_ext = complex(ext["p_mw"], ext["q_mvar"])
    else:
        vm, va = np.abs(V), np.rad2deg(np.angle(V))
    w = vm**2
    excess = np.maximum(np.maximum(lim.vmin - w, w - lim.vmax), 0.0)
    viol = excess > V_TOL
    s_fr, s_to = _terminal_flows(tree, V, w, s_ext, p_bus, q_bus)
    loading = np.zeros(m)
    loading[lim.rated] = np.maximum(np.abs(s_fr[lim.rated]), np.abs(s_to[lim.rated])) / lim.rating[lim.rated]
    over = loading > 1.0 + S_TOL
    x_ac, y_ac = -s_ext.real, -s_ext.imag
    row.update(
        {
            "v_min_pu": float(vm.min()),
            "v_max_pu": float(vm.max()),
            "n_voltage_violations": int(viol.sum()),
            "max_voltage_excess_pu2": float(excess.max(initial=0.0)),
            "worst_voltage_node": int(b.id[tree.bus[int(np.argmax(excess))]]) if viol.any() else -1,
            "max_loading": float(loading.max(initial=0.0)),
            "n_overloads": int(over.sum()),
            "worst_line_edge": int(br.id[tree.line[int(np.argmax(loading))]]) if m else -1,
            "losses_mw": float((s_fr + s_to).real.sum()),
            "x_ac_mw": x_ac,
            "dx_mw": x_ac - x_star,
            "y_ac_mvar": y_ac,
            "dy_mvar": y_ac - y_star,
        }
    )
    return (
        row,
        _bus_frame(inst, tree, lim, period, vm, va, excess),
        _line_frame(inst, tree, lim, period, s_fr, s_to, loading),
    )


def _assemble(rows: list[dict], bus_frames: list, line_frames: list) -> dict[str, pd.DataFrame]:
    """The `areas`, `buses` and `lines` tables (typed, empty with their columns when nothing converged)."""
    areas = pd.DataFrame(rows, columns=COLUMNS)
    areas["converged"] = areas["converged"].astype(bool)
    for c in ("n_voltage_violations", "n_overloads", "worst_voltage_node", "worst_line_edge"):
        areas[c] = areas[c].fillna(-1 if c.startswith("worst") else 0).astype(int)
    buses = pd.concat(bus_frames, ignore_index=True) if bus_frames else pd.DataFrame(columns=BUS_COLUMNS)
    lines = pd.concat(line_frames, ignore_index=True) if line_frames else pd.DataFrame(columns=LINE_COLUMNS)
    return {"areas": areas, "buses": buses, "lines": lines}


def ac_power_flow(
    inst: Instance,
    tables: dict[str, pd.DataFrame],
    *,
    area_names=None,
    pi_model: bool = True,
    zero_root_q: bool = False,
    engine: str = "pandapower",
) -> dict[str, pd.DataFrame]:
    """AC power flow of every distribution tree and period on the dispatched injections (docs/model.md §5(f)).

    `engine`: "pandapower" (default: Newton–Raphson of pandapower on the network of `build_net`) or "newton"
    (`newton_power_flow`: the same equations, flat start and tolerances, in scipy.sparse without building a
    pandapower network; about ten times faster on a 50-bus area, used by the AC recovery's certificate).

    Returns the tables ``areas`` (one row per (area, period), columns `COLUMNS`), ``buses`` (AC voltage of every
    tree bus: area, node, period, vm_pu, va_degree, vsq_pu, vsq_min, vsq_max, excess_pu2) and ``lines``
    (AC terminal flows of every tree branch: area, edge, period, p_from_mw, q_from_mvar, p_to_mw, q_to_mvar,
    loss_mw, rating_mva, loading).  Arguments as for `ac_check`.
    """
    if engine not in ("pandapower", "newton"):
        raise ValueError(f"unknown power flow engine {engine!r}")
    pp = load_pandapower() if engine == "pandapower" else None
    top = _selected_trees(inst, area_names)
    d = read_dispatch(inst, tables, zero_root_q)
    rows, bus_frames, line_frames = [], [], []
    for a in top:
        tree = make_tree(inst, int(a), pi_model)
        if pp is not None:
            tree.net = build_net(tree)
        else:
            tree.system = newton_system(tree)
        lim = _limits(inst, tree)
        for t, period in enumerate(inst.periods):
            row, buses, lines = _check_period(inst, tree, lim, d, t, period, pp)
            rows.append(row)
            if buses is not None:
                bus_frames.append(buses)
                line_frames.append(lines)
    return _assemble(rows, bus_frames, line_frames)


def ac_check(
    inst: Instance,
    tables: dict[str, pd.DataFrame],
    *,
    area_names=None,
    pi_model: bool = True,
    zero_root_q: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """AC verification of a clearing's distribution dispatch (docs/model.md §5(f) step 4).

    `tables` are the clearing's result tables (`bids`, `buses`, `interfaces`, `lines`).  `area_names` limits the
    check to some areas (a sub-DSO name selects the tree that contains it).  `pi_model=False` drops charging,
    taps and shunts and `zero_root_q=True` zeroes root Q injections, to match a clearing run with those options.

    Returns one row per (area, period) (columns `COLUMNS`; metrics are NaN where the power flow did not converge)
    and a summary dict: areas checked, non-converged cases, voltage / thermal / total violations, worst voltage
    excess (p.u.²), worst loading, max |Δx| (MW) and |Δy| (Mvar), sum of AC losses (MW), max SOC gap.
    Per-bus and per-line AC results: `ac_power_flow`.
    """
    areas = ac_power_flow(inst, tables, area_names=area_names, pi_model=pi_model, zero_root_q=zero_root_q)["areas"]
    return areas, summarise(areas)


def summarise(df: pd.DataFrame) -> dict:
    """Summary of an `ac_check` table."""
    ok = df[df["converged"]] if len(df) else df

    def mx(col, f=lambda s: s):
        s = f(ok[col].dropna()) if len(ok) else pd.Series(dtype=float)
        return float(s.max()) if len(s) else 0.0

    nv = int(ok["n_voltage_violations"].sum()) if len(ok) else 0
    no = int(ok["n_overloads"].sum()) if len(ok) else 0
    return {
        "areas_checked": int(df["area"].nunique()) if len(df) else 0,
        "cases": int(len(df)),
        "non_converged": int((~df["converged"]).sum()) if len(df) else 0,
        "voltage_violations": nv,
        "thermal_violations": no,
        "total_violations": nv + no,
        "worst_voltage_excess_pu2": mx("max_voltage_excess_pu2"),
        "worst_loading": mx("max_loading"),
        "max_abs_dx_mw": mx("dx_mw", np.abs),
        "max_abs_dy_mvar": mx("dy_mvar", np.abs),
        "sum_losses_mw": float(ok["losses_mw"].sum()) if len(ok) else 0.0,
        "max_soc_gap": mx("max_soc_gap"),
    }
