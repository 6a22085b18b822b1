"""AC verification of a distribution dispatch (docs/model.md §5(f) step 4).

`ac_check(inst, tables)` runs a Newton–Raphson AC power flow (pandapower) on every distribution tree and
period, with exactly the injections the clearing dispatched, and reports how far the AC state is from the
cleared one: voltage and thermal violations, AC losses and the interface deviation Δx = x^AC − x*.

Network per tree
----------------
A tree is everything below one T–D interface: the DSO area and all its sub-DSO areas, rooted at the T–D root
(a sub-DSO interface is a D–D branch like any other).  One pandapower network is built per tree and re-used
for every period; only load values and the slack voltage change.

* Base: ``sn_mva = 1`` and every bus at ``vn_kv = 1``, so Z_base = 1 Ω and the per-unit values of the data
  (p.u. on 1 MVA, docs/model.md §1) go in unchanged; MW and Mvar are p.u. numerically.
* Branch e = (i → j) with series admittance y = 1/(R + jX), charging b^c = B/2 per end and an off-nominal
  tap τ on the from end has the admittance matrix (MATPOWER's π-model, the one of docs/model.md §3.3)

      Y_ff = (y + j b^c)/τ²,   Y_ft = Y_tf = −y/τ,   Y_tt = y + j b^c.

  It is reproduced exactly by a pandapower **impedance** element (symmetric, p.u. on ``sn_mva = 1``) with
  series impedance τ·(R + jX), i.e. series admittance y/τ, plus the end shunts of the equivalent π

      y_f = (y + j b^c)/τ² − y/τ   at i,       y_t = y(1 − 1/τ) + j b^c   at j,

  entered as nodal pandapower **shunts** (summed per bus with the nodal G, B).  Shunts rather than the
  impedance's own ``gf_pu/bf_pu`` because pandapower 2.x lacks those (it would store them as inert columns).
  A pandapower line cannot carry a tap, and its transformer model rescales impedances with tap positions;
  the impedance element needs no unit conversion at all.  Phase shifts are ignored: in a radial tree they
  rotate angles only.
* Zero-impedance branches (R = X = 0, docs/model.md §3.3: u = w_j) are closed bus–bus switches (pandapower fuses
  the buses) with their charging as nodal shunts; their flows follow from the nodal balances of the tree.
  (With a tap ≠ 1 an ideal transformer cannot be fused; such a branch gets X = 1e-7 p.u. instead.)
* Nodal shunts: a pandapower shunt consumes ``p_mw`` and ``q_mvar`` at V = 1, so G ↦ p_mw = G and
  B ↦ q_mvar = −B (B injects B·w).
* Loads: the net injection of bus i in period t is P_{i,t} + Σ bids.p_mw + slack_p_mw (and likewise Q;
  NaN bid Q counts as 0), entered as a constant-power load of minus that value.
* The root is the slack bus (ext_grid) at V = sqrt(w_root) from ``buses.vsq_pu`` (1.0 if missing).  Its
  supply is what the tree imports, so x^AC = −p_ext_grid and y^AC = −q_ext_grid (the export convention of
  ``interfaces.export_mw``).

Branch terminal flows are recomputed from the solved complex voltages with the formula above (not taken from
pandapower's result tables), losses are Σ (p^fr + p^to) over the tree's branches, and the loading of a rated
branch is max(|s^fr|, |s^to|) / S as in the clearing's ``lines`` table.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.instance import Instance

V_TOL = 1e-6  # p.u.²: voltage bound tolerance
S_TOL = 1e-6  # loading tolerance (fraction of the rating)
PF_TOLERANCES = ((1e-10, 20), (1e-8, 30), (1e-6, 50))  # (tolerance_mva, max_iteration) tried in turn
_ZERO_Z_TAP_X = 1e-7  # p.u. reactance given to a zero-impedance branch with an off-nominal tap

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


def _pandapower():
    try:
        import pandapower as pp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the AC check needs pandapower, an optional dependency: pip install 'tdmarket[ac]'") from exc
    return pp


# ---------------------------------------------------------------------------------------------------- trees
@dataclass
class _Tree:
    """One distribution tree: positions in the instance and its pandapower network."""

    area: int  # the top area (its T–D interface roots the tree)
    name: str
    bus: np.ndarray  # instance bus positions; local index = position in this array
    root: int  # local index of the root
    line: np.ndarray  # instance branch positions (both ends in `bus`)
    f: np.ndarray  # local from / to
    t: np.ndarray
    yff: np.ndarray  # complex branch admittances (nan for zero-impedance branches)
    yft: np.ndarray
    ytf: np.ndarray
    ytt: np.ndarray
    zero: np.ndarray  # bool: fused zero-impedance branch
    bc_zero: np.ndarray  # charging b^c of each branch (used for zero-impedance branches)
    g_sh: np.ndarray  # nodal shunt conductance / susceptance (local)
    b_sh: np.ndarray
    child_root: np.ndarray  # local indices of boundary child roots fed from the interfaces table
    child_area: np.ndarray  # their areas
    net: object = None


def _top_areas(inst: Instance) -> np.ndarray:
    """Areas whose interface connects a distribution root to a transmission bus."""
    ar, b = inst.areas, inst.buses
    ok = (ar.root_bus >= 0) & (ar.host_bus >= 0)
    out = np.zeros(len(ar), bool)
    out[ok] = b.is_dist[ar.root_bus[ok]] & ~b.is_dist[ar.host_bus[ok]]
    return np.flatnonzero(out)


def _branch_admittances(r, x, bc, tau):
    y = 1.0 / (r + 1j * x)
    return (y + 1j * bc) / tau**2, -y / tau, -y / tau, y + 1j * bc


def _make_tree(inst: Instance, a: int, pi_model: bool) -> _Tree:
    b, br = inst.buses, inst.branches
    in_sub = np.isin(b.area, inst.subtree(a))
    own = b.is_dist & ~b.is_boundary & in_sub
    both_d = b.is_dist[br.f] & b.is_dist[br.t]
    touch = both_d & (own[br.f] | own[br.t])
    # a child root kept only as a boundary bus (an operator's view without its descendants)
    member = own.copy()
    member[br.f[touch]] = True
    member[br.t[touch]] = True
    bus = np.flatnonzero(member)
    local = np.full(len(b), -1)
    local[bus] = np.arange(len(bus))
    line = np.flatnonzero(touch)
    r, x = br.r[line].astype(float), br.x[line].astype(float)
    bc = br.b[line] / 2 if pi_model else np.zeros(len(line))
    tau = br.tap[line].astype(float) if pi_model else np.ones(len(line))
    tau = np.where(tau > 0, tau, 1.0)
    zero = (r == 0) & (x == 0)
    x = np.where(zero & (tau != 1.0), _ZERO_Z_TAP_X, x)
    zero = (r == 0) & (x == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        yff, yft, ytf, ytt = _branch_admittances(r, x, bc, tau)
    boundary_member = np.flatnonzero(member & ~own)
    ar = inst.areas
    child_area = np.array(
        [int(np.flatnonzero(ar.root_bus == i)[0]) if (ar.root_bus == i).any() else -1 for i in boundary_member],
        dtype=int,
    )
    return _Tree(
        area=a,
        name=inst.areas.name[a],
        bus=bus,
        root=int(local[ar.root_bus[a]]),
        line=line,
        f=local[br.f[line]],
        t=local[br.t[line]],
        yff=yff,
        yft=yft,
        ytf=ytf,
        ytt=ytt,
        zero=zero,
        bc_zero=bc,
        g_sh=b.g_shunt[bus] if pi_model else np.zeros(len(bus)),
        b_sh=b.b_shunt[bus] if pi_model else np.zeros(len(bus)),
        child_root=local[boundary_member],
        child_area=child_area,
    )


def _build_net(tree: _Tree):
    """The pandapower network of a tree (loads at 0; see the module docstring for the mapping)."""
    pp = _pandapower()
    n = len(tree.bus)
    net = pp.create_empty_network(sn_mva=1.0, f_hz=50.0)
    pp.create_buses(net, n, vn_kv=1.0, index=np.arange(n))
    g = tree.g_sh.astype(float).copy()  # nodal shunt admittance G + jB (B injects), branch end shunts added
    bsh = tree.b_sh.astype(float).copy()
    nz = ~tree.zero
    if nz.any():
        f, t = tree.f[nz], tree.t[nz]
        y = -tree.yft[nz]  # y/τ: the series admittance of the equivalent π
        z = 1.0 / y
        sf = tree.yff[nz] - y  # end shunts of the equivalent π (charging and tap)
        st = tree.ytt[nz] - y
        np.add.at(g, f, sf.real)
        np.add.at(bsh, f, sf.imag)
        np.add.at(g, t, st.real)
        np.add.at(bsh, t, st.imag)
        if hasattr(pp, "create_impedances"):  # pandapower >= 3
            pp.create_impedances(net, f, t, rft_pu=z.real, xft_pu=z.imag, sn_mva=1.0, rtf_pu=z.real, xtf_pu=z.imag)
        else:  # pandapower 2.x has no bulk function for impedances
            for k in range(len(f)):
                pp.create_impedance(
                    net,
                    int(f[k]),
                    int(t[k]),
                    rft_pu=z.real[k],
                    xft_pu=z.imag[k],
                    sn_mva=1.0,
                    rtf_pu=z.real[k],
                    xtf_pu=z.imag[k],
                )
    if tree.zero.any():
        zf, zt, bcz = tree.f[tree.zero], tree.t[tree.zero], tree.bc_zero[tree.zero]
        pp.create_switches(net, zf, zt, et="b", closed=True)
        np.add.at(bsh, zf, bcz)
        np.add.at(bsh, zt, bcz)
    has = (g != 0) | (bsh != 0)
    if has.any():
        pp.create_shunts(net, np.flatnonzero(has), q_mvar=-bsh[has], p_mw=g[has], vn_kv=1.0)
    pp.create_loads(net, np.arange(n), p_mw=np.zeros(n), q_mvar=np.zeros(n))
    pp.create_ext_grid(net, tree.root, vm_pu=1.0, va_degree=0.0)
    return net


def _run(net, pp) -> float:
    """Newton–Raphson from a flat start; returns the mismatch tolerance (MVA) reached, nan if none.

    The target is 1e-10 MVA; branches of 1e-6 p.u. impedance (italy-693) put the round-off floor of the
    mismatch near that, so the tolerance is relaxed step by step if Newton stalls."""
    for tol, it in PF_TOLERANCES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pp.runpp(
                    net,
                    algorithm="nr",
                    init="flat",
                    max_iteration=it,
                    tolerance_mva=tol,
                    calculate_voltage_angles=True,
                    numba=False,
                    check_connectivity=True,
                )
            if net.converged:
                return tol
        except Exception:  # pandapower raises LoadflowNotConverged (and friends) on failure
            continue
    return float("nan")


def _zero_branch_flows(tree: _Tree, V, s_inj, s_out):
    """Series flows S' of fused zero-impedance branches from the nodal balances (the zero branches form a
    forest, so the incidence system A S' = r has exactly one solution)."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    zi = np.flatnonzero(tree.zero)
    n, k = len(tree.bus), len(zi)
    w = np.abs(V) ** 2
    resid = s_inj - (tree.g_sh - 1j * tree.b_sh) * w - s_out
    np.add.at(resid, tree.f[zi], 1j * tree.bc_zero[zi] * w[tree.f[zi]])
    np.add.at(resid, tree.t[zi], 1j * tree.bc_zero[zi] * w[tree.t[zi]])
    cols = np.arange(k)
    A = csc_matrix((np.r_[np.ones(k), -np.ones(k)], (np.r_[tree.f[zi], tree.t[zi]], np.r_[cols, cols])), shape=(n, k))
    M = (A.T @ A).tocsc().astype(complex)
    sol = spsolve(M, A.T @ resid)
    return np.atleast_1d(sol)


