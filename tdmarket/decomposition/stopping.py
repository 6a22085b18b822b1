"""Stopping rules of the cut exchange as small objects (in the spirit of SDDP.jl's `AbstractStoppingRule`).

A rule looks at the loop's `Progress` (bounds and history) and returns the reason to stop, or None.  The
loop stops at the first rule that fires and reports its name; the certified gap is always reported with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    """Bounds of the cut exchange so far (€)."""

    lower_bound: float = -math.inf
    upper_bound: float = math.inf
    rounds: int = 0
    started: float = field(default_factory=time.perf_counter)
    gaps: list[float] = field(default_factory=list)  # UB − LB after each round

    @property
    def gap_eur(self) -> float:
        return self.upper_bound - self.lower_bound

    @property
    def relative_gap(self) -> float:
        """(UB − LB) / max(1, |UB|): scale-free, and defined for markets whose cost is near zero."""
        if not (math.isfinite(self.upper_bound) and math.isfinite(self.lower_bound)):
            return math.inf
        return max(self.gap_eur, 0.0) / max(1.0, abs(self.upper_bound))

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


class StoppingRule:
    name = "rule"

    def check(self, p: Progress) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class RelativeGap(StoppingRule):
    tol: float = 1e-4
    name = "relative_gap"

    def check(self, p: Progress) -> str | None:
        return f"relative gap {p.relative_gap:.3g} <= {self.tol:g}" if p.relative_gap <= self.tol else None


@dataclass
class AbsoluteGap(StoppingRule):
    tol_eur: float = 0.01
    name = "absolute_gap"

    def check(self, p: Progress) -> str | None:
        return f"gap {p.gap_eur:.4g} EUR <= {self.tol_eur:g} EUR" if p.gap_eur <= self.tol_eur else None


@dataclass
class Stall(StoppingRule):
    """No relative progress of the gap by more than `min_improvement` over `rounds` rounds."""

    rounds: int = 5
    min_improvement: float = 0.01
    name = "stall"

    def check(self, p: Progress) -> str | None:
        if len(p.gaps) <= self.rounds:
            return None
        old, new = p.gaps[-self.rounds - 1], p.gaps[-1]
        if math.isfinite(old) and new > (1.0 - self.min_improvement) * old:
            return f"no progress in {self.rounds} rounds (gap {new:.4g} EUR)"
        return None


@dataclass
class IterationLimit(StoppingRule):
    limit: int = 50
    name = "iteration_limit"

    def check(self, p: Progress) -> str | None:
        return f"{p.rounds} rounds" if p.rounds >= self.limit else None


@dataclass
class TimeLimit(StoppingRule):
    seconds: float
    started: float = field(default_factory=time.perf_counter)
    name = "time_limit"

    def remaining(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def check(self, p: Progress) -> str | None:
        return f"time limit {self.seconds:g} s" if self.remaining() <= 0 else None


def first_stop(rules: list[StoppingRule], p: Progress) -> tuple[str, str] | None:
    """(rule name, reason) of the first rule that fires."""
    for r in rules:
        why = r.check(p)
        if why is not None:
            return r.name, why
    return None
