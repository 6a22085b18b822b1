"""Model options shared by every problem (docs/model.md §3–§5)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

DIST_MODELS = ("socp", "lindistflow")  # the keys of the formulation registry (`distribution.py`), for the CLI
REACTIVE_POLICIES = ("bounded", "zero", "free")
# the DSOs' dispatch model in the hierarchical schemes: the clearing's (SOC or LinDistFlow) model, or that model then
# the exact AC re-dispatch of every area that is not AC-deliverable (docs/model.md §5(h))
DISPATCH_MODELS = ("soc", "ac")


@dataclass(frozen=True)
class ModelOptions:
    slack_penalty: float = 1e4  # κ, €/MWh and €/Mvarh
    dist_model: str = "socp"  # "socp" (branch-flow SOC relaxation) or "lindistflow"
    reactive_policy: str = "bounded"  # §4.3
    interface_reactive: bool = True  # the root may export/import reactive power (§3.2)
    zero_root_q: bool = False  # research code zeroed root Q injections
    pi_model: bool = True  # model D line charging, taps and shunts
    polygon_sides: int = 8  # K of the inscribed K-gon replacing circles in LinDistFlow
    integer: bool = True  # binaries for the order logic (False = continuous relaxation (b), logic kept)
    period_hours: float = 1.0  # Δ, money = €/MWh × MW × Δ

    def relaxed(self) -> ModelOptions:
        """The same options with binaries relaxed (order logic kept)."""
        from dataclasses import replace

        return replace(self, integer=False)

    def validate(self, max_abs_price: float = 0.0) -> ModelOptions:
        from .distribution import distribution_formulation  # (imports this module)

        distribution_formulation(self)  # raises InputError for an unknown distribution model
        if self.reactive_policy not in REACTIVE_POLICIES:
            raise InputError(
                f"unknown reactive policy {self.reactive_policy!r} (choose from {', '.join(REACTIVE_POLICIES)})"
            )
        if self.slack_penalty <= max_abs_price:
            raise InputError(
                f"slack penalty {self.slack_penalty} €/MWh must exceed the largest order price {max_abs_price} €/MWh"
            )
        if self.polygon_sides < 3:
            raise InputError("polygon_sides must be at least 3")
        if self.period_hours <= 0:
            raise InputError("period_hours must be positive")
        return self
