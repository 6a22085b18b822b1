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

    line: np.ndarray
    bus: np.ndarray

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

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


# the concrete formulations register themselves when their module is imported (after the contract above exists)
from . import branch_flow as _branch_flow  # noqa: E402, F401
