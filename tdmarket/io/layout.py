"""The operator layout: every operator's data in its own folder, and an index of who is whose parent.

```text
LAYOUT/
  operators.csv     the index: one row per operator (docs/layout.md)
  TSO/              the TSO's grid, injections and orders (SmartNet files)
  DSO-2001/         one DSO area's grid, injections and orders (SmartNet files)
  ...
```

Each operator folder is a canonical SmartNet folder of that operator's sub-instance (`Instance.area_instance`):
its own buses, lines, injections and orders, plus the interface edges to its parent and to its children with
the bus at the far end of each (a *boundary* bus: no injection, no order).  `operators.csv` has one row per
operator: `Area` (its name), `Parent` (empty for the TSO), `Folder`, the interface `Edge` that joins it to its
parent with its `RootNode` (own end) and `HostNode` (parent's end), `Nodes` (own buses), `MaxAbsPrice` (€/MWh)
and `Sha256` (the checksum of the folder's CSV files, `tdmarket.io.checksum`).

Three ways to read a layout:

* `read_index(path)` → `OperatorLayout`: the index and the TSO folder's horizon only.  The hierarchical scheme
  runs on it: the TSO process loads its own folder, each DSO agent gets an `OperatorFolder` (a path and its
  interface rows) and loads its folder itself, on its worker.
* `OperatorFolder.load()` → the operator's sub-instance, identical (`Instance.fingerprint`) to
  `area_instance` of the integrated instance.
* `parse(path)` (the `layout` input format of `tdmarket.io.read`): every folder assembled into the integrated
  instance (what the centralized scheme, `info` and every other command read).  Errors name the operator's
  file, editor row and column.

`write_layout(inst, out)` writes a layout (`tdmarket split`, `tdmarket generate --layout operators`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.arrays import lookup
from ..model.instance import Areas, BranchKind, Instance, OrderBook
from ..model.provenance import Origin, Provenance
from ..model.topology import AreaSplits, branch_kinds
from .atomic import atomic_dir
from .checksum import input_sha256
from .table import Range, read_table

INDEX = "operators.csv"
INDEX_COLUMNS = ("Area", "Parent", "Folder", "Edge", "RootNode", "HostNode", "Nodes", "MaxAbsPrice", "Sha256")
_INDEX_RANGES: dict[str, Range | None] = {"Nodes": Range(0, 2**31), "MaxAbsPrice": Range(0, 1e9, "€/MWh")}


@dataclass(frozen=True)
class InterfaceLink:
    """The interface between a parent and a child operator: the child's name, the edge id, the child's root
    node id and the parent's host node id (interface-level data both sides know)."""

    area: str
    edge: int
    root_node: int
    host_node: int


@dataclass(frozen=True)
class OperatorFolder:
    """What an operator agent is built from in the operator layout: the path of its own folder, the interface
    to its parent (None for the TSO) and those to its children, and the folder's checksum from the index.
    `load()` reads the folder into the operator's sub-instance (on the agent's worker)."""

    path: str
    area: str
    layout: str  # the layout's name (instance name prefix)
    up: InterfaceLink | None
    down: tuple[InterfaceLink, ...]
    sha256: str = ""

    def load(self, *, verify: bool = True) -> Instance:
        return read_operator(self, verify=verify)


