"""Stages 4–9 of a variant (module docstring of `variants`), which change values in place: start/stop and
all-or-nothing shares, negative prices, price noise, ratings and the system imbalance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .tables import EDGE_FILES, floats, fmt_floats, fmt_ints, ints
from .workspace import Workspace, tidy

UNRATED_MIN = 90_000.0  # docs/model.md §3.1: S >= this (or S == 0) means unrated
RATING_CAP = 89_999.0
MINDUR_COLUMNS = ["QtBids", "QBid1", "QBid2", "Tau", "ForTime"]


def _start_stop_candidates(ws: Workspace, g: pd.DataFrame) -> np.ndarray:
    """Eligible QtBids in the order they become start/stop blocks (module docstring of `variants`, stage 4)."""
    bids = ws.t["Bids.csv"]
    seg_qt = ints(bids, "QtBids")
    blocked = set()
    for name, col in (("ExclusiveQtBids.csv", "QtBid"), ("RampConstraints.csv", "QtBids")):
        if name in ws.t and len(ws.t[name]):
            blocked |= set(ints(ws.t[name], col).tolist())
    ok = (~g["ao"]) & (g["np_"] == g["n"]) & (g["hi"] - g["lo"] + 1 == g["n"]) & ~g.index.isin(list(blocked))
    cand = g[ok]
    first = int(ints(ws.t["GeneralParam.csv"], "StartTime")[0])
    seg_t = ~np.isin(ints(bids, "Node"), ints(ws.t["DistributionNodes.csv"], "ID"))
    seg_w = np.abs(floats(bids, "QuantityHiQ") - floats(bids, "QuantityLoQ"))
    per_qt = pd.DataFrame({"q": seg_qt, "t": seg_t, "w": seg_w}).groupby("q").agg(t=("t", "any"), w=("w", "max"))
    is_t = per_qt["t"].reindex(cand.index).to_numpy()
    width = np.where(is_t, per_qt["w"].reindex(cand.index).to_numpy(), 0.0)
    late = cand["lo"].to_numpy() != first
    perm = ws.rng.permutation(len(cand))
    # D before T; then first-period starts; then (T) narrowest; the random permutation breaks ties
    return cand.index.to_numpy()[perm[np.lexsort((width[perm], late[perm], is_t[perm]))]]


def _with_min_duration_pairs(md: pd.DataFrame, bf: pd.DataFrame, chosen: list[int]) -> pd.DataFrame:
    """`md` plus a pair (QBid i, QBid j) for every i <= j within each chosen QtBid, in period order."""
    new = []
    chosen_bf = bf[bf["qtbid"].isin(chosen)].sort_values(["qtbid", "per"])
    for q, grp in chosen_bf.groupby("qtbid", sort=True):
        qb, per = grp["qbid"].to_numpy(), grp["per"].to_numpy()
        for i in range(len(qb)):
            for j in range(i, len(qb)):
                new.append((q, qb[i], qb[j], per[i], per[j]))
    if new:
        arr = np.array(new, dtype=np.int64)
        rows = {c: np.full(len(arr), "0", dtype=object) for c in md.columns}
        for k, c in enumerate(MINDUR_COLUMNS):
            rows[c] = fmt_ints(arr[:, k])
        md = pd.concat([md, pd.DataFrame(rows, columns=list(md.columns))], ignore_index=True)
    return md


def _raise_start_stop(ws: Workspace, bf, g, md, cur: int, target: int) -> None:
    """Turn eligible QtBids into start/stop blocks until `target` QBids carry AlphaOmega."""
    bids = ws.t["Bids.csv"]
    seg_qt = ints(bids, "QtBids")
    chosen = []
    for q in _start_stop_candidates(ws, g):
        if cur >= target:
            break
        chosen.append(int(q))
        cur += int(g.at[q, "n"])
    if cur < target:
        ws.notes.append(f"start/stop share capped at {cur / len(bf):.4f}: no more eligible QtBids")
    seg = np.isin(seg_qt, chosen)
    seg_per = ints(bids, "forT")
    lo = g["lo"].reindex(seg_qt[seg]).to_numpy()
    bids.loc[seg, "AlphaOmegaSet"] = "1"
    bids.loc[seg, "NoNewAct"] = np.where(seg_per[seg] > lo, "1", "0")
    bids.loc[seg, "Xlb"] = "1"
    ws.t["MinDurationPairs.csv"] = _with_min_duration_pairs(md, bf, chosen)


def _lower_start_stop(ws: Workspace, bf, g, md, cur: int, target: int) -> None:
    """Remove random start/stop blocks (flags and pairs; segments stay all-or-nothing) down to `target`."""
    bids = ws.t["Bids.csv"]
    seg_qt = ints(bids, "QtBids")
    blocks = g.index.to_numpy()[g["ao"].to_numpy()]
    removed = []
    for q in blocks[ws.rng.permutation(len(blocks))]:
        if cur <= target:
            break
        removed.append(int(q))
        cur -= int(bf.loc[bf["qtbid"] == q, "ao"].sum())
    seg = np.isin(seg_qt, removed)
    bids.loc[seg, "AlphaOmegaSet"] = "0"
    bids.loc[seg, "NoNewAct"] = "0"
    if len(md):
        ws.t["MinDurationPairs.csv"] = md[~np.isin(ints(md, "QtBids"), removed)].reset_index(drop=True)


def set_start_stop_share(ws: Workspace, share: float) -> None:
    """Stage 4: the share of QBids with the AlphaOmega flag, to within one QtBid."""
    bf = ws.bid_frame()
    target = int(round(share * len(bf)))
    cur = int(bf["ao"].sum())
    md = ws.t.get("MinDurationPairs.csv")
    if md is None:
        md = pd.DataFrame({c: pd.Series([], dtype=object) for c in MINDUR_COLUMNS})
    g = bf.groupby("qtbid").agg(n=("qbid", "size"), lo=("per", "min"), hi=("per", "max"), np_=("per", "nunique"))
    g["ao"] = bf.groupby("qtbid")["ao"].any()
    if cur < target:
        _raise_start_stop(ws, bf, g, md, cur, target)
    elif cur > target:
        _lower_start_stop(ws, bf, g, md, cur, target)


def set_aon_share(ws: Workspace, share: float) -> None:
    """Stage 5: the share of all-or-nothing segments (`Xlb` = 1), to within one segment."""
    bids = ws.t["Bids.csv"]
    aon = floats(bids, "Xlb") == 1
    target = int(round(share * len(bids)))
    cur = int(aon.sum())
    if cur < target:
        is_t = ~np.isin(ints(bids, "Node"), ints(ws.t["DistributionNodes.csv"], "ID"))
        width = np.abs(floats(bids, "QuantityHiQ") - floats(bids, "QuantityLoQ"))
        perm = ws.rng.permutation(np.flatnonzero(~aon))
        order = perm[np.lexsort((np.where(is_t, width, 0.0)[perm], is_t[perm]))]  # stable: perm breaks ties
        pick = order[: target - cur]
        bids.loc[pick, "Xlb"] = "1"
    elif cur > target:
        cand = np.flatnonzero(aon & (ints(bids, "AlphaOmegaSet") == 0))
        pick = ws.rng.permutation(cand)[: cur - target]
        if len(pick) < cur - target:
            ws.notes.append("all-or-nothing share capped: the remaining AON segments are start/stop blocks")
        bids.loc[pick, "Xlb"] = "0"


def set_negative_price_share(ws: Workspace, share: float) -> None:
    """Stage 6: the share of down segments with a negative price."""
    bids = ws.t["Bids.csv"]
    down = floats(bids, "QuantityHiQ") < floats(bids, "QuantityLoQ")
    price = floats(bids, "PriceLoQ")
    neg = down & (price < 0)
    target = int(round(share * down.sum()))
    cur = int(neg.sum())
    if cur < target:
        pick = ws.rng.permutation(np.flatnonzero(down & (price >= 0)))[: target - cur]
        fresh = -np.round(ws.rng.uniform(5.0, 40.0, len(pick)), 4)
        new = np.where(price[pick] != 0, -np.abs(price[pick]), fresh)
    elif cur > target:
        pick = ws.rng.permutation(np.flatnonzero(neg))[: cur - target]
        new = np.abs(price[pick])
    else:
        return
    text = fmt_floats(tidy(new))
    bids.loc[pick, "PriceLoQ"] = text
    bids.loc[pick, "PriceHiQ"] = text


def add_price_noise(ws: Workspace, sigma: float) -> None:
    """Stage 7: a random log-normal mark-up on every price (prices only rise)."""
    bids = ws.t["Bids.csv"]
    price = floats(bids, "PriceLoQ")
    markup = np.exp(sigma * np.abs(ws.rng.standard_normal(len(price))))
    new = np.where(price > 0, price * markup, price / markup)  # never lower: no new arbitrage
    text = fmt_floats(tidy(new))
    bids["PriceLoQ"] = text
    bids["PriceHiQ"] = text


def scale_ratings(ws: Workspace, interface: float, dist: float) -> None:
    """Stage 8: scale the rated interface and D–D edge ratings (capped at `RATING_CAP`)."""
    d_ids = ints(ws.t["DistributionNodes.csv"], "ID")
    for name in EDGE_FILES:
        if name not in ws.t:
            continue
        ed = ws.t[name]
        fd, td = np.isin(ints(ed, "NodeFrom"), d_ids), np.isin(ints(ed, "NodeTo"), d_ids)
        s = floats(ed, "S")
        rated = (s > 0) & (s < UNRATED_MIN)
        factor = np.where(fd & td, dist, np.where(fd ^ td, interface, 1.0))
        change = rated & (factor != 1.0)
        if change.any():
            new = np.minimum(s[change] * factor[change], RATING_CAP)
            ed.loc[change, "S"] = fmt_floats(tidy(new))


def scale_imbalance(ws: Workspace, scale: float) -> None:
    """Stage 9: scale the system imbalance; the change goes to the T nodes."""
    ni = ws.t["NetInjections.csv"]
    node, per, p = ints(ni, "Node"), ints(ni, "forT"), floats(ni, "P")
    is_t = np.isin(node, ints(ws.t["TransmissionNodes.csv"], "ID"))
    ref = ws.topology().ref_id
    new = p.copy()
    for t in np.unique(per):
        at = per == t
        delta = (scale - 1.0) * p[at].sum()
        w = np.abs(p) * (at & is_t)
        if w.sum() > 0:
            new += delta * w / w.sum()
        else:
            new[at & (node == ref)] += delta
    change = new != p
    ni.loc[change, "P"] = fmt_floats(tidy(new[change]))
