"""TSO–DSO sharing of the activation cost in each DSO area (docs/model.md §8)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..model.instance import Instance

COLUMNS = [
    "area",
    "period",
    "export_mw",
    "base_export_mw",
    "interface_price_eur_mwh",
    "K_eur",
    "K_T_eur",
    "K_D_eur",
    "K_area_eur",
    "K_T_area_eur",
    "K_D_area_eur",
]


def _area_blocks(inst: Instance, names) -> tuple[np.ndarray, dict[str, int]]:
    """Row block (index into `names`) of every instance area: its own if it has rows, else its nearest ancestor's;
    -1 for the TSO.  Returned as an array by area position and as a dict by area name."""
    ar = inst.areas
    name_pos = {n: k for k, n in enumerate(ar.name)}
    unknown = [n for n in names if n not in name_pos]
    if unknown:
        raise KeyError(f"interfaces table names unknown area(s): {', '.join(unknown)}")
    block = np.full(len(ar), -1)
    block[[name_pos[n] for n in names]] = np.arange(len(names))
    for a in range(1, len(ar)):  # parents precede children
        if block[a] < 0 and ar.parent[a] >= 0:
            block[a] = block[ar.parent[a]]
    return block, {n: int(block[k]) for n, k in name_pos.items()}


def _base_exchange(x0: dict[str, np.ndarray], names, T: int) -> np.ndarray:
    """(len(names), T) grid of the base-case exchanges x^0."""
    missing = [n for n in names if n not in x0]
    if missing:
        raise KeyError(f"no base-case exchange x0 for area(s): {', '.join(missing)}")
    grid = np.array([np.asarray(x0[n], float).reshape(-1) for n in names])
    if grid.shape != (len(names), T):
        raise ValueError(f"x0 needs one value per period ({T}) for every area")
    return grid


def _activation_cost(inst: Instance, seg: pd.DataFrame | None, block: np.ndarray, n_blocks: int, dt: float):
    """K (n_blocks, T): Σ π_s |p_s| Δ of the orders of each block's area (T orders are not shared)."""
    K = np.zeros((n_blocks, inst.n_periods))
    if seg is not None and len(seg):
        sb = block[inst.buses.area[inst.bus_index(seg["node"].to_numpy())]]
        st = np.searchsorted(inst.periods, seg["period"].to_numpy())
        cost = seg["price_eur_mwh"].to_numpy(float) * np.abs(seg["accepted_mw"].to_numpy(float)) * dt
        own = sb >= 0
        np.add.at(K, (sb[own], st[own]), cost[own])
    return K


def _split_uplift(out: pd.DataFrame, part: pd.DataFrame, block_of: dict, tot: dict, row_area, n_blocks: int) -> None:
    """Add uplift_area_eur, uplift_T_eur, uplift_D_eur to `out` in place (see `cost_sharing`)."""
    d = part[(part["kind"] == "D")] if "kind" in part else part
    pb = d["area"].astype(str).map(block_of).fillna(-1).to_numpy(int)  # -1: TSO or unknown area
    loc = np.nan_to_num(d["loc_eur"].to_numpy(float))
    ok = pb >= 0
    uplift = np.bincount(pb[ok], loc[ok], minlength=n_blocks)
    at, ad = np.abs(tot["K_T_eur"]), np.abs(tot["K_D_eur"])
    denom = at + ad
    share_t = np.divide(at, denom, out=np.zeros_like(at), where=denom > 0)
    out["uplift_area_eur"] = uplift[row_area]
    out["uplift_T_eur"] = (uplift * share_t)[row_area]
    out["uplift_D_eur"] = out["uplift_area_eur"] - out["uplift_T_eur"]


def cost_sharing(
    inst: Instance, tables: dict[str, pd.DataFrame], x0: dict[str, np.ndarray], period_hours: float = 1.0
) -> pd.DataFrame:
    """TSO–DSO cost sharing of the activation cost in each DSO area (docs/model.md §8).

    For every (area d, period t) of the `interfaces` table, with π = `interface_price_eur_mwh`, x = `export_mw`
    and x^0 = `x0[d][t]` (the area's base-case exchange, docs/model.md §7, one value per period of `inst.periods`):

        K_{d,t}   = Σ_{s∈d,t} π_s |p_s| Δ        activation cost of the area's own orders (`segments` table)
        K^T_{d,t} = π_{d,t} (x_{d,t} − x^0_{d,t}) Δ   the parent's (TSO's) share: it pays for the change of exchange
        K^D_{d,t} = K_{d,t} − K^T_{d,t}          the DSO's share (negative: the interface payment exceeds the cost)

    An order belongs to the area of its bus; if that area has no row in the table (sub-DSOs merged into their
    top-level DSO by a scheme), to its nearest ancestor that has one.  T orders are not shared.

    Returns one row per (area, period): area, period, export_mw, base_export_mw, interface_price_eur_mwh,
    K_eur, K_T_eur, K_D_eur, and the area totals over the periods repeated on each of its rows: K_area_eur,
    K_T_area_eur, K_D_area_eur.  If `tables["participants"]` carries `loc_eur`, the uplift of the area's
    D participants, uplift_area_eur, is split as |ΣK^T| : |ΣK^D| into uplift_T_eur and uplift_D_eur (all to
    the DSO if both sums are 0).
    """
    ifc = tables["interfaces"]
    if len(ifc) == 0:
        return pd.DataFrame(columns=COLUMNS)
    ifc = ifc.sort_values(["area", "period"], kind="stable")
    names = pd.unique(ifc["area"].astype(str))
    block, block_of = _area_blocks(inst, names)
    x0_grid = _base_exchange(x0, names, inst.n_periods)
    row_area = ifc["area"].astype(str).map(block_of).to_numpy(int)
    row_t = np.searchsorted(inst.periods, ifc["period"].to_numpy())
    x = ifc["export_mw"].to_numpy(float)
    pi = ifc["interface_price_eur_mwh"].to_numpy(float)
    base = x0_grid[row_area, row_t]
    k = _activation_cost(inst, tables.get("segments"), block, len(names), period_hours)[row_area, row_t]
    k_t = pi * (x - base) * period_hours
    out = pd.DataFrame(
        {
            "area": ifc["area"].astype(str).to_numpy(),
            "period": ifc["period"].to_numpy(),
            "export_mw": x,
            "base_export_mw": base,
            "interface_price_eur_mwh": pi,
            "K_eur": k,
            "K_T_eur": k_t,
            "K_D_eur": k - k_t,
        }
    )
    tot = {c: np.bincount(row_area, out[c].to_numpy(), minlength=len(names)) for c in ("K_eur", "K_T_eur", "K_D_eur")}
    out["K_area_eur"] = tot["K_eur"][row_area]
    out["K_T_area_eur"] = tot["K_T_eur"][row_area]
    out["K_D_area_eur"] = tot["K_D_eur"][row_area]
    part = tables.get("participants")
    if part is not None and "loc_eur" in part and "area" in part:
        _split_uplift(out, part, block_of, tot, row_area, len(names))
    return out.reset_index(drop=True)
