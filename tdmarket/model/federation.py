"""A federation: several TSO systems (members) under one balancing platform, joined by interconnectors
(docs/model.md §12).

Each member is an ordinary `Instance` (its own transmission grid, DSOs and sub-DSOs, orders).  An interconnector
joins a transmission node of one member to a transmission node of another; its flow g[k,t] (MW, positive from
the `from` end to the `to` end) is limited by the available transfer capacity (ATC) of each direction and period:
−atc_backward_mw[k,t] <= g[k,t] <= atc_forward_mw[k,t].  A flow is a withdrawal at the from node and an injection
at the to node (lossless, no physics beyond the ATC: the "ATC model" of the European platforms).

`merged_instance` joins every member into one instance (one TSO area holding every transmission grid, every DSO
renamed `member/DSO`), which is what the integrated platform scheme clears.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from .instance import Areas, Bids, Branches, Buses, Instance, OrderBook, Segments


@dataclass
class Interconnectors:
    """Interconnectors between members, one row per interconnector (sorted by id)."""

    id: np.ndarray  # int64 file id
    from_member: np.ndarray  # member position of the from end
    from_bus: np.ndarray  # bus position in the from member's instance
    to_member: np.ndarray  # member position of the to end
    to_bus: np.ndarray  # bus position in the to member's instance
    atc_forward_mw: np.ndarray  # (K, T) MW, from → to
    atc_backward_mw: np.ndarray  # (K, T) MW, to → from

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class Federation:
    """Members (name and instance, in file order) and the interconnectors between them."""

    name: str
    periods: np.ndarray  # the federation's periods: the first member's numbers (others aligned by position)
    members: list[str]
    instances: list[Instance]
    interconnectors: Interconnectors
    source: str = ""

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    @property
    def n_members(self) -> int:
        return len(self.members)

    def border_injection_mw(self, m: int, flows_mw: np.ndarray) -> np.ndarray:
        """(n_bus of member m, T) MW injected into member m's buses by interconnector flows (K, T)."""
        ic = self.interconnectors
        inst = self.instances[m]
        out = np.zeros((len(inst.buses), self.n_periods))
        into = ic.to_member == m
        np.add.at(out, ic.to_bus[into], flows_mw[into])
        out_of = ic.from_member == m
        np.add.at(out, ic.from_bus[out_of], -flows_mw[out_of])
        return out

    def member_with_flows(self, m: int, flows_mw: np.ndarray) -> Instance:
        """Member m's instance with the interconnector flows (K, T) MW imposed as fixed injections at its border
        nodes (its clearing's cost is then V_m(g), docs/model.md §12.2)."""
        inst = self.instances[m]
        return replace(inst, p_inj=inst.p_inj + self.border_injection_mw(m, flows_mw), warnings=list(inst.warnings))

    def touches(self, m: int) -> np.ndarray:
        """Bool (K,): interconnectors with an end in member m."""
        ic = self.interconnectors
        return (ic.from_member == m) | (ic.to_member == m)

    def flow_slope(self, m: int, price_eur_mwh: np.ndarray, period_hours: float) -> np.ndarray:
        """∂V_m/∂g (K, T) €/MW from member m's nodal prices `price_eur_mwh` (n_bus, T): a flow g withdraws at the
        from node (cost rises by λ_from·Δ per MW) and injects at the to node (cost falls by λ_to·Δ)."""
        ic = self.interconnectors
        out = np.zeros((len(ic), self.n_periods))
        fr = ic.from_member == m
        out[fr] += price_eur_mwh[ic.from_bus[fr]] * period_hours
        to = ic.to_member == m
        out[to] -= price_eur_mwh[ic.to_bus[to]] * period_hours
        return out


