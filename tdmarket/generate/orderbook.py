"""The order book of a generated system, sampled from `CALIBRATION` (docs/generate.md §3).

Everything is drawn at the QtBid level (node, direction, prices, widths, flags) and then expanded to QBids
(one per period) and segments with numpy; ids are consecutive from 1 in every namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .calibration import CALIBRATION, PRICE_PROBS, SLOPES, WIDTH_PROBS, target

MIN_DURATION_PERIODS = 4  # pairs (τ, t) with τ ≤ t < τ + 4: the real horizons have 3–4 periods, all covered
DISC_MARGIN = 1.2  # disc radius over the QBid's largest segment width


@dataclass(frozen=True)
class NodeSet:
    """The nodes orders may sit at: file id, distribution flag."""

    node_id: np.ndarray
    is_dist: np.ndarray


def _quantile_sample(rng: np.random.Generator, probs, values, n: int, log: bool = False) -> np.ndarray:
    """Inverse-CDF sampling from a piecewise-linear quantile table (log-linear for widths)."""
    u = rng.random(n)
    v = np.asarray(values, float)
    if log:
        return np.exp(np.interp(u, probs, np.log(np.maximum(v, 1e-6))))
    return np.interp(u, probs, v)


def _per_class(key: str, is_dist: np.ndarray) -> np.ndarray:
    return np.where(is_dist, CALIBRATION[f"{key}_d"], CALIBRATION[f"{key}_t"])


def sample_orders(rng: np.random.Generator, nodes: NodeSet, periods: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """The order files (Bids, ExclusiveQtBids, RampConstraints, MinDurationPairs, HalfPlanes, QPDisc) as columns."""
    cal = CALIBRATION
    T = len(periods)
    multi_share = target("multi_period_share") if T > 1 else 1.0
    # --- which nodes bid, and how many QtBids each (mean QBids per node and period / QBids per QtBid and period)
    bidding = rng.random(len(nodes.node_id)) < _per_class("node_share", nodes.is_dist)
    per_period = multi_share + (1 - multi_share) / T
    mean_qt = np.maximum(_per_class("bids_per_node_period", nodes.is_dist) / per_period, 1.0)
    count = np.where(bidding, 1 + rng.poisson(mean_qt - 1.0), 0)
    q_node = np.repeat(np.arange(len(nodes.node_id)), count)
    n_qt = len(q_node)
    q_dist = nodes.is_dist[q_node]
    # --- direction, prices (€/MWh) and widths (MW)
    two_way = rng.random(n_qt) < target("two_way_share")
    up_only = ~two_way & (rng.random(n_qt) < target("up_share_one_way"))
    has_up, has_down = two_way | up_only, two_way | ~up_only
    p_up = np.round(_quantile_sample(rng, PRICE_PROBS, cal["price_up_q"], n_qt), 2)
    p_down = np.round(_quantile_sample(rng, PRICE_PROBS, cal["price_down_q"], n_qt), 2)
    p_up, p_down = np.maximum(p_up, p_down), np.minimum(p_up, p_down)  # no arbitrage inside one QBid
    width = {}
    for side in ("up", "down"):
        w = np.where(
            q_dist,
            _quantile_sample(rng, WIDTH_PROBS, cal["width_q_d"], n_qt, log=True),
            _quantile_sample(rng, WIDTH_PROBS, cal["width_q_t"], n_qt, log=True),
        )
        zero = rng.random(n_qt) < _per_class("zero_width_share", q_dist)
        width[side] = np.where(zero, 0.0, np.round(w, 4))
    aon = {s: rng.random(n_qt) < _per_class("aon_share", q_dist) for s in ("up", "down")}
    # --- horizon: every period, or one random period
    multi = rng.random(n_qt) < multi_share
    first = np.where(multi, 0, rng.integers(0, T, n_qt))
    n_per = np.where(multi, T, 1)
    start_stop = rng.random(n_qt) < _per_class("start_stop_share", q_dist)

    # --- QBids: one per (QtBid, period)
    b_qt = np.repeat(np.arange(n_qt), n_per)
    b_per = first[b_qt] + (np.arange(len(b_qt)) - np.repeat(np.cumsum(n_per) - n_per, n_per))
    b_ao = start_stop[b_qt]
    b_nna = b_ao & (b_per > first[b_qt]) & (rng.random(len(b_qt)) < target("no_new_act_share"))
    # --- segments: the up one, then the down one of each QBid
    seg_bid = np.concatenate([np.flatnonzero(has_up[b_qt]), np.flatnonzero(has_down[b_qt])])
    seg_up = np.r_[np.ones(has_up[b_qt].sum(), bool), np.zeros(has_down[b_qt].sum(), bool)]
    order = np.lexsort((~seg_up, seg_bid))
    seg_bid, seg_up = seg_bid[order], seg_up[order]
    sq = b_qt[seg_bid]
    hi = np.where(seg_up, width["up"][sq], -width["down"][sq])
    price = np.where(seg_up, p_up[sq], p_down[sq])
    xlb = np.where(seg_up, aon["up"][sq], aon["down"][sq]).astype(np.int64)
    files = {
        "Bids.csv": {
            "Node": nodes.node_id[q_node[sq]],
            "QtBids": sq + 1,
            "QBid": seg_bid + 1,
            "QBidSeg": np.arange(1, len(seg_bid) + 1),
            "forT": periods[b_per[seg_bid]],
            "QuantityLoQ": np.zeros(len(seg_bid)),
            "PriceLoQ": price,
            "QuantityHiQ": hi,
            "PriceHiQ": price,
            "Xlb": xlb,
            "Xub": np.ones(len(seg_bid), np.int64),
            "AlphaOmegaSet": b_ao[seg_bid].astype(np.int64),
            "NoNewAct": b_nna[seg_bid].astype(np.int64),
        }
    }
    files["MinDurationPairs.csv"] = _min_duration(rng, b_qt, b_per, start_stop, periods)
    files["ExclusiveQtBids.csv"] = _exclusive(rng, q_node)
    qt_width = np.maximum(width["up"] * has_up, width["down"] * has_down)
    files["RampConstraints.csv"] = _ramps(rng, b_qt, multi & (T > 1), q_dist, qt_width)
    files["HalfPlanes.csv"], files["QPDisc.csv"] = _pq(rng, b_qt, q_dist, qt_width)
    return files


def _min_duration(rng, b_qt, b_per, start_stop, periods) -> dict[str, np.ndarray]:
    """For start/stop QtBids drawn with `min_duration_share`: pairs (τ, t), τ ≤ t < τ + MIN_DURATION_PERIODS."""
    chosen = start_stop & (rng.random(len(start_stop)) < target("min_duration_share"))
    b = pd.DataFrame({"qt": b_qt, "per": b_per, "bid": np.arange(len(b_qt))})
    b = b[chosen[b_qt]]
    pairs = b.merge(b, on="qt", suffixes=("1", "2"))
    pairs = pairs[(pairs.per2 >= pairs.per1) & (pairs.per2 < pairs.per1 + MIN_DURATION_PERIODS)]
    pairs = pairs.sort_values(["qt", "per1", "per2"])
    return {
        "QtBids": pairs.qt.to_numpy() + 1,
        "QBid1": pairs.bid1.to_numpy() + 1,
        "QBid2": pairs.bid2.to_numpy() + 1,
        "Tau": periods[pairs.per1.to_numpy()],
        "ForTime": periods[pairs.per2.to_numpy()],
    }


def _exclusive(rng, q_node) -> dict[str, np.ndarray]:
    """Groups of two consecutive QtBids at one node, drawn so that `exclusive_share` of QtBids are in a group."""
    rank = pd.Series(q_node).groupby(q_node).cumcount().to_numpy()
    size = np.bincount(q_node, minlength=q_node.max() + 1 if len(q_node) else 0)[q_node] if len(q_node) else q_node
    pairable = (rank // 2) * 2 + 1 < size  # the QtBid has a partner at its node
    p = min(target("exclusive_share") / max(pairable.mean(), 1e-9), 1.0) if len(q_node) else 0.0
    lead = np.flatnonzero(pairable & (rank % 2 == 0))
    lead = lead[rng.random(len(lead)) < p]
    members = np.column_stack([lead, lead + 1]).ravel()
    return {"ID": np.repeat(np.arange(1, len(lead) + 1), 2), "QtBid": members + 1}


def _ramps(rng, b_qt, multi, q_dist, qt_width) -> dict[str, np.ndarray]:
    """Multi-period QtBids drawn with `ramp_share`: per QBid a maximum increase and a maximum decrease of
    `ramp_ratio` × the QtBid's widest segment (zero is always reachable, so a ramp never forces activation)."""
    chosen = multi & (qt_width > 0) & (rng.random(len(multi)) < _per_class("ramp_share", q_dist))
    bids = np.flatnonzero(chosen[b_qt])
    qt = b_qt[bids]
    delta = np.round(target("ramp_ratio") * qt_width[qt], 4)
    delta = np.maximum(delta, 1e-4)
    ramp_id = np.searchsorted(np.unique(qt), qt) + 1
    k = len(bids)
    return {
        "QtBids": np.repeat(qt + 1, 2),
        "QBid": np.repeat(bids + 1, 2),
        "RampConstr": np.repeat(ramp_id, 2),
        "RCFrom": np.full(2 * k, -1),
        "RCTo": np.full(2 * k, -1),
        "RCRealPowerIncr": np.column_stack([delta, -delta]).ravel(),
        "RCMin": np.tile([0, 1], k),
    }


