"""Centralized relaxed clearing benchmark (default italy-652; end-to-end target <= 10 s on 2 cores).

    PYTHONPATH=. python benchmarks/centralized_relaxed.py [--instance PATH] [--dist-model socp|lindistflow]
                                                         [--runs 3] [--no-peer]

Prints, for tdmarket:
* ``load``    `tdmarket.io.read` (parse + validate + build the Instance);
* ``build``   `ClearingProblem` (relaxation (b): binaries in [0, 1], all logic kept) including the assembly
              of the final sparse arrays (`prog.A`, `prog.cone_A`); median of ``--runs`` builds;
* ``solve``   `solve(prog)` (Clarabel for the SOCP, HiGHS for LinDistFlow), then the same check the scheme runs;
* ``write``   result tables (`extract`) + summary + `write_results` (CSV and Parquet) to a temporary folder;
* ``end-to-end``  one `tdmarket clear PATH --relax --out DIR --quiet` through `tdmarket.cli.main`;
* the problem size (variables n, linear rows m, cones, nonzeros).

Peer: the SAME relaxed model written with cvxpy — DC transmission, T–D interfaces with their rating circles,
SOC branch flow with line charging/taps/shunts (or LinDistFlow with K-gons), the order language O1–O13 with
binaries relaxed to [0, 1], penalised balance slacks — built from the Instance arrays with vectorised sparse
matrix expressions.  Every index set (logic bids, start/stop predecessors, half-plane rows, reactive policy
classes, O13 direction bids) is derived here from the Instance, independently of tdmarket's formulation code,
so the matching optimum is a cross-check of both models.  It prints cvxpy's build time (problem construction +
`get_problem_data(CLARABEL)` canonicalisation; median of ``--runs``) against ours, the ratio (target: ours >= 10x faster), and the
optimal objective of one CLARABEL solve next to ours (they should agree to ~1e-6 relative).
Without cvxpy installed the peer is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tdmarket.cli import main as cli_main  # noqa: E402
from tdmarket.formulations.clearing import ClearingProblem  # noqa: E402
from tdmarket.formulations.options import ModelOptions  # noqa: E402
from tdmarket.io import read  # noqa: E402
from tdmarket.model.instance import BranchKind, Instance  # noqa: E402
from tdmarket.reporting.writer import write_results  # noqa: E402
from tdmarket.schemes.centralized import summarise  # noqa: E402
from tdmarket.schemes.result import ClearingResult  # noqa: E402
from tdmarket.solvers import solve  # noqa: E402

DEFAULT = ROOT / ".." / "shared" / "smartnet" / "italy-652"
TARGET_END_TO_END_S = 10.0
TARGET_RATIO = 10.0


# ============================================================================================ tdmarket
def run_ours(inst_path: Path, opts: ModelOptions, runs: int) -> dict:
    out: dict = {}
    t0 = time.perf_counter()
    inst = read(inst_path)
    out["load"] = time.perf_counter() - t0

    builds = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        cp_ = ClearingProblem(inst, opts)
        prog = cp_.prog
        _ = prog.A, prog.cone_A  # assemble the final sparse arrays
        builds.append(time.perf_counter() - t0)
    out["build"] = statistics.median(builds)
    out["build_best"] = min(builds)

    t0 = time.perf_counter()
    sol = solve(prog)
    chk = cp_.check(sol.x)
    out["solve"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tables = cp_.extract(sol.x, sol.row_dual)
    mip = {"binaries": 0, "lower_bound": None, "gap": None, "rounds": []}
    summary = summarise(cp_, sol, tables, mip, {"build": out["build"], "solve": out["solve"]}, "centralized")
    result = ClearingResult(scheme="centralized", instance=inst.name, tables=tables, summary=summary)
    with tempfile.TemporaryDirectory() as tmp:
        write_results(result, Path(tmp) / "out")
    out["write"] = time.perf_counter() - t0

    out.update(inst=inst, prog=prog, sol=sol, check=chk, cost=cp_.cost_parts(sol.x))
    return out


def run_cli(inst_path: Path, dist_model: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli_main(
                [
                    "clear",
                    str(inst_path),
                    "--relax",
                    "--dist-model",
                    dist_model,
                    "--out",
                    str(Path(tmp) / "out"),
                    "--quiet",
                ]
            )
        return time.perf_counter() - t0, rc


# ============================================================================================ cvxpy peer
def _m(rows, cols, vals, shape) -> sp.csr_matrix:
    rows = np.asarray(rows, np.int64).ravel()
    cols = np.asarray(cols, np.int64).ravel()
    vals = np.broadcast_to(np.asarray(vals, float), rows.shape).ravel()
    return sp.csr_matrix((vals, (rows, cols)), shape=shape)


def _order_sets(inst: Instance, policy: str) -> dict:
    """Index sets of the order language (docs/model.md §4), derived from the Instance arrays."""
    ob = inst.orders
    seg, bids = ob.segments, ob.bids
    S, B = len(seg), len(bids)
    w = seg.hi - seg.lo
    is_d = inst.buses.is_dist[bids.bus]
    # previous-period QBid of the same QtBid
    key = pd.Series(np.arange(B), index=pd.MultiIndex.from_arrays([bids.qtbid, bids.period]))
    key = key[~key.index.duplicated()]
    prev = key.reindex(pd.MultiIndex.from_arrays([bids.qtbid, bids.period - 1])).fillna(-1).to_numpy(np.int64)
    in_group = np.isin(bids.qtbid, ob.exclusive_qtbid)
    logic = bids.alpha_omega.copy() | in_group
    logic[ob.mindur_bid1] = True
    logic[ob.mindur_bid2] = True
    pa = prev[bids.alpha_omega]
    logic[pa[pa >= 0]] = True
    seg_bin = (seg.xlb > 0) & ((w != 0) | logic[seg.bid])
    minratio = seg_bin & (seg.xlb < 1)
    up = np.bincount(seg.bid, w > 0, minlength=B) > 0
    dn = np.bincount(seg.bid, w < 0, minlength=B) > 0
    min_up = pd.Series(seg.price[w > 0]).groupby(seg.bid[w > 0]).min().reindex(range(B)).fillna(np.inf).to_numpy()
    min_dn = pd.Series(seg.price[w < 0]).groupby(seg.bid[w < 0]).min().reindex(range(B)).fillna(np.inf).to_numpy()
    has_xlb = np.bincount(seg.bid, seg.xlb > 0, minlength=B) > 0
    needs_delta = up & dn & (has_xlb | (min_up + min_dn < 0))
    # half-planes: deduplicated rows, applied to every distribution QBid of their QtBid
    hp = pd.DataFrame({"qt": ob.hp_qtbid, "m": ob.hp_slope, "o": ob.hp_offset, "geq": ob.hp_geq}).drop_duplicates()
    hp = hp.merge(pd.DataFrame({"qt": bids.qtbid[is_d], "bid": np.flatnonzero(is_d)}), on="qt")
    geq = np.zeros(B, bool)
    leq = np.zeros(B, bool)
    geq[hp.bid[hp.geq].to_numpy()] = True
    leq[hp.bid[~hp.geq].to_numpy()] = True
    disc = np.zeros(B, bool)
    disc[ob.disc_bid] = True
    unrestricted = is_d & ~geq & ~leq & ~disc
    one_sided = is_d & (geq ^ leq) & ~disc
    pbar = np.maximum(
        np.bincount(seg.bid, np.where(w > 0, w, 0), minlength=B),
        np.bincount(seg.bid, np.where(w < 0, -w, 0), minlength=B),
    )
    mmax = hp.assign(a=hp.m.abs()).groupby("bid").a.max().reindex(range(B)).fillna(0.0).to_numpy()
    return dict(
        S=S,
        B=B,
        w=w,
        is_d=is_d,
        prev=prev,
        in_group=in_group,
        logic=logic,
        minratio=minratio,
        needs_delta=needs_delta,
        hp=hp,
        unrestricted=unrestricted,
        one_sided=one_sided,
        cap_radius=pbar * np.sqrt(1 + mmax**2),
        fix_q=unrestricted if policy in ("bounded", "zero") else np.zeros(B, bool),
    )


def build_cvxpy(inst: Instance, opts: ModelOptions):
    """The relaxed clearing problem (b) as a cvxpy Problem (vectorised; see module docstring)."""
    import cvxpy as cp

    conic = opts.dist_model == "socp"
    K = opts.polygon_sides
    T = inst.n_periods
    b, br, ar, ob = inst.buses, inst.branches, inst.areas, inst.orders
    seg, bids = ob.segments, ob.bids
    n = len(b)
    o = _order_sets(inst, opts.reactive_policy)
    S, B, w = o["S"], o["B"], o["w"]
    cons = []

    def circles(a, bb, radius):
        """||(a_k, b_k)|| <= radius_k: a cone, or the inscribed K-gon of the LinDistFlow model."""
        if conic:
            cons.append(cp.SOC(radius, cp.vstack([a, bb]), axis=0))
        else:
            for k in range(K):
                th = 2 * np.pi * k / K
                cons.append(np.cos(th) * a + np.sin(th) * bb <= radius * np.cos(np.pi / K))

    # ------------------------------------------------------------------ orders (O1–O13, relaxed)
    xi_ub = np.where((w == 0) & ~o["logic"][seg.bid], 0.0, 1.0)
    xi = cp.Variable(S)
    cons += [xi >= 0, xi <= xi_ub]
    cost = (seg.price * np.abs(w) * opts.period_hours) @ xi
    vm_seg = np.flatnonzero(o["minratio"])
    zb = np.flatnonzero(o["logic"])
    zpos = np.full(B, -1)
    zpos[zb] = np.arange(len(zb))
    Zq = np.unique(ob.exclusive_qtbid)
    ao = np.flatnonzero(bids.alpha_omega)
    dl = np.flatnonzero(o["needs_delta"])
    qb = np.flatnonzero(o["is_d"])
    qpos = np.full(B, -1)
    qpos[qb] = np.arange(len(qb))
    nv, nz, nZ, na, nd, nq = len(vm_seg), len(zb), len(Zq), len(ao), len(dl), len(qb)
    vm, z, Z = cp.Variable(nv), cp.Variable(nz), cp.Variable(nZ)
    al, om, de, q = cp.Variable(na), cp.Variable(na), cp.Variable(nd), cp.Variable(nq)
    cons += [
        vm >= 0,
        vm <= 1,
        z >= 0,
        z <= 1,
        Z >= 0,
        Z <= 1,
        al >= 0,
        al <= np.where(bids.no_new_act[ao], 0.0, 1.0),
        om >= 0,
        om <= 1,
        de >= 0,
        de <= 1,
    ]
    fixq = o["fix_q"][qb]
    if fixq.any():
        cons.append(q[np.flatnonzero(fixq)] == 0)
    # O2: Xlb v <= xi <= v
    if nv:
        cons += [cp.multiply(seg.xlb[vm_seg], vm) <= xi[vm_seg], xi[vm_seg] <= vm]
    # acceptance indicator per segment: v for min-ratio segments, xi otherwise
    is_vm = np.zeros(S, bool)
    is_vm[vm_seg] = True
    vm_of = np.full(S, -1)
    vm_of[vm_seg] = np.arange(nv)

    def accept(rows, segs, nrows):
        segs = np.asarray(segs)
        e = _m(np.asarray(rows)[~is_vm[segs]], segs[~is_vm[segs]], 1.0, (nrows, S)) @ xi
        if is_vm[segs].any():
            e = e + _m(np.asarray(rows)[is_vm[segs]], vm_of[segs[is_vm[segs]]], 1.0, (nrows, nv)) @ vm
        return e

    s_in = np.flatnonzero(o["logic"][seg.bid])
    if len(s_in):
        # O3: accept_s <= z_b ; z_b <= Σ_s accept_s
        k = len(s_in)
        cons.append(accept(np.arange(k), s_in, k) <= _m(np.arange(k), zpos[seg.bid[s_in]], 1.0, (k, nz)) @ z)
        cons.append(z <= accept(zpos[seg.bid[s_in]], s_in, nz))
    if nZ:
        # O4 / O5: exclusive groups over the whole horizon
        gb = np.flatnonzero(o["in_group"])
        qrow = np.searchsorted(Zq, bids.qtbid[gb])
        k = len(gb)
        cons.append(_m(np.arange(k), zpos[gb], 1.0, (k, nz)) @ z <= _m(np.arange(k), qrow, 1.0, (k, nZ)) @ Z)
        cons.append(Z <= _m(qrow, zpos[gb], 1.0, (nZ, nz)) @ z)
        groups, grow = np.unique(ob.exclusive_group, return_inverse=True)
        cons.append(_m(grow, np.searchsorted(Zq, ob.exclusive_qtbid), 1.0, (len(groups), nZ)) @ Z <= 1)
    if na:
        # O6 / O7: z_b - z_prev = alpha - omega, alpha + omega <= 1 (no previous QBid: z_prev = 0)
        pv = o["prev"][ao]
        has = pv >= 0
        zprev = _m(np.flatnonzero(has), zpos[pv[has]], 1.0, (na, nz)) @ z
        cons += [_m(np.arange(na), zpos[ao], 1.0, (na, nz)) @ z - zprev == al - om, al + om <= 1]
    if len(ob.mindur_bid1):
        # O8: alpha_{b1} <= z_{b2}
        apos = np.full(B, -1)
        apos[ao] = np.arange(na)
        k = len(ob.mindur_bid1)
        cons.append(
            _m(np.arange(k), apos[ob.mindur_bid1], 1.0, (k, na)) @ al
            <= _m(np.arange(k), zpos[ob.mindur_bid2], 1.0, (k, nz)) @ z
        )
    if nd:
        # O13: up xi <= delta, down xi <= 1 - delta
        dpos = np.full(B, -1)
        dpos[dl] = np.arange(nd)
        sd = np.flatnonzero(o["needs_delta"][seg.bid] & (w != 0))
        sgn = np.where(w[sd] > 0, 1.0, -1.0)
        cons.append(
            xi[sd]
            <= cp.multiply(sgn, _m(np.arange(len(sd)), dpos[seg.bid[sd]], 1.0, (len(sd), nd)) @ de)
            + np.where(sgn > 0, 0.0, 1.0)
        )

    def p_of_bids(bid_list):
        """P_b of each listed QBid (with repetitions) as a sparse map on xi."""
        bid_list = np.asarray(bid_list)
        m = pd.DataFrame({"bid": bid_list, "row": np.arange(len(bid_list))}).merge(
            pd.DataFrame({"bid": seg.bid, "s": np.arange(S)}), on="bid"
        )
        return _m(m.row, m.s, w[m.s.to_numpy()], (len(bid_list), S))

    # O9 ramps on activated quantities, period t -> t+1
    rr = np.flatnonzero(bids.period[ob.ramp_bid] + 1 < T) if len(ob.ramp_bid) else np.zeros(0, np.int64)
    if len(rr):
        rb = ob.ramp_bid[rr]
        nxt = pd.DataFrame({"qt": bids.qtbid[rb], "t": bids.period[rb] + 1, "row": np.arange(len(rr))}).merge(
            pd.DataFrame({"qt": bids.qtbid, "t": bids.period, "bid": np.arange(B)}), on=["qt", "t"]
        )
        Pn = _m(nxt.row, nxt.bid, 1.0, (len(rr), B)) @ p_of_bids(np.arange(B))
        diff = (Pn - p_of_bids(rb)) @ xi
        d_ = ob.ramp_delta[rr]
        mn = ob.ramp_is_min[rr]
        if (~mn).any():
            cons.append(diff[np.flatnonzero(~mn)] <= d_[~mn])
        if mn.any():
            cons.append(diff[np.flatnonzero(mn)] >= d_[mn])
    # O10 half-planes
    hp = o["hp"]
    if len(hp):
        hb = hp.bid.to_numpy()
        expr = q[qpos[hb]] - cp.multiply(hp.m.to_numpy(), p_of_bids(hb) @ xi)
        g = hp.geq.to_numpy()
        if g.any():
            cons.append(expr[np.flatnonzero(g)] >= hp.o.to_numpy()[g])
        if (~g).any():
            cons.append(expr[np.flatnonzero(~g)] <= hp.o.to_numpy()[~g])
    # O11 discs, O12 capability discs (bounded policy, one-sided QBids)
    if len(ob.disc_bid):
        circles(p_of_bids(ob.disc_bid) @ xi, q[qpos[ob.disc_bid]], ob.disc_radius)
    if opts.reactive_policy == "bounded":
        cap = np.flatnonzero(o["one_sided"])
        if len(cap):
            circles(p_of_bids(cap) @ xi, q[qpos[cap]], o["cap_radius"][cap])

    # ------------------------------------------------------------------ network
    rowP = lambda bus, t: np.asarray(bus) * T + np.asarray(t)  # balance row of (bus, period), all buses
    nP = n * T
    per = lambda k: np.tile(np.arange(T), k)
    rep = lambda a: np.repeat(np.asarray(a), T)
    terms_p, terms_q = [], []  # (sparse map into balance rows, variable)
    # orders
    terms_p.append((_m(rowP(bids.bus[seg.bid], bids.period[seg.bid]), np.arange(S), w, (nP, S)), xi))
    terms_q.append((_m(rowP(bids.bus[qb], bids.period[qb]), np.arange(nq), 1.0, (nP, nq)), q))
    # DC transmission: X f = θ_f − θ_t − φ, θ_ref = 0, |f| <= S
    tb = np.flatnonzero(~b.is_dist)
    tpos = np.full(n, -1)
    tpos[tb] = np.arange(len(tb))
    tl = np.flatnonzero(br.kind == BranchKind.TRANSMISSION)
    nt, L = len(tb), len(tl)
    th, f = cp.Variable(nt * T), cp.Variable(L * T)
    ref = np.flatnonzero(rep(b.is_ref[tb]))
    if len(ref):
        cons.append(th[ref] == 0)
    rating_t = rep(br.rating[tl])
    rated_t = np.flatnonzero(np.isfinite(rating_t))
    cons += [f[rated_t] <= rating_t[rated_t], f[rated_t] >= -rating_t[rated_t]]
    fr_t, to_t = rep(br.f[tl]), rep(br.t[tl])
    pt = per(L)
    Mth = _m(
        np.r_[np.arange(L * T), np.arange(L * T)],
        np.r_[tpos[fr_t] * T + pt, tpos[to_t] * T + pt],
        np.r_[-np.ones(L * T), np.ones(L * T)],
        (L * T, nt * T),
    )
    cons.append(cp.multiply(rep(br.x[tl]), f) + Mth @ th == -rep(np.deg2rad(br.shift_deg[tl])))
    terms_p.append(
        (
            _m(
                np.r_[rowP(fr_t, pt), rowP(to_t, pt)],
                np.r_[np.arange(L * T), np.arange(L * T)],
                np.r_[-np.ones(L * T), np.ones(L * T)],
                (nP, L * T),
            ),
            f,
        )
    )
    # interfaces: x (MW) and y (Mvar) exported by each area at its root, |(x, y)| <= S if rated
    has = ar.interface >= 0
    ia = np.flatnonzero(has)
    ia = ia[b.is_dist[br.f[ar.interface[ia]]] != b.is_dist[br.t[ar.interface[ia]]]]
    A = len(ia)
    x, y = cp.Variable(A * T), cp.Variable(A * T)
    if not opts.interface_reactive:
        cons.append(y == 0)
    host, root = rep(ar.host_bus[ia]), rep(ar.root_bus[ia])
    pa_ = per(A)
    terms_p.append(
        (
            _m(
                np.r_[rowP(host, pa_), rowP(root, pa_)],
                np.r_[np.arange(A * T), np.arange(A * T)],
                np.r_[np.ones(A * T), -np.ones(A * T)],
                (nP, A * T),
            ),
            x,
        )
    )
    terms_q.append((_m(rowP(root, pa_), np.arange(A * T), -1.0, (nP, A * T)), y))
    r_if = rep(br.rating[ar.interface[ia]])
    ri = np.flatnonzero(np.isfinite(r_if))
    if len(ri):
        circles(x[ri], y[ri], r_if[ri])
    # distribution: branch flow (SOC) or LinDistFlow, with charging, taps and nodal shunts
    db = np.flatnonzero(b.is_dist)
    dpos_ = np.full(n, -1)
    dpos_[db] = np.arange(len(db))
    dline = np.flatnonzero(b.is_dist[br.f] & b.is_dist[br.t])
    nb_, nl = len(db), len(dline)
    vmax = np.where(np.isfinite(b.vsq_max[db]), b.vsq_max[db], np.inf)
    wv = cp.Variable(nb_ * T)
    cons.append(wv >= rep(b.vsq_min[db]))
    fin = np.flatnonzero(np.isfinite(rep(vmax)))
    cons.append(wv[fin] <= rep(vmax)[fin])
    P, Q = cp.Variable(nl * T), cp.Variable(nl * T)
    pi = opts.pi_model
    R, X = rep(br.r[dline]), rep(br.x[dline])
    bc = rep(br.b[dline] / 2 if pi else np.zeros(nl))
    tau2 = rep(br.tap[dline] ** 2 if pi else np.ones(nl))
    fr_d, to_d = rep(br.f[dline]), rep(br.t[dline])
    pl = per(nl)
    k = nl * T
    Wf = _m(np.arange(k), dpos_[fr_d] * T + pl, 1.0, (k, nb_ * T))
    Wt = _m(np.arange(k), dpos_[to_d] * T + pl, 1.0, (k, nb_ * T))
    u = cp.multiply(1 / tau2, Wf @ wv)
    wt = Wt @ wv
    drop = wt - u + cp.multiply(2 * R, P) + cp.multiply(2 * X, Q)
    if conic:
        ell = cp.Variable(k)
        cons += [ell >= 0, drop - cp.multiply(R**2 + X**2, ell) == 0]
        cons.append(cp.SOC(u + ell, cp.vstack([2 * P, 2 * Q, u - ell]), axis=0))
    else:
        ell = None
        cons.append(drop == 0)
    p_to = -P + (cp.multiply(R, ell) if conic else 0)
    q_to = -Q + (cp.multiply(X, ell) if conic else 0) - cp.multiply(bc, wt)
    q_fr = Q - cp.multiply(bc / tau2, Wf @ wv)
    S_d = rep(br.rating[dline])
    rd = np.flatnonzero(np.isfinite(S_d))
    if len(rd):
        circles(P[rd], q_fr[rd], S_d[rd])
        circles(p_to[rd], q_to[rd], S_d[rd])
    Mfr = _m(rowP(fr_d, pl), np.arange(k), 1.0, (nP, k))
    Mto = _m(rowP(to_d, pl), np.arange(k), 1.0, (nP, k))
    terms_p += [(-Mfr, P), (Mto, P)]
    terms_q += [(-Mfr, Q), (Mto, Q), (Mfr @ sp.diags(bc / tau2) @ Wf, wv), (Mto @ sp.diags(bc) @ Wt, wv)]
    if conic:
        terms_p.append((-(Mto @ sp.diags(R)), ell))
        terms_q.append((-(Mto @ sp.diags(X)), ell))
    g_sh = b.g_shunt[db] if pi else np.zeros(nb_)
    b_sh = b.b_shunt[db] if pi else np.zeros(nb_)
    Mw = _m(rowP(rep(db), per(nb_)), np.arange(nb_ * T), 1.0, (nP, nb_ * T))
    terms_p.append((Mw @ sp.diags(-rep(g_sh)), wv))
    terms_q.append((Mw @ sp.diags(rep(b_sh)), wv))

    # ------------------------------------------------------------------ balances with penalised slacks
    kappa = opts.slack_penalty * opts.period_hours
    qrows = np.flatnonzero(np.repeat(b.is_dist, T))
    sp_, sm_ = cp.Variable(nP), cp.Variable(nP)
    sqp, sqm = cp.Variable(len(qrows)), cp.Variable(len(qrows))
    cons += [sp_ >= 0, sm_ >= 0, sqp >= 0, sqm >= 0]
    q_inj = inst.q_inj.copy()
    if opts.zero_root_q:
        q_inj[ar.root_bus[ar.root_bus >= 0]] = 0.0
    bal_p = sum(M @ v for M, v in terms_p) + sp_ - sm_
    cons.append(bal_p == -inst.p_inj.ravel())
    Sel = _m(np.arange(len(qrows)), qrows, 1.0, (len(qrows), nP))
    bal_q = sum((Sel @ M) @ v for M, v in terms_q) + sqp - sqm
    cons.append(bal_q == -q_inj.ravel()[qrows])
    objective = cost + kappa * (cp.sum(sp_) + cp.sum(sm_) + cp.sum(sqp) + cp.sum(sqm))
    return cp.Problem(cp.Minimize(objective), cons)


CLARABEL_OPTS = dict(tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9, tol_ktratio=1e-9, max_iter=200)


def run_peer(inst: Instance, opts: ModelOptions, runs: int) -> dict | None:
    try:
        import cvxpy as cp
    except ImportError:
        return None
    construct, canon = [], []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        prob = build_cvxpy(inst, opts)
        construct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        data, _, _ = prob.get_problem_data(cp.CLARABEL)
        canon.append(time.perf_counter() - t0)
    builds = [a + b for a, b in zip(construct, canon)]
    t_construct, t_canon = statistics.median(construct), statistics.median(canon)
    t0 = time.perf_counter()
    prob.solve(solver=cp.CLARABEL, **CLARABEL_OPTS)
    t_solve = time.perf_counter() - t0
    return {
        "version": cp.__version__,
        "construct": t_construct,
        "canon": t_canon,
        "solve": t_solve,
        "build": statistics.median(builds),
        "build_best": min(builds),
        "status": prob.status,
        "objective": prob.value,
        "n": data["A"].shape[1],
        "m": data["A"].shape[0],
        "nnz": data["A"].nnz,
        "n_constraints": len(prob.constraints),
    }


# ============================================================================================ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instance", default=str(DEFAULT), help="instance folder (default: italy-652)")
    ap.add_argument("--dist-model", default="socp", choices=("socp", "lindistflow"))
    ap.add_argument("--no-peer", action="store_true", help="skip the cvxpy peer")
    ap.add_argument("--runs", type=int, default=3, help="build repetitions, median reported (default 3)")
    args = ap.parse_args(argv)
    path = Path(args.instance)
    if not (path / "GeneralParam.csv").is_file():
        print(f"centralized_relaxed.py: instance folder not found: {path}", file=sys.stderr)
        return 2
    opts = ModelOptions(integer=False, dist_model=args.dist_model)

    ours = run_ours(path, opts, args.runs)
    e2e, rc = run_cli(path, args.dist_model)
    inst, prog, sol, chk = ours["inst"], ours["prog"], ours["sol"], ours["check"]
    n_cones = sum(c for _, c in prog.cone_dims)
    print(
        f"instance {path.resolve().name}: relaxed centralized clearing (b), dist model {args.dist_model}, "
        f"reactive policy {opts.reactive_policy}"
    )
    print(
        f"problem  n {prog.n} variables, m {prog.m} linear rows ({prog.A.nnz} nonzeros), "
        f"{n_cones} cones / {prog.k} cone rows ({prog.cone_A.nnz} nonzeros): "
        + ", ".join(f"{c}x SOC({d})" for d, c in prog.cone_dims)
    )
    print(
        f"solver   {sol.solver}: {sol.status.value}, {sol.iterations} iterations, objective {sol.objective:.9f}; "
        f"check rows {chk.max_row_violation:.1e} bounds {chk.max_bound_violation:.1e} "
        f"cones {chk.max_cone_violation:.1e}"
    )
    print(f"tdmarket times (s; build = median of {max(1, args.runs)}, best {ours['build_best']:.3f})")
    for key in ("load", "build", "solve", "write"):
        print(f"  {key:<12}{ours[key]:8.3f}")
    verdict = "OK" if e2e <= TARGET_END_TO_END_S and rc == 0 else "SLOW" if rc == 0 else f"FAILED (exit {rc})"
    print(
        f"  {'end-to-end':<12}{e2e:8.3f}   (tdmarket clear --relax --out; target <= {TARGET_END_TO_END_S:.0f} s: "
        f"{verdict})"
    )

    if args.no_peer:
        print("peer     cvxpy skipped (--no-peer)")
        return 0
    peer = run_peer(inst, opts, args.runs)
    if peer is None:
        print("peer     cvxpy not installed: skipped")
        return 0
    build_cvx = peer["build"]
    ratio = build_cvx / ours["build"]
    rel = abs(peer["objective"] - sol.objective) / max(1.0, abs(sol.objective))
    print(
        f"peer     cvxpy {peer['version']} (same model, {peer['n_constraints']} vectorised constraint objects; "
        f"CLARABEL data: n {peer['n']}, rows {peer['m']}, {peer['nnz']} nonzeros)"
    )
    print(f"  {'construct':<12}{peer['construct']:8.3f}")
    print(f"  {'canonicalise':<12}{peer['canon']:8.3f}")
    print(
        f"  {'build':<12}{build_cvx:8.3f}   (median of {max(1, args.runs)}, best {peer['build_best']:.3f}) "
        f"vs tdmarket {ours['build']:.3f}: ratio {ratio:.1f}x "
        f"(target >= {TARGET_RATIO:.0f}x: {'OK' if ratio >= TARGET_RATIO else 'MISSED'})"
    )
    print(f"  {'solve':<12}{peer['solve']:8.3f}   ({peer['status']})")
    print(f"objective tdmarket {sol.objective:.9f}   cvxpy {peer['objective']:.9f}   relative difference {rel:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
