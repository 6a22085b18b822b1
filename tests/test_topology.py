"""Topology pass and format-neutral checks on hand-built instances (no files involved).

`network(...)` builds an `Instance` straight from bus and edge lists, optionally with a provenance record, so
that `build_topology` / `validate` are exercised exactly as a second input format would use them.
"""

from __future__ import annotations

import numpy as np
import pytest

from tdmarket.errors import InputError
from tdmarket.model.arrays import dense, node_period_array
from tdmarket.model.instance import Areas, Bids, Branches, BranchKind, Buses, Instance, OrderBook, Segments
from tdmarket.model.provenance import Origin, Provenance
from tdmarket.model.topology import (
    AreaSplits,
    area_depth,
    build_topology,
    cycle_edge,
    subtree_mask,
    top_level,
)
from tdmarket.model.validate import validate


def network(t_ids, d_ids, edges, *, refs=None, with_origin=True) -> Instance:
    """T and D bus ids, edges as (id, from id, to id); RefNode on the first T bus unless `refs` is given.

    With `with_origin`, edge k is recorded as row k + 2 of "case/Edges.csv" and the buses as rows of the two
    node files (T first), as the SmartNet reader would."""
    ids = np.array(list(t_ids) + list(d_ids), dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    nt, nd = len(t_ids), len(d_ids)
    is_dist = np.concatenate([np.zeros(nt, bool), np.ones(nd, bool)])[order]
    refs = {t_ids[0]} if refs is None else set(refs)
    n = nt + nd
    buses = Buses(
        id=ids[order],
        is_dist=is_dist,
        vsq_min=np.zeros(n),
        vsq_max=np.full(n, np.inf),
        g_shunt=np.zeros(n),
        b_shunt=np.zeros(n),
        is_ref=np.isin(ids[order], list(refs)),
        area=np.zeros(n, np.int64),
        is_boundary=np.zeros(n, bool),
    )
    m = len(edges)
    pos = {int(b): k for k, b in enumerate(buses.id)}
    branches = Branches(
        id=np.array([e[0] for e in edges], dtype=np.int64),
        f=np.array([pos[e[1]] for e in edges], dtype=np.int64),
        t=np.array([pos[e[2]] for e in edges], dtype=np.int64),
        r=np.full(m, 0.01),
        x=np.full(m, 0.1),
        b=np.zeros(m),
        rating=np.full(m, np.inf),
        tap=np.ones(m),
        shift_deg=np.zeros(m),
        kind=np.zeros(m, np.int64),
        area=np.zeros(m, np.int64),
    )
    z_i = np.zeros(0, np.int64)
    bids = Bids(z_i, z_i, z_i, z_i, np.zeros(0, bool), np.zeros(0, bool))
    orders = OrderBook.without_conditions(Segments(z_i, z_i, np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)), bids)
    prov = Provenance()
    if with_origin:
        rows = np.concatenate([np.arange(2, nt + 2), np.arange(2, nd + 2)])[order]
        part = np.concatenate([np.zeros(nt, np.int64), np.ones(nd, np.int64)])[order]
        prov["buses"] = Origin(["case/T.csv", "case/D.csv"], rows, part, {"id": "ID", "is_ref": "RefNode"})
        prov["branches"] = Origin(["case/Edges.csv"], np.arange(2, m + 2), columns={"f": "NodeFrom", "t": "NodeTo"})
    return Instance(
        name="hand-built",
        periods=np.array([1]),
        buses=buses,
        branches=branches,
        areas=Areas.tso_only(),
        p_inj=np.zeros((n, 1)),
        q_inj=np.zeros((n, 1)),
        orders=orders,
        provenance=prov,
    )


def bus_areas(inst) -> dict[int, int]:
    return dict(zip(inst.buses.id.tolist(), inst.buses.area.tolist()))


# ------------------------------------------------------------------------------------------- operator areas
def test_two_radial_areas_are_numbered_by_root_id():
    inst = build_topology(network([1], [5, 6, 2, 3], [(1, 1, 5), (2, 5, 6), (3, 2, 1), (4, 2, 3)]))
    assert inst.areas.name == ["TSO", "DSO-2", "DSO-5"]
    assert bus_areas(inst) == {1: 0, 2: 1, 3: 1, 5: 2, 6: 2}
    assert list(inst.branches.kind) == [BranchKind.INTERFACE, BranchKind.DISTRIBUTION] * 2
    assert list(inst.branches.area) == [2, 2, 1, 1]  # interfaces belong to their child area
    assert list(inst.areas.interface) == [-1, 2, 0] and list(inst.areas.root_is_from) == [False, True, False]