@dataclass
class OperatorLayout:
    """The index of an operator layout (`operators.csv`) and the TSO's horizon: enough to run the hierarchical
    scheme without any DSO file.  Areas are in index order (area 0 is the TSO); their bus positions are unknown
    here (-1): each operator knows its own."""

    root: Path
    name: str
    periods: np.ndarray
    areas: Areas
    folders: list[OperatorFolder]
    nodes: np.ndarray  # own buses per area
    max_abs_price: np.ndarray  # €/MWh, per area
    input_sha256: str  # SHA-256 of operators.csv (which holds every folder's checksum)
    provenance: Provenance = field(default_factory=Provenance)
    warnings: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return str(self.root)

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    @property
    def n_areas(self) -> int:
        return len(self.areas)

    def fingerprint(self) -> str:
        """Content hash of the index (which holds every folder's checksum)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.input_sha256.encode())
        h.update(np.ascontiguousarray(self.periods).tobytes())
        return h.hexdigest()

    def area_sizes(self) -> np.ndarray:
        """Own buses per area (from the index)."""
        return self.nodes.copy()

    def max_abs_price_eur_mwh(self) -> float:
        return float(self.max_abs_price.max(initial=0.0))

    def check_prices_below(self, slack_penalty: float) -> None:
        """Every operator's largest |price| (from the index) is below the slack penalty (docs/model.md §5)."""
        self.provenance["operators"].check(
            self.max_abs_price >= slack_penalty,
            "max_price",
            lambda i: (
                f"operator {self.areas.name[i]} has a price of {float(self.max_abs_price[i]):g} €/MWh, not below "
                f"the slack penalty {float(slack_penalty):g} €/MWh (raise slack_penalty, --slack-penalty)"
            ),
        )

    def agent_data(self, a: int) -> OperatorFolder:
        """What area `a`'s agent is built from: its folder (loaded where the agent runs)."""
        return self.folders[a]

    def area_instance(self, a: int) -> Instance:
        """Area `a`'s sub-instance, read from its folder only."""
        return self.folders[a].load()


# ----------------------------------------------------------------------------------------------- writing
def _folder_names(names: list[str]) -> list[str]:
    """A distinct, portable folder name per area (its name where that is safe)."""
    out: list[str] = []
    for k, name in enumerate(names):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or f"area-{k}"
        if safe.casefold() in {o.casefold() for o in out} or safe.casefold() == INDEX.casefold():
            safe = f"{safe}-{k}"
        out.append(safe)
    return out


def check_layout_output(out: Path, force: bool) -> None:
    """OUT must be new, empty, a layout (it has operators.csv, written by this module), or replaced with force."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(f"output {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / INDEX).is_file() and not force:
            raise InputError(
                f"output folder {out} exists, is not empty and is not an operator layout (no {INDEX}); choose a "
                "new folder, or replace it with --force"
            )


def write_layout(inst: Instance, out: str | os.PathLike, *, force: bool = False, extra: dict | None = None) -> Path:
    """Write `inst` as an operator layout (one folder per operator, `operators.csv`), atomically.

    `extra` maps file names to text written into the layout's root (e.g. the manifest of `generate`)."""
    from .smartnet.writer import operator_files, write_csv

    out = Path(out)
    check_layout_output(out, force)
    if inst.branches.pq_bound is not None:
        raise InputError("an instance with edge flow bounds (--edges-file Edges_hard.csv) cannot be split")
    ar, bu, br = inst.areas, inst.buses, inst.branches
    folders = _folder_names(list(ar.name))
    nodes = np.bincount(bu.area[~bu.is_boundary], minlength=len(ar))
    seg_area = bu.area[inst.orders.bids.bus[inst.orders.segments.bid]]
    price = np.zeros(len(ar))
    np.maximum.at(price, seg_area, np.abs(inst.orders.segments.price))
    with atomic_dir(out) as tmp:
        sha = []
        for a in range(len(ar)):
            sub = inst.area_instance(a)
            folder = tmp / folders[a]
            folder.mkdir()
            for name, columns in operator_files(sub).items():
                write_csv(folder / name, columns)
            sha.append(input_sha256(folder))
        iface = ar.interface
        has = iface >= 0
        rows = {
            "Area": np.array(ar.name),
            "Parent": np.array(["" if p < 0 else ar.name[p] for p in ar.parent]),
            "Folder": np.array(folders),
            "Edge": np.where(has, br.id[np.maximum(iface, 0)], -1),
            "RootNode": np.where(has, bu.id[np.maximum(ar.root_bus, 0)], -1),
            "HostNode": np.where(has, bu.id[np.maximum(ar.host_bus, 0)], -1),
            "Nodes": nodes,
            "MaxAbsPrice": price,
            "Sha256": np.array(sha),
        }
        write_csv(tmp / INDEX, rows)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return out


