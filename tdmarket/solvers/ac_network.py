"""The pandapower network of one distribution tree, and the Newton–Raphson run on it (used by `ac_check`).

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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ..model.instance import Instance

if TYPE_CHECKING:
    from pandapower.auxiliary import pandapowerNet

PF_TOLERANCES = ((1e-10, 20), (1e-8, 30), (1e-6, 50))  # (tolerance_mva, max_iteration) tried in turn
DENSE_NEWTON_NODES = 400  # `newton_power_flow` uses dense algebra up to this many (fused) nodes
_ZERO_Z_TAP_X = 1e-7  # p.u. reactance given to a zero-impedance branch with an off-nominal tap


def load_pandapower():
    """The pandapower module, or an ImportError with the install hint."""
    try:
        import pandapower as pp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the AC check needs pandapower, an optional dependency: pip install 'tdmarket[ac]'") from exc
    return pp


@dataclass
class Tree:
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
    net: pandapowerNet | None = None  # the pandapower network (`build_net`)
    system: NewtonSystem | None = None  # the bus-injection model for `newton_power_flow` (`newton_system`)


def top_areas(inst: Instance) -> np.ndarray:
    """Areas whose interface connects a distribution root to a transmission bus, and, in a sub-DSO's own
    sub-instance (`Instance.area_instance`), its area: its parent's side is a boundary bus, so its tree starts at
    its root as well."""
    ar, b = inst.areas, inst.buses
    ok = (ar.root_bus >= 0) & (ar.host_bus >= 0)
    out = np.zeros(len(ar), bool)
    root, host = ar.root_bus[ok], ar.host_bus[ok]
    out[ok] = b.is_dist[root] & ~b.is_boundary[root] & (~b.is_dist[host] | b.is_boundary[host])
    return np.flatnonzero(out)


def _branch_admittances(r, x, bc, tau):
    """Y_ff, Y_ft, Y_tf, Y_tt of the π-model (module docstring)."""
    y = 1.0 / (r + 1j * x)
    return (y + 1j * bc) / tau**2, -y / tau, -y / tau, y + 1j * bc


def make_tree(inst: Instance, a: int, pi_model: bool) -> Tree:
    """The tree rooted at the T–D interface of area `a` (`pi_model=False`: no charging, taps or shunts)."""
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
    return Tree(
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


def build_net(tree: Tree):
    """The pandapower network of a tree (loads at 0; see the module docstring for the mapping)."""
    pp = load_pandapower()
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


def run_power_flow(net, pp) -> float:
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


def zero_branch_flows(tree: Tree, V, s_inj, s_out):
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


@dataclass
class NewtonSystem:
    """A tree's bus-injection model for `newton_power_flow`: buses joined by zero-impedance branches fused into one
    node (`node` per tree bus), the admittance matrix of the fused nodes (π-model branches plus nodal shunts and
    the charging of fused branches), and the node of the root."""

    node: np.ndarray
    Y: sp.csr_matrix  # complex, p.u.
    root: int


def newton_system(tree: Tree) -> NewtonSystem:
    """The `NewtonSystem` of a tree: the same network `build_net` gives pandapower (module docstring), assembled
    with scipy.sparse."""
    from scipy.sparse.csgraph import connected_components

    n = len(tree.bus)
    zf, zt = tree.f[tree.zero], tree.t[tree.zero]
    graph = sp.coo_matrix((np.ones(len(zf)), (zf, zt)), shape=(n, n))
    k, node = connected_components(graph, directed=False)
    nz = ~tree.zero
    f, t = node[tree.f[nz]], node[tree.t[nz]]
    shunt = tree.g_sh.astype(complex) + 1j * tree.b_sh
    np.add.at(shunt, zf, 1j * tree.bc_zero[tree.zero])
    np.add.at(shunt, zt, 1j * tree.bc_zero[tree.zero])
    rows = np.concatenate([f, f, t, t, node])
    cols = np.concatenate([f, t, f, t, node])
    vals = np.concatenate([tree.yff[nz], tree.yft[nz], tree.ytf[nz], tree.ytt[nz], shunt])
    Y = sp.csr_matrix((vals, (rows, cols)), shape=(k, k))
    return NewtonSystem(node=node, Y=Y, root=int(node[tree.root]))


def newton_power_flow(system: NewtonSystem, s_inj: np.ndarray, vm_root: float) -> tuple[np.ndarray, complex, float]:
    """Newton–Raphson (polar; Jacobian assembled dense up to `DENSE_NEWTON_NODES` nodes, sparse beyond; sparse LU)
    from a flat start
    for the net injections `s_inj` (MW + j Mvar per tree bus) with the root at `vm_root` (p.u., angle 0).  It
    stops at 1e-10 MVA, or when the mismatch stalls (no tenfold gain in three steps: the round-off floor of
    1e-6 p.u. impedances) below the loosest tolerance of `PF_TOLERANCES`, at most 50 steps.  Returns the complex
    voltage of every tree bus at the best iterate, the root's supply s_ext (what the tree imports, as
    pandapower's ext_grid result) and the tolerance of `PF_TOLERANCES` that iterate meets (MVA; nan if none)."""
    from scipy.sparse.linalg import spsolve

    Y, root = system.Y, system.root
    k = Y.shape[0]
    s_node = np.zeros(k, complex)
    np.add.at(s_node, system.node, s_inj)
    pq = np.flatnonzero(np.arange(k) != root)
    V = np.ones(k, complex)
    V[root] = vm_root
    limit = max(it for _, it in PF_TOLERANCES)
    worst = max(tol for tol, _ in PF_TOLERANCES)
    best = np.inf
    Yd = Y.toarray() if k <= DENSE_NEWTON_NODES else None
    m = len(pq)
    target = min(tol for tol, _ in PF_TOLERANCES)
    V_best, history = V.copy(), []
    for _ in range(limit + 1):
        current = Y @ V
        mismatch = V * np.conj(current) - s_node
        F = np.concatenate([mismatch[pq].real, mismatch[pq].imag])
        size = float(np.abs(F).max(initial=0.0))
        if not np.isfinite(size):
            break
        if size < best:
            best, V_best = size, V.copy()
        history.append(size)
        # converged, or stalled at the round-off floor of the tree's admittances (no tenfold gain in 3 steps)
        if best < target or (len(history) > 3 and best <= worst and min(history[-3:]) > 0.1 * history[-4]):
            break
        Vn = V / np.abs(V)
        if Yd is not None:  # small trees: dense algebra is faster than building sparse matrices every iteration
            dS_dVm = V[:, None] * np.conj(Yd * Vn[None, :])
            dS_dVm[np.diag_indices(k)] += np.conj(current) * Vn
            dS_dVa = -1j * V[:, None] * np.conj(Yd * V[None, :])
            dS_dVa[np.diag_indices(k)] += 1j * V * np.conj(current)
            A, M = dS_dVa[np.ix_(pq, pq)], dS_dVm[np.ix_(pq, pq)]
            J = np.block([[A.real, M.real], [A.imag, M.imag]])
            # SuperLU, single-threaded: a multi-threaded BLAS solve of a 100-unknown system is slower on a busy
            # machine (measured 30 ms against 1 ms)
            step = spsolve(sp.csc_matrix(J), -F)
        else:
            dV = sp.diags(V)
            dS_dVm = dV @ np.conj(Y @ sp.diags(Vn)) + sp.diags(np.conj(current) * Vn)
            dS_dVa = 1j * dV @ np.conj(sp.diags(current) - Y @ dV)
            A, M = dS_dVa[pq][:, pq], dS_dVm[pq][:, pq]
            J = sp.bmat([[A.real, M.real], [A.imag, M.imag]], format="csc")
            step = spsolve(J, -F)
        va = np.angle(V[pq]) + step[:m]
        vm = np.abs(V[pq]) + step[m:]
        V[pq] = vm * np.exp(1j * va)
    tol = next((tol for tol, _ in PF_TOLERANCES if best < tol), float("nan"))
    V = V_best
    s_root = V[root] * np.conj((Y @ V)[root]) - s_node[root]
    return V[system.node], complex(s_root), tol
