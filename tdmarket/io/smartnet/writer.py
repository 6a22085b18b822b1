"""Writer of the canonical SmartNet CSV format (docs/model.md §2): `write_instance(instance, folder)`.

Canonical means: LF line endings, `baseMVA` 1, flags as `Bids` columns, every optional file present, full
float precision; reading the folder again (`tdmarket.io.read`) gives an identical instance.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...model.instance import Instance
from ..atomic import atomic_dir


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
    keep = ~inst.buses.is_boundary
    files = _network_files(inst, keep)
    files.update(_order_files(inst, keep))
    files.update(_sub_area_file(inst, keep))
    return files


def operator_files(sub: Instance) -> dict[str, dict[str, np.ndarray]]:
    """File name -> columns of an operator's folder (`tdmarket.io.layout`): its sub-instance with the boundary
    buses (the parent's host bus, the children's roots) and the interface edges that reach them, so that the
    folder alone rebuilds the sub-instance; no `SubAreas.csv` (the layout's index says who is whose parent)."""
    keep = np.ones(len(sub.buses), bool)
    files = _network_files(sub, keep)
    files.update(_order_files(sub, keep))
    return files


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """One canonical CSV file (LF line endings, full float precision)."""
    _write_csv(path, columns)


def _network_files(inst: Instance, keep: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """GeneralParam, the node files, Edges and NetInjections."""
    bu, br = inst.buses, inst.branches
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
    return files


def _order_files(inst: Instance, keep: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Bids (flags as columns) and the order-condition files, all present (header-only when empty)."""
    bu, p0 = inst.buses, int(inst.periods[0])
    files: dict[str, dict[str, np.ndarray]] = {}
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
    return files


def _sub_area_file(inst: Instance, keep: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """SubAreas.csv for nested DSO areas: interface edges between two distribution buses (docs/model.md §6.4)."""
    bu, br, ar = inst.buses, inst.branches, inst.areas
    sub = [
        a
        for a in range(len(ar))
        if ar.interface[a] >= 0
        and bu.is_dist[br.f[ar.interface[a]]]
        and bu.is_dist[br.t[ar.interface[a]]]
        and keep[br.f[ar.interface[a]]]
        and keep[br.t[ar.interface[a]]]
    ]
    if not sub:
        return {}
    return {"SubAreas.csv": {"Edge": br.id[ar.interface[sub]], "Area": np.array([ar.name[a] for a in sub])}}


def write_instance(inst: Instance, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `inst` as a canonical SmartNet folder that `tdmarket.io.read` reads back identically.

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
    with atomic_dir(target) as tmp:
        for name, columns in files.items():
            _write_csv(tmp / name, columns)
    return target