# ----------------------------------------------------------------------------------------------- the index
def detect(path: str | os.PathLike) -> bool:
    """A folder with an `operators.csv` is an operator layout."""
    return (Path(path) / INDEX).is_file()


def read_index(path: str | os.PathLike) -> OperatorLayout:
    """The index of the layout at `path` and the TSO folder's horizon (no DSO file is opened)."""
    from .smartnet.reader import ReadOptions, _Reader

    root = Path(path)
    if not root.is_dir():
        raise InputError("operator layout folder does not exist or is not a folder", file=str(root))
    label = f"{root.name}/{INDEX}"
    tab = read_table(root / INDEX, label, ranges=_INDEX_RANGES)
    tab.require(*INDEX_COLUMNS)
    names = [str(v) for v in tab.text("Area")]
    parents = [str(v) for v in tab.text("Parent")]
    folder_names = [str(v) for v in tab.text("Folder")]
    edge, root_node, host_node = tab.int("Edge"), tab.int("RootNode"), tab.int("HostNode")
    nodes, price = tab.int("Nodes"), tab.float("MaxAbsPrice")
    sha = [str(v) for v in tab.text("Sha256")]
    tab.unique_key("Area", values=[np.array(names, dtype=object)])
    if len(tab) == 0 or parents[0] != "":
        raise InputError("the first row must be the TSO (empty Parent)", file=label, row=2, column=tab.name("Parent"))
    index = {n: k for k, n in enumerate(names)}
    parent = np.full(len(names), -1, dtype=np.int64)
    for k in range(1, len(names)):
        if parents[k] not in index or parents[k] == names[k]:
            raise tab.error(f"unknown parent {parents[k]!r} of {names[k]}", index=k, column="Parent")
        parent[k] = index[parents[k]]
    if any(p == "" for p in parents[1:]):
        raise tab.error("only the first row (the TSO) has no parent", index=parents[1:].index("") + 1, column="Parent")
    from ..model.topology import area_depth

    try:
        area_depth(parent)
    except ValueError:
        raise InputError("the Parent column contains a cycle", file=label, column=tab.name("Parent")) from None
    for k, f in enumerate(folder_names):
        folder = root / f
        if Path(f).name != f or not folder.is_dir():
            raise tab.error(f"operator folder {f!r} does not exist in {root}", index=k, column="Folder")
    links = [InterfaceLink(names[k], int(edge[k]), int(root_node[k]), int(host_node[k])) for k in range(len(names))]
    folders = [
        OperatorFolder(
            path=str(root / folder_names[k]),
            area=names[k],
            layout=root.name,
            up=links[k] if k > 0 else None,
            down=tuple(links[c] for c in np.flatnonzero(parent == k)),
            sha256=sha[k],
        )
        for k in range(len(names))
    ]
    reader = _Reader(root / folder_names[0], ReadOptions())
    periods, _ = reader.read_general()
    none = np.full(len(names), -1, dtype=np.int64)
    areas = Areas(names, parent, none.copy(), none.copy(), none.copy(), np.zeros(len(names), bool))
    prov = Provenance(
        {"operators": Origin(files=[label], row=tab.line, columns={"max_price": tab.name("MaxAbsPrice")})}
    )
    return OperatorLayout(
        root=root,
        name=root.name,
        periods=periods,
        areas=areas,
        folders=folders,
        nodes=nodes.astype(np.int64),
        max_abs_price=price,
        input_sha256=input_sha256(root),
        provenance=prov,
    )


# ----------------------------------------------------------------------------------------------- one operator
def _parse_folder(folder: OperatorFolder, verify: bool) -> Instance:
    from .smartnet.reader import parse as parse_smartnet

    if verify and folder.sha256:
        got = input_sha256(folder.path)
        if got != folder.sha256:
            raise InputError(
                f"the files of operator {folder.area} changed after {INDEX} was written (checksum {got[:12]}…, index "
                f"{folder.sha256[:12]}…); split the instance again",
                file=f"{Path(folder.path).name}",
            )
    inst, _ = parse_smartnet(folder.path)
    return inst


