"""Stages 1–3 of a variant (module docstring of `variants`), which change the rows the tables hold: keep the
first N periods, clone DSO areas at other T nodes, duplicate D orders inside their area.  Copies get fresh ids
(`Workspace.copy_rows`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .tables import EDGE_FILES, ORDER_FILES, PERIOD_COLUMNS, floats, fmt_floats, fmt_ints, ints
from .workspace import Topology, Workspace, tidy


def truncate_periods(ws: Workspace, periods: int) -> None:
    """Stage 1: keep the first `periods` periods, and the condition rows whose QBids or QtBids remain."""
    gp = ws.t["GeneralParam.csv"]
    start, end = int(ints(gp, "StartTime")[0]), int(ints(gp, "EndTime")[0])
    if periods > end - start + 1:
        raise InputError(f"periods {periods} exceeds the base horizon of {end - start + 1} periods")
    last = start + periods - 1
    for name, col in PERIOD_COLUMNS.items():
        if name in ws.t and len(ws.t[name]):
            ws.t[name] = ws.t[name][ints(ws.t[name], col) <= last].reset_index(drop=True)
    bids = ws.t["Bids.csv"]
    qbids, qtbids = ints(bids, "QBid"), ints(bids, "QtBids")
    keep_by = {
        "RampConstraints.csv": lambda df: np.isin(ints(df, "QBid"), qbids),
        "MinDurationPairs.csv": lambda df: np.isin(ints(df, "QBid1"), qbids) & np.isin(ints(df, "QBid2"), qbids),
        "QPDisc.csv": lambda df: np.isin(ints(df, "QBids"), qbids),
        "ExclusiveQtBids.csv": lambda df: np.isin(ints(df, "QtBid"), qtbids),
        "HalfPlanes.csv": lambda df: np.isin(ints(df, "QtBid"), qtbids),
    }
    for name, keep in keep_by.items():
        if name in ws.t and len(ws.t[name]):
            ws.t[name] = ws.t[name][keep(ws.t[name])].reset_index(drop=True)
    gp.loc[:, "EndTime"] = str(last)


def _order_area_masks(ws: Workspace, topo: Topology) -> dict[str, np.ndarray]:
    """Area index of the rows of every order file (-1: T order, or a QtBid without orders)."""
    bids = ws.t["Bids.csv"]
    qt_area = pd.Series(topo.area_of(ints(bids, "Node")), index=ints(bids, "QtBids"))
    qt_area = qt_area[~qt_area.index.duplicated()]
    out = {}
    for name in ORDER_FILES:
        if name in ws.t:
            q = ws.row_qtbids(name)
            out[name] = qt_area.reindex(q).fillna(-1).to_numpy(dtype=np.int64)
    return out


def _clone_counts(ws: Workspace, n: int, copies: float | None, target_areas: int | None) -> list[tuple[int, int]]:
    """(area, copy number) of every clone: each area gets the same number, random areas one more."""
    if target_areas is None:
        assert copies is not None  # the caller gives one of the two
        total = int(round(copies * n))
    else:
        total = target_areas
    if n == 0:
        raise InputError("the base instance has no DSO area to clone")
    if total < n:
        raise InputError(f"cannot reduce the {n} DSO areas of the base to {total}")
    extra = total - n
    per = np.full(n, extra // n)
    rem = extra - int(per.sum())
    if rem:
        per[np.sort(ws.rng.choice(n, rem, replace=False))] += 1
    return [(a, c) for a in range(n) for c in range(1, int(per[a]) + 1)]


def _area_rows(ws: Workspace, topo: Topology) -> dict[str, np.ndarray]:
    """Per file, the area index of each row (-1: not in a DSO area); a clone copies the rows of its area."""
    area_rows: dict[str, np.ndarray] = {
        "DistributionNodes.csv": topo.area_of(ints(ws.t["DistributionNodes.csv"], "ID")),
        "NetInjections.csv": topo.area_of(ints(ws.t["NetInjections.csv"], "Node")),
    }
    edge_area = {}
    for name in EDGE_FILES:
        if name in ws.t:
            ed = ws.t[name]
            area_rows[name] = np.maximum(topo.area_of(ints(ed, "NodeFrom")), topo.area_of(ints(ed, "NodeTo")))
            if name == ws.edges_file:
                edge_area = dict(zip(ints(ed, "ID").tolist(), area_rows[name].tolist()))
    if "SubAreas.csv" in ws.t:
        area_rows["SubAreas.csv"] = np.array(
            [edge_area.get(e, -1) for e in ints(ws.t["SubAreas.csv"], "Edge").tolist()], dtype=np.int64
        )
    area_rows.update(_order_area_masks(ws, topo))
    return area_rows


def _offset_hosts(ws: Workspace, host_delta: dict[int, np.ndarray], ni_node, ni_per, ni_p, start: int) -> None:
    """Add `host_delta` (per host T node and period) to the hosts' original NetInjections rows."""
    ni = ws.t["NetInjections.csv"]  # now with the clones' rows
    rows = np.flatnonzero(np.isin(ni_node, list(host_delta)))  # host rows are original rows
    new_p = ni_p[rows] + np.array([host_delta[int(k)][t - start] for k, t in zip(ni_node[rows], ni_per[rows])])
    ni.loc[rows, "P"] = fmt_floats(tidy(new_p))


