"""Reader of a federation folder (docs/format.md §7, docs/model.md §12).

A federation folder holds two files:

* `Members.csv` — columns `Member` (a name, unique) and `Path` (the member's instance folder, relative to the
  federation folder or absolute; an ordinary SmartNet folder with its own DSOs and sub-DSOs);
* `Interconnectors.csv` — one row per interconnector and period (the period numbers of the first member; members
  with other numbers but as many periods are aligned by position): `ID`, `FromMember`, `FromNode`, `ToMember`,
  `ToNode`, `Period`, `ATCForward` (MW, from → to), `ATCBackward` (MW, to → from).

Every member is read with `tdmarket.io.read` (its own files are checked as usual).  Then: a member that appears
twice (same name or same folder), an unknown member or node, a node that is not a transmission node, an
interconnector inside one member, a negative or non-finite capacity, a period outside the members' common horizon,
a repeated (ID, Period) or a missing period, and an ID whose ends change between rows are each one `InputError`
naming the file, editor row and column.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.federation import Federation, Interconnectors
from ..model.instance import Instance
from .table import ID_RANGE, Range, read_table

log = logging.getLogger(__name__)

MEMBERS_FILE = "Members.csv"
INTERCONNECTORS_FILE = "Interconnectors.csv"
ATC_RANGE = Range(-1e6, 1e6, "MW")  # sign checked separately (a negative capacity has its own message)


def is_federation(path: str | os.PathLike) -> bool:
    """True if `path` is a folder holding a `Members.csv` (the federation marker)."""
    p = Path(path)
    return p.is_dir() and (p / MEMBERS_FILE).is_file()


def read_federation(path: str | os.PathLike, **read_options) -> Federation:
    """Read, build and check a federation; `read_options` go to every member's `tdmarket.io.read`."""
    from . import read

    folder = Path(path)
    if not folder.is_dir():
        raise InputError("federation folder not found", file=str(path))
    name = folder.resolve().name
    members_label = f"{name}/{MEMBERS_FILE}"
    mt = read_table(folder / MEMBERS_FILE, members_label)
    mt.require("Member", "Path")
    names = [str(v) for v in mt.text("Member")]
    paths = [str(v) for v in mt.text("Path")]
    if len(names) < 2:
        raise InputError(f"a federation needs at least two members, got {len(names)}", file=members_label)
    seen: dict[str, int] = {}
    seen_dir: dict[Path, int] = {}
    instances: list[Instance] = []
    for i, (member, rel) in enumerate(zip(names, paths)):
        if member == "" or "/" in member:
            raise mt.error(f"member name {member!r} must be non-empty and contain no '/'", index=i, column="Member")
        if member in seen:
            raise mt.error(
                f"member {member!r} appears twice (first at row {int(mt.line[seen[member]])})", index=i, column="Member"
            )
        seen[member] = i
        member_dir = (folder / rel).resolve() if rel else folder.resolve()
        if not rel or not member_dir.is_dir():
            raise mt.error(f"member folder {rel!r} not found (relative to {folder})", index=i, column="Path")
        if member_dir in seen_dir:
            first = seen_dir[member_dir]
            raise mt.error(
                f"folder {rel!r} is already member {names[first]!r} (row {int(mt.line[first])}): a member appears twice",
                index=i,
                column="Path",
            )
        seen_dir[member_dir] = i
        inst = read(member_dir, **read_options)
        if instances and len(inst.periods) != len(instances[0].periods):
            raise mt.error(
                f"member {member!r} has {len(inst.periods)} periods {inst.periods.tolist()} but {names[0]!r} has "
                f"{len(instances[0].periods)} {instances[0].periods.tolist()}: members must share the horizon length",
                index=i,
                column="Path",
            )
        if instances and not np.array_equal(inst.periods, instances[0].periods):
            log.info(
                "member %s: periods %s aligned by position with %s (the federation's period numbers)",
                member,
                inst.periods.tolist(),
                instances[0].periods.tolist(),
            )
        inst.name = member
        instances.append(inst)
    periods = instances[0].periods
    ic = _read_interconnectors(folder, name, names, instances, periods)
    return Federation(
        name=name, periods=periods.copy(), members=names, instances=instances, interconnectors=ic, source=str(folder)
    )