def _positions(inst: Instance, ids: list[int], what: str, folder: OperatorFolder) -> np.ndarray:
    pos, found = lookup(inst.buses.id, np.asarray(ids, dtype=np.int64))
    if not found.all():
        missing = int(np.asarray(ids)[~found][0])
        raise InputError(f"{what} node {missing} of operator {folder.area} is not in its folder", file=folder.path)
    return pos


def _edge_positions(inst: Instance, ids: list[int], folder: OperatorFolder) -> np.ndarray:
    order = np.argsort(inst.branches.id, kind="stable")
    pos, found = lookup(inst.branches.id[order], np.asarray(ids, dtype=np.int64))
    if not found.all():
        missing = int(np.asarray(ids)[~found][0])
        raise InputError(f"interface edge {missing} of operator {folder.area} is not in its folder", file=folder.path)
    return order[pos]


def read_operator(folder: OperatorFolder, *, verify: bool = True) -> Instance:
    """The operator's sub-instance from its folder alone (equal to `Instance.area_instance` of the integrated
    instance): area 0 is the operator, its children follow in index order; the parent's host bus and the
    children's roots are boundary buses."""
    inst = _parse_folder(folder, verify)
    bu, br = inst.buses, inst.branches
    kids = list(folder.down)
    up_host = [folder.up.host_node] if folder.up is not None else []
    host_pos = _positions(inst, up_host, "host", folder)
    root_pos = _positions(inst, [c.root_node for c in kids], "child root", folder)
    own_root = _positions(inst, [folder.up.root_node], "root", folder) if folder.up is not None else np.zeros(0, int)
    kid_host = _positions(inst, [c.host_node for c in kids], "host", folder)
    kid_edge = _edge_positions(inst, [c.edge for c in kids], folder)
    up_edge = _edge_positions(inst, [folder.up.edge], folder) if folder.up is not None else np.zeros(0, int)
    boundary = np.zeros(len(bu), bool)
    boundary[host_pos] = True
    boundary[root_pos] = True
    bu.is_boundary = boundary
    bu.area = np.zeros(len(bu), dtype=np.int64)
    bu.area[root_pos] = np.arange(1, len(kids) + 1)
    if (inst.orders.bids.bus.size and boundary[inst.orders.bids.bus].any()) or (
        np.abs(inst.p_inj[boundary]).sum() + np.abs(inst.q_inj[boundary]).sum() > 0
    ):
        raise InputError(
            f"operator {folder.area}: a boundary node (its parent's or a child's) carries an injection or an order",
            file=folder.path,
        )
    br.kind = branch_kinds(bu.is_dist, br.f, br.t)
    br.kind[kid_edge] = BranchKind.INTERFACE
    br.kind[up_edge] = BranchKind.INTERFACE
    br.area = np.zeros(len(br), dtype=np.int64)
    br.area[kid_edge] = np.arange(1, len(kids) + 1)
    minus = np.array([-1])
    root_bus = np.concatenate([own_root if len(own_root) else minus, root_pos]).astype(np.int64)
    iface = np.concatenate([up_edge if len(up_edge) else minus, kid_edge]).astype(np.int64)
    inst.areas = Areas(
        name=[folder.area] + [c.area for c in kids],
        parent=np.concatenate([[-1], np.zeros(len(kids), dtype=np.int64)]).astype(int),
        root_bus=root_bus,
        host_bus=np.concatenate([host_pos if len(host_pos) else minus, kid_host]).astype(np.int64),
        interface=iface,
        root_is_from=np.where(iface >= 0, br.f[np.maximum(iface, 0)] == root_bus, False),
    )
    inst.name = f"{folder.layout}:{folder.area}"
    return inst


