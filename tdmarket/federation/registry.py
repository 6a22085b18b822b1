"""The platform-level scheme registry (docs/model.md §12.3): id, runner, member scheme, description.

    integrated    one clearing of every member with all grids and the interconnectors (the reference)
    hierarchical  platform → TSO → DSO: the platform's cut exchange over the members' hierarchical clearings
    dso-unaware   today's practice: TSOs send T-level information only (D grids ignored), then checked
    isolated      every member alone, no cross-border exchange

`clear_federation(fed, scheme, **options)` checks the options as `tdmarket.clear` does and runs the scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..decomposition.exchange import ExchangeSettings
from ..errors import InputError
from ..model.federation import Federation
from .result import FederationResult


@dataclass(frozen=True)
class PlatformSchemeSpec:
    id: str
    runner: Callable[[Federation, dict, ExchangeSettings], FederationResult]
    member_scheme: str  # how each member clears (or is evaluated) under this platform scheme
    description: str


def _integrated(fed, options, settings):
    from .integrated import run_integrated

    return run_integrated(fed, options, settings)


def _hierarchical(fed, options, settings):
    from .platform import run_platform

    return run_platform(fed, "hierarchical", "hierarchical", options, settings)


def _dso_unaware(fed, options, settings):
    from .platform import run_platform

    return run_platform(fed, "dso-unaware", "centralized-as-market", options, settings)


def _isolated(fed, options, settings):
    from .platform import run_isolated

    return run_isolated(fed, options, "common")


PLATFORM_SCHEMES: dict[str, PlatformSchemeSpec] = {
    s.id: s
    for s in (
        PlatformSchemeSpec("integrated", _integrated, "common", "one clearing of every member with all grids"),
        PlatformSchemeSpec(
            "hierarchical", _hierarchical, "hierarchical", "platform → TSO → DSO cut exchange (nested decomposition)"
        ),
        PlatformSchemeSpec(
            "dso-unaware",
            _dso_unaware,
            "centralized-as-market",
            "TSOs submit T-level information only; distribution grids ignored, then checked",
        ),
        PlatformSchemeSpec("isolated", _isolated, "common", "every member alone, no cross-border exchange"),
    )
}


def platform_scheme_names() -> list[str]:
    return list(PLATFORM_SCHEMES)


def get(name: str) -> PlatformSchemeSpec:
    if name not in PLATFORM_SCHEMES:
        raise InputError(f"unknown platform scheme {name!r} (available: {', '.join(PLATFORM_SCHEMES)})")
    return PLATFORM_SCHEMES[name]


def clear_federation(
    fed: Federation,
    scheme: str = "hierarchical",
    *,
    platform_gap: float = 1e-5,
    platform_rounds: int = 60,
    **options,
) -> FederationResult:
    """Clear a federation with a platform scheme.  `options` are those of `tdmarket.clear` (model, solve,
    decentral and decomposition options; each member scheme takes those it accepts); `platform_gap` (relative)
    and `platform_rounds` stop the platform's cut exchange."""
    from ..api import check_options

    check_options(options)
    if not 0 < platform_gap < 1:
        raise InputError(f"platform_gap = {platform_gap!r} is invalid: must be in (0, 1)")
    if int(platform_rounds) < 1:
        raise InputError(f"platform_rounds = {platform_rounds!r} is invalid: must be an integer >= 1")
    spec = get(scheme)
    # every member is asked every round (skip_share 0): a member's answer is a whole clearing of its system, and
    # the flow copies of the members are tied, so a member's value cannot be bracketed apart from the others'; for
    # the same reason no probe at the bound's point (`CutExchange._probe`: it would double the members' clearings)
    settings = ExchangeSettings(
        gap=platform_gap,
        max_rounds=int(platform_rounds),
        stall_rounds=int(platform_rounds),
        skip_share=0.0,
        probe=False,
    )
    options = {k: v for k, v in options.items() if k != "progress"}
    return spec.runner(fed, options, settings)