def test_meshed_area_is_rejected_at_the_edge_closing_the_cycle():
    edges = [(1, 1, 2), (2, 2, 3), (3, 3, 4), (4, 4, 5), (5, 5, 3), (6, 4, 2)]  # 5 closes 3-4-5
    with pytest.raises(InputError, match="meshed") as info:
        build_topology(network([1], [2, 3, 4, 5], edges))
    err = info.value
    assert (err.file, err.row, err.column) == ("case/Edges.csv", 6, "NodeFrom")


def test_parallel_lines_make_an_area_meshed():
    with pytest.raises(InputError, match="meshed") as info:
        build_topology(network([1], [2, 3], [(1, 1, 2), (2, 2, 3), (3, 3, 2)]))
    assert info.value.row == 4


def test_two_interfaces_are_rejected():
    with pytest.raises(InputError, match=r"several interface edges \(7, 9\)") as info:
        build_topology(network([1], [2, 3], [(7, 1, 2), (8, 2, 3), (9, 3, 1)]))
    assert (info.value.row, info.value.column) == (4, "NodeFrom")  # the second interface


def test_island_without_interface_is_rejected():
    with pytest.raises(InputError, match="distribution node 4 is not connected") as info:
        build_topology(network([1], [2, 3, 4], [(1, 1, 2), (2, 2, 3)]))
    assert (info.value.file, info.value.row, info.value.column) == (
        "case/D.csv",
        4,
        "ID",
    )  # the node's own row (issue 14)


def test_self_loop_is_rejected_before_the_mesh_check():
    with pytest.raises(InputError, match="self-loop") as info:
        build_topology(network([1], [2, 3], [(1, 1, 2), (2, 3, 3)]))
    assert (info.value.row, info.value.column) == (3, "NodeTo")


def test_reference_nodes_per_transmission_component():
    with pytest.raises(InputError, match="no reference node") as info:
        build_topology(network([1, 9], [], [], refs=[1]))  # 9 is its own T component
    assert (info.value.file, info.value.column) == ("case/T.csv", "RefNode")
    edges = [(1, 1, 9)]
    with pytest.raises(InputError, match="several reference nodes"):
        build_topology(network([9, 1], [], edges, refs=[1, 9]))
    inst = build_topology(network([9, 1], [], edges, refs=[1, 9]), reference="lowest")
    assert inst.buses.is_ref.tolist() == [True, False]
    assert inst.warnings == ["several reference nodes in one T component; using node 1"]


def test_errors_without_provenance_have_no_file():
    with pytest.raises(InputError, match="meshed") as info:
        build_topology(network([1], [2, 3], [(1, 1, 2), (2, 2, 3), (3, 3, 2)], with_origin=False))
    assert (info.value.file, info.value.row, info.value.column) == (None, None, "f")


# ------------------------------------------------------------------------------------------- sub-areas
FEEDER = [(1, 1, 2), (2, 2, 3), (3, 3, 4), (4, 5, 4), (5, 3, 6)]  # T1 - 2 - 3 - 4 - 5, branch 3 - 6


def test_sub_area_split_at_a_distribution_edge():
    inst = build_topology(network([1], [2, 3, 4, 5, 6], FEEDER), AreaSplits(np.array([3]), ["tail"]))
    ar = inst.areas
    assert ar.name == ["TSO", "DSO-2", "tail"] and list(ar.parent) == [-1, 0, 1]
    assert bus_areas(inst) == {1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 1}
    assert inst.branches.kind[2] == BranchKind.INTERFACE and list(inst.branches.area) == [1, 1, 2, 2, 1]
    assert inst.buses.id[ar.root_bus[2]] == 4 and inst.buses.id[ar.host_bus[2]] == 3


def test_nested_splits_are_numbered_shallow_first():
    splits = AreaSplits(np.array([4, 2]), ["", "mid"])  # deeper edge first; unnamed -> DSO-<root id>
    inst = build_topology(network([1], [2, 3, 4, 5, 6], FEEDER), splits)
    assert inst.areas.name == ["TSO", "DSO-2", "mid", "DSO-5"]
    assert list(inst.areas.parent) == [-1, 0, 1, 2]
    assert bus_areas(inst) == {1: 0, 2: 1, 3: 2, 4: 2, 5: 3, 6: 2}
    assert list(area_depth(inst.areas.parent)) == [0, 1, 2, 3]


def test_split_needs_a_known_distribution_edge():
    origin = Origin(["case/SubAreas.csv"], np.array([2, 3]), columns={"edge": "Edge"})

    def split(*edge_ids):
        inst = network([1], [2, 3, 4, 5, 6], FEEDER)
        inst.provenance["sub_areas"] = origin
        return build_topology(inst, AreaSplits(np.array(edge_ids), ["a"] * len(edge_ids)))

    with pytest.raises(InputError, match="unknown edge 77") as info:
        split(3, 77)
    assert (info.value.row, info.value.column) == (3, "Edge")
    with pytest.raises(InputError, match=r"edge 1 is not a distribution \(D-D\) edge"):
        split(1)


