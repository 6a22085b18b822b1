"""Top-level API: `clear(instance, scheme=...)` looks the scheme up in the registry and runs it.

It sits above the operators layer: the decentralised schemes get the operators' runtime from here (injected into
their context), so that `tdmarket.schemes` never imports the runtime.  Every scheme's result then carries the
lost opportunity costs and the settlement at its own published prices.
"""

from __future__ import annotations

from .errors import InputError
from .formulations.options import ModelOptions
from .schemes import registry
from .schemes.registry import OPTION_GROUPS, SchemeContext
from .schemes.result import ClearingResult


def scheme_names() -> list[str]:
    """Every accepted scheme name (ids and aliases)."""
    return registry.names()


def _runtime_factory(**kw):
    from .operators.runtime import Runtime

    return Runtime(**kw)


def clear(instance, scheme: str = "centralized", *, incentives: bool = True, **options) -> ClearingResult:
    """Clear `instance` (an Instance or a path) with a coordination scheme; see the README for the options.

    Options a scheme does not take are ignored (so one set of options can drive a comparison); unknown option
    names are an error.  `incentives=False` skips the lost-opportunity-cost and settlement computation."""
    if not hasattr(instance, "buses"):
        from .io import read

        instance = read(instance)
    spec = registry.get(scheme)
    unknown = set(options) - registry.ALL_OPTIONS
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(sorted(unknown))}")
    given = {k: v for k, v in options.items() if spec.accepts(k)}
    model_options = {k: v for k, v in given.items() if k in OPTION_GROUPS["model"]}
    relax = bool(given.get("relax", False))
    ctx = SchemeContext(
        scheme=scheme,
        opts=ModelOptions(integer=not relax, **model_options),
        relax=relax,
        mip_gap=given.get("mip_gap", 1e-3),
        time_limit=given.get("time_limit"),
        threads=given.get("threads", 1),
        progress=given.get("progress"),
        options={k: v for k, v in given.items() if k in OPTION_GROUPS["decentral"] + OPTION_GROUPS["decomposition"]},
        model_options=model_options,
        runtime_factory=_runtime_factory,
    )
    result = spec.runner(instance, ctx)
    if incentives:
        from .market.incentives import attach_incentives

        opts = ModelOptions(integer=not options.get("relax", False), **model_options)
        attach_incentives(
            instance,
            result.tables,
            result.summary,
            opts,
            scheme,
            settles_at_interface=spec.settles_at_interface,
        )
    return result


def gap_to(result: ClearingResult, reference: ClearingResult) -> float:
    """(cost − cost_ref) / max(1, |cost_ref|) (docs/model.md §9)."""
    ref = reference.total_cost
    return (result.total_cost - ref) / max(1.0, abs(ref))
