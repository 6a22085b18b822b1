"""Top-level API: `clear(instance, scheme=...)` dispatches to the scheme implementations.

It sits above the operators layer because the decentralised schemes run as operator agents.  Every scheme's
result then carries the lost opportunity costs and the settlement at its own published prices.
"""

from __future__ import annotations

from .errors import InputError
from .schemes.result import ClearingResult

SCHEMES = (
    "centralized",
    "common",
    "hierarchical",
    "centralized-as-market",
    "local-as-market",
    "shared-balancing",
    "no-coordination",
)
MODEL_KEYS = (
    "slack_penalty",
    "dist_model",
    "reactive_policy",
    "interface_reactive",
    "zero_root_q",
    "pi_model",
    "polygon_sides",
    "period_hours",
)
SOLVE_KEYS = ("relax", "mip_gap", "time_limit", "threads", "progress")
DECENTRAL_KEYS = ("executor", "workers", "address")
CURVE_KEYS = ("curve_tol", "max_evals", "iterate", "iter_tol_abs", "iter_tol_rel", "max_iterations")


def clear(instance, scheme: str = "centralized", *, incentives: bool = True, **options) -> ClearingResult:
    """Clear `instance` (an Instance or a path) with a coordination scheme; see the README for the options.

    `incentives=False` skips the lost-opportunity-cost and settlement computation."""
    if not hasattr(instance, "buses"):
        from .io import read

        instance = read(instance)
    if scheme not in SCHEMES:
        raise InputError(f"unknown scheme {scheme!r} (available: {', '.join(SCHEMES)})")
    take = lambda *groups: {k: v for k, v in options.items() if any(k in g for g in groups)}
    unknown = set(options) - set(MODEL_KEYS + SOLVE_KEYS + DECENTRAL_KEYS + CURVE_KEYS)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(sorted(unknown))}")
    if scheme in ("centralized", "common"):
        from .schemes.centralized import clear_centralized

        result = clear_centralized(instance, scheme_name=scheme, incentives=False, **take(MODEL_KEYS, SOLVE_KEYS))
    elif scheme == "centralized-as-market":
        from .schemes.centralized_as_market import clear_centralized_as_market

        result = clear_centralized_as_market(instance, scheme_name=scheme, **take(MODEL_KEYS, SOLVE_KEYS))
    elif scheme in ("shared-balancing", "no-coordination"):
        from .operators.coordination import run_fixed_exchange

        result = run_fixed_exchange(
            instance,
            schedule="base" if scheme == "shared-balancing" else "zero",
            scheme_name=scheme,
            **take(MODEL_KEYS, SOLVE_KEYS, DECENTRAL_KEYS),
        )
    elif scheme == "local-as-market":
        from .operators.coordination import run_local_as_market

        result = run_local_as_market(
            instance, scheme_name=scheme, **take(MODEL_KEYS, SOLVE_KEYS, DECENTRAL_KEYS, CURVE_KEYS)
        )
    else:
        from .operators.hierarchical_run import run_hierarchical

        result = run_hierarchical(
            instance, scheme_name=scheme, **take(MODEL_KEYS, SOLVE_KEYS, DECENTRAL_KEYS, CURVE_KEYS)
        )
    if incentives:
        from .formulations.options import ModelOptions
        from .schemes.incentives import attach_incentives

        opts = ModelOptions(integer=not options.get("relax", False), **take(MODEL_KEYS))
        attach_incentives(instance, result.tables, result.summary, opts, scheme)
    return result


def gap_to(result: ClearingResult, reference: ClearingResult) -> float:
    """(cost − cost_ref) / max(1, |cost_ref|) (MODEL.md §9)."""
    ref = reference.total_cost
    return (result.total_cost - ref) / max(1.0, abs(ref))
