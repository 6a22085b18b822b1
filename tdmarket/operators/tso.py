"""The TSO agent: clears transmission with its own orders and its DSOs' offers (curves or cuts), and is the
parent side of the cut exchange (its master, its mixed-integer rounds and its fallback)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..decomposition.exchange import CutPool, ParentPoint
from ..decomposition.master import CutMaster, MasterSolution
from ..decomposition.menus import ANCHOR_TIE_BREAK, MenuEntry, add_anchor_rows, add_menu_rows
from ..decomposition.offers import (
    Cut,
    Offer,
    add_offer_rows,
    bound_offers,
    child_exchange_columns,
    child_interfaces,
)
from ..errors import TdmarketError
from ..formulations.clearing import ClearingProblem
from ..formulations.options import ModelOptions
from ..formulations.program import Program
from ..market.pricing import PriceIntervals, annotate_buses, publish_prices
from ..model.instance import Instance
from ..schemes.centralized import solve_clearing
from ..solvers import solve
from ..solvers.acceptance import require
from ..solvers.highs import PersistentLP, StartBasis
from ..solvers.misocp import fix_integers
from ..solvers.result import Solution, SolveStatus


def _master_context(master: CutMaster) -> tuple[ClearingProblem, np.ndarray, dict, list[str]]:
    """What `TSO.cut_master` left on the master to read its solutions back: (problem, columns, maps, names)."""
    assert isinstance(master.context, tuple)
    return master.context


class TSOMaster(CutMaster):
    """The TSO's master of the cut exchange; it keeps its last unrestricted solution (`last_bound`: the optimum of
    the cut model with the exchanges free, whose duals are the cut model's prices)."""

    last_bound: MasterSolution | None = None

    def solve(self, center: np.ndarray | None = None, radius: float | None = None) -> MasterSolution:
        ms = super().solve(center, radius)
        if center is None:
            self.last_bound = ms
        return ms


# a child the menu choice moves by at most this (MW, every period) stays where it is (`_snap_small_moves`)
SNAP_MW = 1e-3


@dataclass
class TSOClearing:
    """A transmission clearing: exports x (A, T) MW of the child areas `names`, interface prices π (A, T)
    €/MWh, the objective with the offers (€), the offers' value Σθ or Ση (€), own cost parts, MIP information and a
    certified lower bound of the integrated problem when the clearing provides one (€)."""

    names: list[str]
    x: np.ndarray
    pi: np.ndarray
    objective: float
    offer_value: float
    cost: dict
    mip: dict
    solver_time_s: float
    lower_bound: float = -np.inf
    cp: ClearingProblem | None = field(default=None, repr=False)
    sol: Solution | None = field(default=None, repr=False)
    intervals: PriceIntervals | None = field(default=None, repr=False)
    _tables: dict | None = field(default=None, repr=False)

    @property
    def own_cost(self) -> float:
        return self.objective - self.offer_value

    def tables(self, owner: TSO) -> dict:
        """Result tables, built once, for the published solution only."""
        if self._tables is None:
            self._tables = owner.tables(self.cp, self.sol, self.intervals)
        return self._tables


