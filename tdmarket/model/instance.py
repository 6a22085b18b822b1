"""The instance: a columnar description of one balancing clearing (docs/model.md §1–§4).

Everything is stored as numpy arrays indexed by position (bus 0..n-1, branch 0..m-1, segment 0..s-1, ...);
file ids are kept alongside for reporting and writing.  Periods are positions 0..T-1 of the horizon
`periods` (the file's own numbers, e.g. 2..4 for italy-652).

Units: powers MW / Mvar / MVA; impedances p.u. on 1 MVA (baseMVA already applied); prices €/MWh;
voltages squared p.u. (w = V²).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace

import numpy as np

from .provenance import Provenance

UNRATED_MIN = 90_000.0  # ratings S >= this (or S == 0) mean "unrated" (docs/model.md §3.1)


class BranchKind(enum.IntEnum):
    TRANSMISSION = 0
    DISTRIBUTION = 1
    INTERFACE = 2  # a boundary between two operator areas (T–D, or parent DSO – child DSO)


def _take(obj, index):
    """Row-subset every array field of a columnar dataclass."""
    kw = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        kw[f.name] = v[index] if isinstance(v, np.ndarray) else v
    return replace(obj, **kw)


@dataclass
class Buses:
    id: np.ndarray  # int64 file id
    is_dist: np.ndarray  # bool: distribution bus
    vsq_min: np.ndarray  # p.u.², 0 if unbounded (T buses: 0)
    vsq_max: np.ndarray  # p.u.², inf if unbounded
    g_shunt: np.ndarray  # p.u. on 1 MVA: consumes G·w (MW)
    b_shunt: np.ndarray  # p.u. on 1 MVA: injects B·w (Mvar)
    is_ref: np.ndarray  # bool: angle reference (T)
    area: np.ndarray  # int: operator area index (0 = TSO)
    is_boundary: np.ndarray  # bool: bus of a neighbouring area kept only to anchor a boundary branch

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class Branches:
    id: np.ndarray  # int64 file id
    f: np.ndarray  # from-bus position
    t: np.ndarray  # to-bus position
    r: np.ndarray  # p.u.
    x: np.ndarray  # p.u.
    b: np.ndarray  # total charging susceptance, p.u. (half per end)
    rating: np.ndarray  # MVA; inf = unrated
    tap: np.ndarray  # from-end ratio (1 = nominal)
    shift_deg: np.ndarray  # degrees
    kind: np.ndarray  # BranchKind
    area: np.ndarray  # owning area: TSO for T lines, the DSO for D lines, the CHILD area for interfaces
    pq_bound: np.ndarray | None = None  # (m, 4): Pmin, Pmax, Qmin, Qmax from Edges_hard-style files

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class Segments:
    """Order segments (one `Bids.csv` row each)."""

    id: np.ndarray  # QBidSeg
    bid: np.ndarray  # position in Bids
    lo: np.ndarray  # QuantityLoQ, MW
    hi: np.ndarray  # QuantityHiQ, MW
    price: np.ndarray  # €/MWh, paid to the BSP per MW activated in either direction
    xlb: np.ndarray  # minimum acceptance ratio (1 = all-or-nothing)

    def __len__(self) -> int:
        return len(self.id)

    @property
    def width(self) -> np.ndarray:
        """Signed width HiQ - LoQ (MW): > 0 up, < 0 down."""
        return self.hi - self.lo


@dataclass
class Bids:
    """QBids: the part of a QtBid in one period."""

    id: np.ndarray  # QBid
    qtbid: np.ndarray  # QtBid file id
    bus: np.ndarray  # bus position
    period: np.ndarray  # period position 0..T-1
    alpha_omega: np.ndarray  # bool: start/stop logic
    no_new_act: np.ndarray  # bool: no new activation

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class OrderBook:
    segments: Segments
    bids: Bids
    exclusive_group: np.ndarray  # (k,) group id per row
    exclusive_qtbid: np.ndarray  # (k,) QtBid per row
    ramp_bid: np.ndarray  # bid position of the ramp row (period t, constraint links t and t+1)
    ramp_delta: np.ndarray  # MW per period
    ramp_is_min: np.ndarray  # bool: RCMin=1 (maximum decrease, delta < 0)
    ramp_id: np.ndarray  # RampConstr id (kept for writing)
    mindur_bid1: np.ndarray  # bid position of QBid1
    mindur_bid2: np.ndarray  # bid position of QBid2
    hp_qtbid: np.ndarray  # QtBid id of each half-plane row
    hp_slope: np.ndarray
    hp_offset: np.ndarray  # Mvar
    hp_geq: np.ndarray  # bool: Q >= o + m P  (QPHPConstr=1), else Q <= o + m P
    disc_bid: np.ndarray  # bid position
    disc_radius: np.ndarray  # MVA
    disc_group: np.ndarray  # QPDCID (kept for writing)

    @classmethod
    def without_conditions(cls, segments: Segments, bids: Bids) -> OrderBook:
        z_i, z_f, z_b = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
        return cls(
            segments=segments,
            bids=bids,
            exclusive_group=z_i,
            exclusive_qtbid=z_i,
            ramp_bid=z_i,
            ramp_delta=z_f,
            ramp_is_min=z_b,
            ramp_id=z_i,
            mindur_bid1=z_i,
            mindur_bid2=z_i,
            hp_qtbid=z_i,
            hp_slope=z_f,
            hp_offset=z_f,
            hp_geq=z_b,
            disc_bid=z_i,
            disc_radius=z_f,
            disc_group=z_i,
        )

    @property
    def n_segments(self) -> int:
        return len(self.segments)

    def subset_by_bus(self, bus_keep: np.ndarray, remap_bus: np.ndarray) -> OrderBook:
        """Orders at the buses in `bus_keep`, with bus positions renumbered by `remap_bus`."""
        book = self
        bids_keep = bus_keep[book.bids.bus]
        bid_pos = np.flatnonzero(bids_keep)
        bid_remap = np.full(len(book.bids), -1)
        bid_remap[bid_pos] = np.arange(len(bid_pos))
        bids = _take(book.bids, bid_pos)
        bids.bus = remap_bus[bids.bus]
        seg_pos = np.flatnonzero(bids_keep[book.segments.bid])
        segments = _take(book.segments, seg_pos)
        segments.bid = bid_remap[segments.bid]
        qt_keep = np.unique(bids.qtbid)
        ex = np.isin(book.exclusive_qtbid, qt_keep)
        rp = bids_keep[book.ramp_bid] if len(book.ramp_bid) else np.zeros(0, bool)
        md = bids_keep[book.mindur_bid1] if len(book.mindur_bid1) else np.zeros(0, bool)
        hp = np.isin(book.hp_qtbid, qt_keep)
        dc = bids_keep[book.disc_bid] if len(book.disc_bid) else np.zeros(0, bool)
        return OrderBook(
            segments=segments,
            bids=bids,
            exclusive_group=book.exclusive_group[ex],
            exclusive_qtbid=book.exclusive_qtbid[ex],
            ramp_bid=bid_remap[book.ramp_bid[rp]],
            ramp_delta=book.ramp_delta[rp],
            ramp_is_min=book.ramp_is_min[rp],
            ramp_id=book.ramp_id[rp],
            mindur_bid1=bid_remap[book.mindur_bid1[md]],
            mindur_bid2=bid_remap[book.mindur_bid2[md]],
            hp_qtbid=book.hp_qtbid[hp],
            hp_slope=book.hp_slope[hp],
            hp_offset=book.hp_offset[hp],
            hp_geq=book.hp_geq[hp],
            disc_bid=bid_remap[book.disc_bid[dc]],
            disc_radius=book.disc_radius[dc],
            disc_group=book.disc_group[dc],
        )


@dataclass
class Areas:
    """Operator areas as a tree; area 0 is the TSO (root)."""

    name: list[str]
    parent: np.ndarray  # parent area (-1 for the TSO)
    root_bus: np.ndarray  # bus position of the area's root (-1 for the TSO)
    host_bus: np.ndarray  # bus in the parent area the interface connects to (-1 for TSO)
    interface: np.ndarray  # branch position of the interface (-1 for TSO)
    root_is_from: np.ndarray  # bool: the root is the interface's NodeFrom (export x = +flow)

    def __len__(self) -> int:
        return len(self.name)

    @classmethod
    def tso_only(cls) -> Areas:
        """The TSO alone (what a reader returns before the topology pass finds the DSO areas)."""
        none = np.array([-1], dtype=np.int64)
        return cls(["TSO"], none, none.copy(), none.copy(), none.copy(), np.zeros(1, bool))

    def children(self, a: int) -> np.ndarray:
        return np.flatnonzero(self.parent == a)

    def top_level(self) -> np.ndarray:
        """For every area, its ancestor directly below the TSO (itself for top-level DSOs; 0 for the TSO)."""
        from .topology import top_level

        return top_level(self.parent)

    def depth(self) -> np.ndarray:
        from .topology import area_depth

        return area_depth(self.parent)

    def is_dso(self) -> np.ndarray:
        return self.parent >= 0


@dataclass
class Instance:
    name: str
    periods: np.ndarray  # file period numbers, e.g. [2, 3, 4]
    buses: Buses
    branches: Branches
    areas: Areas
    p_inj: np.ndarray  # (n_bus, T) fixed net injection, MW (> 0 generation)
    q_inj: np.ndarray  # (n_bus, T) Mvar (used at D buses only)
    orders: OrderBook
    source: str = ""  # where it was read from
    warnings: list[str] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)  # file and editor row of every row, if read
    input_sha256: str | None = None  # SHA-256 of the input files (tdmarket.io.checksum), if read from a folder

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    def fingerprint(self) -> str:
        """Content hash of every array (and area names): equal iff the data are equal."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for part in (self.periods, self.p_inj, self.q_inj):
            h.update(np.ascontiguousarray(part).tobytes())
        for obj in (self.buses, self.branches, self.areas, self.orders, self.orders.segments, self.orders.bids):
            for f in fields(obj):
                v = getattr(obj, f.name)
                if isinstance(v, np.ndarray):
                    h.update(f.name.encode())
                    h.update(np.ascontiguousarray(v).tobytes())
        h.update("|".join(self.areas.name).encode())
        return h.hexdigest()

    @property
    def n_areas(self) -> int:
        return len(self.areas)

    def system_imbalance(self) -> np.ndarray:
        """Sum of fixed net injections per period (MW), boundary buses excluded."""
        own = ~self.buses.is_boundary
        return self.p_inj[own].sum(axis=0)

    def bus_index(self, ids) -> np.ndarray:
        """Positions of bus file ids (raises KeyError for unknown ids)."""
        order = np.argsort(self.buses.id, kind="stable")
        ids = np.asarray(ids)
        pos = np.searchsorted(self.buses.id, ids, sorter=order)
        pos = np.clip(pos, 0, len(order) - 1)
        found = order[pos]
        if len(ids) and (self.buses.id[found] != ids).any():
            raise KeyError(ids[self.buses.id[found] != ids][0])
        return found

    def with_distribution_ratings_scaled(self, factor: float) -> Instance:
        """Stressed variant: every distribution line rating (MVA) multiplied by `factor` (interfaces unchanged)."""
        br = self.branches
        d = br.kind == BranchKind.DISTRIBUTION
        rating = np.where(d, br.rating * factor, br.rating)
        return replace(
            self,
            name=f"{self.name} (D ratings x{factor:g})",
            branches=replace(br, rating=rating),
            warnings=list(self.warnings),
        )

    def flatten_areas(self) -> Instance:
        """Copy in which every sub-DSO is merged into its top-level DSO (one level of DSOs under the TSO)."""
        ar = self.areas
        top = ar.top_level()
        keep = np.flatnonzero(ar.parent <= 0)
        remap = np.full(len(ar), -1)
        remap[keep] = np.arange(len(keep))
        buses = replace(self.buses, area=remap[top[self.buses.area]])
        br = self.branches
        nested_iface = (br.kind == BranchKind.INTERFACE) & self.buses.is_dist[br.f] & self.buses.is_dist[br.t]
        branches = replace(br, kind=np.where(nested_iface, BranchKind.DISTRIBUTION, br.kind), area=remap[top[br.area]])
        areas = Areas(
            name=[ar.name[a] for a in keep],
            parent=np.where(ar.parent[keep] < 0, -1, 0),
            root_bus=ar.root_bus[keep],
            host_bus=ar.host_bus[keep],
            interface=ar.interface[keep],
            root_is_from=ar.root_is_from[keep],
        )
        return replace(self, buses=buses, branches=branches, areas=areas, warnings=list(self.warnings))

    def area_sizes(self) -> np.ndarray:
        """Own buses per area (boundary buses excluded)."""
        own = ~self.buses.is_boundary
        return np.bincount(self.buses.area[own], minlength=self.n_areas)

    def max_abs_price_eur_mwh(self) -> float:
        """The largest |price| of any order segment (€/MWh; 0 without orders)."""
        price = self.orders.segments.price
        return float(np.abs(price).max()) if len(price) else 0.0

    def agent_data(self, a: int) -> Instance:
        """What area `a`'s agent is built from: its sub-instance (an operator layout hands out the folder
        instead, `tdmarket.io.layout.OperatorLayout.agent_data`)."""
        return self.area_instance(a)

    def subtree(self, a: int) -> np.ndarray:
        """Areas in the subtree rooted at area `a` (including `a`)."""
        from .topology import subtree_mask

        return np.flatnonzero(subtree_mask(self.areas.parent, a))

    def area_instance(self, a: int, *, with_descendants: bool = False) -> Instance:
        """The self-contained sub-instance of area `a` (what its operator holds).

        It contains the area's buses, lines and orders, its own interface branch with the host bus of the
        parent as a boundary bus, and the interfaces to its child areas with each child root as a boundary bus.
        With `with_descendants`, the whole subtree is kept instead of stopping at the children's roots.
        Boundary buses carry no injections and no orders.  Areas are renumbered: `a` becomes area 0 and its
        children (or descendants) follow; the boundary bus of the parent belongs to a pseudo parent, marked
        by `areas.parent[0] == -1` and `areas.host_bus[0]` pointing at the boundary bus.
        """
        keep_areas = self.subtree(a) if with_descendants else np.concatenate([[a], self.areas.children(a)])
        own_areas = keep_areas if with_descendants else np.array([a])
        bus_own = np.isin(self.buses.area, own_areas) & ~self.buses.is_boundary
        br = self.branches
        child_ifaces = self.areas.interface[keep_areas[1:]] if len(keep_areas) > 1 else np.zeros(0, int)
        own_branch = (np.isin(br.area, own_areas) & (br.kind != BranchKind.INTERFACE)) | np.isin(
            np.arange(len(br)), child_ifaces
        )
        if a > 0:
            own_branch[self.areas.interface[a]] = True
        ends = np.unique(np.concatenate([br.f[own_branch], br.t[own_branch]]))
        boundary = np.zeros(len(self.buses), bool)
        boundary[ends] = ~bus_own[ends]
        keep_bus = bus_own | boundary
        bus_pos = np.flatnonzero(keep_bus)
        remap_bus = np.full(len(self.buses), -1)
        remap_bus[bus_pos] = np.arange(len(bus_pos))
        area_remap = np.full(self.n_areas, -1)
        area_remap[keep_areas] = np.arange(len(keep_areas))

        buses = _take(self.buses, bus_pos)
        buses.is_boundary = boundary[bus_pos]
        new_area = area_remap[buses.area]
        buses.area = np.where(new_area >= 0, new_area, 0)
        branch_pos = np.flatnonzero(own_branch)
        branches = _take(self.branches, branch_pos)
        branches.f = remap_bus[branches.f]
        branches.t = remap_bus[branches.t]
        branches.area = np.maximum(area_remap[branches.area], 0)

        ar = self.areas
        parent = np.array([-1] + [int(area_remap[ar.parent[c]]) for c in keep_areas[1:]], dtype=int)
        root_bus = np.array([remap_bus[ar.root_bus[c]] if ar.root_bus[c] >= 0 else -1 for c in keep_areas])
        host_bus = np.array([remap_bus[ar.host_bus[c]] if ar.host_bus[c] >= 0 else -1 for c in keep_areas])
        iface_remap = np.full(len(br), -1)
        iface_remap[branch_pos] = np.arange(len(branch_pos))
        interface = np.array([iface_remap[ar.interface[c]] if ar.interface[c] >= 0 else -1 for c in keep_areas])
        areas = Areas(
            name=[ar.name[c] for c in keep_areas],
            parent=parent,
            root_bus=root_bus,
            host_bus=host_bus,
            interface=interface,
            root_is_from=ar.root_is_from[keep_areas].copy(),
        )

        p_inj = self.p_inj[bus_pos].copy()
        q_inj = self.q_inj[bus_pos].copy()
        p_inj[buses.is_boundary] = 0.0
        q_inj[buses.is_boundary] = 0.0
        orders = self.orders.subset_by_bus(keep_bus & ~boundary, remap_bus)
        return Instance(
            name=f"{self.name}:{ar.name[a]}",
            periods=self.periods.copy(),
            buses=buses,
            branches=branches,
            areas=areas,
            p_inj=p_inj,
            q_inj=q_inj,
            orders=orders,
            source=self.source,
            warnings=[],
        )
