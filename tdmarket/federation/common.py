"""Pieces shared by the platform schemes: prices at border nodes, the flows table with congestion rents, member
costs, the summary (docs/model.md §12.4)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..model.federation import Federation


def price_at(buses: pd.DataFrame, node_ids: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """(n, T) active-power price (€/MWh) of the nodes `node_ids` from a result's `buses` table (first row of a
    (node, period))."""
    table = buses.drop_duplicates(["node", "period"]).pivot(index="node", columns="period", values="price_p_eur_mwh")
    return table.reindex(index=np.asarray(node_ids), columns=np.asarray(periods)).to_numpy(dtype=float)


def border_buses(fed: Federation, m: int) -> np.ndarray:
    """Sorted bus positions of member m that an interconnector touches."""
    ic = fed.interconnectors
    return np.unique(np.concatenate([ic.from_bus[ic.from_member == m], ic.to_bus[ic.to_member == m]]))


def member_prices_table(
    fed: Federation, prices: list[np.ndarray], own_prices: list[np.ndarray] | None = None
) -> pd.DataFrame:
    """One row per (member, border node, period): the member's cross-border marginal price (€/MWh); `prices[m]`
    is (len(border_buses(m)), T).  `own_prices`, if given (the decomposed platforms), adds the price at that node
    in the member's own clearing with the flows fixed (`member_clearing_price_eur_mwh`, docs/model.md §12.4)."""
    frames = []
    T = fed.n_periods
    for m, name in enumerate(fed.members):
        bus = border_buses(fed, m)
        frame = pd.DataFrame(
            {
                "member": name,
                "node": np.repeat(fed.instances[m].buses.id[bus], T),
                "period": np.tile(fed.periods, len(bus)),
                "price_eur_mwh": np.asarray(prices[m], float).reshape(len(bus), T).ravel(),
            }
        )
        if own_prices is not None:
            frame["member_clearing_price_eur_mwh"] = np.asarray(own_prices[m], float).reshape(len(bus), T).ravel()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def flows_table(fed: Federation, flows_mw: np.ndarray, prices: list[np.ndarray], period_hours: float) -> pd.DataFrame:
    """One row per (interconnector, period): flow, capacities, the prices at both ends and the congestion rent
    g·(λ_to − λ_from)·Δ (€; the platform's income from buying at the cheap end and selling at the dear one)."""
    ic = fed.interconnectors
    K, T = len(ic), fed.n_periods
    p_from, p_to = np.zeros((K, T)), np.zeros((K, T))
    for m in range(fed.n_members):
        bus = border_buses(fed, m)
        fr = np.flatnonzero(ic.from_member == m)
        p_from[fr] = prices[m][np.searchsorted(bus, ic.from_bus[fr])]
        to = np.flatnonzero(ic.to_member == m)
        p_to[to] = prices[m][np.searchsorted(bus, ic.to_bus[to])]
    names = np.array(fed.members, dtype=object)
    return pd.DataFrame(
        {
            "interconnector": np.repeat(ic.id, T),
            "from_member": np.repeat(names[ic.from_member], T),
            "to_member": np.repeat(names[ic.to_member], T),
            "period": np.tile(fed.periods, K),
            "flow_mw": flows_mw.ravel(),
            "atc_forward_mw": ic.atc_forward_mw.ravel(),
            "atc_backward_mw": ic.atc_backward_mw.ravel(),
            "congested": ((flows_mw >= ic.atc_forward_mw - 1e-6) | (flows_mw <= -ic.atc_backward_mw + 1e-6)).ravel()
            & ((ic.atc_forward_mw + ic.atc_backward_mw) > 0).ravel(),
            "price_from_eur_mwh": p_from.ravel(),
            "price_to_eur_mwh": p_to.ravel(),
            "congestion_rent_eur": (flows_mw * (p_to - p_from) * period_hours).ravel(),
        }
    )


def net_positions(fed: Federation, flows_mw: np.ndarray) -> np.ndarray:
    """(M, T) net export of every member (MW): Σ of its outgoing flows minus its incoming ones."""
    ic = fed.interconnectors
    out = np.zeros((fed.n_members, fed.n_periods))
    np.add.at(out, ic.from_member, flows_mw)
    np.add.at(out, ic.to_member, -flows_mw)
    return out


def base_summary(fed: Federation, scheme: str, member_costs: dict[str, dict], flows: pd.DataFrame) -> dict:
    """The summary fields every platform scheme fills: costs (total and per member), net positions, rents."""
    total = {
        k: float(sum(c[k] for c in member_costs.values()))
        for k in ("market_cost_eur", "slack_cost_eur", "total_cost_eur")
    }
    K, T = len(fed.interconnectors), fed.n_periods
    g = flows["flow_mw"].to_numpy().reshape(K, T) if K else np.zeros((0, T))
    rent = flows.groupby("interconnector", sort=True)["congestion_rent_eur"].sum() if K else pd.Series(dtype=float)
    return {
        "scheme": scheme,
        "federation": fed.name,
        "members": list(fed.members),
        "periods": [int(p) for p in fed.periods],
        "cost": total,
        "member_costs": member_costs,
        "net_position_mw": {name: [float(v) for v in row] for name, row in zip(fed.members, net_positions(fed, g))},
        "congestion_rent_eur": {str(int(k)): float(v) for k, v in rent.items()},
        "congestion_rent_total_eur": float(rent.sum()) if K else 0.0,
        "max_abs_flow_mw": float(np.abs(g).max(initial=0.0)),
    }