# ----------------------------------------------------------------------------------------------- assembly
_BID_FIELDS = ("ramp_bid", "mindur_bid1", "mindur_bid2", "disc_bid")
_ROWS_OF = {
    "exclusive": "exclusive_group",
    "ramp": "ramp_bid",
    "mindur": "mindur_bid1",
    "half_planes": "hp_qtbid",
    "discs": "disc_bid",
}


def _cat(objs: list, **override):
    """Concatenate every array field of columnar dataclasses of one type (fields in `override` are given)."""
    kw = {}
    for f in fields(objs[0]):
        if f.name in override:
            kw[f.name] = override[f.name]
            continue
        values = [getattr(o, f.name) for o in objs]
        kw[f.name] = np.concatenate(values) if isinstance(values[0], np.ndarray) else values[0]
    return replace(objs[0], **kw)


def _cat_origins(parts: list[tuple[Origin, int, str]]) -> Origin:
    """One record from (origin, number of rows, folder label) per part; a part without a record points at its
    folder with unknown rows."""
    files: list[str] = []
    rows, part = [], []
    columns: dict[str, str] = {}
    for origin, n, label in parts:
        if len(origin.row) >= n and origin.files:
            rows.append(origin.row[:n])
            part.append(origin._part()[:n] + len(files))
            files.extend(origin.files)
            columns = columns or dict(origin.columns)
        else:
            rows.append(np.zeros(n, np.int64))
            part.append(np.full(n, len(files), np.int64))
            files.append(origin.files[0] if origin.files else label)
    return Origin(
        files=files,
        row=np.concatenate(rows) if rows else np.zeros(0, np.int64),
        part=np.concatenate(part) if part else None,
        columns=columns,
    )