def _rounded_binaries(cp: ClearingProblem, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The TSO's binary columns and their values in solution `x`, rounded to 0/1 within their bounds."""
    ints = cp.orders.binary_columns(cp.prog)
    return ints, np.clip(np.round(x[ints]), cp.prog.lb[ints], cp.prog.ub[ints])


def _held_columns(cp: ClearingProblem, cols: np.ndarray, point: ParentPoint) -> tuple[np.ndarray, np.ndarray] | None:
    """The columns a published point holds and their values: the exchanges, and for an integer point also the
    binaries at its solution's values (None if an integer point carries no solution of `cp`'s program)."""
    fixed, values = cols.ravel(), point.x.ravel()
    if not point.integer:
        return fixed, values
    sol = point.handle.sol
    if sol is None or len(sol.x) != cp.prog.n:
        return None
    ints = cp.orders.binary_columns(cp.prog)
    return np.concatenate([ints, fixed]), np.concatenate([sol.x[ints], values])


class TSO:
    def __init__(self, sub: Instance, opts: ModelOptions):
        self.sub = sub
        self.opts = opts
        # the basis of the relaxed clearing without the children (`national_start`): the cut master's first solve
        # and the clearing with the curves start from it instead of solving the national model cold
        self.start: StartBasis | None = None

    def national_start(self, names: list[str], threads: int = 1) -> StartBasis | None:
        """The optimal simplex basis of this TSO's relaxed clearing with the exchanges of the children `names`
        held at 0 MW (no cut, no curve), or None if that LP is not solved to optimality.  Every LP of the cut
        exchange extends that clearing (its columns and rows come first), so each starts from this basis warm:
        measured on italy-652, the national LP costs 1.4 s cold once, after which the clearing with the curves
        takes 0.12 s instead of 1.7 s and the master's first solve 0.2 s instead of 1.6 s.  It needs nothing from
        the children, so the scheme computes it while they build their curves."""
        cp = ClearingProblem(self.sub, self.opts.relaxed())
        cols = child_exchange_columns(cp, names).ravel()
        cp.prog.set_bounds(cols, 0.0, 0.0)
        lp = PersistentLP(cp.prog, threads=threads, presolve_first=True)
        sol = lp.solve()
        return lp.start_basis() if sol.status is SolveStatus.OPTIMAL else None

    def _build(self, offers: list[Offer], *, use_curves: bool, use_cuts: bool, integer: bool):
        opts = self.opts if integer else self.opts.relaxed()
        cp = ClearingProblem(self.sub, opts)
        names = [o.area for o in offers]
        cols = child_exchange_columns(cp, names)
        maps = add_offer_rows(cp.prog, cols, offers, use_curves=use_curves, use_cuts=use_cuts)
        bound_offers(cp.prog, cols, offers, use_curves)
        return cp, cols, maps, names

    def tables(self, cp, sol, intervals: PriceIntervals | None = None) -> dict:
        """Result tables of a TSO solve (only what the TSO owns), with the price intervals when computed."""
        tables = cp.extract(sol.x, sol.row_dual)
        b = self.sub.buses
        buses = tables["buses"][~tables["buses"].node.isin(b.id[b.is_boundary])].reset_index(drop=True)
        tables["buses"] = annotate_buses(self.sub, buses, intervals)
        return tables

    def node_prices(self, res: TSOClearing) -> pd.DataFrame:
        """Active-power price (€/MWh) of every own bus and period in a clearing, from its duals as solved (no
        price intervals): columns node, period, price_p_eur_mwh."""
        assert res.cp is not None and res.sol is not None  # a solved clearing keeps its problem
        lam_p, _ = res.cp.slack.prices(res.cp.prog, res.sol.row_dual)
        b, T = self.sub.buses, self.sub.n_periods
        own = np.flatnonzero(~b.is_boundary)
        return pd.DataFrame(
            {
                "node": np.repeat(b.id[own], T),
                "period": np.tile(self.sub.periods, len(own)),
                "price_p_eur_mwh": lam_p[own].ravel(),
            }
        )

    def publish(self, res: TSOClearing) -> TSOClearing:
        """Replace the solver's duals of a priced clearing by the published ones (`tdmarket.market.pricing`: the
        interval of every degenerate price, the defined price inside it) and recompute the interface prices π."""
        if res.sol is None or res.sol.row_dual is None or res.intervals is not None:
            return res
        assert res.cp is not None  # a solved clearing keeps its problem
        res.sol, res.intervals = publish_prices(res.cp, res.sol)
        res.pi = self._interface_prices(res.cp, res.names, res.sol)
        res._tables = None
        return res

    def _interface_prices(self, cp, names, sol) -> np.ndarray:
        """π (A, T) €/MWh: the price at each child area's host bus; NaN without duals."""
        T = self.sub.n_periods
        if not names:
            return np.zeros((0, T))
        if sol.row_dual is None:  # a proposal without prices (level step of the cut exchange)
            return np.full((len(names), T), np.nan)
        area_names = list(np.array(cp.inst.areas.name)[cp.iface.area])
        host = cp.iface.inject_bus[[area_names.index(n) for n in names]]
        return sol.row_dual[cp.prog.rows["balance_p"].start + cp.balance.p_row[host]] / self.opts.period_hours

    def _result(self, cp, cols, maps, names, sol, mip) -> TSOClearing:
        pi = self._interface_prices(cp, names, sol)
        offer_value = sum(float(sol.x[maps[k]].sum()) for k in ("eta", "theta") if k in maps)
        lb = mip.get("lower_bound")
        return TSOClearing(
            names=names,
            x=sol.x[cols],
            pi=pi,
            objective=float(sol.objective),
            offer_value=offer_value,
            cost=cp.cost_parts(sol.x),
            mip=mip,
            solver_time_s=sol.solve_time_s,
            lower_bound=float(lb) if lb is not None else -np.inf,
            cp=cp,
            sol=sol,
        )

    def clear(
        self,
        offers: list[Offer],
        *,
        use_curves: bool,
        use_cuts: bool,
        integer: bool,
        mip_gap: float = 1e-4,
        time_limit: float | None = None,
        threads: int = 1,
    ) -> TSOClearing:
        """Clear transmission with the offers (MILP with the TSO's binaries, then the LP with them fixed)."""
        cp, cols, maps, names = self._build(offers, use_curves=use_curves, use_cuts=use_cuts, integer=integer)
        sol, mip = solve_clearing(cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
        return self._result(cp, cols, maps, names, sol, mip)

    def clear_fixed(
        self,
        schedule: dict[str, np.ndarray],
        *,
        integer: bool,
        mip_gap: float = 1e-4,
        time_limit: float | None = None,
        threads: int = 1,
    ) -> TSOClearing:
        """Clear transmission with the T orders only and every exchange held at `schedule` (MW per period)."""
        opts = self.opts if integer else self.opts.relaxed()
        cp = ClearingProblem(self.sub, opts)
        names = list(schedule)
        cols = child_exchange_columns(cp, names)
        for a, n in enumerate(names):
            cp.prog.set_bounds(cols[a], schedule[n], schedule[n])
        sol, mip = solve_clearing(cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
        res = self._result(cp, cols, {}, names, sol, mip)
        res.offer_value = 0.0
        return self.publish(res)

    # ---------------------------------------------------------------- the cut exchange (decomposition.exchange)
    def _cut_offers(self, names: list[str], pool: CutPool) -> list[Offer]:
        offers = [Offer(area=n) for n in names]
        for k in range(len(pool)):
            offers[pool.area[k]].cuts.append(
                Cut(point=pool.points[k].tolist(), value=float(pool.values[k]), slope=pool.slopes[k].tolist())
            )
        return offers

    def _build_with_cuts(self, names: list[str], pool: CutPool, *, integer: bool):
        """The clearing with one θ per child and every cut in `pool` (no curves)."""
        return self._build(self._cut_offers(names, pool), use_curves=False, use_cuts=True, integer=integer)

    def cut_master(self, names: list[str], pool: CutPool, threads: int = 1) -> TSOMaster:
        """The relaxed master of the cut exchange, seeded with every cut in `pool`."""
        cp, cols, maps, _ = self._build_with_cuts(names, pool, integer=False)
        master = TSOMaster(cp.prog, cols, maps["theta"], threads=threads, start=self.start)
        master.context = (cp, cols, maps, names)
        return master

    def rebase_master(self, master: CutMaster) -> bool:
        """Move the master of an earlier exchange onto this TSO's data, which may differ from the data it was
        built for only in row bounds of the clearing (fixed injections at its buses: a balancing platform's
        flows).  Its cuts and its basis are kept, so the next exchange starts warm instead of building and
        solving the national model cold (measured on italy-652 in a federation: 6-7 s per platform round).
        False (master untouched) if the clearings differ in anything else."""
        old, cols, maps, names = _master_context(master)
        cp = ClearingProblem(self.sub, self.opts.relaxed())
        a, b = old.prog, cp.prog
        m = b.m
        same = (
            b.n <= a.n
            and m <= a.m
            and np.array_equal(a.c[: b.n], b.c)
            and np.array_equal(a.lb[: b.n], b.lb)
            and np.array_equal(a.ub[: b.n], b.ub)
            and (a.A[:m, : b.n] != b.A).nnz == 0
            and a.cone_dims == b.cone_dims
        )
        if not same:
            return False
        moved = np.flatnonzero((a.row_lo[:m] != b.row_lo) | (a.row_hi[:m] != b.row_hi))
        if len(moved):
            master.set_row_bounds(moved, b.row_lo[moved], b.row_hi[moved])
        master.context = (cp.with_program(master.prog), cols, maps, names)
        return True

    def master_point(self, master: CutMaster, ms: MasterSolution) -> ParentPoint:
        cp, cols, maps, names = _master_context(master)
        res = self._result(cp, cols, maps, names, ms.sol, {"binaries": 0, "lower_bound": ms.lower_bound})
        return ParentPoint(x=res.x, own_cost=res.own_cost, lower_bound=ms.lower_bound, handle=res, integer=False)

    def priced_point(self, names: list[str], pool: CutPool, point: ParentPoint, threads: int = 1) -> TSOClearing:
        """The clearing published for a master point: the full model with every cut in `pool`, the exchanges held
        at the point's (and, for an integer point, the binaries at its values), solved by simplex, so that its
        prices are the duals of the TSO's own clearing with every cut.  Same exchanges, same own cost up to solver
        tolerance."""
        cp, cols, maps, names = self._build_with_cuts(names, pool, integer=False)
        held = point.handle
        fixed, values = _held_columns(cp, cols, point) or (cols.ravel(), point.x.ravel())
        cp.prog.set_bounds(fixed, values, values)
        sol, mip = solve_clearing(cp, threads=threads)
        res = self._result(cp, cols, maps, names, sol, held.mip)
        res.lower_bound = held.lower_bound
        return res

    def priced_on_master(
        self, master: CutMaster, names: list[str], pool: CutPool, point: ParentPoint, threads: int = 1
    ) -> TSOClearing:
        """`priced_point` without building the clearing again: the master's program holds every cut, so the point
        (its exchanges and, for an integer point, its binaries held) is re-solved warm on the master (measured on
        italy-652: the rebuild and cold solve took 3.0 s), and the published problem is a copy of the master's
        program with those columns fixed.  Falls back to `priced_point` if that LP is not optimal."""
        cp, cols, maps, names = _master_context(master)
        held_cols = _held_columns(cp, cols, point)
        ms = None if held_cols is None else master.solve_with_columns_fixed(*held_cols, keep_basis=True)
        if held_cols is None or ms is None:
            return self.priced_point(names, pool, point, threads=threads)
        fixed, values = held_cols
        ms.sol.x[fixed] = values  # a fixed column may come back within the primal tolerance of its value
        published = cp.with_program(cp.prog.copy())
        published.prog.set_bounds(fixed, values, values)
        res = self._result(published, cols, maps, names, ms.sol, point.handle.mip)
        res.lower_bound = point.handle.lower_bound
        return res

    def rounded_point(self, master: CutMaster, point: ParentPoint) -> ParentPoint | None:
        """The relaxed master point with the TSO's binaries rounded to 0/1 and the exchanges held at the point's:
        a mixed-integer clearing at exchanges the children already priced (None if that LP is infeasible or the
        point carries no primal solution)."""
        cp, cols, _, _ = _master_context(master)
        res = point.handle
        if not isinstance(res, TSOClearing) or res.sol is None:
            return None
        ints, rounded = _rounded_binaries(cp, res.sol.x)
        fixed = np.concatenate([ints, cols.ravel()])
        values = np.concatenate([rounded, point.x.ravel()])
        ms = master.solve_with_columns_fixed(fixed, values)
        if ms is None:
            return None
        # a fixed column may stay basic and come back within the primal tolerance (1e-7) of its value: snap it, so
        # that the exchanges are exactly those the children priced
        ms.sol.x[fixed] = values
        ms.x = ms.sol.x[cols]
        out = self.master_point(master, ms)
        out.integer, out.note = True, "relaxed binaries rounded"
        out.handle.mip = {"binaries": len(ints), "lower_bound": None, "gap": None, "rounded_from_relaxation": True}
        return out

    def hold_binaries(
        self, master: CutMaster, point: ParentPoint
    ) -> tuple[Callable[[MasterSolution], ParentPoint], Callable[[], None]] | None:
        """Hold the TSO's binaries on the master at their values in the mixed-integer `point` (its configuration
        of all-or-nothing, start/stop and logic orders): the master becomes the convex clearing of that
        configuration, whose solutions are mixed-integer clearings.  Returns (a function that reads a master
        solution as such a point, the function that releases the binaries), or None if `point` carries no
        solution of the master's program or the TSO has no binaries."""
        cp, cols, _, _ = _master_context(master)
        res = point.handle
        if not point.integer or not isinstance(res, TSOClearing) or res.sol is None or len(res.sol.x) != cp.prog.n:
            return None
        ints, values = _rounded_binaries(cp, res.sol.x)
        if len(ints) == 0:
            return None
        release = master.hold_columns(ints, values)

        def point_from(ms: MasterSolution) -> ParentPoint:
            ms.sol.x[ints] = values  # a held column may come back within the primal tolerance of its value
            out = self.master_point(master, ms)
            out.integer, out.note = True, "TSO binaries held"
            out.handle.mip = {"binaries": len(ints), "lower_bound": None, "gap": None, "binaries_held": True}
            return out

        return point_from, release

    def curve_point(self, offers: list[Offer], threads: int = 1) -> ParentPoint:
        """The relaxed clearing with the children's residual supply curves (secant models within their domains):
        the one-shot scheme's exchange, a good first proposal of the cut exchange.  Solved warm from `start` when
        the TSO has one (dual simplex, Devex pricing as in the master), else cold."""
        res = self._warm_curve_clearing(offers, threads) if self.start is not None else None
        if res is None:
            res = self.clear(offers, use_curves=True, use_cuts=False, integer=False, threads=threads)
        return ParentPoint(x=res.x, own_cost=res.own_cost, lower_bound=-np.inf, handle=res, integer=False)

    def _warm_curve_clearing(self, offers: list[Offer], threads: int) -> TSOClearing | None:
        """The relaxed clearing with the curves, started from `start` (None if that does not end optimal and
        accepted: the caller then solves it cold)."""
        assert self.start is not None
        cp, cols, maps, names = self._build(offers, use_curves=True, use_cuts=False, integer=False)
        lp = PersistentLP(cp.prog, threads=threads)
        lp.h.setOptionValue("simplex_dual_edge_weight_strategy", 1)  # Devex (see decomposition.master)
        if not lp.set_start(self.start):
            return None
        sol = lp.solve()
        if sol.status is not SolveStatus.OPTIMAL:
            return None
        try:
            sol = require(sol, cp.prog, "clearing")
        except TdmarketError:
            return None
        return self._result(cp, cols, maps, names, sol, {"binaries": 0, "lower_bound": None, "gap": None, "rounds": []})

    def clear_with_cuts(
        self,
        names: list[str],
        pool: CutPool,
        *,
        mip_gap: float,
        time_limit: float | None,
        threads: int = 1,
        box: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ParentPoint:
        """Mixed-integer master: the TSO's own binaries with every cut so far; with `box` (lo, hi) (A, T) MW the
        exchanges stay inside it (then the result bounds nothing: lower_bound = −inf).  Without HiGHS's sub-MIP
        heuristics (RINS, RENS, feasibility jump): on a generated 10-area system the master closes its gap at the
        root node and those heuristics were half of its time (20 captured masters: 10.1 -> 4.1 s)."""
        cp, cols, maps, names = self._build_with_cuts(names, pool, integer=True)
        if box is not None:
            lo = np.maximum(cp.prog.lb[cols], box[0])
            hi = np.minimum(cp.prog.ub[cols], box[1])
            cp.prog.set_bounds(cols, lo, np.maximum(lo, hi))
        sol, mip = solve_clearing(cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads, sub_mip_heuristics=False)
        res = self._result(cp, cols, maps, names, sol, mip)
        lb = res.lower_bound if box is None else -np.inf
        return ParentPoint(x=res.x, own_cost=res.own_cost, lower_bound=lb, handle=res, integer=True)

    def clear_with_menus(
        self,
        names: list[str],
        pool: CutPool,
        menus: dict[int, list[MenuEntry]],
        *,
        mip_gap: float,
        time_limit: float | None,
        threads: int = 1,
        anchor: np.ndarray | None = None,
        node_limit: int | None = None,
        burnt: bool = False,
    ) -> ParentPoint:
        """Mixed-integer master in which child `a` of `menus` (index: its entries) takes exactly one option of its
        menu (`decomposition.menus.add_menu_rows`: an exchange at its known cost, or a configuration of its
        binaries anywhere in the interface box at a cost above that configuration's cuts); the other children stay
        free on their cuts; the TSO's binaries are decided.  The menu's exchanges are delivered by the DSO's
        binaries (integer repair), so its cost is exact at a single exchange and bounded below inside a
        configuration.  The result bounds nothing (lower_bound = −inf).  `burnt`: a configuration's box reaches the
        import end where the relaxation burns fictitious losses (docs/model.md §6.3 item 8).  `node_limit`: the
        MILP's branch-and-bound nodes (its incumbent is the choice).

        `anchor` (A, T) MW: the current exchanges; every move away from them costs ANCHOR_TIE_BREAK € per MW, so
        that among equally cheap choices the children stay where they are.  (Measured on a generated 100-area
        system: without it ~90 of the 100 DSOs moved at every candidate, most by 1e-9 to 1e-3 MW along flat pieces
        of their cut models, and each move costs a mixed-integer dispatch to check the candidate.)"""
        cp, cols, maps, names = self._menu_program(names, pool, menus, anchor, burnt)
        sol, mip = _solve_menu_choice(cp, mip_gap, time_limit, threads, node_limit)
        if anchor is not None:
            sol = _snap_small_moves(cp, cols, sol, np.asarray(anchor, float))
        res = self._result(cp, cols, maps, names, sol, mip)
        return ParentPoint(x=res.x, own_cost=res.own_cost, lower_bound=-np.inf, handle=res, integer=True)

    def _menu_program(self, names: list[str], pool: CutPool, menus: dict[int, list[MenuEntry]], anchor, burnt: bool):
        """The clearing of `clear_with_menus` (problem, exchange columns, maps, names), not solved."""
        cp, cols, maps, names = self._build_with_cuts(names, pool, integer=True)
        prog, theta = cp.prog, maps["theta"]
        rating = cp.iface.rating[child_interfaces(cp, names)]  # MVA, per child
        for a in sorted(menus):
            # the configurations move inside the exchange's bounds, else inside the interface rating (MVA >= |MW|)
            lo = np.where(np.isfinite(prog.lb[cols[a]]), prog.lb[cols[a]], -rating[a])
            hi = np.where(np.isfinite(prog.ub[cols[a]]), prog.ub[cols[a]], rating[a])
            add_menu_rows(prog, f"menu_{a}", cols[a], int(theta[a]), menus[a], lo, hi, burnt=burnt)
        if anchor is not None:
            add_anchor_rows(prog, cols.ravel(), np.asarray(anchor, float).ravel(), ANCHOR_TIE_BREAK)
        return cp, cols, maps, names

    def cost_for_child(
        self,
        names: list[str],
        pool: CutPool,
        menus: dict[int, list[MenuEntry]],
        child: int,
        *,
        samples: int,
        mip_gap: float,
        time_limit: float | None,
        threads: int = 1,
        anchor: np.ndarray | None = None,
        node_limit: int | None = None,
    ) -> tuple[np.ndarray, CutPool, MarketCostOracle] | None:
        """What the rest of the market costs as a function of one child's exchange (docs/model.md §6.3 item 8).
        The menu choice of `clear_with_menus` with `child` left free on its cuts (the others on their `menus`);
        with every integer of that choice held (the TSO's binaries, the others' options) the TSO's cost plus the
        others' costs is a convex function V(x) of the child's exchange x (an LP's value in its right-hand side),
        sampled at the choice's exchange and at `samples` exchanges per period across the child's bounds (the
        other periods held): each sample is a cut of V (value €, subgradient € per MW from the LP's duals).
        Returns (the choice's exchange of `child` (T,) MW, the cuts as a one-child `CutPool` with area 0, the
        oracle of V that made them, for cuts at further exchanges), or None if the choice does not solve."""
        others = {a: m for a, m in menus.items() if a != child}
        cp, cols, maps, names = self._menu_program(names, pool, others, anchor, burnt=False)
        try:
            sol, _ = _solve_menu_choice(cp, mip_gap, time_limit, threads, node_limit)
        except TdmarketError:
            return None
        fixed = fix_integers(cp.prog, sol.x)
        c = fixed.c.copy()
        c[int(maps["theta"][child])] = 0.0  # the child's own cost is what it answers with
        fixed.set_cost(c)
        x_cols = cols[child]
        T = len(x_cols)
        lo, hi = fixed.lb[x_cols].copy(), fixed.ub[x_cols].copy()
        rating = float(cp.iface.rating[child_interfaces(cp, names)][child])
        lo = np.where(np.isfinite(lo), lo, -rating)
        hi = np.where(np.isfinite(hi), hi, rating)
        fixed.set_bounds(x_cols, np.full(T, -np.inf), np.full(T, np.inf))
        pick = sp.csr_matrix((np.ones(T), (np.arange(T), x_cols)), shape=(T, fixed.n))
        x0 = np.clip(sol.x[x_cols], lo, hi)
        block = fixed.add_rows("child_exchange_held", pick, x0, x0)
        rows = np.arange(block.start, block.start + block.size)
        points = [x0]
        for t in range(T):
            for v in np.linspace(lo[t], hi[t], samples):
                if abs(v - x0[t]) > 1e-6:
                    p = x0.copy()
                    p[t] = v
                    points.append(p)
        oracle = MarketCostOracle(fixed, rows, threads)
        cuts = CutPool(T)
        for p in points:
            oracle.add_cut(cuts, p)
        if not len(cuts):
            return None
        return x0, cuts, oracle

    def clear_without_commitments(self, names: list[str], pool: CutPool, threads: int = 1) -> ParentPoint:
        """Fallback that is feasible by construction: every binary of the TSO at 0 (no all-or-nothing, start/stop
        or logic order activated), the rest cleared as an LP with the cuts; penalised slack closes any balance."""
        cp, cols, maps, names = self._build_with_cuts(names, pool, integer=True)
        ints = np.flatnonzero(cp.prog.integrality)
        cp.prog.set_bounds(ints, 0.0, 0.0)
        cp.prog.relax_integrality()
        sol, mip = solve_clearing(cp, threads=threads)
        res = self._result(cp, cols, maps, names, sol, mip)
        return ParentPoint(
            x=res.x, own_cost=res.own_cost, lower_bound=-np.inf, handle=res, integer=True, note="binaries at zero"
        )


class MarketCostOracle:
    """V(x): the TSO's cost plus the other children's with the integers of a menu choice held, as a function of
    one child's exchange x (MW per period; `TSO.cost_for_child`).  One LP kept in HiGHS and re-solved warm from its
    last basis at each exchange (only the held exchange's row bounds change; cold solves of a generated 100-area
    system's clearing took ~0.5 s each)."""

    def __init__(self, fixed: Program, rows: np.ndarray, threads: int = 1) -> None:
        self.fixed, self.rows = fixed, rows
        self.lp = PersistentLP(fixed, threads=threads, presolve_first=True)

    def cut(self, x: np.ndarray) -> tuple[float, np.ndarray] | None:
        """V(x) € and a subgradient € per MW (the held exchange rows' duals), or None if the LP does not solve."""
        x = np.asarray(x, float)
        self.lp.set_row_bounds(self.rows, x, x)
        self.fixed.set_row_bounds(self.rows, x, x)
        try:
            s = require(self.lp.solve(), self.fixed, "the market's cost at a child's exchange")
        except TdmarketError:
            return None
        if s.row_dual is None:
            return None
        return float(s.objective), np.asarray(s.row_dual[self.rows], float)

    def add_cut(self, cuts: CutPool, x: np.ndarray) -> float | None:
        """V's cut at exchange x into the one-child pool `cuts` (area 0); returns V(x) €, or None (no cut) if the
        LP does not solve."""
        found = self.cut(x)
        if found is None:
            return None
        cuts.add(np.zeros(1, np.int64), np.asarray(x, float)[None, :], np.array([found[0]]), found[1][None, :])
        return found[0]


def _solve_menu_choice(cp: ClearingProblem, mip_gap: float, time_limit: float | None, threads: int, node_limit):
    """A menu choice's MILP (`TSO._menu_program`): its incumbent is the choice, so without HiGHS's sub-MIP
    heuristics and within `node_limit` nodes."""
    return solve_clearing(
        cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads, sub_mip_heuristics=False, node_limit=node_limit
    )


def _snap_small_moves(cp: ClearingProblem, cols: np.ndarray, sol: Solution, anchor: np.ndarray) -> Solution:
    """The menu choice with every child that moved by at most SNAP_MW (per period) put back at `anchor`: its
    integers held, one LP.  Such moves gain at most a few cents (their price differences times a milliwatt-hour)
    and each would cost the child a mixed-integer dispatch to check the candidate; the candidate is judged by
    its dispatched total, so this changes which point is tried, never what is accepted.  Keeps `sol` if that LP
    does not solve (e.g. a snapped child whose cuts bind together with a menu exchange)."""
    moved = np.abs(sol.x[cols] - anchor).max(axis=1)
    small = moved <= SNAP_MW
    if not (small & (moved > 0)).any():
        return sol
    fixed = fix_integers(cp.prog, sol.x)
    idx = cols[small].ravel()
    fixed.set_bounds(idx, anchor[small].ravel(), anchor[small].ravel())
    try:
        return require(solve(fixed), cp.prog, "menu choice with small moves undone")
    except TdmarketError:
        return sol
