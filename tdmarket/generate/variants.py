"""Random but realistic variants of SmartNet instances, deterministic for a seed.

`make_variant(base, out, seed=...)` reads a SmartNet folder at the CSV level, applies the requested changes
and writes a new SmartNet folder that `tdmarket.load` accepts.  Every random draw comes from one
`numpy.random.default_rng(seed)`, in a fixed order, so the same base, options and seed give byte-identical
files.

Stages, in this order (each one is skipped when its option is at its default):

1. **periods** – keep the first N periods of the horizon.  Rows of later periods go, and so do the
   condition rows that name vanished QBids or QtBids.
2. **DSO areas** (`dso_copies` or `dso_areas`) – clone whole DSO areas.  An area is the connected set of D
   nodes behind one T–D interface edge.  A clone copies every row of the area in every file: nodes, D–D and
   interface edges, injections, orders and their conditions.  The clone hangs from another T node, drawn at
   random (see *Attachment*), through a copy of the original interface edge.
3. **D order duplication** (`order_copies` or `segments`) – duplicate D orders inside their area.  The unit
   copied is a QtBid, or a whole exclusive group.  Each copy goes to a random D node of the same area and
   takes its condition rows with it.  The segment count grows by the requested factor, or up to the
   requested total.
4. **start/stop share** – the share of QBids with the AlphaOmega flag.  A share is raised by turning random
   eligible QtBids into start/stop blocks, as in the data: AlphaOmega on every QBid, NoNewAct after the
   first, every segment all-or-nothing, minimum-duration pairs for every `Tau` ≤ `ForTime`.  Eligible
   means: no AlphaOmega yet, no exclusive group, no ramp, one QBid per period over consecutive periods.
   D QtBids are taken first, in random order, those that start in the first period first.  T QtBids come
   after them, narrowest first (largest |width| of their segments).  A share is lowered by removing random
   blocks: their flags and pairs go, their segments stay all-or-nothing.
5. **all-or-nothing share** – the share of segments with `Xlb` = 1, counted over all segments as in
   `tdmarket info`.  It is raised by setting `Xlb`=1 on divisible segments: D segments first, in random
   order, then T segments narrowest first.  It is lowered by setting `Xlb`=0 on random AON segments outside
   start/stop QBids.  Why D first and T narrowest first: in the SmartNet data all-or-nothing orders are
   small.  italy-652's 1 756 non-zero-width AON segments hold 3.6 MW in all, and its largest D segment is
   1.4 MW.  A uniform draw at 70 % made 520 T segments of over 10 MW (up to 1 366 MW) all-or-nothing.  That
   is 75 GW of lumpy T capacity against a 123 MW imbalance: an unrealistic knapsack, in which the
   centralized MIP found no incumbent in 20 minutes.
6. **negative-price share** – the share of down segments (`HiQ` < `LoQ`) whose price is negative.  It is
   raised by setting price := −|price| on random non-negative down segments; a zero price becomes
   −U(5, 40) €/MWh.  It is lowered by setting price := |price|.
7. **price noise** – a random mark-up on every segment price: π := π·exp(σ|z|) if π > 0 and
   π := π·exp(−σ|z|) if π < 0, with z ~ N(0, 1) per segment.  Signs and zeros are kept.  The noise only ever
   *raises* a price, so that no order gets more attractive to the system.  It breaks the ties between copies,
   and it adds no arbitrage: no up/down pair of orders becomes profitable that was not profitable before.
   Symmetric noise did add some.  With σ = 0.05 it turned italy-652's relaxed cost from +1 746 € into
   −14 153 €, because down orders at −p and up orders at +p (1 161 zero-sum QBids) became money pumps.
8. **ratings** – multiply the ratings S of interface edges (`interface_rating_scale`) and of D–D edges
   (`d_rating_scale`, which includes sub-area interfaces of `SubAreas.csv`).  Only rated edges change
   (0 < S < 90 000).  A scaled rating is capped at 89 999 MVA so that it stays rated.
9. **imbalance** – scale the system imbalance I_t = Σ_i P_i,t by `imbalance_scale`.  The change
   (s − 1)·I_t is spread over the T nodes in proportion to |P_i,t|, or put at the reference node if every T
   injection is 0.  D injections do not change.

Shares are fractions in [0, 1].  A share is met to within one order's worth: one QtBid for start/stop, one
segment otherwise.  The exception is a share that the eligible rows cannot reach: the achieved share is then
recorded in `variant.json`.  Ratings are in MVA, powers in MW and prices in €/MWh, as in the files.

**Fresh ids.** Each id namespace has a stride 10^d, where d is the digit count of its largest id in the
current tables.  The namespaces are node, edge, QtBid, QBid, segment, exclusive group, ramp id, half-plane
id, disc id and `ExclusiveBids` group.  Copy number c gets id + c·stride in that namespace.  This keeps
copies disjoint from the originals and from each other, and old ids readable: node 10060000 of copy 2 is
210060000 when the node stride is 10^8.  The offset applies to every column of that namespace in every file
(see `tables.ID_ROLES`): Bids, ExclusiveQtBids, ExclusiveBids, RampConstraints, MinDurationPairs,
HalfPlanes, QPDisc, Qt2ForT, AlphaOmegaSet/NoNewAct, NetInjections, DistributionNodes, Edges, Edges_hard
and SubAreas.  Names get a suffix `_copy<c>`: the `DecNetFrom/To` labels at D ends in `Edges_hard.csv` and
the `SubAreas.csv` area names.

**Attachment.** The clones are attached at distinct T nodes, drawn without replacement from the T nodes
that host no area.  If there are too few of these, the draw is from all T nodes.  If there are fewer T nodes
than clones, the draw is with replacement (several areas may share a T node, as in italy-693).

**Imbalance rule for clones.** Each clone's net injection is offset at its host T node: Σ_{i∈clone} P_i,t
is subtracted from the host's P_t in every period.  So the system imbalance Σ_i P_i,t and the base-case T
flows stay as in the base.  The clone's load is served from its host, and the existing imbalance now meets
more competing orders.  Scale the imbalance with `imbalance_scale`.

Reader conventions kept: flags stay where the base keeps them (`Bids` columns or the `AlphaOmegaSet.csv` /
`NoNewAct.csv` files).  Files the reader ignores (`Qt2ForT`, `ExclusiveBids`, extra columns) are carried
along and remapped consistently.  Other files in the base folder are not copied.  `variant.json` records the
base, the options and the figures reached.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..errors import InputError
from .tables import (
    EDGE_FILES,
    ID_ROLES,
    KNOWN_FILES,
    ORDER_FILES,
    PERIOD_COLUMNS,
    floats,
    fmt_floats,
    fmt_ints,
    ints,
    read_csv,
    write_csv,
)

UNRATED_MIN = 90_000.0  # docs/model.md §3.1: S >= this (or S == 0) means unrated
RATING_CAP = 89_999.0
FLAG_FILES = {"AlphaOmegaSet": "AlphaOmegaSet.csv", "NoNewAct": "NoNewAct.csv"}
MINDUR_COLUMNS = ["QtBids", "QBid1", "QBid2", "Tau", "ForTime"]
MANIFEST = "variant.json"

# Named presets (options for `make_variant`).  "benchmark" is meant for italy-652 (docs/model.md: 50 areas,
# 12 318 segments).  It gives a system sized like the hidden national one: 73 DSO areas, 26 000 segments
# and 70 % of them all-or-nothing.  "stressed" can be applied to any base: many negative-price down orders,
# congested D grids and tighter interfaces.
PRESETS: dict[str, dict] = {
    "benchmark": {"dso_areas": 73, "segments": 26_000, "aon_share": 0.70, "price_noise": 0.05},
    "stressed": {
        "negative_price_share": 0.6,
        "d_rating_scale": 0.5,
        "interface_rating_scale": 0.8,
        "price_noise": 0.05,
    },
}


def _tidy(values) -> np.ndarray:
    """Round computed floats to 12 significant digits (no 0.30000000000000004 in the files)."""
    return np.array([float(f"{v:.12g}") for v in np.asarray(values, dtype=float)])


@dataclass
class _Topology:
    t_ids: np.ndarray  # sorted T node ids
    ref_id: int  # first reference node
    d_ids: np.ndarray  # sorted D node ids
    d_area: np.ndarray  # area index of each D node (aligned with d_ids)
    roots: np.ndarray  # root D node id per area (areas sorted by root id)
    hosts: np.ndarray  # host T node id per area

    def area_of(self, node_ids: np.ndarray) -> np.ndarray:
        """Area index of each node id; -1 for T nodes (and unknown ids)."""
        node_ids = np.asarray(node_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.d_ids, node_ids), 0, max(len(self.d_ids) - 1, 0))
        found = (self.d_ids[pos] == node_ids) if len(self.d_ids) else np.zeros(len(node_ids), bool)
        return np.where(found, self.d_area[pos] if len(self.d_ids) else -1, -1)

    def nodes_of(self, area: int) -> np.ndarray:
        return self.d_ids[self.d_area == area]


class _Variant:
    def __init__(self, base: Path, edges_file: str, seed: int):
        self.base = base
        self.edges_file = edges_file
        self.rng = np.random.default_rng(seed)
        self.t: dict[str, pd.DataFrame] = {}
        for name in KNOWN_FILES:
            if (base / name).is_file():
                self.t[name] = read_csv(base / name)
        self.flag_style: dict[str, list[str] | None] = {}  # flag -> header of its file, None if a Bids column
        self.clones: list[dict] = []
        self.notes: list[str] = []
        self._pending: dict[str, list[pd.DataFrame]] = {}
        self._normalise_flags()

    # ------------------------------------------------------------------ flags
    def _normalise_flags(self) -> None:
        """Keep AlphaOmega/NoNewAct as Bids columns while working; `denormalise` restores the base's layout."""
        bids = self.t["Bids.csv"]
        qb = ints(bids, "QBid")
        for col, fname in FLAG_FILES.items():
            if col in bids.columns:
                self.flag_style[col] = None
                continue
            flag = np.zeros(len(bids), bool)
            tab = self.t.pop(fname, None)
            header = list(tab.columns) if tab is not None else None
            if tab is not None and len(tab):
                flag = np.isin(qb, ints(tab, "QBid"))
            bids[col] = np.where(flag, "1", "0").astype(object)
            self.flag_style[col] = header

    def denormalise(self) -> dict[str, pd.DataFrame]:
        out = dict(self.t)
        bids = out["Bids.csv"]
        for col, header in self.flag_style.items():
            if header is None:
                continue
            flagged = bids[bids[col].astype(int) == 1].drop_duplicates("QBid")
            rows = {h: np.full(len(flagged), "0", dtype=object) for h in header}
            for h in ("QtBids", "QBid", "forT"):
                if h in rows:
                    rows[h] = flagged[h].to_numpy(dtype=object)
            out[FLAG_FILES[col]] = pd.DataFrame(rows, columns=header)
            bids = bids.drop(columns=[col])
        out["Bids.csv"] = bids
        return out

    # ------------------------------------------------------------------ structure
    def topology(self) -> _Topology:
        tn, dn, ed = self.t["TransmissionNodes.csv"], self.t["DistributionNodes.csv"], self.t[self.edges_file]
        t_ids = np.sort(ints(tn, "ID"))
        ref = ints(tn, "ID")[ints(tn, "RefNode") == 1] if "RefNode" in tn.columns else ints(tn, "ID")[:1]
        d_ids = np.sort(ints(dn, "ID"))
        f, to = ints(ed, "NodeFrom"), ints(ed, "NodeTo")
        fd, td = np.isin(f, d_ids), np.isin(to, d_ids)
        n = len(d_ids)
        dd = fd & td
        fp, tp = np.searchsorted(d_ids, f[dd]), np.searchsorted(d_ids, to[dd])
        _, comp = connected_components(sp.coo_matrix((np.ones(len(fp)), (fp, tp)), shape=(n, n)), directed=False)
        iface = fd ^ td
        d_end = np.where(fd[iface], f[iface], to[iface])
        t_end = np.where(fd[iface], to[iface], f[iface])
        order = np.argsort(d_end, kind="stable")
        d_end, t_end = d_end[order], t_end[order]
        area_of_comp = np.full(max(n, 1), -1)
        area_of_comp[comp[np.searchsorted(d_ids, d_end)]] = np.arange(len(d_end))
        return _Topology(
            t_ids=t_ids,
            ref_id=int(ref[0]) if len(ref) else int(t_ids[0]),
            d_ids=d_ids,
            d_area=area_of_comp[comp] if n else np.zeros(0, np.int64),
            roots=d_end,
            hosts=t_end,
        )

    def strides(self) -> dict[str, int]:
        """Per id namespace: 10^(digits of the largest id in use)."""
        largest: dict[str, int] = {}
        for name, roles in ID_ROLES.items():
            df = self.t.get(name)
            if df is None or not len(df):
                continue
            for col, role in roles.items():
                if col in df.columns:
                    largest[role] = max(largest.get(role, 0), int(np.abs(ints(df, col)).max()))
        roles = {r for roles in ID_ROLES.values() for r in roles.values()}
        return {r: 10 ** max(len(str(largest.get(r, 0))), 1) for r in roles}

    def row_qtbids(self, name: str) -> np.ndarray:
        return ints(self.t[name], ORDER_FILES[name])

    def copy_rows(self, masks: dict[str, np.ndarray], offset: dict[str, int], node_map, suffix: str) -> None:
        """Queue copies of the masked rows of each file, with every id column remapped (`flush` appends them).

        The masks refer to the tables as they were at the last `flush`.  `offset[role]` is added to the
        non-node id columns, `node_map(values)` maps node ids, and `suffix` is appended to name columns
        (DecNet labels at D ends, sub-area names)."""
        d_ids = ints(self.t["DistributionNodes.csv"], "ID")
        for name, mask in masks.items():
            df = self.t[name]
            if not mask.any():
                continue
            sub = df[mask].copy()
            for col, role in ID_ROLES.get(name, {}).items():
                if col not in sub.columns:
                    continue
                v = ints(sub, col)
                sub[col] = fmt_ints(node_map(v) if role == "node" else v + offset[role])
            if name in EDGE_FILES:
                for end, label in (("NodeFrom", "DecNetFrom"), ("NodeTo", "DecNetTo")):
                    if label in sub.columns:
                        is_name = pd.to_numeric(sub[label], errors="coerce").isna().to_numpy()
                        at_d = np.isin(ints(df[mask], end), d_ids)
                        sub.loc[is_name & at_d, label] = sub.loc[is_name & at_d, label] + suffix
            if name == "SubAreas.csv" and "Area" in sub.columns:
                named = sub["Area"].astype(str) != ""
                sub.loc[named, "Area"] = sub.loc[named, "Area"] + suffix
            self._pending.setdefault(name, []).append(sub)

    def flush(self) -> None:
        """Append the queued copies after the original rows (original row positions do not change)."""
        for name, parts in self._pending.items():
            self.t[name] = pd.concat([self.t[name], *parts], ignore_index=True)
        self._pending = {}

    # ------------------------------------------------------------------ stage 1: periods
    def truncate_periods(self, periods: int) -> None:
        gp = self.t["GeneralParam.csv"]
        start, end = int(ints(gp, "StartTime")[0]), int(ints(gp, "EndTime")[0])
        if periods > end - start + 1:
            raise InputError(f"periods {periods} exceeds the base horizon of {end - start + 1} periods")
        last = start + periods - 1
        for name, col in PERIOD_COLUMNS.items():
            if name in self.t and len(self.t[name]):
                self.t[name] = self.t[name][ints(self.t[name], col) <= last].reset_index(drop=True)
        bids = self.t["Bids.csv"]
        qbids, qtbids = ints(bids, "QBid"), ints(bids, "QtBids")
        keep_by = {
            "RampConstraints.csv": lambda df: np.isin(ints(df, "QBid"), qbids),
            "MinDurationPairs.csv": lambda df: np.isin(ints(df, "QBid1"), qbids) & np.isin(ints(df, "QBid2"), qbids),
            "QPDisc.csv": lambda df: np.isin(ints(df, "QBids"), qbids),
            "ExclusiveQtBids.csv": lambda df: np.isin(ints(df, "QtBid"), qtbids),
            "HalfPlanes.csv": lambda df: np.isin(ints(df, "QtBid"), qtbids),
        }
        for name, keep in keep_by.items():
            if name in self.t and len(self.t[name]):
                self.t[name] = self.t[name][keep(self.t[name])].reset_index(drop=True)
        gp.loc[:, "EndTime"] = str(last)

    # ------------------------------------------------------------------ stage 2: DSO areas
    def order_area_masks(self, topo: _Topology) -> dict[str, np.ndarray]:
        """Area index of the rows of every order file (-1: T order, or a QtBid without orders)."""
        bids = self.t["Bids.csv"]
        qt_area = pd.Series(topo.area_of(ints(bids, "Node")), index=ints(bids, "QtBids"))
        qt_area = qt_area[~qt_area.index.duplicated()]
        out = {}
        for name in ORDER_FILES:
            if name in self.t:
                q = self.row_qtbids(name)
                out[name] = qt_area.reindex(q).fillna(-1).to_numpy(dtype=np.int64)
        return out

    def clone_areas(self, copies: float | None, target_areas: int | None) -> None:
        topo = self.topology()
        n = len(topo.roots)
        total = target_areas if target_areas is not None else int(round(copies * n))
        if n == 0:
            raise InputError("the base instance has no DSO area to clone")
        if total < n:
            raise InputError(f"cannot reduce the {n} DSO areas of the base to {total}")
        extra = total - n
        per = np.full(n, extra // n)
        rem = extra - int(per.sum())
        if rem:
            per[np.sort(self.rng.choice(n, rem, replace=False))] += 1
        pairs = [(a, c) for a in range(n) for c in range(1, int(per[a]) + 1)]
        if not pairs:
            return
        hosts = self.choose_hosts(len(pairs), topo)
        stride = self.strides()

        area_rows: dict[str, np.ndarray] = {
            "DistributionNodes.csv": topo.area_of(ints(self.t["DistributionNodes.csv"], "ID")),
            "NetInjections.csv": topo.area_of(ints(self.t["NetInjections.csv"], "Node")),
        }
        edge_area = {}
        for name in EDGE_FILES:
            if name in self.t:
                ed = self.t[name]
                area_rows[name] = np.maximum(topo.area_of(ints(ed, "NodeFrom")), topo.area_of(ints(ed, "NodeTo")))
                if name == self.edges_file:
                    edge_area = dict(zip(ints(ed, "ID").tolist(), area_rows[name].tolist()))
        if "SubAreas.csv" in self.t:
            area_rows["SubAreas.csv"] = np.array(
                [edge_area.get(e, -1) for e in ints(self.t["SubAreas.csv"], "Edge").tolist()], dtype=np.int64
            )
        area_rows.update(self.order_area_masks(topo))

        ni = self.t["NetInjections.csv"]
        ni_node, ni_per, ni_p = ints(ni, "Node"), ints(ni, "forT"), floats(ni, "P")
        gp = self.t["GeneralParam.csv"]
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
            self.copy_rows(masks, {r: c * s for r, s in stride.items()}, node_map, f"_copy{c}")
            host_delta[host] = host_delta.get(host, np.zeros(T)) - area_p[a]
            self.clones.append(
                {
                    "area": f"DSO-{int(topo.roots[a])}",
                    "copy": c,
                    "root": int(topo.roots[a]) + off_node,
                    "host": host,
                }
            )

        self.flush()
        ni = self.t["NetInjections.csv"]  # now with the clones' rows
        rows = np.flatnonzero(np.isin(ni_node, list(host_delta)))  # host rows are original rows
        new_p = ni_p[rows] + np.array([host_delta[int(k)][t - start] for k, t in zip(ni_node[rows], ni_per[rows])])
        ni.loc[rows, "P"] = fmt_floats(_tidy(new_p))

    def choose_hosts(self, count: int, topo: _Topology) -> np.ndarray:
        free = topo.t_ids[~np.isin(topo.t_ids, topo.hosts)]
        if len(free) >= count:
            return self.rng.choice(free, count, replace=False)
        if len(topo.t_ids) >= count:
            return self.rng.choice(topo.t_ids, count, replace=False)
        self.notes.append(f"{count} clones on {len(topo.t_ids)} T nodes: some T nodes host several clones")
        return self.rng.choice(topo.t_ids, count, replace=True)

    # ------------------------------------------------------------------ stage 3: D order duplication
    def duplicate_orders(self, factor: float, segments: int | None) -> None:
        topo = self.topology()
        bids = self.t["Bids.csv"]
        seg_area = topo.area_of(ints(bids, "Node"))
        n_all, n_d = len(bids), int((seg_area >= 0).sum())
        if segments is not None:
            if segments < n_all:
                raise InputError(
                    f"segments {segments} is below the {n_all} segments the variant has before duplication"
                )
            need = segments - n_all
        else:
            need = int(round((factor - 1.0) * n_d))
        if need <= 0:
            return
        if n_d == 0:
            raise InputError("the base instance has no distribution orders to duplicate")
        qt = ints(bids, "QtBids")
        d_qt, d_count = np.unique(qt[seg_area >= 0], return_counts=True)
        # units: a QtBid, or all D QtBids of one exclusive group (union-find over the group rows)
        parent = {int(q): int(q) for q in d_qt}

        def find(q):
            while parent[q] != q:
                parent[q] = parent[parent[q]]
                q = parent[q]
            return q

        ex = self.t.get("ExclusiveQtBids.csv")
        if ex is not None and len(ex):
            for _, members in pd.Series(ints(ex, "QtBid")).groupby(ints(ex, "ID")):
                m = [int(q) for q in members if int(q) in parent]
                for q in m[1:]:
                    parent[find(q)] = find(m[0])
        unit_of = np.array([find(int(q)) for q in d_qt])
        units, unit_idx = np.unique(unit_of, return_inverse=True)
        unit_segs = np.bincount(unit_idx, weights=d_count).astype(np.int64)
        first_seg = pd.Series(np.arange(n_all), index=qt)
        first_seg = first_seg[~first_seg.index.duplicated()]
        unit_area = seg_area[first_seg.loc[units].to_numpy()]

        rounds: list[np.ndarray] = []
        added = 0
        while added < need:
            take = []
            for u in self.rng.permutation(len(units)):
                if added >= need:
                    break
                take.append(u)
                added += int(unit_segs[u])
            rounds.append(np.array(take, dtype=np.int64))
        stride = self.strides()
        for r, take in enumerate(rounds, start=1):
            # one random node of its area per copied unit
            new_node = {}
            for u in take:
                pool = topo.nodes_of(int(unit_area[u]))
                new_node[int(units[u])] = int(pool[self.rng.integers(len(pool))])
            members = d_qt[np.isin(unit_idx, take)]
            taken = set(take.tolist())
            target_of_qt = {int(q): new_node[int(unit_of[k])] for k, q in enumerate(d_qt) if int(unit_idx[k]) in taken}
            masks = {name: np.isin(self.row_qtbids(name), members) for name in ORDER_FILES if name in self.t}
            rows_qt = qt[masks["Bids.csv"]]
            before = len(qt)
            self.copy_rows(masks, {k: r * s for k, s in stride.items()}, lambda v: v, f"_copy{r}")
            self.flush()
            # the copied Bids rows follow the originals, in original row order: give them their new node
            bids = self.t["Bids.csv"]
            bids.loc[before:, "Node"] = fmt_ints(np.array([target_of_qt[int(q)] for q in rows_qt]))
            qt = ints(bids, "QtBids")

    # ------------------------------------------------------------------ stage 4: start/stop
    def bid_frame(self) -> pd.DataFrame:
        b = self.t["Bids.csv"]
        return pd.DataFrame(
            {
                "qbid": ints(b, "QBid"),
                "qtbid": ints(b, "QtBids"),
                "per": ints(b, "forT"),
                "ao": ints(b, "AlphaOmegaSet") == 1,
            }
        ).drop_duplicates("qbid")

    def set_start_stop_share(self, share: float) -> None:
        bf = self.bid_frame()
        n_bids = len(bf)
        target = int(round(share * n_bids))
        cur = int(bf["ao"].sum())
        bids = self.t["Bids.csv"]
        seg_qt = ints(bids, "QtBids")
        md = self.t.get("MinDurationPairs.csv")
        if md is None:
            md = pd.DataFrame({c: pd.Series([], dtype=object) for c in MINDUR_COLUMNS})
        g = bf.groupby("qtbid").agg(n=("qbid", "size"), lo=("per", "min"), hi=("per", "max"), np_=("per", "nunique"))
        g["ao"] = bf.groupby("qtbid")["ao"].any()
        if cur < target:
            blocked = set()
            for name, col in (("ExclusiveQtBids.csv", "QtBid"), ("RampConstraints.csv", "QtBids")):
                if name in self.t and len(self.t[name]):
                    blocked |= set(ints(self.t[name], col).tolist())
            ok = (~g["ao"]) & (g["np_"] == g["n"]) & (g["hi"] - g["lo"] + 1 == g["n"]) & ~g.index.isin(list(blocked))
            cand = g[ok]
            first = int(ints(self.t["GeneralParam.csv"], "StartTime")[0])
            seg_t = ~np.isin(ints(bids, "Node"), ints(self.t["DistributionNodes.csv"], "ID"))
            seg_w = np.abs(floats(bids, "QuantityHiQ") - floats(bids, "QuantityLoQ"))
            per_qt = (
                pd.DataFrame({"q": seg_qt, "t": seg_t, "w": seg_w}).groupby("q").agg(t=("t", "any"), w=("w", "max"))
            )
            is_t = per_qt["t"].reindex(cand.index).to_numpy()
            width = np.where(is_t, per_qt["w"].reindex(cand.index).to_numpy(), 0.0)
            late = cand["lo"].to_numpy() != first
            perm = self.rng.permutation(len(cand))
            # D before T; then first-period starts; then (T) narrowest; the random permutation breaks ties
            order = cand.index.to_numpy()[perm[np.lexsort((width[perm], late[perm], is_t[perm]))]]
            chosen = []
            for q in order:
                if cur >= target:
                    break
                chosen.append(int(q))
                cur += int(g.at[q, "n"])
            if cur < target:
                self.notes.append(f"start/stop share capped at {cur / n_bids:.4f}: no more eligible QtBids")
            seg = np.isin(seg_qt, chosen)
            seg_per = ints(bids, "forT")
            lo = g["lo"].reindex(seg_qt[seg]).to_numpy()
            bids.loc[seg, "AlphaOmegaSet"] = "1"
            bids.loc[seg, "NoNewAct"] = np.where(seg_per[seg] > lo, "1", "0")
            bids.loc[seg, "Xlb"] = "1"
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
            self.t["MinDurationPairs.csv"] = md
        elif cur > target:
            blocks = g.index.to_numpy()[g["ao"].to_numpy()]
            removed = []
            for q in blocks[self.rng.permutation(len(blocks))]:
                if cur <= target:
                    break
                removed.append(int(q))
                cur -= int(bf.loc[bf["qtbid"] == q, "ao"].sum())
            seg = np.isin(seg_qt, removed)
            bids.loc[seg, "AlphaOmegaSet"] = "0"
            bids.loc[seg, "NoNewAct"] = "0"
            if len(md):
                self.t["MinDurationPairs.csv"] = md[~np.isin(ints(md, "QtBids"), removed)].reset_index(drop=True)

    # ------------------------------------------------------------------ stage 5: all-or-nothing
    def set_aon_share(self, share: float) -> None:
        bids = self.t["Bids.csv"]
        aon = floats(bids, "Xlb") == 1
        target = int(round(share * len(bids)))
        cur = int(aon.sum())
        if cur < target:
            is_t = ~np.isin(ints(bids, "Node"), ints(self.t["DistributionNodes.csv"], "ID"))
            width = np.abs(floats(bids, "QuantityHiQ") - floats(bids, "QuantityLoQ"))
            perm = self.rng.permutation(np.flatnonzero(~aon))
            order = perm[np.lexsort((np.where(is_t, width, 0.0)[perm], is_t[perm]))]  # stable: perm breaks ties
            pick = order[: target - cur]
            bids.loc[pick, "Xlb"] = "1"
        elif cur > target:
            cand = np.flatnonzero(aon & (ints(bids, "AlphaOmegaSet") == 0))
            pick = self.rng.permutation(cand)[: cur - target]
            if len(pick) < cur - target:
                self.notes.append("all-or-nothing share capped: the remaining AON segments are start/stop blocks")
            bids.loc[pick, "Xlb"] = "0"

    # ------------------------------------------------------------------ stage 6: negative prices
    def set_negative_price_share(self, share: float) -> None:
        bids = self.t["Bids.csv"]
        down = floats(bids, "QuantityHiQ") < floats(bids, "QuantityLoQ")
        price = floats(bids, "PriceLoQ")
        neg = down & (price < 0)
        target = int(round(share * down.sum()))
        cur = int(neg.sum())
        if cur < target:
            pick = self.rng.permutation(np.flatnonzero(down & (price >= 0)))[: target - cur]
            fresh = -np.round(self.rng.uniform(5.0, 40.0, len(pick)), 4)
            new = np.where(price[pick] != 0, -np.abs(price[pick]), fresh)
        elif cur > target:
            pick = self.rng.permutation(np.flatnonzero(neg))[: cur - target]
            new = np.abs(price[pick])
        else:
            return
        text = fmt_floats(_tidy(new))
        bids.loc[pick, "PriceLoQ"] = text
        bids.loc[pick, "PriceHiQ"] = text

    # ------------------------------------------------------------------ stage 7: price noise
    def add_price_noise(self, sigma: float) -> None:
        bids = self.t["Bids.csv"]
        price = floats(bids, "PriceLoQ")
        markup = np.exp(sigma * np.abs(self.rng.standard_normal(len(price))))
        new = np.where(price > 0, price * markup, price / markup)  # never lower: no new arbitrage
        text = fmt_floats(_tidy(new))
        bids["PriceLoQ"] = text
        bids["PriceHiQ"] = text

    # ------------------------------------------------------------------ stage 8: ratings
    def scale_ratings(self, interface: float, dist: float) -> None:
        d_ids = ints(self.t["DistributionNodes.csv"], "ID")
        for name in EDGE_FILES:
            if name not in self.t:
                continue
            ed = self.t[name]
            fd, td = np.isin(ints(ed, "NodeFrom"), d_ids), np.isin(ints(ed, "NodeTo"), d_ids)
            s = floats(ed, "S")
            rated = (s > 0) & (s < UNRATED_MIN)
            factor = np.where(fd & td, dist, np.where(fd ^ td, interface, 1.0))
            change = rated & (factor != 1.0)
            if change.any():
                new = np.minimum(s[change] * factor[change], RATING_CAP)
                ed.loc[change, "S"] = fmt_floats(_tidy(new))

    # ------------------------------------------------------------------ stage 9: imbalance
    def scale_imbalance(self, scale: float) -> None:
        ni = self.t["NetInjections.csv"]
        node, per, p = ints(ni, "Node"), ints(ni, "forT"), floats(ni, "P")
        is_t = np.isin(node, ints(self.t["TransmissionNodes.csv"], "ID"))
        ref = self.topology().ref_id
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
        ni.loc[change, "P"] = fmt_floats(_tidy(new[change]))

    # ------------------------------------------------------------------ figures and writing
    def figures(self) -> dict:
        topo = self.topology()
        bids = self.t["Bids.csv"]
        bf = self.bid_frame()
        down = floats(bids, "QuantityHiQ") < floats(bids, "QuantityLoQ")
        price = floats(bids, "PriceLoQ")
        ni = self.t["NetInjections.csv"]
        imb = pd.Series(floats(ni, "P")).groupby(ints(ni, "forT")).sum()
        seg_d = topo.area_of(ints(bids, "Node")) >= 0
        aon = floats(bids, "Xlb") == 1
        return {
            "dso_areas": len(topo.roots),
            "t_nodes": len(topo.t_ids),
            "d_nodes": len(topo.d_ids),
            "segments": len(bids),
            "segments_d": int(seg_d.sum()),
            "aon_segments": int(aon.sum()),
            "aon_share": round(float(aon.mean()), 6) if len(bids) else 0.0,
            "bids": len(bf),
            "start_stop_share_of_bids": round(float(bf["ao"].mean()), 6) if len(bf) else 0.0,
            "down_segments": int(down.sum()),
            "negative_price_share_of_down": round(float((down & (price < 0)).sum() / down.sum()), 6)
            if down.any()
            else 0.0,
            "system_imbalance_mw": {str(int(k)): round(float(v), 6) for k, v in imb.items()},
        }

    def write(self, out: Path, manifest: dict, overwrite: bool) -> None:
        tables = self.denormalise()
        _check_output(out, overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            for name in sorted(tables):
                write_csv(tmp / name, tables[name])
            text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
            (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
            os.chmod(tmp, 0o755)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _check_output(out: Path, overwrite: bool) -> None:
    """`out` must be new or empty; with `overwrite`, it may also be an instance folder (it is replaced)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise InputError(f"output folder {out} exists and is not empty (use --overwrite)")
    if not ((out / MANIFEST).is_file() or (out / "GeneralParam.csv").is_file()):
        raise InputError(f"refusing to overwrite {out}: it is not an instance folder")


def _check(name: str, value, ok: bool, what: str) -> None:
    if not ok:
        raise InputError(f"{name} {value!r} {what}")


def make_variant(
    base_path,
    out_dir,
    *,
    seed: int,
    dso_copies: float = 1.0,
    dso_areas: int | None = None,
    order_copies: float = 1.0,
    segments: int | None = None,
    aon_share: float | None = None,
    start_stop_share: float | None = None,
    negative_price_share: float | None = None,
    price_noise: float = 0.0,
    interface_rating_scale: float = 1.0,
    d_rating_scale: float = 1.0,
    imbalance_scale: float = 1.0,
    periods: int | None = None,
    edges_file: str = "Edges.csv",
    overwrite: bool = False,
    validate: bool = True,
) -> Path:
    """Write a random variant of the SmartNet folder `base_path` to `out_dir`; returns `out_dir`.

    The module docstring gives the stages and rules in full.

    * `seed` – integer ≥ 0 for `numpy.random.default_rng`.  The same base, options and seed give
      byte-identical files.
    * `dso_copies` – factor k ≥ 1 on the number of DSO areas: round(k·n) areas in all.  Every area gets
      ⌊k⌋ − 1 clones, and random areas get one more.  `dso_areas` sets the total count instead.
    * `order_copies` – factor ≥ 1 on the number of D segments, reached by duplicating D orders.
      `segments` sets a total segment count to reach instead.
    * `aon_share`, `start_stop_share`, `negative_price_share` – target fractions in [0, 1], or None to keep
      the base's.  They are: segments with `Xlb`=1 among all segments; QBids with AlphaOmega among all
      QBids; negative-price segments among down segments.
    * `price_noise` – σ ≥ 0 of the random log-normal mark-up on every price (prices only rise).
    * `interface_rating_scale`, `d_rating_scale` – factors > 0 on the MVA ratings of rated interface and
      D–D edges.
    * `imbalance_scale` – factor on the system imbalance per period (MW); the change goes to T nodes.
    * `periods` – keep only the first N periods.
    * `edges_file` – the edge file that defines the topology (`Edges_hard.csv` is remapped as well, if present).
    * `validate` – read the result with `tdmarket.load` (the validating reader); its errors propagate.

    Bad options raise `InputError`.
    """
    base = Path(base_path)
    out = Path(out_dir)
    _check(
        "seed",
        seed,
        isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0,
        "must be an integer >= 0",
    )
    _check("dso_copies", dso_copies, np.isfinite(dso_copies) and dso_copies >= 1, "must be >= 1")
    _check(
        "dso_areas",
        dso_areas,
        dso_areas is None or (int(dso_areas) == dso_areas and dso_areas >= 1),
        "must be a positive integer",
    )
    _check("order_copies", order_copies, np.isfinite(order_copies) and order_copies >= 1, "must be >= 1")
    _check(
        "segments",
        segments,
        segments is None or (int(segments) == segments and segments >= 1),
        "must be a positive integer",
    )
    for name, v in (
        ("aon_share", aon_share),
        ("start_stop_share", start_stop_share),
        ("negative_price_share", negative_price_share),
    ):
        _check(name, v, v is None or 0.0 <= v <= 1.0, "must be in [0, 1]")
    _check("price_noise", price_noise, price_noise >= 0 and np.isfinite(price_noise), "must be >= 0")
    for name, v in (("interface_rating_scale", interface_rating_scale), ("d_rating_scale", d_rating_scale)):
        _check(name, v, v > 0 and np.isfinite(v), "must be positive")
    _check("imbalance_scale", imbalance_scale, np.isfinite(imbalance_scale), "must be finite")
    _check(
        "periods", periods, periods is None or (int(periods) == periods and periods >= 1), "must be a positive integer"
    )
    if not base.is_dir():
        raise InputError(f"base instance folder {base} does not exist")
    if out.resolve() == base.resolve():
        raise InputError("the output folder must differ from the base folder")
    _check_output(out, overwrite)

    from ..io import read as read_instance

    read_instance(base, edges_file=edges_file)  # the base must be valid; its errors name the base's files
    v = _Variant(base, edges_file, int(seed))
    if edges_file not in v.t:
        raise InputError(f"edges file {edges_file} not found in {base}")
    if periods is not None:
        v.truncate_periods(int(periods))
    if dso_areas is not None or dso_copies != 1:
        v.clone_areas(float(dso_copies), None if dso_areas is None else int(dso_areas))
    if segments is not None or order_copies != 1:
        v.duplicate_orders(float(order_copies), None if segments is None else int(segments))
    if start_stop_share is not None:
        v.set_start_stop_share(float(start_stop_share))
    if aon_share is not None:
        v.set_aon_share(float(aon_share))
    if negative_price_share is not None:
        v.set_negative_price_share(float(negative_price_share))
    if price_noise > 0:
        v.add_price_noise(float(price_noise))
    if interface_rating_scale != 1 or d_rating_scale != 1:
        v.scale_ratings(float(interface_rating_scale), float(d_rating_scale))
    if imbalance_scale != 1:
        v.scale_imbalance(float(imbalance_scale))

    options = {
        "dso_copies": dso_copies,
        "dso_areas": dso_areas,
        "order_copies": order_copies,
        "segments": segments,
        "aon_share": aon_share,
        "start_stop_share": start_stop_share,
        "negative_price_share": negative_price_share,
        "price_noise": price_noise,
        "interface_rating_scale": interface_rating_scale,
        "d_rating_scale": d_rating_scale,
        "imbalance_scale": imbalance_scale,
        "periods": periods,
        "edges_file": edges_file,
    }
    manifest = {
        "generator": "tdmarket.generate.variants.make_variant",
        "base": base.name,
        "seed": int(seed),
        "options": options,
        "figures": v.figures(),
        "clones": v.clones,
        "notes": v.notes,
    }
    v.write(out, manifest, overwrite)
    if validate:
        read_instance(out, edges_file=edges_file)
    return out


def read_manifest(folder) -> dict:
    """The `variant.json` of a generated folder."""
    return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))


def find_smartnet(name: str) -> Path:
    """A shared SmartNet instance folder by name (`three-node`, `italy-693`, `italy-652`).

    Looked up in `$TDMARKET_SMARTNET`, then `../shared/smartnet` next to the source checkout, then
    `../shared/smartnet` from the working directory."""
    candidates = []
    if os.environ.get("TDMARKET_SMARTNET"):
        candidates.append(Path(os.environ["TDMARKET_SMARTNET"]) / name)
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "smartnet" / name)
    candidates.append(Path.cwd() / ".." / "shared" / "smartnet" / name)
    for c in candidates:
        if c.is_dir():
            return c
    raise InputError(f"SmartNet instance {name!r} not found (set TDMARKET_SMARTNET to the folder that holds it)")


def make_benchmark_system(out_dir, *, seed: int = 0, base_path=None, overwrite: bool = False) -> Path:
    """The team's benchmark system: italy-652 grown to 73 DSO areas and 26 000 segments, 70 % all-or-nothing.

    Preset "benchmark" of `PRESETS`: 23 clones of random areas (hosted at fresh T nodes), D orders duplicated
    up to 26 000 segments, AON share 0.70 and price noise σ = 0.05 so that duplicates are not exact ties."""
    base = Path(base_path) if base_path is not None else find_smartnet("italy-652")
    return make_variant(base, out_dir, seed=seed, overwrite=overwrite, **PRESETS["benchmark"])