def clone_areas(ws: Workspace, copies: float | None, target_areas: int | None) -> None:
    """Stage 2: clone DSO areas at random T nodes; each clone's net injection is offset at its host."""
    topo = ws.topology()
    n = len(topo.roots)
    pairs = _clone_counts(ws, n, copies, target_areas)
    if not pairs:
        return
    hosts = _choose_hosts(ws, len(pairs), topo)
    stride = ws.strides()
    area_rows = _area_rows(ws, topo)

    ni = ws.t["NetInjections.csv"]
    ni_node, ni_per, ni_p = ints(ni, "Node"), ints(ni, "forT"), floats(ni, "P")
    gp = ws.t["GeneralParam.csv"]
    start = int(ints(gp, "StartTime")[0])
    T = int(ints(gp, "EndTime")[0]) - start + 1
    area_p = np.zeros((n, T))
    inside = area_rows["NetInjections.csv"] >= 0
    np.add.at(area_p, (area_rows["NetInjections.csv"][inside], ni_per[inside] - start), ni_p[inside])
    host_delta: dict[int, np.ndarray] = {}

    for (a, c), host in zip(pairs, hosts):
        old_host, host = int(topo.hosts[a]), int(host)
        nodes = topo.nodes_of(a)
        off_node = c * stride["node"]

        def node_map(v, nodes=nodes, off_node=off_node, old_host=old_host, host=host):
            return np.where(np.isin(v, nodes), v + off_node, np.where(v == old_host, host, v))

        masks = {name: rows == a for name, rows in area_rows.items()}
        ws.copy_rows(masks, {r: c * s for r, s in stride.items()}, node_map, f"_copy{c}")
        host_delta[host] = host_delta.get(host, np.zeros(T)) - area_p[a]
        ws.clones.append(
            {
                "area": f"DSO-{int(topo.roots[a])}",
                "copy": c,
                "root": int(topo.roots[a]) + off_node,
                "host": host,
            }
        )

    ws.flush()
    _offset_hosts(ws, host_delta, ni_node, ni_per, ni_p, start)


def _choose_hosts(ws: Workspace, count: int, topo: Topology) -> np.ndarray:
    """Host T nodes of `count` clones: distinct free T nodes if there are enough (module docstring, *Attachment*)."""
    free = topo.t_ids[~np.isin(topo.t_ids, topo.hosts)]
    if len(free) >= count:
        return ws.rng.choice(free, count, replace=False)
    if len(topo.t_ids) >= count:
        return ws.rng.choice(topo.t_ids, count, replace=False)
    ws.notes.append(f"{count} clones on {len(topo.t_ids)} T nodes: some T nodes host several clones")
    return ws.rng.choice(topo.t_ids, count, replace=True)


