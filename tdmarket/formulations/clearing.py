"""The clearing problem, written once against any network formulation (docs/model.md §5(a)(b)).

`ClearingProblem(inst, opts)` assembles orders, DC transmission, T–D interfaces, a distribution formulation
(SOC branch flow or LinDistFlow) and penalised nodal balances into one `Program`.  It works on a whole instance
or on an operator's sub-instance (boundary buses have no balance rows).  `extract` turns a solver solution into
tables with physical units and prices (each block builds its own part, `extract` assembles them); `check`
recomputes residuals from the primal values, because a solver status alone is not trusted (docs/model.md §3.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.instance import Instance
from .balance import Balance, SlackBlock
from .distribution import distribution_formulation
from .network import DCTransmission, Interfaces
from .options import ModelOptions
from .orders import OrderBlock
from .program import Program


@dataclass
class Check:
    """Feasibility residuals recomputed from the primal point (absolute units: MW, Mvar, p.u.)."""

    max_row_violation: float
    max_bound_violation: float
    max_cone_violation: float
    max_soc_gap: float  # u·ℓ − P² − Q² (MW²-ish units), the relaxation gap; 0 when exact
    n_inexact_lines: int

    def ok(self, tol: float = 1e-6) -> bool:
        return max(self.max_row_violation, self.max_bound_violation, self.max_cone_violation) <= tol


class ClearingProblem:
    """Blocks (each adds its variables, its rows and its part of the result tables):

    * `orders`  — `OrderBlock`, the order language;
    * `trans`   — `DCTransmission`;
    * `iface`   — `Interfaces`, T–D and D–D exchanges (and the `exchange_fix` rows of `own_x`);
    * `dist`    — a `DistributionFormulation` (the class registered under `opts.dist_model`);
    * `slack`   — `SlackBlock`, penalised nodal balances (`balance` is its triplet accumulator).
    """

    def __init__(self, inst: Instance, opts: ModelOptions | None = None, extra_blocks: tuple = ()):
        opts = opts or ModelOptions()
        prices = inst.orders.segments.price
        opts.validate(float(np.abs(prices).max()) if len(prices) else 0.0)
        self.inst, self.opts = inst, opts
        form = distribution_formulation(opts)
        self.orders = OrderBlock(inst, opts, form)
        self.trans = DCTransmission(inst, opts)
        self.iface = Interfaces(inst, opts, form)
        self.dist = form(inst, opts)
        self.balance = Balance(inst)
        self.slack = SlackBlock(inst, opts, self.balance)
        prog = Program()
        # the order of the blocks fixes the column and row order of the program; `extra_blocks` (e.g. a
        # federation's interconnectors, docs/model.md §12.3) write into the balances before the slack block
        self.extra_blocks = tuple(extra_blocks)
        blocks = (self.orders, self.trans, self.iface, self.dist, *self.extra_blocks, self.slack)
        for b in blocks:
            b.add_variables(prog)
        for b in blocks:
            b.add_constraints(prog, self.balance)
        self.own_x = self.iface.add_exchange_fix(prog)
        self.prog = prog

    # ------------------------------------------------------------------ helpers for schemes
    @property
    def integer_columns(self) -> np.ndarray:
        return np.flatnonzero(self.prog.integrality)

    def interface_columns(self) -> np.ndarray:
        """(A, T) columns of the export x of every modelled interface."""
        return self.iface.x_grid

    # ------------------------------------------------------------------ results
    def check(self, x: np.ndarray) -> Check:
        p = self.prog
        ax = p.A @ x
        row_v = np.maximum(p.row_lo - ax, ax - p.row_hi)
        bnd_v = np.maximum(p.lb - x, x - p.ub)
        cone_v = 0.0
        if p.k:
            s = p.cone_b - p.cone_A @ x
            start = 0
            for dim, count in p.cone_dims:
                block = s[start : start + dim * count].reshape(count, dim)
                cone_v = max(cone_v, float(np.max(np.linalg.norm(block[:, 1:], axis=1) - block[:, 0])))
                start += dim * count
        gap = self.soc_gap(x)
        return Check(
            max_row_violation=float(row_v.max(initial=0.0)),
            max_bound_violation=float(bnd_v.max(initial=0.0)),
            max_cone_violation=max(cone_v, 0.0),
            max_soc_gap=float(gap.max(initial=0.0)),
            n_inexact_lines=int((gap > 1e-6).sum()),
        )

    def soc_gap(self, x: np.ndarray) -> np.ndarray:
        """Relaxation gap u·ℓ − P² − Q² per (D line, period); zero for LinDistFlow (no ℓ)."""
        return self.dist.soc_gap(x)

    def extract(self, x: np.ndarray, row_dual: np.ndarray | None) -> dict[str, pd.DataFrame]:
        """Tables of the solution: segments, bids, buses (prices, slack), interfaces, lines — each block builds its
        own part."""
        p = self.prog
        lam_p, lam_q = self.slack.prices(p, row_dual)
        out = self.orders.tables(p, x)
        out["buses"] = self.slack.buses_table(p, x, lam_p, lam_q, self.dist.bus_columns(x))
        out["interfaces"] = self.iface.table(x, lam_p)
        frames = [f for f in (self.trans.lines_table(x), self.dist.lines_table(x)) if f is not None]
        out["lines"] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return out

    def with_program(self, prog: Program) -> ClearingProblem:
        """A shallow copy of this problem that holds `prog` (same blocks and rows, e.g. a copy whose costs or
        bounds differ)."""
        import copy

        other = copy.copy(self)
        other.prog = prog
        return other

    def cost_parts(self, x: np.ndarray) -> dict[str, float]:
        """Market cost (orders) and slack cost (€) of a primal point."""
        market = self.orders.cost(self.prog, x)
        slack = self.slack.cost(self.prog, x)
        return {
            "market_cost_eur": market,
            "slack_cost_eur": slack,
            "total_cost_eur": market + slack,
            "objective_eur": float(self.prog.c @ x + self.prog.c0),
        }
