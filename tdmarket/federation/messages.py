"""Messages between the platform and the member TSOs (docs/model.md §12.2), logged like every other message.

Contents are federation-level only: member names, interconnector ids (declared in the federation's
`Interconnectors.csv`, public), periods, flows (MW), costs (€) and slopes (€/MW).  A member's buses, lines, orders
and DSOs never appear: the member maps its interconnectors to its own border nodes itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..decomposition.messages import Message

PLATFORM = "platform"


@dataclass
class FlowSchedule(Message):
    """Platform → TSO: the flows (MW, positive from the from end) on the member's interconnectors per period."""

    interconnectors: list[int] = field(default_factory=list)
    periods: list[int] = field(default_factory=list)
    flow_mw: list[list[float]] = field(default_factory=list)
    round: int = 0


@dataclass
class FlowCut(Message):
    """TSO → platform: the member's cost V_m at the scheduled flows (€) and ∂V_m/∂g (€/MW per interconnector and
    period): one cut θ_m >= V_m(ĝ) + slopeᵀ(g − ĝ)."""

    interconnectors: list[int] = field(default_factory=list)
    periods: list[int] = field(default_factory=list)
    cost_eur: float = 0.0
    slope_eur_mw: list[list[float]] = field(default_factory=list)
    round: int = 0