def _segments_needed(n_all: int, n_d: int, factor: float, segments: int | None) -> int:
    """Segments to add: up to `segments` in all, or (factor - 1) times the D segments."""
    if segments is not None:
        if segments < n_all:
            raise InputError(f"segments {segments} is below the {n_all} segments the variant has before duplication")
        return segments - n_all
    return int(round((factor - 1.0) * n_d))


def _order_units(ws: Workspace, d_qt: np.ndarray) -> np.ndarray:
    """The unit each D QtBid is copied with: itself, or the first of its exclusive group (union-find)."""
    parent = {int(q): int(q) for q in d_qt}

    def find(q):
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        return q

    ex = ws.t.get("ExclusiveQtBids.csv")
    if ex is not None and len(ex):
        for _, members in pd.Series(ints(ex, "QtBid")).groupby(ints(ex, "ID")):
            m = [int(q) for q in members if int(q) in parent]
            for q in m[1:]:
                parent[find(q)] = find(m[0])
    return np.array([find(int(q)) for q in d_qt])


def _draw_rounds(ws: Workspace, unit_segs: np.ndarray, need: int) -> list[np.ndarray]:
    """Copy rounds: each a random permutation of the units, cut when `need` segments are reached."""
    rounds: list[np.ndarray] = []
    added = 0
    while added < need:
        take = []
        for u in ws.rng.permutation(len(unit_segs)):
            if added >= need:
                break
            take.append(u)
            added += int(unit_segs[u])
        rounds.append(np.array(take, dtype=np.int64))
    return rounds


def duplicate_orders(ws: Workspace, factor: float, segments: int | None) -> None:
    """Stage 3: duplicate D QtBids (or whole exclusive groups) at random D nodes of their area."""
    topo = ws.topology()
    bids = ws.t["Bids.csv"]
    seg_area = topo.area_of(ints(bids, "Node"))
    n_all, n_d = len(bids), int((seg_area >= 0).sum())
    need = _segments_needed(n_all, n_d, factor, segments)
    if need <= 0:
        return
    if n_d == 0:
        raise InputError("the base instance has no distribution orders to duplicate")
    qt = ints(bids, "QtBids")
    d_qt, d_count = np.unique(qt[seg_area >= 0], return_counts=True)
    # units: a QtBid, or all D QtBids of one exclusive group
    unit_of = _order_units(ws, d_qt)
    units, unit_idx = np.unique(unit_of, return_inverse=True)
    unit_segs = np.bincount(unit_idx, weights=d_count).astype(np.int64)
    first_seg = pd.Series(np.arange(n_all), index=qt)
    first_seg = first_seg[~first_seg.index.duplicated()]
    unit_area = seg_area[first_seg.loc[units].to_numpy()]

    rounds = _draw_rounds(ws, unit_segs, need)
    stride = ws.strides()
    for r, take in enumerate(rounds, start=1):
        # one random node of its area per copied unit
        new_node = {}
        for u in take:
            pool = topo.nodes_of(int(unit_area[u]))
            new_node[int(units[u])] = int(pool[ws.rng.integers(len(pool))])
        members = d_qt[np.isin(unit_idx, take)]
        taken = set(take.tolist())
        target_of_qt = {int(q): new_node[int(unit_of[k])] for k, q in enumerate(d_qt) if int(unit_idx[k]) in taken}
        masks = {name: np.isin(ws.row_qtbids(name), members) for name in ORDER_FILES if name in ws.t}
        rows_qt = qt[masks["Bids.csv"]]
        before = len(qt)
        ws.copy_rows(masks, {k: r * s for k, s in stride.items()}, lambda v: v, f"_copy{r}")
        ws.flush()
        # the copied Bids rows follow the originals, in original row order: give them their new node
        bids = ws.t["Bids.csv"]
        bids.loc[before:, "Node"] = fmt_ints(np.array([target_of_qt[int(q)] for q in rows_qt]))
        qt = ints(bids, "QtBids")
