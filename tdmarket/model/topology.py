"""Network topology of a read instance: branch kinds, reference nodes, operator areas and the area tree.

`build_topology(inst, splits)` is the pass every reader's output goes through (`tdmarket.io.read`):

* branch kinds from the bus classes (T–T, D–D, T–D interface); self-loops are rejected;
* one angle reference per connected transmission component (`reference="lowest"` keeps the lowest id);
* DSO areas = the connected components of the D–D edges; each must be radial and hang from exactly one T–D
  interface branch (the hierarchical scheme needs one exchange point per DSO); areas are numbered by
  increasing root id, area 0 is the TSO;
* optional sub-areas (`AreaSplits`, e.g. from `SubAreas.csv`, docs/model.md §6.4): the subtree beyond each marked
  D–D edge, seen from its area's root, becomes a child area (nesting allowed).

Errors are `InputError`s located through the instance's provenance.  The area-tree helpers (`top_level`,
`area_depth`, `subtree_mask`) work on a `parent` array by pointer jumping (log-depth numpy steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from .arrays import lookup
from .instance import Areas, Branches, BranchKind, Buses, Instance
from .provenance import Origin, Provenance


@dataclass
class AreaSplits:
    """Where to split DSO areas: D–D branch ids and the child areas' names ("" = `DSO-<root id>`)."""

    edge: np.ndarray
    name: list[str] = field(default_factory=list)


def build_topology(inst: Instance, splits: AreaSplits | None = None, *, reference: str = "error") -> Instance:
    """Set branch kinds, reference nodes, bus/branch areas and `inst.areas` in place; warnings are appended."""
    bu, br, prov = inst.buses, inst.branches, inst.provenance
    br.kind = branch_kinds(bu.is_dist, br.f, br.t)
    prov["branches"].check(br.f == br.t, "t", "self-loop (NodeFrom == NodeTo)")
    inst.warnings.extend(reference_nodes(bu, br, prov["buses"], reference))
    areas = operator_areas(bu, br, prov)
    if splits is not None:
        areas = split_sub_areas(bu, br, areas, splits, prov["sub_areas"])
    inst.areas = areas
    return inst


def branch_kinds(is_dist: np.ndarray, f: np.ndarray, t: np.ndarray) -> np.ndarray:
    fd, td = is_dist[f], is_dist[t]
    return np.where(
        fd & td, BranchKind.DISTRIBUTION, np.where(~fd & ~td, BranchKind.TRANSMISSION, BranchKind.INTERFACE)
    ).astype(np.int64)


def _graph(n: int, f: np.ndarray, t: np.ndarray) -> sp.coo_matrix:
    return sp.coo_matrix((np.ones(len(f)), (f, t)), shape=(n, n))


def _components(n: int, f: np.ndarray, t: np.ndarray) -> tuple[int, np.ndarray]:
    return connected_components(_graph(n, f, t), directed=False)


def _first(origin: Origin, mask: np.ndarray) -> int:
    """Position of the flagged row that comes first in the input; `mask` flags at least one row."""
    pos = origin.first(mask)
    assert pos is not None
    return pos


def reference_nodes(buses: Buses, br: Branches, origin: Origin, mode: str = "error") -> list[str]:
    """Check one reference node per connected T component; with `mode="lowest"` keep the lowest of several."""
    tt = br.kind == BranchKind.TRANSMISSION
    ncomp, comp = _components(len(buses), br.f[tt], br.t[tt])
    t_bus = np.flatnonzero(~buses.is_dist)
    refs_per_comp = np.bincount(comp[t_bus[buses.is_ref[t_bus]]], minlength=ncomp)
    t_comps = np.unique(comp[t_bus])
    if (refs_per_comp[t_comps] == 0).any():
        c = t_comps[refs_per_comp[t_comps] == 0][0]
        pos = _first(origin, ~buses.is_dist & (comp == c))  # its node that comes first in the file
        raise origin.error(
            f"the transmission component containing node {int(buses.id[pos])} has no reference node (RefNode=1)",
            index=pos,
            role="is_ref",
        )
    if not (refs_per_comp[t_comps] > 1).any():
        return []
    if mode != "lowest":
        c = t_comps[refs_per_comp[t_comps] > 1][0]
        in_c = ~buses.is_dist & buses.is_ref & (comp == c)
        ref_ids = ", ".join(str(int(v)) for v in buses.id[in_c])
        first_pos = _first(origin, in_c)
        second = _first(origin, in_c & (np.arange(len(buses)) != first_pos))
        raise origin.error(
            f"several reference nodes in one transmission component: {ref_ids} (use reference='lowest' to keep "
            "the lowest id)",
            index=second,
            role="is_ref",
        )
    ref = np.flatnonzero(buses.is_ref & ~buses.is_dist)  # ascending position = ascending id
    comps, first = np.unique(comp[ref], return_index=True)
    drop = np.ones(len(ref), bool)
    drop[first] = False
    buses.is_ref[ref[drop]] = False
    return [
        f"several reference nodes in one T component; using node {buses.id[ref[k]]}"
        for c, k in zip(comps, first)
        if refs_per_comp[c] > 1
    ]


