"""Order block: the SmartNet order language as variables and rows (docs/model.md §4, O1–O13).

Variables (all element-wise vectors):
  xi     activation fraction per segment, p_s = w_s·xi_s, cost π_s|w_s|Δ (AON: xi binary, cost counted)
  vmin   acceptance binary of segments with 0 < Xlb < 1
  z      acceptance of QBids that carry logic (start/stop, exclusive groups, min duration)
  Z      acceptance of QtBids in exclusive groups
  alpha, omega   start / stop of start-stop QBids (continuous; integral through z)
  delta  direction binary of QBids that need O13 as a constraint (§4.4); other two-way QBids are netted
  q      reactive output Q_b (Mvar) of distribution QBids
With `integer=False` every binary is relaxed to [0, 1] and all logic rows are kept (relaxation (b)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..model.instance import Instance
from .circles import Affine
from .distribution import DistributionFormulation, distribution_formulation
from .options import ModelOptions
from .program import Program
from .terms import Terms

if TYPE_CHECKING:
    from .balance import Balance


@dataclass
class OrderIndex:
    """Index maps of the order block, needed to read results and to fix binaries."""

    xi: np.ndarray  # column per segment
    q: np.ndarray  # column per bid (-1 for T bids)
    z: np.ndarray  # column per bid (-1 without logic)
    integer_cols: np.ndarray  # every integer column of the block
    netted_bids: np.ndarray  # bids with up and down segments and no direction binary: net after solving


def _prev_bid(bids) -> np.ndarray:
    """Position of the same QtBid's QBid in the previous period (-1 if none)."""
    frame = pd.DataFrame({"qt": bids.qtbid, "t": bids.period, "pos": np.arange(len(bids))})
    key = frame.drop_duplicates(["qt", "t"]).set_index(["qt", "t"])["pos"]
    prev = key.reindex(pd.MultiIndex.from_arrays([bids.qtbid, bids.period - 1]))
    return prev.fillna(-1).to_numpy(dtype=np.int64)


