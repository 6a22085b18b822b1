"""The result tables as dense arrays for the settlement (`settlement`): per-bus prices, slacks and voltages,
per-area interface exchanges and the prices they are settled at, and sums per operator area."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.instance import Instance


def dense(inst: Instance, frame: pd.DataFrame, column: str) -> np.ndarray:
    """(n_bus, T) array of a per-(node, period) column; NaN where the table has no row."""
    out = np.full((len(inst.buses), inst.n_periods), np.nan)
    if len(frame):
        i = inst.bus_index(frame.node.to_numpy())
        t = np.searchsorted(inst.periods, frame.period.to_numpy())
        out[i, t] = frame[column].to_numpy(float)
    return out


def period_pos(inst: Instance, periods) -> np.ndarray:
    """Positions of period numbers in the horizon."""
    return np.searchsorted(inst.periods, np.asarray(periods))


def branch_pos(inst: Instance, ids) -> np.ndarray:
    """Positions of branch file ids (raises KeyError for unknown ids)."""
    br_id = inst.branches.id
    order = np.argsort(br_id, kind="stable")
    ids = np.asarray(ids)
    pos = order[np.clip(np.searchsorted(br_id, ids, sorter=order), 0, max(len(order) - 1, 0))]
    if len(ids) and (br_id[pos] != ids).any():
        raise KeyError(f"unknown edge {ids[br_id[pos] != ids][0]}")
    return pos


def interface_exchanges(inst: Instance, tables: dict, lam_p: np.ndarray, lam_q: np.ndarray):
    """Per area (A, T): exported X (MW), Y (Mvar), the prices π^P, π^Q at which it is settled, and whether the
    exchange is a T–D coupling (x, y enter the root balance and x the host balance) or a D–D line."""
    A, T = inst.n_areas, inst.n_periods
    ar, br, b = inst.areas, inst.branches, inst.buses
    X, Y, piP, piQ = (np.zeros((A, T)) for _ in range(4))
    td = np.zeros(A, bool)
    has_iface = np.zeros(A, bool)
    ifc = tables.get("interfaces")
    name_pos = {n: k for k, n in enumerate(ar.name)}
    if ifc is not None and len(ifc) and "interface_price_eur_mwh" in ifc:
        a = np.array([name_pos[n] for n in ifc.area], dtype=np.int64)
        t = period_pos(inst, ifc.period)
        root = ar.root_bus[a]
        host = ar.host_bus[a]
        is_td = b.is_dist[root] != b.is_dist[host]
        X[a, t] = ifc.export_mw.to_numpy(float)
        # tables without a reactive interface model report no y: settled as 0
        Y[a, t] = np.nan_to_num(ifc.export_mvar.to_numpy(float)) if "export_mvar" in ifc else 0.0
        price = ifc.interface_price_eur_mwh.to_numpy(float)
        root_price = ifc.root_price_eur_mwh.to_numpy(float) if "root_price_eur_mwh" in ifc else np.full(len(a), np.nan)
        # T–D: π_d (host T LMP); D–D: the root prices of the parent's model (the line belongs to the parent)
        piP[a, t] = np.where(is_td, price, root_price)
        piQ[a, t] = np.where(is_td, 0.0, lam_q[root, t])
        td[a] = is_td
        has_iface[a] = True
    # D–D interfaces modelled as ordinary lines (whole instance): exchange = flow leaving the child root
    lines = tables.get("lines")
    dd = np.flatnonzero((ar.interface >= 0) & ~has_iface)
    if len(dd) and lines is not None and len(lines):
        e_pos = branch_pos(inst, lines.edge.to_numpy())
        edge_of_area = np.full(len(br), -1)
        edge_of_area[ar.interface[dd]] = dd
        a = edge_of_area[e_pos]
        sel = a >= 0
        a = a[sel]
        t = period_pos(inst, lines.period.to_numpy()[sel])
        from_root = ar.root_is_from[a]
        pf, pt = lines.p_from_mw.to_numpy(float)[sel], lines.p_to_mw.to_numpy(float)[sel]
        qf, qt = lines.q_from_mvar.to_numpy(float)[sel], lines.q_to_mvar.to_numpy(float)[sel]
        X[a, t] = np.where(from_root, pf, pt)
        Y[a, t] = np.nan_to_num(np.where(from_root, qf, qt))
        root = ar.root_bus[a]
        piP[a, t] = lam_p[root, t]
        piQ[a, t] = np.nan_to_num(lam_q[root, t])
        has_iface[a] = True
    piP = np.nan_to_num(piP)
    return X, Y, piP, piQ, td, has_iface


@dataclass
class BusValues:
    """Dense (n_bus, T) arrays of the `buses` table (NaN → 0) and the mask of buses it balanced."""

    lam_p: np.ndarray
    lam_q: np.ndarray
    sig_p: np.ndarray
    sig_q: np.ndarray
    wv: np.ndarray
    priced: np.ndarray  # buses with a balance row in these tables


def bus_values(inst: Instance, buses: pd.DataFrame) -> BusValues:
    """The `BusValues` of a `buses` result table."""
    lam_p = dense(inst, buses, "price_p_eur_mwh")
    lam_q = np.nan_to_num(dense(inst, buses, "price_q_eur_mvarh"))
    sig_p = np.nan_to_num(dense(inst, buses, "slack_p_mw"))
    sig_q = np.nan_to_num(dense(inst, buses, "slack_q_mvar"))
    wv = np.nan_to_num(dense(inst, buses, "vsq_pu"))
    priced = ~np.isnan(lam_p)
    return BusValues(np.nan_to_num(lam_p), lam_q, sig_p, sig_q, wv, priced)


def by_operator(inst: Instance, v) -> np.ndarray:
    """Sum of an (n_bus, T) array per (operator area, period): an (A, T) array."""
    n, T, A = len(inst.buses), inst.n_periods, inst.n_areas
    bus_area = np.broadcast_to(inst.buses.area[:, None], (n, T))
    per = np.broadcast_to(np.arange(T), (n, T))
    flat = (bus_area * T + per).ravel()
    return np.bincount(flat, np.asarray(v).ravel(), minlength=A * T).reshape(A, T)


def operator_grid(inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """(area, period position) index grids of shape (A, T)."""
    return np.meshgrid(np.arange(inst.n_areas), np.arange(inst.n_periods), indexing="ij")