def parse(path: str | os.PathLike, **options) -> tuple[Instance, AreaSplits | None]:
    """Every operator folder of the layout assembled into the integrated instance (without topology), plus the
    nested areas' interfaces as sub-area splits; `tdmarket.io.read` builds the topology and checks it.

    Buses and bids are ordered by id, as the SmartNet reader orders them; lines and segments follow the index
    order of the operators, each operator's in its file order."""
    from .smartnet.reader import ReadOptions

    if options and ReadOptions(**options) != ReadOptions():
        raise InputError("an operator layout is read with the default SmartNet options", file=str(path))
    lay = read_index(path)
    parts = []
    for folder in lay.folders:
        inst = _parse_folder(folder, verify=True)
        if inst.n_periods != lay.n_periods or (inst.periods != lay.periods).any():
            raise InputError(
                f"the horizon {inst.periods[0]}..{inst.periods[-1]} differs from the TSO's "
                f"{lay.periods[0]}..{lay.periods[-1]}",
                file=f"{Path(folder.path).name}/GeneralParam.csv",
            )
        far = [c.root_node for c in folder.down] + ([folder.up.host_node] if folder.up else [])
        own = np.flatnonzero(~np.isin(inst.buses.id, np.asarray(far, dtype=np.int64)))
        keep_br = np.flatnonzero(~np.isin(inst.branches.id, np.asarray([c.edge for c in folder.down], np.int64)))
        parts.append((inst, own, keep_br, Path(folder.path).name))
    all_ids = np.concatenate([inst.buses.id[own] for inst, own, _, _ in parts])
    bus_order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[bus_order]
    same = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(same):
        raise InputError(f"node {int(sorted_ids[same[0]])} belongs to two operators", file=f"{lay.name}/{INDEX}")

    prov_parts: dict[str, list] = {}
    buses, branches, p_inj, q_inj, books = [], [], [], [], []
    bid_off = 0
    for inst, own, keep_br, label in parts:
        bu, br, ob, prov = inst.buses, inst.branches, inst.orders, inst.provenance

        def record(key: str, origin: Origin, n: int, label: str = label) -> None:
            prov_parts.setdefault(key, []).append((origin, n, label))

        buses.append(_take_rows(bu, own))
        record("buses", prov["buses"].take(own), len(own))
        sub_br = _take_rows(br, keep_br)
        sub_br.f = _global(bu.id[sub_br.f], sorted_ids)
        sub_br.t = _global(bu.id[sub_br.t], sorted_ids)
        branches.append(sub_br)
        record("branches", prov["branches"].take(keep_br), len(keep_br))
        p_inj.append(inst.p_inj[own])
        q_inj.append(inst.q_inj[own])
        bids = replace(ob.bids, bus=_global(bu.id[ob.bids.bus], sorted_ids))
        segs = replace(ob.segments, bid=ob.segments.bid + bid_off)
        books.append(replace(ob, segments=segs, bids=bids, **{k: getattr(ob, k) + bid_off for k in _BID_FIELDS}))
        record("segments", prov["segments"], len(ob.segments))
        for key in ("bids", "flag:NoNewAct", "flag:AlphaOmegaSet"):
            record(key, prov[key], len(ob.bids))
        for key, attr in _ROWS_OF.items():
            record(key, prov[key], len(getattr(ob, attr)))
        record("injections", prov["injections"], 0)
        bid_off += len(ob.bids)
    origins = {k: _cat_origins(v) for k, v in prov_parts.items()}
    origins["buses"] = origins["buses"].take(bus_order)
    origins["injections"] = Origin(files=origins["injections"].files, columns={"node": "Node"})
    book = _cat_books(books)
    bid_order = np.argsort(book.bids.id, kind="stable")  # bids by QBid id, as the SmartNet reader orders them
    book = _reorder_bids(book, bid_order)
    for key in ("bids", "flag:NoNewAct", "flag:AlphaOmegaSet"):
        origins[key] = origins[key].take(bid_order)
    inst = Instance(
        name=lay.name,
        periods=lay.periods,
        buses=_take_rows(_cat(buses), bus_order),
        branches=_cat(branches, pq_bound=None),
        areas=Areas.tso_only(),
        p_inj=np.concatenate(p_inj)[bus_order],
        q_inj=np.concatenate(q_inj)[bus_order],
        orders=book,
        source=str(lay.root),
        warnings=[],
        provenance=Provenance(origins),
    )
    nested = [k for k in range(1, lay.n_areas) if lay.areas.parent[k] > 0]
    splits = None
    if nested:
        up = [lay.folders[k].up for k in nested]
        splits = AreaSplits(
            edge=np.array([u.edge for u in up if u is not None]), name=[lay.areas.name[k] for k in nested]
        )
        inst.provenance["sub_areas"] = lay.provenance["operators"].take(np.array(nested))
    return inst, splits


def _reorder_bids(book: OrderBook, order: np.ndarray) -> OrderBook:
    """The order book with its bids in `order` (segment and condition references remapped)."""
    new_pos = np.empty(len(order), np.int64)
    new_pos[order] = np.arange(len(order))
    segs = replace(book.segments, bid=new_pos[book.segments.bid])
    return replace(
        book,
        segments=segs,
        bids=_take_rows(book.bids, order),
        **{k: new_pos[getattr(book, k)] for k in _BID_FIELDS},
    )


def _take_rows(obj, index: np.ndarray):
    kw = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        kw[f.name] = v[index] if isinstance(v, np.ndarray) else v
    return replace(obj, **kw)


def _global(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Positions of node ids among the assembled (sorted) node ids; -1 where unknown (the checks reject it)."""
    pos, found = lookup(sorted_ids, ids)
    return np.where(found, pos, -1)


def _cat_books(books: list[OrderBook]) -> OrderBook:
    rest = [f.name for f in fields(OrderBook) if f.name not in ("segments", "bids")]
    kw = {k: np.concatenate([getattr(b, k) for b in books]) for k in rest}
    return OrderBook(segments=_cat([b.segments for b in books]), bids=_cat([b.bids for b in books]), **kw)


__all__ = [
    "INDEX",
    "InterfaceLink",
    "OperatorFolder",
    "OperatorLayout",
    "detect",
    "parse",
    "read_index",
    "read_operator",
    "write_layout",
]
