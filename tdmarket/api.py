"""Top-level API: `clear(instance, scheme=...)` looks the scheme up in the registry and runs it.

It sits above the operators layer: the decentralised schemes get the operators' runtime from here (injected into
their context), so that `tdmarket.schemes` never imports the runtime.  Every scheme's result then carries the
lost opportunity costs and the settlement at its own published prices.
"""

from __future__ import annotations

import logging
import platform
from datetime import UTC, datetime
from importlib import metadata

from .errors import InputError
from .formulations.options import ModelOptions
from .schemes import registry
from .schemes.registry import OPTION_GROUPS, SchemeContext
from .schemes.result import ClearingResult


def scheme_names() -> list[str]:
    """Every accepted scheme name (ids and aliases)."""
    return registry.names()


log = logging.getLogger(__name__)

# Options that decide where the work runs, not what it computes: recorded, but not part of a result's identity.
EXECUTION_OPTIONS = ("progress", "executor", "workers", "address")
SOLVER_PACKAGES = ("highspy", "clarabel")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def result_options(scheme: str, options: dict, *, incentives: bool = True) -> dict:
    """The options that determine a scheme's result, sorted by name: those given that the scheme accepts
    (without `EXECUTION_OPTIONS`), every model option with its default filled in (`ModelOptions`), and
    `incentives`.  Two runs with equal `result_options` and equal inputs compute the same result."""
    from dataclasses import asdict, fields

    spec = registry.get(scheme)
    given = {k: v for k, v in options.items() if spec.accepts(k) and k not in EXECUTION_OPTIONS}
    solve_defaults = {f.name: f.default for f in fields(SchemeContext) if f.name in OPTION_GROUPS["solve"]}
    solve = {k: v for k, v in solve_defaults.items() if k not in EXECUTION_OPTIONS}
    model = {k: v for k, v in given.items() if k in OPTION_GROUPS["model"]}
    effective = asdict(ModelOptions(integer=not bool(given.get("relax", False)), **model))
    merged = solve | given | effective | {"incentives": bool(incentives)}
    return {k: merged[k] for k in sorted(merged)}


def provenance(instance, scheme: str, options: dict, *, incentives: bool = True) -> dict:
    """Where a result comes from: versions (tdmarket, Python, solvers), scheme and options, the input's
    checksum (`tdmarket.io.checksum`) and content fingerprint, and the UTC time it was computed."""
    from . import __version__

    spec = registry.get(scheme)
    return {
        "tdmarket": __version__,
        "python": platform.python_version(),
        "solvers": {name: package_version(name) for name in SOLVER_PACKAGES},
        "platform": platform.platform(),
        "scheme": spec.id,
        "scheme_requested": scheme,
        "options": result_options(scheme, options, incentives=incentives),
        "execution": {k: options[k] for k in EXECUTION_OPTIONS if k in options and k != "progress"},
        "instance": {
            "name": instance.name,
            "source": instance.source,
            "input_sha256": getattr(instance, "input_sha256", None),
            "fingerprint": instance.fingerprint(),
        },
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


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
    record = provenance(instance, scheme, options, incentives=incentives)
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
    result.summary["provenance"] = record
    for warning in result.summary.get("warnings", []):
        log.warning("%s: %s", scheme, warning)
    return result


def gap_to(result: ClearingResult, reference: ClearingResult) -> float:
    """(cost − cost_ref) / max(1, |cost_ref|) (docs/model.md §9)."""
    ref = reference.total_cost
    return (result.total_cost - ref) / max(1.0, abs(ref))
