"""AC verification of a distribution dispatch (docs/model.md §5(f) step 4): the reporting name of
`tdmarket.solvers.ac_powerflow` (the power flow sits with the solvers so that operators can check their own
dispatch)."""

from __future__ import annotations

from ..solvers.ac_network import load_pandapower, top_areas
from ..solvers.ac_powerflow import (
    BUS_COLUMNS,
    COLUMNS,
    LINE_COLUMNS,
    PF_TOLERANCES,
    S_TOL,
    V_TOL,
    _build_net,
    _make_tree,
    _pandapower,
    _run,
    _top_areas,
    ac_check,
    ac_power_flow,
    summarise,
)

__all__ = [
    "BUS_COLUMNS",
    "COLUMNS",
    "LINE_COLUMNS",
    "PF_TOLERANCES",
    "S_TOL",
    "V_TOL",
    "_build_net",
    "_make_tree",
    "_pandapower",
    "_run",
    "_top_areas",
    "ac_check",
    "ac_power_flow",
    "load_pandapower",
    "summarise",
    "top_areas",
]
