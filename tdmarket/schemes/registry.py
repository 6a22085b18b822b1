"""The scheme registry: every coordination scheme is one module with one `register(SchemeSpec(...))` call.

`tdmarket.clear`, the CLI (`clear --scheme`, `compare --schemes`), the comparison and the settlement read this
registry; adding a scheme is one module and one entry (see CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..formulations.options import ModelOptions

# Option groups a scheme may take (keyword arguments of `tdmarket.clear`).
OPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "model": (
        "slack_penalty",
        "dist_model",
        "reactive_policy",
        "interface_reactive",
        "zero_root_q",
        "pi_model",
        "polygon_sides",
        "period_hours",
    ),
    "solve": ("relax", "mip_gap", "time_limit", "threads", "progress"),
    "decentral": ("executor", "workers", "address"),
    "decomposition": (
        "curve_tol",
        "max_evals",
        "gap",
        "gap_abs",
        "max_iterations",
        "milp_rounds",
        "polish_rounds",
        "stall_rounds",
        "skip_bracketed",
        "repair_rounds",
        "dispatch_model",
    ),
}
ALL_OPTIONS = frozenset(k for keys in OPTION_GROUPS.values() for k in keys)

# The built-in schemes' modules; each registers itself when imported.
BUILTIN_MODULES = (
    "centralized",
    "hierarchical",
    "centralized_as_market",
    "local_as_market",
    "held_exchange",
)


@dataclass
class SchemeContext:
    """What a scheme runner receives besides the instance: the requested id (an alias is kept for naming),
    model options, solve options, the options of its other groups, and a factory of the operators' runtime
    (injected by the API so that schemes do not depend on the runtime layer)."""

    scheme: str
    opts: ModelOptions
    relax: bool = False
    mip_gap: float = 1e-3
    time_limit: float | None = None
    threads: int = 1
    progress: Callable[[dict], None] | None = None
    options: dict = field(default_factory=dict)  # decentral + decomposition options given
    model_options: dict = field(default_factory=dict)  # the model options given (ModelOptions fields)
    runtime_factory: Callable[..., Any] | None = None

    def solve_options(self) -> dict:
        return {
            "relax": self.relax,
            "mip_gap": self.mip_gap,
            "time_limit": self.time_limit,
            "threads": self.threads,
            "progress": self.progress,
        }

    def new_runtime(self):
        if self.runtime_factory is None:
            raise RuntimeError("this scheme needs the operators' runtime (use tdmarket.clear)")
        keys = OPTION_GROUPS["decentral"]
        return self.runtime_factory(progress=self.progress, **{k: v for k, v in self.options.items() if k in keys})


@dataclass(frozen=True)
class SchemeSpec:
    id: str
    runner: Callable[[Any, SchemeContext], Any]
    description: str
    aliases: tuple[str, ...] = ()
    option_groups: tuple[str, ...] = ("model", "solve")
    settles_at_interface: bool = True  # False: held exchanges are schedules, not market results
    in_comparison: bool = True  # part of `tdmarket compare`'s default set
    # True: the runner also takes an operator layout's index (tdmarket.io.layout.OperatorLayout) and never needs
    # the integrated instance (each operator reads its own folder); other schemes get the assembled instance
    reads_operator_folders: bool = False

    def accepts(self, option: str) -> bool:
        return any(option in OPTION_GROUPS[g] for g in self.option_groups)


_REGISTRY: dict[str, SchemeSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: SchemeSpec) -> SchemeSpec:
    for name in (spec.id, *spec.aliases):
        owner = _ALIASES.get(name)
        if owner is not None and owner != spec.id:
            raise ValueError(f"scheme name {name!r} registered twice ({owner}, {spec.id})")
        _ALIASES[name] = spec.id
    _REGISTRY[spec.id] = spec
    return spec


def _load_builtin() -> None:
    for mod in BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{mod}")


def get(name: str) -> SchemeSpec:
    _load_builtin()
    if name not in _ALIASES:
        raise InputError(f"unknown scheme {name!r} (available: {', '.join(names())})")
    return _REGISTRY[_ALIASES[name]]


def _ordered() -> list[SchemeSpec]:
    """Specs in a fixed order whatever the import order: built-in modules as listed, then others as registered."""
    _load_builtin()
    order = {f"{__package__}.{m}": i for i, m in enumerate(BUILTIN_MODULES)}
    specs = list(_REGISTRY.values())
    return sorted(specs, key=lambda s: (order.get(s.runner.__module__, len(order)), specs.index(s)))


def names() -> list[str]:
    """Every accepted scheme name (ids and aliases), in a fixed order (built-ins first)."""
    out = []
    for spec in _ordered():
        sid = spec.id
        out.append(sid)
        out.extend(spec.aliases)
    return out


def comparison_ids() -> list[str]:
    """Default schemes of `tdmarket compare` (the reference first)."""
    specs = [s for s in _ordered() if s.in_comparison]
    return [s.aliases[0] if s.id == "centralized" and s.aliases else s.id for s in specs]


def describe() -> list[tuple[str, str]]:
    return [(" = ".join((s.id, *s.aliases)), s.description) for s in _ordered()]
