"""Reader and writer for the SmartNet CSV instance format (docs/model.md §2).

`read_instance(folder)` parses, validates and builds an `Instance`; any problem raises one `InputError`
naming the file, the editor row, the column and the reason.  `write_instance(instance, folder)` writes the
canonical subset of the format back (LF line endings, baseMVA 1, flags as `Bids` columns) so that reading
it again gives an identical instance.

Decisions where the format is silent (documented in the README):
* a missing (bus, period) injection is an error (no silent zero), as is an injection for an unknown bus;
* a distribution area must be radial and hang from exactly one interface branch; a meshed area or one with
  several interfaces is rejected (the hierarchical scheme needs one exchange point per DSO);
* `S <= 0` is rejected unless `nonpositive_rating_unlimited` (the research convention) — except `S == 0`,
  which the published data use for "unrated", as do ratings `>= 90 000`.
"""

from __future__ import annotations

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
from ..model.instance import UNRATED_MIN, Areas, Bids, Branches, BranchKind, Buses, Instance, OrderBook, Segments
from .table import Table, read_table


@dataclass(frozen=True)
class ReadOptions:
    edges_file: str = "Edges.csv"
    nonpositive_rating_unlimited: bool = False  # research behaviour: S < 0 means unrated
    edge_pq_bounds: bool = False  # keep Pmin/Pmax/Qmin/Qmax of an Edges_hard-style file as flow bounds
    reference: str = "error"  # "error" or "lowest": what to do with several reference nodes in one component


OPTIONAL_FILES = (
    "ExclusiveQtBids.csv",
    "RampConstraints.csv",
    "MinDurationPairs.csv",
    "HalfPlanes.csv",
    "QPDisc.csv",
    "AlphaOmegaSet.csv",
    "NoNewAct.csv",
    "SubAreas.csv",
)