# ---------------------------------------------------------------------------------------------------- tables
def _grid(inst: Instance, df: pd.DataFrame | None, cols: list[str]) -> tuple[np.ndarray, np.ndarray, list]:
    """Positions (bus, period) of the table rows whose node and period are in the instance, and the values."""
    if df is None or len(df) == 0 or "node" not in df:
        return np.zeros(0, int), np.zeros(0, int), [np.zeros(0) for _ in cols]
    node = df["node"].to_numpy()
    per = df["period"].to_numpy()
    ok = np.isin(node, inst.buses.id) & np.isin(per, inst.periods)
    bus = inst.bus_index(node[ok]) if ok.any() else np.zeros(0, int)
    pos = np.searchsorted(inst.periods, per[ok]) if ok.any() else np.zeros(0, int)
    vals = [
        np.nan_to_num(pd.to_numeric(df[c], errors="coerce").to_numpy(float)[ok], nan=0.0)
        if c in df
        else np.zeros(int(ok.sum()))
        for c in cols
    ]
    return bus, pos, vals


def _injections(inst: Instance, tables: dict, zero_root_q: bool) -> tuple[np.ndarray, np.ndarray]:
    """Dispatched net injections (n_bus, T): fixed + orders + reported slack."""
    P = inst.p_inj.astype(float).copy()
    Q = inst.q_inj.astype(float).copy()
    if zero_root_q:
        roots = inst.areas.root_bus[inst.areas.root_bus >= 0]
        Q[roots] = 0.0
    for key, (cp, cq) in (("bids", ("p_mw", "q_mvar")), ("buses", ("slack_p_mw", "slack_q_mvar"))):
        bus, per, (vp, vq) = _grid(inst, tables.get(key), [cp, cq])
        np.add.at(P, (bus, per), vp)
        np.add.at(Q, (bus, per), vq)
    return P, Q


