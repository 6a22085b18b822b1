"""Messages between operators (docs/model.md §6.2 table).  Only these objects cross operator boundaries.

They belong to the decomposition's protocol: the schemes write and read them, the operators' runtime carries
and logs them.

Every message serialises to JSON (`to_json`), and the run logs each one with its size to `messages.jsonl`.
Contents are interface-level only: area names, periods, exchanges (MW), costs (€) and prices (€/MWh); never a
DSO-internal bus, line or order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass
class Message:
    sender: str
    receiver: str
    stage: str

    @property
    def kind(self) -> str:
        return type(self).__name__

    # fields left out of the payload while empty (e.g. the D–D coupling's Q and w, which no T–D message carries)
    OMIT_EMPTY: ClassVar[tuple[str, ...]] = ()

    def payload(self) -> dict:
        d = asdict(self)
        for k in ("sender", "receiver", "stage"):
            d.pop(k)
        for k in self.OMIT_EMPTY:
            if not d[k]:
                d.pop(k)
        return d

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "from": self.sender,
                "to": self.receiver,
                "stage": self.stage,
                "payload": self.payload(),
            },
            sort_keys=True,
            allow_nan=False,
        )


@dataclass
class CurveOffer(Message):
    """DSO → parent: per period, the exchange range and the breakpoints (MW, €) of the residual supply curve."""

    periods: list[int] = field(default_factory=list)
    xi_mw: list[list[float]] = field(default_factory=list)
    cost_eur: list[list[float]] = field(default_factory=list)
    eps_eur: list[float] = field(default_factory=list)
    flags: list[list[str]] = field(default_factory=list)
    cuts: list[dict] = field(
        default_factory=list
    )  # every evaluation as {point, value, slope} (seed cuts of the cut exchange)


@dataclass
class Schedule(Message):
    """Parent → DSO: cleared exchange per period (MW exported) and the interface price (€/MWh)."""

    periods: list[int] = field(default_factory=list)
    export_mw: list[float] = field(default_factory=list)
    price_eur_mwh: list[float] = field(default_factory=list)
    iteration: int = 0
    # parent DSO → sub-DSO: the reactive exchange (Mvar) and the squared voltage of the child root (p.u.²) per
    # period that go with the exchange (docs/model.md §6.4); empty at a T–D interface
    reactive_mvar: list[float] = field(default_factory=list)
    root_vsq_pu: list[float] = field(default_factory=list)
    OMIT_EMPTY: ClassVar[tuple[str, ...]] = ("reactive_mvar", "root_vsq_pu")


@dataclass
class CutReply(Message):
    """DSO → TSO in the iterative variant: C_d(x^k) (€), its subgradient ρ^k (€/MW per period), slack flag."""

    point_mw: list[float] = field(default_factory=list)
    cost_eur: float = 0.0
    slope_eur_mw: list[float] = field(default_factory=list)
    uses_slack: bool = False
    iteration: int = 0
    # further evaluations as {point, value, slope} (a point that needed slack is also evaluated halfway back
    # towards the DSO's slack-free ranges, docs/model.md §6.3)
    extra_cuts: list[dict] = field(default_factory=list)
    # sub-DSO → parent DSO, asked at (P, Q, w): the point's Q (Mvar) and w (p.u.²) and the subgradient in them
    # (€/Mvar, € per p.u.²) per period; empty at a T–D interface
    point_mvar: list[float] = field(default_factory=list)
    point_vsq_pu: list[float] = field(default_factory=list)
    slope_eur_mvar: list[float] = field(default_factory=list)
    slope_eur_pu: list[float] = field(default_factory=list)
    OMIT_EMPTY: ClassVar[tuple[str, ...]] = ("point_mvar", "point_vsq_pu", "slope_eur_mvar", "slope_eur_pu")

    @property
    def coupling_point(self) -> list[float]:
        """The point as the parent's cuts of this child hold it: (P, Q, w) per period, or P alone."""
        return list(self.point_mw) + list(self.point_mvar) + list(self.point_vsq_pu)

    @property
    def coupling_slope(self) -> list[float]:
        return list(self.slope_eur_mw) + list(self.slope_eur_mvar) + list(self.slope_eur_pu)


