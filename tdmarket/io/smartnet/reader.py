"""Parser of the SmartNet CSV instance format (docs/model.md §2): CSV files -> columnar model + provenance.

`parse(folder)` reads the files into an `Instance` whose topology is not yet built, plus the sub-area splits
of `SubAreas.csv`; `tdmarket.io.read` then runs the format-neutral topology pass and checks
(`tdmarket.model.topology`, `tdmarket.model.validate`).  What stays here is what depends on the files: the
required files and columns, numbers that parse, unique keys per file, the file ids resolved to positions
(unknown node / QBid / edge), periods inside the horizon, the segment rows of one QBid agreeing, and the
format's conventions.  Every problem raises one `InputError` naming the file, the editor row, the column and
the reason.

Conventions of the format (documented in the README):
* `S == 0` and `S >= 90 000` mean "unrated"; a negative `S` is kept for the checks to reject unless
  `nonpositive_rating_unlimited` (the research convention: unrated);
* `Vsqmin = Vsqmax = 0` means "no voltage bounds"; `Tap = 0` means 1;
* a (bus, period) without a `NetInjections.csv` row is left NaN, which the checks reject (no silent zero).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...model.arrays import dense, lookup
from ...model.instance import UNRATED_MIN, Areas, Branches, Buses, Instance
from ...model.provenance import Origin, Provenance
from ...model.topology import AreaSplits
from ..table import MAX_FILE_MB, Table, read_table
from .orders import OrdersReader
from .ranges import MAX_PERIODS, ranges_of


@dataclass(frozen=True)
class ReadOptions:
    edges_file: str = "Edges.csv"
    nonpositive_rating_unlimited: bool = False  # research behaviour: S < 0 means unrated
    edge_pq_bounds: bool = False  # keep Pmin/Pmax/Qmin/Qmax of an Edges_hard-style file as flow bounds
    max_file_mb: float = MAX_FILE_MB  # larger input files are refused before they are read


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


class _Reader(OrdersReader):
    def __init__(self, folder: Path, options: ReadOptions):
        self.folder = folder
        self.options = options
        self.origins: dict[str, Origin] = {}

    def label(self, name: str) -> str:
        return f"{self.folder.name}/{name}"

    def table(self, name: str) -> Table:
        max_bytes = int(self.options.max_file_mb * 2**20)
        return read_table(self.folder / name, self.label(name), ranges=ranges_of(name), max_bytes=max_bytes)

    def optional_table(self, name: str) -> Table | None:
        """The file's table, None if the file does not exist."""
        if not (self.folder / name).exists():
            return None
        return self.table(name)

    @staticmethod
    def check(table: Table, bad: np.ndarray, column: str, reason) -> None:
        idx = np.flatnonzero(bad)
        if len(idx):
            i = int(idx[0])
            raise table.error(reason(i) if callable(reason) else reason, index=i, column=column)

    # ------------------------------------------------------------------ main
    def read(self) -> tuple[Instance, AreaSplits | None]:
        if not self.folder.is_dir():
            raise InputError("instance folder does not exist or is not a folder", file=str(self.folder))
        periods, base = self.read_general()
        buses = self.read_buses()
        branches = self.read_branches(buses, base)
        splits = self.read_sub_areas()
        p_inj, q_inj = self.read_injections(buses, periods)
        orders = self.read_orders(periods)
        inst = Instance(
            name=self.folder.name,
            periods=periods,
            buses=buses,
            branches=branches,
            areas=Areas.tso_only(),
            p_inj=p_inj,
            q_inj=q_inj,
            orders=orders,
            source=str(self.folder),
            warnings=[],
            provenance=Provenance(self.origins),
        )
        return inst, splits

    def read_general(self) -> tuple[np.ndarray, float]:
        gp = self.table("GeneralParam.csv")
        gp.require("StartTime", "EndTime")
        if len(gp) != 1:
            raise InputError(f"must have exactly one data row, has {len(gp)}", file=gp.label, row=2)
        start, end = int(gp.int("StartTime")[0]), int(gp.int("EndTime")[0])
        if start > end:
            raise gp.error(f"StartTime {start} > EndTime {end}", index=0, column="StartTime")
        if end - start + 1 > MAX_PERIODS:  # before any (node, period) array is allocated
            raise gp.error(
                f"the horizon {start}..{end} has {end - start + 1} periods, more than {MAX_PERIODS}",
                index=0,
                column="EndTime",
            )
        base = float(gp.float("baseMVA", 1.0)[0])
        return np.arange(start, end + 1), base

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
        vmax = np.where((vmin == 0) & (vmax == 0), np.inf, vmax)  # 0, 0: no bounds
        g, b = dn.float("G", 0.0), dn.float("B", 0.0)
        nt, nd = len(t_id), len(d_id)
        ids = np.concatenate([t_id, d_id])
        order = np.argsort(ids, kind="stable")  # bus positions sorted by id: lookups are searchsorted
        cat = lambda a, b_: np.concatenate([a, b_])[order]
        self._bus_ids = ids[order]
        self.origins["buses"] = Origin(
            files=[tn.label, dn.label],
            row=cat(tn.line, dn.line),
            part=cat(np.zeros(nt, np.int64), np.ones(nd, np.int64)),
            columns=dict(id="ID", is_ref="RefNode", vsq_min="Vsqmin"),
        )
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
        pos, found = lookup(self._bus_ids, ids)
        self.check(table, ~found, column, lambda i: f"unknown node {ids[i]}")
        return pos

    def read_branches(self, buses: Buses, base: float) -> Branches:
        """Edges; kinds and areas are left to the topology pass, negative ratings to the checks."""
        ed = self.table(self.options.edges_file)
        ed.require("ID", "NodeFrom", "NodeTo", "R", "X", "S")
        ids = ed.int("ID")
        ed.unique_key("ID", values=[ids])
        f, t = self.bus_pos(ed, "NodeFrom"), self.bus_pos(ed, "NodeTo")
        r, x, s = ed.float("R") / base, ed.float("X") / base, ed.float("S")
        bc = ed.float("B", 0.0) * base
        tap = ed.float("Tap", 1.0)
        shift = ed.float("Shift", 0.0)
        if self.options.nonpositive_rating_unlimited:
            s = np.where(s < 0, 0.0, s)
        rating = np.where((s > 0) & (s < UNRATED_MIN), s, np.where(s < 0, s, np.inf))
        pq = None
        if self.options.edge_pq_bounds:
            ed.require("Pmin", "Pmax", "Qmin", "Qmax")
            pq = np.column_stack([ed.float(c) for c in ("Pmin", "Pmax", "Qmin", "Qmax")])
        self.origins["branches"] = Origin(
            files=[ed.label],
            row=ed.line,
            columns={
                role: ed.name(c)
                for role, c in dict(
                    id="ID", f="NodeFrom", t="NodeTo", r="R", x="X", rating="S", tap="Tap", pq_bound="Pmin"
                ).items()
            },
        )
        return Branches(
            id=ids,
            f=f,
            t=t,
            r=r,
            x=x,
            b=bc,
            rating=rating,
            tap=np.where(tap == 0, 1.0, tap),
            shift_deg=shift,
            kind=np.zeros(len(ids), dtype=np.int64),
            area=np.zeros(len(ids), dtype=np.int64),
            pq_bound=pq,
        )

    def read_sub_areas(self) -> AreaSplits | None:
        """tdmarket extension (docs/model.md §6.4): `SubAreas.csv` (Edge, Area) marks the D-D edges to split at."""
        sub = self.optional_table("SubAreas.csv")
        if sub is None:
            return None
        sub.require("Edge", "Area")
        edge_ids = sub.int("Edge")
        sub.unique_key("Edge", values=[edge_ids])
        self.origins["sub_areas"] = Origin(
            files=[sub.label], row=sub.line, columns=dict(edge=sub.name("Edge"), area=sub.name("Area"))
        )
        return AreaSplits(edge=edge_ids, name=[str(a) for a in sub.text("Area")])

    # ------------------------------------------------------------------ injections
    def read_injections(self, buses: Buses, periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bus, period) arrays of P and Q; NaN where the file has no row (the checks reject it)."""
        ni = self.table("NetInjections.csv")
        ni.require("Node", "forT", "P", "Q")
        pos = self.bus_pos(ni, "Node")
        per = ni.int("forT")
        self.in_horizon(ni, per, periods)
        ni.unique_key("Node", "forT", values=[ni.int("Node"), per])
        p, q = ni.float("P"), ni.float("Q")
        shape = (len(buses), len(periods))
        if len(ni) < shape[0] * shape[1]:  # name the first missing pair without allocating (node, period) arrays
            keys = np.sort(pos * shape[1] + (per - periods[0]))
            gaps = np.flatnonzero(keys != np.arange(len(keys)))
            b, t = divmod(int(gaps[0]) if len(gaps) else len(keys), shape[1])
            raise InputError(
                f"no injection row for node {int(buses.id[b])} in period {int(periods[t])} "
                f"({shape[0] * shape[1] - len(ni)} (node, period) pairs missing; give explicit 0 rows)",
                file=ni.label,
                column=ni.name("Node"),
            )
        self.origins["injections"] = Origin(files=[ni.label], columns=dict(node="Node"))
        return dense(pos, per - periods[0], p, shape), dense(pos, per - periods[0], q, shape)


def parse(folder: str | os.PathLike, options: ReadOptions | None = None, **kw) -> tuple[Instance, AreaSplits | None]:
    """Parse a SmartNet instance folder into an `Instance` without topology, plus its sub-area splits.

    Use `tdmarket.io.read`, which also builds the topology and runs the checks."""
    options = options or ReadOptions(**kw)
    return _Reader(Path(folder), options).read()


def detect(path: str | os.PathLike) -> bool:
    """A folder with a `GeneralParam.csv` is a SmartNet instance."""
    return (Path(path) / "GeneralParam.csv").is_file()
