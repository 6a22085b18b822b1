"""Top-level API: `clear(instance, scheme=...)` dispatches to the scheme implementations.

It sits above the operators layer because the decentralised schemes run as operator agents.
"""
from __future__ import annotations

from .errors import InputError
from .schemes.result import ClearingResult

SCHEME_ALIASES = {"centralized": "centralized", "common": "centralized", "hierarchical": "hierarchical",
                  "shared-balancing": "shared-balancing", "no-coordination": "no-coordination",
                  "centralized-as-market": "centralized-as-market", "local-as-market": "local-as-market"}
SCHEMES = ("centralized", "common", "hierarchical", "centralized-as-market", "local-as-market", "shared-balancing",
           "no-coordination")
HIERARCHICAL_ONLY = ("executor", "workers", "address", "curve_tol", "max_evals", "iterate", "iter_tol_abs",
                     "iter_tol_rel", "max_iterations")


def clear(instance, scheme: str = "centralized", **options) -> ClearingResult:
    """Clear `instance` (an Instance or a path) with a coordination scheme; see the README for options."""
    if not hasattr(instance, "buses"):
        from .io.smartnet import read_instance
        instance = read_instance(instance)
    key = SCHEME_ALIASES.get(scheme)
    if key is None:
        raise InputError(f"unknown scheme {scheme!r} (available: {', '.join(SCHEMES)})")
    if key == "centralized":
        from .schemes.centralized import clear_centralized
        options = {k: v for k, v in options.items() if k not in HIERARCHICAL_ONLY}
        return clear_centralized(instance, scheme_name=scheme, **options)
    if key == "centralized-as-market":
        from .schemes.centralized_as_market import clear_centralized_as_market
        options = {k: v for k, v in options.items() if k not in HIERARCHICAL_ONLY}
        return clear_centralized_as_market(instance, scheme_name=scheme, **options)
    options.pop("incentives", None)
    if key in ("shared-balancing", "no-coordination"):
        from .operators.coordination import run_fixed_exchange
        for k in ("curve_tol", "max_evals", "iterate", "iter_tol_abs", "iter_tol_rel", "max_iterations"):
            options.pop(k, None)
        return run_fixed_exchange(instance, schedule="base" if key == "shared-balancing" else "zero",
                                  scheme_name=scheme, **options)
    if key == "local-as-market":
        from .operators.coordination import run_local_as_market
        return run_local_as_market(instance, scheme_name=scheme, **options)
    from .operators.hierarchical_run import run_hierarchical
    return run_hierarchical(instance, scheme_name=scheme, **options)


def gap_to(result: ClearingResult, reference: ClearingResult) -> float:
    """(cost − cost_ref) / max(1, |cost_ref|) (MODEL.md §9)."""
    ref = reference.total_cost
    return (result.total_cost - ref) / max(1.0, abs(ref))