@dataclass
class CostAtExchange(Message):
    """DSO with sub-DSOs → parent, once its sub-DSOs answered at the exchanges it proposed them: its cost (€) at
    the exchange `point_mw` it was asked, with its children's actual costs there.  An upper bound of its C_d at
    that point, where its `CutReply` (from its cuts of the children's costs) gave a lower one."""

    point_mw: list[float] = field(default_factory=list)
    cost_eur: float = 0.0
    iteration: int = 0


@dataclass
class DispatchReport(Message):
    """DSO → parent after dispatch: slack used, curve error at the schedule, price mismatch |ρ − π|."""

    slack_mw: float = 0.0
    curve_error_eur: float = 0.0
    rho_eur_mwh: list[float] = field(default_factory=list)
    integrality_cost_eur: float = 0.0
    soc_gap_max: float = 0.0
    # the relaxed cost C_d at the schedule (€) and a subgradient (€ per MW, per period): a cut, which the integer
    # repair adds to its parent's model (None where the DSO sent no curve)
    relaxed_cost_eur: float | None = None
    relaxed_slope_eur_mw: list[float] | None = None


@dataclass
class BestResponse(Message):
    """DSO → TSO in the integer repair (docs/model.md §6.3): the exchange this DSO prefers at the published
    interface prices with its binaries decided (MW per period), its mixed-integer cost there and at the schedule
    it was dispatched at (€, own orders, slack and children's offers; the exchange's value excluded), and a lower
    bound L of min_x C^MI(x) − Δπᵀx (€, the mixed-integer solve's bound; None if none): the Lagrangian cut
    C^MI(x) >= L + Δπᵀx holds at every exchange x; and more exchanges its binaries deliver (its menu)."""

    periods: list[int] = field(default_factory=list)
    export_mw: list[float] = field(default_factory=list)
    cost_eur: float | None = None
    cost_at_schedule_eur: float | None = None
    bound_eur: float | None = None
    # other exchanges its binaries deliver (MW per period), with their costs (€): the nearest to the schedule, and
    # the best responses at prices a little above and below π (docs/model.md §6.3 item 8)
    menu_mw: list[list[float]] = field(default_factory=list)
    menu_cost_eur: list[float] = field(default_factory=list)
    # per exchange (the best response first, then the menu's): an opaque label of the binaries that deliver it
    # (equal labels, equal binaries; nothing else about them), and a subgradient of the cost of those binaries
    # at it (€ per MW exported, per period; None where unknown): with them the TSO models each configuration's
    # convex cost by cuts instead of single points
    # and the exchanges those binaries deliver without slack (([lo], [hi], [lo with fictitious losses burnt]) MW per
    # period, the other periods held)
    configuration: str | None = None
    slope_eur_mw: list[float] | None = None
    range_mw: tuple[list[float], list[float], list[float]] | None = None
    menu_configuration: list[str | None] = field(default_factory=list)
    menu_slope_eur_mw: list[list[float] | None] = field(default_factory=list)
    menu_range_mw: list[tuple[list[float], list[float], list[float]] | None] = field(default_factory=list)


@dataclass
class MarketCost(Message):
    """Parent → DSO in the integer repair (docs/model.md §6.3 item 8): what the rest of the market (the parent's
    own cost and its other children's) costs as a function of this DSO's exchange, with the parent's binaries
    and the other children's choices held: cuts {point (MW per period), value (€), slope (€ per MW)} of that
    convex function, and the exchange the parent's choice gave this DSO (MW per period).  The DSO answers with
    the exchange its binaries deliver that minimises its cost plus that function (a `BestResponse` menu entry)."""

    periods: list[int] = field(default_factory=list)
    export_mw: list[float] = field(default_factory=list)
    cuts: list[dict] = field(default_factory=list)


@dataclass
class NestedEvaluation:
    """What a DSO with sub-DSOs answers an evaluation: its reply to its parent (its value from its cuts of the
    children's costs, a lower bound) and a schedule for each child (the exchange it proposes it there)."""

    reply: CutReply
    child_schedules: list[Schedule]
    point: list[float] = field(default_factory=list)  # the point it was evaluated at (P, or P, Q and w)


@dataclass
class AgentInit:
    """Market setup (operator → its own agent, never to another operator): what a DSO agent is built from —
    its own sub-instance (or, in an operator layout, the `tdmarket.io.layout.OperatorFolder` that its host reads
    on the worker) and options, its parent's name, its children's curve offers, and any activations locked
    by an earlier local clearing.  Sent once, to the worker that hosts the agent."""

    sub: Any
    opts: Any
    parent: str
    child_offers: list
    locked: dict | None = None