# ------------------------------------------------------------------------------------------- graph helpers
def _cycle_edge_by_union_find(f, t, edges, n):
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for e in edges:
        a, b = find(f[e]), find(t[e])
        if a == b:
            return int(e)
        parent[a] = b
    return None


@pytest.mark.parametrize("seed", range(20))
def test_cycle_edge_matches_union_find(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(3, 12)), int(rng.integers(2, 16))
    f, t = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = np.flatnonzero(f != t)
    expected = _cycle_edge_by_union_find(f, t, keep, n)
    if expected is not None:
        assert cycle_edge(f, t, keep, n) == expected


def _random_tree(rng, n):
    """Parent array with -1 at a random root; children may precede parents."""
    perm = rng.permutation(n)
    parent = np.full(n, -1)
    for k in range(1, n):
        parent[perm[k]] = perm[rng.integers(0, k)]
    return parent


@pytest.mark.parametrize("seed", range(10))
def test_area_tree_helpers_match_walking_up(seed):
    rng = np.random.default_rng(seed)
    parent = _random_tree(rng, int(rng.integers(1, 30)))

    def chain(a):
        out = [a]
        while parent[out[-1]] >= 0:
            out.append(int(parent[out[-1]]))
        return out

    assert list(area_depth(parent)) == [len(chain(a)) - 1 for a in range(len(parent))]
    root = int(np.flatnonzero(parent < 0)[0])
    top = [a if parent[a] <= 0 or a == root else chain(a)[-2] for a in range(len(parent))]
    if root == 0:  # top_level is defined for trees rooted at area 0 (the TSO)
        assert list(top_level(parent)) == top
    a = int(rng.integers(0, len(parent)))
    assert list(np.flatnonzero(subtree_mask(parent, a))) == [b for b in range(len(parent)) if a in chain(b)]


# ------------------------------------------------------------------------------------------- checks
def test_validate_reports_the_first_bad_row_in_file_order():
    inst = build_topology(network([1], [5, 2, 3], [(1, 1, 5), (2, 5, 2), (3, 2, 3)]))
    inst.buses.vsq_min[:] = [0, -1, 0, -1]  # buses 2 (D row 3) and 5 (D row 2) are bad
    inst.provenance["buses"].columns["vsq_min"] = "Vsqmin"
    with pytest.raises(InputError, match="voltage bounds must be non-negative") as info:
        validate(inst)
    assert (info.value.file, info.value.row, info.value.column) == ("case/D.csv", 2, "Vsqmin")


def test_validate_rejects_negative_rating_and_missing_injection():
    inst = build_topology(network([1], [2], [(1, 1, 2)], with_origin=False))
    inst.branches.rating[0] = -1.0
    with pytest.raises(InputError, match="negative rating -1.0 MVA") as info:
        validate(inst)
    assert (info.value.file, info.value.row, info.value.column) == (None, None, "rating")
    inst.branches.rating[0] = np.inf
    inst.p_inj[1, 0] = np.nan
    with pytest.raises(InputError, match=r"no injection row for node 2 in period 1 \(1 \(node, period\) pairs"):
        validate(inst)


def test_validate_rejects_positions_out_of_range():
    inst = build_topology(network([1], [2], [(1, 1, 2)]))
    inst.branches.t[0] = 7
    with pytest.raises(InputError, match="bus position 7 outside 0..1") as info:
        validate(inst)
    assert (info.value.row, info.value.column) == (2, "NodeTo")


# ------------------------------------------------------------------------------------------- dense tables
def test_dense_table_to_array():
    out = dense([0, 2, 2], [1, 0, 0], [1.0, 2.0, 3.0], (3, 2))
    np.testing.assert_array_equal(out, [[np.nan, 1.0], [np.nan, np.nan], [3.0, np.nan]])
    np.testing.assert_array_equal(dense([2, 2], [0, 0], [2.0, 3.0], (3, 1), fill=0.0, accumulate=True), [[0], [0], [5]])
    seen = dense([1], [0], True, (2, 1), fill=False)
    assert seen.dtype == bool and seen.tolist() == [[False], [True]]


def test_node_period_array_maps_ids_and_period_numbers():
    inst = network([1], [5, 2], [(1, 1, 5), (2, 5, 2)])
    inst.periods = np.array([3, 4])
    out = node_period_array(inst, [5, 1], [4, 3], [7.0, 8.0], fill=0.0)
    np.testing.assert_array_equal(out, [[8.0, 0.0], [0.0, 0.0], [0.0, 7.0]])  # rows: buses 1, 2, 5
    with pytest.raises(KeyError):
        node_period_array(inst, [9], [3], [1.0])