class _Reader:
    def __init__(self, folder: Path, options: ReadOptions):
        self.folder = folder
        self.options = options
        self.warnings: list[str] = []

    def label(self, name: str) -> str:
        return f"{self.folder.name}/{name}"

    def table(self, name: str, required: bool = True) -> Table | None:
        path = self.folder / name
        if not required and not path.exists():
            return None
        return read_table(path, self.label(name))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def lookup(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of `values` in the sorted-unique `keys`; returns (pos, found)."""
        pos = np.searchsorted(keys, values)
        pos_c = np.clip(pos, 0, max(len(keys) - 1, 0))
        found = (pos < len(keys)) & (keys[pos_c] == values) if len(keys) else np.zeros(len(values), bool)
        return pos_c, found

    @staticmethod
    def first(mask: np.ndarray) -> int | None:
        idx = np.flatnonzero(mask)
        return int(idx[0]) if len(idx) else None

    def check(self, table: Table, bad: np.ndarray, column: str, reason) -> None:
        i = self.first(bad)
        if i is not None:
            raise table.error(reason(i) if callable(reason) else reason, index=i, column=column)

    # ------------------------------------------------------------------ main
    def read(self) -> Instance:
        if not self.folder.is_dir():
            raise InputError("instance folder does not exist or is not a folder", file=str(self.folder))
        gp = self.table("GeneralParam.csv")
        gp.require("StartTime", "EndTime")
        if len(gp) != 1:
            raise InputError(f"must have exactly one data row, has {len(gp)}", file=gp.label, row=2)
        start, end = int(gp.int("StartTime")[0]), int(gp.int("EndTime")[0])
        if start > end:
            raise gp.error(f"StartTime {start} > EndTime {end}", index=0, column="StartTime")
        base = float(gp.float("baseMVA", 1.0)[0])
        if base <= 0:
            raise gp.error("baseMVA must be positive", index=0, column="baseMVA")
        periods = np.arange(start, end + 1)

        buses = self.read_buses()
        branches = self.read_branches(buses, base)
        areas = self.build_areas(buses, branches)
        p_inj, q_inj = self.read_injections(buses, periods)
        orders = self.read_orders(buses, periods)
        inst = Instance(
            name=self.folder.name,
            periods=periods,
            buses=buses,
            branches=branches,
            areas=areas,
            p_inj=p_inj,
            q_inj=q_inj,
            orders=orders,
            source=str(self.folder),
            warnings=self.warnings,
        )
        self.check_orders_vs_areas(inst)
        return inst

    # ------------------------------------------------------------------ network
    def read_buses(self) -> Buses:
        tn = self.table("TransmissionNodes.csv")
        tn.require("ID")
        dn = self.table("DistributionNodes.csv")
        dn.require("ID", "Vsqmin", "Vsqmax")
        t_id, d_id = tn.int("ID"), dn.int("ID")
        tn.unique_key("ID", values=[t_id])
        dn.unique_key("ID", values=[d_id])
        both = np.isin(d_id, t_id)
        self.check(dn, both, "ID", lambda i: f"node {d_id[i]} is also listed in TransmissionNodes.csv")
        ref = tn.flag("RefNode", 0)
        vmin, vmax = dn.float("Vsqmin"), dn.float("Vsqmax")
        none = (vmin == 0) & (vmax == 0)
        self.check(dn, (vmin < 0) | (vmax < 0), "Vsqmin", "voltage bounds must be non-negative")
        self.check(dn, (vmin > vmax), "Vsqmin", lambda i: f"Vsqmin {vmin[i]} > Vsqmax {vmax[i]}")
        vmax = np.where(none, np.inf, vmax)
        g, b = dn.float("G", 0.0), dn.float("B", 0.0)
        nt, nd = len(t_id), len(d_id)
        ids = np.concatenate([t_id, d_id])
        order = np.argsort(ids, kind="stable")  # bus positions sorted by id: lookups are searchsorted
        cat = lambda a, b_: np.concatenate([a, b_])[order]
        self._bus_ids = ids[order]
        self._bus_is_dist = cat(np.zeros(nt, bool), np.ones(nd, bool))
        return Buses(
            id=ids[order],
            is_dist=cat(np.zeros(nt, bool), np.ones(nd, bool)),
            vsq_min=cat(np.zeros(nt), vmin),
            vsq_max=cat(np.full(nt, np.inf), vmax),
            g_shunt=cat(np.zeros(nt), g),
            b_shunt=cat(np.zeros(nt), b),
            is_ref=cat(ref, np.zeros(nd, bool)),
            area=np.zeros(nt + nd, dtype=np.int64),
            is_boundary=np.zeros(nt + nd, bool),
        )

    def bus_pos(self, table: Table, column: str) -> np.ndarray:
        ids = table.int(column)
        pos, found = self.lookup(self._bus_ids, ids)
        self.check(table, ~found, column, lambda i: f"unknown node {ids[i]}")
        return pos

    def read_branches(self, buses: Buses, base: float) -> Branches:
        name = self.options.edges_file
        ed = self.table(name)
        ed.require("ID", "NodeFrom", "NodeTo", "R", "X", "S")
        ids = ed.int("ID")
        ed.unique_key("ID", values=[ids])
        f, t = self.bus_pos(ed, "NodeFrom"), self.bus_pos(ed, "NodeTo")
        self.check(ed, f == t, "NodeTo", "self-loop (NodeFrom == NodeTo)")
        r, x, s = ed.float("R") / base, ed.float("X") / base, ed.float("S")
        bc = ed.float("B", 0.0) * base
        tap = ed.float("Tap", 1.0)
        shift = ed.float("Shift", 0.0)
        self.check(ed, r < 0, "R", lambda i: f"negative resistance {r[i]}")
        self.check(ed, tap < 0, "Tap", lambda i: f"negative tap ratio {tap[i]}")
        tap = np.where(tap == 0, 1.0, tap)
        fd, td = buses.is_dist[f], buses.is_dist[t]
        kind = np.where(
            fd & td, BranchKind.DISTRIBUTION, np.where(~fd & ~td, BranchKind.TRANSMISSION, BranchKind.INTERFACE)
        ).astype(np.int64)
        self.check(
            ed,
            (x < 0) & (kind == BranchKind.DISTRIBUTION),
            "X",
            lambda i: f"negative reactance {x[i]} on a distribution line",
        )
        if self.options.nonpositive_rating_unlimited:
            s = np.where(s < 0, 0.0, s)
        self.check(
            ed,
            s < 0,
            "S",
            lambda i: (
                f"negative rating {s[i]} MVA (use 0 or >= 90000 for "
                "'unrated', or the option nonpositive_rating_unlimited)"
            ),
        )
        rating = np.where((s > 0) & (s < UNRATED_MIN), s, np.inf)
        pq = None
        if self.options.edge_pq_bounds:
            for col in ("Pmin", "Pmax", "Qmin", "Qmax"):
                ed.require(col)
            pq = np.column_stack([ed.float(c) for c in ("Pmin", "Pmax", "Qmin", "Qmax")])
            self.check(ed, (pq[:, 0] > pq[:, 1]) | (pq[:, 2] > pq[:, 3]), "Pmin", "Pmin > Pmax or Qmin > Qmax")
        self._edges = ed
        return Branches(
            id=ids,
            f=f,
            t=t,
            r=r,
            x=x,
            b=bc,
            rating=rating,
            tap=tap,
            shift_deg=shift,
            kind=kind,
            area=np.zeros(len(ids), dtype=np.int64),
            pq_bound=pq,
        )

    def build_areas(self, buses: Buses, br: Branches) -> Areas:
        """DSO areas = connected D components, each hanging from exactly one interface branch."""
        ed = self._edges
        n = len(buses)
        dd = br.kind == BranchKind.DISTRIBUTION
        # reference node: one per connected T component
        tt = br.kind == BranchKind.TRANSMISSION
        ncomp_t, comp_t = connected_components(
            sp.coo_matrix((np.ones(tt.sum()), (br.f[tt], br.t[tt])), shape=(n, n)), directed=False
        )
        t_bus = np.flatnonzero(~buses.is_dist)
        refs_per_comp = np.bincount(comp_t[t_bus[buses.is_ref[t_bus]]], minlength=ncomp_t)
        t_comps = np.unique(comp_t[t_bus])
        if (refs_per_comp[t_comps] == 0).any():
            c = t_comps[refs_per_comp[t_comps] == 0][0]
            example = buses.id[t_bus[comp_t[t_bus] == c][0]]
            raise InputError(
                f"the transmission component containing node {example} has no reference node (RefNode=1)",
                file=self.label("TransmissionNodes.csv"),
                column="RefNode",
            )
        if (refs_per_comp[t_comps] > 1).any():
            c = t_comps[refs_per_comp[t_comps] > 1][0]
            ref_ids = buses.id[t_bus[(comp_t[t_bus] == c) & buses.is_ref[t_bus]]]
            if self.options.reference != "lowest":
                raise InputError(
                    f"several reference nodes in one transmission component: {list(ref_ids)}",
                    file=self.label("TransmissionNodes.csv"),
                    column="RefNode",
                )
            for c in t_comps[refs_per_comp[t_comps] > 1]:
                ids_c = t_bus[(comp_t[t_bus] == c) & buses.is_ref[t_bus]]
                buses.is_ref[ids_c[1:]] = False
                self.warnings.append(f"several reference nodes in one T component; using node {buses.id[ids_c[0]]}")

        ncomp, comp = connected_components(
            sp.coo_matrix((np.ones(dd.sum()), (br.f[dd], br.t[dd])), shape=(n, n)), directed=False
        )
        d_bus = np.flatnonzero(buses.is_dist)
        iface = np.flatnonzero(br.kind == BranchKind.INTERFACE)
        d_end = np.where(buses.is_dist[br.f[iface]], br.f[iface], br.t[iface])
        t_end = np.where(buses.is_dist[br.f[iface]], br.t[iface], br.f[iface])
        iface_comp = comp[d_end]
        n_iface = np.bincount(iface_comp, minlength=ncomp)
        dcomps = np.unique(comp[d_bus])
        if (n_iface[dcomps] == 0).any():
            c = dcomps[n_iface[dcomps] == 0][0]
            example = buses.id[d_bus[comp[d_bus] == c][0]]
            raise InputError(
                f"distribution node {example} is not connected to any transmission node through an interface edge",
                file=self.label("DistributionNodes.csv"),
                column="ID",
            )
        if (n_iface[dcomps] > 1).any():
            c = dcomps[n_iface[dcomps] > 1][0]
            rows = np.flatnonzero(iface_comp == c)
            i = int(iface[rows[1]])
            raise InputError(
                f"distribution area has several interface edges ({', '.join(str(br.id[iface[k]]) for k in rows)}); "
                "tdmarket requires exactly one T-D interface per DSO area",
                file=ed.label,
                row=int(ed.line[i]),
                column="NodeFrom",
            )
        nodes_per = np.bincount(comp[d_bus], minlength=ncomp)
        edges_per = np.bincount(comp[br.f[dd]], minlength=ncomp)
        meshed = edges_per[dcomps] != nodes_per[dcomps] - 1
        if meshed.any():
            c = dcomps[meshed][0]
            i = self.cycle_edge(br, np.flatnonzero(dd & (comp[br.f] == c)), n)
            raise InputError(
                "distribution area is meshed (this edge closes a cycle); tdmarket requires radial distribution areas",
                file=ed.label,
                row=int(ed.line[i]),
                column="NodeFrom",
            )
        # areas in increasing root id; area 0 is the TSO
        order = np.argsort(buses.id[d_end], kind="stable")
        iface, d_end, t_end = iface[order], d_end[order], t_end[order]
        area_of_comp = np.full(ncomp, -1)
        area_of_comp[comp[d_end]] = np.arange(1, len(iface) + 1)
        buses.area[d_bus] = area_of_comp[comp[d_bus]]
        br.area[dd] = buses.area[br.f[dd]]
        br.area[iface] = area_of_comp[comp[d_end]]
        k = len(iface)
        areas = Areas(
            name=["TSO"] + [f"DSO-{buses.id[r]}" for r in d_end],
            parent=np.concatenate([[-1], np.zeros(k, dtype=np.int64)]),
            root_bus=np.concatenate([[-1], d_end]),
            host_bus=np.concatenate([[-1], t_end]),
            interface=np.concatenate([[-1], iface]),
            root_is_from=np.concatenate([[False], br.f[iface] == d_end]),
        )
        sub = self.table("SubAreas.csv", required=False)
        if sub is not None:
            areas = self.split_sub_areas(sub, buses, br, areas)
        return areas

    @staticmethod
    def cycle_edge(br: Branches, edges: np.ndarray, n: int) -> int:
        """First edge (file order) closing a cycle; only called on the error path."""
        parent = np.arange(n)

        def find(a):
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for e in edges:
            a, b = find(br.f[e]), find(br.t[e])
            if a == b:
                return int(e)
            parent[a] = b
        return int(edges[0])

    def split_sub_areas(self, sub: Table, buses: Buses, br: Branches, areas: Areas) -> Areas:
        """tdmarket extension (docs/model.md §6.4): `SubAreas.csv` (Edge, Area) turns the subtree beyond each marked
        D-D edge, seen from its area's root, into a child area named by `Area` (nesting allowed)."""
        sub.require("Edge", "Area")
        edge_ids = sub.int("Edge")
        sub.unique_key("Edge", values=[edge_ids])
        order = np.argsort(br.id)
        pos, found = self.lookup(br.id[order], edge_ids)
        self.check(sub, ~found, "Edge", lambda i: f"unknown edge {edge_ids[i]}")
        e_pos = order[pos]
        self.check(
            sub,
            br.kind[e_pos] != BranchKind.DISTRIBUTION,
            "Edge",
            lambda i: f"edge {edge_ids[i]} is not a distribution (D-D) edge",
        )
        names = sub.cells["Area"]
        n = len(buses)
        # depth of every D bus from its area root over D-D edges (BFS on the whole D forest at once)
        dd = np.flatnonzero(br.kind == BranchKind.DISTRIBUTION)
        graph = sp.coo_matrix((np.ones(len(dd)), (br.f[dd], br.t[dd])), shape=(n, n)).tocsr()
        graph = graph + graph.T
        from scipy.sparse.csgraph import dijkstra

        depth, pred_all, _ = dijkstra(
            graph, indices=areas.root_bus[1:], unweighted=True, min_only=True, return_predecessors=True
        )
        child_end = np.where(depth[br.t[e_pos]] > depth[br.f[e_pos]], br.t[e_pos], br.f[e_pos])
        parent_end = np.where(child_end == br.t[e_pos], br.f[e_pos], br.t[e_pos])
        # process shallow first: deeper marked edges then split the (new) child areas further
        name_l, par_l = list(areas.name), list(areas.parent)
        root_l, host_l, if_l, from_l = (
            list(areas.root_bus),
            list(areas.host_bus),
            list(areas.interface),
            list(areas.root_is_from),
        )
        for k in np.argsort(depth[child_end], kind="stable"):
            root = child_end[k]
            # the subtree below `root`: nodes whose predecessor chain passes through root
            reach = np.zeros(n, bool)
            reach[root] = True
            frontier = np.array([root])
            while len(frontier):
                frontier = np.flatnonzero(np.isin(pred_all, frontier) & ~reach)
                reach[frontier] = True
            subtree = np.flatnonzero(reach)
            new = len(name_l)
            parent_area = int(buses.area[parent_end[k]])
            buses.area[subtree] = new
            inside = np.isin(br.f, subtree) & np.isin(br.t, subtree) & (br.kind == BranchKind.DISTRIBUTION)
            br.area[inside] = new
            br.kind[e_pos[k]] = BranchKind.INTERFACE
            br.area[e_pos[k]] = new
            name_l.append(str(names[k]) or f"DSO-{buses.id[root]}")
            par_l.append(parent_area)
            root_l.append(int(root))
            host_l.append(int(parent_end[k]))
            if_l.append(int(e_pos[k]))
            from_l.append(bool(br.f[e_pos[k]] == root))
        return Areas(
            name=name_l,
            parent=np.array(par_l),
            root_bus=np.array(root_l),
            host_bus=np.array(host_l),
            interface=np.array(if_l),
            root_is_from=np.array(from_l, dtype=bool),
        )

    # ------------------------------------------------------------------ injections
    def read_injections(self, buses: Buses, periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ni = self.table("NetInjections.csv")
        ni.require("Node", "forT", "P", "Q")
        pos = self.bus_pos(ni, "Node")
        per = ni.int("forT")
        self.check(
            ni,
            (per < periods[0]) | (per > periods[-1]),
            "forT",
            lambda i: f"period {per[i]} outside the horizon {periods[0]}..{periods[-1]}",
        )
        ni.unique_key("Node", "forT", values=[ni.int("Node"), per])
        p, q = ni.float("P"), ni.float("Q")
        T = len(periods)
        P = np.zeros((len(buses), T))
        Q = np.zeros((len(buses), T))
        seen = np.zeros((len(buses), T), bool)
        P[pos, per - periods[0]] = p
        Q[pos, per - periods[0]] = q
        seen[pos, per - periods[0]] = True
        if not seen.all():
            b, t = np.argwhere(~seen)[0]
            raise InputError(
                f"no injection row for node {buses.id[b]} in period {periods[t]} "
                f"({int((~seen).sum())} (node, period) pairs missing; give explicit 0 rows)",
                file=ni.label,
                column="Node",
            )
        return P, Q

    # ------------------------------------------------------------------ orders
    def read_orders(self, buses: Buses, periods: np.ndarray) -> OrderBook:
        bd = self.table("Bids.csv")
        bd.require(
            "Node", "QtBids", "QBid", "QBidSeg", "forT", "QuantityLoQ", "QuantityHiQ", "PriceLoQ", "PriceHiQ", "Xlb"
        )
        seg_id = bd.int("QBidSeg")
        bd.unique_key("QBidSeg", values=[seg_id])
        bus = self.bus_pos(bd, "Node")
        qt, qb, per = bd.int("QtBids"), bd.int("QBid"), bd.int("forT")
        self.check(
            bd,
            (per < periods[0]) | (per > periods[-1]),
            "forT",
            lambda i: f"period {per[i]} outside the horizon {periods[0]}..{periods[-1]}",
        )
        lo, hi = bd.float("QuantityLoQ"), bd.float("QuantityHiQ")
        p_lo, p_hi = bd.float("PriceLoQ"), bd.float("PriceHiQ")
        xlb, xub = bd.float("Xlb"), bd.float("Xub", 1.0)
        ok_sign = ((lo >= 0) & (hi >= lo)) | ((hi <= lo) & (lo <= 0))
        self.check(
            bd,
            ~ok_sign,
            "QuantityHiQ",
            lambda i: (
                f"segment {lo[i]}..{hi[i]} MW crosses zero or is reversed (need 0 <= LoQ <= HiQ or HiQ <= LoQ <= 0)"
            ),
        )
        self.check(
            bd,
            p_lo != p_hi,
            "PriceHiQ",
            lambda i: (
                f"price varies within the segment ({p_lo[i]} vs {p_hi[i]}); only constant-price segments are supported"
            ),
        )
        self.check(bd, xub != 1, "Xub", lambda i: f"Xub must be 1, got {xub[i]}")
        self.check(bd, (xlb < 0) | (xlb > 1), "Xlb", lambda i: f"Xlb must be in [0, 1], got {xlb[i]}")

        # bids (QBids): one node, period, QtBid and flag set per QBid
        uq, first, inv = np.unique(qb, return_index=True, return_inverse=True)
        for name, arr in (("Node", bus), ("QtBids", qt), ("forT", per)):
            self.check(
                bd,
                arr != arr[first][inv],
                name,
                lambda i, name=name: f"QBid {qb[i]} has segments with different {name}",
            )
        if bd.has("AlphaOmegaSet"):
            ao_seg = bd.flag("AlphaOmegaSet")
            self.check(bd, ao_seg != ao_seg[first][inv], "AlphaOmegaSet", lambda i: f"flag varies within QBid {qb[i]}")
            ao = ao_seg[first]
        else:
            ao = self.flag_file("AlphaOmegaSet.csv", uq, qt[first], per[first])
        if bd.has("NoNewAct"):
            nna_seg = bd.flag("NoNewAct")
            self.check(bd, nna_seg != nna_seg[first][inv], "NoNewAct", lambda i: f"flag varies within QBid {qb[i]}")
            nna = nna_seg[first]
        else:
            nna = self.flag_file("NoNewAct.csv", uq, qt[first], per[first])
        bad = nna & ~ao
        if bad.any():
            i = int(first[np.flatnonzero(bad)[0]])
            raise bd.error(
                f"QBid {qb[i]} has NoNewAct without AlphaOmegaSet",
                index=i,
                column="NoNewAct" if bd.has("NoNewAct") else "QBid",
            )
        bids = Bids(
            id=uq, qtbid=qt[first], bus=bus[first], period=per[first] - periods[0], alpha_omega=ao, no_new_act=nna
        )
        segments = Segments(id=seg_id, bid=inv.astype(np.int64), lo=lo, hi=hi, price=p_lo, xlb=xlb)
        if (xlb > 0).any() and ((xlb > 0) & (xlb < 1)).any():
            self.warnings.append(
                f"{((xlb > 0) & (xlb < 1)).sum()} segments have a minimum acceptance ratio strictly between 0 and 1"
            )
        qt_bus = pd.Series(bids.bus, index=bids.qtbid)
        self._qt_bus = qt_bus[~qt_bus.index.duplicated()]
        return self.read_conditions(bids, periods)._replace_core(segments, bids)

    def flag_file(self, name: str, qbids: np.ndarray, qtbids: np.ndarray, per: np.ndarray) -> np.ndarray:
        tab = self.table(name, required=False)
        flags = np.zeros(len(qbids), bool)
        if tab is None or len(tab) == 0:
            return flags
        tab.require("QtBids", "QBid")
        q = tab.int("QBid")
        pos, found = self.lookup(qbids, q)
        self.check(tab, ~found, "QBid", lambda i: f"unknown QBid {q[i]}")
        qt = tab.int("QtBids")
        self.check(tab, qtbids[pos] != qt, "QtBids", lambda i: f"QBid {q[i]} belongs to QtBid {qtbids[pos[i]]}")
        flags[pos] = True
        return flags

    def bid_ref(
        self,
        tab: Table,
        qt_col: str,
        qb_col: str,
        bids: Bids,
        period_col: str | None = None,
        periods: np.ndarray | None = None,
    ) -> np.ndarray:
        """Bid positions for a (QtBid, QBid) reference, validated."""
        qb, qt = tab.int(qb_col), tab.int(qt_col)
        pos, found = self.lookup(bids.id, qb)
        self.check(tab, ~found, qb_col, lambda i: f"unknown QBid {qb[i]}")
        self.check(
            tab,
            bids.qtbid[pos] != qt,
            qb_col,
            lambda i: f"QBid {qb[i]} belongs to QtBid {bids.qtbid[pos[i]]}, not {qt[i]}",
        )
        if period_col is not None:
            t = tab.int(period_col)
            self.check(
                tab,
                bids.period[pos] + periods[0] != t,
                period_col,
                lambda i: f"QBid {qb[i]} is in period {bids.period[pos[i]] + periods[0]}, not {t[i]}",
            )
        return pos

    def no_window(self, tab: Table, *cols: str) -> None:
        for c in cols:
            if tab.has(c):
                v = tab.int(c)
                self.check(tab, v != -1, c, lambda i: f"period windows are not supported ({c} must be -1, got {v[i]})")

    def read_conditions(self, bids: Bids, periods: np.ndarray) -> _Conditions:
        known_qt = np.unique(bids.qtbid)
        cond = _Conditions()
        ex = self.table("ExclusiveQtBids.csv", required=False)
        if ex is not None and len(ex):
            ex.require("ID", "QtBid")
            g, q = ex.int("ID"), ex.int("QtBid")
            _, found = self.lookup(known_qt, q)
            self.check(ex, ~found, "QtBid", lambda i: f"unknown QtBid {q[i]} (no order has it)")
            ex.unique_key("ID", "QtBid", values=[g, q])
            cond.exclusive_group, cond.exclusive_qtbid = g, q
        rc = self.table("RampConstraints.csv", required=False)
        if rc is not None and len(rc):
            rc.require("QtBids", "QBid", "RCRealPowerIncr", "RCMin")
            self.no_window(rc, "RCFrom", "RCTo")
            pos = self.bid_ref(rc, "QtBids", "QBid", bids)
            delta, is_min = rc.float("RCRealPowerIncr"), rc.flag("RCMin")
            wrong = (is_min & (delta > 0)) | (~is_min & (delta < 0))
            if wrong.any():
                self.warnings.append(
                    f"{self.label('RampConstraints.csv')}: {int(wrong.sum())} ramp rows have a "
                    "delta of the wrong sign, which forces activation"
                )
            cond.ramp_bid, cond.ramp_delta, cond.ramp_is_min = pos, delta, is_min
            cond.ramp_id = rc.int("RampConstr", 0)
        md = self.table("MinDurationPairs.csv", required=False)
        if md is not None and len(md):
            md.require("QtBids", "QBid1", "QBid2", "Tau", "ForTime")
            b1 = self.bid_ref(md, "QtBids", "QBid1", bids, "Tau", periods)
            b2 = self.bid_ref(md, "QtBids", "QBid2", bids, "ForTime", periods)
            self.check(md, bids.period[b2] < bids.period[b1], "ForTime", "ForTime is before Tau")
            self.check(
                md,
                ~bids.alpha_omega[b1],
                "QBid1",
                lambda i: f"QBid {bids.id[b1[i]]} has a minimum-duration pair but no AlphaOmegaSet flag",
            )
            cond.mindur_bid1, cond.mindur_bid2 = b1, b2
        hp = self.table("HalfPlanes.csv", required=False)
        if hp is not None and len(hp):
            hp.require("QtBid", "QPHPSlope", "QPHPOffset", "QPHPConstr")
            self.no_window(hp, "QPHPFrom", "QPHPTo")
            q = hp.int("QtBid")
            _, found = self.lookup(known_qt, q)
            self.check(hp, ~found, "QtBid", lambda i: f"unknown QtBid {q[i]} (no order has it)")
            slope, off, geq = hp.float("QPHPSlope"), hp.float("QPHPOffset"), hp.flag("QPHPConstr")
            on_d = self._bus_is_dist[self._qt_bus.loc[q].to_numpy()] if len(q) else np.zeros(0, bool)
            if (~on_d).any():
                self.warnings.append(
                    f"{self.label('HalfPlanes.csv')}: {int((~on_d).sum())} rows on transmission "
                    "orders ignored (T has no reactive model)"
                )
            cond.hp_qtbid, cond.hp_slope, cond.hp_offset, cond.hp_geq = q[on_d], slope[on_d], off[on_d], geq[on_d]
        dc = self.table("QPDisc.csv", required=False)
        if dc is not None and len(dc):
            dc.require("QtBid", "QBids", "QPDMax")
            self.no_window(dc, "QPDFrom", "QPDTo")
            pos = self.bid_ref(dc, "QtBid", "QBids", bids)
            r = dc.float("QPDMax")
            self.check(dc, r <= 0, "QPDMax", lambda i: f"disc radius must be positive, got {r[i]}")
            on_d = self._bus_is_dist[bids.bus[pos]]
            if (~on_d).any():
                self.warnings.append(
                    f"{self.label('QPDisc.csv')}: {int((~on_d).sum())} rows on transmission "
                    "orders ignored (T has no reactive model)"
                )
            cond.disc_bid, cond.disc_radius = pos[on_d], r[on_d]
            cond.disc_group = dc.int("QPDCID", 0)[on_d]
        return cond

    def check_orders_vs_areas(self, inst: Instance) -> None:
        b = inst.orders.bids
        area = inst.buses.area[b.bus]
        frame = pd.DataFrame({"qt": b.qtbid, "area": area})
        n_areas = frame.groupby("qt")["area"].nunique()
        if (n_areas > 1).any():
            qt = int(n_areas.index[(n_areas > 1).to_numpy()][0])
            raise InputError(
                f"QtBid {qt} has bids in more than one operator area", file=self.label("Bids.csv"), column="QtBids"
            )


class _Conditions:
    """Order conditions being read (empty defaults)."""

    def __init__(self):
        z_i, z_f, z_b = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
        self.exclusive_group, self.exclusive_qtbid = z_i, z_i
        self.ramp_bid, self.ramp_delta, self.ramp_is_min, self.ramp_id = z_i, z_f, z_b, z_i
        self.mindur_bid1, self.mindur_bid2 = z_i, z_i
        self.hp_qtbid, self.hp_slope, self.hp_offset, self.hp_geq = z_i, z_f, z_f, z_b
        self.disc_bid, self.disc_radius, self.disc_group = z_i, z_f, z_i

    def _replace_core(self, segments: Segments, bids: Bids) -> OrderBook:
        return OrderBook(segments=segments, bids=bids, **vars(self))


def read_instance(folder: str | os.PathLike, options: ReadOptions | None = None, **kw) -> Instance:
    """Read and validate a SmartNet instance folder (docs/model.md §2)."""
    options = options or ReadOptions(**kw)
    reader = _Reader(Path(folder), options)
    return reader.read()


# ====================================================================================================== writer
def _format_column(values: np.ndarray) -> np.ndarray:
    """Strings for one column: integers as integers, floats with full (shortest round-trip) precision."""
    values = np.asarray(values)
    if values.dtype.kind in "US":
        bad = np.char.find(values.astype(str), ",") >= 0
        if bad.any():
            raise ValueError(f"cannot write {values[bad][0]!r}: names must not contain commas")
        return values.astype(str)
    if values.dtype == bool:
        return values.astype(np.int64).astype(str)
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(str)
    values = values.astype(float)
    if not np.isfinite(values).all():
        raise ValueError("cannot write a non-finite number to a SmartNet file")
    return values.astype(str)  # numpy's float -> str is the shortest repr that round-trips exactly


def _write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """One CSV file with LF line endings (header-only if the columns are empty)."""
    cells = [_format_column(v) for v in columns.values()]
    lines = [",".join(columns)]
    lines.extend(map(",".join, zip(*cells)))
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")


def _instance_files(inst: Instance) -> dict[str, dict[str, np.ndarray]]:
    """File name -> columns of the canonical SmartNet files for the non-boundary part of `inst`."""
    bu, br = inst.buses, inst.branches
    keep = ~bu.is_boundary
    t_pos = np.flatnonzero(keep & ~bu.is_dist)
    d_pos = np.flatnonzero(keep & bu.is_dist)
    files: dict[str, dict[str, np.ndarray]] = {}
    p0 = int(inst.periods[0])
    files["GeneralParam.csv"] = {
        "StartTime": np.array([p0]),
        "EndTime": np.array([int(inst.periods[-1])]),
        "baseMVA": np.array([1]),
    }
    files["TransmissionNodes.csv"] = {"ID": bu.id[t_pos], "RefNode": bu.is_ref[t_pos]}
    vmin, vmax = bu.vsq_min[d_pos], bu.vsq_max[d_pos]
    unbounded = ~np.isfinite(vmax)
    bad = unbounded & (vmin != 0)
    if bad.any():
        raise ValueError(
            f"bus {bu.id[d_pos[np.flatnonzero(bad)[0]]]}: a lower voltage bound without an upper "
            "bound cannot be written in the SmartNet format"
        )
    files["DistributionNodes.csv"] = {
        "ID": bu.id[d_pos],
        "Vsqmin": np.where(unbounded, 0.0, vmin),
        "Vsqmax": np.where(unbounded, 0.0, vmax),
        "G": bu.g_shunt[d_pos],
        "B": bu.b_shunt[d_pos],
    }

    e_pos = np.flatnonzero(keep[br.f] & keep[br.t])
    edges = {
        "ID": br.id[e_pos],
        "NodeFrom": bu.id[br.f[e_pos]],
        "NodeTo": bu.id[br.t[e_pos]],
        "R": br.r[e_pos],
        "X": br.x[e_pos],
        "B": br.b[e_pos],
        "S": np.where(np.isfinite(br.rating[e_pos]), br.rating[e_pos], 0.0),
        "Tap": br.tap[e_pos],
        "Shift": br.shift_deg[e_pos],
    }
    if br.pq_bound is not None:
        for j, col in enumerate(("Pmin", "Pmax", "Qmin", "Qmax")):
            edges[col] = br.pq_bound[e_pos, j]
    files["Edges.csv"] = edges

    T = inst.n_periods
    own = np.flatnonzero(keep)
    files["NetInjections.csv"] = {
        "Node": np.repeat(bu.id[own], T),
        "forT": np.tile(inst.periods, len(own)),
        "P": inst.p_inj[own].ravel(),
        "Q": inst.q_inj[own].ravel(),
    }

    o = inst.orders if keep.all() else inst.orders.subset_by_bus(keep, np.arange(len(bu)))
    s, b = o.segments, o.bids
    files["Bids.csv"] = {
        "Node": bu.id[b.bus[s.bid]],
        "QtBids": b.qtbid[s.bid],
        "QBid": b.id[s.bid],
        "QBidSeg": s.id,
        "forT": b.period[s.bid] + p0,
        "QuantityLoQ": s.lo,
        "PriceLoQ": s.price,
        "QuantityHiQ": s.hi,
        "PriceHiQ": s.price,
        "Xlb": s.xlb,
        "Xub": np.ones(len(s), np.int64),
        "AlphaOmegaSet": b.alpha_omega[s.bid],
        "NoNewAct": b.no_new_act[s.bid],
    }
    files["ExclusiveQtBids.csv"] = {"ID": o.exclusive_group, "QtBid": o.exclusive_qtbid}
    minus1 = lambda k: np.full(k, -1, np.int64)
    files["RampConstraints.csv"] = {
        "QtBids": b.qtbid[o.ramp_bid],
        "QBid": b.id[o.ramp_bid],
        "RampConstr": o.ramp_id,
        "RCFrom": minus1(len(o.ramp_bid)),
        "RCTo": minus1(len(o.ramp_bid)),
        "RCRealPowerIncr": o.ramp_delta,
        "RCMin": o.ramp_is_min,
    }
    files["MinDurationPairs.csv"] = {
        "QtBids": b.qtbid[o.mindur_bid1],
        "QBid1": b.id[o.mindur_bid1],
        "QBid2": b.id[o.mindur_bid2],
        "Tau": b.period[o.mindur_bid1] + p0,
        "ForTime": b.period[o.mindur_bid2] + p0,
    }
    k = len(o.hp_qtbid)
    files["HalfPlanes.csv"] = {
        "ID": np.arange(1, k + 1),
        "QtBid": o.hp_qtbid,
        "QPHPFrom": minus1(k),
        "QPHPTo": minus1(k),
        "QPHPSlope": o.hp_slope,
        "QPHPOffset": o.hp_offset,
        "QPHPConstr": o.hp_geq,
    }
    k = len(o.disc_bid)
    files["QPDisc.csv"] = {
        "QtBid": b.qtbid[o.disc_bid],
        "QBids": b.id[o.disc_bid],
        "QPDCID": o.disc_group,
        "QPDFrom": minus1(k),
        "QPDTo": minus1(k),
        "QPDMax": o.disc_radius,
    }

    # nested DSO areas: interface edges between two distribution buses (tdmarket extension, docs/model.md §6.4)
    ar = inst.areas
    sub = [
        a
        for a in range(len(ar))
        if ar.interface[a] >= 0
        and bu.is_dist[br.f[ar.interface[a]]]
        and bu.is_dist[br.t[ar.interface[a]]]
        and keep[br.f[ar.interface[a]]]
        and keep[br.t[ar.interface[a]]]
    ]
    if sub:
        files["SubAreas.csv"] = {"Edge": br.id[ar.interface[sub]], "Area": np.array([ar.name[a] for a in sub])}
    return files


def write_instance(inst: Instance, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `inst` as a canonical SmartNet folder that `read_instance` reads back identically.

    Canonical means: LF line endings, `baseMVA` 1, flags as `Bids` columns (no flag files), every optional
    file present (header-only when empty), full float precision, unrated lines and unbounded voltages as 0,
    and `SubAreas.csv` only for nested DSO areas.  Boundary buses (`is_boundary`) and everything attached
    to them are left out.

    The folder is written atomically: files go to a temporary sibling folder that is renamed into place,
    so a reader never sees a half-written instance.  An existing empty folder is replaced; an existing
    non-empty one only with `overwrite=True`.
    """
    target = Path(folder)
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a folder")
        if any(target.iterdir()) and not overwrite:
            raise FileExistsError(f"{target} exists and is not empty (use overwrite=True)")
    files = _instance_files(inst)  # build everything before touching the disk
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for name, columns in files.items():
            _write_csv(tmp / name, columns)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / target.name, target)  # put the previous folder back
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
