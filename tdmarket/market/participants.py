"""Market participants (docs/model.md §8): QtBids linked by exclusive groups.

A **participant** is a set of QtBids closed under exclusive-group membership (connected components of the
bipartite QtBid–group graph).  Minimum-duration pairs that name two different QtBids would couple them as well, so
they are added as edges too (in the data every pair stays inside one QtBid, so this changes nothing there).  Every
other order constraint (O1–O13) lives inside one QBid or QtBid, hence participants have independent feasible sets
F_j.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..model.instance import Instance


def participants(inst: Instance) -> np.ndarray:
    """Participant id of every QtBid, aligned with `np.unique(inst.orders.bids.qtbid)`.

    Ids are 0..J-1, numbered in order of each participant's smallest QtBid id.
    """
    ob = inst.orders
    qt = np.unique(ob.bids.qtbid)
    Q = len(qt)
    if Q == 0:
        return np.zeros(0, np.int64)
    known = np.isin(ob.exclusive_qtbid, qt)
    q_of_row = np.searchsorted(qt, ob.exclusive_qtbid[known])
    _, g_of_row = np.unique(ob.exclusive_group[known], return_inverse=True)
    G = int(g_of_row.max()) + 1 if len(g_of_row) else 0
    b1, b2 = ob.mindur_bid1, ob.mindur_bid2
    q1 = np.searchsorted(qt, ob.bids.qtbid[b1])
    q2 = np.searchsorted(qt, ob.bids.qtbid[b2])
    rows = np.concatenate([q_of_row, q1])
    cols = np.concatenate([Q + g_of_row, q2])
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(Q + G, Q + G))
    _, labels = connected_components(graph, directed=False)
    labels = labels[:Q]
    # renumber by first appearance along sorted QtBid ids
    uniq, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[inv.ravel()]


def participant_frame(inst: Instance) -> pd.DataFrame:
    """One row per participant: participant, qtbids ("12;13"), node ("5" or "5;7"), area, kind (T/D)."""
    ob, b = inst.orders, inst.buses
    qt = np.unique(ob.bids.qtbid)
    part = participants(inst)
    bid_part = part[np.searchsorted(qt, ob.bids.qtbid)]
    frame = pd.DataFrame(
        {
            "participant": bid_part,
            "qtbid": ob.bids.qtbid,
            "node": b.id[ob.bids.bus],
            "area": np.asarray(inst.areas.name, dtype=object)[b.area[ob.bids.bus]],
            "kind": np.where(b.is_dist[ob.bids.bus], "D", "T"),
        }
    )
    join = lambda s: ";".join(str(v) for v in sorted(pd.unique(s)))  # noqa: E731
    out = frame.groupby("participant", sort=True).agg(
        qtbids=("qtbid", join), node=("node", join), area=("area", "first"), kind=("kind", "first")
    )
    return out.reset_index()


def qtbid_participant(inst: Instance, qtbid_ids) -> np.ndarray:
    """Participant id of each given QtBid id (every id must belong to the order book)."""
    qt = np.unique(inst.orders.bids.qtbid)
    ids = np.asarray(qtbid_ids)
    pos = np.clip(np.searchsorted(qt, ids), 0, max(len(qt) - 1, 0))
    if len(ids) and (len(qt) == 0 or (qt[pos] != ids).any()):
        raise KeyError(f"QtBid(s) not in the order book: {np.unique(ids[(qt[pos] != ids)])[:5].tolist()}")
    return participants(inst)[pos]
