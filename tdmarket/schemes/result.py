"""Result of a clearing: tables (pandas) + a JSON-serialisable summary + exchanged messages."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class ClearingResult:
    scheme: str
    instance: str
    tables: dict[str, pd.DataFrame]
    summary: dict
    messages: list[dict] = field(default_factory=list)

    @property
    def total_cost(self) -> float:
        """Market + slack cost (€)."""
        return float(self.summary["cost"]["total_cost_eur"])

    def prices(self) -> pd.DataFrame:
        return self.tables["buses"][["node", "period", "kind", "price_p_eur_mwh", "price_q_eur_mvarh"]]
