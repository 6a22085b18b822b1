"""The clearing's result tables as arrays over (instance bus or branch, period), as the AC check needs them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.instance import Instance


@dataclass
class Dispatch:
    """What the AC check takes from a clearing: injections, root voltages, interface exchanges, line figures."""

    P: np.ndarray  # (n_bus, T) dispatched net injections, MW
    Q: np.ndarray  # Mvar
    W: np.ndarray  # (n_bus, T) cleared squared voltage magnitude, nan where absent
    iface: dict  # (area name, period) -> (export_mw, export_mvar)
    gap: np.ndarray  # (n_branch, T) SOC gap, nan where absent
    loss: np.ndarray  # (n_branch, T) cleared loss, nan where absent


def read_dispatch(inst: Instance, tables: dict, zero_root_q: bool) -> Dispatch:
    """The `Dispatch` of the result tables `tables` (`bids`, `buses`, `interfaces`, `lines`)."""
    P, Q = _injections(inst, tables, zero_root_q)
    W = _vsq(inst, tables)
    iface = _interface_lookup(tables)
    gap, loss = _line_lookup(tables, inst)
    return Dispatch(P=P, Q=Q, W=W, iface=iface, gap=gap, loss=loss)


def _grid(inst: Instance, df: pd.DataFrame | None, cols: list[str]) -> tuple[np.ndarray, np.ndarray, list]:
    """Positions (bus, period) of the table rows whose node and period are in the instance, and the values."""
    if df is None or len(df) == 0 or "node" not in df:
        return np.zeros(0, int), np.zeros(0, int), [np.zeros(0) for _ in cols]
    node = df["node"].to_numpy()
    per = df["period"].to_numpy()
    ok = np.isin(node, inst.buses.id) & np.isin(per, inst.periods)
    bus = inst.bus_index(node[ok]) if ok.any() else np.zeros(0, int)
    pos = np.searchsorted(inst.periods, per[ok]) if ok.any() else np.zeros(0, int)
    vals = [
        np.nan_to_num(pd.to_numeric(df[c], errors="coerce").to_numpy(float)[ok], nan=0.0)
        if c in df
        else np.zeros(int(ok.sum()))
        for c in cols
    ]
    return bus, pos, vals


def _injections(inst: Instance, tables: dict, zero_root_q: bool) -> tuple[np.ndarray, np.ndarray]:
    """Dispatched net injections (n_bus, T): fixed + orders + reported slack."""
    P = inst.p_inj.astype(float).copy()
    Q = inst.q_inj.astype(float).copy()
    if zero_root_q:
        roots = inst.areas.root_bus[inst.areas.root_bus >= 0]
        Q[roots] = 0.0
    for key, (cp, cq) in (("bids", ("p_mw", "q_mvar")), ("buses", ("slack_p_mw", "slack_q_mvar"))):
        bus, per, (vp, vq) = _grid(inst, tables.get(key), [cp, cq])
        np.add.at(P, (bus, per), vp)
        np.add.at(Q, (bus, per), vq)
    return P, Q


def _vsq(inst: Instance, tables: dict) -> np.ndarray:
    """(n_bus, T) cleared squared voltage magnitude from the `buses` table (nan where absent)."""
    W = np.full((len(inst.buses), inst.n_periods), np.nan)
    df = tables.get("buses")
    if df is not None and len(df) and "vsq_pu" in df:
        node, per = df["node"].to_numpy(), df["period"].to_numpy()
        v = pd.to_numeric(df["vsq_pu"], errors="coerce").to_numpy(float)
        ok = np.isin(node, inst.buses.id) & np.isin(per, inst.periods) & np.isfinite(v)
        if ok.any():
            W[inst.bus_index(node[ok]), np.searchsorted(inst.periods, per[ok])] = v[ok]
    return W


def _interface_lookup(tables: dict) -> dict[tuple[str, int], tuple[float, float]]:
    """(area name, period) -> cleared (export_mw, export_mvar) from the `interfaces` table."""
    df = tables.get("interfaces")
    if df is None or len(df) == 0 or "export_mw" not in df:
        return {}
    y = df["export_mvar"].to_numpy(float) if "export_mvar" in df else np.full(len(df), np.nan)
    return {
        (str(a), int(p)): (float(x), float(q))
        for a, p, x, q in zip(df["area"], df["period"], df["export_mw"].to_numpy(float), y)
    }


def _line_lookup(tables: dict, inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """(n_branch, T) SOC gap and cleared loss from the `lines` table (nan where absent)."""
    m, T = len(inst.branches), inst.n_periods
    gap, loss = np.full((m, T), np.nan), np.full((m, T), np.nan)
    df = tables.get("lines")
    if df is None or len(df) == 0 or "edge" not in df:
        return gap, loss
    if "kind" in df:
        df = df[df["kind"] == "D"]
    edge, per = df["edge"].to_numpy(), df["period"].to_numpy()
    order = np.argsort(inst.branches.id, kind="stable")
    pos = np.clip(np.searchsorted(inst.branches.id, edge, sorter=order), 0, max(m - 1, 0))
    ok = (m > 0) & np.isin(per, inst.periods)
    if m:
        ok &= inst.branches.id[order[pos]] == edge
    b, t = order[pos[ok]], np.searchsorted(inst.periods, per[ok])
    if "soc_gap" in df:
        gap[b, t] = df["soc_gap"].to_numpy(float)[ok]
    if "loss_mw" in df:
        loss[b, t] = df["loss_mw"].to_numpy(float)[ok]
    return gap, loss