def _pq(rng, b_qt, q_dist, qt_width) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """PQ classes of D QtBids: none, one-sided (Q ≤ m·P), fixed power factor (Q = m·P), or a disc."""
    cal = CALIBRATION
    probs = np.array([cal["pq_no_pq"], cal["pq_one_sided"], cal["pq_fixed_pf"], cal["pq_disc"]], float)
    cls = np.searchsorted(np.cumsum(probs / probs.sum()), rng.random(len(q_dist)), side="right")
    slope = np.where(rng.random(len(q_dist)) < target("slope_low_share"), SLOPES[0], SLOPES[1])
    leq = q_dist & ((cls == 1) | (cls == 2))
    geq = q_dist & (cls == 2)
    qt = np.r_[np.flatnonzero(leq), np.flatnonzero(geq)]
    side = np.r_[np.zeros(leq.sum(), np.int64), np.ones(geq.sum(), np.int64)]
    order = np.lexsort((side, qt))
    qt, side = qt[order], side[order]
    k = len(qt)
    half = {
        "ID": np.arange(1, k + 1),
        "QtBid": qt + 1,
        "QPHPFrom": np.full(k, -1),
        "QPHPTo": np.full(k, -1),
        "QPHPSlope": slope[qt],
        "QPHPOffset": np.zeros(k),
        "QPHPConstr": side,
    }
    disc_bids = np.flatnonzero((q_dist & (cls == 3))[b_qt])
    radius = np.round(np.maximum(qt_width[b_qt[disc_bids]], 1e-3) * DISC_MARGIN, 4)
    k = len(disc_bids)
    disc = {
        "QtBid": b_qt[disc_bids] + 1,
        "QBids": disc_bids + 1,
        "QPDCID": np.arange(1, k + 1),
        "QPDFrom": np.full(k, -1),
        "QPDTo": np.full(k, -1),
        "QPDMax": radius,
    }
    return half, disc
