"""Top-level API: `clear(instance, scheme=...)` looks the scheme up in the registry and runs it.

It sits above the operators layer: the decentralised schemes get the operators' runtime from here (injected into
their context), so that `tdmarket.schemes` never imports the runtime.  Every scheme's result then carries the
lost opportunity costs and the settlement at its own published prices.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

import numpy as np

from .errors import InputError
from .formulations.options import DISPATCH_MODELS, DIST_MODELS, REACTIVE_POLICIES, ModelOptions
from .operators.executors import EXECUTORS, start_process_workers_early
from .schemes import registry
from .schemes.registry import OPTION_GROUPS, SchemeContext
from .schemes.result import ClearingResult


@dataclass(frozen=True)
class OptionRule:
    """What one keyword option of `clear` accepts: a number of a kind within [lo, hi] (an open end with
    `lo_open`/`hi_open`), a bool, one of `choices`, a callable, or text; `none_ok` also accepts None."""

    kind: str  # "real", "int", "bool", "choice", "callable", "text"
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    none_ok: bool = False
    unit: str = ""

    def accepts(self, value) -> bool:
        if value is None:
            return self.none_ok
        if self.kind == "bool":
            return isinstance(value, (bool, np.bool_))
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "callable":
            return callable(value)
        if self.kind == "text":
            return isinstance(value, str)
        kind = numbers.Integral if self.kind == "int" else numbers.Real
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind) or not math.isfinite(float(value)):
            return False
        number = float(value)  # exact for the rules' bounds (below 2**53); numbers.Real declares no `>`
        above = number > self.lo if self.lo_open else number >= self.lo
        below = number < self.hi if self.hi_open else number <= self.hi
        return above and below

    def describe(self) -> str:
        if self.kind == "bool":
            text = "True or False"
        elif self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "callable":
            text = "a function"
        elif self.kind == "text":
            text = "a string"
        else:
            what = "an integer" if self.kind == "int" else "a finite number"
            ends = f"{'(' if self.lo_open else '['}{_bound(self.lo)}, {_bound(self.hi)}{')' if self.hi_open else ']'}"
            text = f"{what} in {ends}" + (f" {self.unit}" if self.unit else "")
        return text + (" or None" if self.none_ok else "")


def _bound(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:g}"


# Every keyword option of `clear` (the registry's option groups) and what it accepts; checked in one place,
# `check_option`, by the API and the command line alike.
OPTION_RULES: dict[str, OptionRule] = {
    "slack_penalty": OptionRule("real", 0, 1e9, lo_open=True, unit="€/MWh"),
    "dist_model": OptionRule("choice", choices=DIST_MODELS),
    "reactive_policy": OptionRule("choice", choices=REACTIVE_POLICIES),
    "interface_reactive": OptionRule("bool"),
    "zero_root_q": OptionRule("bool"),
    "pi_model": OptionRule("bool"),
    "polygon_sides": OptionRule("int", 3, 1024),
    "period_hours": OptionRule("real", 0, 24, lo_open=True, unit="h"),
    "relax": OptionRule("bool"),
    "mip_gap": OptionRule("real", 0, 1),
    "time_limit": OptionRule("real", 0, 1e9, lo_open=True, none_ok=True, unit="s"),
    "threads": OptionRule("int", 1, 1024),
    "progress": OptionRule("callable", none_ok=True),
    "executor": OptionRule("choice", choices=EXECUTORS),
    "workers": OptionRule("int", 1, 1024, none_ok=True),
    "address": OptionRule("text", none_ok=True),
    "curve_tol": OptionRule("real", 0, 1e9, lo_open=True, unit="EUR"),
    "max_evals": OptionRule("int", 2, 10**6),
    "gap": OptionRule("real", 0, 1, lo_open=True, hi_open=True),
    "gap_abs": OptionRule("real", 0, 1e12, unit="EUR"),
    "max_iterations": OptionRule("int", 1, 10**6),
    "milp_rounds": OptionRule("int", 1, 1000),
    "polish_rounds": OptionRule("int", 0, 1000),
    "stall_rounds": OptionRule("int", 1, 10**6),
    "skip_bracketed": OptionRule("real", 0, 1),
    "repair_rounds": OptionRule("int", 0, 1000),
    "dispatch_model": OptionRule("choice", choices=DISPATCH_MODELS),
}


def check_option(name: str, value, *, shown: str | None = None) -> None:
    """Raise `InputError` naming the option (`shown`, e.g. a command-line flag, else `name`) and what it
    accepts unless `value` is acceptable."""
    rule = OPTION_RULES[name]
    if not rule.accepts(value):
        raise InputError(f"{shown or name} = {value!r} is invalid: must be {rule.describe()}")


def check_options(options: dict) -> None:
    """Unknown option names and unacceptable values are `InputError`s (before anything is read or solved)."""
    unknown = set(options) - registry.ALL_OPTIONS
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(OPTION_RULES))})")
    for name, value in options.items():
        check_option(name, value)


def check_instance_argument(instance) -> None:
    """`clear(instance)` takes an `Instance`, an operator layout's index or the path of an instance folder."""
    from .io.layout import OperatorLayout

    if hasattr(instance, "buses") or isinstance(instance, (str, os.PathLike, OperatorLayout)):
        return
    raise InputError(
        f"instance must be an Instance (tdmarket.load) or the path of an instance folder, got {type(instance).__name__}"
    )


