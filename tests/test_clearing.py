"""Centralized clearing (docs/model.md §3, §5(a)(b), §8, §11): reference numbers, feasibility, prices, CLI.

* three-node references A (``reactive_policy="free"``) and B (default ``bounded``), relaxed and with binaries;
* italy-693 and italy-652, relaxed SOCP: every balance and limit holds, checked twice — on the program rows,
  bounds and cones (relative 1e-6), and independently from the result tables (nodal P and Q balances rebuilt
  from activations, injections, slack, interface exchange, line terminal flows and shunts);
* LMPs against central finite differences of the optimal objective w.r.t. one fixed withdrawal;
* a two-bus feeder whose exact AC solution is computed here by DistFlow fixed-point iteration (SOC and
  LinDistFlow);
* the ``clear`` command line.

Shared data live in ../shared/smartnet (relative to the project root); tests that need an instance skip with a
reason when it is absent.  Each instance is read and solved once per module (module-scoped fixtures); italy-652
costs 1 base solve + 6 finite-difference solves (~6 s each).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tdmarket.cli import main
from tdmarket.formulations.clearing import ClearingProblem
from tdmarket.formulations.options import ModelOptions
from tdmarket.io import read
from tdmarket.schemes.centralized import clear_centralized
from tdmarket.solvers import SolveStatus, solve

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "smartnet"
ACCEPTABLE = (SolveStatus.OPTIMAL, SolveStatus.ALMOST_OPTIMAL)  # as tdmarket.schemes.centralized

BAL_TOL = 1e-5  # MW / Mvar, nodal balance residual recomputed from the tables
REL_TOL = 1e-6  # rows, bounds, cones, ratings, voltages: violation <= REL_TOL * max(1, |bound|)
FD_STEP = 1e-3  # MW, finite-difference step on one fixed withdrawal
FD_RTOL, FD_ATOL = 1e-3, 1e-3  # LMP vs finite difference: |fd - lmp| <= FD_RTOL |lmp| + FD_ATOL


def _instance_dir(name: str) -> Path:
    path = DATA / name
    if not (path / "GeneralParam.csv").is_file():
        pytest.skip(f"shared SmartNet instance {name!r} not found at {path.resolve()}")
    return path


# ================================================================================================ helpers
class Solved:
    """One relaxed solve of a ClearingProblem, kept for the whole module."""

    def __init__(self, inst, opts: ModelOptions):
        self.inst = inst
        self.cp = ClearingProblem(inst, opts)
        self.sol = solve(self.cp.prog)
        assert self.sol.status in ACCEPTABLE, self.sol.message
        self.tables = self.cp.extract(self.sol.x, self.sol.row_dual)


def relative_violations(prog, x: np.ndarray) -> dict[str, float]:
    """Largest violation of rows, variable bounds and cones, each divided by max(1, |bound|).

    Recomputed from the program arrays (independent of `ClearingProblem.check`).  For a cone
    h - G x = (s0, s1..) the violation is ||s1..|| - s0, scaled by max(1, |h0|).
    """
    ax = prog.A @ x
    with np.errstate(invalid="ignore"):
        lo = np.where(np.isfinite(prog.row_lo), (prog.row_lo - ax) / np.maximum(1, np.abs(prog.row_lo)), 0.0)
        hi = np.where(np.isfinite(prog.row_hi), (ax - prog.row_hi) / np.maximum(1, np.abs(prog.row_hi)), 0.0)
        lb = np.where(np.isfinite(prog.lb), (prog.lb - x) / np.maximum(1, np.abs(prog.lb)), 0.0)
        ub = np.where(np.isfinite(prog.ub), (x - prog.ub) / np.maximum(1, np.abs(prog.ub)), 0.0)
    out = {
        "rows": float(max(lo.max(initial=0), hi.max(initial=0))),
        "bounds": float(max(lb.max(initial=0), ub.max(initial=0))),
        "cones": 0.0,
    }
    s = prog.cone_b - prog.cone_A @ x
    h = prog.cone_b
    start = 0
    for dim, count in prog.cone_dims:
        blk = s[start : start + dim * count].reshape(count, dim)
        h0 = h[start : start + dim * count].reshape(count, dim)[:, 0]
        v = (np.linalg.norm(blk[:, 1:], axis=1) - blk[:, 0]) / np.maximum(1, np.abs(h0))
        out["cones"] = max(out["cones"], float(v.max(initial=0)))
        start += dim * count
    return out


def balance_residuals(inst, tables) -> tuple[pd.Series, pd.Series]:
    """Nodal P and Q balance residuals (MW, Mvar) per (bus position, period), rebuilt from the tables only.

    P: Σ activations + P_fixed + slack + [host] x − [root] x − Σ terminal outflows − G w
    Q: Σ Q_b + Q_fixed + slack + B w − [root] y − Σ terminal outflows          (D buses)
    Terminal outflows are p_from at the from-bus and p_to at the to-bus of every T and D line in `lines`.
    """
    b, br = inst.buses, inst.branches
    T = inst.n_periods
    per_pos = {int(p): k for k, p in enumerate(inst.periods)}
    n = len(b)
    P = np.zeros((n, T))
    Q = np.zeros((n, T))

    def add(M, nodes, periods, values):
        nodes = np.asarray(nodes, dtype=np.int64)
        if len(nodes) == 0:
            return
        cols = np.array([per_pos[int(t)] for t in periods], dtype=np.int64)
        np.add.at(M, (inst.bus_index(nodes), cols), np.asarray(values, float))

    seg = tables["segments"]
    add(P, seg.node, seg.period, seg.accepted_mw)
    bids = tables["bids"]
    dq = bids[bids.q_mvar.notna()]
    add(Q, dq.node, dq.period, dq.q_mvar)
    P += inst.p_inj
    Q += np.where(b.is_dist[:, None], inst.q_inj, 0.0)
    buses = tables["buses"]
    add(P, buses.node, buses.period, buses.slack_p_mw)
    add(Q, buses.node, buses.period, buses.slack_q_mvar)
    w = buses.vsq_pu.fillna(0.0).to_numpy()
    pos = inst.bus_index(buses.node.to_numpy())
    add(P, buses.node, buses.period, -b.g_shunt[pos] * w)
    add(Q, buses.node, buses.period, b.b_shunt[pos] * w)
    ifc = tables["interfaces"]
    add(P, ifc.t_node, ifc.period, ifc.export_mw)
    add(P, ifc.root_node, ifc.period, -ifc.export_mw)
    add(Q, ifc.root_node, ifc.period, -ifc.export_mvar)
    lines = tables["lines"]
    order = np.argsort(br.id)
    lpos = order[np.searchsorted(br.id, lines.edge.to_numpy(), sorter=order)]
    assert (br.id[lpos] == lines.edge.to_numpy()).all()
    fr, to = b.id[br.f[lpos]], b.id[br.t[lpos]]
    add(P, fr, lines.period, -lines.p_from_mw)
    add(P, to, lines.period, -lines.p_to_mw)
    d = (lines.kind == "D").to_numpy()
    add(Q, fr[d], lines.period[d], -lines.q_from_mvar[d])
    add(Q, to[d], lines.period[d], -lines.q_to_mvar[d])
    own = ~b.is_boundary
    return P[own], Q[own & b.is_dist]


def assert_physically_feasible(inst, tables) -> None:
    res_p, res_q = balance_residuals(inst, tables)
    assert np.abs(res_p).max() <= BAL_TOL, f"P balance residual {np.abs(res_p).max():.3e} MW"
    assert np.abs(res_q).max() <= BAL_TOL, f"Q balance residual {np.abs(res_q).max():.3e} Mvar"
    # every own bus and period has a row in `buses`
    assert len(tables["buses"]) == int((~inst.buses.is_boundary).sum()) * inst.n_periods
    # thermal limits, recomputed from the terminal flows
    lines = tables["lines"]
    rated = np.isfinite(lines.rating_mva.to_numpy())
    d = (lines.kind == "D").to_numpy()
    s_from = np.where(d, np.hypot(lines.p_from_mw, lines.q_from_mvar.fillna(0)), np.abs(lines.p_from_mw))
    s_to = np.where(d, np.hypot(lines.p_to_mw, lines.q_to_mvar.fillna(0)), np.abs(lines.p_to_mw))
    S = lines.rating_mva.to_numpy()[rated]
    load = np.maximum(s_from, s_to)[rated] / S
    assert load.max() <= 1 + REL_TOL, f"recomputed loading {load.max():.9f}"
    assert lines.loading.to_numpy()[rated].max() <= 1 + REL_TOL
    np.testing.assert_allclose(lines.loading.to_numpy()[rated], load, atol=1e-9)
    # interface ratings
    ifc = tables["interfaces"]
    s_if = np.hypot(ifc.export_mw, ifc.export_mvar).to_numpy()
    r_if = ifc.rating_mva.to_numpy()
    ok = np.isfinite(r_if)
    assert (s_if[ok] <= r_if[ok] * (1 + REL_TOL)).all()
    # voltage bounds at D buses
    buses = tables["buses"]
    dmask = (buses.kind == "D").to_numpy()
    pos = inst.bus_index(buses.node.to_numpy()[dmask])
    w = buses.vsq_pu.to_numpy()[dmask]
    lo, hi = inst.buses.vsq_min[pos], inst.buses.vsq_max[pos]
    assert np.isfinite(w).all()
    assert (w >= lo - REL_TOL * np.maximum(1, lo)).all()
    assert (w <= hi + REL_TOL * np.maximum(1, np.where(np.isfinite(hi), hi, 1))).all()
    # the SOC gap is reported per D line and period, never meaningfully negative
    assert "soc_gap" in lines.columns
    gap = lines.loc[d, "soc_gap"].to_numpy()
    assert len(gap) == int(d.sum()) and np.isfinite(gap).all()
    assert gap.min() >= -1e-6


def _value(frame: pd.DataFrame, column: str, **where) -> float:
    sel = np.ones(len(frame), bool)
    for k, v in where.items():
        sel &= (frame[k] == v).to_numpy()
    assert sel.sum() == 1, (where, int(sel.sum()))
    return float(frame.loc[sel, column].iloc[0])


# ================================================================================================ three-node
@pytest.fixture(scope="module")
def three_node():
    return read(_instance_dir("three-node"))


@pytest.fixture(scope="module")
def ref_a(three_node):
    return clear_centralized(three_node, relax=True, reactive_policy="free")


@pytest.fixture(scope="module")
def ref_b(three_node):
    return clear_centralized(three_node, relax=True)


def test_three_node_reference_a(ref_a, three_node):
    t = ref_a.tables
    assert ref_a.total_cost == pytest.approx(14.537218, abs=1e-5)
    seg = t["segments"]
    for node, p in [(1, 0.0), (2, 0.502482), (3, 0.700000)]:
        assert _value(seg, "accepted_mw", node=node) == pytest.approx(p, abs=1e-5), node
    buses = t["buses"]
    for node, lam in [(1, 15.0), (2, 15.0), (3, 10.0)]:
        assert _value(buses, "price_p_eur_mwh", node=node) == pytest.approx(lam, abs=1e-4), node
    ifc = t["interfaces"]
    assert len(ifc) == 1
    assert ifc.export_mw.iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert ifc.file_flow_mw.iloc[0] == pytest.approx(-1.0, abs=1e-6)  # root is NodeTo in three-node
    assert ifc.interface_price_eur_mwh.iloc[0] == pytest.approx(15.0, abs=1e-4)
    lines = t["lines"]
    assert _value(lines, "loss_mw", edge=2) == pytest.approx(0.002481, abs=1e-6)
    assert _value(lines, "p_from_mw", edge=2) == pytest.approx(-0.497518, abs=1e-5)
    assert _value(lines, "p_to_mw", edge=2) == pytest.approx(0.5, abs=1e-5)
    assert _value(lines, "soc_gap", edge=2) == pytest.approx(0.0, abs=1e-6)
    assert ref_a.summary["options"]["reactive_policy"] == "free"
    assert_physically_feasible(three_node, t)


def test_three_node_reference_b(ref_b, three_node):
    t = ref_b.tables
    assert ref_b.total_cost == pytest.approx(14.604385, abs=1e-5)
    assert ref_b.total_cost == pytest.approx(17.025 - 5 * math.sqrt(0.234375), abs=1e-5)
    seg = t["segments"]
    for node, p in [(1, 0.0), (2, 0.515877), (3, 0.686623)]:
        assert _value(seg, "accepted_mw", node=node) == pytest.approx(p, abs=1e-5), node
    ifc = t["interfaces"]
    assert ifc.export_mw.iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert ifc.file_flow_mw.iloc[0] == pytest.approx(-1.0, abs=1e-6)
    assert ifc.export_mvar.iloc[0] == pytest.approx(-0.125, abs=1e-5)
    buses = t["buses"]
    assert _value(buses, "vsq_pu", node=3) == pytest.approx(0.987207, abs=1e-5)
    for node, lam in [(1, 15.0), (2, 15.0), (3, 10.0)]:
        assert _value(buses, "price_p_eur_mwh", node=node) == pytest.approx(lam, abs=1e-4), node
    assert _value(buses, "price_q_eur_mvarh", node=2) == pytest.approx(0.0, abs=1e-4)
    # within 1e-3 here; the 1e-4 reference check is test_three_node_reference_b_reactive_price_1e4
    assert _value(buses, "price_q_eur_mvarh", node=3) == pytest.approx(1.290994, abs=1e-3)
    lines = t["lines"]
    assert _value(lines, "p_from_mw", edge=2) == pytest.approx(-0.484123, abs=1e-5)
    assert _value(lines, "q_from_mvar", edge=2) == pytest.approx(0.125, abs=1e-5)
    assert _value(lines, "p_to_mw", edge=2) == pytest.approx(0.486623, abs=1e-5)
    assert _value(lines, "q_to_mvar", edge=2) == pytest.approx(-0.1, abs=1e-5)
    assert _value(lines, "loss_mw", edge=2) == pytest.approx(0.0025, abs=1e-6)
    # orders 2 and 3 are unrestricted: the bounded policy fixes their Q at 0
    bids = t["bids"]
    np.testing.assert_allclose(bids.loc[bids.node.isin([2, 3]), "q_mvar"], 0.0, atol=1e-9)
    assert ref_b.summary["options"]["reactive_policy"] == "bounded"
    assert_physically_feasible(three_node, t)


@pytest.mark.xfail(
    strict=True,
    reason="product accuracy: Clarabel at tol 1e-9 with κ=1e4 slack costs reports "
    "λQ3 = 1.29150 (analytic 0.625/sqrt(0.234375) = 1.290994); see helper report",
)
def test_three_node_reference_b_reactive_price_1e4(ref_b):
    lam_q3 = _value(ref_b.tables["buses"], "price_q_eur_mvarh", node=3)
    assert lam_q3 == pytest.approx(0.625 / math.sqrt(0.234375), abs=1e-4)


def test_three_node_with_binaries_equals_relaxation(three_node, ref_b):
    """(a) = (b) on three-node: the default clear (binaries on) gives reference B."""
    res = clear_centralized(three_node)
    assert res.summary["options"]["integer"] is True
    assert res.total_cost == pytest.approx(14.604385, abs=1e-5)
    assert res.total_cost == pytest.approx(ref_b.total_cost, abs=1e-7)
    a, b = res.tables, ref_b.tables
    np.testing.assert_allclose(a["segments"].accepted_mw, b["segments"].accepted_mw, atol=1e-6)
    np.testing.assert_allclose(a["buses"].price_p_eur_mwh, [15.0, 15.0, 10.0], atol=1e-4)
    np.testing.assert_allclose(a["buses"].price_p_eur_mwh, b["buses"].price_p_eur_mwh, atol=1e-6)
    assert _value(a["interfaces"], "export_mvar") == pytest.approx(-0.125, abs=1e-5)


def test_three_node_reference_a_lmp_finite_differences(three_node):
    """Solver dual = d(objective)/d(withdrawal) at every bus (three-node, reference A)."""
    s = Solved(three_node, ModelOptions(integer=False, reactive_policy="free"))
    for node in (1, 2, 3):
        kind, fd, lam = fd_check(s, node, 1)
        assert kind == "central", (node, kind)
        assert lam == pytest.approx([15.0, 15.0, 10.0][node - 1], abs=1e-4)


# ================================================================================================ Italian sets
@pytest.fixture(scope="module")
def italy_693():
    inst = read(_instance_dir("italy-693"))
    return Solved(inst, ModelOptions(integer=False))


@pytest.fixture(scope="module")
def italy_652():
    inst = read(_instance_dir("italy-652"))
    return Solved(inst, ModelOptions(integer=False))


@pytest.mark.parametrize("name", ["italy_693", "italy_652"])
def test_italian_relaxed_solution_is_feasible(name, request):
    s: Solved = request.getfixturevalue(name)
    assert s.sol.status is SolveStatus.OPTIMAL
    viol = relative_violations(s.cp.prog, s.sol.x)
    assert viol["rows"] <= REL_TOL and viol["bounds"] <= REL_TOL and viol["cones"] <= REL_TOL, viol
    chk = s.cp.check(s.sol.x)
    assert chk.ok(1e-6), chk
    assert_physically_feasible(s.inst, s.tables)
    # all balances hold without slack (the slack penalty is never needed on the shipped data, relaxed)
    parts = s.cp.cost_parts(s.sol.x)
    assert parts["slack_cost_eur"] <= 1e-3
    assert abs(parts["total_cost_eur"] - s.sol.objective) <= 1e-6 * max(1.0, abs(s.sol.objective)) + 1e-3
    # one price per own bus and period, all finite
    assert np.isfinite(s.tables["buses"].price_p_eur_mwh).all()


def test_italian_relaxed_sizes(italy_693, italy_652):
    """The relaxed models contain every order segment, D line and interface of docs/model.md §10."""
    for s, segs, dlines, ifaces, T in [(italy_693, 1667, 171, 4, 4), (italy_652, 12318, 1772, 50, 3)]:
        t = s.tables
        assert len(t["segments"]) == segs
        assert int((t["lines"].kind == "D").sum()) == dlines * T
        assert len(t["interfaces"]) == ifaces * T
        assert not s.cp.prog.has_integers


# ------------------------------------------------------------------------------------------ finite differences
def fd_check(s: Solved, node: int, period: int, h: float = FD_STEP) -> tuple[str, float, float]:
    """Compare the reported LMP at (node, period) with finite differences of the optimal objective.

    The fixed withdrawal d = -P is moved by ±h through the right-hand side of the balance_p row on a copy of
    the program (balance rows read "injections - outflows = d").  With f(+h), f(0), f(-h):
    * no kink (forward and backward slopes agree within the tolerance): the central difference must match
      the LMP within FD_RTOL·|LMP| + FD_ATOL  -> returns "central";
    * kink (slopes differ by more): z*(d) is convex in d, so backward <= forward, and the LMP must be a
      subgradient: backward - tol <= LMP <= forward + tol  -> returns "kink".
    """
    inst, prog = s.inst, s.cp.prog
    i = int(inst.bus_index([node])[0])
    t = int(np.flatnonzero(inst.periods == period)[0])
    row = prog.rows["balance_p"].start + int(s.cp.balance.p_row[i, t])
    assert s.cp.balance.p_row[i, t] >= 0
    assert prog.row_lo[row] == prog.row_hi[row] == pytest.approx(-inst.p_inj[i, t])
    f = {}
    for step in (h, -h):
        p = prog.copy()
        p.set_row_bounds(row, lo=prog.row_lo[row] + step, hi=prog.row_hi[row] + step)
        sol = solve(p)
        assert sol.status in ACCEPTABLE, (node, period, step, sol.message)
        f[step] = sol.objective
    lam = _value(s.tables["buses"], "price_p_eur_mwh", node=node, period=period)
    tol = FD_RTOL * abs(lam) + FD_ATOL
    fwd = (f[h] - s.sol.objective) / h
    bwd = (s.sol.objective - f[-h]) / h
    central = (f[h] - f[-h]) / (2 * h)
    if fwd - bwd <= tol:
        assert abs(central - lam) <= tol, f"node {node} t {period}: LMP {lam} vs central difference {central}"
        return "central", central, lam
    assert bwd - tol <= lam <= fwd + tol, f"node {node} t {period}: LMP {lam} outside [{bwd}, {fwd}]"
    return "kink", central, lam


def fd_buses(s: Solved) -> list[tuple[str, int, int]]:
    """Deterministic choice of (role, node, period): one T bus, one D root, one non-root D bus.

    The period and the non-root D bus are those of the largest |activation| at a non-root D bus; the root is
    that bus's area root; the T bus is the non-reference T bus with the largest |activation| in that period
    (or the area's host bus if no T order is active there).
    """
    inst, seg = s.inst, s.tables["segments"]
    b, ar = inst.buses, inst.areas
    act = seg.assign(a=seg.accepted_mw.abs()).groupby(["node", "period"]).a.sum()
    roots = set(b.id[ar.root_bus[ar.root_bus >= 0]].tolist())
    dist = set(b.id[b.is_dist].tolist())
    trans = set(b.id[~b.is_dist & ~b.is_ref].tolist())
    d_act = act[[n in dist and n not in roots for n, _ in act.index]]
    node_d, period = d_act.idxmax()
    assert d_act.max() > 1e-6
    area = b.area[inst.bus_index([node_d])[0]]
    root = int(b.id[ar.root_bus[area]])
    t_act = act[[n in trans and t == period for n, t in act.index]]
    node_t = int(t_act.idxmax()[0]) if len(t_act) and t_act.max() > 1e-6 else int(b.id[ar.host_bus[area]])
    return [("T", node_t, int(period)), ("D root", root, int(period)), ("D", int(node_d), int(period))]


@pytest.mark.parametrize("name", ["italy_693", "italy_652"])
def test_italian_lmps_match_finite_differences(name, request):
    s: Solved = request.getfixturevalue(name)
    chosen = fd_buses(s)
    kinds = []
    for role, node, period in chosen:
        kind, fd, lam = fd_check(s, node, period)
        kinds.append((role, node, period, kind, fd, lam))
    assert [k[0] for k in kinds] == ["T", "D root", "D"]
    # prices are in the €/MWh range of the orders, not penalty values
    assert all(abs(k[5]) < 1e3 for k in kinds), kinds


# ================================================================================================ tiny feeder
R_LINE, X_LINE, P_LOAD, Q_LOAD, PRICE = 0.01, 0.02, 1.0, 0.5, 10.0


def write_feeder(folder: Path) -> Path:
    """1 T node (reference, up order 0–10 MW at 10 €/MWh) — interface — root D bus 2 (w = 1) — line to bus 3
    (R = 0.01, X = 0.02, B = 0), load P = -1 MW, Q = -0.5 Mvar at bus 3; no D orders."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "GeneralParam.csv": "Rho,NbIter,StartTime,EndTime,baseMVA\n1,100,1,1,1\n",
        "TransmissionNodes.csv": "ID,RefNode\n1,1\n",
        "DistributionNodes.csv": "ID,Vsqmin,Vsqmax,Root,G,B\n2,1,1,0,0,0\n3,0.81,1.21,0,0,0\n",
        "Edges.csv": (
            "ID,NodeFrom,NodeTo,R,G,X,B,S,Charge,Tap,Shift,R_bis\n"
            "1,1,2,0.001,0,0.01,0,100,0,1,0,0\n"
            f"2,2,3,{R_LINE},0,{X_LINE},0,1000,0,1,0,0\n"
        ),
        "NetInjections.csv": f"Node,forT,P,Q\n1,1,0,0\n2,1,0,0\n3,1,{-P_LOAD},{-Q_LOAD}\n",
        "Bids.csv": (
            "Node,QtBids,QBid,QBidSeg,forT,QuantityLoQ,PriceLoQ,QuantityHiQ,PriceHiQ,status,Xlb,Xub\n"
            f"1,1,1,1,1,0,{PRICE},10,{PRICE},1,0,1\n"
        ),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def exact_feeder() -> dict[str, float]:
    """Exact AC solution of the feeder by fixed-point iteration of the DistFlow equations (w_1 = 1)."""
    w1 = 1.0
    ell = 0.0
    for _ in range(200):
        Pe = P_LOAD + R_LINE * ell
        Qe = Q_LOAD + X_LINE * ell
        new = (Pe**2 + Qe**2) / w1
        if abs(new - ell) <= 1e-14:
            ell = new
            break
        ell = new
    else:
        raise AssertionError("DistFlow iteration did not converge")
    Pe = P_LOAD + R_LINE * ell
    Qe = Q_LOAD + X_LINE * ell
    w2 = w1 - 2 * (R_LINE * Pe + X_LINE * Qe) + (R_LINE**2 + X_LINE**2) * ell
    return {"Pe": Pe, "Qe": Qe, "ell": ell, "loss": R_LINE * ell, "w2": w2, "cost": PRICE * Pe}


def test_feeder_socp_matches_exact_ac(tmp_path):
    inst = read(write_feeder(tmp_path / "feeder"))
    ex = exact_feeder()
    # the reference satisfies the DistFlow equations exactly (ℓ ≈ 1.303 > |S_load|² = 1.25: losses feed back)
    assert ex["ell"] == pytest.approx((ex["Pe"] ** 2 + ex["Qe"] ** 2) / 1.0, abs=1e-13)
    assert 1.29 < ex["ell"] < 1.31
    res = clear_centralized(inst, relax=True)
    t = res.tables
    line = t["lines"].query("edge == 2")
    assert float(line.loss_mw.iloc[0]) == pytest.approx(ex["loss"], abs=1e-7)
    assert float(line.p_from_mw.iloc[0]) == pytest.approx(ex["Pe"], abs=1e-7)
    assert float(line.q_from_mvar.iloc[0]) == pytest.approx(ex["Qe"], abs=1e-7)
    assert float(line.soc_gap.iloc[0]) == pytest.approx(0.0, abs=1e-7)
    assert _value(t["buses"], "vsq_pu", node=3) == pytest.approx(ex["w2"], abs=1e-7)
    ifc = t["interfaces"]
    assert float(ifc.export_mw.iloc[0]) == pytest.approx(-ex["Pe"], abs=1e-7)  # the area imports P_e
    assert float(ifc.export_mvar.iloc[0]) == pytest.approx(-ex["Qe"], abs=1e-7)
    assert _value(t["segments"], "accepted_mw", node=1) == pytest.approx(ex["Pe"], abs=1e-7)
    assert res.total_cost == pytest.approx(ex["cost"], abs=1e-7)
    assert res.summary["cost"]["slack_cost_eur"] <= 1e-7
    # prices: 10 €/MWh at the T node and the root (lossless interface); the load bus pays the marginal loss
    lam = t["buses"].set_index("node").price_p_eur_mwh
    assert lam[1] == pytest.approx(PRICE, abs=1e-5) and lam[2] == pytest.approx(PRICE, abs=1e-5)
    assert lam[3] > PRICE
    assert_physically_feasible(inst, t)


def test_feeder_lindistflow_is_linear_and_lossless(tmp_path):
    inst = read(write_feeder(tmp_path / "feeder"))
    res = clear_centralized(inst, relax=True, dist_model="lindistflow")
    t = res.tables
    line = t["lines"].query("edge == 2")
    w2 = 1 - 2 * (R_LINE * P_LOAD + X_LINE * Q_LOAD)
    assert w2 == pytest.approx(0.96)
    assert _value(t["buses"], "vsq_pu", node=3) == pytest.approx(w2, abs=1e-9)
    assert float(line.loss_mw.iloc[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(line.p_from_mw.iloc[0]) == pytest.approx(P_LOAD, abs=1e-9)
    assert float(t["interfaces"].export_mw.iloc[0]) == pytest.approx(-P_LOAD, abs=1e-9)
    assert res.total_cost == pytest.approx(PRICE * P_LOAD, abs=1e-9)
    assert (t["lines"].soc_gap == 0).all()
    np.testing.assert_allclose(t["buses"].price_p_eur_mwh, PRICE, atol=1e-9)
    assert res.summary["options"]["dist_model"] == "lindistflow"


# ================================================================================================ CLI
def test_cli_clear_writes_results(tmp_path, capsys):
    path = _instance_dir("three-node")
    out = tmp_path / "r"
    rc = main(["clear", str(path), "--relax", "--reactive-policy", "free", "--out", str(out), "--quiet"])
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {"segments.csv", "bids.csv", "buses.csv", "interfaces.csv", "lines.csv", "summary.json"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost"]["total_cost_eur"] == pytest.approx(14.537218, abs=1e-5)
    assert summary["options"]["reactive_policy"] == "free" and summary["options"]["integer"] is False
    buses = pd.read_csv(out / "buses.csv")
    np.testing.assert_allclose(buses.sort_values("node").price_p_eur_mwh, [15.0, 15.0, 10.0], atol=1e-4)
    seg = pd.read_csv(out / "segments.csv").sort_values("node")
    np.testing.assert_allclose(seg.accepted_mw, [0.0, 0.502482, 0.7], atol=1e-5)
    # the atomic writer leaves nothing but the results folder behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    captured = capsys.readouterr()
    assert captured.err == ""
    total = re.search(r"^total cost\s+([-0-9.,]+) €", captured.out, re.M)  # in cents, thousands separated
    assert total is not None and float(total.group(1).replace(",", "")) == pytest.approx(14.54, abs=0.005)


def test_cli_unknown_scheme_exits_2(tmp_path, capsys):
    path = _instance_dir("three-node")
    with pytest.raises(SystemExit) as exc:
        main(["clear", str(path), "--scheme", "bogus", "--out", str(tmp_path / "r"), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_cli_bad_slack_penalty_exits_2(tmp_path, capsys):
    path = _instance_dir("three-node")
    rc = main(["clear", str(path), "--relax", "--slack-penalty", "1", "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("tdmarket: error: ") and "slack penalty" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_cli_negative_mip_gap_exits_2(tmp_path, capsys):
    path = _instance_dir("three-node")
    rc = main(["clear", str(path), "--mip-gap", "-1", "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2


def test_cli_json_output_is_pure_json_on_lp_path():
    # a fresh process: the banner appears once per process, so an in-process test would depend on test order
    path = _instance_dir("three-node")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tdmarket",
            "clear",
            str(path),
            "--relax",
            "--dist-model",
            "lindistflow",
            "--json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # fails while the HiGHS banner precedes the JSON
    assert summary["options"]["dist_model"] == "lindistflow"
