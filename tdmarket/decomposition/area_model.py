"""C_d(x̂): the cost of one area (own orders, own grid, children's offers) as a function of its export x̂ (MW per
period), re-solved parametrically: the SOCP is handed to Clarabel once and only the right-hand side of the
exchange rows changes between evaluations."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from ..formulations.balance import COUPLING_SLACKS
from ..formulations.clearing import ClearingProblem
from ..formulations.options import ModelOptions
from ..formulations.program import Program
from ..model.instance import Instance
from ..solvers import SolveStatus, solve
from ..solvers.clarabel import (
    EVALUATION_SETTINGS,
    LEAF_EVALUATION_SETTINGS,
    OmittedCones,
    PersistentSOCP,
    solve_clarabel,
    solve_clarabel_retrying,
)
from ..solvers.highs import PersistentLP
from ..solvers.result import Solution
from .offers import (
    Offer,
    add_offer_rows,
    bound_offers,
    child_coupling_columns,
    child_exchange_columns,
    cut_matrix,
    widen_cuts,
)

GOOD = (SolveStatus.OPTIMAL, SolveStatus.ALMOST_OPTIMAL)
RECENT = 32  # evaluations kept per area: the dispatch re-uses the relaxation at the cleared exchange
# Leave the thermal circles out of the area's conic solves until a point comes near one (then it stays in).  Exact
# (solvers.clarabel.OmittedCones).  Measured on italy-652's 50 areas at 150 exchange points: no circle came near,
# 2 549 -> 2 534 interior-point iterations, 3.40 -> 2.76 s of solves.
OMIT_LIMIT_CONES = True
# a sub-DSO's deviation from the root voltage its parent holds costs this many times the slack penalty per p.u.²
VOLTAGE_SLACK_FACTOR = 100.0


class EvaluationError(RuntimeError):
    """An area's cost could not be evaluated at an exchange (solver failure)."""


SLACK_BLOCKS = ("slack_p_plus", "slack_p_minus", "slack_q_plus", "slack_q_minus")  # variables a slack-free model zeroes


@dataclass
class Evaluation:
    cost: float  # € (own orders + own slack + children's offers)
    rho: np.ndarray  # ∂C/∂x̂ per period, € per MW (multiply by 1/Δ for €/MWh)
    soc_gap: float
    x: np.ndarray  # primal point