@dataclass
class MergedFederation:
    """All members in one instance: member m's buses are positions `bus_start[m] : bus_start[m+1]`, its file ids
    are shifted by `m · id_shift` (so `id // id_shift` is the member when ids are non-negative), its areas are
    `area_start[m] ...` (the members' TSOs all become area 0)."""

    instance: Instance
    bus_start: np.ndarray  # (M+1,)
    branch_start: np.ndarray  # (M+1,)
    segment_start: np.ndarray  # (M+1,)
    bid_start: np.ndarray  # (M+1,)
    id_shift: int
    member_of_area: np.ndarray  # (A,) member of every merged area (−1 for the shared TSO area 0)

    def member_bus(self, m: int, bus: np.ndarray) -> np.ndarray:
        """Merged positions of member m's bus positions."""
        return self.bus_start[m] + np.asarray(bus, np.int64)


def _id_shift(instances: list[Instance]) -> int:
    """A power of ten above every file id of every member (ids are shifted by member · shift)."""
    largest = 1
    for inst in instances:
        book = inst.orders
        for arr in (
            inst.buses.id,
            inst.branches.id,
            book.segments.id,
            book.bids.id,
            book.bids.qtbid,
            book.exclusive_group,
            book.ramp_id,
            book.disc_group,
        ):
            if len(arr):
                largest = max(largest, int(np.abs(arr).max()))
    return 10 ** (len(str(largest)) + 1)