def operator_areas(buses: Buses, br: Branches, prov: Provenance) -> Areas:
    """DSO areas = connected D components, each radial and hanging from exactly one interface branch."""
    n = len(buses)
    dd = br.kind == BranchKind.DISTRIBUTION
    ncomp, comp = _components(n, br.f[dd], br.t[dd])
    d_bus = np.flatnonzero(buses.is_dist)
    iface = np.flatnonzero(br.kind == BranchKind.INTERFACE)
    d_end = np.where(buses.is_dist[br.f[iface]], br.f[iface], br.t[iface])
    t_end = np.where(buses.is_dist[br.f[iface]], br.t[iface], br.f[iface])
    iface_comp = comp[d_end]
    n_iface = np.bincount(iface_comp, minlength=ncomp)
    dcomps = np.unique(comp[d_bus])
    edges = prov["branches"]
    if (n_iface[dcomps] == 0).any():
        c = dcomps[n_iface[dcomps] == 0][0]
        nodes = prov["buses"]
        pos = _first(nodes, buses.is_dist & (comp == c))  # its node that comes first in the file
        raise nodes.error(
            f"distribution node {int(buses.id[pos])} is not connected to any transmission node through an "
            "interface edge",
            index=pos,
            role="id",
        )
    if (n_iface[dcomps] > 1).any():
        c = dcomps[n_iface[dcomps] > 1][0]
        rows = np.flatnonzero(iface_comp == c)
        raise edges.error(
            f"distribution area has several interface edges ({', '.join(str(br.id[iface[k]]) for k in rows)}); "
            "tdmarket requires exactly one T-D interface per DSO area",
            index=int(iface[rows[1]]),
            role="f",
        )
    nodes_per = np.bincount(comp[d_bus], minlength=ncomp)
    edges_per = np.bincount(comp[br.f[dd]], minlength=ncomp)
    meshed = edges_per[dcomps] != nodes_per[dcomps] - 1
    if meshed.any():
        c = dcomps[meshed][0]
        i = cycle_edge(br.f, br.t, np.flatnonzero(dd & (comp[br.f] == c)), n)
        raise edges.error(
            "distribution area is meshed (this edge closes a cycle); tdmarket requires radial distribution areas",
            index=i,
            role="f",
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
    return Areas(
        name=["TSO"] + [f"DSO-{buses.id[r]}" for r in d_end],
        parent=np.concatenate([[-1], np.zeros(k, dtype=np.int64)]),
        root_bus=np.concatenate([[-1], d_end]),
        host_bus=np.concatenate([[-1], t_end]),
        interface=np.concatenate([[-1], iface]),
        root_is_from=np.concatenate([[False], br.f[iface] == d_end]),
    )


def cycle_edge(f: np.ndarray, t: np.ndarray, edges: np.ndarray, n: int) -> int:
    """First of `edges` (in the given order) that closes a cycle with the edges before it.

    A graph with k edges on n nodes is a forest iff k == n - (number of components), so the shortest cycle-
    containing prefix is found by bisection over prefixes (a few connected-components runs, no edge loop)."""

    def has_cycle(k: int) -> bool:
        e = edges[:k]
        return k > n - _components(n, f[e], t[e])[0]

    if len(edges) == 0 or not has_cycle(len(edges)):
        return int(edges[0]) if len(edges) else -1
    lo, hi = 1, len(edges)
    while lo < hi:
        mid = (lo + hi) // 2
        if has_cycle(mid):
            hi = mid
        else:
            lo = mid + 1
    return int(edges[lo - 1])


def split_sub_areas(buses: Buses, br: Branches, areas: Areas, splits: AreaSplits, origin: Origin) -> Areas:
    """Turn the subtree beyond each marked D–D edge (seen from its area's root) into a child area.

    Shallow edges are numbered first, so a deeper marked edge splits the (new) child area further.  Every D bus
    ends up in the area of its nearest marked ancestor, found by pointer jumping on the shortest-path tree."""
    edge_ids = np.asarray(splits.edge, dtype=np.int64)
    order = np.argsort(br.id)
    pos, found = lookup(br.id[order], edge_ids)
    origin.check(~found, "edge", lambda i: f"unknown edge {edge_ids[i]}")
    e_pos = order[pos]
    origin.check(
        br.kind[e_pos] != BranchKind.DISTRIBUTION,
        "edge",
        lambda i: f"edge {br.id[e_pos[i]]} is not a distribution (D-D) edge",
    )
    if len(e_pos) == 0:
        return areas
    n = len(buses)
    dd = np.flatnonzero(br.kind == BranchKind.DISTRIBUTION)
    graph = _graph(n, br.f[dd], br.t[dd]).tocsr()
    depth, pred, _ = dijkstra(
        graph + graph.T, indices=areas.root_bus[1:], unweighted=True, min_only=True, return_predecessors=True
    )
    f, t = br.f[e_pos], br.t[e_pos]
    child = np.where(depth[t] > depth[f], t, f)
    host = np.where(child == t, f, t)
    order = np.argsort(depth[child], kind="stable")
    e_pos, child, host = e_pos[order], child[order], host[order]
    new = len(areas) + np.arange(len(e_pos))
    label = np.full(n, -1)
    label[child] = new
    up = np.where(pred < 0, np.arange(n), pred)  # area roots and T buses point at themselves
    up[child] = child  # ... and so do the new roots
    anchor = _roots(up)
    buses.area[:] = np.where(label[anchor] >= 0, label[anchor], buses.area)
    br.area[dd] = buses.area[br.f[dd]]
    br.kind[e_pos] = BranchKind.INTERFACE
    br.area[e_pos] = new
    names = [str(splits.name[k]) or f"DSO-{int(buses.id[r])}" for k, r in zip(order, child)]
    _check_area_names(areas, names, order, buses, origin)
    return Areas(
        name=list(areas.name) + names,
        parent=np.concatenate([areas.parent, buses.area[host]]),
        root_bus=np.concatenate([areas.root_bus, child]),
        host_bus=np.concatenate([areas.host_bus, host]),
        interface=np.concatenate([areas.interface, e_pos]),
        root_is_from=np.concatenate([areas.root_is_from, br.f[e_pos] == child]),
    )


def _check_area_names(areas: Areas, names: list[str], rows: np.ndarray, buses: Buses, origin: Origin) -> None:
    """The new areas' names (`names[m]` from row `rows[m]` of the splits) are new and distinct: the schemes
    address operators by name."""
    by_row = np.empty(len(names), dtype=object)
    by_row[rows] = names
    taken = list(areas.name)
    clash = np.isin(by_row, np.array(taken, dtype=object))
    first = origin.first_of_groups(by_row.astype(str))
    repeated = first != np.arange(len(by_row))

    def reason(i: int) -> str:
        name = by_row[i]
        if name in taken:
            a = taken.index(name)
            owner = "the TSO" if a == 0 else f"the DSO area rooted at node {int(buses.id[areas.root_bus[a]])}"
            return f"area name {name!r} is already the name of {owner}"
        where = origin.error("", index=int(first[i])).row
        return f"area name {name!r} is given twice" + (f" (first at row {where})" if where else "")

    origin.check(clash | repeated, "area", reason)


# ---------------------------------------------------------------------------------------------- area tree
_MAX_JUMPS = 64  # pointer jumping halves the remaining depth per step: 64 steps cover any tree


def _roots(up: np.ndarray) -> np.ndarray:
    """Follow `up` pointers (roots point at themselves) to the root of every element, by pointer jumping."""
    for _ in range(_MAX_JUMPS):
        nxt = up[up]
        if np.array_equal(nxt, up):
            return up
        up = nxt
    raise ValueError("the parent pointers contain a cycle")


def _up(parent: np.ndarray) -> np.ndarray:
    parent = np.asarray(parent)
    return np.where(parent >= 0, parent, np.arange(len(parent)))


def top_level(parent: np.ndarray) -> np.ndarray:
    """For every area, its ancestor directly below the TSO (itself for top-level DSOs; itself for the root)."""
    parent = np.asarray(parent)
    return _roots(np.where(parent <= 0, np.arange(len(parent)), parent))


def area_depth(parent: np.ndarray) -> np.ndarray:
    """Number of levels between every area and the root of the tree (0 for the root)."""
    up = _up(parent)
    d = (np.asarray(parent) >= 0).astype(int)
    for _ in range(_MAX_JUMPS):
        nxt = up[up]
        if np.array_equal(nxt, up):
            return d
        d = d + d[up]
        up = nxt
    raise ValueError("the parent pointers contain a cycle")


def subtree_mask(parent: np.ndarray, a: int) -> np.ndarray:
    """Areas whose ancestors (or themselves) include area `a`."""
    up = _up(parent)
    hit = np.arange(len(up)) == a
    for _ in range(_MAX_JUMPS):
        hit = hit | hit[up]
        nxt = up[up]
        if np.array_equal(nxt, up):
            return hit
        up = nxt
    raise ValueError("the parent pointers contain a cycle")