def _read_interconnectors(folder: Path, name: str, names: list[str], instances, periods: np.ndarray) -> Interconnectors:
    label = f"{name}/{INTERCONNECTORS_FILE}"
    t = read_table(
        folder / INTERCONNECTORS_FILE,
        label,
        ranges={"ID": ID_RANGE, "FromNode": ID_RANGE, "ToNode": ID_RANGE, "Period": ID_RANGE},
    )
    t.require("ID", "FromMember", "FromNode", "ToMember", "ToNode", "Period", "ATCForward", "ATCBackward")
    ids = t.int("ID")
    member_pos = {m: i for i, m in enumerate(names)}
    ends = {}
    for side in ("From", "To"):
        mem_text = t.text(f"{side}Member")
        node = t.int(f"{side}Node")
        mem = np.full(len(t), -1, np.int64)
        bus = np.full(len(t), -1, np.int64)
        for i, text in enumerate(mem_text):  # one lookup per row of a small file
            if str(text) not in member_pos:
                raise t.error(
                    f"unknown member {str(text)!r} (members: {', '.join(names)})", index=i, column=f"{side}Member"
                )
            mem[i] = member_pos[str(text)]
        for m, inst in enumerate(instances):
            rows = np.flatnonzero(mem == m)
            if not len(rows):
                continue
            b = inst.buses
            order = np.argsort(b.id, kind="stable")
            pos = np.clip(np.searchsorted(b.id, node[rows], sorter=order), 0, len(order) - 1)
            found = order[pos]
            missing = b.id[found] != node[rows]
            if missing.any():
                i = int(rows[np.flatnonzero(missing)[0]])
                raise t.error(f"unknown node {int(node[i])} of member {names[m]!r}", index=i, column=f"{side}Node")
            dist = b.is_dist[found]
            if dist.any():
                i = int(rows[np.flatnonzero(dist)[0]])
                raise t.error(
                    f"node {int(node[i])} of member {names[m]!r} is a distribution node; interconnectors join "
                    "transmission nodes",
                    index=i,
                    column=f"{side}Node",
                )
            bus[rows] = found
        ends[side] = (mem, bus)
    same = ends["From"][0] == ends["To"][0]
    if same.any():
        i = int(np.flatnonzero(same)[0])
        raise t.error(
            "an interconnector joins two different members (both ends are one member)", index=i, column="ToMember"
        )
    period = t.int("Period")
    period_pos = np.searchsorted(periods, period)
    bad = (period_pos >= len(periods)) | (periods[np.minimum(period_pos, len(periods) - 1)] != period)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise t.error(
            f"period {int(period[i])} is not in the members' horizon {periods.tolist()}", index=i, column="Period"
        )
    atc = {}
    for col in ("ATCForward", "ATCBackward"):
        v = t.float(col, valid=ATC_RANGE)
        neg = v < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise t.error(f"negative capacity {v[i]:g} MW (an ATC is >= 0 in each direction)", index=i, column=col)
        atc[col] = v
    t.unique_key("ID", "Period", values=[ids, period])
    uniq = np.unique(ids)
    K, T = len(uniq), len(periods)
    k_of_row = np.searchsorted(uniq, ids)
    # the ends of an interconnector are the same on every row
    first = np.zeros(K, np.int64)
    first[k_of_row[::-1]] = np.arange(len(t))[::-1]
    for side in ("From", "To"):
        for arr, what in ((ends[side][0], "Member"), (ends[side][1], "Node")):
            differs = arr != arr[first[k_of_row]]
            if differs.any():
                i = int(np.flatnonzero(differs)[0])
                raise t.error(
                    f"interconnector {int(ids[i])} has another {side.lower()} {what.lower()} than on row "
                    f"{int(t.line[first[k_of_row[i]]])}",
                    index=i,
                    column=f"{side}{what}",
                )
    count = np.bincount(k_of_row, minlength=K)
    short = np.flatnonzero(count < T)
    if len(short):
        k = int(short[0])
        have = set(period[k_of_row == k].tolist())
        miss = [int(p) for p in periods if int(p) not in have]
        raise t.error(
            f"interconnector {int(uniq[k])} has no row for period(s) {miss} (one row per period)",
            index=int(first[k]),
            column="Period",
        )
    fwd = np.zeros((K, T))
    bwd = np.zeros((K, T))
    fwd[k_of_row, period_pos] = atc["ATCForward"]
    bwd[k_of_row, period_pos] = atc["ATCBackward"]
    return Interconnectors(
        id=uniq.astype(np.int64),
        from_member=ends["From"][0][first],
        from_bus=ends["From"][1][first],
        to_member=ends["To"][0][first],
        to_bus=ends["To"][1][first],
        atc_forward_mw=fwd,
        atc_backward_mw=bwd,
    )