class OrderBlock:
    """The order book as variables and rows; `form` (default: the class of `opts.dist_model`) models its PQ and
    capability discs, so that they are cones exactly when the network's circles are."""

    def __init__(self, inst: Instance, opts: ModelOptions, form: type[DistributionFormulation] | None = None):
        self.inst, self.opts = inst, opts
        self.form = form or distribution_formulation(opts)
        ob = inst.orders
        seg, bids = ob.segments, ob.bids
        self.S, self.B = len(seg), len(bids)
        self.w = seg.width
        self.is_d_bid = inst.buses.is_dist[bids.bus] if self.B else np.zeros(0, bool)
        self.prev = _prev_bid(bids) if self.B else np.zeros(0, np.int64)
        qt_in_group = np.unique(ob.exclusive_qtbid)
        self.in_group = np.isin(bids.qtbid, qt_in_group)
        logic = bids.alpha_omega | self.in_group
        logic[ob.mindur_bid1] = True
        logic[ob.mindur_bid2] = True
        ao_prev = self.prev[bids.alpha_omega]
        logic[ao_prev[ao_prev >= 0]] = True
        self.logic = logic
        seg_logic = logic[seg.bid] if self.S else np.zeros(0, bool)
        self.seg_binary = (seg.xlb > 0) & ((self.w != 0) | seg_logic)
        self.seg_minratio = self.seg_binary & (seg.xlb < 1)
        # O13 (§4.4): a direction binary only where netting after the solve could be wrong
        up = np.bincount(seg.bid, self.w > 0, minlength=self.B) > 0
        down = np.bincount(seg.bid, self.w < 0, minlength=self.B) > 0
        two_way = up & down
        big = np.inf
        min_up = np.full(self.B, big)
        min_down = np.full(self.B, big)
        np.minimum.at(min_up, seg.bid[self.w > 0], seg.price[self.w > 0])
        np.minimum.at(min_down, seg.bid[self.w < 0], seg.price[self.w < 0])
        has_xlb = np.bincount(seg.bid, seg.xlb > 0, minlength=self.B) > 0
        self.needs_delta = two_way & (has_xlb | (min_up + min_down < 0))
        self.netted = two_way & ~self.needs_delta
        self.excl_qt = qt_in_group

    # ------------------------------------------------------------------ variables
    def add_variables(self, prog: Program) -> None:
        o, ob = self.opts, self.inst.orders
        seg, bids = ob.segments, ob.bids
        integer = o.integer
        ub = np.where((self.w == 0) & ~self.logic[seg.bid], 0.0, 1.0) if self.S else np.zeros(0)
        prog.add_variables(
            "xi",
            self.S,
            0.0,
            ub,
            seg.price * np.abs(self.w) * o.period_hours,
            integer=integer & self.seg_binary & ~self.seg_minratio,
        )
        self.vmin_seg = np.flatnonzero(self.seg_minratio)
        prog.add_variables("vmin", len(self.vmin_seg), 0.0, 1.0, 0.0, integer=integer)
        self.z_bid = np.flatnonzero(self.logic)
        prog.add_variables("z", len(self.z_bid), 0.0, 1.0, 0.0, integer=integer)
        self.Z_qt = self.excl_qt
        prog.add_variables("Z", len(self.Z_qt), 0.0, 1.0, 0.0, integer=integer)
        self.ao_bid = np.flatnonzero(bids.alpha_omega)
        prog.add_variables("alpha", len(self.ao_bid), 0.0, np.where(bids.no_new_act[self.ao_bid], 0.0, 1.0))
        prog.add_variables("omega", len(self.ao_bid), 0.0, 1.0)
        self.delta_bid = np.flatnonzero(self.needs_delta)
        prog.add_variables("delta", len(self.delta_bid), 0.0, 1.0, 0.0, integer=integer)
        self.q_bid = np.flatnonzero(self.is_d_bid)
        q_lb, q_ub = self._reactive_bounds()
        prog.add_variables("q", len(self.q_bid), q_lb, q_ub)

    def _halfplanes(self) -> pd.DataFrame:
        """Deduplicated half-plane rows expanded to the distribution bids of their QtBid."""
        ob = self.inst.orders
        hp = pd.DataFrame({"qt": ob.hp_qtbid, "m": ob.hp_slope, "o": ob.hp_offset, "geq": ob.hp_geq})
        hp = hp.drop_duplicates()
        d = pd.DataFrame({"qt": ob.bids.qtbid[self.q_bid], "bid": self.q_bid})
        return hp.merge(d, on="qt", how="inner").sort_values(["bid", "geq", "m", "o"], kind="stable")

    def _reactive_bounds(self):
        hp = self._halfplanes()
        B = self.B
        has_geq = np.zeros(B, bool)
        has_leq = np.zeros(B, bool)
        has_geq[hp.bid[hp.geq].to_numpy()] = True
        has_leq[hp.bid[~hp.geq].to_numpy()] = True
        has_disc = np.zeros(B, bool)
        has_disc[self.inst.orders.disc_bid] = True
        has_disc &= self.is_d_bid
        self.unrestricted = self.is_d_bid & ~has_geq & ~has_leq & ~has_disc
        self.one_sided = self.is_d_bid & (has_geq ^ has_leq) & ~has_disc
        pol = self.opts.reactive_policy
        fix_zero = self.unrestricted if pol in ("bounded", "zero") else np.zeros(B, bool)
        lb = np.where(fix_zero[self.q_bid], 0.0, -np.inf)
        ub = np.where(fix_zero[self.q_bid], 0.0, np.inf)
        self._hp = hp
        return lb, ub

    # ------------------------------------------------------------------ helpers
    def col(self, prog: Program, name: str) -> np.ndarray:
        return prog.var(name).index

    def p_bid_affine(self, prog: Program, bids: np.ndarray) -> Affine:
        """P_b (MW) of the given bids as affine expressions (one row per entry of `bids`)."""
        seg = self.inst.orders.segments
        aff = Affine(len(bids))
        sel = np.isin(seg.bid, bids)
        segs = np.flatnonzero(sel)
        # a bid may appear several times in `bids`: expand via merge
        m = pd.DataFrame({"bid": bids, "row": np.arange(len(bids))}).merge(
            pd.DataFrame({"bid": seg.bid[segs], "s": segs}), on="bid"
        )
        aff.add(m.row.to_numpy(), self.col(prog, "xi")[m.s.to_numpy()], self.w[m.s.to_numpy()])
        return aff

    def q_col_of_bid(self, prog: Program) -> np.ndarray:
        q = np.full(self.B, -1, dtype=np.int64)
        q[self.q_bid] = self.col(prog, "q")
        return q

    # ------------------------------------------------------------------ constraints
    def add_constraints(self, prog: Program, balance: Balance | None = None) -> None:
        """Rows O2–O13; with a `balance`, also the order injections (P of every bid, Q of distribution bids)."""
        self._add_logic(prog)
        self._add_ramps(prog)
        self._add_reactive(prog)
        if balance is not None:
            (pb, pt, pc, pv), (qb, qt, qc, qv) = self.injection_terms(prog)
            balance.add_p(pb, pt, pc, pv)
            balance.add_q(qb, qt, qc, qv)

    def _add_logic(self, prog: Program) -> None:
        """O2–O8 and O13 (written as one block, ~70 lines, to keep the row formulas side by side)."""
        ob = self.inst.orders
        seg, bids = ob.segments, ob.bids
        xi = self.col(prog, "xi")
        z_of_bid = np.full(self.B, -1, dtype=np.int64)
        z_of_bid[self.z_bid] = self.col(prog, "z")
        accept = xi.copy()  # acceptance indicator per segment
        accept[self.vmin_seg] = self.col(prog, "vmin")
        # O2 minimum ratio: Xlb·v <= xi <= v
        k = len(self.vmin_seg)
        t = Terms(2 * k)
        r = np.arange(k)
        t.add(r, self.col(prog, "vmin"), seg.xlb[self.vmin_seg]).add(r, xi[self.vmin_seg], -1.0)
        t.add(k + r, xi[self.vmin_seg], 1.0).add(k + r, self.col(prog, "vmin"), -1.0)
        prog.add_rows("O2_min_ratio", t.matrix(prog.n), -np.inf, 0.0)
        # O3 QBid acceptance: accept_s <= z_b (every segment of a logic bid); z_b <= sum_s accept_s
        s_in = np.flatnonzero(self.logic[seg.bid]) if self.S else np.zeros(0, np.int64)
        t = Terms(len(s_in))
        t.add(np.arange(len(s_in)), accept[s_in], 1.0).add(np.arange(len(s_in)), z_of_bid[seg.bid[s_in]], -1.0)
        prog.add_rows("O3_segment_le_bid", t.matrix(prog.n), -np.inf, 0.0)
        # z_b <= sum_s v_s only for bids whose segments all have an acceptance binary.  A divisible segment has no
        # v_s (shortcut xi_s <= z_b, §4.2): its implicit v_s is free, so the row is vacuous there, and writing xi_s
        # in place of v_s would forbid partial acceptance (z_b = 1 would force sum_s xi_s >= 1).
        all_binary = np.bincount(seg.bid[s_in], ~self.seg_binary[s_in], minlength=self.B) == 0
        zb = self.z_bid[all_binary[self.z_bid]]
        s_up = s_in[all_binary[seg.bid[s_in]]]
        L = len(zb)
        row_of_z = np.full(self.B, -1)
        row_of_z[zb] = np.arange(L)
        t = Terms(L)
        t.add(np.arange(L), z_of_bid[zb], 1.0).add(row_of_z[seg.bid[s_up]], accept[s_up], -1.0)
        prog.add_rows("O3_bid_le_segments", t.matrix(prog.n), -np.inf, 0.0)
        # O4/O5 exclusive groups: z_b <= Z_q, Z_q <= sum z_b, sum_{q in G} Z_q <= 1
        Zc = self.col(prog, "Z")
        b_in = np.flatnonzero(self.in_group)
        q_row = np.searchsorted(self.Z_qt, bids.qtbid[b_in])
        t = Terms(len(b_in))
        t.add(np.arange(len(b_in)), z_of_bid[b_in], 1.0).add(np.arange(len(b_in)), Zc[q_row], -1.0)
        prog.add_rows("O4_bid_le_qtbid", t.matrix(prog.n), -np.inf, 0.0)
        t = Terms(len(Zc))
        t.add(np.arange(len(Zc)), Zc, 1.0).add(q_row, z_of_bid[b_in], -1.0)
        prog.add_rows("O4_qtbid_le_bids", t.matrix(prog.n), -np.inf, 0.0)
        groups, g_row = np.unique(ob.exclusive_group, return_inverse=True)
        t = Terms(len(groups))
        t.add(g_row, Zc[np.searchsorted(self.Z_qt, ob.exclusive_qtbid)], 1.0)
        prog.add_rows("O5_exclusive", t.matrix(prog.n), -np.inf, 1.0)
        # O6/O7 start/stop: z_b - z_prev = alpha - omega, alpha + omega <= 1 (alpha ub 0 for NoNewAct)
        a, w_ = self.col(prog, "alpha"), self.col(prog, "omega")
        K = len(self.ao_bid)
        prev = self.prev[self.ao_bid]
        t = Terms(K)
        r = np.arange(K)
        t.add(r, z_of_bid[self.ao_bid], 1.0).add(r, a, -1.0).add(r, w_, 1.0)
        t.add(r[prev >= 0], z_of_bid[prev[prev >= 0]], -1.0)
        prog.add_rows("O6_start_stop", t.matrix(prog.n), 0.0, 0.0)
        t = Terms(K)
        t.add(r, a, 1.0).add(r, w_, 1.0)
        prog.add_rows("O6_alpha_omega", t.matrix(prog.n), -np.inf, 1.0)
        # O8 minimum duration: alpha_{b1} <= z_{b2}
        alpha_of_bid = np.full(self.B, -1, dtype=np.int64)
        alpha_of_bid[self.ao_bid] = a
        P = len(ob.mindur_bid1)
        t = Terms(P)
        t.add(np.arange(P), alpha_of_bid[ob.mindur_bid1], 1.0).add(np.arange(P), z_of_bid[ob.mindur_bid2], -1.0)
        prog.add_rows("O8_min_duration", t.matrix(prog.n), -np.inf, 0.0)
        # O13 direction: up xi <= delta, down xi <= 1 - delta
        d_of_bid = np.full(self.B, -1, dtype=np.int64)
        d_of_bid[self.delta_bid] = self.col(prog, "delta")
        s_d = np.flatnonzero(self.needs_delta[seg.bid] & (self.w != 0)) if self.S else np.zeros(0, np.int64)
        up = self.w[s_d] > 0
        t = Terms(len(s_d))
        r = np.arange(len(s_d))
        t.add(r, xi[s_d], 1.0).add(r, d_of_bid[seg.bid[s_d]], np.where(up, -1.0, 1.0))
        prog.add_rows("O13_direction", t.matrix(prog.n), -np.inf, np.where(up, 0.0, 1.0))

    def _add_ramps(self, prog: Program) -> None:
        ob, T = self.inst.orders, self.inst.n_periods
        bids = ob.bids
        rows = np.flatnonzero(bids.period[ob.ramp_bid] + 1 < T) if len(ob.ramp_bid) else np.zeros(0, np.int64)
        R = len(rows)
        rb = ob.ramp_bid[rows]
        cur = self.p_bid_affine(prog, rb)
        nxt_pairs = pd.DataFrame({"qt": bids.qtbid[rb], "t": bids.period[rb] + 1, "row": np.arange(R)}).merge(
            pd.DataFrame({"qt": bids.qtbid, "t": bids.period, "bid": np.arange(self.B)}), on=["qt", "t"]
        )
        nxt = self.p_bid_affine(prog, nxt_pairs.bid.to_numpy())
        M = nxt.matrix(prog.n).tocoo()
        t = Terms(R)
        C = cur.matrix(prog.n).tocoo()
        t.add(C.row, C.col, -C.data)
        t.add(nxt_pairs.row.to_numpy()[M.row], M.col, M.data)
        delta = ob.ramp_delta[rows]
        is_min = ob.ramp_is_min[rows]
        prog.add_rows("O9_ramp", t.matrix(prog.n), np.where(is_min, delta, -np.inf), np.where(is_min, np.inf, delta))

    def _add_reactive(self, prog: Program) -> None:
        ob = self.inst.orders
        qcol = self.q_col_of_bid(prog)
        hp = self._hp
        bid = hp.bid.to_numpy()
        # O10: Q_b - m P_b >= o (geq) or <= o
        P = self.p_bid_affine(prog, bid).matrix(prog.n).tocoo()
        t = Terms(len(bid))
        t.add(np.arange(len(bid)), qcol[bid], 1.0)
        t.add(P.row, P.col, -hp.m.to_numpy()[P.row] * P.data)
        geq = hp.geq.to_numpy()
        off = hp.o.to_numpy()
        prog.add_rows("O10_half_plane", t.matrix(prog.n), np.where(geq, off, -np.inf), np.where(geq, np.inf, off))
        # O11 discs
        on_d = self.is_d_bid[ob.disc_bid] if len(ob.disc_bid) else np.zeros(0, bool)  # T has no reactive model
        self._circle_on_bids(prog, "O11_disc", ob.disc_bid[on_d], ob.disc_radius[on_d], qcol)
        # O12 capability disc for one-sided bids under the bounded policy
        if self.opts.reactive_policy == "bounded":
            cap = np.flatnonzero(self.one_sided)
            seg = ob.segments
            up = np.bincount(seg.bid, np.where(self.w > 0, self.w, 0.0), minlength=self.B)
            dn = np.bincount(seg.bid, np.where(self.w < 0, -self.w, 0.0), minlength=self.B)
            pbar = np.maximum(up, dn)
            mmax = np.zeros(self.B)
            np.maximum.at(mmax, bid, np.abs(hp.m.to_numpy()))
            self._circle_on_bids(prog, "O12_capability", cap, pbar[cap] * np.sqrt(1 + mmax[cap] ** 2), qcol)

    def _circle_on_bids(self, prog, name, bids, radius, qcol):
        a = self.p_bid_affine(prog, bids)
        b = Affine(len(bids)).add(np.arange(len(bids)), qcol[bids], 1.0)
        self.form.add_circles(prog, name, a, b, radius, self.opts.polygon_sides)

    # ------------------------------------------------------------------ balances and results
    def injection_terms(self, prog: Program):
        """(bus, period, column, coefficient) of order injections: P (MW) and Q (Mvar)."""
        seg, bids = self.inst.orders.segments, self.inst.orders.bids
        p = (bids.bus[seg.bid], bids.period[seg.bid], self.col(prog, "xi"), self.w)
        q = (bids.bus[self.q_bid], bids.period[self.q_bid], self.col(prog, "q"), np.ones(len(self.q_bid)))
        return p, q

    def binary_columns(self, prog: Program) -> np.ndarray:
        """Columns that are binary in the mixed-integer model, also when this model relaxes them (sorted)."""
        xi = self.col(prog, "xi")[self.seg_binary & ~self.seg_minratio]
        blocks = [xi] + [prog.var(k).index for k in ("vmin", "z", "Z", "delta")]
        return np.sort(np.concatenate(blocks)).astype(np.int64)

    def index(self, prog: Program) -> OrderIndex:
        ints = np.flatnonzero(prog.integrality)
        z = np.full(self.B, -1, dtype=np.int64)
        z[self.z_bid] = self.col(prog, "z")
        return OrderIndex(
            xi=self.col(prog, "xi"),
            q=self.q_col_of_bid(prog),
            z=z,
            integer_cols=ints,
            netted_bids=np.flatnonzero(self.netted),
        )

    def tables(self, prog: Program, x: np.ndarray) -> dict[str, pd.DataFrame]:
        """The `segments` and `bids` tables of a primal point (two-way bids netted, §4.4)."""
        inst, opts = self.inst, self.opts
        period_ids = inst.periods
        seg, bids = inst.orders.segments, inst.orders.bids
        oi = self.index(prog)
        xi = np.clip(x[oi.xi], 0.0, 1.0) + 0.0  # + 0.0 turns -0.0 into 0.0
        xi = net_two_way(inst, xi, oi.netted_bids)
        w = seg.width
        p_seg = w * xi
        segments = pd.DataFrame(
            {
                "segment": seg.id,
                "bid": bids.id[seg.bid],
                "qtbid": bids.qtbid[seg.bid],
                "node": inst.buses.id[bids.bus[seg.bid]],
                "period": period_ids[bids.period[seg.bid]],
                "width_mw": w,
                "price_eur_mwh": seg.price,
                "accepted_fraction": xi,
                "accepted_mw": p_seg,
                "cost_eur": seg.price * np.abs(p_seg) * opts.period_hours,
            }
        )
        P_b = np.bincount(seg.bid, p_seg, minlength=len(bids))
        bid_size = np.bincount(seg.bid, np.abs(w), minlength=len(bids))
        Q_b = np.where(oi.q >= 0, x[np.maximum(oi.q, 0)], np.nan)
        # interior-point noise (~1e-8) is not acceptance: threshold relative to the bid's size
        z = np.maximum(oi.z, 0)
        accepted = np.where(oi.z >= 0, np.round(x[z], 6) > 0.5, np.abs(P_b) > 1e-6 * np.maximum(1.0, bid_size))
        bids_table = pd.DataFrame(
            {
                "bid": bids.id,
                "qtbid": bids.qtbid,
                "node": inst.buses.id[bids.bus],
                "period": period_ids[bids.period],
                "p_mw": P_b,
                "q_mvar": Q_b,
                "accepted": accepted,
            }
        )
        return {"segments": segments, "bids": bids_table}

    def cost(self, prog: Program, x: np.ndarray) -> float:
        """Market cost (€) of a primal point: activation costs at xi clipped to [0, 1]."""
        xi = prog.var("xi").slice
        return float(prog.c[xi] @ np.clip(x[xi], 0.0, 1.0))