class AreaModel:
    """C_d(x̂) of one DSO area (relaxed, i.e. continuous; binaries are only decided at dispatch)."""

    def __init__(
        self,
        sub: Instance,
        opts: ModelOptions,
        child_offers: Sequence[Offer] = (),
        use_curves: bool = True,
        use_cuts: bool = False,
        locked: dict | None = None,
    ):
        self.inst, self.opts = sub, opts
        self.cp = ClearingProblem(sub, opts)
        self.T = sub.n_periods
        if len(self.cp.own_x) != self.T:
            raise ValueError(f"{sub.name}: expected one own exchange per period")
        self.child_names = [o.area for o in child_offers]
        # a leaf area's evaluations are never published, a parent's may be (solvers.clarabel.LEAF_EVALUATION_SETTINGS)
        self.evaluations_publishable = bool(self.child_names)
        self.child_cols = child_exchange_columns(self.cp, self.child_names)
        # with cuts, a child is coupled by its exchange, its reactive exchange and its root's squared voltage
        # (docs/model.md §6.4): cuts in (P, Q, w), whose points and slopes have 3T entries; a cut of the child's
        # curve stage (P only) has zero slopes in Q and w
        self.child_coupling_cols = child_coupling_columns(self.cp, self.child_names) if use_cuts else self.child_cols
        width = self.child_coupling_cols.shape[1]
        offers = [widen_cuts(o, width) for o in child_offers] if use_cuts else list(child_offers)
        # the columns of the children's cost terms (η per period for curves, θ per child for cuts)
        self.offer_columns = add_offer_rows(
            self.cp.prog, self.child_coupling_cols, offers, use_curves=use_curves, use_cuts=use_cuts
        )
        self._child_cut_blocks = 0  # row blocks of children's cuts added after construction (`add_child_cuts`)
        bound_offers(self.cp.prog, self.child_cols, list(child_offers), use_curves)
        prog = self.cp.prog
        # activations locked by an earlier local clearing (local-as-market): they can grow, never shrink
        for block, floor in (locked or {}).items():
            idx = prog.var(block).index
            prog.set_bounds(idx, np.minimum(np.maximum(prog.lb[idx], floor), prog.ub[idx]), None)
        self.fix_rows = np.arange(prog.rows["exchange_fix"].start, prog.rows["exchange_fix"].start + self.T)
        own = int(np.flatnonzero(self.cp.iface.own)[0])
        self.rating = float(self.cp.iface.rating[own])
        # a sub-DSO (D–D interface): rows that hold its reactive exchange (Mvar) and its root's squared voltage
        # (p.u.²) where its parent asks for its cost at (P, Q, w); free otherwise (docs/model.md §6.4)
        self.coupling_rows: np.ndarray | None = None
        self.coupling_cols: np.ndarray | None = None  # their columns (2T: Q per period, then w)
        if not self.cp.iface.is_td[own]:
            cols = np.concatenate([self.cp.iface.y_grid[own], self.cp.dist.w_grid[self.cp.iface.root[own]]])
            if (cols < 0).any():
                raise ValueError(f"{sub.name}: its root voltage is not modelled")
            # held softly: a deviation costs the slack penalty (€ per Mvar and period; per p.u.² of squared voltage
            # VOLTAGE_SLACK_FACTOR times that, above the marginal values of w measured, ~1e5 € per p.u.²), so that
            # every (P, Q, w) its parent proposes can be evaluated (complete recourse: a parent's point a little
            # outside the child's interface rating or root voltage limit made its evaluation infeasible); the
            # deviation counts as slack (`SlackBlock.cost`)
            k = len(cols)
            kappa = opts.slack_penalty * opts.period_hours * np.repeat([1.0, VOLTAGE_SLACK_FACTOR], self.T)
            plus = prog.add_variables(COUPLING_SLACKS[0], k, 0.0, np.inf, kappa).index
            minus = prog.add_variables(COUPLING_SLACKS[1], k, 0.0, np.inf, kappa).index
            rows = np.tile(np.arange(k), 3)
            held = sp.csr_matrix(
                (np.concatenate([np.ones(k), np.ones(k), -np.ones(k)]), (rows, np.concatenate([cols, plus, minus]))),
                shape=(k, prog.n),
            )
            start = prog.m
            prog.add_rows("coupling_fix", held, -np.inf, np.inf)
            self.coupling_rows, self.coupling_cols = np.arange(start, start + k), cols
        self.evaluations = 0
        # the parametric solvers, by the number of rows they hold (T: the exchange; 3T: exchange, Q and w)
        self._parametric: dict[int, PersistentSOCP] = {}
        # LP areas: the LP of the evaluations and the slack-free LP of `hard_range`, kept in HiGHS, each with the
        # program it was built from (a copy of this model that replaces `cp.prog` builds its own)
        self._warm_lp: PersistentLP | None = None
        self._range_lp: PersistentLP | None = None
        self._warm_lp_of: Program | None = None
        self._range_lp_of: Program | None = None
        self._recent: OrderedDict[bytes, Solution] = OrderedDict()
        # the thermal circles the conic solves leave out until a point comes near one (shared by copies: the
        # layout of the cones is the same, and a circle found near binding in one is worth keeping in all)
        self.omitted = OmittedCones(prog, self.cp.dist.limit_cones) if OMIT_LIMIT_CONES and prog.has_cones else None

    def add_child_cuts(self, child: np.ndarray, points: np.ndarray, values: np.ndarray, slopes: np.ndarray) -> None:
        """Add cuts θ_c >= value + slopeᵀ(x_c − point) of the children `child` (indices into `child_names`, (K,);
        points and slopes (K, T) MW and €/MW, values (K,) €) to a model that holds its children by cuts.  The
        model's cost can only rise where the cuts are tighter, so the cuts it gave its parent stay valid.  The
        kept solver state is dropped (the program has new rows)."""
        theta = self.offer_columns.get("theta")
        if theta is None:
            raise ValueError(f"{self.inst.name}: its children are not modelled by cuts")
        if len(child) == 0:
            return
        prog = self.cp.prog
        M, lo = cut_matrix(
            np.asarray(child, np.int64),
            points,
            values,
            slopes,
            theta,
            self.child_coupling_cols,
            prog.n,
            prog.lb,
            prog.ub,
        )
        self._child_cut_blocks += 1
        prog.add_rows(f"offer_cuts_{self._child_cut_blocks}", M, lo, np.inf)
        self._parametric, self._warm_lp, self._range_lp = {}, None, None
        self._warm_lp_of = self._range_lp_of = None
        self._recent.clear()

    def child_terms(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """At a solution `x` of this model: the children's exchanges (len(child_names), T) MW and what the model
        counts for their costs (the θ or η columns' sum, €)."""
        exports = np.asarray(x, float)[self.child_coupling_cols]
        cols = [c.ravel() for c in self.offer_columns.values()]
        return exports, float(np.asarray(x, float)[np.concatenate(cols)].sum()) if cols else 0.0

    def _settings(self, published: bool = False) -> dict:
        """Clarabel settings of this area's solves: a leaf's looser gap unless the point is published."""
        return EVALUATION_SETTINGS if published or self.evaluations_publishable else LEAF_EVALUATION_SETTINGS

    def _solve(self, prog: Program, *, published: bool = False):
        """Solve a continuous program of this area; `published`: its point is published (e.g. the base-case
        exchange a held-exchange scheme schedules), so it is solved at EVALUATION_SETTINGS even in a leaf area."""
        self.evaluations += 1
        if prog.has_integers:
            raise ValueError("AreaModel evaluations are continuous; use dispatch() for binaries")
        # an evaluation or a range is never priced: no simplex basis to hand back (solvers.highs.solve_highs)
        return (
            solve_clarabel(prog, omitted=self.omitted, **self._settings(published))
            if prog.has_cones
            else solve(prog, keep_basis=False)
        )

    def rows_for(self, x_hat: np.ndarray) -> np.ndarray:
        """The rows a point fixes: the exchange (T values, MW) or, for a sub-DSO, the exchange, the reactive
        exchange and the root's squared voltage (3T values: MW, Mvar, p.u.²)."""
        if len(x_hat) == self.T:
            return self.fix_rows
        if self.coupling_rows is not None and len(x_hat) == 3 * self.T:
            return np.concatenate([self.fix_rows, self.coupling_rows])
        raise ValueError(f"{self.inst.name}: a point of {len(x_hat)} values for {self.T} periods")

    def _program_at(self, x_hat: np.ndarray) -> Program:
        """A copy of the area's program with its exchange (and for 3T values its Q and w) fixed at `x_hat`."""
        prog = self.cp.prog.copy()
        prog.set_row_bounds(self.rows_for(x_hat), x_hat, x_hat)
        return prog

    def _solve_at(self, x_hat: np.ndarray):
        if not self.cp.prog.has_cones:
            return self._solve_lp_at(x_hat)
        rows = self.rows_for(x_hat)
        solver = self._parametric.get(len(rows))
        if solver is None:
            prog = self._program_at(x_hat)
            solver = self._parametric[len(rows)] = PersistentSOCP(prog, rows, omitted=self.omitted, **self._settings())
        self.evaluations += 1
        solver.set_equalities(x_hat)
        sol = solver.solve()
        if sol.status not in GOOD:  # an interior point can stall on a warm structure: solve once from scratch
            prog = self._program_at(x_hat)
            # then at looser settings (measured: one in ~1 000 on a generated 73-area system)
            sol = solve_clarabel_retrying(prog, self._solve(prog), lambda s: s.status in GOOD)
        return sol

    def _solve_lp_at(self, x_hat: np.ndarray):
        """LP areas (LinDistFlow): the area's LP is kept in HiGHS and re-solved from its last basis with the
        exchange rows moved (dual simplex: only right-hand sides change, so the basis stays dual feasible).
        Measured on a generated 10-area system: 42 ms per evaluation from scratch (copy, presolve, solve)."""
        if self._warm_lp is None or self._warm_lp_of is not self.cp.prog:  # (a copy of the model may change it)
            prog = self._program_at(x_hat)
            self._warm_lp, self._warm_lp_of = PersistentLP(prog, presolve_first=False), self.cp.prog
        self.evaluations += 1
        self._warm_lp.set_row_bounds(self.fix_rows, x_hat[: self.T], x_hat[: self.T])
        if self.coupling_rows is not None:  # held for a 3T point, free for an exchange alone
            k = len(self.coupling_rows)
            held = len(x_hat) > self.T
            self._warm_lp.set_row_bounds(
                self.coupling_rows,
                x_hat[self.T :] if held else np.full(k, -np.inf),
                x_hat[self.T :] if held else np.full(k, np.inf),
            )
        sol = self._warm_lp.solve()
        if sol.status is not SolveStatus.OPTIMAL:  # numerical trouble from the warm basis: primal, then cold
            sol = self._warm_lp.solve_again()
        if sol.status is not SolveStatus.OPTIMAL:
            prog = self._program_at(x_hat)
            sol = self._solve(prog)
        return sol

    def _hard_range_lp(self, t: int, x_ref: np.ndarray) -> tuple[float, float] | None:
        """`hard_range` of an LP area (lossless: no loss term): min and max of x_t on one slack-free LP kept warm
        in HiGHS, whose exchange rows and objective change between solves."""
        if self._range_lp is None or self._range_lp_of is not self.cp.prog:  # e.g. a copy with binaries fixed
            prog = self.slack_free_program(0, x_ref)
            prog.set_cost(np.zeros(prog.n))
            prog.c0 = 0.0
            prog.set_row_bounds(self.fix_rows, self.cp.prog.row_lo[self.fix_rows], self.cp.prog.row_hi[self.fix_rows])
            self._range_lp, self._range_lp_of = PersistentLP(prog), self.cp.prog
        lp, base = self._range_lp, self.cp.prog
        lo, hi = x_ref.copy(), x_ref.copy()
        lo[t], hi[t] = base.row_lo[self.fix_rows[t]], base.row_hi[self.fix_rows[t]]
        lp.set_row_bounds(self.fix_rows, lo, hi)
        col = np.array([self.cp.own_x[t]])
        out = []
        try:
            for sign in (1.0, -1.0):
                lp.set_cost(col, sign)
                self.evaluations += 1
                sol = lp.solve()
                if sol.status not in (SolveStatus.OPTIMAL, SolveStatus.INFEASIBLE):
                    sol = lp.solve_again()
                if sol.status is not SolveStatus.OPTIMAL:
                    return None
                out.append(float(sol.x[col[0]]))
        finally:
            lp.set_cost(col, 0.0)
        return min(out[0], float(x_ref[t])), out[1]

    def with_binaries(self) -> AreaModel:
        """The same area model with the order binaries restored (for the dispatch): a copy of the program with
        its integrality set, instead of building the clearing problem again (the option `integer` changes
        nothing else in the model; tests/test_hierarchical.py checks that)."""
        return self.copy(integer=True)

    def copy(self, *, integer: bool) -> AreaModel:
        """A copy of this model whose program the caller may change (e.g. fix the exchange rows for a dispatch):
        with the order binaries restored if `integer`, else continuous like this one.  Its solver state starts
        empty; this model's evaluations and warm solvers stay with it."""
        import copy

        other = copy.copy(self)
        other.cp = copy.copy(self.cp)
        other.cp.prog = self.cp.prog.copy()
        if integer:
            other.cp.prog.set_integrality(self.cp.orders.binary_columns(other.cp.prog))
        other.opts = other.cp.opts = replace(self.opts, integer=integer)
        other.evaluations, other._parametric, other._recent = 0, {}, OrderedDict()
        other._warm_lp = other._range_lp = None
        other._warm_lp_of = other._range_lp_of = None
        return other

    def relaxation_at(self, x_hat: np.ndarray):
        """The relaxed solution at exchange `x_hat` if it was evaluated recently (else None)."""
        return self._recent.get(np.asarray(x_hat, float).tobytes())

    def evaluate(self, x_hat: np.ndarray) -> Evaluation:
        x_hat = np.asarray(x_hat, float)
        key = x_hat.tobytes()
        sol = self._recent.get(key)
        if sol is None:
            sol = self._solve_at(x_hat)
            if sol.status in GOOD:
                self._recent[key] = sol
                if len(self._recent) > RECENT:
                    self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(key)
        if sol.status not in GOOD:
            raise EvaluationError(f"{self.inst.name}: evaluation at {x_hat} failed ({sol.status.value})")
        gap = float(self.cp.soc_gap(sol.x).max(initial=0.0))
        assert sol.row_dual is not None  # a continuous solve has duals
        rho = sol.row_dual[self.rows_for(x_hat)].copy()
        return Evaluation(cost=float(sol.objective), rho=rho, soc_gap=gap, x=sol.x)

    def preferred(self) -> Evaluation:
        """arg min_x C(x): the DSO's preferred exchange (its own balancing at least cost)."""
        sol = self._solve(self.cp.prog.copy())
        if sol.status not in GOOD:
            raise EvaluationError(f"{self.inst.name}: unconstrained solve failed ({sol.status.value})")
        x = sol.x[self.cp.own_x]
        return Evaluation(
            cost=float(sol.objective),
            rho=np.zeros(self.T),
            soc_gap=float(self.cp.soc_gap(sol.x).max(initial=0.0)),
            x=x,
        )

    def _slack_free_copy(self) -> Program:
        """A copy of the area's program with every slack at zero (every period's exchange as in the model)."""
        prog = self.cp.prog.copy()
        for name in SLACK_BLOCKS:
            prog.set_bounds(prog.var(name).index, 0.0, 0.0)
        return prog

    def slack_free_program(self, t: int, x_ref: np.ndarray):
        """A copy of the area's program with every slack at zero, the exchange of period t free and the other
        periods held at x_ref (its cost is the caller's to set)."""
        prog = self._slack_free_copy()
        others = np.delete(np.arange(self.T), t)
        prog.set_row_bounds(self.fix_rows[others], x_ref[others], x_ref[others])
        return prog

    def hard_range(self, t: int, x_ref: np.ndarray) -> tuple[float, float] | None:
        """[min, max] of x_t with slacks at zero and the other periods at x_ref (None if empty); the import end
        without fictitious losses (below)."""
        if not self.cp.prog.has_cones:
            return self._hard_range_lp(t, np.asarray(x_ref, float))
        prog = self.slack_free_program(t, x_ref)
        col = self.cp.own_x[t]
        # the import end (min x_t) also pays 2 € per MW of line loss: the SOC relaxation can "burn" fictitious
        # losses to import more, which gains 1 per MW and now costs 2, so the end is where the area absorbs the
        # import with its orders and real losses (marginal loss factor < 1/2).  Measured on 13 italy-652 areas
        # (period 2): without the term the end imported 22-37 MW of which 16-36 MW were burnt (SOC gap 10^3-10^4)
        # after 42-86 interior-point iterations; with it 1.4-10 MW, SOC gap <= 2.5e-7 in 11 of 13, 18-26
        # iterations (2.0 s -> 0.68 s for the 13 solves).
        ends = self._range_ends(prog, np.array([col]))
        if ends is None:
            return None
        # the reference point (the area's own optimum, or the exchange it was asked about) stays inside the range
        return min(float(ends[0][0]), float(x_ref[t])), float(ends[1][0])

    def _range_ends(self, prog: Program, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(import end, export end) MW of the exchange columns `cols` on `prog` (slack-free): min Σ x + 2 × the
        losses (`hard_range`), then max Σ x; None if a solve fails."""
        loss = self.cp.dist.loss_cost(prog.n)
        out = []
        for sign in (1.0, -1.0):
            c = 2.0 * loss if sign > 0 else np.zeros(prog.n)
            c[cols] += sign
            prog.set_cost(c)
            sol = self._solve(prog)
            if sol.status not in GOOD:
                return None
            out.append(sol.x[cols].astype(float))
        return out[0], out[1]

    def joint_hard_range(self, x_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Every period's slack-free [min, max] exchange (MW) from two solves with all periods free at once (the
        import end with `hard_range`'s loss term), instead of two per period.  Without coupling between periods
        (ramps, minimum durations, start/stop blocks) these are `hard_range`'s ends; with it an end may lie beyond
        them, which `needs_slack` at that end tells (`build_curves` then asks `hard_range`).  None for an LP
        area (its `hard_range` is a warm re-solve already) or if a solve fails."""
        if not self.cp.prog.has_cones:
            return None
        x_ref = np.asarray(x_ref, float)
        ends = self._range_ends(self._slack_free_copy(), np.asarray(self.cp.own_x))
        return None if ends is None else (np.minimum(ends[0], x_ref), ends[1])

    def needs_slack(self, ev: Evaluation) -> bool:
        """Whether an evaluated point uses slack (more than 1e-6 €; the penalty makes any real use far larger)."""
        return self.cp.slack.cost(self.cp.prog, ev.x) > 1e-6

    def burnt_import_end(self, t: int, x_ref: np.ndarray) -> float | None:
        """min x_t with slacks at zero and the other periods at x_ref, fictitious losses burnt as the relaxation
        allows (None if empty): the import end `hard_range` stops short of.  A configuration's range in the
        integer repair offers it too (docs/model.md §6.3 item 8): the centralized clearing, with the same
        relaxation, imports that far.  An LP area has no losses to burn: its `hard_range` end."""
        if not self.cp.prog.has_cones:
            found = self._hard_range_lp(t, np.asarray(x_ref, float))
            return None if found is None else found[0]
        prog = self.slack_free_program(t, x_ref)
        c = np.zeros(prog.n)
        c[self.cp.own_x[t]] = 1.0
        prog.set_cost(c)
        sol = self._solve(prog)
        if sol.status not in GOOD:
            return None
        return min(float(sol.x[self.cp.own_x[t]]), float(x_ref[t]))
