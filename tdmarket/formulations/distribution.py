"""The distribution-formulation contract (docs/model.md §3.3), in the spirit of PowerModels' `src/form/bf.jl`: a
formulation is a class, and a method a formulation does not need is empty (LinDistFlow has no current variable,
so its current, relaxation gap and loss cost are zeros and it adds no relaxation cone).

    form = distribution_formulation(opts)       # the class registered under opts.dist_model
    dist = form(inst, opts)
    dist.add_variables(prog)
    dist.add_constraints(prog, balance)         # flows, voltages, thermal limits; adds its flows to the balances
    dist.terminal_flows(x), dist.squared_voltages(x), dist.soc_gap(x), dist.loss_cost(n)
    dist.lines_table(x), dist.bus_columns(x)    # its rows of the `lines` table, its columns of `buses`

Other blocks never test which formulation runs: they ask it (`add_circles` models a circle limit the way the
formulation does, `conic` says whether that is an exact cone).  `distribution_formulation` is the only reader of
`ModelOptions.dist_model`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import pandas as pd

from ..errors import InputError
from ..model.instance import Instance
from .balance import Balance
from .circles import Affine
from .options import ModelOptions
from .program import Program

_REGISTRY: dict[str, type[DistributionFormulation]] = {}


class DistributionFormulation(ABC):
    """A power-flow formulation of the distribution lines and buses of an (sub-)instance.

    Attributes every formulation sets: `line` (branch positions of the modelled D–D lines), `bus` (positions of the
    modelled distribution buses); results are (len(line), T) or (n_buses, T) arrays, element-major like the
    program's variable blocks.
    """

    name: ClassVar[str]  # the `ModelOptions.dist_model` key (concrete formulations only)
    conic: ClassVar[bool]  # circle limits are exact second-order cones (True) or inscribed K-gons (False)
    # cone blocks that relax an equality of the AC model (P² + Q² = u·ℓ); the exact AC program turns them into
    # equalities (`tdmarket.formulations.exact_ac`)
    relaxation_cones: ClassVar[tuple[str, ...]] = ()
    # cone blocks that are limits (thermal circles): a repeated solve may leave them out until a point comes near
    # one (`tdmarket.solvers.clarabel.OmittedCones`)
    limit_cones: ClassVar[tuple[str, ...]] = ()

    line: np.ndarray
    bus: np.ndarray

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    # (n_buses, T) columns of the squared voltages w (−1 at buses not modelled), once `add_constraints` ran
    w_grid: np.ndarray

    def __init__(self, inst: Instance, opts: ModelOptions):
        self.inst, self.opts = inst, opts

    # ------------------------------------------------------------------ model
    @classmethod
    @abstractmethod
    def add_circles(cls, prog: Program, name: str, a: Affine, b: Affine, radius: np.ndarray, sides: int) -> None:
        """Add ||(a_k, b_k)|| <= radius_k the way this formulation models circles (also used by orders and
        interfaces, so that a problem is entirely conic or entirely linear)."""

    @abstractmethod
    def add_variables(self, prog: Program) -> None:
        """Add the formulation's variable blocks."""

    @abstractmethod
    def add_constraints(self, prog: Program, balance: Balance) -> None:
        """Add flow, voltage and thermal rows (and cones) and the line and shunt terms of the nodal balances."""

    # ------------------------------------------------------------------ values of a primal point
    @abstractmethod
    def terminal_flows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(p_from, q_from, p_to, q_to) per (line, period): MW and Mvar leaving the bus at each end."""

    @abstractmethod
    def squared_voltages(self, x: np.ndarray) -> np.ndarray:
        """(n_buses, T) squared voltage magnitudes (p.u.²); NaN at buses this formulation does not model."""

    @abstractmethod
    def soc_gap(self, x: np.ndarray) -> np.ndarray:
        """(len(line), T) relaxation gap (≥ 0 at a feasible point); zeros where the formulation is exact or has no
        relaxation."""

    def fictitious_loss(self, x: np.ndarray) -> np.ndarray:
        """(len(line), T) fictitious loss of the relaxation in MW: R·(ℓ − (P² + Q²)/u), the active power the
        relaxed point loses on a line beyond the AC loss of its flows (zeros where the formulation is exact)."""
        return np.zeros((len(self.line), self.inst.n_periods))

    def fictitious_voltage_drop(self, x: np.ndarray) -> np.ndarray:
        """(len(line), T) voltage drop of the relaxation beyond the AC drop of the flows, p.u.²: |z|²·(ℓ − (P² +
        Q²)/u) (zeros where the formulation is exact).  A gap on a line of small R and large X costs almost no
        loss but can move voltages by this much."""
        return np.zeros((len(self.line), self.inst.n_periods))

    @abstractmethod
    def loss_cost(self, n: int) -> np.ndarray:
        """(n,) cost vector pricing the losses at € 1 per MW: the coefficient of every column of a program with `n`
        columns in the MW lost on the lines (zero for a lossless formulation).  Added to a cost vector whose loss
        columns cost nothing, it makes the objective count losses."""

    # ------------------------------------------------------------------ results
    def lines_table(self, x: np.ndarray) -> pd.DataFrame | None:
        """Rows of the `lines` table for this formulation's lines (None when it has none)."""
        if len(self.line) == 0:
            return None
        inst, T = self.inst, self.inst.n_periods
        br = inst.branches
        pf, qf, pt, qt = self.terminal_flows(x)
        S = br.rating[self.line][:, None]
        return pd.DataFrame(
            {
                "edge": np.repeat(br.id[self.line], T),
                "period": np.tile(inst.periods, len(self.line)),
                "kind": "D",
                "p_from_mw": pf.ravel(),
                "q_from_mvar": qf.ravel(),
                "p_to_mw": pt.ravel(),
                "q_to_mvar": qt.ravel(),
                "loss_mw": (pf + pt).ravel(),
                "rating_mva": np.repeat(br.rating[self.line], T),
                "loading": (np.maximum(np.hypot(pf, qf), np.hypot(pt, qt)) / S).ravel(),
                "soc_gap": self.soc_gap(x).ravel(),
                "fictitious_loss_mw": self.fictitious_loss(x).ravel(),
                "fictitious_vdrop_pu2": self.fictitious_voltage_drop(x).ravel(),
            }
        )

    def bus_columns(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Columns this formulation contributes to the `buses` table, as (n_buses, T) arrays."""
        return {"vsq_pu": self.squared_voltages(x)}


def distribution_formulation(opts: ModelOptions) -> type[DistributionFormulation]:
    """The formulation class of `opts.dist_model` (the only place that reads it)."""
    try:
        return _REGISTRY[opts.dist_model]
    except KeyError:
        raise InputError(
            f"unknown distribution model {opts.dist_model!r} (choose from {', '.join(_REGISTRY)})"
        ) from None


def distribution_formulations() -> dict[str, type[DistributionFormulation]]:
    """Every registered formulation by its `dist_model` key."""
    return dict(_REGISTRY)


# A relaxation whose fictitious loss on a line stays at or below this is exact up to the interior-point tolerance.
FICTITIOUS_LOSS_TOL_MW = 1e-6
FICTITIOUS_VDROP_TOL_PU2 = 1e-6  # p.u.², the voltage-bound tolerance of the AC check


def exactness_summary(lines: pd.DataFrame | None) -> dict:
    """How exact the relaxation of a dispatch is, from its `lines` table (D rows; docs/model.md §5(f) step 3).

    * `max`, `sum`: the cone gap u·ℓ − P² − Q² (MVA², p.u.² on the 1 MVA base) — not comparable between lines;
    * `fictitious_loss_mw_max_line`: max over (line, period) of R·(ℓ − (P² + Q²)/u), MW: the active power a line
      loses in the relaxed point beyond the AC loss of its flows;
    * `fictitious_loss_mw_max_period`: max over periods of the sum over lines, MW: about the interface deviation
      the gap causes (the AC exchange differs from the cleared one by the fictitious loss it does not have);
    * `fictitious_vdrop_pu2_max`: max of |z|²·(ℓ − (P² + Q²)/u), p.u.²: the voltage error of the gap;
    * `inexact_lines`: (line, period) pairs whose fictitious loss exceeds `FICTITIOUS_LOSS_TOL_MW` or whose
      fictitious voltage drop exceeds `FICTITIOUS_VDROP_TOL_PU2`;
      `tolerance_lines`: pairs with a cone gap above 1e-6 MVA² but a fictitious loss within the tolerance
      (interior-point noise, not inexactness)."""
    empty = {
        "max": 0.0,
        "sum": 0.0,
        "unit": "MVA^2",
        "fictitious_loss_mw_max_line": 0.0,
        "fictitious_loss_mw_max_period": 0.0,
        "fictitious_vdrop_pu2_max": 0.0,
        "inexact_lines": 0,
        "tolerance_lines": 0,
        "tolerance_mw": FICTITIOUS_LOSS_TOL_MW,
        "tolerance_vdrop_pu2": FICTITIOUS_VDROP_TOL_PU2,
    }
    if lines is None or len(lines) == 0 or "soc_gap" not in lines:
        return empty
    d = lines[lines["kind"] == "D"] if "kind" in lines else lines
    if len(d) == 0:
        return empty
    gap = d["soc_gap"].to_numpy(float)
    loss = d["fictitious_loss_mw"].to_numpy(float) if "fictitious_loss_mw" in d else np.zeros(len(d))
    vdrop = d["fictitious_vdrop_pu2"].to_numpy(float) if "fictitious_vdrop_pu2" in d else np.zeros(len(d))
    per_period = pd.Series(np.maximum(loss, 0.0)).groupby(d["period"].to_numpy()).sum()
    inexact = (loss > FICTITIOUS_LOSS_TOL_MW) | (vdrop > FICTITIOUS_VDROP_TOL_PU2)
    return empty | {
        "max": float(np.nanmax(gap)),
        "sum": float(np.nansum(gap)),
        "fictitious_loss_mw_max_line": float(np.nanmax(loss)),
        "fictitious_loss_mw_max_period": float(per_period.max()) if len(per_period) else 0.0,
        "fictitious_vdrop_pu2_max": float(np.nanmax(vdrop)),
        "inexact_lines": int(inexact.sum()),
        "tolerance_lines": int(((gap > 1e-6) & ~inexact).sum()),
    }


def exactness_warning(exactness: dict) -> str | None:
    """The warning of an inexact relaxation (None when it is exact up to the tolerance)."""
    if exactness.get("inexact_lines", 0) == 0:
        return None
    return (
        f"SOC relaxation inexact on {exactness['inexact_lines']} (line, period) pairs: fictitious loss up to "
        f"{exactness['fictitious_loss_mw_max_line']:.3g} MW on a line and {exactness['fictitious_loss_mw_max_period']:.3g}"
        f" MW in a period, fictitious voltage drop up to {exactness['fictitious_vdrop_pu2_max']:.3g} p.u.²; the dispatch may not be AC-deliverable (check and recover it with --ac-recovery)"
    )


# the concrete formulations register themselves when their module is imported (after the contract above exists)
from . import branch_flow as _branch_flow  # noqa: E402, F401