def net_two_way(inst: Instance, xi: np.ndarray, netted_bids: np.ndarray) -> np.ndarray:
    """§4.4 netting: in each listed QBid remove min(Σup, Σ|down|) MW from both directions, dropping the most
    expensive up segments and the highest-priced down segments first.  P_b is unchanged, cost cannot rise."""
    seg = inst.orders.segments
    w = seg.width
    sel = np.flatnonzero(np.isin(seg.bid, netted_bids) & (w != 0))
    if len(sel) == 0:
        return xi
    act = np.abs(w[sel]) * xi[sel]
    up = w[sel] > 0
    bid = seg.bid[sel]
    up_sum = np.bincount(bid, np.where(up, act, 0.0), minlength=len(inst.orders.bids))
    dn_sum = np.bincount(bid, np.where(up, 0.0, act), minlength=len(inst.orders.bids))
    cut = np.minimum(up_sum, dn_sum)
    frame = pd.DataFrame({"bid": bid, "up": up, "price": seg.price[sel], "act": act, "pos": sel})
    frame = frame.sort_values(["bid", "up", "price"], ascending=[True, True, False], kind="stable")
    # within each (bid, direction), cumulative activation from the highest price down
    before = frame.groupby(["bid", "up"])["act"].cumsum().to_numpy() - frame.act.to_numpy()
    remove = np.clip(cut[frame.bid.to_numpy()] - before, 0.0, frame.act.to_numpy())
    new_act = frame.act.to_numpy() - remove
    out = xi.copy()
    pos = frame.pos.to_numpy()
    out[pos] = new_act / np.abs(w[pos])
    return out
