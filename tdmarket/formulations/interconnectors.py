"""Interconnectors between the members of a federation, as a block of the clearing problem (docs/model.md §12.3).

The ATC model: a flow g[k,t] (MW, positive from the from node to the to node) per interconnector and period,
bounded by −ATC_backward <= g <= ATC_forward, withdrawn at the from node and injected at the to node.  The block
has the interface of every other block (`add_variables`, `add_constraints`), so `ClearingProblem(...,
extra_blocks=(block,))` clears every member's grids and the exchanges between them in one program.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .balance import Balance
from .program import Program
from .terms import grid


@dataclass
class InterconnectorBlock:
    """`from_bus`, `to_bus`: bus positions in the (merged) instance; capacities (K, T) MW."""

    id: np.ndarray
    from_bus: np.ndarray
    to_bus: np.ndarray
    atc_forward_mw: np.ndarray
    atc_backward_mw: np.ndarray

    def add_variables(self, prog: Program) -> None:
        prog.add_variables(
            "interconnector_flow", self.atc_forward_mw.size, -self.atc_backward_mw.ravel(), self.atc_forward_mw.ravel()
        )

    def add_constraints(self, prog: Program, balance: Balance) -> None:
        K, T = self.atc_forward_mw.shape
        g = grid(prog.var("interconnector_flow").start, K, T)
        per = np.broadcast_to(np.arange(T), (K, T))
        balance.add_p(np.broadcast_to(self.from_bus[:, None], (K, T)), per, g, -1.0)
        balance.add_p(np.broadcast_to(self.to_bus[:, None], (K, T)), per, g, 1.0)
        self.g_grid = g

    def flows_mw(self, x: np.ndarray) -> np.ndarray:
        """(K, T) flows of a primal point, MW."""
        return x[self.g_grid]
