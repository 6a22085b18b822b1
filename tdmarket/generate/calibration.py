"""The order-book calibration of `tdmarket generate` (docs/generate.md §3).

`measure(instance)` computes the figures below from any instance; `CALIBRATION` holds the targets the
generator samples from: the mean of the figures of the two real SmartNet instances italy-693 and italy-652
(three-node, with three orders, is too small to say anything about shares and is left out).  `REAL_FIGURES`
keeps each instance's own figures, so that the spread between the two real systems is visible next to the
target; `tests/test_generate_real.py` recomputes them from `../shared/smartnet/` and checks these tables.

Figures (`_t` transmission, `_d` distribution; shares are fractions in [0, 1]):

* ``node_share_{t,d}`` – nodes holding at least one order;
* ``bids_per_node_period_{t,d}`` – QBids per bidding node and period;
* ``two_way_share`` – QBids with an up and a down segment (the only multi-segment QBids in the data);
* ``up_share_one_way`` – up QBids among the one-way QBids;
* ``aon_share_{t,d}`` – all-or-nothing segments (Xlb = 1) among segments of non-zero width;
* ``zero_width_share_{t,d}`` – segments of zero width;
* ``width_q_{t,d}`` – quantiles of the segment width |HiQ − LoQ| (MW) at `WIDTH_PROBS`, non-zero widths;
* ``price_up_q``, ``price_down_q`` – quantiles of up / down segment prices (€/MWh) at `PRICE_PROBS`;
* ``multi_period_share`` – QtBids with a QBid in every period of the horizon (the others have one QBid);
* ``start_stop_share_{t,d}`` – QBids with start/stop logic (AlphaOmegaSet);
* ``no_new_act_share`` – start/stop QBids after their QtBid's first period flagged NoNewAct;
* ``min_duration_share`` – start/stop QtBids with minimum-duration pairs;
* ``exclusive_share`` – QtBids in an exclusive group (groups of two at one node, the most frequent size);
* ``ramp_share_{t,d}`` – multi-period QtBids with ramp rows;
* ``ramp_ratio`` – median ramp |Δq| over the QtBid's largest segment width;
* ``pq_{no_pq,one_sided,fixed_pf,disc}`` – classes of D QBids (docs/model.md §10);
* ``slope_low_share`` – half-plane rows with the lower of the two slopes (0.05; the other is 0.142);
* ``imbalance_ratio`` – mean |system imbalance| over the system load (sum of negative injections);
* ``imbalance_negative_share`` – periods with a negative imbalance (the market must buy up).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..model.instance import Instance

WIDTH_PROBS = (0.05, 0.25, 0.5, 0.75, 0.95)
PRICE_PROBS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
SLOPES = (0.05, 0.142)  # Mvar/MW: the two half-plane slopes of the real data (power factor ≈ 0.999 and 0.99)


def _share(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if np.size(mask) else 0.0


def measure(inst: Instance) -> dict[str, float | list[float]]:
    """The calibration figures (module docstring) of an instance."""
    bu, o = inst.buses, inst.orders
    s, b = o.segments, o.bids
    own = ~bu.is_boundary
    T = inst.n_periods
    dist_bid = bu.is_dist[b.bus]
    width = s.hi - s.lo
    seg_d = dist_bid[s.bid]
    nz = width != 0
    out: dict[str, float | list[float]] = {}
    per_node = np.bincount(b.bus, minlength=len(bu.id))
    for cls, mask in (("t", own & ~bu.is_dist), ("d", own & bu.is_dist)):
        bidding = per_node[mask] > 0
        out[f"node_share_{cls}"] = _share(bidding)
        out[f"bids_per_node_period_{cls}"] = float(per_node[mask][bidding].mean() / T) if bidding.any() else 0.0
    has_up = np.bincount(s.bid, weights=width > 0, minlength=len(b.id)) > 0
    has_down = np.bincount(s.bid, weights=width < 0, minlength=len(b.id)) > 0
    two_way = has_up & has_down
    out["two_way_share"] = _share(two_way)
    out["up_share_one_way"] = _share(has_up[~two_way])
    for cls, m in (("t", ~seg_d), ("d", seg_d)):
        out[f"aon_share_{cls}"] = _share(s.xlb[m & nz] == 1)
        out[f"zero_width_share_{cls}"] = _share(~nz[m])
        w = np.abs(width[m & nz])
        out[f"width_q_{cls}"] = np.quantile(w, WIDTH_PROBS).tolist() if w.size else [0.0] * len(WIDTH_PROBS)
    for side, m in (("up", width > 0), ("down", width < 0)):
        out[f"price_{side}_q"] = np.quantile(s.price[m], PRICE_PROBS).tolist() if m.any() else [0.0] * 7
    bids = pd.DataFrame({"qt": b.qtbid, "t": b.period, "ao": b.alpha_omega, "nna": b.no_new_act, "d": dist_bid})
    per_qt = bids.groupby("qt").agg(n=("t", "nunique"), first=("t", "min"), ao=("ao", "any"), d=("d", "first"))
    out["multi_period_share"] = _share(per_qt["n"].to_numpy() == T) if T > 1 else 1.0
    for cls, m in (("t", ~dist_bid), ("d", dist_bid)):
        out[f"start_stop_share_{cls}"] = _share(b.alpha_omega[m])
    later = b.alpha_omega & (b.period > per_qt["first"].reindex(b.qtbid).to_numpy())
    out["no_new_act_share"] = _share(b.no_new_act[later])
    ao_qt = per_qt.index[per_qt["ao"]].to_numpy()
    out["min_duration_share"] = _share(np.isin(ao_qt, b.qtbid[o.mindur_bid1]))
    out["exclusive_share"] = _share(np.isin(per_qt.index.to_numpy(), o.exclusive_qtbid))
    multi = per_qt[per_qt["n"] > 1]
    ramp_qt = np.unique(b.qtbid[o.ramp_bid])
    for cls, m in (("t", ~multi["d"].to_numpy()), ("d", multi["d"].to_numpy())):
        out[f"ramp_share_{cls}"] = _share(np.isin(multi.index.to_numpy()[m], ramp_qt))
    if len(o.ramp_bid):
        wmax = pd.Series(np.abs(width)).groupby(b.qtbid[s.bid]).max()
        ratio = np.abs(o.ramp_delta) / np.maximum(wmax.reindex(b.qtbid[o.ramp_bid]).to_numpy(), 1e-9)
        out["ramp_ratio"] = float(np.median(ratio))
    else:
        out["ramp_ratio"] = 0.0
    # PQ classes of D QBids (as tdmarket info counts them)
    hp = pd.DataFrame({"qt": o.hp_qtbid, "geq": o.hp_geq})
    d_pos = np.flatnonzero(dist_bid)
    geq_qt = set(hp.loc[hp["geq"], "qt"])
    leq_qt = set(hp.loc[~hp["geq"], "qt"])
    g = np.isin(b.qtbid[d_pos], list(geq_qt))
    le = np.isin(b.qtbid[d_pos], list(leq_qt))
    disc = np.isin(d_pos, o.disc_bid)
    out["pq_no_pq"] = _share(~disc & ~g & ~le)
    out["pq_one_sided"] = _share(~disc & (g ^ le))
    out["pq_fixed_pf"] = _share(~disc & g & le)
    out["pq_disc"] = _share(disc)
    out["slope_low_share"] = _share(np.isclose(o.hp_slope, SLOPES[0]))
    imb = inst.system_imbalance()
    load = -np.minimum(inst.p_inj[own], 0).sum(axis=0)
    out["imbalance_ratio"] = float(np.mean(np.abs(imb) / np.maximum(load, 1e-9)))
    out["imbalance_negative_share"] = _share(imb < 0)
    return out


# Each real instance's figures (`measure`, rounded to 4 significant digits); recomputed by the tests.
REAL_FIGURES: dict[str, dict[str, float | list[float]]] = {
    "italy-693": {
        "node_share_t": 0.1111,
        "bids_per_node_period_t": 17.0,
        "node_share_d": 0.8571,
        "bids_per_node_period_d": 1.948,
        "two_way_share": 0.1165,
        "up_share_one_way": 0.2465,
        "aon_share_t": 0.2576,
        "zero_width_share_t": 0.0,
        "width_q_t": [0.00165, 0.04075, 0.1607, 0.36, 16.94],
        "aon_share_d": 0.2538,
        "zero_width_share_d": 0.008553,
        "width_q_d": [0.00165, 0.01554, 0.1049, 0.2768, 0.96],
        "price_up_q": [0.0, 0.0, 28.48, 50.0, 72.23, 79.61, 95.89],
        "price_down_q": [-67.93, -58.72, -25.1, -3.0, -3.0, 10.47, 94.77],
        "multi_period_share": 0.9298,
        "start_stop_share_t": 0.3137,
        "start_stop_share_d": 0.2985,
        "no_new_act_share": 1.0,
        "min_duration_share": 1.0,
        "exclusive_share": 0.3315,
        "ramp_share_t": 0.28,
        "ramp_share_d": 0.05034,
        "ramp_ratio": 0.3,
        "pq_no_pq": 0.515,
        "pq_one_sided": 0.05133,
        "pq_fixed_pf": 0.3003,
        "pq_disc": 0.1334,
        "slope_low_share": 0.2381,
        "imbalance_ratio": 0.02495,
        "imbalance_negative_share": 0.0,
    },
    "italy-652": {
        "node_share_t": 0.1627,
        "bids_per_node_period_t": 1.469,
        "node_share_d": 0.5154,
        "bids_per_node_period_d": 1.967,
        "two_way_share": 0.3315,
        "up_share_one_way": 0.1774,
        "aon_share_t": 0.1383,
        "zero_width_share_t": 0.02478,
        "width_q_t": [0.002981, 0.07337, 0.53, 8.5, 126.0],
        "aon_share_d": 0.1965,
        "zero_width_share_d": 0.2568,
        "width_q_d": [0.0001373, 0.006, 0.006, 0.012, 0.08388],
        "price_up_q": [0.0, 0.0, 0.0, 37.41, 63.55, 63.55, 65.07],
        "price_down_q": [-56.56, -38.67, 0.0, 0.0, 43.55, 43.55, 43.55],
        "multi_period_share": 0.913,
        "start_stop_share_t": 0.1008,
        "start_stop_share_d": 0.4618,
        "no_new_act_share": 1.0,
        "min_duration_share": 1.0,
        "exclusive_share": 0.4016,
        "ramp_share_t": 0.3319,
        "ramp_share_d": 0.0,
        "ramp_ratio": 1.0,
        "pq_no_pq": 0.1386,
        "pq_one_sided": 0.3996,
        "pq_fixed_pf": 0.4618,
        "pq_disc": 0.0,
        "slope_low_share": 0.5648,
        "imbalance_ratio": 0.007347,
        "imbalance_negative_share": 1.0,
    },
}

# The targets: the mean of the two italy instances' figures (module docstring), except the T order density
# (`node_share_t`, `bids_per_node_period_t`): italy-693 has 27 T nodes with 17 QBids per bidding node and period,
# so these two are italy-652's, the instance with a transmission grid of realistic size.
T_DENSITY_FROM = "italy-652"
CALIBRATION: dict[str, float | list[float]] = {
    "node_share_t": 0.1627,
    "bids_per_node_period_t": 1.469,
    "node_share_d": 0.6863,
    "bids_per_node_period_d": 1.958,
    "two_way_share": 0.224,
    "up_share_one_way": 0.2119,
    "aon_share_t": 0.198,
    "zero_width_share_t": 0.01239,
    "width_q_t": [0.002315, 0.05706, 0.3454, 4.43, 71.47],
    "aon_share_d": 0.2252,
    "zero_width_share_d": 0.1327,
    "width_q_d": [0.0008936, 0.01077, 0.05545, 0.1444, 0.5219],
    "price_up_q": [0.0, 0.0, 14.24, 43.7, 67.89, 71.58, 80.48],
    "price_down_q": [-62.25, -48.7, -12.55, -1.5, 20.27, 27.01, 69.16],
    "multi_period_share": 0.9214,
    "start_stop_share_t": 0.2072,
    "start_stop_share_d": 0.3801,
    "no_new_act_share": 1.0,
    "min_duration_share": 1.0,
    "exclusive_share": 0.3666,
    "ramp_share_t": 0.3059,
    "ramp_share_d": 0.02517,
    "ramp_ratio": 0.65,
    "pq_no_pq": 0.3268,
    "pq_one_sided": 0.2255,
    "pq_fixed_pf": 0.381,
    "pq_disc": 0.0667,
    "slope_low_share": 0.4014,
    "imbalance_ratio": 0.01615,
    "imbalance_negative_share": 0.5,
}


def target(key: str) -> float:
    """A scalar target of `CALIBRATION` (the quantile lists are read as they are)."""
    value = CALIBRATION[key]
    assert not isinstance(value, list), key
    return float(value)
