"""Layout of one distribution feeder (a DSO area: a tree) for a single-line diagram.

The T bus the area hangs from is the root at depth 0; every bus sits one level below its parent.  Leaves are
placed at consecutive horizontal positions in depth-first order and every other bus at the mean of its
children, so no two branches cross.  Graph traversal by `scipy.sparse.csgraph`, the rest with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, depth_first_order


@dataclass
class FeederLayout:
    """Positions of the buses and the branches of one feeder."""

    area: str
    bus_ids: np.ndarray  # file ids; position 0 is the T bus the area hangs from
    x: np.ndarray  # horizontal position of every bus
    depth: np.ndarray  # branches from the T bus (0 = the T bus)
    edge_ids: np.ndarray  # file ids of the branches (the interface first)
    edge_from: np.ndarray  # bus position of the upstream end of every branch
    edge_to: np.ndarray  # bus position of the downstream end

    @property
    def n_buses(self) -> int:
        return len(self.bus_ids)


def feeder_layout(inst, area: int) -> FeederLayout:
    """The layout of DSO area `area` (index into `inst.areas`), with its host T bus on top."""
    bu, br, ar = inst.buses, inst.branches, inst.areas
    host = int(ar.host_bus[area])
    own = np.flatnonzero(bu.area == area)
    nodes = np.concatenate([[host], own[own != host]])
    position = np.full(len(bu.id), -1)
    position[nodes] = np.arange(len(nodes))
    inside = (
        (position[br.f] >= 0)
        & (position[br.t] >= 0)
        & ((br.area == area) | (np.arange(len(br.id)) == ar.interface[area]))
    )
    edges = np.flatnonzero(inside)
    a, b = position[br.f[edges]], position[br.t[edges]]
    n = len(nodes)
    graph = coo_matrix((np.ones(2 * len(edges)), (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
    bfs, parent = breadth_first_order(graph, 0, directed=False, return_predecessors=True)
    depth = np.zeros(n, np.int64)
    for v in bfs[1:]:  # BFS order: the parent's depth is known
        depth[v] = depth[parent[v]] + 1
    dfs = depth_first_order(graph, 0, directed=False, return_predecessors=False)
    has_child = np.zeros(n, bool)
    has_child[parent[parent >= 0]] = True
    x = np.full(n, np.nan)
    leaves = dfs[~has_child[dfs]]
    x[leaves] = np.arange(len(leaves), dtype=float)
    for level in range(int(depth.max()), 0, -1):  # children's mean, deepest level first
        kids = np.flatnonzero((depth == level) & (parent >= 0))
        sums = np.zeros(n)
        counts = np.zeros(n)
        np.add.at(sums, parent[kids], x[kids])
        np.add.at(counts, parent[kids], 1.0)
        ready = counts > 0
        x[ready] = sums[ready] / counts[ready]
    upstream_is_a = depth[a] < depth[b]
    order = np.argsort(np.where(edges == ar.interface[area], -1, edges), kind="stable")  # interface first
    return FeederLayout(
        area=ar.name[area],
        bus_ids=bu.id[nodes],
        x=np.nan_to_num(x),
        depth=depth,
        edge_ids=br.id[edges][order],
        edge_from=np.where(upstream_is_a, a, b)[order],
        edge_to=np.where(upstream_is_a, b, a)[order],
    )