def check_prices_below_penalty(instance, slack_penalty: float) -> None:
    """The slack penalty must exceed every order price (docs/model.md §5); the error names the price's cell
    (for an operator layout's index: the operator's row of `operators.csv`)."""
    if not hasattr(instance, "orders"):
        instance.check_prices_below(slack_penalty)
        return
    price = instance.orders.segments.price
    instance.provenance["segments"].check(
        np.abs(price) >= slack_penalty,
        "price",
        lambda i: (
            f"price {float(price[i]):g} €/MWh is not below the slack penalty {float(slack_penalty):g} €/MWh "
            "(raise slack_penalty, command line --slack-penalty)"
        ),
    )


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
    check_instance_argument(instance)
    check_options(options)
    if not isinstance(incentives, bool):
        raise InputError(f"incentives = {incentives!r} is invalid: must be True or False")
    spec = registry.get(scheme)
    if not hasattr(instance, "buses") and spec.accepts("executor"):  # a path: the workers start while it is read
        start_process_workers_early(options.get("executor", "process"))
    instance = instance_for(spec, instance)
    ctx = scheme_context(instance, scheme, options)
    record = provenance(instance, scheme, options, incentives=incentives)
    result = spec.runner(instance, ctx)
    return complete(result, instance, scheme, options, record, incentives=incentives)


def scheme_context(instance, scheme: str, options: dict) -> SchemeContext:
    """What `scheme`'s runner gets besides the instance: the options it takes and the operators' runtime factory
    (the options checked by `check_options` first; the order prices against the slack penalty here)."""
    spec = registry.get(scheme)
    given = {k: v for k, v in options.items() if spec.accepts(k)}
    check_prices_below_penalty(instance, given.get("slack_penalty", ModelOptions.slack_penalty))
    model_options = {k: v for k, v in given.items() if k in OPTION_GROUPS["model"]}
    relax = bool(given.get("relax", False))
    return SchemeContext(
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


def complete(
    result: ClearingResult, instance, scheme: str, options: dict, record: dict, *, incentives: bool = True
) -> ClearingResult:
    """What `clear` adds to every runner's result: the incentives and settlement (unless `incentives=False`),
    the provenance `record`, the relaxation's exactness; its warnings are logged."""
    spec = registry.get(scheme)
    if incentives:
        from .market.incentives import attach_incentives

        model_options = {k: v for k, v in options.items() if spec.accepts(k) and k in OPTION_GROUPS["model"]}
        opts = ModelOptions(integer=not options.get("relax", False), **model_options)
        attach_incentives(
            integrated(instance),
            result.tables,
            result.summary,
            opts,
            scheme,
            settles_at_interface=spec.settles_at_interface,
        )
    result.summary["provenance"] = record
    _attach_exactness(result)
    for warning in result.summary.get("warnings", []):
        log.warning("%s: %s", scheme, warning)
    return result


def instance_for(spec, instance):
    """What `spec`'s runner gets: an `Instance` as given; for a path, the instance read from it; an operator
    layout (a path or its index) stays an index for a scheme that reads operator folders (each operator reads
    its own folder) and is assembled into the integrated instance for the others."""
    from .io import read
    from .io.layout import OperatorLayout, detect, read_index

    if hasattr(instance, "buses"):
        return instance
    if isinstance(instance, OperatorLayout):
        return instance if spec.reads_operator_folders else read(instance.root)
    if spec.reads_operator_folders and detect(instance):
        return read_index(instance)
    return read(instance)


def integrated(instance):
    """The integrated instance (an operator layout's folders assembled: the settlement covers every order)."""
    if hasattr(instance, "buses"):
        return instance
    from .io import read

    log.info("settlement: assembling the operator folders of %s", instance.source)
    return read(instance.root)


def _attach_exactness(result: ClearingResult) -> None:
    """Every scheme's summary says how exact its relaxation is (`soc_gap`, MW figures) and warns when it is not."""
    from .formulations.distribution import exactness_summary, exactness_warning

    lines = result.tables.get("lines")
    if lines is None or len(lines) == 0 or "soc_gap" not in lines:
        return
    result.summary["soc_gap"] = exactness = exactness_summary(lines)
    warning = exactness_warning(exactness)
    if warning is not None:
        result.summary.setdefault("warnings", []).append(warning)


def gap_to(result: ClearingResult, reference: ClearingResult) -> float:
    """(cost − cost_ref) / max(1, |cost_ref|) (docs/model.md §9)."""
    ref = reference.total_cost
    return (result.total_cost - ref) / max(1.0, abs(ref))