def _vsq(inst: Instance, tables: dict) -> np.ndarray:
    W = np.full((len(inst.buses), inst.n_periods), np.nan)
    df = tables.get("buses")
    if df is not None and len(df) and "vsq_pu" in df:
        node, per = df["node"].to_numpy(), df["period"].to_numpy()
        v = pd.to_numeric(df["vsq_pu"], errors="coerce").to_numpy(float)
        ok = np.isin(node, inst.buses.id) & np.isin(per, inst.periods) & np.isfinite(v)
        if ok.any():
            W[inst.bus_index(node[ok]), np.searchsorted(inst.periods, per[ok])] = v[ok]
    return W


def _interface_lookup(tables: dict) -> dict[tuple[str, int], tuple[float, float]]:
    df = tables.get("interfaces")
    if df is None or len(df) == 0 or "export_mw" not in df:
        return {}
    y = df["export_mvar"].to_numpy(float) if "export_mvar" in df else np.full(len(df), np.nan)
    return {
        (str(a), int(p)): (float(x), float(q))
        for a, p, x, q in zip(df["area"], df["period"], df["export_mw"].to_numpy(float), y)
    }


def _line_lookup(tables: dict, inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """(n_branch, T) SOC gap and cleared loss from the `lines` table (nan where absent)."""
    m, T = len(inst.branches), inst.n_periods
    gap, loss = np.full((m, T), np.nan), np.full((m, T), np.nan)
    df = tables.get("lines")
    if df is None or len(df) == 0 or "edge" not in df:
        return gap, loss
    if "kind" in df:
        df = df[df["kind"] == "D"]
    edge, per = df["edge"].to_numpy(), df["period"].to_numpy()
    order = np.argsort(inst.branches.id, kind="stable")
    pos = np.clip(np.searchsorted(inst.branches.id, edge, sorter=order), 0, max(m - 1, 0))
    ok = (m > 0) & np.isin(per, inst.periods)
    if m:
        ok &= inst.branches.id[order[pos]] == edge
    b, t = order[pos[ok]], np.searchsorted(inst.periods, per[ok])
    if "soc_gap" in df:
        gap[b, t] = df["soc_gap"].to_numpy(float)[ok]
    if "loss_mw" in df:
        loss[b, t] = df["loss_mw"].to_numpy(float)[ok]
    return gap, loss


# ---------------------------------------------------------------------------------------------------- check
def ac_power_flow(
    inst: Instance,
    tables: dict[str, pd.DataFrame],
    *,
    area_names=None,
    pi_model: bool = True,
    zero_root_q: bool = False,
) -> dict[str, pd.DataFrame]:
    """AC power flow of every distribution tree and period on the dispatched injections (docs/model.md §5(f)).

    Returns the tables ``areas`` (one row per (area, period), columns `COLUMNS`), ``buses`` (AC voltage of every
    tree bus: area, node, period, vm_pu, va_degree, vsq_pu, vsq_min, vsq_max, excess_pu2) and ``lines``
    (AC terminal flows of every tree branch: area, edge, period, p_from_mw, q_from_mvar, p_to_mw, q_to_mvar,
    loss_mw, rating_mva, loading).  Arguments as for `ac_check`.
    """
    pp = _pandapower()
    top = _top_areas(inst)
    if area_names is not None:
        wanted = {area_names} if isinstance(area_names, str) else set(area_names)
        unknown = wanted - set(inst.areas.name)
        if unknown:
            raise KeyError(f"unknown area(s): {', '.join(sorted(unknown))}")
        top = np.array([a for a in top if wanted & {inst.areas.name[c] for c in inst.subtree(a)}], dtype=int)
    P, Q = _injections(inst, tables, zero_root_q)
    W = _vsq(inst, tables)
    iface = _interface_lookup(tables)
    gap_tab, loss_tab = _line_lookup(tables, inst)
    b, br = inst.buses, inst.branches
    rows, bus_frames, line_frames = [], [], []
    for a in top:
        tree = _make_tree(inst, int(a), pi_model)
        tree.net = net = _build_net(tree)
        n, m = len(tree.bus), len(tree.line)
        rating = br.rating[tree.line].astype(float)
        rated = np.isfinite(rating) & (rating > 0)
        vmin, vmax = b.vsq_min[tree.bus], b.vsq_max[tree.bus]
        nz = ~tree.zero
        for t, period in enumerate(inst.periods):
            p_bus, q_bus = P[tree.bus, t].copy(), Q[tree.bus, t].copy()
            for loc, c in zip(tree.child_root, tree.child_area):  # boundary child roots inject their export
                xc, yc = iface.get((inst.areas.name[c], int(period)), (0.0, 0.0)) if c >= 0 else (0.0, 0.0)
                p_bus[loc], q_bus[loc] = xc, (0.0 if np.isnan(yc) else yc)
            net.load["p_mw"] = -p_bus
            net.load["q_mvar"] = -q_bus
            w_root = W[tree.bus[tree.root], t]
            vm_root = float(np.sqrt(w_root)) if np.isfinite(w_root) and w_root > 0 else 1.0
            net.ext_grid.loc[net.ext_grid.index[0], "vm_pu"] = vm_root
            x_star, y_star = iface.get((tree.name, int(period)), (np.nan, np.nan))
            gaps = gap_tab[tree.line, t]
            tol = _run(net, pp)
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
                "soc_losses_mw": float(np.nansum(loss_tab[tree.line, t])) if m else 0.0,
            }
            rows.append(row)
            if not row["converged"]:
                continue
            vm = net.res_bus["vm_pu"].to_numpy(float)
            va = net.res_bus["va_degree"].to_numpy(float)
            V = vm * np.exp(1j * np.deg2rad(va))
            w = vm**2
            excess = np.maximum(np.maximum(vmin - w, w - vmax), 0.0)
            viol = excess > V_TOL
            # terminal outflows s = V conj(Y V) at both ends of every branch
            Vf, Vt = V[tree.f], V[tree.t]
            s_fr = np.zeros(m, complex)
            s_to = np.zeros(m, complex)
            s_fr[nz] = Vf[nz] * np.conj(tree.yff[nz] * Vf[nz] + tree.yft[nz] * Vt[nz])
            s_to[nz] = Vt[nz] * np.conj(tree.ytf[nz] * Vf[nz] + tree.ytt[nz] * Vt[nz])
            ext = net.res_ext_grid.iloc[0]
            s_ext = complex(ext["p_mw"], ext["q_mvar"])
            if tree.zero.any():
                s_inj = p_bus + 1j * q_bus
                s_inj[tree.root] += s_ext
                s_out = np.zeros(n, complex)
                np.add.at(s_out, tree.f[nz], s_fr[nz])
                np.add.at(s_out, tree.t[nz], s_to[nz])
                sz = _zero_branch_flows(tree, V, s_inj, s_out)
                zi = np.flatnonzero(tree.zero)
                s_fr[zi] = sz - 1j * tree.bc_zero[zi] * w[tree.f[zi]]
                s_to[zi] = -sz - 1j * tree.bc_zero[zi] * w[tree.t[zi]]
            loading = np.zeros(m)
            loading[rated] = np.maximum(np.abs(s_fr[rated]), np.abs(s_to[rated])) / rating[rated]
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
            bus_frames.append(
                pd.DataFrame(
                    {
                        "area": tree.name,
                        "node": b.id[tree.bus],
                        "period": int(period),
                        "vm_pu": vm,
                        "va_degree": va,
                        "vsq_pu": w,
                        "vsq_min": vmin,
                        "vsq_max": vmax,
                        "excess_pu2": excess,
                    }
                )
            )
            line_frames.append(
                pd.DataFrame(
                    {
                        "area": tree.name,
                        "edge": br.id[tree.line],
                        "period": int(period),
                        "p_from_mw": s_fr.real,
                        "q_from_mvar": s_fr.imag,
                        "p_to_mw": s_to.real,
                        "q_to_mvar": s_to.imag,
                        "loss_mw": (s_fr + s_to).real,
                        "rating_mva": rating,
                        "loading": loading,
                    }
                )
            )
    areas = pd.DataFrame(rows, columns=COLUMNS)
    areas["converged"] = areas["converged"].astype(bool)
    for c in ("n_voltage_violations", "n_overloads", "worst_voltage_node", "worst_line_edge"):
        areas[c] = areas[c].fillna(-1 if c.startswith("worst") else 0).astype(int)
    buses = (
        pd.concat(bus_frames, ignore_index=True)
        if bus_frames
        else pd.DataFrame(
            columns=["area", "node", "period", "vm_pu", "va_degree", "vsq_pu", "vsq_min", "vsq_max", "excess_pu2"]
        )
    )
    lines = (
        pd.concat(line_frames, ignore_index=True)
        if line_frames
        else pd.DataFrame(
            columns=[
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
        )
    )
    return {"areas": areas, "buses": buses, "lines": lines}


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