def merged_instance(fed: Federation) -> MergedFederation:
    """One instance holding every member (docs/model.md §12.3): the integrated platform clearing's network."""
    insts = fed.instances
    M = len(insts)
    shift = _id_shift(insts)
    id_off = [m * shift for m in range(M)]
    nb = np.array([len(i.buses) for i in insts])
    nbr = np.array([len(i.branches) for i in insts])
    nseg = np.array([len(i.orders.segments) for i in insts])
    nbid = np.array([len(i.orders.bids) for i in insts])
    bus_start = np.concatenate([[0], np.cumsum(nb)])
    branch_start = np.concatenate([[0], np.cumsum(nbr)])
    seg_start = np.concatenate([[0], np.cumsum(nseg)])
    bid_start = np.concatenate([[0], np.cumsum(nbid)])
    # areas: every member's TSO becomes area 0; DSO areas follow member by member
    area_map, names, member_of_area = [], ["TSO"], [-1]
    nxt = 1
    for m, inst in enumerate(insts):
        a = np.zeros(inst.n_areas, np.int64)
        a[1:] = np.arange(nxt, nxt + inst.n_areas - 1)
        nxt += inst.n_areas - 1
        area_map.append(a)
        names += [f"{fed.members[m]}/{n}" for n in inst.areas.name[1:]]
        member_of_area += [m] * (inst.n_areas - 1)

    def cat(parts):
        return np.concatenate(parts) if parts else np.zeros(0)

    buses = Buses(
        **{
            f.name: cat([getattr(i.buses, f.name) for i in insts])
            for f in fields(Buses)
            if f.name not in ("id", "area")
        },
        id=cat([i.buses.id + o for i, o in zip(insts, id_off)]),
        area=cat([am[i.buses.area] for i, am in zip(insts, area_map)]),
    )
    has_pq = any(i.branches.pq_bound is not None for i in insts)
    pq = None
    if has_pq:
        free = np.array([-np.inf, np.inf, -np.inf, np.inf])
        pq = np.vstack(
            [
                i.branches.pq_bound if i.branches.pq_bound is not None else np.tile(free, (len(i.branches), 1))
                for i in insts
            ]
        )
    branches = Branches(
        **{
            f.name: cat([getattr(i.branches, f.name) for i in insts])
            for f in fields(Branches)
            if f.name not in ("id", "f", "t", "area", "pq_bound")
        },
        id=cat([i.branches.id + o for i, o in zip(insts, id_off)]),
        f=cat([i.branches.f + s for i, s in zip(insts, bus_start)]),
        t=cat([i.branches.t + s for i, s in zip(insts, bus_start)]),
        area=cat([am[i.branches.area] for i, am in zip(insts, area_map)]),
        pq_bound=pq,
    )
    branches.kind = branches.kind.astype(insts[0].branches.kind.dtype)

    def dso(inst, field_name, offset):
        v = getattr(inst.areas, field_name)[1:]
        return np.where(v >= 0, v + offset, -1)

    areas = Areas(
        name=names,
        parent=np.concatenate(
            [[-1]]
            + [
                np.where(i.areas.parent[1:] > 0, am[np.maximum(i.areas.parent[1:], 0)], 0)
                for i, am in zip(insts, area_map)
            ]
        ).astype(np.int64),
        root_bus=np.concatenate([[-1]] + [dso(i, "root_bus", s) for i, s in zip(insts, bus_start)]).astype(np.int64),
        host_bus=np.concatenate([[-1]] + [dso(i, "host_bus", s) for i, s in zip(insts, bus_start)]).astype(np.int64),
        interface=np.concatenate([[-1]] + [dso(i, "interface", s) for i, s in zip(insts, branch_start)]).astype(
            np.int64
        ),
        root_is_from=np.concatenate([[False]] + [i.areas.root_is_from[1:] for i in insts]).astype(bool),
    )
    books = [i.orders for i in insts]
    segments = Segments(
        id=cat([b.segments.id + o for b, o in zip(books, id_off)]),
        bid=cat([b.segments.bid + s for b, s in zip(books, bid_start)]),
        lo=cat([b.segments.lo for b in books]),
        hi=cat([b.segments.hi for b in books]),
        price=cat([b.segments.price for b in books]),
        xlb=cat([b.segments.xlb for b in books]),
    )
    bids = Bids(
        id=cat([b.bids.id + o for b, o in zip(books, id_off)]),
        qtbid=cat([b.bids.qtbid + o for b, o in zip(books, id_off)]),
        bus=cat([b.bids.bus + s for b, s in zip(books, bus_start)]),
        period=cat([b.bids.period for b in books]),
        alpha_omega=cat([b.bids.alpha_omega for b in books]).astype(bool),
        no_new_act=cat([b.bids.no_new_act for b in books]).astype(bool),
    )

    def shifted(name, offsets):
        return cat([getattr(b, name) + o for b, o in zip(books, offsets)])

    def plain(name):
        return cat([getattr(b, name) for b in books])

    orders = OrderBook(
        segments=segments,
        bids=bids,
        exclusive_group=shifted("exclusive_group", id_off).astype(np.int64),
        exclusive_qtbid=shifted("exclusive_qtbid", id_off).astype(np.int64),
        ramp_bid=shifted("ramp_bid", bid_start).astype(np.int64),
        ramp_delta=plain("ramp_delta"),
        ramp_is_min=plain("ramp_is_min").astype(bool),
        ramp_id=shifted("ramp_id", id_off).astype(np.int64),
        mindur_bid1=shifted("mindur_bid1", bid_start).astype(np.int64),
        mindur_bid2=shifted("mindur_bid2", bid_start).astype(np.int64),
        hp_qtbid=shifted("hp_qtbid", id_off).astype(np.int64),
        hp_slope=plain("hp_slope"),
        hp_offset=plain("hp_offset"),
        hp_geq=plain("hp_geq").astype(bool),
        disc_bid=shifted("disc_bid", bid_start).astype(np.int64),
        disc_radius=plain("disc_radius"),
        disc_group=shifted("disc_group", id_off).astype(np.int64),
    )
    inst = Instance(
        name=fed.name,
        periods=fed.periods.copy(),
        buses=buses,
        branches=branches,
        areas=areas,
        p_inj=np.vstack([i.p_inj for i in insts]),
        q_inj=np.vstack([i.q_inj for i in insts]),
        orders=orders,
        source=fed.source,
    )
    return MergedFederation(
        instance=inst,
        bus_start=bus_start,
        branch_start=branch_start,
        segment_start=seg_start,
        bid_start=bid_start,
        id_shift=shift,
        member_of_area=np.array(member_of_area, np.int64),
    )
