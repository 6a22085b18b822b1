"""Result of a platform-level clearing (docs/model.md §12.4)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..model.instance import Instance
from ..schemes.result import ClearingResult


@dataclass
class FederationResult:
    """`flows`: one row per (interconnector, period): flow_mw, capacities, the prices at both ends (€/MWh) and the
    congestion rent g·(λ_to − λ_from)·Δ (€).  `member_prices`: the cross-border marginal price of every member and
    period (€/MWh, the price at its border nodes; one row per member, border node and period).  `members`: each
    member's own result at the platform's flows (member ids); for the integrated scheme, `merged` holds the one
    clearing of all members (merged instance and its result, ids shifted per member).  `messages`: the
    platform-level messages (member-level ones are counted in `summary["communication"]`)."""

    scheme: str
    federation: str
    summary: dict
    flows: pd.DataFrame
    member_prices: pd.DataFrame
    members: dict[str, ClearingResult] = field(default_factory=dict)
    member_instances: dict[str, Instance] = field(default_factory=dict)  # each member as cleared (flows imposed)
    merged: tuple[Instance, ClearingResult] | None = None
    messages: list[dict] = field(default_factory=list)

    @property
    def total_cost(self) -> float:
        """Σ over members of market + slack cost (€)."""
        return float(self.summary["cost"]["total_cost_eur"])
